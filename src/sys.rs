//! [I/O] The one place with `unsafe`: the Linux TCP-MD5 socket option (RFC 2385), the
//! link-layer address (`sockaddr_ll`) of an AF_PACKET socket, the received TTL of a datagram
//! (BFD's GTSM check), which no socket crate wraps, and `sysconf` for the clock tick and page
//! size of the `process_*` metrics.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// `struct tcp_md5sig` from `linux/tcp.h` (216 bytes).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; 80],
}

/// Installs (or with an empty key, removes) the TCP-MD5 key for `peer` on `socket`. For an
/// active connection, call before `connect`; for a listener, once per peer before `accept`.
pub fn set_tcp_md5(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > 80 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "TCP-MD5 key is {} bytes; the kernel takes at most 80",
                key.len()
            ),
        ));
    }
    let storage = sockaddr_storage(SocketAddr::new(peer, 0));
    let mut sig = TcpMd5Sig {
        addr: storage,
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; 80],
    };
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a fully initialised `struct tcp_md5sig` laid out as the kernel expects
    // (repr(C), checked size below); the pointer and length describe exactly that struct, and
    // the fd is a live socket borrowed for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sockaddr_storage(addr: SocketAddr) -> libc::sockaddr_storage {
    let sock = socket2::SockAddr::from(addr);
    let mut storage: libc::sockaddr_storage = unsafe_zeroed_storage();
    let len = (sock.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both regions are valid for `len` bytes (socket2's storage is a
    // sockaddr_storage, `len` is capped at its size) and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sock.as_ptr().cast::<u8>(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    storage
}

fn unsafe_zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    unsafe { std::mem::zeroed() }
}

const _: () = assert!(std::mem::size_of::<TcpMd5Sig>() == 216);

/// An AF_PACKET raw socket (whole Ethernet frames, header included) bound to interface
/// `ifindex`, receiving only frames of `ethertype` (e.g. 0x0806 ARP, 0x86DD IPv6); non-blocking.
pub fn packet_socket(ifindex: u32, ethertype: u16) -> io::Result<socket2::Socket> {
    let proto = socket2::Protocol::from(i32::from(ethertype.to_be()));
    let socket = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, Some(proto))?;
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: `SockAddrStorage` is a `sockaddr_storage`, larger than and aligned at least as
    // strictly as `sockaddr_ll` (checked below), so viewing it as one is in bounds; the
    // storage was zeroed, a valid value for every field.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ethertype.to_be();
    ll.sll_ifindex = ifindex as i32;
    // SAFETY: the first `size_of::<sockaddr_ll>()` bytes of `storage` hold the initialised
    // `sockaddr_ll` written above.
    let addr = unsafe {
        socket2::SockAddr::new(
            storage,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    socket.bind(&addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

const _: () = assert!(
    std::mem::size_of::<libc::sockaddr_ll>() <= std::mem::size_of::<libc::sockaddr_storage>()
);

/// Turns on the report of each received datagram's TTL (IPv4) or hop limit (IPv6), read by
/// [`recv_with_ttl`].
pub fn set_recv_ttl(socket: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVTTL)
    };
    let one: libc::c_int = 1;
    // SAFETY: the option value points at a live c_int and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Receives one datagram into `buf` (non-blocking: `WouldBlock` when none waits): its length,
/// its source, and the TTL or hop limit it arrived with when [`set_recv_ttl`] is on.
pub fn recv_with_ttl(
    socket: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<u8>)> {
    let mut storage = socket2::SockAddrStorage::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // 8-byte aligned room for a few control messages (one c_int each).
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // SAFETY: `SockAddrStorage` is a `sockaddr_storage` (see `packet_socket`).
    msg.msg_name = (unsafe { storage.view_as::<libc::sockaddr_storage>() }
        as *mut libc::sockaddr_storage)
        .cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` refers to a live buffer of the length given with it.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: the kernel filled `msg_controllen` bytes of `control` with well-formed control
    // messages; CMSG_FIRSTHDR/CMSG_NXTHDR stay within them and return null at the end, and
    // the data of an IP_TTL/IPV6_HOPLIMIT message is one c_int (read unaligned to be safe).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if (c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_TTL)
                || (c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_HOPLIMIT)
            {
                let v: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                ttl = u8::try_from(v).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes into `storage`.
    let from = unsafe { socket2::SockAddr::new(storage, msg.msg_namelen) };
    let from = from.as_socket().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address")
    })?;
    Ok((n as usize, from, ttl))
}

/// Whether interface `name` exists in this network namespace (`if_nametoindex`).
pub fn interface_exists(name: &str) -> bool {
    interface_index(name).is_some()
}

/// The index of interface `name` in this network namespace, if it exists (`if_nametoindex`).
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; the function only
    // reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// `sysconf(name)`, when positive.
fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value; any name is safe to ask about.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// Clock ticks per second (`/proc` times are in these).
pub fn clock_ticks() -> Option<u64> {
    sysconf(libc::_SC_CLK_TCK)
}

/// The page size in bytes (`/proc` resident sizes are in pages).
pub fn page_size() -> Option<u64> {
    sysconf(libc::_SC_PAGESIZE)
}

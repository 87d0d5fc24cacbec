//! [I/O] The one place with `unsafe`: the Linux TCP-MD5 socket option (RFC 2385), the
//! link-layer address (`sockaddr_ll`) of an AF_PACKET socket, which no socket crate wraps, and
//! `sysconf` for the clock tick and page size of the `process_*` metrics.
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

/// Whether interface `name` exists in this network namespace (`if_nametoindex`).
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; the function only
    // reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
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

//! [I/O] The one place with `unsafe`: the Linux TCP-MD5 socket option (RFC 2385), which no
//! socket crate wraps.
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

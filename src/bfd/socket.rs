//! [I/O] BFD's UDP sockets. A port can be bound once, so every session shares one receiving
//! socket per family and port (3784 single hop, RFC 5881 §4; 4784 multihop, RFC 5883 §5): a
//! listener task reads it, checks the received TTL (single hop takes only 255) and decodes,
//! and hands each packet to the session of its source address. Each session sends from its own
//! socket, bound to a source port of 49152–65535 with TTL 255 (RFC 5881 §4).

use crate::bfd::packet::{self, Discard, Packet};
use crate::sys;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// What the listener hands a session: a packet, or why one from its peer was refused.
pub type Received = Result<Packet, Discard>;

/// Packets waiting for a session; more means the session's task is stuck, and BFD packets
/// are worth nothing late.
const QUEUE: usize = 16;

/// Where one session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub peer: IpAddr,
    /// RFC 5883 (port 4784, any TTL) instead of RFC 5881.
    pub multihop: bool,
    /// Our address for the packets (the BGP session's `bgp_sourceip`); else the kernel's choice.
    pub source: Option<IpAddr>,
    /// Send through this interface (`bgp_sourceif`).
    pub interface: Option<String>,
}

impl Endpoint {
    pub fn port(&self) -> u16 {
        if self.multihop {
            packet::PORT_MULTIHOP
        } else {
            packet::PORT_SINGLE_HOP
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot listen for BFD on {addr}: {source} (does another BFD daemon run in this network namespace?)")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("a BFD session with {0} on this port already runs (two BGP peers with one address)")]
    Taken(IpAddr),
    #[error("cannot open a socket to send BFD to {peer}: {source}")]
    Send { peer: IpAddr, source: io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    peer: IpAddr,
    multihop: bool,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<Key, mpsc::Sender<Received>>,
    /// Listener per (IPv6, multihop).
    listeners: HashMap<(bool, bool), JoinHandle<()>>,
}

impl Drop for Table {
    fn drop(&mut self) {
        for task in self.listeners.values() {
            task.abort();
        }
    }
}

/// The shared receiving side; cheap to clone. Listeners start with the first session of their
/// family and port and stop when the last clone goes.
#[derive(Clone, Default)]
pub struct Sockets(Arc<Mutex<Table>>);

impl Sockets {
    /// Opens a session's sockets: its place on the shared listener and its own sender.
    pub fn open(&self, ep: &Endpoint) -> Result<Link, OpenError> {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = Key {
            peer: ep.peer,
            multihop: ep.multihop,
        };
        if table.sessions.get(&key).is_some_and(|tx| !tx.is_closed()) {
            return Err(OpenError::Taken(ep.peer));
        }
        let which = (ep.peer.is_ipv6(), ep.multihop);
        if let std::collections::hash_map::Entry::Vacant(slot) = table.listeners.entry(which) {
            let unspecified = if ep.peer.is_ipv6() {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            let addr = SocketAddr::new(unspecified, ep.port());
            let sock = listener(addr).map_err(|source| OpenError::Listen { addr, source })?;
            slot.insert(tokio::spawn(listen(
                sock,
                ep.multihop,
                Arc::downgrade(&self.0),
            )));
        }
        let sock = sender(ep).map_err(|source| OpenError::Send {
            peer: ep.peer,
            source,
        })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        table.sessions.insert(key, tx.clone());
        Ok(Link {
            rx,
            tx,
            sock,
            dest: SocketAddr::new(ep.peer, ep.port()),
            table: Arc::downgrade(&self.0),
            key,
        })
    }
}

/// One session's sockets.
pub struct Link {
    rx: mpsc::Receiver<Received>,
    /// Our own entry in the table, to remove exactly it on drop.
    tx: mpsc::Sender<Received>,
    sock: UdpSocket,
    dest: SocketAddr,
    table: Weak<Mutex<Table>>,
    key: Key,
}

impl Link {
    pub async fn recv(&mut self) -> Option<Received> {
        self.rx.recv().await
    }

    /// Sends without waiting: a datagram the kernel cannot take now would be late anyway.
    pub fn send(&self, p: &Packet) -> io::Result<()> {
        self.sock.try_send_to(&p.encode(), self.dest).map(|_| ())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(table) = self.table.upgrade() {
            let mut t = table.lock().unwrap_or_else(PoisonError::into_inner);
            if t.sessions
                .get(&self.key)
                .is_some_and(|tx| tx.same_channel(&self.tx))
            {
                t.sessions.remove(&self.key);
            }
        }
    }
}

fn listener(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    // No SO_REUSEADDR: a BFD daemon of the host's own holding the port must make this fail
    // (a warning) rather than share the port and take every other packet.
    sys::set_recv_ttl(&sock, addr.is_ipv6())?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

fn sender(ep: &Endpoint) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(SocketAddr::new(ep.peer, 0));
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // TTL 255 for both kinds: single hop requires it (RFC 5881 §5), and multihop packets must
    // reach a peer any number of hops away.
    match ep.peer {
        IpAddr::V4(_) => sock.set_ttl_v4(255)?,
        IpAddr::V6(_) => sock.set_unicast_hops_v6(255)?,
    }
    if let Some(ifname) = &ep.interface {
        sock.bind_device(Some(ifname.as_bytes()))?;
    }
    let ip = ep.source.unwrap_or(match ep.peer {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let mut attempt = 0;
    loop {
        let port = fastrand::u16(packet::SOURCE_PORTS);
        match sock.bind(&SocketAddr::new(ip, port).into()) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 64 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(sock.into())
}

async fn listen(sock: UdpSocket, multihop: bool, table: Weak<Mutex<Table>>) {
    let mut buf = [0u8; 512];
    loop {
        let got = sock
            .async_io(Interest::READABLE, || sys::recv_with_ttl(&sock, &mut buf))
            .await;
        let (n, from, ttl) = match got {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "reading a BFD packet failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let item = packet::check_ttl(multihop, ttl).and_then(|()| Packet::decode(&buf[..n]));
        let Some(table) = table.upgrade() else { return };
        let key = Key {
            peer: from.ip().to_canonical(),
            multihop,
        };
        let target = table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sessions
            .get(&key)
            .cloned();
        match target {
            Some(tx) => {
                if tx.try_send(item).is_err() {
                    debug!(%from, "BFD session busy; a packet from its peer is dropped");
                }
            }
            None => debug!(%from, "BFD packet from an address with no session; ignored"),
        }
    }
}

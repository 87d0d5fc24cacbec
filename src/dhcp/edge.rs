//! [I/O] One DHCP VIP: a macvlan, a UDP socket on it, a [`Client`] driven by packets and timers,
//! and the leased address kept on the macvlan while the lease lasts.
//!
//! Two UDP port-68 sockets bound to the macvlan (`SO_BINDTODEVICE`, `SO_BROADCAST`): one on
//! `0.0.0.0` (our requests carry the BROADCAST flag, so OFFER and ACK arrive as broadcasts
//! before the address exists and no packet socket is needed), and while a lease is bound one on
//! the leased address (`IP_FREEBIND`: in ARP mode it goes on the macvlan only once claimed), so
//! that RENEW, REBIND and RELEASE leave with the lease as their source and the unicast replies
//! to it arrive. While the lease is not on the macvlan, a unicast goes as a broadcast from the
//! first socket instead: the kernel would resolve the server from the macvlan naming another of
//! the node's addresses as the ARP sender, and the server's host would then reach the node's
//! address at the Service's MAC, which goes away with the Service (found by tests/chaos_lan.rs).
//! A server that stops answering changes nothing until the lease expires: only the client's
//! `Unbound` removes the address.

use super::client::{Action, Client, ClientConfig, Destination, Lease};
use super::macvlan::{self, MacvlanError};
use crate::netlink::{NetlinkError, VipAddresses};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error(transparent)]
    Macvlan(#[from] MacvlanError),
    #[error("DHCP socket on {ifname}: {source}")]
    Socket {
        ifname: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Address(#[from] NetlinkError),
}

/// What one DHCP VIP is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpSpec {
    /// The Service interface the macvlan sits on.
    pub parent: String,
    /// The macvlan ([`crate::dhcp::naming::macvlan_name`]).
    pub ifname: String,
    pub mac: [u8; 6],
    /// Option 12 (`kube-vip.io/loadbalancerHostname`).
    pub hostname: Option<String>,
    /// INIT-REBOOT address (`kube-vip.io/requestedIP`).
    pub requested: Option<Ipv4Addr>,
    /// The macvlan's alias ([`crate::dhcp::naming::owner_alias`]); empty: none.
    pub alias: String,
    /// Whether the leased address is put on the macvlan here as soon as it is bound (BGP mode),
    /// or left to the caller (ARP mode: added only after an ARP probe found nobody else).
    pub hold_address: bool,
}

/// How a DHCP VIP ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The Service went away: RELEASE the lease, then delete the macvlan.
    Release,
    /// Another node takes over (or vipd restarts): delete the macvlan but keep the lease, which
    /// the next holder of the MAC renews.
    Keep,
}

/// A running DHCP VIP. Dropping it without [`DhcpVip::stop`] stops the task and leaves the
/// macvlan (and the address) in place, as a crash would.
pub struct DhcpVip {
    ifname: String,
    /// The macvlan's owner alias: only that macvlan is deleted.
    alias: String,
    lease: watch::Receiver<Option<Lease>>,
    /// Addresses found in use by another host, for the client to DECLINE.
    decline: mpsc::UnboundedSender<Ipv4Addr>,
    stop: Option<oneshot::Sender<Stop>>,
    task: Option<JoinHandle<()>>,
}

impl DhcpVip {
    /// Creates the macvlan and its socket and starts the client.
    pub async fn start(spec: DhcpSpec, seed: u64) -> Result<DhcpVip, DhcpError> {
        macvlan::create(&spec.parent, &spec.ifname, spec.mac, &spec.alias).await?;
        let socket = match open_socket(&spec.ifname, Ipv4Addr::UNSPECIFIED) {
            Ok(s) => s,
            Err(source) => {
                let _ = macvlan::delete(&spec.ifname, &spec.alias).await;
                return Err(DhcpError::Socket {
                    ifname: spec.ifname.clone(),
                    source,
                });
            }
        };
        let addresses = match VipAddresses::open(&spec.ifname).await {
            Ok(a) => a,
            Err(e) => {
                let _ = macvlan::delete(&spec.ifname, &spec.alias).await;
                return Err(e.into());
            }
        };
        let mut cfg = ClientConfig::new(spec.mac, seed);
        cfg.hostname = spec.hostname.clone();
        cfg.requested = spec.requested;
        let (lease_tx, lease) = watch::channel(None);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (decline, decline_rx) = mpsc::unbounded_channel();
        let ifname = spec.ifname.clone();
        let alias = spec.alias.clone();
        let task = tokio::spawn(async move {
            let mut run = Run {
                hold_address: spec.hold_address,
                ifname: spec.ifname,
                socket,
                leased: None,
                client: Client::new(cfg),
                addresses,
                lease: lease_tx,
            };
            run.run(stop_rx, decline_rx).await;
        });
        Ok(DhcpVip {
            ifname,
            alias,
            lease,
            decline,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The current lease (`None` until bound and after expiry); changes are signalled.
    pub fn lease(&self) -> watch::Receiver<Option<Lease>> {
        self.lease.clone()
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Another host answers for `address`: the client DECLINEs it (if it is the lease) and
    /// asks for another one after [`super::client::DECLINE_WAIT`].
    pub fn decline(&self, address: Ipv4Addr) {
        let _ = self.decline.send(address);
    }

    /// Ends the client as `how` says and deletes the macvlan.
    pub async fn stop(mut self, how: Stop) -> Result<(), DhcpError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        macvlan::delete(&self.ifname, &self.alias).await?;
        Ok(())
    }
}

impl Drop for DhcpVip {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A datagram from whichever socket has one first.
async fn recv_either(
    any: &UdpSocket,
    leased: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    let Some(leased) = leased else {
        return any.recv_from(buf).await;
    };
    // Readiness first, so neither read borrows `buf` while the other might win.
    tokio::select! {
        r = any.readable() => r.map(|()| true),
        r = leased.readable() => r.map(|()| false),
    }
    .and_then(|from_any| {
        let socket = if from_any { any } else { leased };
        socket.try_recv_from(buf)
    })
    .or_else(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            // Spurious readiness: report nothing received; the loop asks again.
            Ok((0, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))
        } else {
            Err(e)
        }
    })
}

/// UDP port 68 on `local` (`0.0.0.0`, or the lease), bound to the macvlan `ifname`.
fn open_socket(ifname: &str, local: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Another DHCP client on the host may hold 0.0.0.0:68 on another interface.
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(ifname.as_bytes()))?;
    socket.set_broadcast(true)?;
    socket.set_nonblocking(true)?;
    if !local.is_unspecified() {
        // In ARP mode the lease goes on the macvlan only once the node claims it.
        socket.set_freebind_v4(true)?;
    }
    socket.bind(&SocketAddr::from((local, CLIENT_PORT)).into())?;
    UdpSocket::from_std(socket.into())
}

struct Run {
    hold_address: bool,
    ifname: String,
    socket: UdpSocket,
    /// While a lease is bound: its address and a socket bound to it.
    leased: Option<(Ipv4Addr, UdpSocket)>,
    client: Client,
    addresses: VipAddresses,
    lease: watch::Sender<Option<Lease>>,
}

impl Run {
    async fn run(
        &mut self,
        mut stop: oneshot::Receiver<Stop>,
        mut decline: mpsc::UnboundedReceiver<Ipv4Addr>,
    ) {
        let actions = self.client.start(Instant::now());
        self.apply(actions).await;
        let mut buf = vec![0u8; 1500];
        loop {
            let deadline = self.client.deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            let actions = tokio::select! {
                how = &mut stop => {
                    // A dropped handle (Err) is a crash: leave everything as it is.
                    if let Ok(Stop::Release) = how {
                        let actions = self.client.release(Instant::now());
                        self.apply(actions).await;
                    }
                    return;
                }
                received = recv_either(&self.socket, self.leased.as_ref().map(|l| &l.1), &mut buf) => match received {
                    // Nothing (spurious readiness) or an empty datagram: no DHCP message.
                    Ok((0, _)) => Vec::new(),
                    Ok((n, from)) => {
                        debug!(macvlan = %self.ifname, %from, bytes = n, "DHCP packet");
                        self.client.handle(Instant::now(), &buf[..n])
                    }
                    Err(e) => {
                        warn!(macvlan = %self.ifname, "DHCP receive: {e}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        Vec::new()
                    }
                },
                () = sleep => self.client.on_timeout(Instant::now()),
                Some(address) = decline.recv() => {
                    warn!(macvlan = %self.ifname, %address, "another host answers for the leased address: declining it");
                    self.client.decline(Instant::now(), address)
                }
            };
            self.apply(actions).await;
        }
    }

    /// Opens the socket on the lease's address (once per lease). On failure requests go from
    /// the `0.0.0.0` socket, with the kernel's choice of source, which servers accept.
    fn bind_lease(&mut self, address: Ipv4Addr) {
        if self.leased.as_ref().is_some_and(|l| l.0 == address) {
            return;
        }
        self.leased = None;
        match open_socket(&self.ifname, address) {
            Ok(socket) => self.leased = Some((address, socket)),
            Err(e) => warn!(
                macvlan = %self.ifname,
                %address,
                "DHCP socket: cannot bind the lease's address, requests go with the kernel's source: {e}"
            ),
        }
    }

    /// The socket on the bound lease, when the lease is on the macvlan now (so the kernel names
    /// it as the ARP sender too).
    async fn socket_on_lease(&self) -> Option<&UdpSocket> {
        let (address, socket) = self.leased.as_ref()?;
        let present = self.addresses.present().await;
        present.contains(&IpAddr::V4(*address)).then_some(socket)
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, payload } => {
                    let on_lease = self.socket_on_lease().await;
                    let (socket, dest) = match (to, on_lease) {
                        (Destination::Unicast(ip), Some(s)) => (s, ip),
                        (Destination::Broadcast, Some(s)) => (s, Ipv4Addr::BROADCAST),
                        (_, None) => (&self.socket, Ipv4Addr::BROADCAST),
                    };
                    let addr = SocketAddrV4::new(dest, SERVER_PORT);
                    // A lost packet is what retransmission is for: log and go on.
                    if let Err(e) = socket.send_to(&payload, addr).await {
                        warn!(macvlan = %self.ifname, %addr, "DHCP send: {e}");
                    }
                }
                Action::Bound(lease) => {
                    self.bind_lease(lease.address);
                    let wanted = BTreeSet::from([IpAddr::V4(lease.address)]);
                    if self.hold_address {
                        for e in self.addresses.add_missing(&wanted).await {
                            warn!(macvlan = %self.ifname, "{e}");
                        }
                    }
                    // A reused macvlan may still carry an earlier lease's address.
                    for e in self.addresses.remove_unwanted(&wanted).await {
                        warn!(macvlan = %self.ifname, "{e}");
                    }
                    info!(
                        macvlan = %self.ifname,
                        address = %lease.address,
                        server = %lease.server,
                        lease_secs = lease.duration.map(|d| d.as_secs()),
                        "DHCP lease bound"
                    );
                    self.lease.send_replace(Some(lease));
                }
                Action::Unbound(address) => {
                    let wanted: BTreeSet<IpAddr> = self
                        .addresses
                        .ours()
                        .iter()
                        .filter(|ip| **ip != IpAddr::V4(address))
                        .copied()
                        .collect();
                    for e in self.addresses.remove_unwanted(&wanted).await {
                        warn!(macvlan = %self.ifname, "{e}");
                    }
                    if self.leased.as_ref().is_some_and(|l| l.0 == address) {
                        self.leased = None;
                    }
                    info!(macvlan = %self.ifname, %address, "DHCP lease ended");
                    if self
                        .lease
                        .borrow()
                        .as_ref()
                        .is_some_and(|l| l.address == address)
                    {
                        self.lease.send_replace(None);
                    }
                }
            }
        }
    }
}

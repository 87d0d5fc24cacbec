//! [I/O] The BGP speaker as the agent sees it: declarative. `set_peers` takes the whole peer
//! set and starts, re-establishes or stops sessions for what changed; `set_routes` takes the
//! whole route set and every session sends its peer only the difference.

use crate::bfd;
use crate::bgp::driver::{Control, PeerEvent, PeerStatus, PeerTask, Transport};
use crate::bgp::fsm::{Backoff, SessionConfig};
use crate::bgp::open::GracefulRestartOffer;
use crate::bgp::types::{Asn, HoldTime, RouteSet, RouterId};
use crate::bgp::wire::CeaseKind;
use crate::sys;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, info_span, warn, Instrument};
use vipd_providers::{BfdSpec, MpBgpSpec, PeerAddress, PeerSpec};

/// Settings shared by every session; a [`PeerSpec`] may override some per peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    pub local_as: Asn,
    pub router_id: RouterId,
    pub hold_time: HoldTime,
    pub keepalive: Option<Duration>,
    /// Listen instead of connecting; only configured peers are accepted.
    pub passive: bool,
    /// Addresses to listen on in passive mode.
    pub listen: Vec<SocketAddr>,
    pub source_ip: Option<IpAddr>,
    pub source_if: Option<String>,
    pub mpbgp: MpBgpSpec,
    pub backoff: Backoff,
    /// Offered to every peer (RFC 4724); `None` offers none.
    pub graceful_restart: Option<GracefulRestartOffer>,
    /// BFD for peers that do not set their own (`vipd_bfd`).
    pub bfd: Option<BfdSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("cannot listen for BGP on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct PeerHandle {
    spec: PeerSpec,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    status: Watched,
}

/// A session's live state, and its BFD session's when it runs one.
#[derive(Clone, Debug)]
struct Watched {
    bgp: watch::Receiver<PeerStatus>,
    bfd: Option<watch::Receiver<bfd::session::Report>>,
}

impl Watched {
    fn now(&self) -> PeerStatus {
        let mut s = self.bgp.borrow().clone();
        s.bfd = self.bfd.as_ref().map(|b| b.borrow().clone());
        s
    }
}

/// Every session's live state, shared with the HTTP endpoint (`/metrics`, `/status`), which
/// reads it at scrape time instead of asking the owner loop.
#[derive(Clone, Default, Debug)]
pub struct PeerBoard(Arc<Mutex<BTreeMap<SocketAddr, Watched>>>);

impl PeerBoard {
    /// Each configured peer's state now, in address order.
    pub fn snapshot(&self) -> Vec<(SocketAddr, PeerStatus)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, w)| (*k, w.now()))
            .collect()
    }

    fn set(&self, key: SocketAddr, status: Option<Watched>) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match status {
            Some(rx) => m.insert(key, rx),
            None => m.remove(&key),
        };
    }
}

/// Where passive listeners send connections: the peer task for each address.
type AcceptTable = Arc<Mutex<HashMap<IpAddr, mpsc::Sender<Control>>>>;

pub struct Speaker {
    cfg: SpeakerConfig,
    peers: BTreeMap<SocketAddr, PeerHandle>,
    /// `None` until the agent first sets its routes: sessions send no table and no End-of-RIB
    /// before then.
    routes: watch::Sender<Option<Arc<RouteSet>>>,
    events: Option<mpsc::Sender<PeerEvent>>,
    accept: AcceptTable,
    listeners: Vec<(Arc<TcpListener>, JoinHandle<()>)>,
    board: PeerBoard,
    bfd_sockets: bfd::socket::Sockets,
}

impl Speaker {
    /// Starts the speaker with no peers and no routes; in passive mode it binds its listeners
    /// now, so a port in use is an error at start rather than a silent non-event.
    pub async fn start(cfg: SpeakerConfig) -> Result<Self, SpeakerError> {
        let accept: AcceptTable = Arc::default();
        let mut listeners = Vec::new();
        if cfg.passive {
            for addr in &cfg.listen {
                let listener =
                    Arc::new(bind_listener(*addr).map_err(|source| SpeakerError::Listen {
                        addr: *addr,
                        source,
                    })?);
                let task = tokio::spawn(accept_loop(Arc::clone(&listener), Arc::clone(&accept)));
                listeners.push((listener, task));
            }
        }
        Ok(Speaker {
            cfg,
            peers: BTreeMap::new(),
            routes: watch::Sender::new(None),
            events: None,
            accept,
            listeners,
            board: PeerBoard::default(),
            bfd_sockets: bfd::socket::Sockets::default(),
        })
    }

    /// Peer events from now on (sessions up and down, routes the peers sent). Bounded: a peer
    /// that floods UPDATEs faster than they are read loses `Learned` events, never memory
    /// ([`crate::bgp::driver::PEER_EVENTS`]).
    pub fn events(&mut self) -> mpsc::Receiver<PeerEvent> {
        let (tx, rx) = mpsc::channel(crate::bgp::driver::PEER_EVENTS);
        self.events = Some(tx);
        rx
    }

    /// The addresses the passive listeners are bound to (useful with port 0).
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// A live view of every session's state, for readers outside the owner loop.
    pub fn board(&self) -> PeerBoard {
        self.board.clone()
    }

    /// Replaces the whole route set.
    pub fn set_routes(&self, routes: RouteSet) {
        self.routes.send_replace(Some(Arc::new(routes)));
    }

    /// Replaces the whole peer set. Unchanged peers are untouched; a changed one is
    /// re-established; a removed one gets a Cease (Peer De-configured).
    pub async fn set_peers(&mut self, peers: Vec<PeerSpec>) {
        let mut wanted: BTreeMap<SocketAddr, PeerSpec> = BTreeMap::new();
        for spec in peers {
            match &spec.address {
                PeerAddress::Ip(ip) => {
                    wanted.insert(SocketAddr::new(*ip, spec.port), spec);
                }
                PeerAddress::Unnumbered(ifname) => warn!(
                    interface = %ifname,
                    "unnumbered BGP peers are not supported yet; skipping this peer"
                ),
            }
        }
        let mut stopping = Vec::new();
        let keys: Vec<SocketAddr> = self.peers.keys().copied().collect();
        for key in keys {
            let kind = match wanted.get(&key) {
                None => CeaseKind::PeerDeconfigured,
                Some(spec) if self.peers.get(&key).is_some_and(|p| &p.spec != spec) => {
                    CeaseKind::OtherConfigurationChange
                }
                Some(_) => continue,
            };
            if let Some(handle) = self.peers.remove(&key) {
                self.board.set(key, None);
                info!(peer = %key, ?kind, "stopping BGP session");
                stopping.push(self.stop_peer(
                    key,
                    handle,
                    Control::Stop {
                        kind,
                        reason: String::new(),
                    },
                ));
            }
        }
        for task in stopping {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        for (key, spec) in wanted {
            if !self.peers.contains_key(&key) {
                let handle = self.start_peer(key, spec);
                self.board.set(key, Some(handle.status.clone()));
                self.peers.insert(key, handle);
            }
        }
    }

    /// Each peer's state, for `vipd status` and metrics.
    pub fn status(&self) -> Vec<(SocketAddr, PeerStatus)> {
        self.peers
            .iter()
            .map(|(k, h)| (*k, h.status.now()))
            .collect()
    }

    /// The agent's goodbye: a Cease to every peer, so routers withdraw at once, waiting at most
    /// three seconds for the sessions to close.
    pub async fn cease(self) {
        info!("shutting down: sending Cease to every peer");
        self.shutdown("vipd shutting down", Duration::from_secs(3))
            .await;
    }

    /// The agent restarts: every session ends so that a graceful-restart peer keeps our routes
    /// as stale until the next process sends them again (the others get a Cease), waiting at
    /// most three seconds.
    pub async fn restart(self) {
        info!("restarting: ending every session so that graceful-restart peers keep our routes");
        self.finish(
            |reason| Control::Restart { reason },
            "vipd restarting",
            Duration::from_secs(3),
        )
        .await;
    }

    /// Sends every peer a Cease (Administrative Shutdown with `reason`) and waits for the
    /// sessions to close, at most `deadline`.
    pub async fn shutdown(self, reason: &str, deadline: Duration) {
        self.finish(
            |reason| Control::Stop {
                kind: CeaseKind::AdministrativeShutdown,
                reason,
            },
            reason,
            deadline,
        )
        .await;
    }

    async fn finish(
        mut self,
        control: impl Fn(String) -> Control,
        reason: &str,
        deadline: Duration,
    ) {
        let peers = std::mem::take(&mut self.peers);
        let tasks: Vec<JoinHandle<()>> = peers
            .into_iter()
            .map(|(key, handle)| self.stop_peer(key, handle, control(reason.to_owned())))
            .collect();
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(deadline, all).await.is_err() {
            warn!("some BGP sessions did not close within {deadline:?}");
        }
        for (_, task) in &self.listeners {
            task.abort();
        }
    }

    fn stop_peer(&self, key: SocketAddr, handle: PeerHandle, control: Control) -> JoinHandle<()> {
        self.accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key.ip());
        if handle.spec.password.is_some() {
            for (listener, _) in &self.listeners {
                if same_family(listener, key.ip()) {
                    // An empty key removes the peer's entry from the listener.
                    let _ = sys::set_tcp_md5(listener.as_ref(), key.ip(), &[]);
                }
            }
        }
        // The task may already be gone (it ended on its own); then there is nothing to stop.
        let _ = handle.control.try_send(control);
        handle.task
    }

    fn start_peer(&self, key: SocketAddr, spec: PeerSpec) -> PeerHandle {
        let cfg = &self.cfg;
        let local_as = spec.local_as.map_or(cfg.local_as, Asn);
        let ebgp = spec.remote_as != local_as.0;
        let same_fam = |ip: &IpAddr| ip.is_ipv4() == key.is_ipv4();
        let mpbgp = if spec.mpbgp == MpBgpSpec::default() {
            cfg.mpbgp.clone()
        } else {
            spec.mpbgp.clone()
        };
        let transport = Transport {
            peer: key,
            password: spec.password.clone(),
            ttl: if spec.multihop {
                Some(255)
            } else if ebgp {
                Some(1)
            } else {
                None
            },
            source_ip: spec.source.or(cfg.source_ip).filter(same_fam),
            source_if: cfg.source_if.clone(),
            mpbgp: mpbgp.next_hop,
            mpbgp_v4: mpbgp.ipv4,
            mpbgp_v6: mpbgp.ipv6,
        };
        let session = SessionConfig {
            local_as,
            remote_as: Asn(spec.remote_as),
            router_id: spec.router_id.map_or(cfg.router_id, RouterId),
            hold_time: cfg.hold_time,
            keepalive: cfg.keepalive,
            passive: cfg.passive,
            backoff: cfg.backoff,
            graceful_restart: cfg.graceful_restart,
        };
        let (control, control_rx) = mpsc::channel(4);
        if cfg.passive {
            if let Some(pw) = &spec.password {
                for (listener, _) in &self.listeners {
                    if same_family(listener, key.ip()) {
                        if let Err(e) =
                            sys::set_tcp_md5(listener.as_ref(), key.ip(), pw.expose().as_bytes())
                        {
                            warn!(peer = %key, error = %e, "cannot set the TCP-MD5 key on the listener");
                        }
                    }
                }
            }
            self.accept
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.ip(), control.clone());
        }
        let bfd = self.start_bfd(key, &spec, &transport);
        let bfd_report = bfd.as_ref().map(|b| b.report.clone());
        let (status_tx, status) = watch::channel(PeerStatus::default());
        let task = PeerTask::new(transport, session, status_tx, self.events.clone(), bfd);
        info!(peer = %key, remote_as = spec.remote_as, "starting BGP session");
        let task = tokio::spawn(
            task.run(self.routes.subscribe(), control_rx)
                .instrument(info_span!("peer", peer = %key)),
        );
        PeerHandle {
            spec,
            control,
            task,
            status: Watched {
                bgp: status,
                bfd: bfd_report,
            },
        }
    }

    /// The peer's BFD session when its entry or `vipd_bfd` turns BFD on: single hop unless the
    /// peer is multihop, from the session's source address and interface.
    fn start_bfd(
        &self,
        key: SocketAddr,
        spec: &PeerSpec,
        transport: &Transport,
    ) -> Option<bfd::driver::Handle> {
        let b = spec.bfd.or(self.cfg.bfd).filter(|b| b.enabled)?;
        let ep = bfd::socket::Endpoint {
            peer: key.ip(),
            multihop: spec.multihop,
            source: transport.source_ip,
            interface: transport.source_if.clone(),
        };
        let link = match self.bfd_sockets.open(&ep) {
            Ok(link) => link,
            Err(e) => {
                warn!(peer = %key, error = %e, "BFD not started for this peer; its BGP session runs without it");
                return None;
            }
        };
        let cfg = bfd::session::Config {
            desired_min_tx: Duration::from_millis(u64::from(b.tx_ms)),
            required_min_rx: Duration::from_millis(u64::from(b.rx_ms)),
            detect_mult: b.multiplier,
        };
        info!(peer = %key, tx_ms = b.tx_ms, rx_ms = b.rx_ms, multiplier = b.multiplier, multihop = spec.multihop, "starting BFD session");
        Some(bfd::driver::spawn(
            cfg,
            spec.multihop,
            link,
            fastrand::u32(1..),
        ))
    }
}

/// A listener; IPv6 ones are v6-only so an IPv4 listener can share the port.
fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(64)?;
    TcpListener::from_std(sock.into())
}

fn same_family(listener: &TcpListener, ip: IpAddr) -> bool {
    listener
        .local_addr()
        .map(|a| a.is_ipv4() == ip.is_ipv4())
        .unwrap_or(false)
}

async fn accept_loop(listener: Arc<TcpListener>, table: AcceptTable) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let target = table
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&from.ip())
                    .cloned();
                match target {
                    Some(tx) => {
                        if tx.try_send(Control::Accepted(stream)).is_err() {
                            warn!(%from, "peer task busy; dropping its connection");
                        }
                    }
                    None => warn!(%from, "refusing a BGP connection from an unconfigured address"),
                }
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

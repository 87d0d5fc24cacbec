//! [I/O] One task per peer: runs a [`Session`] over a real TCP connection. It opens the socket
//! (TCP-MD5, TTL, source binding), reads and writes bytes, keeps the timers the session arms,
//! and carries out the session's outputs in order. It decides nothing.

use crate::bfd;
use crate::bgp::bfd_gate::{Gate, GateInput, StartGate};
use crate::bgp::fsm::{DownReason, Input, NextHops, Output, Session, SessionConfig, Timer};
use crate::bgp::inbound::Action;
pub use crate::bgp::types::PeerStatus;
use crate::bgp::types::RouteSet;
use crate::bgp::wire::{self, CeaseKind};
use crate::netif::Interfaces;
use crate::sys;
use netgauze_bgp_pkt::BgpMessage;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use vipd_providers::{MpBgpNextHop, Password};

/// How the driver reaches one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    pub peer: SocketAddr,
    pub password: Option<Password>,
    /// eBGP without multihop uses TTL 1; multihop 255.
    pub ttl: Option<u32>,
    pub source_ip: Option<IpAddr>,
    pub source_if: Option<String>,
    pub mpbgp: MpBgpNextHop,
    pub mpbgp_v4: Option<std::net::Ipv4Addr>,
    pub mpbgp_v6: Option<std::net::Ipv6Addr>,
}

/// How many peer events may wait to be read. Peers feed this queue (every UPDATE they send is
/// a `Learned` event), so it is bounded: when full, `Learned` events are dropped (vipd decides
/// nothing from them; they are counted in the peer's status), while a session going up or down
/// still gets through.
pub const PEER_EVENTS: usize = 1024;

/// Commands from the speaker to a peer task.
#[derive(Debug)]
pub enum Control {
    Stop {
        kind: CeaseKind,
        reason: String,
    },
    /// vipd restarts: end the session so that a graceful-restart peer keeps our routes.
    Restart {
        reason: String,
    },
    /// A connection the passive listener accepted from this peer.
    Accepted(TcpStream),
}

/// What a peer task tells the outside, for logs, metrics, `vipd status` and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Up {
        peer: SocketAddr,
    },
    Down {
        peer: SocketAddr,
        reason: String,
    },
    Learned {
        peer: SocketAddr,
        announced: Vec<ipnet::IpNet>,
        withdrawn: Vec<ipnet::IpNet>,
    },
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

struct Conn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
}

pub struct PeerTask {
    transport: Transport,
    session: Session,
    timers: [Option<Instant>; 3],
    conn: Option<Conn>,
    /// A connection the peer opened while `conn` existed, until the session adopts or refuses it.
    pending: Option<Conn>,
    /// Why the last write failed, until the session is told.
    write_failed: Option<String>,
    connecting: Option<Connecting>,
    status: watch::Sender<PeerStatus>,
    events: Option<mpsc::Sender<PeerEvent>>,
    write_timeout: Duration,
    /// The peer's BFD session, when configured: its failure ends the BGP session at once.
    bfd: Option<bfd::driver::Handle>,
    /// The task is stopping: the connection the session closes is kept in `closing` until the
    /// peer has closed its side too.
    stopping: bool,
    closing: Option<Conn>,
}

impl PeerTask {
    pub fn new(
        transport: Transport,
        cfg: SessionConfig,
        status: watch::Sender<PeerStatus>,
        events: Option<mpsc::Sender<PeerEvent>>,
        bfd: Option<bfd::driver::Handle>,
    ) -> Self {
        // A write that cannot finish within the hold time means the peer is gone.
        let write_timeout = Duration::from_secs(u64::from(cfg.hold_time.secs()).max(30));
        PeerTask {
            transport,
            session: Session::new(cfg, fastrand::u64(..)),
            timers: [None; 3],
            conn: None,
            pending: None,
            write_failed: None,
            connecting: None,
            status,
            events,
            write_timeout,
            bfd,
            stopping: false,
            closing: None,
        }
    }

    /// Runs until stopped; on the way out the session sends its Cease.
    pub async fn run(
        mut self,
        mut routes: watch::Receiver<Option<Arc<RouteSet>>>,
        mut control: mpsc::Receiver<Control>,
    ) {
        self.status
            .send_modify(|s| s.down_since = Some(Instant::now()));
        // No table yet (the agent has not decided): the session comes up and waits for it.
        let initial = routes.borrow_and_update().clone();
        if let Some(initial) = initial {
            self.step(Input::Routes(initial)).await;
        }
        let (mut gate, first) = StartGate::new(self.bfd.is_some(), Instant::now());
        let mut start_at = None;
        self.pass(first, &mut start_at).await;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let deadline = self.timers.iter().flatten().min().copied();
            let (has_connecting, has_conn) = (self.connecting.is_some(), self.conn.is_some());
            let has_bfd = self.bfd.is_some();
            // Each branch borrows its own field; the handlers below get `self` back.
            let event = {
                let connecting = &mut self.connecting;
                let conn = &mut self.conn;
                let bfd = &mut self.bfd;
                tokio::select! {
                    biased;
                    ctl = control.recv() => Event::Control(ctl),
                    ev = bfd_event(bfd), if has_bfd => Event::Bfd(ev),
                    () = sleep_until(start_at), if start_at.is_some() => Event::GateDeadline,
                    // Timers before reads: a peer that keeps sending must not starve our
                    // KEEPALIVEs or the hold timer.
                    () = sleep_until(deadline), if deadline.is_some() => Event::TimerDue,
                    res = poll_connect(connecting), if has_connecting => Event::ConnectDone(res),
                    n = read_some(conn.as_mut(), &mut buf), if has_conn => Event::Read(n),
                    changed = routes.changed() => Event::RoutesChanged(changed.is_ok()),
                }
            };
            let input = match event {
                // The BGP session ends first and BFD goes AdminDown after it: FRR before 10.7
                // and BIRD before 2.14 take an AdminDown for a failure (not RFC 5882 §3.2) and
                // would end a still-open session at once, routes and all; a session already
                // closed for a restart is one the peer keeps as stale.
                Event::Control(Some(Control::Stop { kind, reason })) => {
                    self.stopping = true;
                    self.step(Input::Stop { kind, reason }).await;
                    self.bfd_admin_down().await;
                    return;
                }
                Event::Control(Some(Control::Restart { reason })) => {
                    self.stopping = true;
                    self.step(Input::Restart { reason }).await;
                    self.bfd_admin_down().await;
                    return;
                }
                Event::Bfd(Some(bfd::driver::Event::Down {
                    diag,
                    failure: true,
                })) => Input::BfdDown(diag.name().to_owned()),
                Event::Bfd(Some(bfd::driver::Event::Up { after_stale })) => {
                    let g = gate.handle(GateInput::BfdUp { after_stale }, Instant::now());
                    self.pass(g, &mut start_at).await;
                    continue;
                }
                Event::GateDeadline => {
                    start_at = None;
                    let g = gate.handle(GateInput::Deadline, Instant::now());
                    self.pass(g, &mut start_at).await;
                    continue;
                }
                Event::Bfd(Some(_)) => continue,
                Event::Bfd(None) => {
                    warn!("the BFD session's task ended; the BGP session goes on without BFD");
                    self.bfd = None;
                    let g = gate.handle(GateInput::BfdGone, Instant::now());
                    self.pass(g, &mut start_at).await;
                    continue;
                }
                // The speaker dropped us without a word: treat it as a deconfigure.
                Event::Control(None) | Event::RoutesChanged(false) => {
                    self.step(Input::Stop {
                        kind: CeaseKind::PeerDeconfigured,
                        reason: String::new(),
                    })
                    .await;
                    self.bfd_admin_down().await;
                    return;
                }
                // The session decides what becomes of it (RFC 4271 §6.8): held aside until then.
                Event::Control(Some(Control::Accepted(stream))) => match self.prepare(stream) {
                    Ok((conn, nh)) => {
                        if self.pending.replace(conn).is_some() {
                            debug!("a newer connection from the peer replaces one not yet taken");
                        }
                        Input::Incoming(nh)
                    }
                    Err(e) => {
                        warn!(error = %e, "could not set up the accepted connection");
                        continue;
                    }
                },
                Event::ConnectDone(res) => {
                    self.connecting = None;
                    match res.and_then(|s| self.prepare(s)) {
                        Ok((conn, nh)) => {
                            self.conn = Some(conn);
                            Input::Connected(nh)
                        }
                        Err(e) => Input::ConnectFailed(e.to_string()),
                    }
                }
                Event::Read(Ok(0)) => Input::Closed("peer closed the connection".into()),
                Event::Read(Ok(n)) => Input::Received(buf[..n].to_vec()),
                Event::Read(Err(e)) => Input::Closed(e.to_string()),
                Event::RoutesChanged(true) => match routes.borrow_and_update().clone() {
                    Some(r) => Input::Routes(r),
                    None => continue,
                },
                Event::TimerDue => {
                    let now = Instant::now();
                    let due = Timer::ALL
                        .into_iter()
                        .find(|t| self.timers[*t as usize].is_some_and(|at| at <= now));
                    let Some(t) = due else { continue };
                    self.timers[t as usize] = None;
                    Input::Fired(t)
                }
            };
            self.step(input).await;
        }
    }

    /// Carries out what the start gate answered: starts the session, or keeps its deadline.
    async fn pass(&mut self, gate: Gate, start_at: &mut Option<Instant>) {
        let why = match gate {
            Gate::Nothing => return,
            Gate::Start(why) => {
                *start_at = None;
                self.step(Input::Start).await;
                why
            }
            Gate::WaitUntil(at, why) => {
                *start_at = Some(at);
                why
            }
        };
        if let Some(line) = why.describe() {
            info!("{line}");
        }
    }

    /// After the BGP session has ended: takes BFD AdminDown, once the peer has closed its side
    /// of the connection (at most a second). A peer that took the BFD Down first (FRR 8.4 and
    /// BIRD 2.0 take an AdminDown for a failure) would end the session itself, with a Hard
    /// Reset that drops the routes a restart means to keep.
    async fn bfd_admin_down(&mut self) {
        let Some(b) = self.bfd.take() else { return };
        if let Some(mut conn) = self.closing.take() {
            let mut buf = [0u8; 4096];
            let closed = async {
                while let Ok(n) = conn.read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(1), closed)
                .await
                .is_err()
            {
                debug!("the peer kept the connection open for a second after our close");
            }
        }
        b.admin_down().await;
    }

    /// Feeds one input and carries out everything that follows from it, including inputs the
    /// actions themselves produce (a failed write closes the connection).
    async fn step(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let outputs = self.session.handle(input, Instant::now());
            // Every output is carried out even after a write failed: the batch may hold the
            // Close, the retry timer and the Down that bring the session back.
            for output in outputs {
                self.execute(output).await;
            }
            if let Some(why) = self.write_failed.take() {
                inputs.push_back(Input::Closed(why));
            }
        }
        if !self.session.has_connection() {
            // The session is the source of truth: no session, no socket (a socket left behind
            // reads EOF forever and starves every other branch of the loop).
            self.conn = None;
        }
        self.status.send_modify(|s| {
            s.state = format!("{:?}", self.session.state());
            s.advertised = self.session.advertised();
        });
    }

    async fn execute(&mut self, output: Output) {
        match output {
            Output::Connect => {
                debug!("connecting");
                self.connecting = Some(Box::pin(connect(self.transport.clone())));
            }
            Output::Send(msgs) => {
                let mut bytes = Vec::with_capacity(msgs.len() * 64);
                for m in &msgs {
                    if let Err(e) = wire::encode_into(m, &mut bytes) {
                        warn!(error = %e, "dropping a message vipd could not encode (a bug; please report it)");
                    }
                }
                if !self.write(&bytes).await {
                    return;
                }
                let updates = msgs
                    .iter()
                    .filter(|m| matches!(m, BgpMessage::Update(_)))
                    .count() as u64;
                if updates > 0 {
                    self.status.send_modify(|s| s.updates_sent += updates);
                }
            }
            Output::Notify(n) => {
                info!(notification = %n, "sending NOTIFICATION");
                if !self.write(&n.encode()).await {
                    return;
                }
                self.status.send_modify(|s| s.notifications_sent += 1);
            }
            Output::Adopt => {
                if let Some(conn) = self.pending.take() {
                    info!("taking the peer's new connection");
                    self.write_failed = None;
                    self.conn = Some(conn);
                }
            }
            Output::Refuse => {
                if let Some(mut conn) = self.pending.take() {
                    info!("refusing a second connection from the peer while the session is Established (RFC 4271 §6.8)");
                    let cease = wire::cease(CeaseKind::ConnectionCollisionResolution, "").encode();
                    // Best effort and brief: the refused connection must not hold up this one.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        conn.write.write_all(&cease).await?;
                        conn.write.shutdown().await
                    })
                    .await;
                }
            }
            Output::Close => {
                // A write that failed belonged to the connection closed now, not the next one.
                self.write_failed = None;
                self.connecting = None;
                if let Some(mut conn) = self.conn.take() {
                    // Best effort: the NOTIFICATION before this was already written.
                    let _ = conn.write.shutdown().await;
                    if self.stopping && self.bfd.is_some() {
                        self.closing = Some(conn);
                    }
                }
            }
            Output::Arm(t, at) => self.timers[t as usize] = Some(at),
            Output::Disarm(t) => self.timers[t as usize] = None,
            Output::Up(neg) => {
                info!(
                    peer_as = neg.peer_as.0,
                    peer_id = %neg.peer_router_id,
                    hold = neg.hold_time,
                    families = ?neg.families,
                    "session established"
                );
                self.status.send_modify(|s| {
                    s.established_since = Some(Instant::now());
                    s.down_since = None;
                    s.families = neg.families.clone();
                    s.last_error = None;
                });
                self.emit(PeerEvent::Up {
                    peer: self.transport.peer,
                });
            }
            Output::Down { reason, retry_in } => {
                let retry = retry_in.map_or(String::new(), |d| {
                    format!("; retrying in {:.1}s", d.as_secs_f64())
                });
                match &reason {
                    DownReason::Stopped => info!("session stopped"),
                    DownReason::ConnectFailed(_) | DownReason::ConnectTimeout => {
                        info!("{reason}{retry}")
                    }
                    _ => warn!("session down: {reason}{retry}"),
                }
                let was_up = self.status.borrow().established_since.is_some();
                let stopped = reason == DownReason::Stopped;
                self.status.send_modify(|s| {
                    if was_up {
                        s.flaps += 1;
                    }
                    if matches!(reason, DownReason::PeerNotification(_)) {
                        s.notifications_received += 1;
                    }
                    *s.downs.entry(reason.label()).or_default() += 1;
                    if was_up || s.down_since.is_none() {
                        s.down_since = (!stopped).then(Instant::now);
                    }
                    s.established_since = None;
                    s.families.clear();
                    s.last_error = Some(reason.to_string());
                });
                self.emit(PeerEvent::Down {
                    peer: self.transport.peer,
                    reason: reason.to_string(),
                });
            }
            Output::Learned(update) => {
                debug!(
                    announced = update.announced.len(),
                    withdrawn = update.withdrawn.len(),
                    "UPDATE from peer (ignored: vipd takes no routes)"
                );
                if let Action::TreatAsWithdraw(why) = &update.action {
                    warn!(
                        prefixes = update.withdrawn.len(),
                        "malformed UPDATE from peer: {why}; its routes are treated as withdrawn (RFC 7606), the session stays up"
                    );
                }
                for why in &update.discarded {
                    warn!("malformed attribute from peer: {why}; attribute discarded (RFC 7606), the session stays up");
                }
                for what in &update.ignored {
                    debug!("{what} from peer ignored: not a family vipd speaks");
                }
                let withdraw = u64::from(matches!(update.action, Action::TreatAsWithdraw(_)));
                self.status.send_modify(|s| {
                    s.updates_received += 1;
                    s.updates_treated_as_withdraw += withdraw;
                    s.attributes_discarded += update.discarded.len() as u64;
                });
                self.emit(PeerEvent::Learned {
                    peer: self.transport.peer,
                    announced: update.announced,
                    withdrawn: update.withdrawn,
                });
            }
        }
    }

    fn emit(&self, event: PeerEvent) {
        let Some(tx) = &self.events else { return };
        match tx.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(PeerEvent::Learned { .. })) => {
                debug!("peer events queue full: an UPDATE's event is dropped");
            }
            // A state change waits for room on its own task, so the peer's I/O never blocks
            // on the reader.
            Err(mpsc::error::TrySendError::Full(state)) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(state).await;
                });
            }
        }
    }

    /// Writes to the current connection; a failure or a peer that takes nothing for the write
    /// timeout is the connection closing, fed back to the session.
    /// `false` when nothing was written; a failed write drops the connection and is fed to the
    /// session as its closing once the current batch is done.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let write = async {
            conn.write.write_all(bytes).await?;
            conn.write.flush().await
        };
        let failed = match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => format!("write failed: {e}"),
            Err(_) => format!("peer took no data for {}s", self.write_timeout.as_secs()),
        };
        self.conn = None;
        self.write_failed = Some(failed);
        false
    }

    /// Applies per-connection options to a connected stream and works out our next hops.
    fn prepare(&mut self, stream: TcpStream) -> io::Result<(Conn, NextHops)> {
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let peer = stream.peer_addr()?;
        if let Some(ttl) = self.transport.ttl {
            set_ttl(&socket2::SockRef::from(&stream), peer.ip(), ttl)?;
        }
        let nh = next_hops(&self.transport, local.ip(), peer.ip(), &Interfaces::read()?);
        info!(local = %local, remote = %peer, "TCP connected");
        let (read, write) = stream.into_split();
        Ok((Conn { read, write }, nh))
    }
}

enum Event {
    Control(Option<Control>),
    Bfd(Option<bfd::driver::Event>),
    /// The start gate's deadline passed.
    GateDeadline,
    ConnectDone(io::Result<TcpStream>),
    Read(io::Result<usize>),
    RoutesChanged(bool),
    TimerDue,
}

async fn poll_connect(connecting: &mut Option<Connecting>) -> io::Result<TcpStream> {
    match connecting {
        Some(c) => c.await,
        None => std::future::pending().await,
    }
}

async fn bfd_event(bfd: &mut Option<bfd::driver::Handle>) -> Option<bfd::driver::Event> {
    match bfd {
        Some(b) => b.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn read_some(conn: Option<&mut Conn>, buf: &mut [u8]) -> io::Result<usize> {
    match conn {
        Some(c) => c.read.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn set_ttl(sock: &socket2::SockRef<'_>, peer: IpAddr, ttl: u32) -> io::Result<()> {
    match peer {
        IpAddr::V4(_) => sock.set_ttl_v4(ttl),
        IpAddr::V6(_) => sock.set_unicast_hops_v6(ttl),
    }
}

/// Opens the TCP connection: MD5 key and TTL before the SYN, bound to the source address or
/// interface when configured.
pub async fn connect(t: Transport) -> io::Result<TcpStream> {
    let sock = match t.peer {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(pw) = &t.password {
        sys::set_tcp_md5(&sock, t.peer.ip(), pw.expose().as_bytes())?;
    }
    if let Some(ttl) = t.ttl {
        set_ttl(&socket2::SockRef::from(&sock), t.peer.ip(), ttl)?;
    }
    if let Some(ifname) = &t.source_if {
        socket2::SockRef::from(&sock).bind_device(Some(ifname.as_bytes()))?;
    }
    if let Some(ip) = t.source_ip {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    sock.connect(t.peer).await
}

/// Next hops for a session whose local end is `local`: the session's own family from the
/// connection, the other family as `mpbgp_nexthop` says, and an IPv6 link-local one when the
/// peer is on our link.
pub fn next_hops(t: &Transport, local: IpAddr, peer: IpAddr, ifs: &Interfaces) -> NextHops {
    let ifname = t
        .source_if
        .clone()
        .or_else(|| ifs.holding(local).map(str::to_owned));
    let other = match t.mpbgp {
        MpBgpNextHop::None => None,
        MpBgpNextHop::Fixed => match local {
            IpAddr::V4(_) => t.mpbgp_v6.map(IpAddr::V6),
            IpAddr::V6(_) => t.mpbgp_v4.map(IpAddr::V4),
        },
        MpBgpNextHop::AutoSourceIp | MpBgpNextHop::AutoSourceIf => {
            ifname.as_deref().and_then(|i| ifs.other_family(i, local))
        }
    };
    let mut nh = NextHops::default();
    for ip in [Some(local), other].into_iter().flatten() {
        match ip {
            IpAddr::V4(v4) => nh.v4 = Some(v4),
            IpAddr::V6(v6) => nh.v6 = Some(v6),
        }
    }
    if let (IpAddr::V6(_), Some(i)) = (peer, ifname.as_deref()) {
        if ifs.on_link(i, peer) {
            nh.v6_link_local = ifs.link_local_v6(i);
        }
    }
    nh
}

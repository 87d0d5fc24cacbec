//! [pure] One BGP session after RFC 4271 §8: events in, actions out.
//!
//! The driver feeds [`Input`]s (connection results, received bytes, fired timers, the desired
//! route set) with the current time and carries out the [`Output`]s in order. Nothing here
//! reads a clock, touches a socket or spawns a task, so every transition is tested by exact
//! action lists.
//!
//! A session is either active (it connects) or passive (it waits for the driver to hand it an
//! accepted connection). Every way a connection ends — the peer's NOTIFICATION, a FIN or RST, an
//! error we detect, a timer — goes through one place ([`Session::fail`]) that closes the
//! connection and goes back to Active: an active session reconnects after the backoff, a
//! passive one takes the peer's next connection. A passive session that is handed a second
//! connection from its peer resolves the collision (§6.8) here, not in the driver.

use crate::bgp::adj_out::{self, Changes};
use crate::bgp::inbound::{self, Kind, Rejected, Update, UpdateRules};
use crate::bgp::notification::{self, code, Notification};
use crate::bgp::open::{negotiate, GracefulRestartOffer, Negotiated, OpenOffer};
use crate::bgp::types::{Asn, Family, HoldTime, RouteSet, RouterId};
use crate::bgp::wire::{self, CeaseKind, Framer, UpdateContext};
use netgauze_bgp_pkt::BgpMessage;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an OPEN may take to arrive (RFC 4271 §8.2.2 suggests 4 minutes).
pub const OPEN_HOLD: Duration = Duration::from_secs(240);
/// How long a TCP connect may take before it is abandoned and retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The session's timers (RFC 4271 §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
}

impl Timer {
    pub const ALL: [Timer; 3] = [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive];
    fn index(self) -> usize {
        self as usize
    }
}

/// Exponential ConnectRetry backoff with RFC 4271 §10 jitter (each delay × 0.75..1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// How long a session must stay Established to count as recovered, so the next failure
    /// starts the backoff from `first` again; shorter sessions keep climbing it (RFC 4271
    /// §8.1.1 DampPeerOscillations: a peer that resets every session at once, say over an
    /// UPDATE it sends again each time, is not hammered at one-second intervals).
    pub stable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
            stable: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (at least 1), before jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        self.first.saturating_mul(1 << exp).min(self.max)
    }
}

/// Settings of one session that do not change while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: Asn,
    /// 0 accepts whatever AS the peer says.
    pub remote_as: Asn,
    pub router_id: RouterId,
    pub hold_time: HoldTime,
    /// Configured keepalive interval; a third of the negotiated hold time when `None`.
    pub keepalive: Option<Duration>,
    pub passive: bool,
    pub backoff: Backoff,
    /// Offer graceful restart (RFC 4724) as the restarting speaker; `None` offers none.
    pub graceful_restart: Option<GracefulRestartOffer>,
}

/// Next hops for our routes, found by the driver from the connection's local address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NextHops {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    pub v6_link_local: Option<Ipv6Addr>,
}

/// Events. RFC 4271 §8.1 event numbers in the comments.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Event 1/3: ManualStart / AutomaticStart.
    Start,
    /// Event 2: ManualStop. Sends a Cease with this subcode and text when a session exists
    /// (inside a Hard Reset when the N bit was negotiated: the routes must go).
    Stop { kind: CeaseKind, reason: String },
    /// ManualStop for a restart of vipd: with a graceful-restart peer the session ends so that
    /// the peer keeps our routes as stale (RFC 4724: no NOTIFICATION, or with the N bit a
    /// Cease that is not a Hard Reset, RFC 8538); with any other peer this is [`Input::Stop`].
    Restart { reason: String },
    /// Event 16/17: our connection attempt completed.
    Connected(NextHops),
    /// Event 14/15: the peer connected to us (passive mode). The driver holds the new
    /// connection aside until the session says [`Output::Adopt`] or [`Output::Refuse`].
    Incoming(NextHops),
    /// Event 18 in Connect: the attempt failed.
    ConnectFailed(String),
    /// Event 18 later on: the peer closed or the socket failed.
    Closed(String),
    /// Bytes read from the connection (framed and decoded here: Events 19–28).
    Received(Vec<u8>),
    /// Events 9, 10, 11.
    Fired(Timer),
    /// The BFD session to the peer failed (RFC 5882 §3.2): the session ends at once, with a
    /// Cease (BFD Down, RFC 9384; inside a Hard Reset with the N bit) in case the path still
    /// carries it.
    BfdDown(String),
    /// The whole desired route set; only the difference to what the peer holds is sent.
    Routes(Arc<RouteSet>),
}

/// Actions, carried out by the driver in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open a TCP connection to the peer.
    Connect,
    Send(Vec<BgpMessage>),
    /// Send a NOTIFICATION on the current connection.
    Notify(Notification),
    /// Close the connection (or abandon the connect attempt).
    Close,
    /// Make the connection held aside (from [`Input::Incoming`]) the current one.
    Adopt,
    /// Send a Cease (Connection Collision Resolution) on the connection held aside and close it.
    Refuse,
    Arm(Timer, Instant),
    Disarm(Timer),
    /// The session reached Established.
    Up(Negotiated),
    /// The session (or an attempt at one) ended; `retry_in` is when the next attempt starts.
    Down {
        reason: DownReason,
        retry_in: Option<Duration>,
    },
    /// The peer sent an UPDATE (checked as RFC 7606 says). vipd takes no routes; the driver
    /// reports and counts these.
    Learned(Update),
}

/// Why a session went down, for logs, metrics and `vipd status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    ConnectFailed(String),
    ConnectTimeout,
    /// The peer closed the connection (FIN or RST) or a read or write failed.
    Closed(String),
    HoldTimerExpired,
    /// The peer's NOTIFICATION, whatever its code.
    PeerNotification(notification::Received),
    OpenRejected(String),
    /// We sent this NOTIFICATION because of what the peer sent.
    Malformed(String),
    UnexpectedMessage(String),
    /// A newer connection from the peer replaced one that had not reached Established.
    Collision,
    Stopped,
    /// Stopped for a restart: the peer keeps our routes for the restart time.
    Restarting,
    /// BFD detected a failure of the path to the peer.
    BfdDown(String),
}

impl DownReason {
    /// A short stable name, the `reason` label of `vipd_bgp_session_downs_total`.
    pub fn label(&self) -> &'static str {
        match self {
            DownReason::ConnectFailed(_) => "connect_failed",
            DownReason::ConnectTimeout => "connect_timeout",
            DownReason::Closed(_) => "connection_closed",
            DownReason::HoldTimerExpired => "hold_timer_expired",
            DownReason::PeerNotification(_) => "peer_notification",
            DownReason::OpenRejected(_) => "open_rejected",
            DownReason::Malformed(_) => "malformed_message",
            DownReason::UnexpectedMessage(_) => "unexpected_message",
            DownReason::Collision => "collision",
            DownReason::Stopped => "stopped",
            DownReason::Restarting => "restarting",
            DownReason::BfdDown(_) => "bfd_down",
        }
    }
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            DownReason::ConnectTimeout => write!(
                f,
                "no answer to our connection attempt within {}s (peer down, filtered, or a TCP-MD5 password mismatch, which the kernel drops silently)",
                CONNECT_TIMEOUT.as_secs()
            ),
            DownReason::Closed(e) => write!(f, "connection closed: {e}"),
            DownReason::HoldTimerExpired => write!(f, "hold timer expired"),
            DownReason::PeerNotification(n) => write!(f, "peer sent NOTIFICATION {n}"),
            DownReason::OpenRejected(r) => write!(f, "peer's OPEN refused: {r}"),
            DownReason::Malformed(m) => write!(f, "malformed message from peer: {m}"),
            DownReason::UnexpectedMessage(m) => write!(f, "unexpected message: {m}"),
            DownReason::Collision => write!(
                f,
                "the peer connected again before this connection reached Established; the newer one is kept"
            ),
            DownReason::Stopped => write!(f, "stopped"),
            DownReason::Restarting => write!(
                f,
                "stopped for a restart: the peer keeps our routes as stale until the new process sends them again"
            ),
            DownReason::BfdDown(why) => write!(f, "BFD session down: {why}"),
        }
    }
}

/// RFC 4271 §8.2.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// One peer's session.
pub struct Session {
    cfg: SessionConfig,
    state: State,
    /// Consecutive failed attempts, for the backoff. Reset only by a session that stayed
    /// Established for [`Backoff::stable`]: a peer that resets every session right after it comes
    /// up is retried ever more slowly (RFC 4271 §8.1.1 DampPeerOscillations).
    failures: u32,
    /// When the current session reached Established.
    established_at: Option<Instant>,
    armed: [bool; 3],
    rng: fastrand::Rng,
    framer: Framer,
    offer: Option<OpenOffer>,
    update_ctx: Option<UpdateContext>,
    negotiated: Option<Negotiated>,
    /// What the peer should hold.
    desired: Arc<RouteSet>,
    /// `desired` has been given at least once: the agent knows its table. Until then a session
    /// that comes up sends nothing and no End-of-RIB (RFC 4724 §4.1: the restarting speaker
    /// defers its End-of-RIB until its routes are known), so a graceful-restart peer keeps the
    /// previous process's routes rather than taking an empty table for the whole one.
    table_known: bool,
    /// This session has sent its End-of-RIB.
    eor_sent: bool,
    /// What the peer holds from us in this connection.
    sent: Arc<RouteSet>,
    /// How many prefixes of `sent` the peer takes (negotiated families), counted when `sent`
    /// changes: the driver reads it after every input, and counting 100,000 prefixes per
    /// KEEPALIVE cost more CPU than sending them.
    advertised: usize,
}

impl Session {
    /// `seed` drives the backoff jitter, so tests are repeatable.
    pub fn new(cfg: SessionConfig, seed: u64) -> Self {
        Session {
            state: State::Idle,
            failures: 0,
            established_at: None,
            armed: [false; 3],
            rng: fastrand::Rng::with_seed(seed),
            framer: Framer::default(),
            offer: None,
            update_ctx: None,
            negotiated: None,
            desired: Arc::new(RouteSet::new()),
            table_known: false,
            eor_sent: false,
            sent: Arc::new(RouteSet::new()),
            advertised: 0,
            cfg,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Prefixes the peer holds from us now.
    pub fn advertised(&self) -> usize {
        self.advertised
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Routes(routes) => {
                self.desired = routes;
                self.table_known = true;
                if self.state == State::Established {
                    self.sync_routes(&mut out);
                    self.send_end_of_rib(&mut out);
                }
            }
            Input::Stop { kind, reason } => self.stop(kind, &reason, &mut out),
            Input::Restart { reason } => self.restart(&reason, &mut out),
            Input::Start => self.start(now, &mut out),
            // Only our own attempt completes in Connect; a result after it was abandoned is moot.
            Input::Connected(next_hops) if self.state == State::Connect => {
                self.open_connection(next_hops, now, &mut out)
            }
            Input::Connected(_) => {}
            Input::Incoming(next_hops) => self.incoming(next_hops, now, &mut out),
            Input::ConnectFailed(e) if self.state == State::Connect => {
                self.fail(DownReason::ConnectFailed(e), now, &mut out)
            }
            Input::ConnectFailed(_) => {}
            Input::Closed(e) => {
                if self.has_connection() {
                    self.fail(DownReason::Closed(e), now, &mut out);
                }
            }
            Input::Received(bytes) => self.received(&bytes, now, &mut out),
            Input::BfdDown(why) => {
                if self.has_connection() {
                    // The path is gone: the peer must not keep our routes as stale.
                    out.push(Output::Notify(self.hard_cease(CeaseKind::BfdDown, "")));
                    self.fail(DownReason::BfdDown(why), now, &mut out);
                }
            }
            Input::Fired(timer) => {
                self.armed[timer.index()] = false;
                self.fired(timer, now, &mut out);
            }
        }
        out
    }

    /// A TCP connection exists (OPEN sent or later).
    pub fn has_connection(&self) -> bool {
        matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.state != State::Idle {
            return;
        }
        if self.cfg.passive {
            self.state = State::Active;
        } else {
            self.begin_connect(now, out);
        }
    }

    fn begin_connect(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.state = State::Connect;
        out.push(Output::Connect);
        self.arm(Timer::ConnectRetry, now + CONNECT_TIMEOUT, out);
    }

    /// The peer connected to us. RFC 4271 §6.8 with both connections opened by the peer (a
    /// passive session never connects): the peer opens a second one only after giving up on
    /// the first — it restarted, or the first is half-open behind a middlebox — so a newer
    /// connection replaces one that has not reached Established. An Established session is
    /// kept and the newcomer refused (§6.8's last rule); if that session is in fact dead, our
    /// next KEEPALIVE meets an RST or the hold timer ends it, and the peer's retry gets in.
    fn incoming(&mut self, nh: NextHops, now: Instant, out: &mut Vec<Output>) {
        match self.state {
            State::Idle | State::Established => out.push(Output::Refuse),
            State::OpenSent | State::OpenConfirm => {
                out.push(Output::Notify(wire::cease(
                    CeaseKind::ConnectionCollisionResolution,
                    "",
                )));
                out.push(Output::Close);
                self.end_connection(out);
                self.state = State::Active;
                out.push(Output::Down {
                    reason: DownReason::Collision,
                    retry_in: None,
                });
                out.push(Output::Adopt);
                self.open_connection(nh, now, out);
            }
            State::Connect | State::Active => {
                if self.state == State::Connect {
                    // Our own attempt is abandoned for the peer's connection.
                    out.push(Output::Close);
                }
                out.push(Output::Adopt);
                self.open_connection(nh, now, out);
            }
        }
    }

    /// A connection is up (ours or the peer's): send our OPEN and wait for theirs.
    fn open_connection(&mut self, nh: NextHops, now: Instant, out: &mut Vec<Output>) {
        self.disarm(Timer::ConnectRetry, out);
        let families: Vec<Family> = [
            (Family::Ipv4, nh.v4.is_some()),
            (Family::Ipv6, nh.v6.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, ok)| ok.then_some(f))
        .collect();
        let offer = OpenOffer {
            local_as: self.cfg.local_as,
            router_id: self.cfg.router_id,
            hold_time: self.cfg.hold_time,
            families,
            graceful_restart: self.cfg.graceful_restart,
        };
        self.update_ctx = Some(UpdateContext {
            local_as: self.cfg.local_as,
            ebgp: self.cfg.remote_as != self.cfg.local_as,
            asn4: false,
            next_hop_v4: nh.v4,
            next_hop_v6: nh.v6,
            next_hop_v6_link_local: nh.v6_link_local,
        });
        out.push(Output::Send(vec![offer.message()]));
        self.offer = Some(offer);
        self.framer.clear();
        self.arm(Timer::Hold, now + OPEN_HOLD, out);
        self.state = State::OpenSent;
    }

    fn received(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<Output>) {
        if !self.has_connection() {
            return;
        }
        self.framer.extend(bytes);
        // Stop at the first failure: the connection is closed and the rest is moot.
        while self.has_connection() {
            let frame = match self.framer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return self.rejected(e, now, out),
            };
            if let Err(e) = self.message(&frame, now, out) {
                return self.rejected(e, now, out);
            }
        }
    }

    /// One framed message: its header is checked first (RFC 4271 §6.1), then whether its type
    /// belongs in this state, and only then its body, so an OPEN arriving in Established is the
    /// FSM error it is whatever it contains.
    fn message(
        &mut self,
        frame: &[u8],
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejected> {
        let msg = inbound::message(frame)?;
        match (self.state, msg.kind) {
            (_, Kind::Notification) => {
                let received = Notification::from_body(msg.body);
                self.fail(DownReason::PeerNotification(received), now, out);
            }
            (State::OpenSent, Kind::Open) => {
                let open = inbound::open(msg.body)?;
                let Some(offer) = self.offer.as_ref() else {
                    return Ok(());
                };
                match negotiate(offer, self.cfg.remote_as, self.cfg.keepalive, &open) {
                    Ok(neg) => {
                        if let Some(ctx) = self.update_ctx.as_mut() {
                            ctx.asn4 = neg.asn4;
                        }
                        out.push(Output::Send(vec![BgpMessage::KeepAlive]));
                        self.arm_session_timers(&neg, now, out);
                        self.negotiated = Some(neg);
                        self.state = State::OpenConfirm;
                    }
                    Err(rejected) => {
                        out.push(Output::Notify(rejected.notification));
                        self.fail(DownReason::OpenRejected(rejected.reason), now, out);
                    }
                }
            }
            (State::OpenConfirm, Kind::KeepAlive) => self.established(now, out),
            (State::Established, Kind::KeepAlive) => self.restart_hold(now, out),
            (State::Established, Kind::Update) => {
                let update = inbound::update(msg.body, self.update_rules())?;
                self.restart_hold(now, out);
                out.push(Output::Learned(update));
            }
            (State::Established, Kind::RouteRefresh) => {
                let rr = inbound::route_refresh(msg)?;
                self.restart_hold(now, out);
                // RFC 2918 §4: re-advertise the Adj-RIB-Out of that family. Subtypes other than
                // a request (RFC 7313's BoRR/EoRR, unassigned ones) and families we did not
                // negotiate are ignored, as RFC 7313 §5 and RFC 2918 §4 say.
                if let Some(family) = rr.requested().filter(|f| self.families().contains(f)) {
                    let all = adj_out::all_of(&self.sent, family);
                    self.send_changes(all, out);
                }
            }
            (state, kind) => return Err(unexpected(state, kind)),
        }
        Ok(())
    }

    fn established(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.state = State::Established;
        self.established_at = Some(now);
        self.restart_hold(now, out);
        if let Some(neg) = &self.negotiated {
            out.push(Output::Up(neg.clone()));
        }
        self.eor_sent = false;
        if self.table_known {
            self.sync_routes(out);
            self.send_end_of_rib(out);
        }
    }

    /// End-of-RIB for every family, once per session, after the table.
    fn send_end_of_rib(&mut self, out: &mut Vec<Output>) {
        if self.eor_sent {
            return;
        }
        self.eor_sent = true;
        let eor: Vec<BgpMessage> = self
            .families()
            .iter()
            .map(|f| wire::end_of_rib(*f))
            .collect();
        if !eor.is_empty() {
            out.push(Output::Send(eor));
        }
    }

    fn update_rules(&self) -> UpdateRules {
        let neg = self.negotiated.as_ref();
        UpdateRules {
            asn4: neg.is_some_and(|n| n.asn4),
            ebgp: neg.map_or(self.cfg.remote_as, |n| n.peer_as) != self.cfg.local_as,
        }
    }

    fn fired(&mut self, timer: Timer, now: Instant, out: &mut Vec<Output>) {
        match (timer, self.state) {
            // Connect attempt timed out (Event 9 in Connect).
            (Timer::ConnectRetry, State::Connect) => {
                self.fail(DownReason::ConnectTimeout, now, out)
            }
            // Backoff over (Event 9 in Active): try again.
            (Timer::ConnectRetry, State::Active) if !self.cfg.passive => {
                self.begin_connect(now, out)
            }
            (Timer::Hold, State::OpenSent | State::OpenConfirm | State::Established) => {
                out.push(Output::Notify(Notification::new(
                    code::HOLD_TIMER_EXPIRED,
                    0,
                    [],
                )));
                self.fail(DownReason::HoldTimerExpired, now, out);
            }
            (Timer::Keepalive, State::OpenConfirm | State::Established) => {
                out.push(Output::Send(vec![BgpMessage::KeepAlive]));
                if let Some(k) = self.negotiated.as_ref().and_then(|n| n.keepalive) {
                    self.arm(Timer::Keepalive, now + k, out);
                }
            }
            _ => {}
        }
    }

    fn stop(&mut self, kind: CeaseKind, reason: &str, out: &mut Vec<Output>) {
        let had_session = self.has_connection();
        if had_session {
            out.push(Output::Notify(self.hard_cease(kind, reason)));
        }
        if had_session || self.state == State::Connect {
            out.push(Output::Close);
        }
        self.idle(had_session.then_some(DownReason::Stopped), out);
    }

    /// A Cease that makes the peer drop our routes: inside a Hard Reset when the N bit was
    /// negotiated (RFC 8538 §3), as a plain Cease would leave them stale.
    fn hard_cease(&self, kind: CeaseKind, reason: &str) -> Notification {
        let cease = wire::cease(kind, reason);
        if self
            .negotiated
            .as_ref()
            .is_some_and(|n| n.graceful_notification)
        {
            wire::hard_reset(&cease)
        } else {
            cease
        }
    }

    /// Stopped: no timer, no connection, Idle; `down` reported if a session ended.
    fn idle(&mut self, down: Option<DownReason>, out: &mut Vec<Output>) {
        for t in Timer::ALL {
            self.disarm(t, out);
        }
        if let Some(reason) = down {
            out.push(Output::Down {
                reason,
                retry_in: None,
            });
        }
        self.reset_connection();
        self.established_at = None;
        self.state = State::Idle;
    }

    /// Ends an Established session for a restart so that a graceful-restart peer keeps the
    /// routes: with the N bit a Cease (Administrative Reset) that is not a Hard Reset, without
    /// it no NOTIFICATION at all (RFC 4724 §4.2 treats any as the end of the routes). A peer
    /// without graceful restart, or a session not yet Established, is stopped as usual.
    fn restart(&mut self, reason: &str, out: &mut Vec<Output>) {
        let graceful = match (&self.negotiated, self.state) {
            (Some(n), State::Established) if n.graceful_restart => Some(n.graceful_notification),
            _ => None,
        };
        let Some(notification) = graceful else {
            return self.stop(CeaseKind::AdministrativeShutdown, reason, out);
        };
        if notification {
            out.push(Output::Notify(wire::cease(
                CeaseKind::AdministrativeReset,
                reason,
            )));
        }
        out.push(Output::Close);
        self.idle(Some(DownReason::Restarting), out);
    }

    /// What the peer sent ends the session: tell it why (RFC 4271 §6), then fail.
    fn rejected(&mut self, e: Rejected, now: Instant, out: &mut Vec<Output>) {
        let reason = match e.notification.code {
            code::FSM => DownReason::UnexpectedMessage(e.description),
            _ => DownReason::Malformed(e.description),
        };
        out.push(Output::Notify(e.notification));
        self.fail(reason, now, out);
    }

    /// The one way out of a connection or an attempt at one, whatever ended it: close it, and
    /// go back to Active — an active session reconnects after the backoff, a passive one waits
    /// for the peer's next connection.
    fn fail(&mut self, reason: DownReason, now: Instant, out: &mut Vec<Output>) {
        if self.has_connection() || self.state == State::Connect {
            out.push(Output::Close);
        }
        self.end_connection(out);
        if let Some(since) = self.established_at.take() {
            if now.saturating_duration_since(since) >= self.cfg.backoff.stable {
                self.failures = 0;
            }
        }
        self.failures = self.failures.saturating_add(1);
        self.state = State::Active;
        let retry_in = if self.cfg.passive {
            None
        } else {
            let jitter = 0.75 + 0.25 * self.rng.f64();
            let delay = self.cfg.backoff.delay(self.failures).mul_f64(jitter);
            self.arm(Timer::ConnectRetry, now + delay, out);
            Some(delay)
        };
        out.push(Output::Down { reason, retry_in });
    }

    /// Forgets the connection: its timers, buffers and what the peer held from us.
    fn end_connection(&mut self, out: &mut Vec<Output>) {
        for t in Timer::ALL {
            self.disarm(t, out);
        }
        self.reset_connection();
    }

    fn reset_connection(&mut self) {
        self.framer.clear();
        self.offer = None;
        self.update_ctx = None;
        self.negotiated = None;
        self.sent = Arc::new(RouteSet::new());
        self.advertised = 0;
    }

    fn families(&self) -> Vec<Family> {
        self.negotiated
            .as_ref()
            .map(|n| n.families.clone())
            .unwrap_or_default()
    }

    fn sync_routes(&mut self, out: &mut Vec<Output>) {
        if Arc::ptr_eq(&self.sent, &self.desired) {
            return;
        }
        let changes = adj_out::diff(&self.sent, &self.desired, &self.families());
        self.sent = Arc::clone(&self.desired);
        let families = self.families();
        self.advertised = self
            .sent
            .keys()
            .filter(|p| families.contains(&Family::of_prefix(p)))
            .count();
        self.send_changes(changes, out);
    }

    fn send_changes(&self, changes: Changes, out: &mut Vec<Output>) {
        if changes.is_empty() {
            return;
        }
        let Some(ctx) = &self.update_ctx else { return };
        let mut msgs = Vec::new();
        // Withdraw first: a prefix never appears in both lists, and a peer that is short of
        // memory frees space before it takes new routes.
        for (family, prefixes) in &changes.withdraw {
            msgs.extend(wire::withdrawals(*family, prefixes));
        }
        for ((family, attrs), prefixes) in &changes.announce {
            msgs.extend(ctx.announcements(*family, attrs, prefixes));
        }
        out.push(Output::Send(msgs));
    }

    fn arm_session_timers(&mut self, neg: &Negotiated, now: Instant, out: &mut Vec<Output>) {
        if let Some(k) = neg.keepalive {
            self.arm(Timer::Keepalive, now + k, out);
        }
        if neg.hold_time > 0 {
            self.arm(
                Timer::Hold,
                now + Duration::from_secs(u64::from(neg.hold_time)),
                out,
            );
        } else {
            self.disarm(Timer::Hold, out);
        }
    }

    fn restart_hold(&mut self, now: Instant, out: &mut Vec<Output>) {
        if let Some(hold) = self.negotiated.as_ref().map(|n| n.hold_time) {
            if hold > 0 {
                self.arm(Timer::Hold, now + Duration::from_secs(u64::from(hold)), out);
            }
        }
    }

    fn arm(&mut self, t: Timer, at: Instant, out: &mut Vec<Output>) {
        self.armed[t.index()] = true;
        out.push(Output::Arm(t, at));
    }

    fn disarm(&mut self, t: Timer, out: &mut Vec<Output>) {
        if std::mem::take(&mut self.armed[t.index()]) {
            out.push(Output::Disarm(t));
        }
    }
}

/// RFC 6608: the FSM error for a message type that does not belong in `state`; the data is
/// the type.
fn unexpected(state: State, kind: Kind) -> Rejected {
    let (subcode, name) = match state {
        State::OpenSent => (1, "OpenSent"),
        State::OpenConfirm => (2, "OpenConfirm"),
        _ => (3, "Established"),
    };
    let type_code = match kind {
        Kind::Open => 1,
        Kind::Update => 2,
        Kind::Notification => 3,
        Kind::KeepAlive => 4,
        Kind::RouteRefresh => 5,
    };
    Rejected {
        notification: Notification::new(code::FSM, subcode, [type_code]),
        description: format!("{kind:?} in state {name}"),
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;

//! [pure] One BGP session after RFC 4271 §8: events in, actions out.
//!
//! The driver feeds [`Input`]s (connection results, received bytes, fired timers, the desired
//! route set) with the current time and carries out the [`Output`]s in order. Nothing here
//! reads a clock, touches a socket or spawns a task, so every transition is tested by exact
//! action lists.
//!
//! A session is either active (it connects) or passive (it waits for the driver to hand it an
//! accepted connection), never both, so connection collisions (§6.8) cannot arise.

use crate::bgp::adj_out::{self, Changes};
use crate::bgp::open::{negotiate, Negotiated, OpenOffer};
use crate::bgp::types::{Asn, Family, HoldTime, RouteSet, RouterId};
use crate::bgp::wire::{self, CeaseKind, DecodeError, Framer, UpdateContext};
use ipnet::IpNet;
use netgauze_bgp_pkt::notification::{
    BgpNotificationMessage, FiniteStateMachineError, HoldTimerExpiredError,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
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
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
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
    /// Event 2: ManualStop. Sends a Cease with this subcode and text when a session exists.
    Stop { kind: CeaseKind, reason: String },
    /// Events 16/17: the TCP connection is up (ours completed, or the peer's was accepted).
    Connected(NextHops),
    /// Event 18 in Connect: the attempt failed.
    ConnectFailed(String),
    /// Event 18 later on: the peer closed or the socket failed.
    Closed(String),
    /// Bytes read from the connection (framed and decoded here: Events 19–28).
    Received(Vec<u8>),
    /// Events 9, 10, 11.
    Fired(Timer),
    /// The whole desired route set; only the difference to what the peer holds is sent.
    Routes(Arc<RouteSet>),
}

/// Actions, carried out by the driver in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open a TCP connection to the peer.
    Connect,
    Send(Vec<BgpMessage>),
    /// Close the connection (or abandon the connect attempt).
    Close,
    Arm(Timer, Instant),
    Disarm(Timer),
    /// The session reached Established.
    Up(Negotiated),
    /// The session (or an attempt at one) ended; `retry_in` is when the next attempt starts.
    Down {
        reason: DownReason,
        retry_in: Option<Duration>,
    },
    /// The peer announced or withdrew routes. vipd takes no routes; the driver counts these.
    Learned {
        announced: Vec<IpNet>,
        withdrawn: Vec<IpNet>,
    },
}

/// Why a session went down, for logs, metrics and `vipd status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    ConnectFailed(String),
    ConnectTimeout,
    Closed(String),
    HoldTimerExpired,
    PeerNotification(String),
    OpenRejected(String),
    Malformed(String),
    UnexpectedMessage(String),
    Stopped,
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
            DownReason::Stopped => write!(f, "stopped"),
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
    /// Consecutive failed attempts, for the backoff; reset on Established.
    failures: u32,
    armed: [bool; 3],
    rng: fastrand::Rng,
    framer: Framer,
    parse_ctx: BgpParsingContext,
    offer: Option<OpenOffer>,
    update_ctx: Option<UpdateContext>,
    negotiated: Option<Negotiated>,
    /// What the peer should hold.
    desired: Arc<RouteSet>,
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
            cfg,
            state: State::Idle,
            failures: 0,
            armed: [false; 3],
            rng: fastrand::Rng::with_seed(seed),
            framer: Framer::default(),
            parse_ctx: wire::parsing_context(false),
            offer: None,
            update_ctx: None,
            negotiated: None,
            desired: Arc::new(RouteSet::new()),
            sent: Arc::new(RouteSet::new()),
            advertised: 0,
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
                if self.state == State::Established {
                    self.sync_routes(&mut out);
                }
            }
            Input::Stop { kind, reason } => self.stop(kind, &reason, &mut out),
            Input::Start => self.start(now, &mut out),
            Input::Connected(next_hops) => self.connected(next_hops, now, &mut out),
            Input::ConnectFailed(e) if self.state == State::Connect => {
                self.fail(DownReason::ConnectFailed(e), now, &mut out)
            }
            Input::ConnectFailed(_) => {}
            Input::Closed(e) => {
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    self.fail(DownReason::Closed(e), now, &mut out);
                }
            }
            Input::Received(bytes) => self.received(&bytes, now, &mut out),
            Input::Fired(timer) => {
                self.armed[timer.index()] = false;
                self.fired(timer, now, &mut out);
            }
        }
        out
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

    fn connected(&mut self, nh: NextHops, now: Instant, out: &mut Vec<Output>) {
        if !matches!(self.state, State::Connect | State::Active) {
            // A second connection while one is up: refuse it (passive peers only).
            return;
        }
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
        self.parse_ctx = wire::parsing_context(false);
        self.arm(Timer::Hold, now + OPEN_HOLD, out);
        self.state = State::OpenSent;
    }

    fn received(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<Output>) {
        if !matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            return;
        }
        self.framer.extend(bytes);
        // Stop at the first failure: the connection is closed and the rest is moot.
        while matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            let frame = match self.framer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return self.malformed(e, now, out),
            };
            match wire::decode(&frame, &mut self.parse_ctx) {
                Ok(msg) => self.message(msg, now, out),
                Err(e) => return self.malformed(e, now, out),
            }
        }
    }

    fn message(&mut self, msg: BgpMessage, now: Instant, out: &mut Vec<Output>) {
        match (self.state, msg) {
            (_, BgpMessage::Notification(n)) => {
                out.push(Output::Close);
                self.fail(DownReason::PeerNotification(describe(&n)), now, out);
            }
            (State::OpenSent, BgpMessage::Open(open)) => {
                let Some(offer) = self.offer.as_ref() else {
                    return;
                };
                match negotiate(offer, self.cfg.remote_as, self.cfg.keepalive, &open) {
                    Ok(neg) => {
                        self.parse_ctx.set_asn4(neg.asn4);
                        if let Some(ctx) = self.update_ctx.as_mut() {
                            ctx.asn4 = neg.asn4;
                        }
                        out.push(Output::Send(vec![BgpMessage::KeepAlive]));
                        self.arm_session_timers(&neg, now, out);
                        self.negotiated = Some(neg);
                        self.state = State::OpenConfirm;
                    }
                    Err(rejected) => {
                        out.push(Output::Send(vec![BgpMessage::Notification(
                            rejected.notification,
                        )]));
                        out.push(Output::Close);
                        self.fail(DownReason::OpenRejected(rejected.reason), now, out);
                    }
                }
            }
            (State::OpenConfirm, BgpMessage::KeepAlive) => {
                self.state = State::Established;
                self.failures = 0;
                self.restart_hold(now, out);
                if let Some(neg) = &self.negotiated {
                    out.push(Output::Up(neg.clone()));
                }
                self.sync_routes(out);
                let eor: Vec<BgpMessage> = self
                    .families()
                    .iter()
                    .map(|f| wire::end_of_rib(*f))
                    .collect();
                if !eor.is_empty() {
                    out.push(Output::Send(eor));
                }
            }
            (State::Established, BgpMessage::KeepAlive) => self.restart_hold(now, out),
            (State::Established, BgpMessage::Update(update)) => {
                self.restart_hold(now, out);
                let (announced, withdrawn) = update_prefixes(&update);
                out.push(Output::Learned {
                    announced,
                    withdrawn,
                });
            }
            (State::Established, BgpMessage::RouteRefresh(rr)) => {
                self.restart_hold(now, out);
                // RFC 2918 §4: re-advertise the Adj-RIB-Out of that family.
                if let Some(family) = crate::bgp::open::family_of(rr.address_type()) {
                    if self.families().contains(&family) {
                        let all = adj_out::all_of(&self.sent, family);
                        self.send_changes(all, out);
                    }
                }
            }
            (state, other) => {
                let error = match state {
                    State::OpenSent => {
                        FiniteStateMachineError::ReceiveUnexpectedMessageInOpenSentState {
                            value: Box::new([]),
                        }
                    }
                    State::OpenConfirm => {
                        FiniteStateMachineError::ReceiveUnexpectedMessageInOpenConfirmState {
                            value: Box::new([]),
                        }
                    }
                    _ => FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState {
                        value: Box::new([]),
                    },
                };
                out.push(Output::Send(vec![BgpMessage::Notification(
                    BgpNotificationMessage::FiniteStateMachineError(error),
                )]));
                out.push(Output::Close);
                self.fail(
                    DownReason::UnexpectedMessage(format!(
                        "{:?} in state {state:?}",
                        other.get_type()
                    )),
                    now,
                    out,
                );
            }
        }
    }

    fn fired(&mut self, timer: Timer, now: Instant, out: &mut Vec<Output>) {
        match (timer, self.state) {
            // Connect attempt timed out (Event 9 in Connect).
            (Timer::ConnectRetry, State::Connect) => {
                out.push(Output::Close);
                self.fail(DownReason::ConnectTimeout, now, out);
            }
            // Backoff over (Event 9 in Active): try again.
            (Timer::ConnectRetry, State::Active) if !self.cfg.passive => {
                self.begin_connect(now, out)
            }
            (Timer::Hold, State::OpenSent | State::OpenConfirm | State::Established) => {
                out.push(Output::Send(vec![BgpMessage::Notification(
                    BgpNotificationMessage::HoldTimerExpiredError(
                        HoldTimerExpiredError::Unspecific {
                            sub_code: 0,
                            value: Box::new([]),
                        },
                    ),
                )]));
                out.push(Output::Close);
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
        let had_session = matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        );
        if had_session {
            out.push(Output::Send(vec![wire::cease(kind, reason)]));
        }
        if had_session || self.state == State::Connect {
            out.push(Output::Close);
        }
        for t in Timer::ALL {
            self.disarm(t, out);
        }
        if had_session {
            out.push(Output::Down {
                reason: DownReason::Stopped,
                retry_in: None,
            });
        }
        self.reset_connection();
        self.state = State::Idle;
    }

    fn malformed(&mut self, e: DecodeError, now: Instant, out: &mut Vec<Output>) {
        out.push(Output::Send(vec![BgpMessage::Notification(e.notification)]));
        out.push(Output::Close);
        self.fail(DownReason::Malformed(e.description), now, out);
    }

    /// Ends the connection or attempt and schedules the next one with backoff.
    fn fail(&mut self, reason: DownReason, now: Instant, out: &mut Vec<Output>) {
        self.disarm(Timer::Hold, out);
        self.disarm(Timer::Keepalive, out);
        self.disarm(Timer::ConnectRetry, out);
        self.reset_connection();
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

/// A NOTIFICATION as an operator reads it: the error and subcode names, and the shutdown
/// communication text when there is one (RFC 9003).
pub fn describe(n: &BgpNotificationMessage) -> String {
    use netgauze_bgp_pkt::notification::CeaseError;
    // "CeaseError(AdministrativeShutdown { value: [..] })" -> "CeaseError/AdministrativeShutdown"
    let debug = format!("{n:?}");
    let name = debug
        .split(" {")
        .next()
        .unwrap_or(&debug)
        .trim_end_matches(')')
        .replace('(', "/");
    if let BgpNotificationMessage::CeaseError(
        CeaseError::AdministrativeShutdown { value } | CeaseError::AdministrativeReset { value },
    ) = n
    {
        if let Some((len, text)) = value.split_first() {
            if let Some(text) = text.get(..usize::from(*len)).filter(|t| !t.is_empty()) {
                return format!("{name}: {:?}", String::from_utf8_lossy(text));
            }
        }
    }
    name
}

fn update_prefixes(update: &BgpUpdateMessage) -> (Vec<IpNet>, Vec<IpNet>) {
    use netgauze_bgp_pkt::path_attribute::{MpReach, MpUnreach, PathAttributeValue};
    let mut announced: Vec<IpNet> = update
        .nlri()
        .iter()
        .map(|a| IpNet::V4(a.network().address()))
        .collect();
    let mut withdrawn: Vec<IpNet> = update
        .withdraw_routes()
        .iter()
        .map(|a| IpNet::V4(a.network().address()))
        .collect();
    for attr in update.path_attributes() {
        match attr.value() {
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) => {
                announced.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())))
            }
            PathAttributeValue::MpReach(MpReach::Ipv4Unicast { nlri, .. }) => {
                announced.extend(nlri.iter().map(|a| IpNet::V4(a.network().address())))
            }
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => {
                withdrawn.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())))
            }
            PathAttributeValue::MpUnreach(MpUnreach::Ipv4Unicast { nlri }) => {
                withdrawn.extend(nlri.iter().map(|a| IpNet::V4(a.network().address())))
            }
            _ => {}
        }
    }
    (announced, withdrawn)
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;

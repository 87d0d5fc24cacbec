//! [pure] The DHCPv4 client state machine of RFC 2131 §4.4, sans I/O.
//!
//! Bytes and the time come in ([`Client::start`], [`Client::handle`], [`Client::on_timeout`],
//! [`Client::release`]); packets to send and lease changes go out as [`Action`]s, and
//! [`Client::deadline`] says when to call `on_timeout` next. The caller owns the clock, the
//! socket and the address on the interface, so every path (including a server that never
//! answers) is testable by feeding replies and advancing `now`.
//!
//! ```text
//!  INIT ──DISCOVER──▶ SELECTING ──OFFER/REQUEST──▶ REQUESTING ──ACK──▶ BOUND
//!  INIT-REBOOT (requested IP) ──REQUEST──▶ REBOOTING ──ACK──▶ BOUND
//!  BOUND ──T1──▶ RENEWING (unicast) ──T2──▶ REBINDING (broadcast) ──expiry──▶ INIT
//!  any NAK ──▶ INIT          release() ──RELEASE──▶ RELEASED
//! ```

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// REQUESTs sent in REQUESTING (4 + 8 + 16 + 32 s ≈ 1 min) before starting over (RFC 2131 §4.4.1:
/// "after employing the retransmission algorithm, the client reverts to INIT").
const REQUEST_TRIES: u32 = 4;
/// INIT-REBOOT REQUESTs before falling back to DISCOVER: a server that does not know the client
/// stays silent (RFC 2131 §4.3.2), so waiting long only delays the address.
const REBOOT_TRIES: u32 = 2;
/// RFC 2131 §4.4.5: RENEWING/REBINDING retransmit at half the remaining time, "down to a minimum
/// of 60 seconds".
const MIN_RENEW_RETRY: Duration = Duration::from_secs(60);
/// How long a declined address is refused when offered again.
pub const DECLINE_MEMORY: Duration = Duration::from_secs(600);
/// After a DECLINE, the wait before a new DISCOVER (RFC 2131 §3.1 step 5: "a minimum of ten
/// seconds", so a client and a conflicting host cannot loop fast).
pub const DECLINE_WAIT: Duration = Duration::from_secs(10);

/// What the client is configured with; fixed for its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The macvlan's MAC (chaddr): the server's key for the lease, with the client id.
    pub mac: [u8; 6],
    /// Option 12 (`kube-vip.io/loadbalancerHostname`), so the server's lease shows a name.
    pub hostname: Option<String>,
    /// Option 61. [`ClientConfig::new`] makes it `01:<mac>` (RFC 2132 §9.14), the form udhcpc
    /// and systemd use, so another client with the same MAC is the same client to the server.
    pub client_id: Vec<u8>,
    /// The address we had (`kube-vip.io/requestedIP`): starts in INIT-REBOOT and is asked for in
    /// DISCOVER (option 50), so a restarted or failed-over agent keeps the address.
    pub requested: Option<Ipv4Addr>,
    /// Seeds the transaction ids and the ±1 s retransmission jitter (tests pass a constant).
    pub seed: u64,
}

impl ClientConfig {
    pub fn new(mac: [u8; 6], seed: u64) -> ClientConfig {
        let mut client_id = vec![1];
        client_id.extend_from_slice(&mac);
        ClientConfig {
            mac,
            hostname: None,
            client_id,
            requested: None,
            seed,
        }
    }
}

/// An address the server gave us, with its timers as absolute instants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 54 of the ACK: where RENEW and RELEASE are unicast.
    pub server: Ipv4Addr,
    /// Lease time as granted (option 51); `None` = infinite (0xffffffff).
    pub duration: Option<Duration>,
    pub t1: Option<Instant>,
    pub t2: Option<Instant>,
    pub expires: Option<Instant>,
}

/// Where a packet goes: UDP port 67 of either address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255: we may have no address yet (and REBINDING asks any server).
    Broadcast,
    /// The server that granted the lease (RENEWING, RELEASE).
    Unicast(Ipv4Addr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send {
        to: Destination,
        /// An encoded DHCP message (a UDP payload).
        payload: Vec<u8>,
    },
    /// A new or renewed lease: put `lease.address` on the interface (idempotent) and announce it.
    Bound(Lease),
    /// The address is no longer ours (expired, NAK'd, replaced or released): remove it.
    Unbound(Ipv4Addr),
}

/// The states of RFC 2131 Figure 5 (INIT and INIT-REBOOT are passed through at once, so they
/// are not kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Selecting,
    Requesting {
        offered: Ipv4Addr,
        server: Ipv4Addr,
    },
    Rebooting {
        requested: Ipv4Addr,
    },
    Bound,
    Renewing,
    Rebinding,
    /// After [`Client::release`] (or before [`Client::start`]): nothing more happens.
    Stopped,
}

pub struct Client {
    cfg: ClientConfig,
    rng: fastrand::Rng,
    state: State,
    xid: u32,
    /// Start of the current exchange, for the `secs` field.
    began: Instant,
    /// Transmissions of the current message so far.
    tries: u32,
    /// When the first REQUEST of the current exchange went out: the lease timers count from
    /// there (RFC 2131 §4.4.1), not from the DISCOVER, which a pinging server may answer late.
    requested_at: Instant,
    /// When to act next: retransmit, or move to the next lease phase.
    deadline: Option<Instant>,
    lease: Option<Lease>,
    /// Consecutive NAKs: the first restarts at once, further ones back off (a server that NAKs
    /// everything must not get a packet storm).
    naks: u32,
    /// Addresses declined, each until when offers of it are ignored.
    declined: Vec<(Ipv4Addr, Instant)>,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Client {
        let rng = fastrand::Rng::with_seed(cfg.seed);
        Client {
            cfg,
            rng,
            state: State::Stopped,
            xid: 0,
            began: Instant::now(),
            tries: 0,
            requested_at: Instant::now(),
            deadline: None,
            lease: None,
            naks: 0,
            declined: Vec::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// When [`Client::on_timeout`] must be called next; `None`: only a packet or a call changes
    /// anything.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// INIT-REBOOT with the configured requested address, else INIT.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        match self.cfg.requested {
            Some(requested) if !requested.is_unspecified() => {
                self.new_exchange(now);
                self.state = State::Rebooting { requested };
                self.transmit(now)
            }
            _ => self.init(now),
        }
    }

    /// Sends RELEASE for a held lease and stops; the caller removes the address.
    pub fn release(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(lease) = self.lease.take() {
            if matches!(
                self.state,
                State::Bound | State::Renewing | State::Rebinding
            ) {
                self.new_exchange(now);
                let mut msg = self.message(MessageType::Release, now, lease.address);
                msg.opts_mut()
                    .insert(DhcpOption::ServerIdentifier(lease.server));
                out.push(send(Destination::Unicast(lease.server), &msg));
            }
            out.push(Action::Unbound(lease.address));
        }
        self.state = State::Stopped;
        self.deadline = None;
        out
    }

    /// The leased `address` is in use by another host (an ARP probe was answered): DECLINE it
    /// to the server (broadcast; options 50 and 54), drop it, and start over with a DISCOVER
    /// that does not ask for it, after [`DECLINE_WAIT`]. Any other address: nothing.
    pub fn decline(&mut self, now: Instant, address: Ipv4Addr) -> Vec<Action> {
        let held = matches!(
            self.state,
            State::Bound | State::Renewing | State::Rebinding
        );
        let Some(lease) = self.lease.take_if(|l| held && l.address == address) else {
            return Vec::new();
        };
        self.new_exchange(now);
        let mut msg = self.message(MessageType::Decline, now, Ipv4Addr::UNSPECIFIED);
        msg.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(lease.address));
        msg.opts_mut()
            .insert(DhcpOption::ServerIdentifier(lease.server));
        self.cfg.requested = None;
        self.declined.push((lease.address, now + DECLINE_MEMORY));
        // Selecting with nothing sent yet: the deadline sends the first DISCOVER.
        self.new_exchange(now);
        self.state = State::Selecting;
        self.deadline = Some(now + DECLINE_WAIT);
        vec![
            send(Destination::Broadcast, &msg),
            Action::Unbound(lease.address),
        ]
    }

    /// Retransmits or moves on to the next lease phase if the deadline has passed; early calls do
    /// nothing.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return Vec::new(),
        }
        match self.state {
            State::Selecting => self.transmit(now),
            State::Requesting { .. } if self.tries >= REQUEST_TRIES => self.init(now),
            State::Rebooting { .. } if self.tries >= REBOOT_TRIES => self.init(now),
            State::Requesting { .. } | State::Rebooting { .. } => self.transmit(now),
            State::Bound => {
                self.new_exchange(now);
                self.state = State::Renewing;
                self.transmit(now)
            }
            State::Renewing if self.passed(now, |l| l.t2) => {
                self.new_exchange(now);
                self.state = State::Rebinding;
                self.transmit(now)
            }
            State::Renewing => self.transmit(now),
            State::Rebinding if self.passed(now, |l| l.expires) => {
                // Expired: the address goes, and we ask for it again from scratch.
                let mut out = Vec::new();
                if let Some(old) = self.lease.take() {
                    out.push(Action::Unbound(old.address));
                    self.cfg.requested = Some(old.address);
                }
                out.extend(self.init(now));
                out
            }
            State::Rebinding => self.transmit(now),
            State::Stopped => {
                self.deadline = None;
                Vec::new()
            }
        }
    }

    /// One received UDP payload. Anything that is not a well-formed reply to our current
    /// transaction is ignored: the segment is shared with other clients and servers.
    pub fn handle(&mut self, now: Instant, payload: &[u8]) -> Vec<Action> {
        let Some(reply) = self.parse(payload) else {
            return Vec::new();
        };
        let server = reply
            .opts()
            .get(OptionCode::ServerIdentifier)
            .and_then(|o| match o {
                DhcpOption::ServerIdentifier(ip) => Some(*ip),
                _ => None,
            });
        match (reply.opts().msg_type(), self.state) {
            (Some(MessageType::Offer), State::Selecting) => {
                let offered = reply.yiaddr();
                // An OFFER without a server id cannot be REQUESTed (RFC 2131 §4.3.1 MUST).
                let Some(server) = server else {
                    return Vec::new();
                };
                if offered.is_unspecified() || offered.is_broadcast() {
                    return Vec::new();
                }
                // An address declined lately is still someone else's: wait for another offer
                // (a server without a conflict check offers it again and again).
                self.declined.retain(|(_, until)| *until > now);
                if self.declined.iter().any(|(ip, _)| *ip == offered) {
                    return Vec::new();
                }
                // The same xid (RFC 2131 §4.4.1), a new retransmission series.
                self.tries = 0;
                self.state = State::Requesting { offered, server };
                self.transmit(now)
            }
            (Some(MessageType::Ack), State::Requesting { server: chosen, .. })
                if server.is_some_and(|s| s != chosen) =>
            {
                // Another server's ACK to our broadcast REQUEST is not for us.
                Vec::new()
            }
            (
                Some(MessageType::Ack),
                State::Requesting { .. }
                | State::Rebooting { .. }
                | State::Renewing
                | State::Rebinding,
            ) => self.bind(now, &reply, server),
            (Some(MessageType::Nak), State::Requesting { server: chosen, .. })
                if server.is_some_and(|s| s != chosen) =>
            {
                Vec::new()
            }
            (
                Some(MessageType::Nak),
                State::Requesting { .. }
                | State::Rebooting { .. }
                | State::Renewing
                | State::Rebinding,
            ) => {
                let mut out = Vec::new();
                if let Some(old) = self.lease.take() {
                    out.push(Action::Unbound(old.address));
                }
                // The server refused this address: do not ask for it again.
                self.cfg.requested = None;
                self.naks += 1;
                if self.naks == 1 {
                    out.extend(self.init(now));
                } else {
                    // Wait before the next DISCOVER; `on_timeout` in SELECTING sends it.
                    self.new_exchange(now);
                    self.state = State::Selecting;
                    let wait = backoff(&mut self.rng, self.naks - 2);
                    self.deadline = Some(now + wait);
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// A reply we could act on: BOOTREPLY, our xid, our chaddr, a message type.
    fn parse(&self, payload: &[u8]) -> Option<Message> {
        let msg = Message::from_bytes(&sanitize(payload)?).ok()?;
        // dhcproto's chaddr() slices by hlen and panics above 16: check before calling it.
        if msg.opcode() != Opcode::BootReply
            || msg.xid() != self.xid
            || msg.hlen() as usize != self.cfg.mac.len()
            || msg.chaddr() != self.cfg.mac
        {
            return None;
        }
        msg.opts().msg_type()?;
        Some(msg)
    }

    fn bind(&mut self, now: Instant, ack: &Message, server: Option<Ipv4Addr>) -> Vec<Action> {
        let address = ack.yiaddr();
        if address.is_unspecified() || address.is_broadcast() {
            return Vec::new();
        }
        let Some(server) = server.or_else(|| self.lease.as_ref().map(|l| l.server)) else {
            // Without a server id we could never RENEW or RELEASE.
            return Vec::new();
        };
        let secs = |code| {
            ack.opts().get(code).and_then(|o| match o {
                DhcpOption::AddressLeaseTime(s)
                | DhcpOption::Renewal(s)
                | DhcpOption::Rebinding(s) => Some(*s),
                _ => None,
            })
        };
        // No lease time in an ACK is a broken server; RFC 2131 makes option 51 a MUST.
        // A zero lease would send us round INIT at once, forever.
        let Some(lease_secs) = secs(OptionCode::AddressLeaseTime).filter(|s| *s > 0) else {
            return Vec::new();
        };
        let subnet_mask = ack
            .opts()
            .get(OptionCode::SubnetMask)
            .and_then(|o| match o {
                DhcpOption::SubnetMask(m) => Some(*m),
                _ => None,
            });
        let (duration, t1, t2, expires) = if lease_secs == u32::MAX {
            (None, None, None, None)
        } else {
            let lease = Duration::from_secs(u64::from(lease_secs));
            let (t1, t2) = timers(
                lease,
                secs(OptionCode::Renewal),
                secs(OptionCode::Rebinding),
            );
            let base = self.requested_at;
            (
                Some(lease),
                Some(base + t1),
                Some(base + t2),
                Some(base + lease),
            )
        };
        let lease = Lease {
            address,
            subnet_mask,
            server,
            duration,
            t1,
            t2,
            expires,
        };
        let mut out = Vec::new();
        if let Some(old) = self.lease.take() {
            if old.address != address {
                out.push(Action::Unbound(old.address));
            }
        }
        self.lease = Some(lease.clone());
        self.cfg.requested = Some(address);
        self.state = State::Bound;
        self.naks = 0;
        self.tries = 0;
        // A lease already past T1 (a slow exchange, a tiny lease) renews at once.
        self.deadline = t1.map(|t| t.max(now));
        out.push(Action::Bound(lease));
        out
    }

    fn passed(&self, now: Instant, at: impl Fn(&Lease) -> Option<Instant>) -> bool {
        self.lease.as_ref().and_then(at).is_some_and(|t| now >= t)
    }

    /// INIT: a new transaction, DISCOVER.
    fn init(&mut self, now: Instant) -> Vec<Action> {
        self.new_exchange(now);
        self.state = State::Selecting;
        self.transmit(now)
    }

    fn new_exchange(&mut self, now: Instant) {
        self.xid = self.rng.u32(..);
        self.began = now;
        self.tries = 0;
    }

    /// Sends (or re-sends) the current state's message and sets the deadline for the next step.
    fn transmit(&mut self, now: Instant) -> Vec<Action> {
        let (to, msg) = match self.state {
            State::Selecting => {
                let mut msg = self.message(MessageType::Discover, now, Ipv4Addr::UNSPECIFIED);
                if let Some(ip) = self.cfg.requested.filter(|ip| !ip.is_unspecified()) {
                    msg.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
                }
                (Destination::Broadcast, msg)
            }
            State::Requesting { offered, server } => {
                let mut msg = self.message(MessageType::Request, now, Ipv4Addr::UNSPECIFIED);
                msg.opts_mut()
                    .insert(DhcpOption::RequestedIpAddress(offered));
                msg.opts_mut().insert(DhcpOption::ServerIdentifier(server));
                (Destination::Broadcast, msg)
            }
            State::Rebooting { requested } => {
                let mut msg = self.message(MessageType::Request, now, Ipv4Addr::UNSPECIFIED);
                msg.opts_mut()
                    .insert(DhcpOption::RequestedIpAddress(requested));
                (Destination::Broadcast, msg)
            }
            State::Renewing | State::Rebinding => {
                let Some(lease) = self.lease.clone() else {
                    return self.init(now);
                };
                // RFC 2131 table 4: ciaddr set, no option 50 or 54.
                let msg = self.message(MessageType::Request, now, lease.address);
                let to = if self.state == State::Renewing {
                    Destination::Unicast(lease.server)
                } else {
                    Destination::Broadcast
                };
                (to, msg)
            }
            State::Bound | State::Stopped => return Vec::new(),
        };
        if self.tries == 0 && kind_of(&msg) == Some(MessageType::Request) {
            self.requested_at = now;
        }
        self.tries += 1;
        self.deadline = Some(self.next_deadline(now));
        vec![send(to, &msg)]
    }

    fn next_deadline(&mut self, now: Instant) -> Instant {
        let lease = self.lease.as_ref();
        match self.state {
            State::Renewing | State::Rebinding => {
                let phase_end = if self.state == State::Renewing {
                    lease.and_then(|l| l.t2)
                } else {
                    lease.and_then(|l| l.expires)
                };
                let Some(end) = phase_end else {
                    return now + MIN_RENEW_RETRY;
                };
                let half = end.saturating_duration_since(now) / 2;
                (now + half.max(MIN_RENEW_RETRY)).min(end)
            }
            _ => now + backoff(&mut self.rng, self.tries - 1),
        }
    }

    /// A BOOTREQUEST with our identity: chaddr, client id, hostname, parameter list.
    fn message(&self, kind: MessageType, now: Instant, ciaddr: Ipv4Addr) -> Message {
        let unspecified = Ipv4Addr::UNSPECIFIED;
        let mut msg = Message::new_with_id(
            self.xid,
            ciaddr,
            unspecified,
            unspecified,
            unspecified,
            &self.cfg.mac,
        );
        msg.set_opcode(Opcode::BootRequest);
        let secs = now.saturating_duration_since(self.began).as_secs();
        msg.set_secs(u16::try_from(secs).unwrap_or(u16::MAX));
        // Without an address the kernel drops a unicast reply to yiaddr: ask for broadcast
        // replies until we own the address (RFC 2131 §4.1). Only requests get replies: table 5
        // wants `flags` 0 in DECLINE and RELEASE.
        if ciaddr.is_unspecified() && matches!(kind, MessageType::Discover | MessageType::Request) {
            msg.set_flags(Flags::default().set_broadcast());
        }
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ClientIdentifier(self.cfg.client_id.clone()));
        // RFC 2131 table 5: RELEASE and DECLINE carry no parameter list or lease options.
        if !matches!(kind, MessageType::Release | MessageType::Decline) {
            if let Some(name) = &self.cfg.hostname {
                opts.insert(DhcpOption::Hostname(name.clone()));
            }
            opts.insert(DhcpOption::ParameterRequestList(vec![
                OptionCode::SubnetMask,
                OptionCode::AddressLeaseTime,
                OptionCode::Renewal,
                OptionCode::Rebinding,
            ]));
            opts.insert(DhcpOption::MaxMessageSize(1500));
        }
        msg
    }
}

fn kind_of(msg: &Message) -> Option<MessageType> {
    msg.opts().msg_type()
}

fn send(to: Destination, msg: &Message) -> Action {
    Action::Send {
        to,
        // Encoding a message we built from valid parts cannot fail (only over-long options can).
        payload: msg.to_vec().unwrap_or_default(),
    }
}

/// The fixed BOOTP header and the magic cookie (RFC 2131 §2, §3).
const HEADER_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// The options the client reads, with their one valid length (`None`: any, at least 1).
const KNOWN_OPTIONS: [(u8, Option<usize>); 6] = [
    (1, Some(4)),  // subnet mask
    (51, Some(4)), // lease time
    (53, Some(1)), // message type
    (54, Some(4)), // server identifier
    (58, Some(4)), // T1
    (59, Some(4)), // T2
];

/// `payload` with only the options the client reads, each of the right length; `None` if the
/// packet is not even a DHCP header. dhcproto 0.15 panics on some malformed options (a
/// `debug_assert!(len == 4)`, a `len - 1` that underflows on length 0), and anything on the
/// segment can send us bytes: what reaches it must be well-formed.
fn sanitize(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() < HEADER_LEN + MAGIC_COOKIE.len()
        || payload[HEADER_LEN..HEADER_LEN + 4] != MAGIC_COOKIE
    {
        return None;
    }
    let mut out = payload[..HEADER_LEN + 4].to_vec();
    let mut rest = &payload[HEADER_LEN + 4..];
    while let Some((&code, tail)) = rest.split_first() {
        match code {
            0 => rest = tail, // pad
            255 => break,     // end
            _ => {
                let (&len, tail) = tail.split_first()?;
                let value = tail.get(..usize::from(len))?;
                let wanted = KNOWN_OPTIONS.iter().find(|(c, _)| *c == code);
                if let Some((_, size)) = wanted {
                    if size.is_none_or(|n| n == value.len()) && !value.is_empty() {
                        out.push(code);
                        out.push(len);
                        out.extend_from_slice(value);
                    }
                }
                rest = &tail[usize::from(len)..];
            }
        }
    }
    out.push(255);
    Some(out)
}

/// RFC 2131 §4.1: 4, 8, 16, 32, 64 s (then 64 s), each ±1 s at random.
pub fn backoff(rng: &mut fastrand::Rng, retry: u32) -> Duration {
    let base = 4_000u64 << retry.min(4);
    Duration::from_millis(base - 1_000 + rng.u64(0..=2_000))
}

/// T1 and T2 from the server's options 58/59 when they are consistent (T1 < T2 < lease), else
/// the RFC 2131 §4.4.5 defaults 0.5 and 0.875 of the lease.
pub fn timers(lease: Duration, t1: Option<u32>, t2: Option<u32>) -> (Duration, Duration) {
    let default_t1 = lease / 2;
    let default_t2 = lease * 7 / 8;
    let t1 = t1.map(|s| Duration::from_secs(u64::from(s)));
    let t2 = t2.map(|s| Duration::from_secs(u64::from(s)));
    match (t1, t2) {
        (Some(a), Some(b)) if a < b && b < lease => (a, b),
        (Some(a), None) if a < default_t2 => (a, default_t2),
        (None, Some(b)) if default_t1 < b && b < lease => (default_t1, b),
        _ => (default_t1, default_t2),
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;

//! [pure] One BFD session in asynchronous mode (RFC 5880 §6), as a state machine: fed inputs
//! with the time, it returns the packets to send and the timers to arm. The driver
//! ([`crate::bfd::driver`]) owns the socket and the clock; nothing here does I/O.
//!
//! vipd always takes the Active role, runs no Echo function and no Demand mode, and sets the
//! C bit to 0: its BFD runs in the same process as its BGP, so a BFD Down of ours says nothing
//! about forwarding that outlives the process (RFC 5882 §4.3).

use crate::bfd::packet::{Diag, Discard, Packet, State};
use std::time::{Duration, Instant};

/// While a session is not Up its packets go out at most once a second (RFC 5880 §6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// The local timers of a session (RFC 5880 §6.8.1's bfd.DesiredMinTxInterval,
/// bfd.RequiredMinRxInterval and bfd.DetectMult).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub detect_mult: u8,
}

impl Default for Config {
    /// kube-vip's (and FRR's) defaults: 300 ms × 3.
    fn default() -> Self {
        Config {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The next periodic Control packet.
    Transmit = 0,
    /// The remote's packets stopped arriving for a Detection Time.
    Detect = 1,
}

impl Timer {
    pub const ALL: [Timer; 2] = [Timer::Transmit, Timer::Detect];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Begin sending (the session starts Down).
    Start,
    /// A datagram that decoded as a Control packet (and passed the TTL check).
    Received(Packet),
    Fired(Timer),
    /// vipd is stopping: the session goes AdminDown so that the remote does not take the
    /// silence that follows for a failure of the path (RFC 5882 §3.2).
    AdminDown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send(Packet),
    Arm(Timer, Instant),
    Disarm(Timer),
    /// The session reached Up.
    Up,
    /// The session left Up. `failure` is false when the remote (or vipd itself) took it down
    /// administratively: clients must not act on it as on a failure (RFC 5882 §3.2).
    Down {
        diag: Diag,
        failure: bool,
    },
    /// A packet that decoded but is not for this session.
    Discarded(Discard),
}

/// The session as `vipd status` and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub remote_state: State,
    pub local_diag: Diag,
    pub remote_diag: Diag,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    /// How long the remote may stay silent before the session goes Down (zero before the
    /// first packet).
    pub detection_time: Duration,
    /// The interval between our packets, before jitter.
    pub transmit_interval: Duration,
}

/// A session with its history, as `vipd status` and metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub config: Config,
    pub multihop: bool,
    pub status: Status,
    /// Times the session left Up for a failure (not for an AdminDown of either side).
    pub failures: u64,
    /// Packets from the peer refused by the checks of RFC 5880 §6.8.6 or RFC 5881 §5.
    pub discarded: u64,
    pub up_since: Option<Instant>,
}

pub struct Session {
    cfg: Config,
    local_disc: u32,
    remote_disc: u32,
    state: State,
    remote_state: State,
    local_diag: Diag,
    remote_diag: Diag,
    /// bfd.RemoteMinRxInterval: 1 µs until the remote says (RFC 5880 §6.8.1).
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_mult: u8,
    /// The DesiredMinTxInterval we send.
    advertised_tx: Duration,
    /// The one our transmit rate uses: after an increase while Up it lags behind
    /// `advertised_tx` until the Poll Sequence ends (RFC 5880 §6.8.3).
    active_tx: Duration,
    polling: bool,
    rng: fastrand::Rng,
    jitter: bool,
    /// The peer sent packets addressed to another discriminator of ours: it still held a
    /// session with a previous process (one that crashed), until it timed that one out.
    stale_peer: bool,
}

impl Session {
    /// A session with our discriminator `local_disc` (nonzero, unique among our sessions).
    pub fn new(cfg: Config, local_disc: u32, seed: u64) -> Session {
        let slow = cfg.desired_min_tx.max(SLOW_TX);
        Session {
            cfg,
            local_disc: local_disc.max(1),
            remote_disc: 0,
            state: State::Down,
            remote_state: State::Down,
            local_diag: Diag::NONE,
            remote_diag: Diag::NONE,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_mult: 0,
            advertised_tx: slow,
            active_tx: slow,
            polling: false,
            rng: fastrand::Rng::with_seed(seed),
            jitter: true,
            stale_peer: false,
        }
    }

    /// Transmit exactly at the interval (for tests that assert exact times).
    pub fn without_jitter(mut self) -> Session {
        self.jitter = false;
        self
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the peer addressed a session of ours other than this one (a previous process's)
    /// before this one came Up: its own session with that one has just been timed out.
    pub fn saw_stale_peer(&self) -> bool {
        self.stale_peer
    }

    pub fn status(&self) -> Status {
        Status {
            state: self.state,
            remote_state: self.remote_state,
            local_diag: self.local_diag,
            remote_diag: self.remote_diag,
            local_discriminator: self.local_disc,
            remote_discriminator: self.remote_disc,
            detection_time: self.detection_time(),
            transmit_interval: self.transmit_interval(),
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.send_now(now, &mut out),
            Input::Fired(Timer::Transmit) => {
                // A remote asking for no packets (RequiredMinRx 0) gets none (§6.8.7).
                if self.remote_min_rx.is_zero() {
                    out.push(Output::Arm(Timer::Transmit, now + self.active_tx));
                } else {
                    self.send_now(now, &mut out);
                }
            }
            Input::Fired(Timer::Detect) => self.detection_expired(now, &mut out),
            Input::Received(p) => self.receive(p, now, &mut out),
            Input::AdminDown => {
                if self.state != State::AdminDown {
                    self.change(
                        State::AdminDown,
                        Diag::ADMINISTRATIVELY_DOWN,
                        false,
                        &mut out,
                    );
                    out.push(Output::Disarm(Timer::Detect));
                    self.send_now(now, &mut out);
                }
            }
        }
        out
    }

    /// Detection Time in asynchronous mode (RFC 5880 §6.8.4): the remote's multiplier times
    /// the slower of what we accept and what it sends at.
    fn detection_time(&self) -> Duration {
        self.cfg.required_min_rx.max(self.remote_desired_tx) * u32::from(self.remote_mult)
    }

    fn transmit_interval(&self) -> Duration {
        self.active_tx.max(self.remote_min_rx)
    }

    fn packet(&self) -> Packet {
        Packet {
            diag: self.local_diag,
            state: self.state,
            poll: self.polling,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_discriminator: self.local_disc,
            your_discriminator: self.remote_disc,
            desired_min_tx: micros(self.advertised_tx),
            required_min_rx: micros(self.cfg.required_min_rx),
            required_min_echo_rx: 0,
        }
    }

    /// Sends a packet now and schedules the next one a jittered interval later (§6.8.7:
    /// 75–100 % of the interval, 75–90 % with a multiplier of 1).
    fn send_now(&mut self, now: Instant, out: &mut Vec<Output>) {
        out.push(Output::Send(self.packet()));
        let interval = self.transmit_interval();
        let percent = if !self.jitter {
            100
        } else if self.cfg.detect_mult == 1 {
            self.rng.u32(75..=90)
        } else {
            self.rng.u32(75..=100)
        };
        out.push(Output::Arm(Timer::Transmit, now + interval * percent / 100));
    }

    fn detection_expired(&mut self, now: Instant, out: &mut Vec<Output>) {
        // §6.8.1: the remote's discriminator is forgotten once it has been silent this long.
        self.remote_disc = 0;
        self.remote_state = State::Down;
        if matches!(self.state, State::Init | State::Up) {
            self.change(State::Down, Diag::DETECTION_TIME_EXPIRED, true, out);
            self.send_now(now, out);
        }
    }

    fn receive(&mut self, p: Packet, now: Instant, out: &mut Vec<Output>) {
        if p.your_discriminator != 0 && p.your_discriminator != self.local_disc {
            self.stale_peer |= self.state != State::Up;
            out.push(Output::Discarded(Discard::NotOurs(p.your_discriminator)));
            return;
        }
        self.remote_disc = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_diag = p.diag;
        self.remote_min_rx = Duration::from_micros(u64::from(p.required_min_rx));
        self.remote_desired_tx = Duration::from_micros(u64::from(p.desired_min_tx));
        self.remote_mult = p.detect_mult;
        if p.final_ && self.polling {
            // The Poll Sequence is over: an increased interval may now take effect.
            self.polling = false;
            self.active_tx = self.advertised_tx;
        }
        if self.state == State::AdminDown {
            return;
        }
        out.push(Output::Arm(Timer::Detect, now + self.detection_time()));
        let before = self.state;
        match (self.state, p.state) {
            // AdminDown takes Init and Up down (not as a failure) and keeps Down down.
            (State::Init | State::Up, State::AdminDown) => {
                self.change(State::Down, Diag::NEIGHBOR_SIGNALED_DOWN, false, out)
            }
            (_, State::AdminDown) => {}
            (State::Down, State::Down) => self.change(State::Init, Diag::NONE, false, out),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                self.change(State::Up, Diag::NONE, false, out)
            }
            (State::Up, State::Down) => {
                self.change(State::Down, Diag::NEIGHBOR_SIGNALED_DOWN, true, out)
            }
            _ => {}
        }
        if p.poll {
            // Answer at once, outside the periodic schedule (§6.8.7).
            let mut fin = self.packet();
            fin.poll = false;
            fin.final_ = true;
            out.push(Output::Send(fin));
        }
        if self.state != before {
            // A state change goes out at once rather than at the next tick.
            self.send_now(now, out);
        }
    }

    /// Moves to `to`, tells the client when Up is reached or left, and sets the transmit
    /// interval the new state allows.
    fn change(&mut self, to: State, diag: Diag, failure: bool, out: &mut Vec<Output>) {
        let from = self.state;
        self.state = to;
        if diag != Diag::NONE || to == State::Up {
            self.local_diag = diag;
        }
        if from == State::Up {
            out.push(Output::Down { diag, failure });
        }
        if to == State::Up {
            out.push(Output::Up);
            // Down to the configured rate: a change of DesiredMinTx while Up is announced by a
            // Poll Sequence; a decrease may apply at once (§6.8.3).
            if self.cfg.desired_min_tx != self.advertised_tx {
                self.polling = true;
                self.advertised_tx = self.cfg.desired_min_tx;
                self.active_tx = self.active_tx.min(self.advertised_tx);
            }
        } else {
            self.polling = false;
            self.advertised_tx = self.cfg.desired_min_tx.max(SLOW_TX);
            self.active_tx = self.advertised_tx;
        }
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

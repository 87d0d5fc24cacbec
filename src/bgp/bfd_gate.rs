//! [pure] When a BGP session with BFD may start: once its BFD session is Up, or after
//! [`BFD_FIRST`] without it (a peer that runs no BFD), and [`BFD_SETTLE`] later when the peer
//! had first to time out an earlier process's BFD session. Fed BFD's events and the deadline it
//! arms; the driver starts the BGP session when it answers [`Gate::Start`].

use std::time::{Duration, Instant};

/// With BFD, the BGP session starts once the BFD session is Up, or after this long without it.
/// A new process after a crash cannot bring BFD Up while the peer still holds the old process's
/// session Up, so its BGP session waits until the peer has timed that one out: were it
/// Established first, that timeout would end it, routes and all.
pub const BFD_FIRST: Duration = Duration::from_secs(3);

/// After a crash the peer ends its session with the old process (a BFD Down) just before the
/// new one comes Up; its BGP may act on that Down a little later (FRR hears it from bfdd through
/// zebra). The BGP session waits this long more, so that the Down finds no session to end.
pub const BFD_SETTLE: Duration = Duration::from_secs(1);

/// What the gate is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateInput {
    /// The BFD session came Up; `after_stale` when the peer first reported a session of ours it
    /// had kept (an earlier process's) and then timed it out.
    BfdUp { after_stale: bool },
    /// The BFD session's task ended: BGP goes on without it.
    BfdGone,
    /// The deadline the gate armed has passed.
    Deadline,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Start the BGP session now (the gate is open for good).
    Start(Why),
    /// Do not start yet; ask again at this instant (replaces any earlier deadline).
    WaitUntil(Instant, Why),
    /// Nothing to do (the gate is already open, or the event changes nothing).
    Nothing,
}

/// Why, for the log line the driver writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// No BFD for this peer.
    NoBfd,
    /// Waiting for the BFD session's first Up.
    AwaitingBfd,
    /// BFD is Up.
    BfdUp,
    /// BFD came Up after the peer timed out an earlier process's session: [`BFD_SETTLE`] more.
    Settling,
    /// [`BFD_SETTLE`] has passed.
    Settled,
    /// [`BFD_FIRST`] passed without BFD Up.
    BfdNotUp,
    /// The BFD session's task ended.
    BfdGone,
}

impl Why {
    /// The log line for this reason, `None` where nothing is worth saying.
    pub fn describe(self) -> Option<String> {
        match self {
            // The driver says itself that the BFD task ended, whether the gate was open or not.
            Why::NoBfd | Why::AwaitingBfd | Why::BfdUp | Why::Settled | Why::BfdGone => None,
            Why::Settling => Some(format!(
                "BFD Up after the peer timed out a previous process's session: the BGP session starts in {}s",
                BFD_SETTLE.as_secs()
            )),
            Why::BfdNotUp => Some(format!(
                "BFD not Up after {}s: the BGP session starts without waiting for it",
                BFD_FIRST.as_secs()
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for BFD Up, at most until the deadline.
    First,
    /// BFD is Up after a stale session; starting at the deadline.
    Settling,
    Open,
}

/// The gate of one peer's BGP session.
#[derive(Debug)]
pub struct StartGate {
    state: State,
}

impl StartGate {
    /// A gate for a session with (`bfd`) or without BFD, and what to do first.
    pub fn new(bfd: bool, now: Instant) -> (StartGate, Gate) {
        if bfd {
            let gate = StartGate {
                state: State::First,
            };
            (gate, Gate::WaitUntil(now + BFD_FIRST, Why::AwaitingBfd))
        } else {
            let gate = StartGate { state: State::Open };
            (gate, Gate::Start(Why::NoBfd))
        }
    }

    /// Whether the BGP session has been let start.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    pub fn handle(&mut self, input: GateInput, now: Instant) -> Gate {
        let (next, out) = match (self.state, input) {
            (State::Open, _) => (State::Open, Gate::Nothing),
            (State::First, GateInput::BfdUp { after_stale: true }) => (
                State::Settling,
                Gate::WaitUntil(now + BFD_SETTLE, Why::Settling),
            ),
            (State::First, GateInput::BfdUp { after_stale: false }) => {
                (State::Open, Gate::Start(Why::BfdUp))
            }
            (State::First, GateInput::Deadline) => (State::Open, Gate::Start(Why::BfdNotUp)),
            (State::Settling, GateInput::Deadline) => (State::Open, Gate::Start(Why::Settled)),
            // BFD flapping while the settle time runs changes nothing: its Down is the peer's
            // business with the old session, and a new Up only confirms.
            (State::Settling, GateInput::BfdUp { .. }) => (State::Settling, Gate::Nothing),
            (State::First | State::Settling, GateInput::BfdGone) => {
                (State::Open, Gate::Start(Why::BfdGone))
            }
        };
        self.state = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn without_bfd_the_session_starts_at_once_and_the_gate_ignores_everything_after() {
        let now = t0();
        let (mut g, first) = StartGate::new(false, now);
        assert_eq!(first, Gate::Start(Why::NoBfd));
        assert!(g.is_open());
        for input in [
            GateInput::BfdUp { after_stale: false },
            GateInput::BfdUp { after_stale: true },
            GateInput::BfdGone,
            GateInput::Deadline,
        ] {
            assert_eq!(g.handle(input, now), Gate::Nothing);
        }
    }

    #[test]
    fn with_bfd_it_waits_for_the_first_up_and_starts_on_it() {
        let now = t0();
        let (mut g, first) = StartGate::new(true, now);
        assert_eq!(first, Gate::WaitUntil(now + BFD_FIRST, Why::AwaitingBfd));
        assert!(!g.is_open());
        let later = now + Duration::from_millis(700);
        assert_eq!(
            g.handle(GateInput::BfdUp { after_stale: false }, later),
            Gate::Start(Why::BfdUp)
        );
        assert!(g.is_open());
        // The deadline armed before may still fire: it must not start a second time.
        assert_eq!(
            g.handle(GateInput::Deadline, now + BFD_FIRST),
            Gate::Nothing
        );
    }

    #[test]
    fn a_peer_without_bfd_gets_the_session_after_bfd_first() {
        let now = t0();
        let (mut g, _) = StartGate::new(true, now);
        assert_eq!(
            g.handle(GateInput::Deadline, now + BFD_FIRST),
            Gate::Start(Why::BfdNotUp)
        );
        assert!(g.is_open());
    }

    #[test]
    fn an_up_after_a_stale_session_waits_bfd_settle_from_that_up_then_starts() {
        let now = t0();
        let (mut g, _) = StartGate::new(true, now);
        let up = now + Duration::from_millis(2500);
        assert_eq!(
            g.handle(GateInput::BfdUp { after_stale: true }, up),
            Gate::WaitUntil(up + BFD_SETTLE, Why::Settling)
        );
        assert!(!g.is_open());
        // Another Up while settling neither starts nor moves the deadline.
        assert_eq!(
            g.handle(
                GateInput::BfdUp { after_stale: false },
                up + Duration::from_millis(10)
            ),
            Gate::Nothing
        );
        assert_eq!(
            g.handle(GateInput::Deadline, up + BFD_SETTLE),
            Gate::Start(Why::Settled)
        );
        assert!(g.is_open());
    }

    #[test]
    fn bfd_going_away_opens_the_gate_whether_waiting_or_settling() {
        let now = t0();
        let (mut g, _) = StartGate::new(true, now);
        assert_eq!(g.handle(GateInput::BfdGone, now), Gate::Start(Why::BfdGone));
        let (mut g, _) = StartGate::new(true, now);
        g.handle(GateInput::BfdUp { after_stale: true }, now);
        assert_eq!(g.handle(GateInput::BfdGone, now), Gate::Start(Why::BfdGone));
        assert_eq!(g.handle(GateInput::BfdGone, now), Gate::Nothing);
    }

    #[test]
    fn only_the_reasons_an_operator_should_hear_of_have_a_log_line() {
        let quiet = [
            Why::NoBfd,
            Why::AwaitingBfd,
            Why::BfdUp,
            Why::Settled,
            Why::BfdGone,
        ];
        for w in quiet {
            assert_eq!(w.describe(), None, "{w:?}");
        }
        assert_eq!(
            Why::BfdNotUp.describe().as_deref(),
            Some("BFD not Up after 3s: the BGP session starts without waiting for it")
        );
        assert_eq!(
            Why::Settling.describe().as_deref(),
            Some("BFD Up after the peer timed out a previous process's session: the BGP session starts in 1s")
        );
    }
}

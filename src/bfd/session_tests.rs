//! Exact-output tests of the BFD session: every packet and timer for each transition.

use super::*;

const LOCAL: u32 = 0x1111;
const REMOTE: u32 = 0x2222;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn session() -> (Session, Instant) {
    (
        Session::new(Config::default(), LOCAL, 7).without_jitter(),
        Instant::now(),
    )
}

/// A packet from `my` in `state` to `your`, advertising `tx`, with 300 ms × 3 otherwise.
fn packet(my: u32, state: State, your: u32, tx: Duration) -> Packet {
    Packet {
        diag: Diag::NONE,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: my,
        your_discriminator: your,
        desired_min_tx: tx.as_micros() as u32,
        required_min_rx: 300_000,
        required_min_echo_rx: 0,
    }
}

/// What vipd sends in `state` with our defaults.
fn ours(state: State, your: u32, tx: Duration) -> Packet {
    packet(LOCAL, state, your, tx)
}

/// What the remote sends in `state`.
fn theirs(state: State, your: u32) -> Packet {
    packet(REMOTE, state, your, ms(300))
}

/// Brings a session Up through the three-way handshake and ends its Poll Sequence.
fn up() -> (Session, Instant) {
    let (mut s, t) = session();
    s.handle(Input::Start, t);
    s.handle(Input::Received(theirs(State::Down, 0)), t);
    s.handle(Input::Received(theirs(State::Up, LOCAL)), t);
    let fin = Packet {
        final_: true,
        ..theirs(State::Up, LOCAL)
    };
    s.handle(Input::Received(fin), t);
    assert_eq!(s.state(), State::Up);
    (s, t)
}

#[test]
fn starts_down_sending_once_a_second() {
    let (mut s, t) = session();
    assert_eq!(
        s.handle(Input::Start, t),
        vec![
            Output::Send(ours(State::Down, 0, ms(1000))),
            Output::Arm(Timer::Transmit, t + ms(1000)),
        ]
    );
    assert_eq!(
        s.handle(Input::Fired(Timer::Transmit), t + ms(1000)),
        vec![
            Output::Send(ours(State::Down, 0, ms(1000))),
            Output::Arm(Timer::Transmit, t + ms(2000)),
        ]
    );
}

#[test]
fn three_way_handshake_then_a_poll_to_the_fast_rate() {
    let (mut s, t) = session();
    s.handle(Input::Start, t);
    // Down from the remote: Init, sent at once. The remote sends at 300 ms but we accept
    // 300 ms, so the detection time is 3 × 300 ms.
    assert_eq!(
        s.handle(Input::Received(theirs(State::Down, 0)), t),
        vec![
            Output::Arm(Timer::Detect, t + ms(900)),
            Output::Send(ours(State::Init, REMOTE, ms(1000))),
            Output::Arm(Timer::Transmit, t + ms(1000)),
        ]
    );
    // Up from the remote: Up, and a Poll Sequence announcing 300 ms.
    let polled = Packet {
        poll: true,
        ..ours(State::Up, REMOTE, ms(300))
    };
    assert_eq!(
        s.handle(Input::Received(theirs(State::Up, LOCAL)), t + ms(10)),
        vec![
            Output::Arm(Timer::Detect, t + ms(910)),
            Output::Up,
            Output::Send(polled),
            Output::Arm(Timer::Transmit, t + ms(310)),
        ]
    );
    // Every packet carries P until the remote answers with F.
    assert_eq!(
        s.handle(Input::Fired(Timer::Transmit), t + ms(310)),
        vec![
            Output::Send(polled),
            Output::Arm(Timer::Transmit, t + ms(610)),
        ]
    );
    let fin = Packet {
        final_: true,
        ..theirs(State::Up, LOCAL)
    };
    assert_eq!(
        s.handle(Input::Received(fin), t + ms(400)),
        vec![Output::Arm(Timer::Detect, t + ms(1300))]
    );
    assert_eq!(
        s.handle(Input::Fired(Timer::Transmit), t + ms(610)),
        vec![
            Output::Send(ours(State::Up, REMOTE, ms(300))),
            Output::Arm(Timer::Transmit, t + ms(910)),
        ]
    );
    let st = s.status();
    assert_eq!(
        (
            st.state,
            st.remote_state,
            st.detection_time,
            st.transmit_interval
        ),
        (State::Up, State::Up, ms(900), ms(300))
    );
}

#[test]
fn init_from_the_remote_goes_straight_up() {
    let (mut s, t) = session();
    s.handle(Input::Start, t);
    let out = s.handle(Input::Received(theirs(State::Init, LOCAL)), t);
    assert!(out.contains(&Output::Up), "{out:?}");
    assert_eq!(s.state(), State::Up);
}

#[test]
fn silence_for_the_detection_time_is_a_failure() {
    let (mut s, t) = up();
    let later = t + ms(900);
    assert_eq!(
        s.handle(Input::Fired(Timer::Detect), later),
        vec![
            Output::Down {
                diag: Diag::DETECTION_TIME_EXPIRED,
                failure: true
            },
            Output::Send(Packet {
                diag: Diag::DETECTION_TIME_EXPIRED,
                ..ours(State::Down, 0, ms(1000))
            }),
            Output::Arm(Timer::Transmit, later + ms(1000)),
        ]
    );
    assert_eq!(s.status().remote_discriminator, 0);
}

#[test]
fn the_remote_going_down_is_a_failure_but_its_admin_down_is_not() {
    let (mut s, t) = up();
    assert_eq!(
        s.handle(Input::Received(theirs(State::Down, LOCAL)), t),
        vec![
            Output::Arm(Timer::Detect, t + ms(900)),
            Output::Down {
                diag: Diag::NEIGHBOR_SIGNALED_DOWN,
                failure: true
            },
            Output::Send(Packet {
                diag: Diag::NEIGHBOR_SIGNALED_DOWN,
                ..ours(State::Down, REMOTE, ms(1000))
            }),
            Output::Arm(Timer::Transmit, t + ms(1000)),
        ]
    );
    let (mut s, t) = up();
    let admin = Packet {
        diag: Diag::ADMINISTRATIVELY_DOWN,
        ..theirs(State::AdminDown, LOCAL)
    };
    assert_eq!(
        s.handle(Input::Received(admin), t),
        vec![
            Output::Arm(Timer::Detect, t + ms(900)),
            Output::Down {
                diag: Diag::NEIGHBOR_SIGNALED_DOWN,
                failure: false
            },
            Output::Send(Packet {
                diag: Diag::NEIGHBOR_SIGNALED_DOWN,
                ..ours(State::Down, REMOTE, ms(1000))
            }),
            Output::Arm(Timer::Transmit, t + ms(1000)),
        ]
    );
    // AdminDown keeps a Down session Down (no Init).
    assert_eq!(
        s.handle(Input::Received(admin), t + ms(5)),
        vec![Output::Arm(Timer::Detect, t + ms(905))]
    );
    // And when the remote comes back, the handshake starts again.
    let out = s.handle(Input::Received(theirs(State::Down, 0)), t + ms(6));
    assert_eq!(s.state(), State::Init, "{out:?}");
}

#[test]
fn our_admin_down_tells_the_remote_and_ignores_it_afterwards() {
    let (mut s, t) = up();
    assert_eq!(
        s.handle(Input::AdminDown, t),
        vec![
            Output::Down {
                diag: Diag::ADMINISTRATIVELY_DOWN,
                failure: false
            },
            Output::Disarm(Timer::Detect),
            Output::Send(Packet {
                diag: Diag::ADMINISTRATIVELY_DOWN,
                ..ours(State::AdminDown, REMOTE, ms(1000))
            }),
            Output::Arm(Timer::Transmit, t + ms(1000)),
        ]
    );
    assert_eq!(
        s.handle(Input::Received(theirs(State::Up, LOCAL)), t),
        vec![]
    );
    assert_eq!(s.handle(Input::AdminDown, t), vec![]);
    assert_eq!(s.state(), State::AdminDown);
}

#[test]
fn a_poll_is_answered_at_once_with_final() {
    let (mut s, t) = up();
    let poll = Packet {
        poll: true,
        ..theirs(State::Up, LOCAL)
    };
    assert_eq!(
        s.handle(Input::Received(poll), t),
        vec![
            Output::Arm(Timer::Detect, t + ms(900)),
            Output::Send(Packet {
                final_: true,
                ..ours(State::Up, REMOTE, ms(300))
            }),
        ]
    );
}

#[test]
fn another_sessions_discriminator_is_discarded_untouched() {
    let (mut s, t) = up();
    let before = s.status();
    assert_eq!(
        s.handle(Input::Received(theirs(State::Down, 99)), t),
        vec![Output::Discarded(Discard::NotOurs(99))]
    );
    assert_eq!(s.status(), before);
    // Once Up, that is noise, not a previous process's session at the peer.
    assert!(!s.saw_stale_peer());
}

#[test]
fn a_peer_still_holding_a_previous_processs_session_is_noticed() {
    let (mut s, t) = session();
    s.handle(Input::Start, t);
    assert!(!s.saw_stale_peer());
    s.handle(Input::Received(theirs(State::Up, 0x0bad)), t);
    assert!(s.saw_stale_peer());
    // The peer times that session out and starts over with us.
    s.handle(Input::Received(theirs(State::Down, 0)), t);
    let out = s.handle(Input::Received(theirs(State::Up, LOCAL)), t);
    assert!(out.contains(&Output::Up), "{out:?}");
    assert!(s.saw_stale_peer());
}

#[test]
fn detection_follows_the_slower_side_and_the_remotes_multiplier() {
    let (mut s, t) = session();
    s.handle(Input::Start, t);
    let slow = Packet {
        desired_min_tx: 2_000_000,
        detect_mult: 5,
        ..theirs(State::Down, 0)
    };
    let out = s.handle(Input::Received(slow), t);
    assert_eq!(out[0], Output::Arm(Timer::Detect, t + ms(10_000)));
    // The remote asks for packets no faster than 500 ms: we slow down to it.
    let (mut s, t) = up();
    let lazy = Packet {
        required_min_rx: 500_000,
        ..theirs(State::Up, LOCAL)
    };
    s.handle(Input::Received(lazy), t);
    assert_eq!(
        s.handle(Input::Fired(Timer::Transmit), t),
        vec![
            Output::Send(ours(State::Up, REMOTE, ms(300))),
            Output::Arm(Timer::Transmit, t + ms(500)),
        ]
    );
}

#[test]
fn a_remote_that_wants_no_packets_gets_none() {
    let (mut s, t) = up();
    let quiet = Packet {
        required_min_rx: 0,
        ..theirs(State::Up, LOCAL)
    };
    s.handle(Input::Received(quiet), t);
    assert_eq!(
        s.handle(Input::Fired(Timer::Transmit), t),
        vec![Output::Arm(Timer::Transmit, t + ms(300))]
    );
}

#[test]
fn jitter_stays_within_the_rfc_bounds() {
    for (mult, low, high) in [(3u8, 75u64, 100u64), (1, 75, 90)] {
        let cfg = Config {
            detect_mult: mult,
            ..Config::default()
        };
        let mut s = Session::new(cfg, LOCAL, 42);
        let t = Instant::now();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            for o in s.handle(Input::Fired(Timer::Transmit), t) {
                if let Output::Arm(Timer::Transmit, at) = o {
                    let pct = (at - t).as_millis() as u64 / 10;
                    assert!((low..=high).contains(&pct), "{pct}% with multiplier {mult}");
                    seen.insert(pct);
                }
            }
        }
        assert!(seen.contains(&low) && seen.contains(&high), "{seen:?}");
    }
}

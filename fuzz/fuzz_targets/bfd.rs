//! Fuzz target: BFD Control packets as received (`vipd::bfd::packet::Packet::decode`) and the
//! session state machine (`vipd::bfd::session::Session`) fed them, its timers and AdminDown.
//!
//! Input layout: byte 0 the local timers (interval `10 × (1 + b % 64)` ms, multiplier
//! `1 + b / 64`); then steps, one selector byte each: `% 8` = 0–2 the transmit timer fires, 3
//! the detection timer, 4 AdminDown (only when the selector is exactly 4, so that sessions live
//! long), 5–7 a datagram of the next `24 + (selector / 8) % 8` bytes arrives. Every step
//! advances the clock by `(selector & 0x1f) × 10` ms.
//!
//! Asserted (besides "no panic"):
//! - a datagram that decodes re-encodes to the same bytes (but the length field), and decodes
//!   again to the same packet;
//! - every packet the session sends decodes (so it is one FRR and BIRD accept: nonzero
//!   discriminator, Your Discriminator zero only in Down/AdminDown), carries our discriminator
//!   and multiplier, advertises at least one second while not Up, never both P and F;
//! - Up and Down alternate, Down only after Up; AdminDown only after the AdminDown input, and
//!   then no Up ever again; timers are armed at or after now.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use vipd::bfd::packet::{Packet, State};
use vipd::bfd::session::{Config, Input, Output, Session, Timer};

const LOCAL: u32 = 0x5eed;

fuzz_target!(|data: &[u8]| {
    let Some((&timers, mut rest)) = data.split_first() else {
        return;
    };
    let interval = Duration::from_millis(10 * (1 + u64::from(timers % 64)));
    let cfg = Config {
        desired_min_tx: interval,
        required_min_rx: interval,
        detect_mult: 1 + timers / 64,
    };
    let mut s = Session::new(cfg, LOCAL, 1);
    let mut now = Instant::now();
    let mut up = false;
    let mut admin = false;
    check(&cfg, s.handle(Input::Start, now), now, &mut up, admin);
    while let Some((&sel, tail)) = rest.split_first() {
        rest = tail;
        now += Duration::from_millis(10 * u64::from(sel & 0x1f));
        let input = match sel % 8 {
            0..=2 => Input::Fired(Timer::Transmit),
            3 => Input::Fired(Timer::Detect),
            4 if sel == 4 => {
                admin = true;
                Input::AdminDown
            }
            4 => Input::Fired(Timer::Transmit),
            _ => {
                let n = (24 + usize::from((sel / 8) % 8)).min(rest.len());
                let (bytes, tail) = rest.split_at(n);
                rest = tail;
                match Packet::decode(bytes) {
                    Ok(p) => {
                        round_trip(bytes, &p);
                        Input::Received(p)
                    }
                    Err(_) => continue,
                }
            }
        };
        check(&cfg, s.handle(input, now), now, &mut up, admin);
        if admin {
            assert_eq!(s.state(), State::AdminDown, "left AdminDown");
        }
    }
});

fn round_trip(bytes: &[u8], p: &Packet) {
    let again = p.encode();
    assert_eq!(&again[..3], &bytes[..3], "header bytes changed");
    assert_eq!(&again[4..], &bytes[4..24], "fields changed");
    assert_eq!(Packet::decode(&again), Ok(*p), "re-encoded packet decodes differently");
}

fn check(cfg: &Config, out: Vec<Output>, now: Instant, up: &mut bool, admin: bool) {
    for o in out {
        match o {
            Output::Send(p) => {
                assert_eq!(
                    Packet::decode(&p.encode()),
                    Ok(p),
                    "we sent a packet peers must discard: {p:?}"
                );
                assert_eq!(p.my_discriminator, LOCAL);
                assert_eq!(p.detect_mult, cfg.detect_mult);
                assert!(!(p.poll && p.final_), "P and F together: {p:?}");
                if p.state != State::Up {
                    assert!(p.desired_min_tx >= 1_000_000, "fast while not Up: {p:?}");
                }
                if p.state == State::AdminDown {
                    assert!(admin, "AdminDown sent without being asked");
                }
            }
            Output::Arm(_, at) => assert!(at >= now, "timer armed in the past"),
            Output::Up => {
                assert!(!*up, "Up twice");
                assert!(!admin, "Up after AdminDown");
                *up = true;
            }
            Output::Down { .. } => {
                assert!(*up, "Down without Up");
                *up = false;
            }
            Output::Disarm(_) | Output::Discarded(_) => {}
        }
    }
}

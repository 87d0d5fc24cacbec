//! Fuzz target: Ethernet frames read off the link in ARP/NDP mode — `vipd::l2::frame::
//! claim_by_other` for an IPv4 and an IPv6 VIP — and the per-VIP announcer
//! (`vipd::l2::announcer::Announcer`) fed those frames, its timer and `AddressAdded`.
//!
//! Input layout: bytes 0..6 our MAC, 6..12 another host's MAC, 12..16 the IPv4 VIP, 16..32
//! the IPv6 VIP, 32 the announcement rate (500 + 100 × n ms); the rest is both a frame (for
//! `claim_by_other`) and the announcer's steps, one selector byte each: `% 8` = 0 or 1 the
//! timer fires, 2 the address was added, 3 another host's announcement arrives, 4 its probe,
//! 5–7 a frame of the next `(selector / 8) × 4` bytes arrives. Every step also advances the
//! clock by `(selector & 0x1f) × 10` ms.
//!
//! Asserted (besides "no panic"):
//! - a claim never names our MAC, nor comes from a frame sent from our MAC;
//! - our own probe and announcement are never a claim (they loop back on the link), and
//!   another MAC's are a claim naming that MAC; the NDP frames' ICMPv6 checksums verify;
//! - the announcer: once refused it never outputs anything again (in particular never
//!   `AddAddress`); `AddAddress` comes at most once and never after a refusal; `Refused` only
//!   before the claim, `Contested` only after it and once per MAC, neither naming us; it
//!   announces only after the driver added the address; what it sends is never taken as
//!   another's claim; timers are armed at or after now.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use vipd::l2::announcer::{Announcer, Input, Output};
use vipd::l2::frame::{self, claim_by_other, Mac};

const HEAD: usize = 33;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEAD {
        return;
    }
    let (head, rest) = data.split_at(HEAD);
    let ours = Mac(head[0..6].try_into().expect("6 bytes"));
    let other = Mac(head[6..12].try_into().expect("6 bytes"));
    let v4 = IpAddr::V4(Ipv4Addr::new(head[12], head[13], head[14], head[15]));
    let v6_octets: [u8; 16] = head[16..32].try_into().expect("16 bytes");
    let v6 = IpAddr::V6(Ipv6Addr::from(v6_octets));
    let rate = Duration::from_millis(500 + 100 * u64::from(head[32]));
    for vip in [v4, v6] {
        check_claim(rest, ours, vip);
        check_builders(ours, other, vip);
        run_announcer(rest, ours, other, vip, rate);
    }
});

fn check_claim(frame: &[u8], ours: Mac, vip: IpAddr) {
    if let Some(claimer) = claim_by_other(frame, ours, vip) {
        assert_ne!(claimer, ours, "our own MAC taken as another's claim");
        assert_ne!(frame.get(6..12), Some(&ours.0[..]), "a frame from our MAC taken as a claim");
    }
}

fn check_builders(ours: Mac, other: Mac, vip: IpAddr) {
    for f in [frame::probe(ours, vip), frame::announcement(ours, vip)] {
        assert_eq!(claim_by_other(&f, ours, vip), None, "our own frame is a claim");
        if vip.is_ipv6() {
            check_icmpv6_checksum(&f);
        }
    }
    if other != ours {
        assert_eq!(
            claim_by_other(&frame::announcement(other, vip), ours, vip),
            Some(other),
            "another host's announcement is not a claim"
        );
        assert_eq!(
            claim_by_other(&frame::probe(other, vip), ours, vip),
            Some(other),
            "another host's probe is not a claim"
        );
    }
}

/// Ethernet (14) + IPv6 header (40) + ICMPv6: summed with the checksum in place, the one's
/// complement sum over pseudo-header and message is 0xffff, so the function returns 0.
fn check_icmpv6_checksum(f: &[u8]) {
    let src: [u8; 16] = f[22..38].try_into().expect("16 bytes");
    let dst: [u8; 16] = f[38..54].try_into().expect("16 bytes");
    let sum = frame::icmpv6_checksum(Ipv6Addr::from(src), Ipv6Addr::from(dst), &f[54..]);
    assert_eq!(sum, 0, "ICMPv6 checksum does not verify");
}

#[derive(Default)]
struct Seen {
    refused: bool,
    claimed: bool,
    address_added: bool,
    contested: BTreeSet<Mac>,
}

fn run_announcer(steps: &[u8], ours: Mac, other: Mac, vip: IpAddr, rate: Duration) {
    let mut now = Instant::now();
    let (mut a, out) = Announcer::start(vip, ours, rate, now);
    let mut seen = Seen::default();
    check_outputs(&a, &out, &mut seen, ours, vip, now);

    let mut rest = steps;
    let mut buf: Vec<u8>;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        now += Duration::from_millis(u64::from(op & 0x1f) * 10);
        let input = match op % 8 {
            0 | 1 => Input::Timer,
            2 => Input::AddressAdded,
            3 => {
                buf = frame::announcement(other, vip);
                Input::Frame(&buf)
            }
            4 => {
                buf = frame::probe(other, vip);
                Input::Frame(&buf)
            }
            _ => {
                let n = (usize::from(op / 8) * 4).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                Input::Frame(chunk)
            }
        };
        if matches!(input, Input::AddressAdded) && seen.claimed && !seen.refused {
            seen.address_added = true;
        }
        let was_refused = a.is_refused();
        let out = a.handle(input, now);
        if was_refused {
            assert!(out.is_empty(), "a refused announcer acted: {out:?}");
        }
        check_outputs(&a, &out, &mut seen, ours, vip, now);
    }
}

fn check_outputs(
    a: &Announcer,
    out: &[Output],
    seen: &mut Seen,
    ours: Mac,
    vip: IpAddr,
    now: Instant,
) {
    let ours_announcement = frame::announcement(ours, vip);
    let ours_probe = frame::probe(ours, vip);
    for o in out {
        match o {
            Output::Send(f) => {
                assert_eq!(claim_by_other(f, ours, vip), None, "we sent another's claim");
                // (For the VIP 0.0.0.0 the ARP probe and announcement are the same bytes.)
                if *f == ours_announcement && *f != ours_probe {
                    assert!(seen.address_added, "announced before the address was added");
                }
            }
            Output::Arm(at) => assert!(*at >= now, "timer armed in the past"),
            Output::AddAddress => {
                assert!(!seen.refused, "AddAddress after Refused");
                assert!(!seen.claimed, "AddAddress twice");
                seen.claimed = true;
            }
            Output::Refused(mac) => {
                assert_ne!(*mac, ours);
                assert!(!seen.claimed, "refused after claiming");
                assert!(a.is_refused());
                seen.refused = true;
            }
            Output::Contested(mac) => {
                assert_ne!(*mac, ours);
                assert!(seen.claimed, "contested before claiming");
                assert!(seen.contested.insert(*mac), "{mac} reported twice");
            }
        }
    }
}

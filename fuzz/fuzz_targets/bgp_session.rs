//! Fuzz target: the sans-I/O BGP session (`vipd::bgp::fsm::Session`), fed what a peer sends
//! and everything else its driver can feed it, on a synthetic clock.
//!
//! Input layout:
//! - byte 0, flags: bit 0 clear = a valid peer OPEN + KEEPALIVE is received first (so the
//!   session is Established and the rest of the input explores UPDATE, ROUTE-REFRESH and
//!   NOTIFICATION handling); bit 1 = passive session; bit 2 = accept any peer AS (remote AS 0);
//!   bit 3 = IPv6 next hops too (both families offered); bits 4–7 = the backoff jitter seed.
//! - then steps, one selector byte each:
//!   - `0x00..=0xBF`: `Received` of the next `selector + 1` bytes (up to 192);
//!   - `0xC0..=0xC7`: the clock advances 2^(selector & 7) seconds;
//!   - `0xC8`, `0xC9`, `0xCA`: the ConnectRetry, Hold or Keepalive timer fires;
//!   - `0xCB` `Closed`, `0xCC` `ConnectFailed`, `0xCD` `Connected`, `0xCE` `Incoming`,
//!     `0xCF` `Start`;
//!   - `0xD0..=0xDF`: `Routes` with (selector & 15) host routes of both families;
//!   - `0xE0..=0xE7`: `Stop` with a Cease kind from the selector and a reason of the next
//!     `n` bytes, `n` being the byte after the selector; `0xE8..=0xEF`: `Restart` with such
//!     a reason (the session offers graceful restart, and the valid peer OPEN of bit 0 carries
//!     the Graceful Restart capability with the N bit, so both ways of ending are reached);
//!   - `0xF0..=0xFF`: `Received` of the next ((selector & 15) + 1) × 256 bytes (whole 4 KiB
//!     UPDATEs in one read).
//!
//! Asserted after every input (besides "no panic"):
//! - a `Notify` or `Close` in the outputs leaves the session not Established (`fail` and `stop`
//!   always move it to Active or Idle; nothing re-establishes in the same call);
//! - Established implies `negotiated()` is Some (set before the move to OpenConfirm);
//! - `advertised()` never exceeds the number of desired routes (it counts a subset of the
//!   routes last handed in) and is 0 outside Established (reset with every connection);
//! - every timer is armed at or after the current time;
//! - every message we send encodes within RFC 4271's 4096-byte limit, NOTIFICATIONs included
//!   (a malformed ROUTE-REFRESH is quoted whole in the NOTIFICATION; `Notification::encode`
//!   cuts the quote to fit).

#![no_main]

use libfuzzer_sys::fuzz_target;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd::bgp::fsm::{Backoff, Input, NextHops, Output, Session, SessionConfig, State, Timer};
use vipd::bgp::open::GracefulRestartOffer;
use vipd::bgp::types::{host_routes, Asn, HoldTime, RouteSet, RouterId};
use vipd::bgp::wire::{self, CeaseKind, MAX_MESSAGE_LEN};

const LOCAL_AS: u32 = 65000;
const PEER_AS: u32 = 65530;

const CEASE_KINDS: [CeaseKind; 5] = [
    CeaseKind::AdministrativeShutdown,
    CeaseKind::AdministrativeReset,
    CeaseKind::PeerDeconfigured,
    CeaseKind::OtherConfigurationChange,
    CeaseKind::ConnectionCollisionResolution,
];

fn config(passive: bool, any_as: bool) -> SessionConfig {
    SessionConfig {
        local_as: Asn(LOCAL_AS),
        remote_as: Asn(if any_as { 0 } else { PEER_AS }),
        router_id: RouterId(Ipv4Addr::new(10, 99, 0, 1)),
        hold_time: HoldTime::new(90).expect("90 s is a valid hold time"),
        keepalive: None,
        passive,
        backoff: Backoff::default(),
        graceful_restart: Some(GracefulRestartOffer {
            restart_time: 120,
            long_lived_stale_time: 0,
        }),
    }
}

fn next_hops(dual_stack: bool) -> NextHops {
    NextHops {
        v4: Some(Ipv4Addr::new(10, 99, 0, 1)),
        v6: dual_stack.then(|| Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1)),
        v6_link_local: dual_stack.then(|| Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
    }
}

/// The peer's OPEN (as `fsm_tests.rs` builds it: MP for `families`, 4-octet AS, route refresh,
/// hold time 90) followed by its KEEPALIVE, on the wire.
fn peer_hello(families: &[AddressType]) -> Vec<u8> {
    let mut caps: Vec<BgpCapability> = families
        .iter()
        .map(|a| BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(*a)))
        .collect();
    caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(
        PEER_AS,
    )));
    caps.push(BgpCapability::RouteRefresh);
    let gr_families: Vec<GracefulRestartAddressFamily> = families
        .iter()
        .map(|a| GracefulRestartAddressFamily::new(true, *a))
        .collect();
    caps.push(BgpCapability::GracefulRestartCapability(
        GracefulRestartCapability::new(false, true, 120, gr_families),
    ));
    let open = BgpMessage::Open(BgpOpenMessage::new(
        Asn(PEER_AS).two_octet(),
        90,
        Ipv4Addr::new(10, 99, 0, 2),
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    ));
    let mut out = Vec::new();
    wire::encode_into(&open, &mut out).expect("the test OPEN encodes");
    wire::encode_into(&BgpMessage::KeepAlive, &mut out).expect("a KEEPALIVE encodes");
    out
}

/// `n` host routes, alternating IPv4 and IPv6.
fn routes(n: u8) -> Arc<RouteSet> {
    let vips: Vec<IpAddr> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::new(10, 96, 0, i))
            } else {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, u16::from(i)))
            }
        })
        .collect();
    Arc::new(host_routes(&vips))
}

/// Takes up to `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let slice: &'a [u8] = *rest;
    let (head, tail) = slice.split_at(n.min(slice.len()));
    *rest = tail;
    head
}

struct Harness {
    session: Session,
    now: Instant,
    /// How many routes the last `Input::Routes` held.
    desired: usize,
}

impl Harness {
    fn feed(&mut self, input: Input) {
        if let Input::Routes(r) = &input {
            self.desired = r.len();
        }
        let out = self.session.handle(input, self.now);
        self.check(&out);
    }

    fn check(&self, out: &[Output]) {
        let s = &self.session;
        let state = s.state();
        for o in out {
            match o {
                Output::Send(msgs) => {
                    for m in msgs {
                        let mut buf = Vec::new();
                        wire::encode_into(m, &mut buf).expect("our own messages encode");
                        assert!(
                            buf.len() <= MAX_MESSAGE_LEN,
                            "we sent a {}-byte message: {m:?}",
                            buf.len()
                        );
                    }
                }
                Output::Notify(n) => {
                    let len = n.encode().len();
                    assert!(
                        len <= MAX_MESSAGE_LEN,
                        "we sent a {len}-byte NOTIFICATION ({n})"
                    );
                }
                Output::Arm(timer, at) => {
                    assert!(*at >= self.now, "{timer:?} armed in the past")
                }
                _ => {}
            }
        }
        if out
            .iter()
            .any(|o| matches!(o, Output::Notify(_) | Output::Close))
        {
            assert_ne!(
                state,
                State::Established,
                "still Established after closing: {out:?}"
            );
        }
        if state == State::Established {
            assert!(
                s.negotiated().is_some(),
                "Established without a negotiation"
            );
        } else {
            assert_eq!(
                s.advertised(),
                0,
                "routes counted without a session ({state:?})"
            );
        }
        assert!(
            s.advertised() <= self.desired,
            "{} advertised of {} desired",
            s.advertised(),
            self.desired
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let hello = flags & 1 == 0;
    let passive = flags & 2 != 0;
    let any_as = flags & 4 != 0;
    let dual_stack = flags & 8 != 0;
    let nh = next_hops(dual_stack);

    let mut h = Harness {
        session: Session::new(config(passive, any_as), u64::from(flags >> 4)),
        now: Instant::now(),
        desired: 0,
    };
    h.feed(Input::Routes(routes(3)));
    h.feed(Input::Start);
    h.feed(if passive {
        Input::Incoming(nh.clone())
    } else {
        Input::Connected(nh.clone())
    });
    if hello {
        let families: &[AddressType] = if dual_stack {
            &[AddressType::Ipv4Unicast, AddressType::Ipv6Unicast]
        } else {
            &[AddressType::Ipv4Unicast]
        };
        h.feed(Input::Received(peer_hello(families)));
    }

    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let input = match op {
            0x00..=0xBF => Input::Received(take(&mut rest, usize::from(op) + 1).to_vec()),
            0xC0..=0xC7 => {
                h.now += Duration::from_secs(1 << (op & 7));
                continue;
            }
            0xC8..=0xCA => Input::Fired(Timer::ALL[usize::from(op - 0xC8)]),
            0xCB => Input::Closed("connection reset by peer".to_owned()),
            0xCC => Input::ConnectFailed("connection refused".to_owned()),
            0xCD => Input::Connected(nh.clone()),
            0xCE => Input::Incoming(nh.clone()),
            0xCF => Input::Start,
            0xD0..=0xDF => Input::Routes(routes(op & 0x0f)),
            0xE0..=0xEF => {
                let n = take(&mut rest, 1).first().copied().unwrap_or(0);
                let reason = String::from_utf8_lossy(take(&mut rest, usize::from(n))).into_owned();
                if op & 0x08 == 0 {
                    Input::Stop {
                        kind: CEASE_KINDS[usize::from(op & 0x07) % CEASE_KINDS.len()],
                        reason,
                    }
                } else {
                    Input::Restart { reason }
                }
            }
            0xF0..=0xFF => {
                let n = (usize::from(op & 0x0f) + 1) * 256;
                Input::Received(take(&mut rest, n).to_vec())
            }
        };
        h.feed(input);
    }
});

//! Fuzz target: BGP bytes from a peer, decoded piece by piece without a session: the stream
//! framer (`vipd::bgp::wire::Framer`), the header check (`inbound::message`) and the decoders of
//! each message type (`inbound::open` + `open::negotiate`, `inbound::update`,
//! `inbound::route_refresh`, `Notification::from_body`), plus the Cease text encoder.
//!
//! The input is used three ways: as a TCP byte stream (framed in one piece and again in chunks
//! of `1 + data[0] % 64` bytes); as the body of a message of each of the five types behind a
//! good header (so the fuzzer need not find the 16-byte marker); and as a shutdown text.
//!
//! Asserted (besides "no panic"):
//! - framing does not depend on how the stream is split into reads;
//! - frames are 19..=4096 bytes, and what is left over is less than a message;
//! - a decoded NOTIFICATION re-encodes to exactly the frame it came from;
//! - `negotiate` keeps RFC 4271's rules: the smaller hold time, 0 or ≥ 3 s, a keepalive of
//!   1 s..=hold/3 exactly when the hold time is not 0, only families we offered;
//! - a treat-as-withdraw UPDATE announces nothing;
//! - round trip: the prefixes of every UPDATE we accept, announced and withdrawn again with our
//!   own encoder (`UpdateContext::announcements`, `wire::withdrawals`), give messages of at most
//!   4096 bytes that our decoder accepts cleanly (no discard, no withdraw) and that carry exactly
//!   the same prefixes (those netgauze can express as unicast NLRI: our encoder drops the rest);
//! - a Cease text is cut to 255 bytes on a character boundary and reads back as sent.

#![no_main]

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv6Unicast};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use vipd::bgp::inbound::{self, Action, Kind, Update, UpdateRules};
use vipd::bgp::notification::{Notification, Received};
use vipd::bgp::open::{negotiate, OpenOffer};
use vipd::bgp::types::{Asn, Family, HoldTime, RouteAttrs, RouterId};
use vipd::bgp::wire::{self, CeaseKind, Framer, UpdateContext, HEADER_LEN, MAX_MESSAGE_LEN};

fuzz_target!(|data: &[u8]| {
    // 1. The stream, in one read and in many.
    let whole = frames(&[data]);
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0) % 64);
    let chunks: Vec<&[u8]> = data.chunks(chunk).collect();
    assert_eq!(frames(&chunks), whole, "framing depends on the reads");
    for frame in &whole.0 {
        check_frame(frame);
    }

    // 2. The input as the body of each message type.
    let body = &data[..data.len().min(MAX_MESSAGE_LEN - HEADER_LEN)];
    for kind in 1..=5u8 {
        check_frame(&frame_of(kind, body));
    }

    // 3. The input as an administrative shutdown text.
    check_cease(&String::from_utf8_lossy(data));
});

/// The frames of a stream read in `reads`, and the error that ended it, if any.
fn frames(reads: &[&[u8]]) -> (Vec<Vec<u8>>, Option<String>) {
    let mut framer = Framer::default();
    let mut out = Vec::new();
    for read in reads {
        framer.extend(read);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    assert!(
                        (HEADER_LEN..=MAX_MESSAGE_LEN).contains(&frame.len()),
                        "a frame of {} bytes",
                        frame.len()
                    );
                    out.push(frame.to_vec());
                }
                Ok(None) => {
                    assert!(framer.pending() < MAX_MESSAGE_LEN);
                    break;
                }
                Err(rejected) => {
                    assert!(!rejected.description.is_empty());
                    let _ = rejected.notification.to_string();
                    // The session closes the connection here: the rest is never read.
                    return (out, Some(rejected.description));
                }
            }
        }
    }
    (out, None)
}

/// A message of type `kind` with `body`, behind a valid header.
fn frame_of(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(HEADER_LEN + body.len()).expect("bodies are cut to 4077 bytes");
    let mut frame = vec![0xff; 16];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(body);
    frame
}

fn check_frame(frame: &[u8]) {
    let msg = match inbound::message(frame) {
        Ok(msg) => msg,
        Err(rejected) => {
            assert!(!rejected.description.is_empty());
            let _ = rejected.notification.to_string();
            return;
        }
    };
    assert_eq!(msg.whole, frame);
    assert_eq!(msg.body, &frame[HEADER_LEN..]);
    match msg.kind {
        Kind::Open => check_open(msg.body),
        Kind::Update => {
            for asn4 in [false, true] {
                for ebgp in [false, true] {
                    check_update(msg.body, UpdateRules { asn4, ebgp });
                }
            }
        }
        Kind::Notification => {
            let received = Notification::from_body(msg.body);
            let _ = received.to_string();
            if let Received::Whole(n) = &received {
                let _ = n.shutdown_text();
                // The header was valid (marker, length = frame length, type 3): encoding the
                // decoded NOTIFICATION gives the frame back.
                assert_eq!(n.encode(), frame, "NOTIFICATION {n} does not round-trip");
            }
        }
        Kind::KeepAlive => assert!(msg.body.is_empty()),
        Kind::RouteRefresh => match inbound::route_refresh(msg) {
            Ok(rr) => {
                assert_eq!(msg.body.len(), 4);
                let _ = rr.requested();
            }
            Err(rejected) => {
                assert_ne!(msg.body.len(), 4);
                let _ = rejected.notification.to_string();
            }
        },
    }
}

fn check_open(body: &[u8]) {
    let open = match inbound::open(body) {
        Ok(open) => open,
        Err(rejected) => {
            assert!(!rejected.description.is_empty());
            return;
        }
    };
    let offer = OpenOffer {
        local_as: Asn(65000),
        router_id: RouterId(Ipv4Addr::new(10, 99, 0, 1)),
        hold_time: HoldTime::new(90).expect("90 s is a valid hold time"),
        families: vec![Family::Ipv4, Family::Ipv6],
        graceful_restart: None,
    };
    for (expected, keepalive) in [
        (Asn(0), None),
        (Asn(open.asn()), Some(Duration::from_secs(10))),
        (Asn(65530), Some(Duration::from_secs(1))),
    ] {
        match negotiate(&offer, expected, keepalive, &open) {
            Ok(neg) => {
                assert_ne!(neg.peer_as.0, 0);
                assert_eq!(neg.peer_as.0, open.asn());
                assert!(expected.0 == 0 || neg.peer_as == expected);
                assert_eq!(neg.hold_time, open.hold_time.min(90));
                assert!(neg.hold_time == 0 || neg.hold_time >= 3);
                assert_eq!(neg.keepalive.is_some(), neg.hold_time > 0);
                if let Some(k) = neg.keepalive {
                    let third = Duration::from_secs(u64::from(neg.hold_time)) / 3;
                    assert!(k >= Duration::from_secs(1) && k <= third, "keepalive {k:?}");
                }
                assert_eq!(neg.asn4, open.caps.as4.is_some());
                assert!(neg.families.iter().all(|f| offer.families.contains(f)));
            }
            Err(rejected) => {
                assert!(!rejected.reason.is_empty());
                let _ = rejected.notification.to_string();
            }
        }
    }
}

fn check_update(body: &[u8], rules: UpdateRules) {
    let update = match inbound::update(body, rules) {
        Ok(update) => update,
        Err(rejected) => {
            assert!(!rejected.description.is_empty());
            let _ = rejected.notification.to_string();
            return;
        }
    };
    if let Action::TreatAsWithdraw(why) = &update.action {
        assert!(update.announced.is_empty(), "treat-as-withdraw announces");
        assert!(!why.is_empty());
    }
    roundtrip(&update, rules);
}

/// Our encoder and our decoder agree on the prefixes of `update`.
fn roundtrip(update: &Update, rules: UpdateRules) {
    let ctx = UpdateContext {
        // A 4-octet AS when the peer is 2-octet, so AS4_PATH is exercised.
        local_as: Asn(if rules.asn4 { 65000 } else { 4_200_000_001 }),
        ebgp: rules.ebgp,
        asn4: rules.asn4,
        next_hop_v4: Some(Ipv4Addr::new(10, 99, 0, 1)),
        next_hop_v6: Some(Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1)),
        next_hop_v6_link_local: Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
    };
    for family in [Family::Ipv4, Family::Ipv6] {
        let announced = of_family(&update.announced, family);
        let msgs = ctx.announcements(family, &RouteAttrs::default(), &announced);
        let (a, w) = decode_ours(&msgs, rules);
        assert_eq!(a, sendable(&announced), "announced {family} prefixes changed");
        assert!(w.is_empty());

        let withdrawn = of_family(&update.withdrawn, family);
        let msgs = wire::withdrawals(family, &withdrawn);
        let (a, w) = decode_ours(&msgs, rules);
        assert!(a.is_empty());
        assert_eq!(w, sendable(&withdrawn), "withdrawn {family} prefixes changed");
    }
}

/// The prefixes of `family`, without duplicates.
fn of_family(prefixes: &[IpNet], family: Family) -> Vec<IpNet> {
    let set: BTreeSet<IpNet> = prefixes
        .iter()
        .copied()
        .filter(|p| Family::of_prefix(p) == family)
        .collect();
    set.into_iter().collect()
}

/// The prefixes our encoder can put in a message: netgauze refuses multicast (and, for IPv4,
/// broadcast) networks as unicast NLRI, and `wire` leaves those out.
fn sendable(prefixes: &[IpNet]) -> BTreeSet<IpNet> {
    prefixes
        .iter()
        .copied()
        .filter(|p| match p {
            IpNet::V4(n) => Ipv4Unicast::from_net(*n).is_ok(),
            IpNet::V6(n) => Ipv6Unicast::from_net(*n).is_ok(),
        })
        .collect()
}

/// Encodes our messages and reads them back with our own decoder: (announced, withdrawn).
fn decode_ours<'a>(
    msgs: impl IntoIterator<Item = &'a netgauze_bgp_pkt::BgpMessage>,
    rules: UpdateRules,
) -> (BTreeSet<IpNet>, BTreeSet<IpNet>) {
    let mut announced = BTreeSet::new();
    let mut withdrawn = BTreeSet::new();
    for m in msgs {
        let mut buf = Vec::new();
        wire::encode_into(m, &mut buf).expect("our UPDATE encodes");
        assert!(buf.len() <= MAX_MESSAGE_LEN, "our UPDATE has {} bytes", buf.len());
        let msg = inbound::message(&buf).expect("our UPDATE has a valid header");
        assert_eq!(msg.kind, Kind::Update);
        let u = inbound::update(msg.body, rules).expect("our UPDATE passes our own checks");
        assert_eq!(u.action, Action::Accept, "{u:?}");
        assert!(u.discarded.is_empty() && u.ignored.is_empty(), "{u:?}");
        announced.extend(u.announced);
        withdrawn.extend(u.withdrawn);
    }
    (announced, withdrawn)
}

fn check_cease(reason: &str) {
    for kind in [
        CeaseKind::AdministrativeShutdown,
        CeaseKind::AdministrativeReset,
        CeaseKind::PeerDeconfigured,
        CeaseKind::OtherConfigurationChange,
        CeaseKind::ConnectionCollisionResolution,
    ] {
        let n = wire::cease(kind, reason);
        assert_eq!((n.code, n.subcode), (6, kind.subcode()));
        let _ = n.to_string();
        match kind {
            CeaseKind::AdministrativeShutdown | CeaseKind::AdministrativeReset => {
                let (len, text) = n.data.split_first().expect("a length octet");
                assert_eq!(usize::from(*len), text.len());
                let text = std::str::from_utf8(text).expect("cut on a character boundary");
                assert!(reason.starts_with(text));
                if reason.len() <= 255 {
                    assert_eq!(text, reason);
                } else {
                    // Cut at 255 bytes, minus at most 3 for a character that does not fit.
                    assert!((252..=255).contains(&text.len()), "cut to {} bytes", text.len());
                }
                assert_eq!(n.shutdown_text().unwrap_or_default(), text);
            }
            _ => assert!(n.data.is_empty()),
        }
    }
}

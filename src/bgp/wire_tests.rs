//! Our UPDATEs against netgauze's decoder, the 4096-byte limit, and hostile input.

use super::*;
use crate::bgp::fsm::{Backoff, Input, NextHops, Session, SessionConfig};
use crate::bgp::inbound::UpdateRules;
use crate::bgp::types::{HoldTime, RouterId};
use netgauze_bgp_pkt::path_attribute::PathAttributeValue as V;
use proptest::prelude::*;
use std::net::IpAddr;
use std::time::Instant;

fn ctx(asn4: bool, local_as: u32) -> UpdateContext {
    UpdateContext {
        local_as: Asn(local_as),
        ebgp: true,
        asn4,
        next_hop_v4: Some("10.99.0.1".parse().unwrap()),
        next_hop_v6: Some("fd00:99::1".parse().unwrap()),
        next_hop_v6_link_local: Some("fe80::1".parse().unwrap()),
    }
}

fn hosts_v4(n: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| IpNet::from(IpAddr::from(std::net::Ipv4Addr::from(0x6440_0000 + i))))
        .collect()
}

fn hosts_v6(n: u128) -> Vec<IpNet> {
    (0..n)
        .map(|i| {
            IpNet::from(IpAddr::from(std::net::Ipv6Addr::from(
                0xfd00_0098u128 << 96 | i,
            )))
        })
        .collect()
}

/// An independent decoder for what we encode.
fn netgauze_decode(buf: &[u8], asn4: bool) -> BgpMessage {
    use netgauze_parse_utils::traits::ParseFromWithOneInput;
    let mut ctx = netgauze_bgp_pkt::wire::deserializer::BgpParsingContext::new(
        asn4,
        Default::default(),
        Default::default(),
        false,
        false,
        false,
        false,
    );
    BgpMessage::parse(
        &mut netgauze_parse_utils::reader::SliceReader::new(buf),
        &mut ctx,
    )
    .expect("netgauze decodes our message")
}

/// Encodes, checks every message against the size limit, decodes with netgauze, and returns
/// the prefixes found and the raw messages.
fn roundtrip(msgs: &[BgpMessage], asn4: bool) -> (Vec<IpNet>, Vec<IpNet>, Vec<BgpMessage>) {
    roundtrip_from(msgs, asn4, true)
}

/// [`roundtrip`] with our receive side reading as an eBGP or iBGP peer would.
fn roundtrip_from(
    msgs: &[BgpMessage],
    asn4: bool,
    ebgp: bool,
) -> (Vec<IpNet>, Vec<IpNet>, Vec<BgpMessage>) {
    let mut announced = Vec::new();
    let mut withdrawn = Vec::new();
    let mut decoded = Vec::new();
    for m in msgs {
        let mut buf = Vec::new();
        encode_into(m, &mut buf).unwrap();
        assert!(buf.len() <= MAX_MESSAGE_LEN, "{} bytes", buf.len());
        assert_eq!(buf.len(), encoded_len(m));
        let back = netgauze_decode(&buf, asn4);
        assert_eq!(&back, m, "decode(encode(m)) == m");
        if let BgpMessage::Update(_) = m {
            // Our own receive side reads what we send as a clean UPDATE.
            let got = crate::bgp::inbound::update(&buf[HEADER_LEN..], UpdateRules { asn4, ebgp })
                .expect("our UPDATE passes our own checks");
            assert_eq!(got.action, crate::bgp::inbound::Action::Accept, "{got:?}");
            assert!(got.discarded.is_empty(), "{got:?}");
        }
        if let BgpMessage::Update(u) = &back {
            announced.extend(u.nlri().iter().map(|a| IpNet::V4(a.network().address())));
            withdrawn.extend(
                u.withdraw_routes()
                    .iter()
                    .map(|a| IpNet::V4(a.network().address())),
            );
            for a in u.path_attributes() {
                match a.value() {
                    V::MpReach(MpReach::Ipv6Unicast { nlri, .. }) => {
                        announced.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())))
                    }
                    V::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => {
                        withdrawn.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())))
                    }
                    _ => {}
                }
            }
        }
        decoded.push(back);
    }
    (announced, withdrawn, decoded)
}

#[test]
fn ten_thousand_ipv4_hosts_pack_into_full_messages_that_decode_back() {
    let prefixes = hosts_v4(10_000);
    let msgs = ctx(true, 65000).announcements(Family::Ipv4, &RouteAttrs::default(), &prefixes);
    let (announced, _, _) = roundtrip(&msgs, true);
    assert_eq!(announced, prefixes);
    // 4096 bytes minus header and attributes leaves room for 814 /32s of 5 bytes each.
    assert_eq!(msgs.len(), 10_000usize.div_ceil(814));
    let mut first = Vec::new();
    encode_into(&msgs[0], &mut first).unwrap();
    assert!(
        first.len() > MAX_MESSAGE_LEN - 5,
        "first message is full: {}",
        first.len()
    );
}

#[test]
fn ipv6_hosts_go_in_mp_reach_with_global_and_link_local_next_hops() {
    let prefixes = hosts_v6(1_000);
    let msgs = ctx(true, 65000).announcements(Family::Ipv6, &RouteAttrs::default(), &prefixes);
    let (announced, _, decoded) = roundtrip(&msgs, true);
    assert_eq!(announced, prefixes);
    let BgpMessage::Update(u) = &decoded[0] else {
        panic!()
    };
    let reach = u
        .path_attributes()
        .iter()
        .find_map(|a| match a.value() {
            V::MpReach(MpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                ..
            }) => Some((*next_hop_global, *next_hop_local)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        reach,
        (
            "fd00:99::1".parse().unwrap(),
            Some("fe80::1".parse().unwrap())
        )
    );
}

#[test]
fn withdrawals_of_both_families_pack_and_decode() {
    let v4 = hosts_v4(3_000);
    let (_, withdrawn, _) = roundtrip(&withdrawals(Family::Ipv4, &v4), true);
    assert_eq!(withdrawn, v4);
    let v6 = hosts_v6(700);
    let (_, withdrawn, _) = roundtrip(&withdrawals(Family::Ipv6, &v6), true);
    assert_eq!(withdrawn, v6);
}

#[test]
fn ebgp_as_path_is_one_as_sequence_with_our_as() {
    let msgs =
        ctx(true, 4_200_000_001).announcements(Family::Ipv4, &RouteAttrs::default(), &hosts_v4(1));
    let mut buf = Vec::new();
    encode_into(&msgs[0], &mut buf).unwrap();
    // ORIGIN (40 01 01 00), then AS_PATH: flags 0x40, type 2, length 6, AS_SEQUENCE (2) of 1 AS.
    let at = buf
        .windows(4)
        .position(|w| w == [0x40, 0x02, 0x06, 0x02])
        .unwrap();
    assert_eq!(buf[at + 4], 1);
    assert_eq!(&buf[at + 5..at + 9], &4_200_000_001u32.to_be_bytes());
    assert!(
        buf.windows(4).any(|w| w == [0x40, 0x01, 0x01, 0x00]),
        "ORIGIN IGP"
    );
}

#[test]
fn graceful_shutdown_adds_65535_0_and_to_ibgp_local_pref_0() {
    let gs = RouteAttrs {
        graceful_shutdown: true,
    };
    for ebgp in [true, false] {
        let mut c = ctx(true, 65000);
        c.ebgp = ebgp;
        for family in [Family::Ipv4, Family::Ipv6] {
            let hosts = match family {
                Family::Ipv4 => hosts_v4(3),
                Family::Ipv6 => hosts_v6(3),
            };
            let (_, _, decoded) = roundtrip_from(&c.announcements(family, &gs, &hosts), true, ebgp);
            let BgpMessage::Update(u) = &decoded[0] else {
                panic!()
            };
            let communities: Vec<u32> = u
                .path_attributes()
                .iter()
                .filter_map(|a| match a.value() {
                    V::Communities(c) => Some(c.communities().iter().map(|c| c.value())),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(communities, [0xFFFF_0000], "{family} ebgp {ebgp}");
            let pref = u.path_attributes().iter().find_map(|a| match a.value() {
                V::LocalPreference(p) => Some(p.metric()),
                _ => None,
            });
            assert_eq!(pref, (!ebgp).then_some(0), "{family} ebgp {ebgp}");
        }
        // Without it: no community, and iBGP's usual LOCAL_PREF 100.
        let (_, _, plain) = roundtrip_from(
            &c.announcements(Family::Ipv4, &RouteAttrs::default(), &hosts_v4(1)),
            true,
            ebgp,
        );
        let BgpMessage::Update(u) = &plain[0] else {
            panic!()
        };
        assert!(!u
            .path_attributes()
            .iter()
            .any(|a| matches!(a.value(), V::Communities(_))));
        let pref = u.path_attributes().iter().find_map(|a| match a.value() {
            V::LocalPreference(p) => Some(p.metric()),
            _ => None,
        });
        assert_eq!(pref, (!ebgp).then_some(100));
    }
}

#[test]
fn two_octet_peer_gets_as_trans_and_as4_path_for_a_large_as() {
    let msgs =
        ctx(false, 4_200_000_001).announcements(Family::Ipv4, &RouteAttrs::default(), &hosts_v4(1));
    let (_, _, decoded) = roundtrip(&msgs, false);
    let BgpMessage::Update(u) = &decoded[0] else {
        panic!()
    };
    let as_path = u.path_attributes().iter().find_map(|a| match a.value() {
        V::AsPath(AsPath::As2PathSegments(s)) => Some(s[0].as_numbers().to_vec()),
        _ => None,
    });
    assert_eq!(as_path, Some(vec![Asn::TRANS]));
    assert!(u
        .path_attributes()
        .iter()
        .any(|a| matches!(a.value(), V::As4Path(_))));
}

#[test]
fn end_of_rib_markers_are_recognised_as_such() {
    for f in [Family::Ipv4, Family::Ipv6] {
        let BgpMessage::Update(u) = end_of_rib(f) else {
            panic!()
        };
        assert_eq!(u.end_of_rib(), Some(crate::bgp::open::address_type(f)));
    }
}

#[test]
fn cease_text_is_cut_at_255_bytes_on_a_character_boundary() {
    let long = "é".repeat(200);
    let n = cease(CeaseKind::AdministrativeShutdown, &long);
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.data[0], 254);
    assert!(std::str::from_utf8(&n.data[1..]).is_ok());
    assert_eq!(n.shutdown_text(), Some("é".repeat(127)));
}

fn established() -> (Session, Instant) {
    let t0 = Instant::now();
    let cfg = SessionConfig {
        local_as: Asn(65000),
        remote_as: Asn(65530),
        router_id: RouterId("10.99.0.1".parse().unwrap()),
        hold_time: HoldTime::new(90).unwrap(),
        keepalive: None,
        passive: false,
        backoff: Backoff::default(),
        graceful_restart: None,
    };
    let mut s = Session::new(cfg, 1);
    s.handle(Input::Start, t0);
    s.handle(
        Input::Connected(NextHops {
            v4: Some("10.99.0.1".parse().unwrap()),
            ..NextHops::default()
        }),
        t0,
    );
    let open = crate::bgp::open::OpenOffer {
        local_as: Asn(65530),
        router_id: RouterId("10.99.0.2".parse().unwrap()),
        hold_time: HoldTime::new(90).unwrap(),
        families: vec![Family::Ipv4, Family::Ipv6],
        graceful_restart: None,
    }
    .message();
    let mut bytes = Vec::new();
    encode_into(&open, &mut bytes).unwrap();
    encode_into(&BgpMessage::KeepAlive, &mut bytes).unwrap();
    s.handle(Input::Received(bytes), t0);
    (s, t0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any bytes at all: the session answers or waits, and never panics or loops.
    #[test]
    fn random_bytes_never_panic_the_session(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (mut s, t0) = established();
        let _ = s.handle(Input::Received(data), t0);
    }

    /// A valid header in front of random bodies reaches every type's checks.
    #[test]
    fn random_message_bodies_never_panic_the_session(
        kind in 1u8..=6,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let (mut s, t0) = established();
        let mut msg = vec![0xff; 16];
        msg.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
        msg.push(kind);
        msg.extend_from_slice(&body);
        let _ = s.handle(Input::Received(msg), t0);
    }

    /// Random UPDATE bodies shaped like real ones (lengths that add up) go deeper into the
    /// attribute parsers than uniform noise does.
    #[test]
    fn structured_random_updates_never_panic(
        withdrawn in proptest::collection::vec(any::<u8>(), 0..40),
        attrs in proptest::collection::vec(any::<u8>(), 0..200),
        nlri in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let (mut s, t0) = established();
        let mut body = Vec::new();
        body.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
        body.extend_from_slice(&withdrawn);
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend_from_slice(&attrs);
        body.extend_from_slice(&nlri);
        let mut msg = vec![0xff; 16];
        msg.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
        msg.push(2);
        msg.extend_from_slice(&body);
        let _ = s.handle(Input::Received(msg), t0);
    }
}

//! Every annotation form of `equinix-metal.md` §1, bad values, and all-index parsing.

use super::*;
use crate::peer::PeerAddress;

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn found(r: Result<AnnotationPeers, AnnotationError>) -> (Vec<PeerSpec>, Generation) {
    match r.unwrap() {
        AnnotationPeers::Found { peers, generation } => (peers, generation),
        other => panic!("expected peers, got {other:?}"),
    }
}

fn waiting(r: Result<AnnotationPeers, AnnotationError>) -> Waiting {
    match r.unwrap() {
        AnnotationPeers::Waiting(w) => w,
        other => panic!("expected waiting, got {other:?}"),
    }
}

/// The example of equinix-metal.md §1.1, verbatim.
fn ccm_current() -> BTreeMap<String, String> {
    ann(&[
        ("metal.equinix.com/bgp-peers-0-node-asn", "65000"),
        ("metal.equinix.com/bgp-peers-0-peer-asn", "65530"),
        ("metal.equinix.com/bgp-peers-0-peer-ip", "169.254.255.1"),
        ("metal.equinix.com/bgp-peers-0-src-ip", "10.66.29.1"),
        ("metal.equinix.com/bgp-peers-0-bgp-pass", ""),
        ("metal.equinix.com/bgp-peers-1-node-asn", "65000"),
        ("metal.equinix.com/bgp-peers-1-peer-asn", "65530"),
        ("metal.equinix.com/bgp-peers-1-peer-ip", "169.254.255.2"),
        ("metal.equinix.com/bgp-peers-1-src-ip", "10.66.29.1"),
        ("metal.equinix.com/bgp-peers-1-bgp-pass", ""),
        ("metal.equinix.com/network-4-private", "10.66.29.0/25"),
    ])
}

fn equinix_peer(addr: &str) -> PeerSpec {
    let mut p = PeerSpec::new(ip(addr), 65530);
    p.local_as = Some(65000);
    p.source = Some(ip("10.66.29.1"));
    p.router_id = Some("10.66.29.1".parse().unwrap());
    p
}

#[test]
fn current_ccm_keys_give_one_peer_per_index_in_index_order() {
    let (peers, generation) = found(peers_from_annotations("metal.equinix.com", &ccm_current()));
    assert_eq!(generation, Generation::Indexed);
    assert_eq!(
        peers,
        vec![equinix_peer("169.254.255.1"), equinix_peer("169.254.255.2")]
    );
}

#[test]
fn a_trailing_slash_on_the_prefix_is_ignored() {
    let (peers, _) = found(peers_from_annotations("metal.equinix.com/", &ccm_current()));
    assert_eq!(peers.len(), 2);
}

#[test]
fn every_index_keeps_its_own_as_password_and_multihop() {
    let a = ann(&[
        ("test/bgp-peers-0-node-asn", "65000"),
        ("test/bgp-peers-0-peer-asn", "65530"),
        ("test/bgp-peers-0-peer-ip", "192.0.2.1"),
        ("test/bgp-peers-0-src-ip", "192.0.2.10"),
        ("test/bgp-peers-0-bgp-pass", "c2VjcmV0"), // "secret"
        ("test/bgp-peers-10-node-asn", "4200000001"),
        ("test/bgp-peers-10-peer-asn", "65531"),
        ("test/bgp-peers-10-peer-ip", "198.51.100.1"),
        ("test/bgp-peers-10-src-ip", "192.0.2.10"),
        ("test/bgp-peers-10-bgp-pass", ""),
        ("test/bgp-peers-10-peer-multi-hop", "true"),
        ("test/bgp-peers-2-node-asn", "65002"),
        ("test/bgp-peers-2-peer-asn", "65532"),
        ("test/bgp-peers-2-peer-ip", "203.0.113.1"),
    ]);
    let (peers, _) = found(peers_from_annotations("test", &a));
    let addrs: Vec<_> = peers.iter().map(|p| p.address.clone()).collect();
    assert_eq!(
        addrs,
        vec![
            PeerAddress::Ip(ip("192.0.2.1")),
            PeerAddress::Ip(ip("203.0.113.1")),
            PeerAddress::Ip(ip("198.51.100.1")),
        ],
        "ordered by index number, not by key text"
    );
    assert_eq!(peers[0].remote_as, 65530);
    assert_eq!(peers[0].local_as, Some(65000));
    assert_eq!(
        peers[0].password.as_ref().map(|p| p.expose()),
        Some("secret")
    );
    assert!(!peers[0].multihop);
    assert_eq!(peers[1].local_as, Some(65002));
    assert_eq!(peers[1].remote_as, 65532);
    assert_eq!(peers[1].source, None, "index 2 has no src-ip");
    assert_eq!(peers[1].router_id, None);
    assert_eq!(peers[2].local_as, Some(4_200_000_001));
    assert_eq!(peers[2].remote_as, 65531);
    assert_eq!(peers[2].password, None);
    assert!(peers[2].multihop);
    assert_eq!(peers[2].port, 179);
}

#[test]
fn un_indexed_multihop_applies_to_every_index_unless_the_index_says_otherwise() {
    let mut a = ccm_current();
    a.insert("metal.equinix.com/peer-multi-hop".into(), "true".into());
    a.insert(
        "metal.equinix.com/bgp-peers-1-peer-multi-hop".into(),
        "false".into(),
    );
    let (peers, _) = found(peers_from_annotations("metal.equinix.com", &a));
    assert!(peers[0].multihop);
    assert!(!peers[1].multihop);
}

#[test]
fn a_comma_list_in_an_indexed_peer_ip_gives_one_peer_per_address() {
    let mut a = ccm_current();
    a.insert(
        "metal.equinix.com/bgp-peers-0-peer-ip".into(),
        "169.254.255.1, 169.254.255.2".into(),
    );
    let (peers, _) = found(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(
        peers,
        vec![equinix_peer("169.254.255.1"), equinix_peer("169.254.255.2")],
        "169.254.255.2 of index 1 is the same peer and appears once"
    );
}

#[test]
fn ccm_3_0_list_keys_are_read() {
    let a = ann(&[
        ("metal.equinix.com/node-asn", "65000"),
        ("metal.equinix.com/peer-asn", "65530"),
        ("metal.equinix.com/peer-ip", "169.254.255.1,169.254.255.2"),
        ("metal.equinix.com/src-ip", "10.66.29.1"),
        ("metal.equinix.com/bgp-pass", "c2VjcmV0"),
        ("metal.equinix.com/network/4/private", "10.66.29.0/25"),
    ]);
    let (peers, generation) = found(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(generation, Generation::Lists);
    let mut want = vec![equinix_peer("169.254.255.1"), equinix_peer("169.254.255.2")];
    for p in &mut want {
        p.password = Some(Password::new("secret".into()));
    }
    assert_eq!(peers, want);
}

#[test]
fn the_newest_generation_wins_over_stale_older_keys() {
    let mut a = ccm_current();
    a.insert("metal.equinix.com/peer-ip".into(), "10.9.9.9".into());
    a.insert("metal.equinix.com/node-asn".into(), "1".into());
    a.insert("packet.com/peer.ips".into(), "10.8.8.8".into());
    let (peers, generation) = found(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(generation, Generation::Indexed);
    assert_eq!(peers.len(), 2);
}

#[test]
fn packet_ccm_keys_are_read_under_packet_com_for_the_equinix_prefix() {
    let a = ann(&[
        ("packet.com/node.asn", "65000"),
        ("packet.com/peer.asns", "65530"),
        ("packet.com/peer.ips", "10.66.29.0"),
    ]);
    let (peers, generation) = found(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(generation, Generation::Dotted);
    let mut want = PeerSpec::new(ip("10.66.29.0"), 65530);
    want.local_as = Some(65000);
    assert_eq!(peers, vec![want]);

    let (same, _) = found(peers_from_annotations("packet.com", &a));
    assert_eq!(same, peers);
    // Another prefix does not pick up packet.com's keys.
    let w = waiting(peers_from_annotations("example.org", &a));
    assert_eq!(w.key, "example.org/bgp-peers-0-peer-ip");
}

#[test]
fn packet_ccm_peer_asns_may_give_one_as_per_address() {
    let a = ann(&[
        ("packet.com/node.asn", "65000"),
        ("packet.com/peer.asns", "65530,65531"),
        ("packet.com/peer.ips", "10.0.0.1,10.0.0.2"),
    ]);
    let (peers, _) = found(peers_from_annotations("packet.com", &a));
    assert_eq!(peers[0].remote_as, 65530);
    assert_eq!(peers[1].remote_as, 65531);

    let bad = ann(&[
        ("packet.com/node.asn", "65000"),
        ("packet.com/peer.asns", "1,2,3"),
        ("packet.com/peer.ips", "10.0.0.1,10.0.0.2"),
    ]);
    let e = peers_from_annotations("packet.com", &bad).unwrap_err();
    assert!(e.to_string().contains("packet.com/peer.asns"), "{e}");
}

#[test]
fn any_prefix_works() {
    let a = ann(&[
        ("bgp.example.net/bgp-peers-0-node-asn", "64512"),
        ("bgp.example.net/bgp-peers-0-peer-asn", "64513"),
        ("bgp.example.net/bgp-peers-0-peer-ip", "fd00::1"),
        ("bgp.example.net/bgp-peers-0-src-ip", "fd00::2"),
    ]);
    let (peers, _) = found(peers_from_annotations("bgp.example.net", &a));
    assert_eq!(peers[0].address, PeerAddress::Ip(ip("fd00::1")));
    assert_eq!(peers[0].source, Some(ip("fd00::2")));
    assert_eq!(
        peers[0].router_id, None,
        "an IPv6 src-ip cannot be a router id"
    );
    // Keys of another prefix are not ours.
    let w = waiting(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(w.key, "metal.equinix.com/bgp-peers-0-peer-ip");
}

#[test]
fn an_ipv6_peer_does_not_get_an_ipv4_source_but_keeps_the_router_id() {
    let mut a = ccm_current();
    a.insert(
        "metal.equinix.com/bgp-peers-1-peer-ip".into(),
        "2604:1380::1".into(),
    );
    let (peers, _) = found(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(peers[1].source, None);
    assert_eq!(peers[1].router_id, Some("10.66.29.1".parse().unwrap()));
}

#[test]
fn no_annotations_at_all_is_waiting_for_the_first_peer_ip() {
    let w = waiting(peers_from_annotations(
        "metal.equinix.com",
        &BTreeMap::new(),
    ));
    assert_eq!(
        w.to_string(),
        "node annotation metal.equinix.com/bgp-peers-0-peer-ip is missing"
    );
    // network-4-private alone (the CCM wrote it, peers never came) is still waiting.
    let a = ann(&[("metal.equinix.com/network-4-private", "10.66.29.0/25")]);
    let w = waiting(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(w.key, "metal.equinix.com/bgp-peers-0-peer-ip");
}

#[test]
fn a_half_written_index_is_waiting_and_names_the_missing_key() {
    let mut a = ccm_current();
    a.remove("metal.equinix.com/bgp-peers-1-node-asn");
    let w = waiting(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(
        w,
        Waiting {
            key: "metal.equinix.com/bgp-peers-1-node-asn".into(),
            empty: false
        }
    );

    let mut a = ccm_current();
    a.insert("metal.equinix.com/bgp-peers-0-peer-ip".into(), "".into());
    let w = waiting(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(
        w.to_string(),
        "node annotation metal.equinix.com/bgp-peers-0-peer-ip is empty"
    );

    let a = ann(&[("metal.equinix.com/peer-ip", "169.254.255.1")]);
    let w = waiting(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(w.key, "metal.equinix.com/node-asn");
}

#[test]
fn bad_values_name_the_key_and_the_value() {
    let cases = [
        ("metal.equinix.com/bgp-peers-0-node-asn", "65x", "\"65x\""),
        ("metal.equinix.com/bgp-peers-1-peer-asn", "0", "\"0\""),
        (
            "metal.equinix.com/bgp-peers-0-peer-asn",
            "4294967296",
            "\"4294967296\"",
        ),
        (
            "metal.equinix.com/bgp-peers-1-peer-ip",
            "169.254.255.300",
            "\"169.254.255.300\"",
        ),
        (
            "metal.equinix.com/bgp-peers-0-src-ip",
            "10.66.29.1/31",
            "\"10.66.29.1/31\"",
        ),
        (
            "metal.equinix.com/bgp-peers-0-peer-multi-hop",
            "maybe",
            "\"maybe\"",
        ),
    ];
    for (key, value, shown) in cases {
        let mut a = ccm_current();
        a.insert(key.into(), value.into());
        let e = peers_from_annotations("metal.equinix.com", &a).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(key), "{text}");
        assert!(text.contains(shown), "{text}");
    }
    let mut a = ccm_current();
    a.insert(
        "metal.equinix.com/bgp-peers-x-peer-ip".into(),
        "10.0.0.1".into(),
    );
    let e = peers_from_annotations("metal.equinix.com", &a).unwrap_err();
    assert!(e.to_string().contains("bgp-peers-x-peer-ip"), "{e}");
}

#[test]
fn keys_with_unknown_fields_are_someone_elses_and_ignored() {
    let mut a = ccm_current();
    a.insert("metal.equinix.com/bgp-peers-0-colour".into(), "red".into());
    a.insert("metal.equinix.com/bgp-peers-x-colour".into(), "red".into());
    let (peers, _) = found(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(peers.len(), 2);
}

#[test]
fn bad_passwords_name_the_key_but_never_the_value() {
    for value in ["hunter2!", "aHVudGVyMg", "//79/Q=="] {
        // not base64; base64 without padding; base64 of bytes that are not UTF-8
        let mut a = ccm_current();
        a.insert(
            "metal.equinix.com/bgp-peers-1-bgp-pass".into(),
            value.into(),
        );
        let e = peers_from_annotations("metal.equinix.com", &a).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(
            text.contains("metal.equinix.com/bgp-peers-1-bgp-pass"),
            "{text}"
        );
        assert!(!text.contains(value), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    let long = base64::engine::general_purpose::STANDARD.encode("x".repeat(81));
    let mut a = ccm_current();
    a.insert(
        "metal.equinix.com/bgp-peers-0-bgp-pass".into(),
        long.clone(),
    );
    let e = peers_from_annotations("metal.equinix.com", &a).unwrap_err();
    assert!(e.to_string().contains("at most 80"), "{e}");
    assert!(!e.to_string().contains(&long));
}

#[test]
fn a_decoded_password_never_shows_in_debug_output() {
    let mut a = ccm_current();
    a.insert(
        "metal.equinix.com/bgp-peers-0-bgp-pass".into(),
        "aHVudGVyMg==".into(),
    );
    let r = peers_from_annotations("metal.equinix.com", &a).unwrap();
    let text = format!("{r:?}");
    assert!(!text.contains("hunter2"), "{text}");
    let (peers, _) = found(Ok(r));
    assert_eq!(
        peers[0].password.as_ref().map(|p| p.expose()),
        Some("hunter2")
    );
}

#[test]
fn an_empty_prefix_is_an_error() {
    assert_eq!(
        peers_from_annotations(" / ", &ccm_current()),
        Err(AnnotationError::EmptyPrefix)
    );
}

#[test]
fn multihop_is_turned_on_only_for_peers_off_the_connected_subnets() {
    let (mut peers, _) = found(peers_from_annotations("metal.equinix.com", &ccm_current()));
    let mut legacy = PeerSpec::new(ip("10.66.29.0"), 65530);
    legacy.local_as = Some(65000);
    peers.push(legacy);
    let connected: Vec<IpNet> = vec![
        "10.66.29.1/31".parse().unwrap(),
        "fe80::1/64".parse().unwrap(),
    ];
    assert!(needs_multihop(ip("169.254.255.1"), &connected));
    assert!(!needs_multihop(ip("10.66.29.0"), &connected));
    apply_connected_multihop(&mut peers, &connected);
    let hops: Vec<bool> = peers.iter().map(|p| p.multihop).collect();
    assert_eq!(hops, vec![true, true, false]);
    assert_eq!(
        annotated_router_id(&peers),
        Some("10.66.29.1".parse().unwrap())
    );
}

#[test]
fn keys_that_give_no_address_are_still_waiting() {
    let a = ann(&[("metal.equinix.com/bgp-peers-0-colour", "red")]);
    let w = waiting(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(w.key, "metal.equinix.com/bgp-peers-0-peer-ip");

    let mut a = ccm_current();
    a.insert("metal.equinix.com/bgp-peers-1-peer-ip".into(), " , ".into());
    let w = waiting(peers_from_annotations("metal.equinix.com", &a));
    assert_eq!(
        w,
        Waiting {
            key: "metal.equinix.com/bgp-peers-1-peer-ip".into(),
            empty: true
        }
    );

    let a = ann(&[
        ("packet.com/node.asn", "65000"),
        ("packet.com/peer.asns", "65530"),
        ("packet.com/peer.ips", ","),
    ]);
    let w = waiting(peers_from_annotations("packet.com", &a));
    assert_eq!(w.key, "packet.com/peer.ips");
}

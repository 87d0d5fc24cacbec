//! Exact outcomes for what peers send: header checks, OPEN capabilities, and each RFC 7606
//! case (treat-as-withdraw, attribute discard, session reset with its NOTIFICATION).

use super::*;

const EBGP4: UpdateRules = UpdateRules {
    asn4: true,
    ebgp: true,
};
const IBGP4: UpdateRules = UpdateRules {
    asn4: true,
    ebgp: false,
};

fn attr(flags: u8, t: u8, value: &[u8]) -> Vec<u8> {
    let mut a = vec![flags, t];
    if flags & 0x10 != 0 {
        a.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        a.push(value.len() as u8);
    }
    a.extend_from_slice(value);
    a
}

const WK: u8 = 0x40; // well-known: transitive
const OPT_T: u8 = 0xc0; // optional transitive
const OPT_N: u8 = 0x80; // optional non-transitive

fn origin() -> Vec<u8> {
    attr(WK, 1, &[0])
}
fn as_path() -> Vec<u8> {
    attr(WK, 2, &[2, 1, 0, 0, 0xff, 0xfa])
}
fn next_hop() -> Vec<u8> {
    attr(WK, 3, &[10, 0, 0, 1])
}

/// An UPDATE body: withdrawn routes, attributes, NLRI.
fn body(withdrawn: &[u8], attrs: &[Vec<u8>], nlri: &[u8]) -> Vec<u8> {
    let attrs: Vec<u8> = attrs.concat();
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(&attrs);
    b.extend_from_slice(nlri);
    b
}

/// A full, valid IPv4 announcement of 10.1.2.0/24 with `extra` attributes after the three
/// mandatory ones.
fn announce(extra: &[Vec<u8>]) -> Vec<u8> {
    let mut attrs = vec![origin(), as_path(), next_hop()];
    attrs.extend_from_slice(extra);
    body(&[], &attrs, &[24, 10, 1, 2])
}

fn p(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn withdrawn_because(b: &[u8], rules: UpdateRules) -> String {
    let u = update(b, rules).expect("no session reset");
    assert!(u.announced.is_empty(), "{u:?}");
    assert_eq!(u.withdrawn, [p("10.1.2.0/24")], "{u:?}");
    match u.action {
        Action::TreatAsWithdraw(why) => why,
        Action::Accept => panic!("expected treat-as-withdraw: {u:?}"),
    }
}

fn discarded(b: &[u8], rules: UpdateRules) -> Vec<String> {
    let u = update(b, rules).expect("no session reset");
    assert_eq!(u.action, Action::Accept, "{u:?}");
    assert_eq!(u.announced, [p("10.1.2.0/24")], "{u:?}");
    u.discarded
}

fn reset(b: &[u8], rules: UpdateRules) -> (u8, u8, Vec<u8>, String) {
    let e = update(b, rules).expect_err("a session reset");
    (
        e.notification.code,
        e.notification.subcode,
        e.notification.data,
        e.description,
    )
}

#[test]
fn a_clean_update_is_accepted_with_its_prefixes() {
    let u = update(&announce(&[attr(OPT_T, 8, &[0, 1, 0, 2])]), EBGP4).unwrap();
    assert_eq!(u.action, Action::Accept);
    assert_eq!(u.announced, [p("10.1.2.0/24")]);
    assert!(u.discarded.is_empty() && u.withdrawn.is_empty());
}

#[test]
fn treat_as_withdraw_cases_of_rfc_7606_section_7() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "ORIGIN length 2",
            body(
                &[],
                &[attr(WK, 1, &[0, 0]), as_path(), next_hop()],
                &[24, 10, 1, 2],
            ),
            "ORIGIN of length 2",
        ),
        (
            "ORIGIN value 3",
            body(
                &[],
                &[attr(WK, 1, &[3]), as_path(), next_hop()],
                &[24, 10, 1, 2],
            ),
            "ORIGIN value 3",
        ),
        (
            "AS_PATH segment past its end",
            body(
                &[],
                &[origin(), attr(WK, 2, &[2, 2, 0, 0, 0xff, 0xfa]), next_hop()],
                &[24, 10, 1, 2],
            ),
            "AS_PATH segment of 2",
        ),
        (
            "AS_PATH segment type 9",
            body(
                &[],
                &[origin(), attr(WK, 2, &[9, 1, 0, 0, 0xff, 0xfa]), next_hop()],
                &[24, 10, 1, 2],
            ),
            "unknown type 9",
        ),
        (
            "NEXT_HOP length 5",
            body(
                &[],
                &[origin(), as_path(), attr(WK, 3, &[10, 0, 0, 1, 0])],
                &[24, 10, 1, 2],
            ),
            "NEXT_HOP of length 5",
        ),
        (
            "MED length 3",
            announce(&[attr(OPT_N, 4, &[0, 0, 1])]),
            "MULTI_EXIT_DISC of length 3",
        ),
        (
            "COMMUNITIES length 3",
            announce(&[attr(OPT_T, 8, &[0, 1, 0])]),
            "COMMUNITIES of length 3",
        ),
        (
            "COMMUNITIES flagged well-known",
            announce(&[attr(WK, 8, &[0, 1, 0, 2])]),
            "COMMUNITIES with flags 0x40",
        ),
        (
            "EXTENDED_COMMUNITIES length 7",
            announce(&[attr(OPT_T, 16, &[0; 7])]),
            "EXTENDED_COMMUNITIES of length 7",
        ),
        (
            "LARGE_COMMUNITY length 8",
            announce(&[attr(OPT_T, 32, &[0; 8])]),
            "LARGE_COMMUNITY of length 8",
        ),
        (
            "missing ORIGIN",
            body(&[], &[as_path(), next_hop()], &[24, 10, 1, 2]),
            "missing well-known attribute(s) ORIGIN",
        ),
        (
            "missing NEXT_HOP",
            body(&[], &[origin(), as_path()], &[24, 10, 1, 2]),
            "NEXT_HOP",
        ),
        (
            "attribute length past the list",
            body(
                &[],
                &[
                    origin(),
                    as_path(),
                    next_hop(),
                    vec![OPT_T, 8, 8, 0, 1, 0, 2],
                ],
                &[24, 10, 1, 2],
            ),
            "attribute type 8 of length 8 runs past",
        ),
        (
            "two octets left over",
            body(
                &[],
                &[origin(), as_path(), next_hop(), vec![OPT_T, 8]],
                &[24, 10, 1, 2],
            ),
            "2 octet(s) left",
        ),
    ];
    for (case, b, why) in cases {
        let got = withdrawn_because(&b, EBGP4);
        assert!(got.contains(why), "{case}: {got:?} should mention {why:?}");
    }
}

#[test]
fn ibgp_only_attributes_are_checked_from_internal_peers_and_dropped_from_external_ones() {
    for (t, bad) in [
        (5u8, vec![0, 0, 1]),
        (9, vec![1, 2, 3]),
        (10, vec![1, 2, 3, 4, 5]),
    ] {
        let flags = if t == 5 { WK } else { OPT_N };
        let b = announce(&[attr(flags, t, &bad)]);
        let why = withdrawn_because(&b, IBGP4);
        assert!(why.contains("of length"), "type {t}: {why}");
        let dropped = discarded(&b, EBGP4);
        assert_eq!(dropped.len(), 1, "type {t}: {dropped:?}");
        assert!(dropped[0].contains("from an external peer"), "{dropped:?}");
    }
}

#[test]
fn attribute_discard_cases_of_rfc_7606_section_7() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "ATOMIC_AGGREGATE length 1",
            attr(WK, 6, &[1]),
            "ATOMIC_AGGREGATE of length 1",
        ),
        (
            "AGGREGATOR length 6 on a 4-octet session",
            attr(OPT_T, 7, &[0; 6]),
            "AGGREGATOR of length 6 (it is 8)",
        ),
        (
            "AGGREGATOR flagged non-transitive",
            attr(OPT_N, 7, &[0; 8]),
            "AGGREGATOR with flags 0x80",
        ),
        (
            "AS4_PATH from a 4-octet speaker",
            attr(OPT_T, 17, &[2, 1, 0, 0, 0xff, 0xfa]),
            "AS4_PATH from a 4-octet AS speaker",
        ),
        (
            "a repeated COMMUNITIES",
            attr(OPT_T, 8, &[0, 1, 0, 2]),
            "COMMUNITIES repeated",
        ),
    ];
    for (case, extra, why) in cases {
        let mut attrs = vec![extra.clone()];
        if case.contains("repeated") {
            attrs.push(extra);
        }
        let got = discarded(&announce(&attrs), EBGP4);
        assert_eq!(got.len(), 1, "{case}: {got:?}");
        assert!(
            got[0].contains(why),
            "{case}: {got:?} should mention {why:?}"
        );
    }
}

#[test]
fn the_strongest_approach_wins_when_several_attributes_are_malformed() {
    // A discard and a withdraw together: withdraw (RFC 7606 §3(f)).
    let b = announce(&[attr(WK, 6, &[1]), attr(OPT_T, 8, &[0, 1, 0])]);
    let why = withdrawn_because(&b, EBGP4);
    assert!(why.contains("COMMUNITIES"), "{why}");
    // A withdraw and a reset: reset.
    let b = announce(&[attr(OPT_T, 8, &[0, 1, 0]), vec![0x40, 99, 0]]);
    assert_eq!(reset(&b, EBGP4).0, 3);
}

#[test]
fn session_reset_cases_carry_the_rfc_subcode_and_data() {
    // Unrecognised well-known attribute: 3/2 with the attribute.
    let unknown_wk = vec![0x40, 99, 1, 7];
    let (c, s, data, _) = reset(&announce(std::slice::from_ref(&unknown_wk)), EBGP4);
    assert_eq!((c, s, data), (3, 2, unknown_wk));

    // MP_REACH twice: Malformed Attribute List.
    let mp = attr(
        0x90,
        14,
        &[
            0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        ],
    );
    let b = body(&[], &[mp.clone(), mp, origin(), as_path()], &[]);
    let (c, s, _, why) = reset(&b, EBGP4);
    assert_eq!((c, s), (3, 1), "{why}");

    // MP_REACH next-hop length past its attribute: 3/9 with the attribute.
    let bad = attr(0x90, 14, &[0, 2, 1, 40, 0xfd, 0, 0]);
    let (c, s, data, why) = reset(&body(&[], &[bad.clone(), origin(), as_path()], &[]), EBGP4);
    assert_eq!((c, s, data), (3, 9, bad), "{why}");
    assert!(why.contains("next-hop length 40 runs past"), "{why}");

    // MP_REACH of IPv6 with a 4-byte next hop: 3/9.
    let bad = attr(0x90, 14, &[0, 2, 1, 4, 10, 0, 0, 1, 0]);
    assert_eq!(
        reset(&body(&[], &[bad, origin(), as_path()], &[]), EBGP4).1,
        9
    );

    // MP_UNREACH with a prefix length of 129: 3/9.
    let bad = attr(0x90, 15, &[0, 2, 1, 129, 0xfd]);
    assert_eq!(reset(&body(&[], &[bad], &[]), EBGP4).1, 9);

    // MP_REACH flagged transitive: Attribute Flags Error.
    let bad = attr(
        0xd0,
        14,
        &[
            0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        ],
    );
    assert_eq!(
        reset(&body(&[], &[bad, origin(), as_path()], &[]), EBGP4).1,
        4
    );

    // Truncated NLRI: Invalid Network Field.
    let (c, s, _, why) = reset(
        &body(&[], &[origin(), as_path(), next_hop()], &[24, 10, 1]),
        EBGP4,
    );
    assert_eq!((c, s), (3, 10), "{why}");

    // Withdrawn routes length past the message: Malformed Attribute List.
    let mut b = body(&[], &[], &[]);
    b[1] = 9;
    assert_eq!(reset(&b, EBGP4).1, 1);

    // Total path attribute length past the message: Malformed Attribute List.
    let mut b = body(&[], &[origin()], &[]);
    b[3] = 50;
    assert_eq!(reset(&b, EBGP4).1, 1);
}

#[test]
fn mp_attributes_of_families_vipd_does_not_speak_are_ignored() {
    // AFI 25 (L2VPN) and AFI 99: not ours, not an error.
    let reach = attr(0x90, 14, &[0, 25, 70, 4, 10, 0, 0, 1, 0, 1, 2, 3]);
    let unreach = attr(0x90, 15, &[0, 99, 1, 1, 2, 3]);
    let u = update(
        &body(&[], &[reach, unreach, origin(), as_path()], &[]),
        EBGP4,
    )
    .unwrap();
    assert_eq!(u.action, Action::Accept);
    assert_eq!(u.ignored.len(), 2, "{u:?}");
    assert!(u.ignored[0].contains("AFI 25 SAFI 70"), "{u:?}");
}

#[test]
fn ipv6_reach_and_unreach_are_read() {
    let mut reach_value = vec![0, 2, 1, 16];
    reach_value.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
    reach_value.extend_from_slice(&[0, 128]);
    reach_value.extend_from_slice(&"fd00:98::10".parse::<Ipv6Addr>().unwrap().octets());
    let unreach = attr(0x90, 15, &[0, 2, 1, 64, 0xfd, 0, 0, 0x99, 0, 0, 0, 0]);
    let b = body(
        &[],
        &[attr(0x90, 14, &reach_value), unreach, origin(), as_path()],
        &[],
    );
    let u = update(&b, EBGP4).unwrap();
    assert_eq!(u.action, Action::Accept);
    assert_eq!(u.announced, [p("fd00:98::10/128")]);
    assert_eq!(u.withdrawn, [p("fd00:99::/64")]);
}

#[test]
fn an_end_of_rib_or_a_pure_withdrawal_needs_no_attributes() {
    let u = update(&body(&[], &[], &[]), EBGP4).unwrap();
    assert_eq!(u.action, Action::Accept);
    let u = update(&body(&[24, 10, 1, 2], &[], &[]), EBGP4).unwrap();
    assert_eq!(
        (u.action, u.withdrawn),
        (Action::Accept, vec![p("10.1.2.0/24")])
    );
}

#[test]
fn two_octet_sessions_read_two_octet_as_paths_and_check_as4_path() {
    let two = UpdateRules {
        asn4: false,
        ebgp: true,
    };
    let b = body(
        &[],
        &[
            origin(),
            attr(WK, 2, &[2, 2, 0x5b, 0xa0, 0xff, 0xfa]),
            next_hop(),
        ],
        &[24, 10, 1, 2],
    );
    assert_eq!(update(&b, two).unwrap().action, Action::Accept);
    // A malformed AS4_PATH is discarded (RFC 6793 §6).
    let as_path2 = attr(WK, 2, &[2, 1, 0x5b, 0xa0]);
    let b = body(
        &[],
        &[
            origin(),
            as_path2,
            next_hop(),
            attr(OPT_T, 17, &[2, 3, 0, 0]),
        ],
        &[24, 10, 1, 2],
    );
    let got = discarded(&b, two);
    assert!(got[0].contains("AS4_PATH segment of 3"), "{got:?}");
}

// --- header ------------------------------------------------------------------------------

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 16];
    f.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    f.push(kind);
    f.extend_from_slice(body);
    f
}

#[test]
fn header_errors_name_the_type_or_the_length() {
    let e = message(&frame(9, &[])).unwrap_err();
    assert_eq!(e.notification, Notification::new(1, 3, [9]));
    // UPDATE of 22 octets: 1/2 with the length (RFC 4271 §6.1).
    let e = message(&frame(2, &[0, 0, 0])).unwrap_err();
    assert_eq!(e.notification, Notification::new(1, 2, [0, 22]));
    // OPEN of 28 octets.
    let e = message(&frame(1, &[0; 9])).unwrap_err();
    assert_eq!(e.notification, Notification::new(1, 2, [0, 28]));
    // KEEPALIVE with a body.
    let e = message(&frame(4, &[0])).unwrap_err();
    assert_eq!(e.notification, Notification::new(1, 2, [0, 20]));
    // A NOTIFICATION of any length is a NOTIFICATION.
    assert_eq!(message(&frame(3, &[6])).unwrap().kind, Kind::Notification);
}

// --- OPEN --------------------------------------------------------------------------------

fn open_body(params: &[u8]) -> Vec<u8> {
    let mut b = vec![4, 0xff, 0xfa, 0, 90, 10, 99, 0, 2, params.len() as u8];
    b.extend_from_slice(params);
    b
}

fn caps(c: &[u8]) -> Vec<u8> {
    let mut p = vec![2, c.len() as u8];
    p.extend_from_slice(c);
    p
}

#[test]
fn open_capabilities_are_read() {
    let o = open(&open_body(&caps(&[
        1, 4, 0, 2, 0, 1, 2, 0, 65, 4, 0, 1, 0, 0, 64, 2, 0, 120,
    ])))
    .unwrap();
    assert_eq!(o.caps.multiprotocol, [(2, 1)]);
    assert_eq!(o.caps.as4, Some(65536));
    assert!(o.caps.route_refresh);
    assert_eq!(o.asn(), 65536);
    assert_eq!(o.bgp_id, Ipv4Addr::new(10, 99, 0, 2));
}

#[test]
fn graceful_restart_capabilities_are_read_and_a_malformed_one_only_costs_graceful_restart() {
    // FRR's: R and N set, 120 s, IPv4 unicast with forwarding preserved.
    let o = open(&open_body(&caps(&[64, 6, 0xc0, 120, 0, 1, 1, 0x80]))).unwrap();
    assert_eq!(
        o.caps.graceful_restart,
        Some(PeerGracefulRestart {
            restarting: true,
            notification: true,
            restart_time: 120,
            families: vec![(1, 1, true)],
        })
    );
    assert!(!o.caps.long_lived_graceful_restart);
    // BIRD's helper: no flags, 4095 s (all 12 bits), no families; LLGR for IPv6 unicast.
    let o = open(&open_body(&caps(&[
        64, 2, 0x0f, 0xff, 71, 7, 0, 2, 1, 0, 0, 0, 60,
    ])))
    .unwrap();
    let gr = o.caps.graceful_restart.unwrap();
    assert_eq!(
        (gr.restarting, gr.notification, gr.restart_time),
        (false, false, 4095)
    );
    assert!(gr.families.is_empty());
    assert!(o.caps.long_lived_graceful_restart);
    // 2 + 3 octets: not a Graceful Restart capability, but the OPEN stands.
    let o = open(&open_body(&caps(&[64, 5, 0, 120, 0, 1, 1]))).unwrap();
    assert_eq!(o.caps.graceful_restart, None);
    let o = open(&open_body(&caps(&[71, 6, 0, 1, 1, 0, 0, 60]))).unwrap();
    assert!(!o.caps.long_lived_graceful_restart);
}

#[test]
fn impossible_capability_lengths_are_open_message_error_unspecific() {
    for (case, params) in [
        (
            "capability length 8 in a 2-byte parameter",
            vec![2, 2, 1, 8],
        ),
        ("MP capability of length 3", caps(&[1, 3, 0, 1, 1])),
        ("4-octet AS capability of length 2", caps(&[65, 2, 0, 1])),
        ("route refresh with a value", caps(&[2, 1, 0])),
        ("parameter past the OPEN", vec![2, 9, 1, 4]),
        ("a lone octet", caps(&[1])),
    ] {
        let e = open(&open_body(&params)).unwrap_err();
        assert_eq!(
            (e.notification.code, e.notification.subcode),
            (2, 0),
            "{case}: {}",
            e.description
        );
    }
}

#[test]
fn open_version_and_parameter_type_are_checked() {
    let mut b = open_body(&[]);
    b[0] = 3;
    assert_eq!(
        open(&b).unwrap_err().notification,
        Notification::new(2, 1, [0, 4])
    );
    let e = open(&open_body(&[1, 0])).unwrap_err();
    assert_eq!((e.notification.code, e.notification.subcode), (2, 4));
}

#[test]
fn extended_optional_parameters_are_read() {
    // RFC 9072: 255, 255, then a 2-octet length, and 2-octet parameter lengths.
    let c = [65, 4, 0, 0, 0xfd, 0xe8];
    let mut params = vec![255, 255, 0, (3 + c.len()) as u8, 2, 0, c.len() as u8];
    params.extend_from_slice(&c);
    let mut b = vec![4, 0xff, 0xfa, 0, 90, 10, 99, 0, 2, 255];
    b.extend_from_slice(&params[1..]);
    let o = open(&b).unwrap();
    assert_eq!(o.caps.as4, Some(65000));
}

// --- ROUTE-REFRESH -----------------------------------------------------------------------

#[test]
fn route_refresh_length_errors_quote_the_message() {
    let f = frame(5, &[0, 1, 0]);
    let e = route_refresh(message(&f).unwrap()).unwrap_err();
    assert_eq!(e.notification, Notification::new(7, 1, f.clone()));
    let f = frame(5, &[0, 1, 0, 1, 0]);
    assert_eq!(
        route_refresh(message(&f).unwrap())
            .unwrap_err()
            .notification
            .subcode,
        1
    );
}

#[test]
fn only_plain_requests_for_our_families_ask_for_anything() {
    let rr = |afi: u16, subtype: u8, safi: u8| RouteRefresh { afi, subtype, safi };
    use crate::bgp::types::Family;
    assert_eq!(rr(1, 0, 1).requested(), Some(Family::Ipv4));
    assert_eq!(rr(2, 0, 1).requested(), Some(Family::Ipv6));
    assert_eq!(rr(1, 1, 1).requested(), None, "BoRR");
    assert_eq!(rr(1, 3, 1).requested(), None, "unassigned subtype");
    assert_eq!(rr(1, 255, 1).requested(), None);
    assert_eq!(rr(25, 0, 70).requested(), None, "unknown family");
}

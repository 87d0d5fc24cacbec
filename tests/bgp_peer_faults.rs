//! The real vipd binary against a scripted peer over loopback TCP, unprivileged: every way a
//! peer can drop a session (FIN or RST with no NOTIFICATION, in each state, active and passive)
//! is followed by a new session within the first backoff step; RFC 7606's malformed UPDATEs
//! keep the session (its uptime keeps counting); what must reset gets the RFC's NOTIFICATION;
//! collisions; NOTIFICATIONs vipd has no name for; `/readyz` and the down counters.
//!
//! What an operator would check is checked: vipd's routes on the new session, `vipd status`,
//! `/readyz`, `/metrics`. `VIPD_BIN=target/release/vipd` runs them against the release build.

use vipd_testbed::scripted_peer;

use scripted_peer::*;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A first failure waits at most the first backoff step (1 s, jitter 0.75–1); the rest is slack
/// for a loaded CI machine.
const BACK_WITHIN: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
enum Reach {
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug, Clone, Copy)]
enum End {
    Fin,
    Rst,
}

fn accept_within(listener: &TcpListener, within: Duration) -> Option<Conn> {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking");
                return Some(Conn::new(s));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    None
}

/// vipd in passive mode, once it accepts its peer: connections that arrive before the peer is
/// configured are refused as from an unknown address.
fn passive_vipd() -> (Vipd, u16) {
    let (vipd, listen) = Vipd::start(None, &[]);
    vipd.peer();
    (vipd, listen.expect("passive port"))
}

fn connect_within(port: u16, within: Duration) -> Conn {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return Conn::new(s),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("vipd never listened on {port}: {e}"),
        }
    }
}

fn drive(c: &mut Conn, reach: Reach) {
    match reach {
        Reach::OpenSent => c.expect_open(),
        Reach::OpenConfirm => {
            c.expect_open();
            c.send(&open());
            let m = c.recv(Duration::from_secs(5)).expect("KEEPALIVE");
            assert_eq!(m.kind, 4, "{m:?}");
        }
        Reach::Established => {
            c.establish();
            c.expect_vip();
        }
    }
}

fn end(c: Conn, how: End) {
    match how {
        End::Fin => c.fin(),
        End::Rst => c.rst(),
    }
}

fn every_case() -> Vec<(Reach, End)> {
    [Reach::OpenSent, Reach::OpenConfirm, Reach::Established]
        .into_iter()
        .flat_map(|r| [(r, End::Fin), (r, End::Rst)])
        .collect()
}

/// Runs `f` for every case on its own thread (each with its own vipd), so a slow case does not
/// add up.
fn in_parallel<C: Send + Sync + Copy + std::fmt::Debug>(cases: Vec<C>, f: impl Fn(C) + Sync) {
    std::thread::scope(|s| {
        let handles: Vec<_> = cases.iter().map(|c| (c, s.spawn(|| f(*c)))).collect();
        let failed: Vec<String> = handles
            .into_iter()
            .filter_map(|(c, h)| h.join().err().map(|_| format!("{c:?}")))
            .collect();
        assert!(failed.is_empty(), "failed cases: {failed:?}");
    });
}

#[test]
fn active_sessions_come_back_after_a_fin_or_rst_in_every_state() {
    in_parallel(every_case(), |(reach, how)| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().unwrap().port();
        let (vipd, _) = Vipd::start(Some(port), &[]);
        let mut c = accept_within(&listener, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("vipd never connected:\n{}", vipd.log()));
        drive(&mut c, reach);
        let ended = Instant::now();
        end(c, how);
        let mut again = accept_within(&listener, BACK_WITHIN).unwrap_or_else(|| {
            panic!(
                "{reach:?}/{how:?}: no new connection within {BACK_WITHIN:?}:\n{}",
                vipd.log()
            )
        });
        let took = ended.elapsed();
        again.establish();
        again.expect_vip();
        let peer = vipd.peer();
        eprintln!("active {reach:?}/{how:?}: reconnected after {took:.2?}; {peer}");
        assert!(
            peer["downs"]["connection_closed"].as_u64() >= Some(1),
            "{peer}"
        );
    });
}

/// Like a router, the peer retries when its connection is refused as a collision (vipd may
/// still hold the one just closed for a moment: both events race on loopback).
fn establish_passive(port: u16) -> (Conn, u32) {
    let deadline = Instant::now() + BACK_WITHIN;
    let mut tries = 0;
    loop {
        tries += 1;
        let mut c = connect_within(port, Duration::from_secs(10));
        let m = c
            .recv(Duration::from_secs(5))
            .expect("vipd's first message");
        match m.notification() {
            Some((6, 7, _)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            None if m.kind == 1 => {}
            _ => panic!("expected vipd's OPEN, got {m:?}"),
        }
        c.send(&open());
        let k = c.recv(Duration::from_secs(5)).expect("KEEPALIVE");
        assert_eq!(k.kind, 4);
        c.send(&keepalive());
        c.expect_vip();
        return (c, tries);
    }
}

#[test]
fn passive_sessions_take_the_peers_next_connection_after_a_fin_or_rst_in_every_state() {
    in_parallel(every_case(), |(reach, how)| {
        let (vipd, port) = passive_vipd();
        let mut c = connect_within(port, Duration::from_secs(10));
        drive(&mut c, reach);
        let ended = Instant::now();
        end(c, how);
        let (_c, tries) = establish_passive(port);
        eprintln!(
            "passive {reach:?}/{how:?}: established again after {:.2?} ({tries} connection(s))",
            ended.elapsed()
        );
        let peer = vipd.peer();
        assert_eq!(peer["state"], "Established", "{peer}\n{}", vipd.log());
    });
}

#[test]
fn passive_a_connection_stuck_in_open_sent_is_replaced_by_the_peers_next_one() {
    let (vipd, port) = passive_vipd();
    let mut stuck = connect_within(port, Duration::from_secs(10));
    stuck.expect_open(); // and never answer it
    let mut next = connect_within(port, Duration::from_secs(1));
    assert_eq!(
        stuck.expect_notification(),
        (6, 7, vec![]),
        "{}",
        vipd.log()
    );
    next.establish();
    next.expect_vip();
}

#[test]
fn passive_an_established_session_refuses_a_second_connection_and_stays_up() {
    let (vipd, port) = passive_vipd();
    let mut first = connect_within(port, Duration::from_secs(10));
    first.establish();
    first.expect_vip();
    let mut second = connect_within(port, Duration::from_secs(1));
    assert_eq!(second.expect_notification(), (6, 7, vec![]));
    first.stays_up(Duration::from_millis(1500));
    let peer = vipd.peer();
    assert_eq!(peer["state"], "Established", "{peer}");
    assert_eq!(peer["flaps"], 0, "{peer}");
}

// --- RFC 7606: what keeps the session --------------------------------------------------------

/// An UPDATE whose last attribute claims more octets than the list holds.
fn attribute_past_the_list() -> Vec<u8> {
    let mut attrs = [
        attr(0x40, 1, &[0]),
        attr(0x40, 2, &[2, 1, 0, 0, 0xff, 0xfa]),
        attr(0x40, 3, &[127, 0, 0, 1]),
    ]
    .concat();
    attrs.extend_from_slice(&[0xc0, 8, 8, 0, 1, 0, 2]);
    update_raw(&[], &attrs, &[24, 10, 1, 2])
}

#[test]
fn malformed_updates_that_rfc_7606_keeps_do_not_reset_the_session() {
    let treat_as_withdraw = [
        (
            "COMMUNITIES of length 3",
            update_with(&[attr(0xc0, 8, &[0, 1, 0])]),
        ),
        (
            "COMMUNITIES flagged well-known",
            update_with(&[attr(0x40, 8, &[0, 1, 0, 2])]),
        ),
        (
            "EXTENDED_COMMUNITIES of length 7",
            update_with(&[attr(0xc0, 16, &[0; 7])]),
        ),
        (
            "LARGE_COMMUNITY of length 8",
            update_with(&[attr(0xc0, 32, &[0; 8])]),
        ),
        (
            "MULTI_EXIT_DISC of length 3",
            update_with(&[attr(0x80, 4, &[0, 0, 1])]),
        ),
        (
            "NEXT_HOP of length 5",
            update_raw(
                &[],
                &[
                    attr(0x40, 1, &[0]),
                    attr(0x40, 2, &[2, 1, 0, 0, 0xff, 0xfa]),
                    attr(0x40, 3, &[127, 0, 0, 1, 0]),
                ]
                .concat(),
                &[24, 10, 1, 2],
            ),
        ),
        ("attribute length past the list", attribute_past_the_list()),
    ];
    let discard = [
        (
            "ATOMIC_AGGREGATE of length 1",
            update_with(&[attr(0x40, 6, &[1])]),
        ),
        (
            "AGGREGATOR of length 6",
            update_with(&[attr(0xc0, 7, &[0; 6])]),
        ),
        (
            "LOCAL_PREF from an external peer",
            update_with(&[attr(0x40, 5, &[0, 0, 0, 100])]),
        ),
        (
            "CLUSTER_LIST from an external peer",
            update_with(&[attr(0x80, 10, &[1, 2, 3])]),
        ),
    ];
    let harmless = [
        (
            "MP_REACH_NLRI of an unknown AFI",
            update_raw(
                &[],
                &[
                    attr(0x90, 14, &[0, 99, 1, 4, 127, 0, 0, 1, 0, 8, 10]),
                    attr(0x40, 1, &[0]),
                    attr(0x40, 2, &[2, 1, 0, 0, 0xff, 0xfa]),
                ]
                .concat(),
                &[],
            ),
        ),
        (
            "an unknown optional attribute",
            update_with(&[attr(0xc0, 250, &[1, 2, 3])]),
        ),
        ("ROUTE-REFRESH subtype 3", message(5, &[0, 1, 3, 1])),
        ("ROUTE-REFRESH subtype 255", message(5, &[0, 1, 255, 1])),
        (
            "ROUTE-REFRESH of an unknown AFI",
            message(5, &[0, 99, 0, 1]),
        ),
    ];

    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let (vipd, _) = Vipd::start(Some(listener.local_addr().unwrap().port()), &[]);
    let mut c = accept_within(&listener, Duration::from_secs(10)).expect("vipd connects");
    c.establish();
    c.expect_vip();
    let before = vipd.peer()["uptime_seconds"].as_u64().expect("up");
    for (_, m) in treat_as_withdraw.iter().chain(&discard).chain(&harmless) {
        c.send(m);
    }
    // No NOTIFICATION, no close: only KEEPALIVEs for a while.
    c.stays_up(Duration::from_millis(2500));
    // A real ROUTE-REFRESH still gets the table again.
    c.send(&message(5, &[0, 1, 0, 1]));
    let m = c
        .recv_skipping_keepalives(Duration::from_secs(5))
        .expect("the table again");
    assert_eq!(m.announced_v4(), [VIP]);

    let peer = vipd.peer();
    assert_eq!(peer["state"], "Established", "{peer}");
    assert_eq!(peer["flaps"], 0, "{peer}");
    assert!(
        peer["uptime_seconds"].as_u64() > Some(before),
        "uptime keeps counting: {before} then {peer}"
    );
    assert_eq!(
        peer["updates_treated_as_withdraw"].as_u64(),
        Some(treat_as_withdraw.len() as u64),
        "{peer}"
    );
    assert_eq!(
        peer["attributes_discarded"].as_u64(),
        Some(discard.len() as u64),
        "{peer}"
    );
    let log = vipd.log();
    for (what, _) in treat_as_withdraw.iter().chain(&discard) {
        let key = what.split(' ').next().unwrap_or(what);
        assert!(log.contains(key), "the log names {key}:\n{log}");
    }
    // One line per malformed UPDATE, saying what was done with it.
    assert_eq!(
        log.matches("treated as withdrawn (RFC 7606)").count(),
        treat_as_withdraw.len(),
        "{log}"
    );
}

// --- what must reset, with the RFC's NOTIFICATION ---------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Bad {
    UnrecognisedWellKnown,
    MpReachTwice,
    MpReachNextHopPastAttribute,
    AttributesPastMessage,
    TruncatedNlri,
    UpdateOf22,
    OpenInEstablished,
    UnknownType,
    WrongMarker,
    RouteRefreshOf22,
    CapabilityPastParameter,
    MpCapabilityOf3,
    As4CapabilityOf2,
}

/// The NOTIFICATION vipd must answer with: code, subcode, and the data when the RFC fixes it.
type Expected = (u8, u8, Option<Vec<u8>>);

fn bad_message(b: Bad) -> (Vec<u8>, Expected) {
    let mp = attr(
        0x90,
        14,
        &[
            0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        ],
    );
    let unknown_wk = attr(0x40, 99, &[7]);
    match b {
        Bad::UnrecognisedWellKnown => (
            update_with(std::slice::from_ref(&unknown_wk)),
            (3, 2, Some(unknown_wk)),
        ),
        Bad::MpReachTwice => (update_with(&[mp.clone(), mp]), (3, 1, None)),
        Bad::MpReachNextHopPastAttribute => {
            let bad = attr(0x90, 14, &[0, 2, 1, 40, 0xfd, 0, 0]);
            (update_with(std::slice::from_ref(&bad)), (3, 9, Some(bad)))
        }
        Bad::AttributesPastMessage => {
            let mut m = update_with(&[]);
            m[22] = 0xff; // total path attribute length's low octet
            (m, (3, 1, None))
        }
        Bad::TruncatedNlri => (
            update_raw(
                &[],
                &[
                    attr(0x40, 1, &[0]),
                    attr(0x40, 2, &[]),
                    attr(0x40, 3, &[127, 0, 0, 1]),
                ]
                .concat(),
                &[24, 10, 1],
            ),
            (3, 10, None),
        ),
        Bad::UpdateOf22 => (message(2, &[0, 0, 0]), (1, 2, Some(vec![0, 22]))),
        Bad::OpenInEstablished => (open(), (5, 3, Some(vec![1]))),
        Bad::UnknownType => (message(7, &[]), (1, 3, Some(vec![7]))),
        Bad::WrongMarker => {
            let mut m = keepalive();
            m[3] = 0;
            (m, (1, 1, None))
        }
        Bad::RouteRefreshOf22 => {
            let m = message(5, &[0, 1, 0]);
            (m.clone(), (7, 1, Some(m)))
        }
        Bad::CapabilityPastParameter => (open_with_params(&[2, 2, 1, 8]), (2, 0, None)),
        Bad::MpCapabilityOf3 => (open_with_params(&[2, 5, 1, 3, 0, 1, 1]), (2, 0, None)),
        Bad::As4CapabilityOf2 => (open_with_params(&[2, 4, 65, 2, 0, 1]), (2, 0, None)),
    }
}

fn open_with_params(params: &[u8]) -> Vec<u8> {
    let mut body = vec![4, 0xff, 0xfa, 0, 90, 10, 255, 0, 2, params.len() as u8];
    body.extend_from_slice(params);
    message(1, &body)
}

#[test]
fn what_must_reset_gets_the_rfc_notification() {
    let cases = vec![
        Bad::UnrecognisedWellKnown,
        Bad::MpReachTwice,
        Bad::MpReachNextHopPastAttribute,
        Bad::AttributesPastMessage,
        Bad::TruncatedNlri,
        Bad::UpdateOf22,
        Bad::OpenInEstablished,
        Bad::UnknownType,
        Bad::WrongMarker,
        Bad::RouteRefreshOf22,
        Bad::CapabilityPastParameter,
        Bad::MpCapabilityOf3,
        Bad::As4CapabilityOf2,
    ];
    in_parallel(cases, |bad| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let (vipd, _) = Vipd::start(Some(listener.local_addr().unwrap().port()), &[]);
        let mut c = accept_within(&listener, Duration::from_secs(10)).expect("vipd connects");
        let (msg, (code, subcode, data)) = bad_message(bad);
        if msg[18] == 1 && !matches!(bad, Bad::OpenInEstablished) {
            c.expect_open();
        } else {
            c.establish();
            c.expect_vip();
        }
        c.send(&msg);
        let got = c.expect_notification();
        assert_eq!(
            (got.0, got.1),
            (code, subcode),
            "{bad:?}: {got:?}\n{}",
            vipd.log()
        );
        if let Some(data) = data {
            assert_eq!(got.2, data, "{bad:?}: data");
        }
        // And it comes back.
        let mut again = accept_within(&listener, BACK_WITHIN).expect("a new connection");
        again.establish();
        again.expect_vip();
    });
}

// --- NOTIFICATIONs vipd has no name for -------------------------------------------------------

#[test]
fn any_notification_is_reported_verbatim_and_never_answered() {
    let cases: Vec<(&[u8], &str)> = vec![
        (&[8, 0], "Send Hold Timer Expired/Unspecific (8/0)"),
        (&[6, 42], "Cease/unassigned subcode (6/42)"),
        (&[0, 0], "unassigned code (0/0)"),
        (&[6], "Cease (6, truncated: no subcode)"),
    ];
    in_parallel(cases, |(body, shown)| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let (vipd, _) = Vipd::start(Some(listener.local_addr().unwrap().port()), &[]);
        let mut c = accept_within(&listener, Duration::from_secs(10)).expect("vipd connects");
        c.establish();
        c.expect_vip();
        c.send(&message(3, body));
        // Nothing back: the connection just ends (skipping a KEEPALIVE that crossed ours).
        loop {
            match c.recv(Duration::from_secs(5)) {
                Ok(m) if m.kind == 4 => continue,
                Ok(m) => panic!("{shown}: vipd answered a NOTIFICATION with {m:?}"),
                Err(NoMsg::Eof | NoMsg::Reset) => break,
                Err(NoMsg::Timeout) => panic!("{shown}: vipd kept the connection"),
            }
        }
        let mut again = accept_within(&listener, BACK_WITHIN).expect("a new connection");
        let peer = vipd.peer();
        let last = peer["last_error"].as_str().unwrap_or_default().to_owned();
        assert_eq!(last, format!("peer sent NOTIFICATION {shown}"), "{peer}");
        again.establish();
        again.expect_vip();
    });
}

// --- /readyz and the counters by reason ------------------------------------------------------

#[test]
fn a_session_down_longer_than_the_setting_makes_the_agent_unready_until_it_is_back() {
    let port = free_port();
    let (vipd, _) = Vipd::start(Some(port), &[("vipd_bgp_unready_after", "2")]);
    // Nobody listens: every attempt is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, body) = loop {
        let (code, body) = vipd.get("/readyz");
        if code == 503 || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 503, "{body}\n{}", vipd.log());
    assert!(
        body.contains(&format!("BGP session with 127.0.0.1:{port} down for")),
        "{body}"
    );
    assert!(body.contains("connect failed"), "{body}");

    let listener = TcpListener::bind(("127.0.0.1", port)).expect("listen on the peer port");
    let mut c = accept_within(&listener, Duration::from_secs(35)).expect("vipd retries");
    c.establish();
    c.expect_vip();
    let deadline = Instant::now() + Duration::from_secs(5);
    while vipd.get("/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "still unready:\n{}", vipd.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    c.fin();
    // The session lasted less than the backoff's stable period, so the retry climbs on from
    // where the refused attempts left it.
    let mut again = accept_within(&listener, Duration::from_secs(35)).expect("a new connection");
    again.establish();
    let (_, metrics) = vipd.get("/metrics");
    let peer = format!("peer=\"127.0.0.1:{port}\"");
    let count = |reason: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("vipd_bgp_session_downs_total{")
                    && l.contains(&peer)
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("connect_failed") >= 1, "{metrics}");
    assert_eq!(count("connection_closed"), 1, "{metrics}");
}

//! Exact action lists for the session state machine: each test drives [`Session::handle`] and
//! compares the whole output, in order.

use super::*;
use crate::bgp::types::RouteAttrs;
use ipnet::IpNet;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_iana::address_family::AddressType;

const LOCAL: Asn = Asn(65000);
const REMOTE: Asn = Asn(65530);

fn cfg() -> SessionConfig {
    SessionConfig {
        local_as: LOCAL,
        remote_as: REMOTE,
        router_id: RouterId("10.99.0.1".parse().unwrap()),
        hold_time: HoldTime::new(90).unwrap(),
        keepalive: None,
        passive: false,
        backoff: Backoff::default(),
        graceful_restart: None,
    }
}

fn nh4() -> NextHops {
    NextHops {
        v4: Some("10.99.0.1".parse().unwrap()),
        ..NextHops::default()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn bytes(msgs: &[BgpMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        wire::encode_into(m, &mut out).unwrap();
    }
    out
}

fn peer_open(asn: u32, hold: u16, families: &[AddressType]) -> BgpMessage {
    let mut caps: Vec<BgpCapability> = families
        .iter()
        .map(|a| BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(*a)))
        .collect();
    caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn)));
    caps.push(BgpCapability::RouteRefresh);
    BgpMessage::Open(BgpOpenMessage::new(
        Asn(asn).two_octet(),
        hold,
        "10.99.0.2".parse().unwrap(),
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    ))
}

fn our_open(families: Vec<Family>) -> BgpMessage {
    OpenOffer {
        local_as: LOCAL,
        router_id: cfg().router_id,
        hold_time: HoldTime::new(90).unwrap(),
        families,
        graceful_restart: None,
    }
    .message()
}

fn routes(prefixes: &[&str]) -> Arc<RouteSet> {
    Arc::new(
        prefixes
            .iter()
            .map(|p| (p.parse().unwrap(), RouteAttrs::default()))
            .collect(),
    )
}

fn ctx4() -> UpdateContext {
    UpdateContext {
        local_as: LOCAL,
        ebgp: true,
        asn4: true,
        next_hop_v4: Some("10.99.0.1".parse().unwrap()),
        next_hop_v6: None,
        next_hop_v6_link_local: None,
    }
}

fn nets(prefixes: &[&str]) -> Vec<IpNet> {
    prefixes.iter().map(|p| p.parse().unwrap()).collect()
}

/// A session taken to Established over IPv4 with hold time 90, outputs discarded.
fn established(desired: Arc<RouteSet>) -> (Session, Instant) {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 7);
    s.handle(Input::Routes(desired), t0);
    bring_up(&mut s, t0);
    assert_eq!(s.state(), State::Established);
    (s, t0)
}

/// Start, connect, the peer's OPEN (IPv4, hold 90) and KEEPALIVE: the outputs of the last step.
fn bring_up(s: &mut Session, t0: Instant) -> Vec<Output> {
    s.handle(Input::Start, t0);
    s.handle(Input::Connected(nh4()), t0);
    s.handle(
        Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
        t0,
    );
    s.handle(Input::Received(bytes(&[BgpMessage::KeepAlive])), t0)
}

#[test]
fn start_connects_and_arms_the_connect_timeout() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 1);
    assert_eq!(
        s.handle(Input::Start, t0),
        [
            Output::Connect,
            Output::Arm(Timer::ConnectRetry, t0 + CONNECT_TIMEOUT)
        ]
    );
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn passive_start_waits_without_connecting() {
    let mut c = cfg();
    c.passive = true;
    let mut s = Session::new(c, 1);
    assert_eq!(s.handle(Input::Start, Instant::now()), []);
    assert_eq!(s.state(), State::Active);
}

#[test]
fn connected_sends_open_offering_the_families_it_has_next_hops_for() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 1);
    s.handle(Input::Start, t0);
    let both = NextHops {
        v4: Some("10.99.0.1".parse().unwrap()),
        v6: Some("fd00:99::1".parse().unwrap()),
        v6_link_local: None,
    };
    assert_eq!(
        s.handle(Input::Connected(both), t0),
        [
            Output::Disarm(Timer::ConnectRetry),
            Output::Send(vec![our_open(vec![Family::Ipv4, Family::Ipv6])]),
            Output::Arm(Timer::Hold, t0 + OPEN_HOLD),
        ]
    );
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn peer_open_negotiates_the_smaller_hold_time_and_keepalive_a_third_of_it() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 1);
    s.handle(Input::Start, t0);
    s.handle(Input::Connected(nh4()), t0);
    let t1 = t0 + secs(1);
    assert_eq!(
        s.handle(
            Input::Received(bytes(&[peer_open(65530, 9, &[AddressType::Ipv4Unicast])])),
            t1
        ),
        [
            Output::Send(vec![BgpMessage::KeepAlive]),
            Output::Arm(Timer::Keepalive, t1 + secs(3)),
            Output::Arm(Timer::Hold, t1 + secs(9)),
        ]
    );
    assert_eq!(s.state(), State::OpenConfirm);
    assert_eq!(s.negotiated().unwrap().hold_time, 9);
}

#[test]
fn configured_keepalive_is_kept_when_below_a_third_of_the_hold_time() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.keepalive = Some(secs(10));
    let mut s = Session::new(c, 1);
    s.handle(Input::Start, t0);
    s.handle(Input::Connected(nh4()), t0);
    let out = s.handle(
        Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
        t0,
    );
    assert_eq!(out[1], Output::Arm(Timer::Keepalive, t0 + secs(10)));
}

#[test]
fn hold_time_zero_means_no_keepalives_and_no_hold_timer() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 1);
    s.handle(Input::Start, t0);
    s.handle(Input::Connected(nh4()), t0);
    assert_eq!(
        s.handle(
            Input::Received(bytes(&[peer_open(65530, 0, &[AddressType::Ipv4Unicast])])),
            t0
        ),
        [
            Output::Send(vec![BgpMessage::KeepAlive]),
            Output::Disarm(Timer::Hold),
        ]
    );
}

#[test]
fn keepalive_in_open_confirm_brings_the_session_up_and_sends_table_then_end_of_rib() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 1);
    s.handle(
        Input::Routes(routes(&["198.18.0.10/32", "198.18.0.11/32"])),
        t0,
    );
    s.handle(Input::Start, t0);
    s.handle(Input::Connected(nh4()), t0);
    s.handle(
        Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
        t0,
    );
    let out = s.handle(Input::Received(bytes(&[BgpMessage::KeepAlive])), t0);
    let neg = s.negotiated().unwrap().clone();
    assert_eq!(
        out,
        [
            Output::Arm(Timer::Hold, t0 + secs(90)),
            Output::Up(neg),
            Output::Send(ctx4().announcements(
                Family::Ipv4,
                &RouteAttrs::default(),
                &nets(&["198.18.0.10/32", "198.18.0.11/32"])
            )),
            Output::Send(vec![wire::end_of_rib(Family::Ipv4)]),
        ]
    );
    assert_eq!(s.advertised(), 2);
}

/// RFC 4724 §4.1: a restarting speaker sends End-of-RIB only once it knows its table. A
/// session that comes up before the agent has decided (the watches have not listed yet) sends
/// nothing, so a graceful-restart peer keeps the previous process's routes; the table, then
/// End-of-RIB, follow the first routes; later changes send only their difference.
#[test]
fn before_the_first_table_a_session_sends_no_end_of_rib_and_sends_it_after_the_table() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 1);
    let out = bring_up(&mut s, t0);
    let neg = s.negotiated().unwrap().clone();
    assert_eq!(
        out,
        [Output::Arm(Timer::Hold, t0 + secs(90)), Output::Up(neg)]
    );
    assert_eq!(
        s.handle(Input::Routes(routes(&["198.18.0.10/32"])), t0),
        [
            Output::Send(ctx4().announcements(
                Family::Ipv4,
                &RouteAttrs::default(),
                &nets(&["198.18.0.10/32"])
            )),
            Output::Send(vec![wire::end_of_rib(Family::Ipv4)]),
        ]
    );
    assert_eq!(
        s.handle(Input::Routes(routes(&[])), t0),
        [Output::Send(wire::withdrawals(
            Family::Ipv4,
            &nets(&["198.18.0.10/32"])
        ))]
    );
    // An empty first table is a table too: End-of-RIB alone.
    let mut s = Session::new(cfg(), 2);
    bring_up(&mut s, t0);
    assert_eq!(
        s.handle(Input::Routes(routes(&[])), t0),
        [Output::Send(vec![wire::end_of_rib(Family::Ipv4)])]
    );
}

#[test]
fn routes_changed_while_established_send_only_the_difference() {
    let (mut s, t0) = established(routes(&["198.18.0.10/32", "198.18.0.11/32"]));
    let out = s.handle(
        Input::Routes(routes(&["198.18.0.11/32", "198.18.0.12/32"])),
        t0,
    );
    let mut msgs = wire::withdrawals(Family::Ipv4, &nets(&["198.18.0.10/32"]));
    msgs.extend(ctx4().announcements(
        Family::Ipv4,
        &RouteAttrs::default(),
        &nets(&["198.18.0.12/32"]),
    ));
    assert_eq!(out, [Output::Send(msgs)]);
    // The same set again is no change at all.
    assert_eq!(
        s.handle(
            Input::Routes(routes(&["198.18.0.11/32", "198.18.0.12/32"])),
            t0
        ),
        []
    );
}

#[test]
fn routes_of_a_family_that_was_not_negotiated_are_not_sent() {
    let (mut s, t0) = established(routes(&[]));
    assert_eq!(
        s.handle(Input::Routes(routes(&["fd00:98::10/128"])), t0),
        []
    );
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    let (mut s, t0) = established(routes(&[]));
    let t = t0 + secs(30);
    assert_eq!(
        s.handle(Input::Fired(Timer::Keepalive), t),
        [
            Output::Send(vec![BgpMessage::KeepAlive]),
            Output::Arm(Timer::Keepalive, t + secs(30)),
        ]
    );
}

#[test]
fn hold_timer_expiry_sends_notification_then_closes_and_backs_off() {
    let (mut s, t0) = established(routes(&[]));
    let t = t0 + secs(90);
    let out = s.handle(Input::Fired(Timer::Hold), t);
    let Some(Output::Down {
        retry_in: Some(delay),
        ..
    }) = out.last().cloned()
    else {
        panic!("no Down in {out:?}")
    };
    assert!(
        delay >= secs(1).mul_f64(0.75) && delay <= secs(1),
        "{delay:?}"
    );
    assert_eq!(
        out,
        [
            Output::Notify(Notification::new(4, 0, [])),
            Output::Close,
            Output::Disarm(Timer::Keepalive),
            Output::Arm(Timer::ConnectRetry, t + delay),
            Output::Down {
                reason: DownReason::HoldTimerExpired,
                retry_in: Some(delay)
            },
        ]
    );
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.advertised(), 0);
}

#[test]
fn connect_retry_backs_off_exponentially_up_to_the_maximum() {
    let b = Backoff::default();
    let delays: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
}

#[test]
fn failed_connect_waits_then_retries() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 3);
    s.handle(Input::Start, t0);
    let out = s.handle(Input::ConnectFailed("refused".into()), t0);
    let Some(Output::Down {
        retry_in: Some(d), ..
    }) = out.last().cloned()
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        out,
        [
            Output::Close,
            Output::Disarm(Timer::ConnectRetry),
            Output::Arm(Timer::ConnectRetry, t0 + d),
            Output::Down {
                reason: DownReason::ConnectFailed("refused".into()),
                retry_in: Some(d)
            },
        ]
    );
    assert_eq!(
        s.handle(Input::Fired(Timer::ConnectRetry), t0 + d),
        [
            Output::Connect,
            Output::Arm(Timer::ConnectRetry, t0 + d + CONNECT_TIMEOUT)
        ]
    );
}

#[test]
fn silent_peer_times_the_connect_out_and_hints_at_md5() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 3);
    s.handle(Input::Start, t0);
    let out = s.handle(Input::Fired(Timer::ConnectRetry), t0 + CONNECT_TIMEOUT);
    assert_eq!(out[0], Output::Close);
    assert!(matches!(
        out.last(),
        Some(Output::Down {
            reason: DownReason::ConnectTimeout,
            ..
        })
    ));
    assert!(DownReason::ConnectTimeout.to_string().contains("TCP-MD5"));
}

#[test]
fn wrong_peer_as_is_refused_with_bad_peer_as() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 1);
    s.handle(Input::Start, t0);
    s.handle(Input::Connected(nh4()), t0);
    let out = s.handle(
        Input::Received(bytes(&[peer_open(65531, 90, &[AddressType::Ipv4Unicast])])),
        t0,
    );
    assert_eq!(
        out[0],
        Output::Notify(Notification::new(2, 2, 65531u16.to_be_bytes()))
    );
    assert_eq!(out[1], Output::Close);
    assert!(matches!(
        out.last(),
        Some(Output::Down { reason: DownReason::OpenRejected(r), .. }) if r.contains("AS65531")
    ));
}

#[test]
fn hold_time_of_two_seconds_is_unacceptable() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 1);
    s.handle(Input::Start, t0);
    s.handle(Input::Connected(nh4()), t0);
    let out = s.handle(
        Input::Received(bytes(&[peer_open(65530, 2, &[AddressType::Ipv4Unicast])])),
        t0,
    );
    assert_eq!(out[0], Output::Notify(Notification::new(2, 6, [])));
}

#[test]
fn garbage_header_gets_connection_not_synchronized() {
    let (mut s, t0) = established(routes(&[]));
    let out = s.handle(Input::Received(vec![0u8; 19]), t0);
    assert_eq!(out[0], Output::Notify(Notification::new(1, 1, [])));
    assert_eq!(out[1], Output::Close);
    assert!(matches!(
        out.last(),
        Some(Output::Down {
            reason: DownReason::Malformed(_),
            ..
        })
    ));
    assert_eq!(s.state(), State::Active);
}

#[test]
fn bad_length_gets_bad_message_length_with_the_length() {
    let (mut s, t0) = established(routes(&[]));
    let mut msg = vec![0xff; 16];
    msg.extend_from_slice(&5000u16.to_be_bytes());
    msg.push(2);
    let out = s.handle(Input::Received(msg), t0);
    assert_eq!(
        out[0],
        Output::Notify(Notification::new(1, 2, 5000u16.to_be_bytes()))
    );
}

#[test]
fn open_in_established_is_a_finite_state_machine_error() {
    let (mut s, t0) = established(routes(&[]));
    let out = s.handle(
        Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
        t0,
    );
    assert_eq!(out[0], Output::Notify(Notification::new(5, 3, [1])));
}

#[test]
fn inbound_update_restarts_hold_and_is_reported_as_learned() {
    let (mut s, t0) = established(routes(&[]));
    let update = ctx4().announcements(
        Family::Ipv4,
        &RouteAttrs::default(),
        &nets(&["10.1.0.0/16"]),
    );
    let t = t0 + secs(5);
    assert_eq!(
        s.handle(Input::Received(bytes(&update)), t),
        [
            Output::Arm(Timer::Hold, t + secs(90)),
            Output::Learned(Update {
                announced: nets(&["10.1.0.0/16"]),
                withdrawn: vec![],
                action: inbound::Action::Accept,
                discarded: vec![],
                ignored: vec![],
            }),
        ]
    );
}

#[test]
fn route_refresh_resends_the_whole_table_of_that_family() {
    let (mut s, t0) = established(routes(&["198.18.0.10/32"]));
    let rr = BgpMessage::RouteRefresh(BgpRouteRefreshMessage::new(
        AddressType::Ipv4Unicast,
        RouteRefreshSubcode::NormalRequest,
    ));
    assert_eq!(
        s.handle(Input::Received(bytes(&[rr])), t0),
        [
            Output::Arm(Timer::Hold, t0 + secs(90)),
            Output::Send(ctx4().announcements(
                Family::Ipv4,
                &RouteAttrs::default(),
                &nets(&["198.18.0.10/32"])
            )),
        ]
    );
}

#[test]
fn peer_notification_closes_and_retries() {
    let (mut s, t0) = established(routes(&[]));
    let out = s.handle(
        Input::Received(wire::cease(CeaseKind::AdministrativeShutdown, "maintenance").encode()),
        t0,
    );
    assert_eq!(out[0], Output::Close, "never answered: {out:?}");
    let Some(Output::Down {
        reason: DownReason::PeerNotification(n),
        ..
    }) = out.last()
    else {
        panic!("{out:?}")
    };
    assert!(n.to_string().contains("\"maintenance\""), "{n}");
}

#[test]
fn stop_sends_cease_with_the_reason_then_closes_and_stays_idle() {
    let (mut s, t0) = established(routes(&["198.18.0.10/32"]));
    assert_eq!(
        s.handle(
            Input::Stop {
                kind: CeaseKind::AdministrativeShutdown,
                reason: "vipd shutting down".into()
            },
            t0
        ),
        [
            Output::Notify(Notification::new(6, 2, *b"\x12vipd shutting down")),
            Output::Close,
            Output::Disarm(Timer::Hold),
            Output::Disarm(Timer::Keepalive),
            Output::Down {
                reason: DownReason::Stopped,
                retry_in: None
            },
        ]
    );
    assert_eq!(s.state(), State::Idle);
    assert_eq!(
        s.handle(Input::Fired(Timer::ConnectRetry), t0 + secs(60)),
        []
    );
}

#[test]
fn messages_split_across_reads_are_reassembled() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 1);
    s.handle(Input::Start, t0);
    s.handle(Input::Connected(nh4()), t0);
    let open = bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])]);
    let (a, b) = open.split_at(10);
    assert_eq!(s.handle(Input::Received(a.to_vec()), t0), []);
    assert_eq!(s.handle(Input::Received(b.to_vec()), t0).len(), 3);
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn ibgp_routes_carry_an_empty_as_path_and_local_pref() {
    let mut ctx = ctx4();
    ctx.ebgp = false;
    let msgs = ctx.announcements(
        Family::Ipv4,
        &RouteAttrs::default(),
        &nets(&["198.18.0.10/32"]),
    );
    let BgpMessage::Update(u) = &msgs[0] else {
        panic!()
    };
    use netgauze_bgp_pkt::path_attribute::PathAttributeValue as V;
    assert!(u
        .path_attributes()
        .iter()
        .any(|a| matches!(a.value(), V::LocalPreference(_))));
    assert!(u.path_attributes().iter().any(
        |a| matches!(a.value(), V::AsPath(netgauze_bgp_pkt::path_attribute::AsPath::As4PathSegments(s)) if s.is_empty())
    ));
}

// --- Every way a session ends leads back (issue: a FIN or RST left the session down for good) --

/// A session of `mode` taken to `state` at `t0` over IPv4.
fn session_in(state: State, passive: bool, t0: Instant) -> Session {
    let mut c = cfg();
    c.passive = passive;
    let mut s = Session::new(c, 5);
    s.handle(Input::Start, t0);
    if passive {
        s.handle(Input::Incoming(nh4()), t0);
    } else {
        s.handle(Input::Connected(nh4()), t0);
    }
    if matches!(state, State::OpenConfirm | State::Established) {
        s.handle(
            Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
            t0,
        );
    }
    if state == State::Established {
        s.handle(Input::Received(bytes(&[BgpMessage::KeepAlive])), t0);
    }
    assert_eq!(s.state(), state);
    s
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 16];
    f.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    f.push(kind);
    f.extend_from_slice(body);
    f
}

/// Each way a connection can end, as the session is told of it.
fn endings() -> Vec<(&'static str, Input, bool)> {
    // (name, input, whether we answer with a NOTIFICATION)
    vec![
        (
            "FIN",
            Input::Closed("peer closed the connection".into()),
            false,
        ),
        (
            "RST",
            Input::Closed("Connection reset by peer (os error 104)".into()),
            false,
        ),
        (
            "write failure",
            Input::Closed("write failed: Broken pipe".into()),
            false,
        ),
        (
            "Cease from the peer",
            Input::Received(Notification::new(6, 4, []).encode()),
            false,
        ),
        (
            "Send Hold Timer Expired (RFC 9687) from the peer",
            Input::Received(frame(3, &[8, 0])),
            false,
        ),
        (
            "a one-octet NOTIFICATION",
            Input::Received(frame(3, &[6])),
            false,
        ),
        ("garbage we detect", Input::Received(vec![0u8; 19]), true),
        ("hold timer", Input::Fired(Timer::Hold), true),
    ]
}

#[test]
fn every_ending_in_every_state_closes_once_and_comes_back_in_both_modes() {
    for passive in [false, true] {
        for state in [State::OpenSent, State::OpenConfirm, State::Established] {
            for (name, input, we_answer) in endings() {
                let case = format!("{name} in {state:?}, passive {passive}");
                let t0 = Instant::now();
                let mut s = session_in(state, passive, t0);
                let t = t0 + secs(1);
                let out = s.handle(input, t);
                let closes = out.iter().filter(|o| **o == Output::Close).count();
                assert_eq!(closes, 1, "{case}: {out:?}");
                let notify = out.iter().position(|o| matches!(o, Output::Notify(_)));
                assert_eq!(notify.is_some(), we_answer, "{case}: {out:?}");
                if let Some(i) = notify {
                    assert!(
                        out[i + 1] == Output::Close,
                        "NOTIFICATION before Close: {case}: {out:?}"
                    );
                }
                assert_eq!(s.state(), State::Active, "{case}");
                assert!(!s.has_connection(), "{case}");
                let Some(Output::Down { retry_in, .. }) = out.last().cloned() else {
                    panic!("{case}: no Down last in {out:?}")
                };
                // Back: an active session reconnects after the backoff, a passive one takes the
                // peer's next connection.
                let again = if passive {
                    assert_eq!(retry_in, None, "{case}");
                    let back = s.handle(Input::Incoming(nh4()), t + secs(1));
                    assert_eq!(back[0], Output::Adopt, "{case}: {back:?}");
                    back
                } else {
                    let d = retry_in.unwrap_or_else(|| panic!("{case}: no retry"));
                    assert!(d <= secs(1), "{case}: first failure waits {d:?}");
                    assert!(
                        out.contains(&Output::Arm(Timer::ConnectRetry, t + d)),
                        "{case}: {out:?}"
                    );
                    let retry = s.handle(Input::Fired(Timer::ConnectRetry), t + d);
                    assert_eq!(retry[0], Output::Connect, "{case}: {retry:?}");
                    s.handle(Input::Connected(nh4()), t + d)
                };
                assert!(
                    matches!(&again[..], [.., Output::Send(m), Output::Arm(Timer::Hold, _)] if matches!(m[0], BgpMessage::Open(_))),
                    "{case}: {again:?}"
                );
                s.handle(
                    Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
                    t + secs(2),
                );
                let up = s.handle(
                    Input::Received(bytes(&[BgpMessage::KeepAlive])),
                    t + secs(2),
                );
                assert!(
                    up.iter().any(|o| matches!(o, Output::Up(_))),
                    "{case}: {up:?}"
                );
            }
        }
    }
}

#[test]
fn connect_failures_and_timeouts_come_back_after_the_backoff() {
    for input in [
        Input::ConnectFailed("Connection refused".into()),
        Input::Fired(Timer::ConnectRetry),
    ] {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(), 9);
        s.handle(Input::Start, t0);
        let out = s.handle(input.clone(), t0 + secs(1));
        assert_eq!(out[0], Output::Close, "{input:?}: {out:?}");
        let Some(Output::Down {
            retry_in: Some(d), ..
        }) = out.last().cloned()
        else {
            panic!("{out:?}")
        };
        let retry = s.handle(Input::Fired(Timer::ConnectRetry), t0 + secs(1) + d);
        assert_eq!(retry[0], Output::Connect, "{input:?}");
    }
}

/// Peer NOTIFICATIONs of any code are reported as sent and never answered.
#[test]
fn unknown_notifications_are_reported_verbatim_and_never_answered() {
    for (body, shown) in [
        (vec![8, 0], "Send Hold Timer Expired/Unspecific (8/0)"),
        (vec![6, 42], "Cease/unassigned subcode (6/42)"),
        (vec![0, 0], "unassigned code (0/0)"),
        (vec![6], "Cease (6, truncated: no subcode)"),
        (
            vec![6, 2, 3, b'b', b'y', b'e'],
            "Cease/Administrative Shutdown (6/2): \"bye\"",
        ),
    ] {
        let (mut s, t0) = established(routes(&[]));
        let out = s.handle(Input::Received(frame(3, &body)), t0);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Notify(_))),
            "{out:?}"
        );
        let Some(Output::Down {
            reason: reason @ DownReason::PeerNotification(_),
            ..
        }) = out.last()
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            reason.to_string(),
            format!("peer sent NOTIFICATION {shown}")
        );
    }
}

#[test]
fn route_refresh_of_unknown_subtypes_or_families_is_ignored() {
    for body in [
        [0, 1, 3, 1],
        [0, 1, 255, 1],
        [0, 99, 0, 1],
        [0, 1, 1, 1],
        [0, 2, 0, 1],
    ] {
        let (mut s, t0) = established(routes(&["198.18.0.10/32"]));
        assert_eq!(
            s.handle(Input::Received(frame(5, &body)), t0),
            [Output::Arm(Timer::Hold, t0 + secs(90))],
            "{body:?}"
        );
        assert_eq!(s.state(), State::Established);
    }
    let (mut s, t0) = established(routes(&[]));
    let bad = frame(5, &[0, 1, 0]);
    let out = s.handle(Input::Received(bad.clone()), t0);
    assert_eq!(out[0], Output::Notify(Notification::new(7, 1, bad)));
}

#[test]
fn header_and_fsm_errors_get_the_rfc_codes() {
    // UPDATE of length 22: 1/2 with the length.
    let (mut s, t0) = established(routes(&[]));
    let out = s.handle(Input::Received(frame(2, &[0, 0, 0])), t0);
    assert_eq!(out[0], Output::Notify(Notification::new(1, 2, [0, 22])));
    // OPEN of length 28: 1/2, whatever the state.
    let (mut s, t0) = established(routes(&[]));
    let out = s.handle(Input::Received(frame(1, &[0; 9])), t0);
    assert_eq!(out[0], Output::Notify(Notification::new(1, 2, [0, 28])));
    // A KEEPALIVE before the OPEN: 5/1 with the type.
    let t0 = Instant::now();
    let mut s = session_in(State::OpenSent, false, t0);
    let out = s.handle(Input::Received(bytes(&[BgpMessage::KeepAlive])), t0);
    assert_eq!(out[0], Output::Notify(Notification::new(5, 1, [4])));
    // A second OPEN in OpenConfirm: 5/2.
    let mut s = session_in(State::OpenConfirm, false, t0);
    let out = s.handle(
        Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
        t0,
    );
    assert_eq!(out[0], Output::Notify(Notification::new(5, 2, [1])));
}

#[test]
fn a_malformed_community_withdraws_the_update_and_keeps_the_session() {
    let (mut s, t0) = established(routes(&[]));
    // ORIGIN, AS_PATH, NEXT_HOP, COMMUNITIES of length 3; NLRI 10.1.2.0/24.
    let attrs = [
        0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xff, 0xfa, 0x40, 3, 4, 10, 0, 0, 1, 0xc0, 8, 3, 0,
        1, 0,
    ];
    let mut body = vec![0, 0, 0, attrs.len() as u8];
    body.extend_from_slice(&attrs);
    body.extend_from_slice(&[24, 10, 1, 2]);
    let out = s.handle(Input::Received(frame(2, &body)), t0 + secs(1));
    let [Output::Arm(Timer::Hold, _), Output::Learned(u)] = &out[..] else {
        panic!("{out:?}")
    };
    assert!(
        matches!(&u.action, inbound::Action::TreatAsWithdraw(w) if w.contains("COMMUNITIES of length 3"))
    );
    assert_eq!(u.withdrawn, nets(&["10.1.2.0/24"]));
    assert_eq!(s.state(), State::Established);
}

// --- Collisions (RFC 4271 §6.8) in passive mode ------------------------------------------------

fn cease7() -> Output {
    Output::Notify(Notification::new(6, 7, []))
}

#[test]
fn a_newer_connection_replaces_one_stuck_before_established() {
    for state in [State::OpenSent, State::OpenConfirm] {
        let t0 = Instant::now();
        let mut s = session_in(state, true, t0);
        let t = t0 + secs(100);
        let out = s.handle(Input::Incoming(nh4()), t);
        let mut want = vec![cease7(), Output::Close, Output::Disarm(Timer::Hold)];
        if state == State::OpenConfirm {
            want.push(Output::Disarm(Timer::Keepalive));
        }
        want.extend([
            Output::Down {
                reason: DownReason::Collision,
                retry_in: None,
            },
            Output::Adopt,
            Output::Send(vec![our_open(vec![Family::Ipv4])]),
            Output::Arm(Timer::Hold, t + OPEN_HOLD),
        ]);
        assert_eq!(out, want, "{state:?}");
        assert_eq!(s.state(), State::OpenSent);
    }
}

#[test]
fn an_established_session_refuses_a_second_connection_and_a_stopped_one_every_connection() {
    let t0 = Instant::now();
    let mut s = session_in(State::Established, true, t0);
    assert_eq!(s.handle(Input::Incoming(nh4()), t0), [Output::Refuse]);
    assert_eq!(s.state(), State::Established);
    s.handle(
        Input::Stop {
            kind: CeaseKind::AdministrativeShutdown,
            reason: String::new(),
        },
        t0,
    );
    assert_eq!(s.handle(Input::Incoming(nh4()), t0), [Output::Refuse]);
}

// --- Damping: sessions that die right after they come up back off ------------------------------

#[test]
fn sessions_reset_right_after_establishing_back_off_and_a_stable_one_starts_over() {
    let t0 = Instant::now();
    let mut s = session_in(State::Established, false, t0);
    let mut t = t0;
    let mut delays = Vec::new();
    for _ in 0..5 {
        let out = s.handle(Input::Closed("reset".into()), t + secs(1));
        let Some(Output::Down {
            retry_in: Some(d), ..
        }) = out.last().cloned()
        else {
            panic!("{out:?}")
        };
        delays.push(d);
        t += secs(1) + d;
        s.handle(Input::Fired(Timer::ConnectRetry), t);
        s.handle(Input::Connected(nh4()), t);
        s.handle(
            Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
            t,
        );
        s.handle(Input::Received(bytes(&[BgpMessage::KeepAlive])), t);
    }
    for (d, full) in delays.iter().zip([1u64, 2, 4, 8, 16]) {
        assert!(
            *d >= secs(full).mul_f64(0.75) && *d <= secs(full),
            "{delays:?}"
        );
    }
    // This one stays up for the stable period: the next failure starts from the first delay.
    let out = s.handle(Input::Closed("reset".into()), t + Backoff::default().stable);
    let Some(Output::Down {
        retry_in: Some(d), ..
    }) = out.last().cloned()
    else {
        panic!("{out:?}")
    };
    assert!(d <= secs(1), "{d:?}");
}

// --- Graceful restart (RFC 4724, RFC 8538) ------------------------------------------------

fn gr_offer() -> GracefulRestartOffer {
    GracefulRestartOffer {
        restart_time: 120,
        long_lived_stale_time: 0,
    }
}

/// A peer OPEN with the Graceful Restart capability (with or without the N bit) or none.
fn gr_peer_open(gr: Option<bool>) -> BgpMessage {
    use netgauze_bgp_pkt::capabilities::{GracefulRestartAddressFamily, GracefulRestartCapability};
    let mut caps = vec![
        BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
            AddressType::Ipv4Unicast,
        )),
        BgpCapability::FourOctetAs(FourOctetAsCapability::new(65530)),
    ];
    if let Some(n) = gr {
        caps.push(BgpCapability::GracefulRestartCapability(
            GracefulRestartCapability::new(
                false,
                n,
                120,
                [GracefulRestartAddressFamily::new(
                    true,
                    AddressType::Ipv4Unicast,
                )],
            ),
        ));
    }
    BgpMessage::Open(BgpOpenMessage::new(
        65530,
        90,
        "10.99.0.2".parse().unwrap(),
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    ))
}

/// Established with graceful restart offered and the peer's `gr`.
fn established_gr(gr: Option<bool>) -> (Session, Instant, Vec<Output>) {
    let t0 = Instant::now();
    let mut c = cfg();
    c.graceful_restart = Some(gr_offer());
    let mut s = Session::new(c, 7);
    s.handle(Input::Routes(routes(&["198.18.0.10/32"])), t0);
    s.handle(Input::Start, t0);
    let connected = s.handle(Input::Connected(nh4()), t0);
    s.handle(Input::Received(bytes(&[gr_peer_open(gr)])), t0);
    s.handle(Input::Received(bytes(&[BgpMessage::KeepAlive])), t0);
    assert_eq!(s.state(), State::Established);
    (s, t0, connected)
}

/// The capabilities of the OPEN in `out`.
fn sent_caps(out: &[Output]) -> Vec<BgpCapability> {
    out.iter()
        .find_map(|o| match o {
            Output::Send(msgs) => msgs.iter().find_map(|m| match m {
                BgpMessage::Open(open) => Some(open.capabilities().into_iter().cloned().collect()),
                _ => None,
            }),
            _ => None,
        })
        .expect("an OPEN was sent")
}

#[test]
fn the_open_offers_graceful_restart_with_n_and_f_and_without_r() {
    use netgauze_bgp_pkt::capabilities::{
        GracefulRestartAddressFamily, GracefulRestartCapability,
        LongLivedGracefulRestartAddressFamily, LongLivedGracefulRestartCapability,
    };
    let (_, _, connected) = established_gr(Some(true));
    let gr = GracefulRestartCapability::new(
        false,
        true,
        120,
        [GracefulRestartAddressFamily::new(
            true,
            AddressType::Ipv4Unicast,
        )],
    );
    let caps = sent_caps(&connected);
    assert!(
        caps.contains(&BgpCapability::GracefulRestartCapability(gr)),
        "{caps:?}"
    );
    assert!(!caps
        .iter()
        .any(|c| matches!(c, BgpCapability::LongLivedGracefulRestart(_))));
    // LLGR only when asked for, beside GR (RFC 9494 §2); a restart time past 12 bits is capped.
    let t0 = Instant::now();
    let mut c = cfg();
    c.graceful_restart = Some(GracefulRestartOffer {
        restart_time: 5000,
        long_lived_stale_time: 86_400,
    });
    let mut s = Session::new(c, 7);
    s.handle(Input::Start, t0);
    let caps = sent_caps(&s.handle(Input::Connected(nh4()), t0));
    assert!(caps.iter().any(|c| matches!(c,
        BgpCapability::GracefulRestartCapability(g) if g.time() == 4095)));
    assert!(caps.contains(&BgpCapability::LongLivedGracefulRestart(
        LongLivedGracefulRestartCapability::new([LongLivedGracefulRestartAddressFamily::new(
            true,
            AddressType::Ipv4Unicast,
            86_400
        )])
    )));
    // No offer, no capability: what a stop is then is always a Cease.
    let (_, _, plain) = {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(), 7);
        s.handle(Input::Start, t0);
        let out = s.handle(Input::Connected(nh4()), t0);
        (s, t0, out)
    };
    assert!(!sent_caps(&plain)
        .iter()
        .any(|c| matches!(c, BgpCapability::GracefulRestartCapability(_))));
}

#[test]
fn a_restart_with_an_n_bit_peer_sends_administrative_reset_and_no_hard_reset() {
    let (mut s, t0, _) = established_gr(Some(true));
    assert!(s.negotiated().unwrap().graceful_notification);
    assert_eq!(
        s.handle(
            Input::Restart {
                reason: "vipd restarting".into()
            },
            t0
        ),
        [
            Output::Notify(Notification::new(6, 4, *b"\x0fvipd restarting")),
            Output::Close,
            Output::Disarm(Timer::Hold),
            Output::Disarm(Timer::Keepalive),
            Output::Down {
                reason: DownReason::Restarting,
                retry_in: None
            },
        ]
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn a_restart_with_a_peer_without_n_closes_without_any_notification() {
    let (mut s, t0, _) = established_gr(Some(false));
    let n = s.negotiated().unwrap();
    assert!(n.graceful_restart && !n.graceful_notification);
    assert_eq!(
        s.handle(
            Input::Restart {
                reason: "vipd restarting".into()
            },
            t0
        ),
        [
            Output::Close,
            Output::Disarm(Timer::Hold),
            Output::Disarm(Timer::Keepalive),
            Output::Down {
                reason: DownReason::Restarting,
                retry_in: None
            },
        ]
    );
}

#[test]
fn a_restart_with_a_peer_without_graceful_restart_is_a_plain_cease() {
    let (mut s, t0, _) = established_gr(None);
    assert!(!s.negotiated().unwrap().graceful_restart);
    let out = s.handle(
        Input::Restart {
            reason: "vipd restarting".into(),
        },
        t0,
    );
    assert_eq!(
        out[0],
        Output::Notify(Notification::new(6, 2, *b"\x0fvipd restarting"))
    );
    assert!(out.contains(&Output::Down {
        reason: DownReason::Stopped,
        retry_in: None
    }));
}

#[test]
fn a_shutdown_with_an_n_bit_peer_is_a_hard_reset_carrying_the_cease() {
    let (mut s, t0, _) = established_gr(Some(true));
    let out = s.handle(
        Input::Stop {
            kind: CeaseKind::AdministrativeShutdown,
            reason: "bye".into(),
        },
        t0,
    );
    // Cease / Hard Reset (6/9), data: the inner Cease's code, subcode and shutdown message.
    assert_eq!(
        out[0],
        Output::Notify(Notification::new(6, 9, *b"\x06\x02\x03bye"))
    );
    // Without the N bit a plain Cease ends graceful restart already (RFC 4724 §4.2).
    let (mut s, t0, _) = established_gr(Some(false));
    let out = s.handle(
        Input::Stop {
            kind: CeaseKind::AdministrativeShutdown,
            reason: "bye".into(),
        },
        t0,
    );
    assert_eq!(out[0], Output::Notify(Notification::new(6, 2, *b"\x03bye")));
}

#[test]
fn bfd_down_ends_an_open_session_with_cease_10_and_retries() {
    let (mut s, t0) = established(routes(&["198.18.0.10/32"]));
    let out = s.handle(Input::BfdDown("detection time expired".into()), t0);
    let Some(Output::Down {
        retry_in: Some(delay),
        ..
    }) = out.last().cloned()
    else {
        panic!("no Down in {out:?}")
    };
    assert_eq!(
        out,
        [
            Output::Notify(Notification::new(6, 10, [])),
            Output::Close,
            Output::Disarm(Timer::Hold),
            Output::Disarm(Timer::Keepalive),
            Output::Arm(Timer::ConnectRetry, t0 + delay),
            Output::Down {
                reason: DownReason::BfdDown("detection time expired".into()),
                retry_in: Some(delay)
            },
        ]
    );
    assert_eq!(s.state(), State::Active);
    // Without a connection there is nothing to end.
    assert_eq!(s.handle(Input::BfdDown("again".into()), t0), []);
}

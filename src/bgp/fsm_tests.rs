//! Exact action lists for the session state machine: each test drives [`Session::handle`] and
//! compares the whole output, in order.

use super::*;
use crate::bgp::types::RouteAttrs;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
use netgauze_bgp_pkt::notification::{CeaseError, OpenMessageError};
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
    s.handle(Input::Start, t0);
    s.handle(Input::Connected(nh4()), t0);
    s.handle(
        Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
        t0,
    );
    s.handle(Input::Received(bytes(&[BgpMessage::KeepAlive])), t0);
    assert_eq!(s.state(), State::Established);
    (s, t0)
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
            Output::Send(vec![BgpMessage::Notification(
                BgpNotificationMessage::HoldTimerExpiredError(HoldTimerExpiredError::Unspecific {
                    sub_code: 0,
                    value: Box::new([])
                })
            )]),
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
        Output::Send(vec![BgpMessage::Notification(
            BgpNotificationMessage::OpenMessageError(OpenMessageError::BadPeerAs {
                value: 65531u16.to_be_bytes().into()
            })
        )])
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
    assert_eq!(
        out[0],
        Output::Send(vec![BgpMessage::Notification(
            // netgauze's OPEN parser refuses it already, with the offending value as data.
            BgpNotificationMessage::OpenMessageError(OpenMessageError::UnacceptableHoldTime {
                value: 2u16.to_be_bytes().into()
            })
        )])
    );
}

#[test]
fn garbage_header_gets_connection_not_synchronized() {
    let (mut s, t0) = established(routes(&[]));
    let out = s.handle(Input::Received(vec![0u8; 19]), t0);
    assert!(matches!(
        &out[0],
        Output::Send(m) if matches!(m[0], BgpMessage::Notification(BgpNotificationMessage::MessageHeaderError(
            netgauze_bgp_pkt::notification::MessageHeaderError::ConnectionNotSynchronized { .. })))
    ));
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
        Output::Send(vec![BgpMessage::Notification(
            BgpNotificationMessage::MessageHeaderError(
                netgauze_bgp_pkt::notification::MessageHeaderError::BadMessageLength {
                    value: 5000u16.to_be_bytes().into()
                }
            )
        )])
    );
}

#[test]
fn open_in_established_is_a_finite_state_machine_error() {
    let (mut s, t0) = established(routes(&[]));
    let out = s.handle(
        Input::Received(bytes(&[peer_open(65530, 90, &[AddressType::Ipv4Unicast])])),
        t0,
    );
    assert_eq!(
        out[0],
        Output::Send(vec![BgpMessage::Notification(
            BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState {
                    value: Box::new([])
                }
            )
        )])
    );
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
            Output::Learned {
                announced: nets(&["10.1.0.0/16"]),
                withdrawn: vec![]
            },
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
        Input::Received(bytes(&[wire::cease(
            CeaseKind::AdministrativeShutdown,
            "maintenance",
        )])),
        t0,
    );
    assert_eq!(out[0], Output::Close);
    let Some(Output::Down {
        reason: DownReason::PeerNotification(text),
        ..
    }) = out.last()
    else {
        panic!("{out:?}")
    };
    assert!(text.contains("maintenance"), "{text}");
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
            Output::Send(vec![BgpMessage::Notification(
                BgpNotificationMessage::CeaseError(CeaseError::AdministrativeShutdown {
                    value: b"\x12vipd shutting down".to_vec().into()
                })
            )]),
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

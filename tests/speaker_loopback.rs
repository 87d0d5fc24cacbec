//! The speaker's I/O edge over loopback, with no root: two vipd speakers, one passive acting as
//! the router. Real BGP acceptance runs against BIRD, FRR and GoBGP (bgp_*.rs); this covers the
//! speaker's own live changes: peers added, changed and removed while others keep running.

use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use vipd::bgp::driver::PeerEvent;
use vipd::bgp::speaker::{Speaker, SpeakerConfig};
use vipd::bgp::types::host_routes;
use vipd::bgp::types::{Asn, HoldTime, RouterId};
use vipd_providers::{MpBgpSpec, Password, PeerSpec};

fn cfg(asn: u32, id: [u8; 4], passive: bool) -> SpeakerConfig {
    SpeakerConfig {
        local_as: Asn(asn),
        router_id: RouterId(id.into()),
        hold_time: HoldTime::new(9).unwrap(),
        keepalive: None,
        passive,
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        source_ip: None,
        source_if: None,
        mpbgp: MpBgpSpec::default(),
        backoff: Default::default(),
        graceful_restart: None,
        bfd: None,
    }
}

/// A passive "router" that accepts vipd (AS 65000) from 127.0.0.1.
async fn router(asn: u32, password: Option<&str>) -> (Speaker, Receiver<PeerEvent>, SocketAddr) {
    let mut r = Speaker::start(cfg(asn, [192, 0, 2, 200], true))
        .await
        .unwrap();
    let events = r.events();
    let addr = r.listening()[0];
    let mut peer = PeerSpec::new(IpAddr::from([127, 0, 0, 1]), 65000);
    peer.password = password.map(|p| Password::new(p.into()));
    r.set_peers(vec![peer]).await;
    (r, events, addr)
}

fn peer(addr: SocketAddr, asn: u32) -> PeerSpec {
    PeerSpec::new(addr.ip(), asn).with_port(addr.port())
}

fn nets(v: &[&str]) -> BTreeSet<IpNet> {
    v.iter().map(|p| p.parse().unwrap()).collect()
}

/// Waits (at most 10 s) for an event matching `want`, keeping `table` up to date.
async fn until(
    rx: &mut Receiver<PeerEvent>,
    table: &mut BTreeSet<IpNet>,
    what: &str,
    want: impl Fn(&PeerEvent, &BTreeSet<IpNet>) -> bool,
) -> PeerEvent {
    let fut = async {
        loop {
            let e = rx.recv().await.expect("router alive");
            if let PeerEvent::Learned {
                announced,
                withdrawn,
                ..
            } = &e
            {
                table.extend(announced.iter().copied());
                for w in withdrawn {
                    table.remove(w);
                }
            }
            if want(&e, table) {
                return e;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s; table {table:?}"))
}

#[tokio::test]
async fn removing_one_peer_ceases_it_and_leaves_the_other_session_alone() {
    let (_ra, mut ea, a) = router(65001, None).await;
    let (_rb, mut eb, b) = router(65002, None).await;
    let mut vipd = Speaker::start(cfg(65000, [192, 0, 2, 1], false))
        .await
        .unwrap();
    vipd.set_routes(host_routes(&["198.51.100.10".parse().unwrap()]));
    vipd.set_peers(vec![peer(a, 65001), peer(b, 65002)]).await;
    let (mut ta, mut tb) = (BTreeSet::new(), BTreeSet::new());
    let want = nets(&["198.51.100.10/32"]);
    until(&mut ea, &mut ta, "routes at A", |_, t| *t == want).await;
    until(&mut eb, &mut tb, "routes at B", |_, t| *t == want).await;

    vipd.set_peers(vec![peer(b, 65002)]).await;
    let down = until(&mut ea, &mut ta, "Cease at A", |e, _| {
        matches!(e, PeerEvent::Down { .. })
    })
    .await;
    let PeerEvent::Down { reason, .. } = down else {
        unreachable!()
    };
    assert!(
        reason.contains("Cease/Peer De-configured (6/3)"),
        "{reason}"
    );

    // B keeps its session: a route change still reaches it, and it never went down.
    vipd.set_routes(host_routes(&["198.51.100.11".parse().unwrap()]));
    until(&mut eb, &mut tb, "update at B", |_, t| {
        *t == nets(&["198.51.100.11/32"])
    })
    .await;
    while let Ok(e) = eb.try_recv() {
        assert!(!matches!(e, PeerEvent::Down { .. }), "B went down: {e:?}");
    }
    vipd.shutdown("test over", Duration::from_secs(2)).await;
}

#[tokio::test]
async fn adding_a_peer_while_another_runs_announces_the_table_to_it() {
    let (_ra, mut ea, a) = router(65001, None).await;
    let (_rb, mut eb, b) = router(65002, None).await;
    let mut vipd = Speaker::start(cfg(65000, [192, 0, 2, 1], false))
        .await
        .unwrap();
    vipd.set_routes(host_routes(&[
        "198.51.100.10".parse().unwrap(),
        "198.51.100.12".parse().unwrap(),
    ]));
    vipd.set_peers(vec![peer(a, 65001)]).await;
    let (mut ta, mut tb) = (BTreeSet::new(), BTreeSet::new());
    let want = nets(&["198.51.100.10/32", "198.51.100.12/32"]);
    until(&mut ea, &mut ta, "routes at A", |_, t| *t == want).await;
    vipd.set_peers(vec![peer(a, 65001), peer(b, 65002)]).await;
    until(&mut eb, &mut tb, "routes at B", |_, t| *t == want).await;
    while let Ok(e) = ea.try_recv() {
        assert!(!matches!(e, PeerEvent::Down { .. }), "A went down: {e:?}");
    }
    vipd.shutdown("test over", Duration::from_secs(2)).await;
}

#[tokio::test]
async fn changing_a_peer_re_establishes_only_that_session() {
    // The router expects AS 65000; vipd first says the peer is AS 65009 (wrong), so the
    // session is refused; fixing the peer's AS brings it up without a restart.
    let (_ra, mut ea, a) = router(65001, None).await;
    let mut vipd = Speaker::start(cfg(65000, [192, 0, 2, 1], false))
        .await
        .unwrap();
    let mut vipd_events = vipd.events();
    vipd.set_routes(host_routes(&["198.51.100.10".parse().unwrap()]));
    vipd.set_peers(vec![peer(a, 65009)]).await;
    let mut scratch = BTreeSet::new();
    let refused = until(&mut vipd_events, &mut scratch, "refusal", |e, _| {
        matches!(e, PeerEvent::Down { .. })
    })
    .await;
    let PeerEvent::Down { reason, .. } = refused else {
        unreachable!()
    };
    assert!(
        reason.contains("AS65001") && reason.contains("AS65009"),
        "{reason}"
    );
    vipd.set_peers(vec![peer(a, 65001)]).await;
    let mut ta = BTreeSet::new();
    until(&mut ea, &mut ta, "routes at A", |_, t| {
        *t == nets(&["198.51.100.10/32"])
    })
    .await;
    vipd.shutdown("test over", Duration::from_secs(2)).await;
}

#[tokio::test]
async fn tcp_md5_with_matching_keys_establishes_over_loopback() {
    let (_ra, mut ea, a) = router(65001, Some("s3cret")).await;
    let mut vipd = Speaker::start(cfg(65000, [192, 0, 2, 1], false))
        .await
        .unwrap();
    vipd.set_routes(host_routes(&["198.51.100.10".parse().unwrap()]));
    let mut p = peer(a, 65001);
    p.password = Some(Password::new("s3cret".into()));
    vipd.set_peers(vec![p]).await;
    let mut ta = BTreeSet::new();
    until(&mut ea, &mut ta, "routes over MD5", |_, t| {
        *t == nets(&["198.51.100.10/32"])
    })
    .await;
    vipd.shutdown("test over", Duration::from_secs(2)).await;
}

#[tokio::test]
async fn tcp_md5_key_on_one_side_only_keeps_the_session_down() {
    let (_ra, mut ea, a) = router(65001, Some("s3cret")).await;
    let mut vipd = Speaker::start(cfg(65000, [192, 0, 2, 1], false))
        .await
        .unwrap();
    let mut vipd_events = vipd.events();
    vipd.set_routes(host_routes(&["198.51.100.10".parse().unwrap()]));
    vipd.set_peers(vec![peer(a, 65001)]).await;
    // The kernel drops unsigned SYNs silently: vipd's connect times out, and it says why.
    let mut scratch = BTreeSet::new();
    let down = until(&mut vipd_events, &mut scratch, "connect timeout", |e, _| {
        matches!(e, PeerEvent::Down { .. })
    })
    .await;
    let PeerEvent::Down { reason, .. } = down else {
        unreachable!()
    };
    assert!(reason.contains("TCP-MD5"), "{reason}");
    assert!(ea.try_recv().is_err(), "the router saw a session");
    vipd.shutdown("test over", Duration::from_secs(2)).await;
}

/// A peer that sends UPDATEs faster than anyone reads the speaker's events fills a bounded
/// queue, not memory: the router here never reads while vipd announces and withdraws 100,000
/// routes six times (thousands of UPDATEs); the queue holds at most its capacity, the session
/// stays up, and once read again the events resume.
#[tokio::test]
async fn a_peer_flooding_updates_fills_a_bounded_event_queue_not_memory() {
    let (router, mut events, addr) = router(65001, None).await;
    let mut vipd = Speaker::start(cfg(65000, [192, 0, 2, 1], false))
        .await
        .unwrap();
    vipd.set_peers(vec![peer(addr, 65001)]).await;
    let many: Vec<IpAddr> = (0..100_000u32)
        .map(|i| IpAddr::from([10, 200 + (i >> 16) as u8, (i >> 8) as u8, i as u8]))
        .collect();
    for round in 0..12 {
        vipd.set_routes(host_routes(if round % 2 == 0 { &many } else { &[] }));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        events.len(),
        vipd::bgp::driver::PEER_EVENTS,
        "the unread queue is full, and no fuller"
    );
    let board = router.board().snapshot();
    assert!(
        !board.is_empty() && board.iter().all(|(_, p)| p.established_since.is_some()),
        "the session stays up: {board:?}"
    );
    assert!(
        board
            .iter()
            .all(|(_, p)| p.updates_received > vipd::bgp::driver::PEER_EVENTS as u64),
        "the router received more UPDATEs than the queue holds: {board:?}"
    );
    let (mut table, mut seen_up) = (BTreeSet::new(), false);
    while let Ok(e) = events.try_recv() {
        seen_up |= matches!(e, PeerEvent::Up { .. });
    }
    assert!(seen_up, "the session's Up was queued before the flood");
    // Reading again: a new change arrives as events.
    vipd.set_routes(host_routes(&["198.51.100.77".parse().unwrap()]));
    until(&mut events, &mut table, "events after the flood", |e, _| {
        matches!(e, PeerEvent::Learned { announced, .. } if announced.contains(&"198.51.100.77/32".parse().unwrap()))
    })
    .await;
    vipd.shutdown("test over", Duration::from_secs(2)).await;
}

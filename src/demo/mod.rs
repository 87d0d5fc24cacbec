//! `vipd demo`: a VIP announced end to end with no cluster and no root. Two speakers run in
//! this process over loopback: vipd's (active, AS 65000) and a stand-in top-of-rack router
//! (passive, AS 65001) that prints what it learns. The demo's router is for the demo only;
//! vipd's tests run against BIRD, FRR and GoBGP.

pub mod apiserver;

use crate::agent::route_set;
use crate::bgp::driver::PeerEvent;
use crate::bgp::speaker::{Speaker, SpeakerConfig, SpeakerError};
use crate::bgp::types::{Asn, HoldTime, RouterId};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use vipd_providers::{MpBgpNextHop, MpBgpSpec, PeerSpec};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Speaker(#[from] SpeakerError),
    #[error("the demo router saw no {0} within 10 s")]
    Timeout(&'static str),
}

fn speaker_cfg(asn: u32, id: &str, passive: bool) -> SpeakerConfig {
    SpeakerConfig {
        local_as: Asn(asn),
        router_id: RouterId(id.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST)),
        hold_time: HoldTime::new(9).unwrap_or_else(|| unreachable!("9 s is a valid hold time")),
        keepalive: None,
        passive,
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        source_ip: None,
        source_if: None,
        // IPv6 VIPs ride the IPv4 session with a fixed next hop, as kube-vip's mpbgp_nexthop does.
        mpbgp: MpBgpSpec {
            next_hop: MpBgpNextHop::Fixed,
            ipv4: None,
            ipv6: "2001:db8::1".parse().ok(),
        },
        backoff: Default::default(),
    }
}

/// Runs the walk-through; with `keep`, stays up until Ctrl-C.
pub async fn run(keep: bool) -> Result<(), DemoError> {
    let t0 = Instant::now();
    let ms = |t: Instant| format!("{:>6.1} ms", t.duration_since(t0).as_secs_f64() * 1000.0);

    let mut router = Speaker::start(speaker_cfg(65001, "192.0.2.254", true)).await?;
    let mut events = router.events();
    let listen = router.listening()[0];
    router
        .set_peers(vec![PeerSpec::new(IpAddr::from([127, 0, 0, 1]), 65000)])
        .await;
    println!(
        "{}  demo router (AS 65001) listening on {listen}",
        ms(Instant::now())
    );

    let vips: Vec<IpAddr> = ["198.51.100.10", "198.51.100.11", "2001:db8:100::10"]
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    let mut vipd = Speaker::start(speaker_cfg(65000, "192.0.2.1", false)).await?;
    vipd.set_routes(route_set(&vips));
    vipd.set_peers(vec![
        PeerSpec::new(listen.ip(), 65001).with_port(listen.port())
    ])
    .await;
    println!(
        "{}  vipd (AS 65000) configured with VIPs {}",
        ms(Instant::now()),
        vips.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut table = BTreeSet::new();
    wait_for(&mut events, &mut table, "session", |e, _| {
        matches!(e, PeerEvent::Up { .. })
    })
    .await?;
    println!("{}  BGP session established", ms(Instant::now()));
    let want: BTreeSet<IpNet> = vips.iter().map(|v| IpNet::from(*v)).collect();
    wait_for(&mut events, &mut table, "routes", |_, t| want.is_subset(t)).await?;
    println!(
        "{}  router holds {} routes:",
        ms(Instant::now()),
        table.len()
    );
    for p in &table {
        println!("             {p}  via vipd, AS path 65000, origin IGP");
    }

    let kept = &vips[1..];
    vipd.set_routes(route_set(kept));
    println!("{}  VIP {} removed from vipd", ms(Instant::now()), vips[0]);
    let gone = IpNet::from(vips[0]);
    wait_for(&mut events, &mut table, "withdrawal", |_, t| {
        !t.contains(&gone)
    })
    .await?;
    println!(
        "{}  router withdrew {gone}; holds {} routes",
        ms(Instant::now()),
        table.len()
    );

    if keep {
        println!("running until Ctrl-C (both speakers stay up)");
        let _ = tokio::signal::ctrl_c().await;
    }
    vipd.shutdown("vipd demo finished", Duration::from_secs(3))
        .await;
    let down = wait_for(&mut events, &mut table, "Cease", |e, _| {
        matches!(e, PeerEvent::Down { .. })
    })
    .await?;
    if let PeerEvent::Down { reason, .. } = down {
        println!(
            "{}  vipd shut down; router saw: {reason}",
            ms(Instant::now())
        );
    }
    router.shutdown("demo over", Duration::from_secs(1)).await;
    println!("demo complete: announce, withdraw and Cease all observed");
    Ok(())
}

/// Applies router events to `table` until `done` says so; returns the event that finished it.
async fn wait_for(
    events: &mut UnboundedReceiver<PeerEvent>,
    table: &mut BTreeSet<IpNet>,
    what: &'static str,
    done: impl Fn(&PeerEvent, &BTreeSet<IpNet>) -> bool,
) -> Result<PeerEvent, DemoError> {
    let wait = async {
        while let Some(e) = events.recv().await {
            match &e {
                PeerEvent::Learned {
                    announced,
                    withdrawn,
                    ..
                } => {
                    table.extend(announced.iter().copied());
                    for w in withdrawn {
                        table.remove(w);
                    }
                }
                PeerEvent::Down { .. } => table.clear(),
                PeerEvent::Up { .. } => {}
            }
            if done(&e, table) {
                return Some(e);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .ok()
        .flatten()
        .ok_or(DemoError::Timeout(what))
}

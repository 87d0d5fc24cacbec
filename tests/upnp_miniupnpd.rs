//! vipd's UPnP forwarder (`vipd::upnp`) against a real miniupnpd: mappings with the VIP as
//! internal client appear in `upnpc -l` on another LAN host and carry traffic from the WAN side,
//! are refreshed before their lease lapses, and go when a port goes and at shutdown; a refused
//! port and a missing gateway are errors that name the reason. Needs root and the UPnP packages.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::cluster::in_netns;
use support::miniupnpd::{UpnpBed, GW_WAN_IP, NEEDS};
use support::{run_ok, wait_until_or_explain, VIPD_NEEDS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use vipd::upnp::gateway::{self, Forwarder, SearchSettings, UpnpState};
use vipd::upnp::plan::{desired, Key, Mapping, UpnpRequest};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);

fn request(ports: &[(&str, i32)], lease: &str) -> UpnpRequest {
    UpnpRequest {
        service: "default/web".into(),
        forward: true,
        lease_duration: Some(lease.to_string()),
        vip: Some(VIP),
        ports: ports
            .iter()
            .map(|(p, n)| (Some(p.to_string()), *n))
            .collect(),
    }
}

fn want(ports: &[(&str, i32)], lease: &str) -> BTreeMap<Key, Mapping> {
    desired(&[request(ports, lease)]).0
}

fn search() -> SearchSettings {
    SearchSettings {
        bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        timeout: Duration::from_secs(3),
    }
}

#[test]
fn mappings_appear_carry_traffic_refresh_and_go_against_miniupnpd() {
    skip_unless!(root, NEEDS, VIPD_NEEDS);
    let bed = UpnpBed::setup();
    run_ok(
        "ip",
        &[
            "-n",
            &bed.lan,
            "addr",
            "add",
            "10.96.0.50/32",
            "dev",
            "eth-gw",
        ],
    );
    let explain = |bed: &UpnpBed| {
        format!(
            "---- upnpc -l ----\n{}\n---- lease file ----\n{:?}\n---- miniupnpd ----\n{}",
            bed.upnpc_list(),
            bed.leases(),
            bed.miniupnpd.log_tail(30)
        )
    };
    let lan = bed.lan.clone();
    in_netns(&lan, async {
        // A 20 s lease: refreshed every 10 s.
        let (desired_tx, desired_rx) =
            watch::channel(want(&[("TCP", 32380), ("UDP", 32381)], "20s"));
        let (state_tx, mut state_rx) = watch::channel(UpnpState::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gateway::run(search(), desired_rx, state_tx, false, async {
            let _ = stop_rx.await;
        }));
        let state = tokio::time::timeout(
            Duration::from_secs(20),
            state_rx.wait_for(|s| s.installed.len() == 2 || !s.errors.is_empty()),
        )
        .await
        .expect("a first round within 20 s")
        .expect("forwarder alive")
        .clone();
        assert!(
            state.errors.is_empty(),
            "{:?}\n{}",
            state.errors,
            explain(&bed)
        );
        assert_eq!(
            state.external_ip,
            Some(GW_WAN_IP.parse().unwrap()),
            "STUN-learned WAN address"
        );

        // upnpc on another LAN host sees both, with the VIP as internal client.
        let lines = bed.upnpc_mappings();
        eprintln!("upnpc -l:\n{}", lines.join("\n"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("TCP 32380->10.96.0.50:32380") && l.contains("'default/web'")),
            "{}",
            explain(&bed)
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("UDP 32381->10.96.0.50:32381")),
            "{}",
            explain(&bed)
        );

        // The mapping carries a TCP connection from the WAN side to the VIP.
        let listener = tokio::net::TcpListener::bind((VIP, 32380))
            .await
            .expect("listen on the VIP");
        let server = tokio::spawn(async move {
            let (mut conn, from) = listener.accept().await.expect("accept");
            conn.write_all(format!("hello {}", from.ip()).as_bytes())
                .await
                .unwrap();
        });
        let wan = bed.wan.clone();
        let answer = in_netns(&wan, async {
            let mut conn = tokio::net::TcpStream::connect((GW_WAN_IP, 32380))
                .await
                .expect("connect through the mapping");
            let mut text = String::new();
            conn.read_to_string(&mut text).await.unwrap();
            text
        });
        server.await.unwrap();
        assert_eq!(answer, "hello 198.18.1.2");

        // Refreshed before the lease lapses: miniupnpd's expiry moves.
        let first = bed
            .lease_expiry("TCP", 32380)
            .unwrap_or_else(|| panic!("{}", explain(&bed)));
        let took = wait_until_or_explain(
            Duration::from_secs(15),
            "miniupnpd's lease for TCP 32380 moves (a refresh)",
            || bed.lease_expiry("TCP", 32380).is_some_and(|e| e > first),
            || explain(&bed),
        );
        eprintln!(
            "refreshed after {took:.1?}: expiry {first} -> {}",
            bed.lease_expiry("TCP", 32380).unwrap()
        );

        // A port removed from the Service: its mapping goes, the other stays.
        desired_tx.send_replace(want(&[("TCP", 32380)], "20s"));
        wait_until_or_explain(
            Duration::from_secs(10),
            "the UDP mapping is gone and the TCP one stays",
            || {
                let lines = bed.upnpc_mappings();
                !lines.iter().any(|l| l.contains("UDP 32381->"))
                    && lines.iter().any(|l| l.contains("TCP 32380->"))
            },
            || explain(&bed),
        );

        // Shutdown deletes what vipd mapped.
        stop_tx.send(()).unwrap();
        task.await.unwrap();
        let lines = bed.upnpc_mappings();
        assert!(lines.is_empty(), "left behind: {lines:?}");
        assert!(bed.leases().is_empty(), "{:?}", bed.leases());
    });
}

#[test]
fn a_refused_port_is_an_error_with_the_gateways_reply_and_permanent_leases_work() {
    skip_unless!(root, NEEDS, VIPD_NEEDS);
    let bed = UpnpBed::setup();
    let lan = bed.lan.clone();
    in_netns(&lan, async {
        let mut forwarder = Forwarder::new(search());
        // miniupnpd's rules allow only ports 1024-65535: port 80 is refused; 0 = permanent.
        let errors = forwarder
            .reconcile(&want(&[("TCP", 80), ("TCP", 32390)], "0"))
            .await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        eprintln!("refusal: {text}");
        assert!(
            text.contains("refused to map TCP 80 -> 10.96.0.50:80 (default/web)"),
            "{text}"
        );
        assert!(text.contains("10.96.0.1:2189"), "names the gateway: {text}");
        let lines = bed.upnpc_mappings();
        eprintln!("upnpc -l:\n{}", lines.join("\n"));
        // An IGDv2 gateway (miniupnpd is one) turns a permanent request into its maximum, one
        // week (604800 s); vipd re-asserts it every 5 minutes and deletes it itself.
        let lease: u64 = lines
            .iter()
            .find(|l| l.contains("TCP 32390->10.96.0.50:32390 'default/web'"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or_else(|| panic!("no permanent mapping in {lines:?}"));
        assert!((600_000..=604_800).contains(&lease), "{lease}");
        assert!(forwarder.remove_all().await.is_empty());
        assert!(bed.upnpc_mappings().is_empty());
    });
}

#[test]
fn no_gateway_is_an_error_naming_the_search() {
    skip_unless!(root, VIPD_NEEDS);
    let ns = format!("vu{}-alone", std::process::id());
    run_ok("ip", &["netns", "add", &ns]);
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .output();
        }
    }
    let _del = Del(ns.clone());
    run_ok("ip", &["-n", &ns, "link", "set", "lo", "up"]);
    run_ok(
        "ip",
        &["-n", &ns, "route", "add", "239.255.255.250/32", "dev", "lo"],
    );
    in_netns(&ns, async {
        let mut forwarder = Forwarder::new(SearchSettings {
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            timeout: Duration::from_secs(1),
        });
        let errors = forwarder.reconcile(&want(&[("TCP", 32380)], "1h")).await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        eprintln!("no gateway: {text}");
        assert!(
            text.starts_with("no UPnP Internet gateway answered an SSDP search"),
            "{text}"
        );
    });
}

//! Peers from the Equinix Metal API (`vip_packet=true`, `provider_config`, `metal_peer_routes`),
//! against a local stand-in for the API (the real one is unreachable here): vipd finds its
//! device, makes sure the BGP session exists, reads the neighbours, installs the host route to
//! the router via the private gateway (the router's address is not otherwise reachable, as with
//! Metal's 169.254.255.x), peers with BIRD with the API's MD5 password and announces a Service.
//! SIGTERM removes the route. Root and BIRD needed; skipped loudly otherwise.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::time::Duration;

use support::bird::Bird;
use support::cluster::{self, in_netns, lb_service};
use support::metal::{MetalMock, MetalWorld, PROJECT, TOKEN};
use support::netns::Topology;
use support::router::{Family, Router, RouterConfig};
use support::vipd::Vipd;
use support::{ns_stdout, run_ok, VIPD_NEEDS};

const ROUTER: &str = "169.254.255.1";

#[test]
fn metal_api_peers_reach_bird_through_the_installed_peer_route() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let topo = Topology::with_nodes(1);
    run_ok(
        "ip",
        &[
            "-n",
            &topo.tor,
            "address",
            "add",
            &format!("{ROUTER}/32"),
            "dev",
            "lo",
        ],
    );
    let cfg = RouterConfig::ipv4()
        .multihop()
        .only_neighbor("10.99.0.1", ROUTER)
        .password("Md5Secret77");
    let mut bird = Bird::new(&topo, cfg);
    bird.start();
    let dir = tempfile::tempdir().unwrap();
    let node = topo.node.clone();
    let route = || ns_stdout(&node, &["ip", "route", "show", ROUTER]);
    assert!(
        route().trim().is_empty(),
        "no route to the router before vipd"
    );
    let tor = topo.tor.clone();
    in_netns(&tor, async {
        let metal = MetalMock::start(MetalWorld {
            hostname: "node0".into(),
            private_ip: "10.99.0.1".into(),
            private_gateway: "10.99.0.2".into(),
            peer_ips: vec![ROUTER.into()],
            md5: "Md5Secret77".into(),
        })
        .await;
        let cloud_sa = dir.path().join("cloud-sa.json");
        std::fs::write(
            &cloud_sa,
            format!(r#"{{"apiKey":"{TOKEN}","projectID":"{PROJECT}","base-url":"http://10.99.0.2:{}/metal/v1"}}"#, metal.port),
        )
        .unwrap();
        let api = cluster::api_server().await;
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.10", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        let kubeconfig = cluster::node_kubeconfig(dir.path(), 0, api.addr().port());
        let cloud_sa = cloud_sa.display().to_string();
        let mut agent = Vipd::services(
            &topo,
            0,
            &kubeconfig,
            &[
                ("bgp_peers", ""),
                ("bgp_routerid", ""),
                ("vip_packet", "true"),
                ("provider_config", &cloud_sa),
                ("metal_peer_routes", "true"),
            ],
        );
        agent.start();
        let explain = |a: &Vipd| {
            format!(
                "---- bird ----\n{}\n---- vipd ----\n{}\n---- requests ----\n{:?}",
                bird.log_tail(),
                a.log_tail(),
                metal.requests.lock().unwrap()
            )
        };
        eventually!(
            Duration::from_secs(20),
            "the session with the API's neighbour is up",
            bird.session_established(),
            explain(&agent)
        );
        let r = route();
        assert!(
            r.contains("via 10.99.0.2") && r.contains("proto 118") && r.contains("src 10.99.0.1"),
            "peer route: {r}"
        );
        eventually!(
            Duration::from_secs(10),
            "the VIP reaches BIRD",
            bird.next_hops("198.18.0.10/32")
                == vec!["10.99.0.1".parse::<std::net::IpAddr>().unwrap()],
            explain(&agent)
        );
        let requests = metal.requests.lock().unwrap().clone();
        for call in [
            format!("GET /metal/v1/projects/{PROJECT}/bgp-config"),
            format!(
                "POST /metal/v1/devices/{}/bgp/sessions",
                support::metal::DEVICE
            ),
            format!(
                "GET /metal/v1/devices/{}/bgp/neighbors",
                support::metal::DEVICE
            ),
        ] {
            assert!(requests.contains(&call), "{call} missing from {requests:?}");
        }
        assert!(
            !agent.log().contains(TOKEN),
            "the API token leaked into the log"
        );
        assert!(
            !agent.log().contains("Md5Secret77"),
            "the MD5 password leaked into the log"
        );

        agent.terminate();
        let status = agent.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "exit 0 on SIGTERM: {status:?}\n{}",
            explain(&agent)
        );
        assert!(
            route().trim().is_empty(),
            "the peer route is removed on exit: {}",
            route()
        );
        eventually!(
            Duration::from_secs(5),
            "BIRD's table is empty",
            bird.route_count(Family::Ipv4) == 0,
            explain(&agent)
        );
    });
}

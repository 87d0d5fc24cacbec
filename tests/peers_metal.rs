//! Peers from the Equinix Metal API (`vip_packet=true`, `provider_config`, `metal_peer_routes`),
//! against a local stand-in for the API (the real one is unreachable here): vipd finds its
//! device, makes sure the BGP session exists, reads the neighbours, installs the host route to
//! the router via the private gateway (the router's address is not otherwise reachable, as with
//! Metal's 169.254.255.x), peers with BIRD with the API's MD5 password and announces a Service.
//! SIGTERM removes the route. Root and BIRD needed; skipped loudly otherwise.
//!
//! It is also the planted-secrets run: the Metal API key, the MD5 password the API hands out,
//! a static peer's password, a node annotation's (base64) password and the agent's own bearer
//! token are all in play, with sessions up and failing and Warning Events raised; then every
//! log line, `/metrics`, `/status`, `vipd status`, every Event and the exit message of a bad
//! setting are searched for each of them (plain and base64).

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
/// A peer that never answers (its session keeps failing and being retried, and says so).
const STATIC_PEER_IP: &str = "10.99.0.77";
const STATIC_PASS: &str = "PlantedStaticPass41";
const ANNOTATION_PASS: &str = "PlantedAnnotationPass42";
/// base64 of [`ANNOTATION_PASS`].
const ANNOTATION_PASS_B64: &str = "UGxhbnRlZEFubm90YXRpb25QYXNzNDI=";

const ADMIN_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: everything}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vipd-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: everything}
subjects:
- {kind: ServiceAccount, name: vipd, namespace: kube-system}
"#;

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
        // A node annotation peer with a password (base64, as Metal's CCM writes it).
        let annotations = [
            ("node-asn", "65000"),
            ("peer-asn", "65530"),
            ("peer-ip", STATIC_PEER_IP),
            ("bgp-pass", ANNOTATION_PASS_B64),
        ]
        .into_iter()
        .map(|(k, v)| (format!("metal.equinix.com/bgp-peers-0-{k}"), v.to_string()))
        .collect();
        cluster::create_annotated_node(&client, "node0", annotations).await;
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.10", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        // The agent authenticates with a bearer token (the admin's rights, so RBAC is not in
        // the way): one more secret planted.
        api.create_manifest(ADMIN_RBAC).expect("RBAC");
        let token = api.token("kube-system", "vipd");
        let kubeconfig =
            cluster::node_kubeconfig_as(dir.path(), 0, api.addr().port(), Some(&token));
        // A Service whose address is bad: a Warning Event.
        cluster::create_service(&client, &lb_service("bad", "not-an-address", false)).await;
        let cloud_sa = cloud_sa.display().to_string();
        let static_peer = format!("10.99.0.78:65531:{STATIC_PASS}:true");
        let mut agent = Vipd::services(
            &topo,
            0,
            &kubeconfig,
            &[
                ("bgp_peers", &static_peer),
                ("bgp_routerid", ""),
                ("vip_packet", "true"),
                ("provider_config", &cloud_sa),
                ("metal_peer_routes", "true"),
                ("annotation", "metal.equinix.com"),
                ("prometheus_server", "127.0.0.1:2112"),
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
        // Let the sessions to the peers that never answer fail and be retried (and logged).
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Every place an operator or a scraper reads: none holds a planted secret.
        let (_, metrics) = in_netns(&node, cluster::http_get("127.0.0.1:2112", "/metrics"));
        let (_, status) = in_netns(&node, cluster::http_get("127.0.0.1:2112", "/status"));
        let cli = ns_stdout(
            &node,
            &[&support::vipd_bin(), "status", "--server", "127.0.0.1:2112"],
        );
        let events = cluster::all_event_notes(&client).await;
        assert!(
            events.iter().any(|e| e.contains("not-an-address")),
            "the bad Service's Warning is there to search: {events:?}"
        );
        let secrets = [
            TOKEN,
            "Md5Secret77",
            STATIC_PASS,
            ANNOTATION_PASS,
            ANNOTATION_PASS_B64,
            token.as_str(),
        ];
        let places = [
            ("the log", agent.log()),
            ("/metrics", metrics),
            ("/status", status),
            ("vipd status", cli),
            ("the Events", events.join("\n")),
        ];
        for (place, text) in &places {
            assert!(text.len() > 50, "{place} has something to search: {text}");
            for secret in secrets {
                assert!(
                    !text.contains(secret),
                    "a planted secret leaked into {place}"
                );
            }
        }
        // A bad setting's exit message names the setting, not the password beside it.
        let bad = std::process::Command::new(support::vipd_bin())
            .arg("manager")
            .env_clear()
            .env("bgp_enable", "true")
            .env("bgp_as", "65000")
            .env("bgp_routerid", "10.0.0.1")
            .env("bgp_peers", format!("10.0.0.2:65530:{STATIC_PASS}:maybe"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(2), "{said}");
        assert!(!said.contains(STATIC_PASS), "{said}");

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

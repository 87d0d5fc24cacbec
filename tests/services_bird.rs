//! Services mode end to end: vipd's in-process API server (real HTTP, in the tor namespace), the
//! real `vipd manager --services` binary on one or two node namespaces, and BIRD 2 as the ToR.
//! Every check reads what a user would: BIRD's table (`birdc`), the Service's status through the
//! API, the node's addresses (`ip address`). Root and BIRD needed; skipped loudly otherwise.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::net::IpAddr;
use std::time::Duration;

use fake_apiserver::ApiServer;
use support::bed::BirdBed as Bed;
use support::bird::Bird;
use support::cluster::{self, in_netns, lb_service, slice, Ep};
use support::router::{Family, Router};
use support::{ns_stdout, VIPD_NEEDS};

const UP: Duration = Duration::from_secs(20);
const SOON: Duration = Duration::from_secs(10);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

/// A new Service reaches BIRD with the node as next hop and gets its status, each entry with
/// the Service's ports as kube-vip writes them; with its endpoints gone (externalTrafficPolicy
/// Cluster) it is withdrawn and the status kept, as kube-vip keeps it; back again when an
/// endpoint returns.
#[test]
fn service_reaches_bird_gets_status_and_is_withdrawn_without_endpoints() {
    withdrawn_without_endpoints(&[], false);
}

/// With `vipd_clear_ingress_without_endpoints` the status is cleared while no endpoint serves.
#[test]
fn asked_to_the_ingress_of_a_service_without_endpoints_is_cleared() {
    withdrawn_without_endpoints(&[("vipd_clear_ingress_without_endpoints", "true")], true);
}

fn withdrawn_without_endpoints(extra: &[(&str, &str)], cleared: bool) {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::new(1);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        bed.start_agent(0, api.addr().port(), extra);
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.10", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        eventually!(
            UP,
            "BIRD holds 198.18.0.10/32 via node0",
            bed.hops("198.18.0.10/32") == ips(&["10.99.0.1"]),
            bed.explain()
        );
        let route = bed.bird.route("198.18.0.10/32").expect("route");
        assert_eq!(
            (route.as_path.as_slice(), route.origin.as_str()),
            (&[65000u32][..], "IGP")
        );
        eventually!(
            SOON,
            "status.loadBalancer.ingress is [198.18.0.10]",
            cluster::ingress(&client, "web").await == ["198.18.0.10"],
            bed.explain()
        );
        let services: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::namespaced(client.clone(), "default");
        let web = services.get("web").await.expect("web");
        let entry =
            serde_json::to_value(&web.status).expect("json")["loadBalancer"]["ingress"][0].clone();
        assert_eq!(
            entry,
            serde_json::json!({"ip": "198.18.0.10", "ports": [{"port": 80, "protocol": "TCP"}]}),
            "the entry carries the Service's ports"
        );

        cluster::put_slice(&client, &slice("web", "web-1", &[])).await;
        eventually!(
            SOON,
            "198.18.0.10/32 is withdrawn",
            bed.bird.route("198.18.0.10/32").is_none(),
            bed.explain()
        );
        if cleared {
            eventually!(
                SOON,
                "the ingress is cleared",
                cluster::ingress(&client, "web").await.is_empty(),
                bed.explain()
            );
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                cluster::ingress(&client, "web").await,
                ["198.18.0.10"],
                "the address stays the Service's\n{}",
                bed.explain()
            );
        }

        cluster::put_slice(
            &client,
            &slice("web", "web-1", &[Ep::ready("10.244.0.6", "node0")]),
        )
        .await;
        eventually!(
            SOON,
            "198.18.0.10/32 is back",
            bed.bird.route("198.18.0.10/32").is_some(),
            bed.explain()
        );
        eventually!(
            SOON,
            "the ingress is [198.18.0.10] again",
            cluster::ingress(&client, "web").await == ["198.18.0.10"],
            bed.explain()
        );
        assert_eq!(
            bed.bird.route_count(Family::Ipv4),
            1,
            "only the Service's VIP"
        );
    });
}

/// externalTrafficPolicy Local on two nodes: only the node with an endpoint announces; with
/// endpoints on both, BIRD holds two paths (ECMP).
#[test]
fn local_traffic_policy_announces_only_from_nodes_with_endpoints() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::new(2);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        for n in ["node0", "node1"] {
            cluster::create_node(&client, n).await;
        }
        bed.start_agent(0, api.addr().port(), &[]);
        bed.start_agent(1, api.addr().port(), &[]);
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.20", true),
            "node1",
            "10.244.1.5",
        )
        .await;
        eventually!(
            UP,
            "only node1 (10.99.1.1) announces",
            bed.hops("198.18.0.20/32") == ips(&["10.99.1.1"]),
            bed.explain()
        );
        cluster::put_slice(
            &client,
            &slice(
                "web",
                "web-1",
                &[
                    Ep::ready("10.244.1.5", "node1"),
                    Ep::ready("10.244.0.5", "node0"),
                ],
            ),
        )
        .await;
        eventually!(
            SOON,
            "both nodes announce: two paths",
            bed.hops("198.18.0.20/32") == ips(&["10.99.0.1", "10.99.1.1"]),
            bed.explain()
        );
        cluster::put_slice(
            &client,
            &slice("web", "web-1", &[Ep::ready("10.244.0.5", "node0")]),
        )
        .await;
        eventually!(
            SOON,
            "only node0 is left",
            bed.hops("198.18.0.20/32") == ips(&["10.99.0.1"]),
            bed.explain()
        );
        assert_eq!(cluster::ingress(&client, "web").await, ["198.18.0.20"]);
    });
}

/// A rolling update under externalTrafficPolicy Local: the old pod terminates while still
/// serving and the new one is not ready yet. The route must stay the whole time (kube-vip#1397)
/// and go only when nothing on the node serves.
#[test]
fn rolling_update_with_terminating_serving_endpoints_never_withdraws() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::new(1);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        bed.start_agent(0, api.addr().port(), &[]);
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.30", true),
            "node0",
            "10.244.0.5",
        )
        .await;
        eventually!(
            UP,
            "announced",
            bed.bird.route("198.18.0.30/32").is_some(),
            bed.explain()
        );
        let not_ready = Ep {
            ready: false,
            serving: false,
            ..Ep::ready("10.244.0.6", "node0")
        };
        let steps: [&[Ep]; 3] = [
            &[Ep::terminating_serving("10.244.0.5", "node0"), not_ready],
            &[
                Ep::terminating_serving("10.244.0.5", "node0"),
                Ep::ready("10.244.0.6", "node0"),
            ],
            &[Ep::ready("10.244.0.6", "node0")],
        ];
        for step in steps {
            cluster::put_slice(&client, &slice("web", "web-1", step)).await;
            // Checked for a while after each step: a withdrawal would show within this time.
            for _ in 0..20 {
                assert!(
                    bed.bird.route("198.18.0.30/32").is_some(),
                    "withdrawn during the rollout at {step:?}\n{}",
                    bed.explain()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let gone = Ep {
            ready: false,
            serving: false,
            terminating: true,
            ..Ep::ready("10.244.0.6", "node0")
        };
        cluster::put_slice(&client, &slice("web", "web-1", &[gone])).await;
        eventually!(
            SOON,
            "withdrawn once nothing serves",
            bed.bird.route("198.18.0.30/32").is_none(),
            bed.explain()
        );
    });
}

/// The API server stops (every watch breaks) and comes back on the same address with its data:
/// BIRD's table stays untouched throughout, and changes made after the restart are applied.
#[test]
fn api_server_outage_leaves_the_table_untouched() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::new(1);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let addr = api.addr();
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        bed.start_agent(0, addr.port(), &[]);
        for (name, vip) in [("a", "198.18.0.40"), ("b", "198.18.0.41")] {
            cluster::create_service(&client, &lb_service(name, vip, false)).await;
            cluster::put_slice(
                &client,
                &slice(
                    name,
                    &format!("{name}-1"),
                    &[Ep::ready("10.244.0.5", "node0")],
                ),
            )
            .await;
        }
        eventually!(
            UP,
            "both VIPs in BIRD",
            bed.bird.route_count(Family::Ipv4) == 2,
            bed.explain()
        );
        let store = api.stop().await;
        for _ in 0..100 {
            assert_eq!(
                bed.bird.route_count(Family::Ipv4),
                2,
                "a route went while the API server was down\n{}",
                bed.explain()
            );
            assert!(
                bed.bird.session_established(),
                "the session dropped\n{}",
                bed.explain()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let api = ApiServer::start_with(store, addr)
            .await
            .expect("restart the API server");
        let client = api.client();
        cluster::create_served(
            &client,
            &lb_service("c", "198.18.0.42", false),
            "node0",
            "10.244.0.7",
        )
        .await;
        eventually!(
            Duration::from_secs(45),
            "the Service created after the restart is announced",
            bed.bird.route("198.18.0.42/32").is_some(),
            bed.explain()
        );
        assert_eq!(bed.bird.route_count(Family::Ipv4), 3);
        assert!(
            bed.agents[0].log().contains("watch failed"),
            "the outage must be logged\n{}",
            bed.explain()
        );
    });
}

/// 1,000 Services, each with its own VIP and endpoint, all reach BIRD and get their status.
#[test]
fn a_thousand_services_all_reach_bird() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::new(1);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        bed.start_agent(0, api.addr().port(), &[]);
        for i in 0..1000u32 {
            let (name, vip) = (
                format!("svc-{i}"),
                format!("198.18.{}.{}", 100 + i / 250, 1 + i % 250),
            );
            cluster::create_service(&client, &lb_service(&name, &vip, false)).await;
            cluster::put_slice(
                &client,
                &slice(
                    &name,
                    &format!("{name}-1"),
                    &[Ep::ready("10.244.0.5", "node0")],
                ),
            )
            .await;
        }
        eventually!(
            Duration::from_secs(60),
            "BIRD holds 1,000 routes",
            bed.bird.route_count(Family::Ipv4) == 1000,
            bed.explain()
        );
        assert_eq!(bed.hops("198.18.103.250/32"), ips(&["10.99.0.1"]));
        eventually!(
            SOON,
            "the last Service has its status",
            cluster::ingress(&client, "svc-999").await == ["198.18.103.250"],
            bed.explain()
        );
    });
}

/// `bgp_attach_ip_to_interface`: the VIP is on `lo` (marked with `IFA_PROTO` 118) while announced and
/// removed when withdrawn; an address someone else put there is never removed; after a crash the
/// next vipd adopts what the last one added, removes what is no longer wanted, and SIGTERM
/// removes the rest.
#[test]
fn attached_addresses_follow_the_routes_and_survive_restarts_without_leaks() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::new(1);
    let (tor, node) = (bed.topo.tor.clone(), bed.topo.node.clone());
    let lo = |ns: &str| ns_stdout(ns, &["ip", "-o", "address", "show", "dev", "lo"]);
    let has = |ns: &str, vip: &str| lo(ns).lines().any(|l| l.contains(&format!(" {vip}/")));
    let ours = |ns: &str, vip: &str| {
        cluster::addresses_with_proto(ns, "lo")
            .contains(&(ip(vip), Some(vipd::netlink::ADDRESS_PROTO)))
    };
    support::run_ok(
        "ip",
        &["-n", &node, "address", "add", "198.18.0.59/32", "dev", "lo"],
    );
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let port = api.addr().port();
        cluster::create_node(&client, "node0").await;
        let attach = [("bgp_attach_ip_to_interface", "true")];
        bed.start_agent(0, port, &attach);
        for (name, vip) in [
            ("a", "198.18.0.50"),
            ("b", "198.18.0.51"),
            ("foreign", "198.18.0.59"),
        ] {
            cluster::create_service(&client, &lb_service(name, vip, false)).await;
            cluster::put_slice(
                &client,
                &slice(
                    name,
                    &format!("{name}-1"),
                    &[Ep::ready("10.244.0.5", "node0")],
                ),
            )
            .await;
        }
        eventually!(
            UP,
            "three routes in BIRD",
            bed.bird.route_count(Family::Ipv4) == 3,
            bed.explain()
        );
        eventually!(
            SOON,
            "a and b are on lo as vipd's",
            ours(&node, "198.18.0.50") && ours(&node, "198.18.0.51"),
            format!("{}\n{}", lo(&node), bed.explain())
        );
        assert!(
            !ours(&node, "198.18.0.59"),
            "an address that was there before is not vipd's"
        );

        cluster::put_slice(&client, &slice("foreign", "foreign-1", &[])).await;
        cluster::put_slice(&client, &slice("b", "b-1", &[])).await;
        eventually!(
            SOON,
            "b is withdrawn and its address removed",
            bed.bird.route("198.18.0.51/32").is_none() && !has(&node, "198.18.0.51"),
            lo(&node)
        );
        assert!(
            has(&node, "198.18.0.59"),
            "the foreign address must stay\n{}",
            lo(&node)
        );

        // A crash: no Cease, no cleanup. While down, a's endpoints go.
        assert!(bed.agents[0].kill(), "vipd was running");
        cluster::put_slice(&client, &slice("a", "a-1", &[])).await;
        assert!(
            ours(&node, "198.18.0.50"),
            "a crash leaves the address\n{}",
            lo(&node)
        );
        cluster::put_slice(
            &client,
            &slice("b", "b-1", &[Ep::ready("10.244.0.5", "node0")]),
        )
        .await;
        bed.agents.clear();
        bed.start_agent(0, port, &attach);
        eventually!(
            UP,
            "the new vipd removes a's orphan and adds b",
            !has(&node, "198.18.0.50") && ours(&node, "198.18.0.51"),
            lo(&node)
        );
        eventually!(
            SOON,
            "BIRD holds only b",
            bed.hops("198.18.0.51/32") == ips(&["10.99.0.1"])
                && bed.bird.route_count(Family::Ipv4) == 1,
            bed.explain()
        );

        bed.agents[0].terminate();
        let status = bed.agents[0].wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "vipd exits 0 on SIGTERM: {status:?}\n{}",
            bed.explain()
        );
        assert!(
            !has(&node, "198.18.0.51"),
            "SIGTERM removes vipd's addresses\n{}",
            lo(&node)
        );
        assert!(has(&node, "198.18.0.59"), "and only vipd's\n{}", lo(&node));
        eventually!(
            SOON,
            "BIRD's table is empty",
            bed.bird.route_count(Family::Ipv4) == 0,
            bed.explain()
        );
    });
}

/// `svc_election` in BGP mode, as kube-vip means it: one node announces each Service (the
/// holder of its Lease `kubevip-<name>`), says so in `kube-vip.io/vipHost` and (with
/// `enable_node_labeling`) in its Node's label `service-provided.kube-vip.io/web.default`, and
/// when that node dies the other one takes the route over; stopped, it removes its label.
#[test]
fn with_svc_election_one_node_announces_each_service_and_another_takes_over() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::new(2);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        for n in ["node0", "node1"] {
            cluster::create_node(&client, n).await;
        }
        let election = [
            ("svc_election", "true"),
            ("vip_leaseduration", "3"),
            ("vip_renewdeadline", "2"),
            ("vip_retryperiod", "0.5"),
            ("enable_node_labeling", "true"),
        ];
        bed.start_agent(0, api.addr().port(), &election);
        bed.start_agent(1, api.addr().port(), &election);
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.40", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        eventually!(
            UP,
            "one path to 198.18.0.40/32",
            bed.hops("198.18.0.40/32").len() == 1,
            bed.explain()
        );
        // Never two paths: the other node stands for the Lease but does not announce.
        for _ in 0..20 {
            assert_eq!(bed.hops("198.18.0.40/32").len(), 1, "{}", bed.explain());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let hop = bed.hops("198.18.0.40/32")[0];
        let leader = if hop == ip("10.99.0.1") { 0 } else { 1 };
        let holder = cluster::lease_holder(&client, "default", "kubevip-web").await;
        assert_eq!(holder.as_deref(), Some(format!("node{leader}").as_str()));
        eventually!(
            SOON,
            format!("kube-vip.io/vipHost is node{leader}"),
            cluster::annotation(&client, "web", "kube-vip.io/vipHost")
                .await
                .as_deref()
                == Some(format!("node{leader}").as_str()),
            bed.explain()
        );
        assert_eq!(cluster::ingress(&client, "web").await, ["198.18.0.40"]);
        const LABEL: &str = "service-provided.kube-vip.io/web.default";
        let label = |node: usize| {
            let client = client.clone();
            async move {
                cluster::node_labels(&client, &format!("node{node}"))
                    .await
                    .get(LABEL)
                    .cloned()
            }
        };
        eventually!(
            SOON,
            format!("node{leader} is labelled {LABEL}=198.18.0.40"),
            label(leader).await.as_deref() == Some("198.18.0.40"),
            bed.explain()
        );
        assert_eq!(label(1 - leader).await, None, "only the elected node");

        assert!(bed.agents[leader].kill());
        let other = ip(["10.99.0.1", "10.99.1.1"][1 - leader]);
        eventually!(
            UP,
            "the other node announces 198.18.0.40/32",
            bed.hops("198.18.0.40/32") == [other],
            bed.explain()
        );
        eventually!(
            SOON,
            format!("kube-vip.io/vipHost is node{}", 1 - leader),
            cluster::annotation(&client, "web", "kube-vip.io/vipHost")
                .await
                .as_deref()
                == Some(format!("node{}", 1 - leader).as_str()),
            bed.explain()
        );
        eventually!(
            SOON,
            format!("node{} is labelled", 1 - leader),
            label(1 - leader).await.as_deref() == Some("198.18.0.40"),
            bed.explain()
        );
        // A graceful stop takes the label off (a killed node could not).
        bed.agents[1 - leader].terminate();
        eventually!(
            SOON,
            format!("node{}'s label is gone after SIGTERM", 1 - leader),
            label(1 - leader).await.is_none(),
            bed.explain()
        );
    });
}

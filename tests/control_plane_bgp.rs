//! The control-plane VIP (`cp_enable`) by BGP, end to end: the real `vipd manager` on node
//! namespaces peering with BIRD 2, each node with a stand-in for its kube-apiserver (TLS
//! `/livez`, certificate from a test CA). What is checked is what an operator would: BIRD's
//! next hops for the VIP, the VIP's address on the node, and — hybrid — a Service's VIP over
//! the same session. Root, BIRD and openssl needed; skipped loudly otherwise.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use support::bed::BirdBed as Bed;
use support::bird::Bird;
use support::cluster::in_netns;
use support::frr::Frr;
use support::livez::{Livez, Pki};
use support::netns::Topology;
use support::router::{Router, RouterConfig, ROUTER_AS, VIPD_AS};
use support::vipd::Vipd;
use support::{ns_stdout, wait_until_or_explain, VIPD_NEEDS};

const CP_VIP: &str = "198.18.0.100";
const CP_PREFIX: &str = "198.18.0.100/32";
const UP: Duration = Duration::from_secs(20);
/// period 1 s × threshold 2, the check's timeout, one more second.
const WITHDRAWN: Duration = Duration::from_secs(4);
/// With leader election, after the holder released the Lease: the next node reads it (every
/// 0.5 s), takes it after its stagger (< 0.5 s), and its UPDATE reaches BIRD.
const LEASE_TAKEOVER: Duration = Duration::from_secs(2);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn node_ip(i: usize) -> IpAddr {
    ip(&Topology::node_v4(i))
}

/// The control-plane settings of node `i`, kube-vip's names, the check verified against `ca`.
fn cp_env(i: usize, ca: &std::path::Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("bgp_enable", "true".to_owned()),
        ("bgp_as", VIPD_AS.to_string()),
        ("bgp_routerid", Topology::node_v4(i)),
        (
            "bgp_peers",
            format!("{}:{ROUTER_AS}::false", Topology::tor_v4(i)),
        ),
        ("bgp_hold_time", "9".to_owned()),
        ("cp_enable", "true".to_owned()),
        ("vip_address", CP_VIP.to_owned()),
        ("vip_interface", "lo".to_owned()),
        ("control_plane_health_check_period_seconds", "1".to_owned()),
        ("control_plane_health_check_timeout_seconds", "1".to_owned()),
        (
            "control_plane_health_check_failure_threshold",
            "2".to_owned(),
        ),
        (
            "control_plane_health_check_ca_path",
            ca.display().to_string(),
        ),
        ("RUST_LOG", "vipd=debug,info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn has_vip(ns: &str) -> bool {
    ns_stdout(ns, &["ip", "-4", "-o", "address", "show", "dev", "lo"])
        .contains(&format!("{CP_VIP}/32"))
}

/// Three control-plane nodes: the two whose API server passes its check (TLS verified against
/// the cluster CA) announce the VIP, ECMP at BIRD, with its address on their loopback; the third,
/// whose certificate another CA issued, never does. The first node's API server dies: its next
/// hop goes within period × threshold + 1 s while the other stays; it comes back, and so does
/// the next hop. A SIGTERM takes the VIP's address off the node.
#[test]
fn each_node_whose_api_server_is_healthy_announces_the_control_plane_vip() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS, support::livez::NEEDS);
    let bed = Bed::new(3);
    healthy_nodes_announce(&bed.topo, &|p| bed.hops(p), &|agents| {
        bed.explain_with(&agents.iter().collect::<Vec<_>>())
    });
}

/// The same with FRR as the ToR: bgpd holds one path per healthy node.
#[test]
fn with_frr_each_node_whose_api_server_is_healthy_announces_the_control_plane_vip() {
    skip_unless!(root, Frr::NEEDS, VIPD_NEEDS, support::livez::NEEDS);
    let topo = Topology::with_nodes(3);
    let mut frr = Frr::new(&topo, RouterConfig::nodes(3));
    frr.start();
    healthy_nodes_announce(&topo, &|p| frr.next_hops(p), &|agents| {
        let mut s = format!("---- frr ----\n{}", frr.log_tail());
        for (i, a) in agents.iter().enumerate() {
            s.push_str(&format!("\n---- vipd agent {i} ----\n{}", a.log_tail()));
        }
        s
    });
}

fn healthy_nodes_announce(
    topo: &Topology,
    hops: &dyn Fn(&str) -> Vec<IpAddr>,
    router_log: &dyn Fn(&[Vipd]) -> String,
) {
    let cluster_ca = Pki::new("cluster-ca");
    let other_ca = Pki::new("another-ca");
    let mut servers: Vec<Livez> = (0..3)
        .map(|i| {
            let pki = if i < 2 { &cluster_ca } else { &other_ca };
            let mut s = Livez::new(&topo.nodes[i], 6443, pki);
            s.start();
            s
        })
        .collect();
    let mut agents: Vec<Vipd> = (0..3)
        .map(|i| {
            let mut a = Vipd::with_env(topo, i, cp_env(i, &cluster_ca.ca, &[]));
            a.start();
            a
        })
        .collect();
    let explain = |agents: &[Vipd], servers: &[Livez]| {
        let mut s = router_log(agents);
        for (i, l) in servers.iter().enumerate() {
            s.push_str(&format!("\n---- livez {i} ----\n{}", l.log_tail()));
        }
        s
    };
    wait_until_or_explain(
        UP,
        "the router has the control-plane VIP from node0 and node1",
        || hops(CP_PREFIX) == [node_ip(0), node_ip(1)],
        || explain(&agents, &servers),
    );
    assert!(has_vip(&topo.nodes[0]) && has_vip(&topo.nodes[1]));
    assert!(
        !has_vip(&topo.nodes[2]),
        "node2's API server is not trusted"
    );
    assert!(
        agents[2].log().contains("UnknownIssuer"),
        "node2 says why: {}",
        agents[2].log_tail()
    );

    servers[0].kill();
    let gone = Instant::now();
    wait_until_or_explain(
        WITHDRAWN + Duration::from_secs(2),
        "node0's next hop is withdrawn",
        || hops(CP_PREFIX) == [node_ip(1)],
        || explain(&agents, &servers),
    );
    let took = gone.elapsed();
    assert!(took <= WITHDRAWN, "withdrawn after {took:?}");

    servers[0].start();
    wait_until_or_explain(
        UP,
        "node0 announces again",
        || hops(CP_PREFIX) == [node_ip(0), node_ip(1)],
        || explain(&agents, &servers),
    );

    agents[1].terminate();
    assert!(agents[1].wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        !has_vip(&topo.nodes[1]),
        "the address goes with a graceful stop"
    );
    wait_until_or_explain(
        Duration::from_secs(5),
        "only node0 is left",
        || hops(CP_PREFIX) == [node_ip(0)],
        || explain(&agents, &servers),
    );
}

/// Hybrid: one agent serves the control-plane VIP and a Service's VIP over the same BGP
/// session; the API server dying withdraws only the control-plane VIP.
#[test]
fn hybrid_one_agent_announces_the_control_plane_vip_and_services_over_one_session() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS, support::livez::NEEDS);
    let mut bed = Bed::new(1);
    let pki = Pki::new("cluster-ca");
    let mut server = Livez::new(&bed.node(0), 6443, &pki);
    server.start();
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let (api, _client) = bed.cluster(&[("web", "198.18.0.10", true)]).await;
        let ca = pki.ca.display().to_string();
        bed.start_agent(
            0,
            api.addr().port(),
            &[
                ("cp_enable", "true"),
                ("vip_address", CP_VIP),
                ("control_plane_health_check_period_seconds", "1"),
                ("control_plane_health_check_failure_threshold", "2"),
                ("control_plane_health_check_ca_path", &ca),
            ],
        );
        eventually!(
            UP,
            "BIRD has both VIPs from node0",
            bed.hops(CP_PREFIX) == [node_ip(0)] && bed.hops("198.18.0.10/32") == [node_ip(0)],
            bed.explain()
        );
        // The node has one session (BIRD's one protocol for it): it carries both.
        assert!(bed.bird.protocol_established(0));
        assert!(
            has_vip(&bed.node(0)),
            "the control-plane VIP's address is on lo"
        );
        assert!(
            !ns_stdout(&bed.node(0), &["ip", "-o", "address", "show", "dev", "lo"])
                .contains("198.18.0.10/32"),
            "the Service's VIP gets no address without bgp_attach_ip_to_interface"
        );

        server.kill();
        eventually!(
            WITHDRAWN + Duration::from_secs(2),
            "the control-plane VIP is withdrawn",
            bed.hops(CP_PREFIX).is_empty(),
            bed.explain()
        );
        assert_eq!(
            bed.hops("198.18.0.10/32"),
            [node_ip(0)],
            "the Service stays"
        );
    });
}

/// Bootstrap, as under `kubeadm init`: the agent starts before its API server (started 5 s
/// later). Nothing is announced for an API server that is not there; once it answers, the VIP
/// comes up and stays up through the start.
#[test]
fn an_agent_started_before_its_api_server_announces_once_it_answers_and_keeps_it() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS, support::livez::NEEDS);
    let bed = Bed::new(1);
    let pki = Pki::new("cluster-ca");
    let mut agent = Vipd::with_env(&bed.topo, 0, cp_env(0, &pki.ca, &[]));
    agent.start();
    let explain = |agent: &Vipd| bed.explain_with(&[agent]);
    wait_until_or_explain(
        UP,
        "the session is up",
        || bed.bird.protocol_established(0),
        || explain(&agent),
    );
    support::holds_for(
        Duration::from_secs(5),
        "nothing is announced while no API server answers",
        || bed.hops(CP_PREFIX).is_empty() && !has_vip(&bed.node(0)),
        || explain(&agent),
    );
    let mut server = Livez::new(&bed.node(0), 6443, &pki);
    server.start();
    wait_until_or_explain(
        Duration::from_secs(5),
        "the VIP is announced once the API server answers",
        || bed.hops(CP_PREFIX) == [node_ip(0)],
        || explain(&agent),
    );
    assert!(has_vip(&bed.node(0)));
    support::holds_for(
        Duration::from_secs(5),
        "the VIP stays announced",
        || bed.hops(CP_PREFIX) == [node_ip(0)],
        || explain(&agent),
    );
    assert!(
        agent.log().contains("not announcing the control-plane VIP"),
        "the wait is explained: {}",
        agent.log_tail()
    );
}

/// `vip_leaderelection=true` (kube-vip's BGP control plane with leader election): the holder of
/// the Lease `kube-system/plndr-cp-lock` alone announces the VIP, so BIRD has one next hop at a
/// time. The holder's API server stops: it stands down and releases the Lease within period ×
/// threshold, and another healthy node announces within the lease duration after that; the
/// Node of the announcing node carries `kube-vip.io/has-ip`. No agent reads any Service.
#[test]
fn with_leader_election_only_the_holder_of_the_lease_announces_the_control_plane_vip() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS, support::livez::NEEDS);
    let bed = Bed::new(3);
    let pki = Pki::new("cluster-ca");
    let mut servers: Vec<Livez> = (0..3)
        .map(|i| {
            let mut s = Livez::new(&bed.node(i), 6443, &pki);
            s.start();
            s
        })
        .collect();
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let api = support::cluster::api_server().await;
        let client = api.client();
        // Only what an elected control-plane VIP needs: its Lease and its own Node (for
        // kube-vip.io/has-ip). A Service read would be refused, and counted.
        api.create_manifest(CP_ONLY_RBAC).expect("RBAC");
        let token = api.token("kube-system", "vipd-cp");
        let mut agents = Vec::new();
        for i in 0..3 {
            support::cluster::create_node(&client, &format!("node{i}")).await;
            let kubeconfig = bed.kubeconfig_as(i, api.addr().port(), &token);
            let kubeconfig = kubeconfig.display().to_string();
            let name = format!("node{i}");
            let extra = [
                ("vip_leaderelection", "true"),
                ("vip_nodename", name.as_str()),
                ("k8s_config_file", kubeconfig.as_str()),
                ("vip_leaseduration", "3"),
                ("vip_renewdeadline", "2"),
                ("vip_retryperiod", "0.5"),
            ];
            let mut a = Vipd::with_env(&bed.topo, i, cp_env(i, &pki.ca, &extra));
            a.start();
            agents.push(a);
        }
        let explain = |agents: &[Vipd]| bed.explain_with(&agents.iter().collect::<Vec<_>>());
        let holder = || async {
            let lease = kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
                client.clone(),
                "kube-system",
            )
            .get_opt("plndr-cp-lock")
            .await
            .ok()??;
            lease.spec?.holder_identity.filter(|h| !h.is_empty())
        };
        eventually!(
            UP,
            "BIRD has the VIP from exactly one node, the Lease's holder",
            {
                let hops = bed.hops(CP_PREFIX);
                let lease = holder().await;
                hops.len() == 1
                    && lease.is_some_and(|h| hops[0] == node_ip(h[4..].parse().unwrap()))
            },
            explain(&agents)
        );
        let first = holder().await.unwrap();
        let old: usize = first[4..].parse().unwrap();
        support::holds_for(
            Duration::from_secs(3),
            "one next hop at a time, the holder's",
            || bed.hops(CP_PREFIX) == [node_ip(old)],
            || explain(&agents),
        );
        for i in 0..3 {
            assert_eq!(
                has_vip(&bed.node(i)),
                i == old,
                "the address only on the holder"
            );
        }
        let labels = kube::Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
            .get(&first)
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap_or_default();
        assert_eq!(
            labels.get("kube-vip.io/has-ip").map(String::as_str),
            Some(CP_VIP)
        );

        servers[old].kill();
        let gone = Instant::now();
        eventually!(
            WITHDRAWN + LEASE_TAKEOVER,
            "another healthy node announces the VIP alone",
            {
                let hops = bed.hops(CP_PREFIX);
                hops.len() == 1 && hops[0] != node_ip(old)
            },
            explain(&agents)
        );
        let took = gone.elapsed();
        eprintln!("==== the VIP moved from node{old} in {took:?} ====");
        assert!(took <= WITHDRAWN + LEASE_TAKEOVER, "moved after {took:?}");
        assert!(
            !has_vip(&bed.node(old)),
            "the old holder took its address off"
        );
        let now = holder().await.unwrap();
        assert_ne!(now, first, "the Lease moved with it");
        assert_eq!(
            api.refused(),
            Vec::<String>::new(),
            "nothing beyond Leases and Nodes was asked for"
        );
    });
}

const CP_ONLY_RBAC: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: vipd-cp, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: vipd-cp}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch, patch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vipd-cp}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: vipd-cp}
subjects:
- {kind: ServiceAccount, name: vipd-cp, namespace: kube-system}
"#;

//! Built-in address allocation (`lb_ipam=true`) end to end: two agents on two nodes contend for
//! the Lease `vipd-ipam`; Services are created without addresses, one per second; the leader is
//! killed mid-run. Every Service ends with one distinct address from the ConfigMap's pool and is
//! announced (BIRD's table) without any manual step. Root and BIRD needed; skipped loudly
//! otherwise.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::PostParams;
use kube::Api;
use support::bird::Bird;
use support::cluster::{self, in_netns};
use support::netns::Topology;
use support::rbac::{self, Grant};
use support::router::{Family, Router, RouterConfig};
use support::vipd::Vipd;
use support::VIPD_NEEDS;

const N: usize = 8;

#[test]
fn two_agents_allocate_distinct_addresses_across_a_leader_crash() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let topo = Topology::with_nodes(2);
    let mut bird = Bird::new(&topo, RouterConfig::nodes(2));
    bird.start();
    let dir = tempfile::tempdir().unwrap();
    let tor = topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let _ = Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": "kube-system"}}))
                    .unwrap(),
            )
            .await;
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubevip", "namespace": "kube-system"},
            "data": {"cidr-global": "198.18.10.0/28"}
        }))
        .unwrap();
        Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        let mut agents = Vec::new();
        for i in 0..2 {
            cluster::create_node(&client, &format!("node{i}")).await;
            // vipd's own ClusterRole with --ipam suffices (checked at the end).
            let token = rbac::grant(&api, IPAM_GRANT);
            let kubeconfig =
                cluster::node_kubeconfig_as(dir.path(), i, api.addr().port(), Some(&token));
            let mut agent = Vipd::services(&topo, i, &kubeconfig, &[("lb_ipam", "true")]);
            agent.start();
            agents.push(agent);
        }
        let explain = |agents: &[Vipd]| {
            agents
                .iter()
                .enumerate()
                .map(|(i, a)| format!("---- agent {i} ----\n{}\n", a.log_tail()))
                .collect::<String>()
        };
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let mut killed = None;
        for i in 0..N {
            let mut svc = cluster::lb_service(&format!("svc-{i}"), "", false);
            let annotations = svc
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            annotations.clear();
            annotations.insert(
                "kube-vip.io/allow-reconcile-without-endpoints".into(),
                "true".into(),
            );
            services.create(&PostParams::default(), &svc).await.unwrap();
            if i == N / 2 {
                let holder = leases
                    .get("vipd-ipam")
                    .await
                    .ok()
                    .and_then(|l| l.spec?.holder_identity);
                let holder = holder.expect("a leader holds vipd-ipam by now");
                let index: usize = holder
                    .trim_start_matches("node")
                    .parse()
                    .expect("holder is nodeN");
                assert!(agents[index].kill(), "the leader was running");
                killed = Some(index);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let killed = killed.unwrap();
        let survivor = 1 - killed;
        let mut addresses: Vec<String>;
        eventually!(
            Duration::from_secs(60),
            format!("all {N} Services have an address"),
            {
                addresses = services
                    .list(&Default::default())
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .filter_map(|s| {
                        s.metadata
                            .annotations
                            .as_ref()?
                            .get("kube-vip.io/loadbalancerIPs")
                            .cloned()
                    })
                    .filter(|a| !a.is_empty())
                    .collect();
                addresses.len() == N
            },
            explain(&agents)
        );
        let distinct: BTreeSet<&String> = addresses.iter().collect();
        assert_eq!(
            distinct.len(),
            N,
            "one distinct address per Service: {addresses:?}"
        );
        let pool: ipnet::IpNet = "198.18.10.0/28".parse().unwrap();
        for a in &addresses {
            assert!(
                pool.contains(&a.parse::<IpAddr>().unwrap()),
                "{a} is outside the pool"
            );
        }
        let holder = leases
            .get("vipd-ipam")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity;
        assert_eq!(
            holder.as_deref(),
            Some(format!("node{survivor}").as_str()),
            "the survivor took over"
        );
        eventually!(
            Duration::from_secs(30),
            format!("BIRD holds all {N} VIPs from the surviving node"),
            {
                bird.route_count(Family::Ipv4) == N
                    && addresses.iter().all(|a| {
                        bird.next_hops(&format!("{a}/32"))
                            == vec![Topology::node_v4(survivor).parse::<IpAddr>().unwrap()]
                    })
            },
            explain(&agents)
        );
        rbac::assert_refusals(&api, IPAM_GRANT, 0, &explain(&agents));
    });
}

/// vipd's ClusterRole for BGP services mode with the allocator, as `vipd manifest rbac` prints it.
const IPAM_GRANT: Grant = Grant::Vipd(&["--services", "--bgp", "--ipam"]);

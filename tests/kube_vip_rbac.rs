//! vipd under kube-vip's own RBAC: an existing kube-vip install whose image is swapped keeps
//! kube-vip's ServiceAccount and ClusterRole, which grant `update` but never `patch` on
//! `services` and `services/status`, and nothing on `events`. The in-repo API server enforces
//! RBAC for the agent's ServiceAccount token as kube-apiserver does; the agents are the real
//! `vipd manager` binary. What a user checks: the route in BIRD, the VIP on the node, the
//! Service's `status.loadBalancer.ingress` and `kube-vip.io/vipHost`; and what the API server
//! saw: a refused request is not asked again and again.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::time::Duration;

use fake_apiserver::ApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use support::bed::BirdBed;
use support::bird::Bird;
use support::cluster::{self, in_netns, lb_service};
use support::lan::{vip_on, Lan};
use support::netns::Topology;
use support::rbac::{
    assert_refusals, Grant, KUBE_VIP_MANIFEST_RBAC, KUBE_VIP_SA, KUBE_VIP_WEBSITE,
};
use support::router::Router;
use support::vipd::Vipd;
use support::VIPD_NEEDS;

const UP: Duration = Duration::from_secs(20);

/// A kube client that authenticates with `token`, built from a kubeconfig as vipd builds one.
async fn client_as(api: &ApiServer, token: &str) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&api.kubeconfig_with_token(token)).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

fn code<T: std::fmt::Debug>(r: kube::Result<T>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(kube::Error::Api(e)) => e.code,
        Err(e) => panic!("not an API answer: {e}"),
    }
}

/// Both forms of kube-vip's RBAC, created as an operator would, grant exactly what kube-vip
/// uses: update but not patch on Services and their status, Leases, no Events.
#[tokio::test]
async fn kube_vips_cluster_role_grants_update_but_not_patch_and_no_events() {
    for manifest in [KUBE_VIP_WEBSITE, KUBE_VIP_MANIFEST_RBAC] {
        let api = cluster::api_server().await;
        let created = api.create_manifest(manifest).expect("kube-vip's RBAC");
        assert_eq!(
            created,
            [
                "serviceaccount/kube-vip",
                "clusterrole/system:kube-vip-role",
                "clusterrolebinding/system:kube-vip-binding"
            ]
        );
        cluster::create_service(&api.client(), &lb_service("web", "198.18.0.10", false)).await;
        let token = api.token(KUBE_VIP_SA.0, KUBE_VIP_SA.1);
        let client = client_as(&api, &token).await;
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let web = services.get("web").await.expect("get is granted");
        let pp = PostParams::default();
        assert_eq!(code(services.replace_status("web", &pp, &web).await), 200);
        assert_eq!(code(services.replace("web", &pp, &web).await), 200);
        let merge = Patch::Merge(serde_json::json!({"metadata": {"annotations": {"a": "b"}}}));
        let patched = services.patch("web", &PatchParams::default(), &merge).await;
        assert_eq!(code(patched), 403);
        let patched = services
            .patch_status("web", &PatchParams::default(), &merge)
            .await;
        assert_eq!(code(patched), 403);
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
        let lease: Lease =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "plndr-svcs-lock"}}))
                .unwrap();
        assert_eq!(code(leases.create(&pp, &lease).await), 200);
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, "default");
        let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "e"}, "eventTime": "2026-01-01T00:00:00.000000Z"}),
        )
        .unwrap();
        assert_eq!(code(events.create(&pp, &event).await), 403);
    }
}

/// BGP mode (kube-vip's environment: BGP peers, services) with kube-vip's ServiceAccount: the
/// Service is announced and gets its ingress; the refused patch is asked once, then writes go by
/// get + update; a second Service adds no refusal.
#[test]
fn bgp_mode_under_kube_vips_cluster_role_writes_status_and_asks_nothing_forbidden_twice() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let bed = BirdBed::new(1);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let (api, client) = bed.cluster(&[("web", "198.18.0.10", true)]).await;
        api.create_manifest(KUBE_VIP_WEBSITE)
            .expect("kube-vip's RBAC");
        let token = api.token(KUBE_VIP_SA.0, KUBE_VIP_SA.1);
        let kubeconfig = bed.kubeconfig_as(0, api.addr().port(), &token);
        let mut agent = Vipd::services(&bed.topo, 0, &kubeconfig, &[]);
        agent.start();
        let explain = || bed.explain_with(&[&agent]);
        eventually!(
            UP,
            "BIRD holds 198.18.0.10/32 via node0",
            !bed.hops("198.18.0.10/32").is_empty(),
            explain()
        );
        eventually!(
            UP,
            "status.loadBalancer.ingress is [198.18.0.10]",
            cluster::ingress(&client, "web").await == ["198.18.0.10"],
            explain()
        );
        assert!(
            agent
                .log_tail()
                .contains("RBAC does not allow patch on services/status"),
            "the agent says once why it writes by update\n{}",
            explain()
        );
        let refused = api.refused();
        assert_refusals(&api, Grant::KubeVip, 1, &explain());

        cluster::create_served(
            &client,
            &lb_service("api", "198.18.0.11", false),
            "node0",
            "10.244.0.6",
        )
        .await;
        eventually!(
            UP,
            "the second Service gets its ingress",
            cluster::ingress(&client, "api").await == ["198.18.0.11"],
            explain()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            api.refused(),
            refused,
            "nothing refused was asked again\n{}",
            explain()
        );
        drop(agent);
    });
}

/// With vipd's own ClusterRole (`vipd manifest rbac` for the mode) nothing is ever refused.
#[test]
fn bgp_mode_under_vipds_own_cluster_role_is_refused_nothing() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let rbac = std::process::Command::new(support::vipd_bin())
        .args(["manifest", "rbac", "--services", "--bgp"])
        .output()
        .expect("vipd manifest rbac");
    assert!(rbac.status.success());
    let rbac = String::from_utf8(rbac.stdout).expect("UTF-8");
    let bed = BirdBed::new(1);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let (api, client) = bed.cluster(&[("web", "198.18.0.10", true)]).await;
        api.create_manifest(&rbac).expect("vipd's RBAC");
        let token = api.token("kube-system", "vipd");
        let kubeconfig = bed.kubeconfig_as(0, api.addr().port(), &token);
        let mut agent = Vipd::services(&bed.topo, 0, &kubeconfig, &[]);
        agent.start();
        let explain = || bed.explain_with(&[&agent]);
        eventually!(
            UP,
            "status.loadBalancer.ingress is [198.18.0.10]",
            cluster::ingress(&client, "web").await == ["198.18.0.10"],
            explain()
        );
        assert!(
            !bed.hops("198.18.0.10/32").is_empty(),
            "announced\n{}",
            explain()
        );
        // A Warning Event (a hostname where an address belongs) is created, not refused.
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let bad = serde_json::json!({"metadata": {"annotations": {"kube-vip.io/loadbalancerIPs": "not-an-ip"}}});
        services
            .patch("web", &PatchParams::default(), &Patch::Merge(bad))
            .await
            .expect("annotate");
        eventually!(
            UP,
            "a Warning Event about the annotation",
            !cluster::event_notes(&client, "UnsupportedLoadBalancerHostname")
                .await
                .is_empty(),
            explain()
        );
        assert_eq!(api.refused(), Vec::<String>::new(), "{}", explain());
        drop(agent);
    });
}

/// ARP mode with `svc_election` (kube-vip's per-Service Leases) under kube-vip's ClusterRole:
/// the elected node holds the VIP, and the Service gets its ingress and `kube-vip.io/vipHost`
/// (a Service write, by get + update).
#[test]
fn arp_mode_with_service_election_under_kube_vips_cluster_role() {
    arp_with_service_election(Grant::KubeVip);
}

/// ARP mode with one Lease for all (kube-vip's `plndr-svcs-lock`, its default) under kube-vip's
/// ClusterRole.
#[test]
fn arp_mode_with_one_lease_for_all_under_kube_vips_cluster_role() {
    arp_mode(Grant::KubeVip, false);
}

/// The same under vipd's own ClusterRole for ARP mode with per-Service election: refused
/// nothing.
#[test]
fn arp_mode_with_service_election_under_vipds_own_cluster_role() {
    arp_with_service_election(Grant::Vipd(&["--services", "--arp", "--servicesElection"]));
}

fn arp_with_service_election(grant: Grant) {
    arp_mode(grant, true);
}

fn arp_mode(grant: Grant, per_service: bool) {
    skip_unless!(root, VIPD_NEEDS);
    const NODES: usize = 2;
    let topo = Topology::with_nodes(NODES);
    let _lan = Lan::new(&topo);
    let dir = tempfile::tempdir().unwrap();
    let tor = topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let token = support::rbac::grant(&api, grant);
        let settings = [
            ("svc_election", if per_service { "true" } else { "false" }),
            ("vip_leaseduration", "3"),
            ("vip_renewdeadline", "2"),
            ("vip_retryperiod", "0.5"),
        ];
        let mut agents = Vec::new();
        for i in 0..NODES {
            cluster::create_node(&client, &format!("node{i}")).await;
            let kubeconfig =
                cluster::node_kubeconfig_as(dir.path(), i, api.addr().port(), Some(&token));
            let mut a = Vipd::arp(&topo, i, &kubeconfig, &settings);
            a.start();
            agents.push(a);
        }
        cluster::create_served(
            &client,
            &lb_service("web", "10.97.0.70", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        let explain = || {
            let mut s = format!("refused: {:#?}", api.refused());
            for (i, a) in agents.iter().enumerate() {
                s.push_str(&format!("\n---- vipd node{i} ----\n{}", a.log_tail()));
            }
            s
        };
        let holder = || (0..NODES).find(|i| vip_on(&topo.nodes[*i], "10.97.0.70"));
        eventually!(
            UP,
            "one node holds 10.97.0.70",
            holder().is_some(),
            explain()
        );
        let node = format!("node{}", holder().unwrap());
        eventually!(
            UP,
            "status.loadBalancer.ingress is [10.97.0.70]",
            cluster::ingress(&client, "web").await == ["10.97.0.70"],
            explain()
        );
        eventually!(
            UP,
            format!("kube-vip.io/vipHost is {node}"),
            cluster::annotation(&client, "web", "kube-vip.io/vipHost")
                .await
                .as_deref()
                == Some(node.as_str()),
            explain()
        );
        assert_refusals(&api, grant, NODES, &explain());
        drop(agents);
    });
}

/// The services guide's Equinix Metal DaemonSet (`kube-vip manifest daemonset --interface
/// bond0 --services --bgp --annotations metal.equinix.com --inCluster`, its environment as
/// kube-vip v1.2.3 writes it) with the image swapped: under kube-vip's ClusterRole the agent
/// reads its peer from its Node's annotations, peers with BIRD and writes the Service's status.
#[test]
fn the_guides_equinix_daemonset_with_the_image_swapped_peers_from_annotations() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube-vip/guide-equinix-annotations-daemonset.yaml");
    let text = std::fs::read_to_string(&fixture).expect("fixture");
    let ds: k8s_openapi::api::apps::v1::DaemonSet =
        serde_saphyr::from_str(&text).expect("the guide's DaemonSet");
    let container = &ds.spec.unwrap().template.spec.unwrap().containers[0];
    let mut env: Vec<(String, String)> = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| match (e.value, e.value_from) {
            (Some(v), _) => (e.name, v),
            // The kubelet fills vip_nodename from spec.nodeName.
            (None, Some(_)) if e.name == "vip_nodename" => (e.name, "node0".into()),
            (None, _) => (e.name, String::new()),
        })
        .collect();
    let topo = Topology::with_nodes(1);
    let mut bird = Bird::new(
        &topo,
        support::router::RouterConfig::ipv4().password("s3cret-md5"),
    );
    bird.start();
    let dir = tempfile::tempdir().unwrap();
    let tor = topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let annotations = cluster::metal_annotations("10.99.0.2", "10.99.0.1", false);
        cluster::create_annotated_node(&client, "node0", annotations).await;
        let token = support::rbac::grant(&api, Grant::KubeVip);
        let kubeconfig =
            cluster::node_kubeconfig_as(dir.path(), 0, api.addr().port(), Some(&token));
        env.push(("k8s_config_file".into(), support::path_str(&kubeconfig)));
        let mut agent = Vipd::with_env(&topo, 0, env.clone());
        agent.start();
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.10", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        eventually!(
            UP,
            "BIRD has the VIP from the annotated session",
            !bird.next_hops("198.18.0.10/32").is_empty(),
            format!("{}\n{}", bird.log_tail(), agent.log_tail())
        );
        eventually!(
            UP,
            "the Service's status names its VIP",
            cluster::ingress(&client, "web").await == ["198.18.0.10"],
            agent.log_tail()
        );
        assert_refusals(&api, Grant::KubeVip, 1, &agent.log_tail());
    });
}

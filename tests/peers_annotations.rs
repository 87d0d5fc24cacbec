//! Peers from node annotations (`annotation=metal.equinix.com`, as the Equinix CCM writes them):
//! vipd in services mode with no static peer reads its Node in the in-process API server, peers
//! with BIRD at the annotated address (multihop between loopbacks, TCP-MD5 from the base64
//! password) and announces a Service's VIP; editing the annotations moves the session to another
//! peer without a restart. Root and BIRD needed; skipped loudly otherwise.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::collections::BTreeMap;
use std::time::Duration;

use fake_apiserver::ApiServer;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use support::bird::Bird;
use support::cluster::{self, in_netns, lb_service};
use support::netns::Topology;
use support::router::{Router, RouterConfig};
use support::vipd::Vipd;
use support::VIPD_NEEDS;

/// The API server (in the calling namespace) with Node `node0` carrying `annotations`.
async fn annotated_node0(annotations: BTreeMap<String, String>) -> (ApiServer, kube::Client) {
    let api = cluster::api_server().await;
    let client = api.client();
    cluster::create_annotated_node(&client, "node0", annotations).await;
    (api, client)
}

#[test]
fn annotated_peers_are_followed_live() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let topo = Topology::with_nodes(1);
    // Neighbor 0: the loopbacks (multihop); neighbor 1: the direct link. Same MD5 password.
    let mut bird = Bird::new(
        &topo,
        RouterConfig::ipv4()
            .multihop()
            .and_direct()
            .password("s3cret-md5"),
    );
    bird.start();
    let dir = tempfile::tempdir().unwrap();
    let tor = topo.tor.clone();
    in_netns(&tor, async {
        let (api, client) = annotated_node0(cluster::metal_annotations(
            "10.99.255.2",
            "10.99.255.1",
            true,
        ))
        .await;
        let kubeconfig = cluster::node_kubeconfig(dir.path(), 0, api.addr().port());
        let mut agent = Vipd::services(
            &topo,
            0,
            &kubeconfig,
            &[
                ("bgp_peers", ""),
                ("bgp_routerid", ""),
                ("annotation", "metal.equinix.com"),
            ],
        );
        agent.start();
        // Before the Node has the annotations' answer the agent is not ready and says why.
        let explain = |agent: &Vipd| {
            format!(
                "---- bird ----\n{}\n---- vipd ----\n{}",
                bird.log_tail(),
                agent.log_tail()
            )
        };
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.10", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        eventually!(
            Duration::from_secs(20),
            "the multihop session to the annotated loopback is up",
            bird.protocol_established(0),
            explain(&agent)
        );
        eventually!(
            Duration::from_secs(10),
            "the VIP arrives with the annotated source as next hop",
            bird.next_hops("198.18.0.10/32")
                == vec!["10.99.255.1".parse::<std::net::IpAddr>().unwrap()],
            explain(&agent)
        );
        assert!(
            !bird.protocol_established(1),
            "no session on the direct link yet"
        );

        let patch = json!({"metadata": {"annotations": cluster::metal_annotations("10.99.0.2", "10.99.0.1", false)}});
        Api::<Node>::all(client.clone())
            .patch("node0", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
        eventually!(
            Duration::from_secs(20),
            "the session moved to the direct peer",
            bird.protocol_established(1) && !bird.protocol_established(0),
            explain(&agent)
        );
        eventually!(
            Duration::from_secs(10),
            "the VIP is now via the direct link",
            bird.next_hops("198.18.0.10/32")
                == vec!["10.99.0.1".parse::<std::net::IpAddr>().unwrap()],
            explain(&agent)
        );
        assert!(agent.is_running(), "no restart");
        assert!(
            !agent.log().contains("s3cret-md5"),
            "the password leaked into the log"
        );
    });
}

/// A node without the annotations yet: the agent starts, is not ready, and says which key it
/// waits for; once the CCM writes them, it peers and becomes ready.
#[test]
fn missing_annotations_keep_the_agent_unready_and_say_which_key() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let topo = Topology::with_nodes(1);
    let mut bird = Bird::new(&topo, RouterConfig::ipv4().password("s3cret-md5"));
    bird.start();
    let dir = tempfile::tempdir().unwrap();
    let tor = topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        let kubeconfig = cluster::node_kubeconfig(dir.path(), 0, api.addr().port());
        let mut agent = Vipd::services(
            &topo,
            0,
            &kubeconfig,
            &[("bgp_peers", ""), ("annotation", "metal.equinix.com")],
        );
        agent.start();
        let mut reply: (u16, String);
        eventually!(
            Duration::from_secs(10),
            "/readyz answers 503 naming the missing key",
            {
                reply = cluster::http_get("10.99.0.1:2112", "/readyz").await;
                reply.0 == 503 && reply.1.contains("metal.equinix.com/")
            },
            format!("{reply:?}\n{}", agent.log_tail())
        );
        assert!(agent.is_running(), "no crash loop while waiting");
        let patch = json!({"metadata": {"annotations": cluster::metal_annotations("10.99.0.2", "10.99.0.1", false)}});
        Api::<Node>::all(client.clone())
            .patch("node0", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
        eventually!(
            Duration::from_secs(20),
            "the session comes up",
            bird.session_established(),
            agent.log_tail()
        );
        eventually!(
            Duration::from_secs(5),
            "ready",
            cluster::http_get("10.99.0.1:2112", "/readyz").await.0 == 200,
            agent.log_tail()
        );
    });
}

/// The install line users copy (`vipd manifest daemonset … --annotations metal.equinix.com
/// --inCluster`): the DaemonSet's environment, exactly as rendered (the downward API's node name
/// filled in as the kubelet would), runs an agent that peers with BIRD from the Node's
/// annotations and announces a Service. The one addition is the kubeconfig, standing in for the
/// in-cluster service account a test has no API server for.
#[test]
fn the_rendered_daemonsets_environment_runs_an_agent_that_peers_and_announces() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args([
            "manifest",
            "daemonset",
            "--interface",
            "veth-tor",
            "--services",
            "--bgp",
            "--annotations",
            "metal.equinix.com",
            "--inCluster",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let ds: k8s_openapi::api::apps::v1::DaemonSet = serde_saphyr::from_multiple(&yaml)
        .unwrap()
        .into_iter()
        .find_map(|doc: serde_json::Value| {
            (doc["kind"] == "DaemonSet").then(|| serde_json::from_value(doc).unwrap())
        })
        .expect("a DaemonSet in the output");
    let container = &ds.spec.unwrap().template.spec.unwrap().containers[0];
    let mut env: Vec<(String, String)> = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let field = e
                .value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            let value = match (e.value, field) {
                (Some(v), _) => v,
                (None, Some("spec.nodeName")) => "node0".into(),
                (None, Some("metadata.namespace")) => "kube-system".into(),
                (None, Some("metadata.name")) => "vipd-abcde".into(),
                (None, other) => panic!("env {} from {other:?}: the test cannot fill it", e.name),
            };
            (e.name, value)
        })
        .collect();

    let topo = Topology::with_nodes(1);
    let mut bird = Bird::new(&topo, RouterConfig::ipv4().password("s3cret-md5"));
    bird.start();
    let dir = tempfile::tempdir().unwrap();
    let tor = topo.tor.clone();
    in_netns(&tor, async {
        let (api, client) =
            annotated_node0(cluster::metal_annotations("10.99.0.2", "10.99.0.1", false)).await;
        let kubeconfig = cluster::node_kubeconfig(dir.path(), 0, api.addr().port());
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
            Duration::from_secs(20),
            "BIRD has the VIP from the annotated session",
            bird.next_hops("198.18.0.10/32")
                == vec!["10.99.0.1".parse::<std::net::IpAddr>().unwrap()],
            format!("env {env:?}\n{}\n{}", bird.log_tail(), agent.log_tail())
        );
        // The status is written after the route is handed to the speaker, not before.
        eventually!(
            Duration::from_secs(5),
            "the Service's status names its VIP",
            cluster::ingress(&client, "web").await == vec!["198.18.0.10".to_string()],
            agent.log_tail()
        );
        // The probes' port is the one the manifest's prometheus_server names.
        assert_eq!(
            cluster::http_get("10.99.0.1:2112", "/readyz").await.0,
            200,
            "{}",
            agent.log_tail()
        );
    });
}

//! UPnP in services mode, end to end: the real agent (`vipd manager`, services mode,
//! `enableUPNP=true` in the guide's spelling) on a LAN host behind miniupnpd, vipd's API server on
//! the gateway. A `forwardUPNP` Service's allowed port appears in `upnpc -l` on another LAN host
//! with the VIP as internal client, its refused port (80; miniupnpd allows 1024-65535) becomes a
//! Warning Event naming the gateway's answer; deleting the Service, and SIGTERM, remove mappings.
//! Root and the UPnP packages needed.

#[macro_use]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams};
use kube::Api;
use serde_json::json;
use support::cluster::{self, in_netns, slice, Ep};
use support::daemon::Daemon;
use support::miniupnpd::{UpnpBed, GW_WAN_IP, NEEDS};
use support::{ns_stdout, ns_succeeds, path_str, VIPD_NEEDS};
use vipd::demo::apiserver::ApiServer;

const UP: Duration = Duration::from_secs(30);

fn service(name: &str, vip: &str, ports: &[(i32, &str)]) -> Service {
    let ports: Vec<_> = ports
        .iter()
        .map(|(port, proto)| json!({"name": format!("p{port}"), "port": port, "protocol": proto}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"kube-vip.io/loadbalancerIPs": vip,
                                     "kube-vip.io/forwardUPNP": "true",
                                     "kube-vip.io/upnp-lease-duration": "10m"}},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": ports},
    }))
    .expect("service")
}

/// The agent on the LAN host, services mode with `enableUPNP=true` (the guide's spelling) and
/// `mode` (BGP or ARP settings), reading the API server on the gateway. Started.
fn lan_agent(
    bed: &UpnpBed,
    dir: &std::path::Path,
    api: &ApiServer,
    mode: &[(&str, &str)],
) -> Daemon {
    let kubeconfig = dir.join("kubeconfig");
    cluster::write_kubeconfig(
        &kubeconfig,
        &format!("http://10.96.0.1:{}", api.addr().port()),
    );
    let kubeconfig = path_str(&kubeconfig);
    let env: Vec<(String, String)> = [
        ("svc_enable", "true"),
        ("vip_nodename", "node0"),
        ("enableUPNP", "true"),
        ("k8s_config_file", kubeconfig.as_str()),
        ("RUST_LOG", "vipd=debug,info"),
    ]
    .iter()
    .chain(mode)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut agent = Daemon::new(
        "vipd on the LAN host",
        &bed.lan,
        vec![env!("CARGO_BIN_EXE_vipd").to_string(), "manager".into()],
        dir.join("vipd.log"),
    )
    .with_clean_env(env);
    agent.start();
    agent
}

#[test]
fn forward_upnp_services_are_mapped_refusals_are_events_and_mappings_go_with_them() {
    skip_unless!(root, NEEDS, VIPD_NEEDS);
    let bed = UpnpBed::setup();
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = bed.gw.clone();
    in_netns(&gw, async {
        let api = ApiServer::start("0.0.0.0:0".parse().unwrap())
            .await
            .expect("API server");
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        // BGP towards the gateway, where nothing listens: services mode needs a speaker, and
        // UPnP works without any BGP session.
        let mut agent = lan_agent(
            &bed,
            dir.path(),
            &api,
            &[
                ("bgp_enable", "true"),
                ("bgp_as", "65001"),
                ("bgp_routerid", "10.96.0.2"),
                ("bgp_peers", "10.96.0.1:65000::false"),
            ],
        );
        let explain = |agent: &Daemon| {
            format!(
                "---- upnpc -l ----\n{}\n---- miniupnpd ----\n{}\n---- vipd ----\n{}",
                bed.upnpc_list(),
                bed.miniupnpd.log_tail(20),
                agent.log_tail(40)
            )
        };

        for (name, vip, ports) in [
            ("web", "10.96.0.50", &[(32380, "TCP"), (80, "TCP")][..]),
            ("dns", "10.96.0.51", &[(32353, "UDP")][..]),
        ] {
            cluster::create_service(&client, &service(name, vip, ports)).await;
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
        let mapped = |needle: &str| bed.upnpc_mappings().iter().any(|l| l.contains(needle));
        eventually!(
            UP,
            "upnpc -l lists both Services' mappings with their VIPs",
            mapped("TCP 32380->10.96.0.50:32380 'default/web'")
                && mapped("UDP 32353->10.96.0.51:32353 'default/dns'"),
            explain(&agent)
        );
        eprintln!("upnpc -l:\n{}", bed.upnpc_mappings().join("\n"));
        assert!(!mapped("TCP 80->"), "port 80 is refused");

        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let refusal = || async {
            events
                .list(&ListParams::default())
                .await
                .map(|l| {
                    l.items
                        .into_iter()
                        .filter(|e| e.reason.as_deref() == Some("UPnPFailed"))
                        .filter_map(|e| e.note)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        eventually!(
            UP,
            "a UPnPFailed Warning Event for port 80",
            !refusal().await.is_empty(),
            explain(&agent)
        );
        let notes = refusal().await;
        eprintln!("event: {}", notes[0]);
        assert!(
            notes[0].contains(
                "gateway 10.96.0.1:2189 refused to map TCP 80 -> 10.96.0.50:80 (default/web)"
            ),
            "{notes:?}"
        );

        // The Service goes: its mapping goes, the other stays.
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        services
            .delete("web", &DeleteParams::default())
            .await
            .expect("delete");
        eventually!(
            UP,
            "web's mapping is gone, dns's stays",
            !mapped("TCP 32380->") && mapped("UDP 32353->"),
            explain(&agent)
        );

        // SIGTERM: vipd deletes what it mapped.
        agent.signal("TERM");
        assert!(
            agent.wait_exit(Duration::from_secs(15)).is_some(),
            "{}",
            explain(&agent)
        );
        let left = bed.upnpc_mappings();
        assert!(
            left.is_empty(),
            "left behind: {left:?}\n{}",
            explain(&agent)
        );
    });
}

/// ARP mode: the node that leads the Service's Lease holds the VIP on the LAN and maps its port
/// on the gateway; the gateway reaches the VIP; the status lists the VIP and the gateway's
/// external address; SIGTERM removes the mapping and the address.
#[test]
fn in_arp_mode_the_leader_maps_the_vip_it_holds() {
    skip_unless!(root, NEEDS, VIPD_NEEDS);
    let bed = UpnpBed::setup();
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = bed.gw.clone();
    in_netns(&gw, async {
        let api = ApiServer::start("0.0.0.0:0".parse().unwrap())
            .await
            .expect("API server");
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        let mut agent = lan_agent(
            &bed,
            dir.path(),
            &api,
            &[("vip_arp", "true"), ("vip_interface", "eth-gw")],
        );
        let explain = |agent: &Daemon| {
            format!(
                "---- upnpc -l ----\n{}\n---- miniupnpd ----\n{}\n---- vipd ----\n{}",
                bed.upnpc_list(),
                bed.miniupnpd.log_tail(20),
                agent.log_tail(40)
            )
        };
        cluster::create_service(&client, &service("web", "10.96.0.50", &[(32380, "TCP")])).await;
        cluster::put_slice(
            &client,
            &slice("web", "web-1", &[Ep::ready("10.244.0.5", "node0")]),
        )
        .await;
        let mapped = |needle: &str| bed.upnpc_mappings().iter().any(|l| l.contains(needle));
        eventually!(
            UP,
            "upnpc -l lists the mapping to the VIP the leader holds",
            mapped("TCP 32380->10.96.0.50:32380 'default/web'"),
            explain(&agent)
        );
        assert!(
            ns_succeeds(&bed.gw, &["ping", "-c1", "-W1", "10.96.0.50"]),
            "the gateway reaches the VIP on the LAN\n{}",
            explain(&agent)
        );
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let ingress = || async {
            services
                .get("web")
                .await
                .ok()
                .and_then(|s| s.status?.load_balancer?.ingress)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.ip)
                .collect::<Vec<_>>()
        };
        eventually!(
            UP,
            "the status lists the VIP and the gateway's external address",
            ingress().await == ["10.96.0.50", GW_WAN_IP],
            format!("{:?}\n{}", ingress().await, explain(&agent))
        );
        eprintln!("upnpc -l:\n{}", bed.upnpc_mappings().join("\n"));

        agent.signal("TERM");
        assert!(
            agent.wait_exit(Duration::from_secs(15)).is_some(),
            "{}",
            explain(&agent)
        );
        assert!(
            bed.upnpc_mappings().is_empty(),
            "left behind\n{}",
            explain(&agent)
        );
        assert!(
            !ns_stdout(&bed.lan, &["ip", "-br", "addr", "show", "dev", "eth-gw"])
                .contains("10.96.0.50/"),
            "the VIP left the interface"
        );
    });
}

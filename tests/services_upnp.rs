//! UPnP in services mode, end to end: the real agent (`vipd manager`, services mode,
//! `enableUPNP=true` in the guide's spelling) on a LAN host behind miniupnpd, vipd's API server on
//! the gateway. A `forwardUPNP` Service's allowed port appears in `upnpc -l` on another LAN host
//! with the VIP as internal client, its refused port (80; miniupnpd allows 1024-65535) becomes a
//! Warning Event naming the gateway's answer; deleting the Service, and SIGTERM, remove mappings.
//! With two agents (the second on another LAN host) only the elected node maps; in ARP mode the
//! leader maps the VIP it holds. Root and the UPnP packages needed.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::time::Duration;

use fake_apiserver::ApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::DeleteParams;
use kube::Api;
use serde_json::json;
use support::cluster::{self, in_netns, slice, Ep};
use support::daemon::Daemon;
use support::miniupnpd::{UpnpBed, GW_WAN_IP, NEEDS};
use support::rbac::{self, Grant};
use support::{ns_stdout, ns_succeeds, path_str, VIPD_NEEDS};

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

/// The agent on the LAN host as `node0`: [`agent_on`].
fn lan_agent(
    bed: &UpnpBed,
    dir: &std::path::Path,
    api: &ApiServer,
    mode: &[(&str, &str)],
) -> Daemon {
    agent_on(&bed.lan, "node0", dir, api, mode)
}

/// vipd's role for `mode`: ARP mode writes `vipHost`, BGP mode only status and Leases.
fn grant_for(mode: &[(&str, &str)]) -> Grant<'static> {
    if mode.contains(&("vip_arp", "true")) {
        Grant::Vipd(&["--services", "--arp", "--enableUPNP"])
    } else {
        Grant::Vipd(&["--services", "--bgp", "--enableUPNP"])
    }
}

/// An agent in namespace `ns` as node `node`, services mode with `enableUPNP=true` (the guide's
/// spelling) and `mode` (BGP or ARP settings), reading the API server on the gateway. Started.
fn agent_on(
    ns: &str,
    node: &str,
    dir: &std::path::Path,
    api: &ApiServer,
    mode: &[(&str, &str)],
) -> Daemon {
    // Under vipd's own ClusterRole for the mode, as `vipd manifest rbac` prints it: every
    // UPnP test proves it suffices (assert_refusals at their ends).
    let token = rbac::grant(api, grant_for(mode));
    let kubeconfig = dir.join(format!("{node}.kubeconfig"));
    cluster::write_kubeconfig_as(
        &kubeconfig,
        &format!("http://10.96.0.1:{}", api.addr().port()),
        Some(&token),
    );
    let kubeconfig = path_str(&kubeconfig);
    let env: Vec<(String, String)> = [
        ("svc_enable", "true"),
        ("vip_nodename", node),
        ("enableUPNP", "true"),
        ("k8s_config_file", kubeconfig.as_str()),
        ("RUST_LOG", "vipd=debug,info"),
    ]
    .iter()
    .chain(mode)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let env = support::vipd::shutdown_on_sigterm(env);
    let mut agent = Daemon::new(
        &format!("vipd {node}"),
        ns,
        vec![support::vipd_bin(), "manager".into()],
        dir.join(format!("{node}.log")),
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
        let api = cluster::api_server().await;
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

        let refusal = || cluster::event_notes(&client, "UPnPFailed");
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
        rbac::assert_refusals(&api, grant_for(&[]), 0, &explain(&agent));
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
        let api = cluster::api_server().await;
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
        eventually!(
            UP,
            "the status lists the VIP and the gateway's external address",
            cluster::ingress(&client, "web").await == ["10.96.0.50", GW_WAN_IP],
            format!(
                "{:?}\n{}",
                cluster::ingress(&client, "web").await,
                explain(&agent)
            )
        );
        eprintln!("upnpc -l:\n{}", bed.upnpc_mappings().join("\n"));

        // Bad input gets a Warning Event in ARP mode too, and takes nothing down.
        cluster::create_service(&client, &service("typo", "10.96.0.999", &[(32381, "TCP")])).await;
        eventually!(
            UP,
            "an InvalidLoadBalancerIP Warning Event naming the value",
            cluster::warned(&client, "InvalidLoadBalancerIP", "10.96.0.999").await,
            explain(&agent)
        );
        assert!(mapped("TCP 32380->10.96.0.50:32380 'default/web'"));

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
        rbac::assert_refusals(&api, grant_for(&[("vip_arp", "true")]), 0, "ARP mode");
    });
}

/// BGP mode, two nodes that both pass the Service's gates (externalTrafficPolicy Cluster): only
/// the elected node of `kubevip-web` maps the port (miniupnpd hears AddPortMapping from its
/// address alone). SIGTERM on it deletes the mapping and releases the Lease; the other node
/// takes the Lease and maps the port from its own address.
#[test]
fn in_bgp_mode_only_the_elected_node_maps_and_the_next_one_takes_over() {
    skip_unless!(root, NEEDS, VIPD_NEEDS);
    let bed = UpnpBed::setup();
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = bed.gw.clone();
    in_netns(&gw, async {
        let api = cluster::api_server().await;
        let client = api.client();
        // BGP towards the gateway, where nothing listens; UPnP needs no session.
        let hosts = [(&bed.lan, "10.96.0"), (&bed.obs, "10.96.1")];
        let mut agents = Vec::new();
        for (i, (ns, net)) in hosts.iter().enumerate() {
            let node = format!("node{i}");
            cluster::create_node(&client, &node).await;
            let (id, peer) = (format!("{net}.2"), format!("{net}.1:65000::false"));
            let mode = [
                ("bgp_enable", "true"),
                ("bgp_as", "65001"),
                ("bgp_routerid", id.as_str()),
                ("bgp_peers", peer.as_str()),
                ("vip_leaseduration", "3"),
                ("vip_renewdeadline", "2"),
                ("vip_retryperiod", "0.5"),
            ];
            agents.push(agent_on(ns, &node, dir.path(), &api, &mode));
        }
        let explain = |agents: &[Daemon]| {
            let mut s = format!(
                "---- upnpc -l ----\n{}\n---- miniupnpd ----\n{}",
                bed.upnpc_list(),
                bed.miniupnpd.log_tail(30)
            );
            for (i, a) in agents.iter().enumerate() {
                s.push_str(&format!("\n---- vipd node{i} ----\n{}", a.log_tail(30)));
            }
            s
        };
        cluster::create_service(&client, &service("web", "10.96.0.50", &[(32380, "TCP")])).await;
        cluster::put_slice(
            &client,
            &slice("web", "web-1", &[Ep::ready("10.244.0.5", "node0")]),
        )
        .await;
        let mapped = || {
            bed.upnpc_mappings()
                .iter()
                .any(|l| l.contains("TCP 32380->10.96.0.50:32380 'default/web'"))
        };
        let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
        let holder = || async {
            leases
                .get_opt("kubevip-web")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity)
        };
        eventually!(
            UP,
            "the port is mapped and kubevip-web has a holder",
            mapped() && holder().await.is_some(),
            explain(&agents)
        );
        let leader: usize = holder().await.unwrap()["node".len()..].parse().unwrap();
        let other = 1 - leader;
        let from = |i: usize| format!("{}.2", hosts[i].1);
        // Let a few refresh-free seconds pass: the non-leader must not map meanwhile.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let asked = |i: usize| adds_from(&bed.miniupnpd.log(), &from(i));
        assert!(asked(leader) >= 1, "{}", explain(&agents));
        assert_eq!(
            asked(other),
            0,
            "node{other} does not lead and must not map\n{}",
            explain(&agents)
        );
        eprintln!("node{leader} leads kubevip-web and mapped the port");

        agents[leader].signal("TERM");
        assert!(
            agents[leader].wait_exit(Duration::from_secs(15)).is_some(),
            "{}",
            explain(&agents)
        );
        eventually!(
            UP,
            "the other node holds the Lease and mapped the port from its address",
            holder().await.as_deref() == Some(format!("node{other}").as_str())
                && mapped()
                && asked(other) >= 1,
            explain(&agents)
        );
        eprintln!("node{other} took over the mapping");
        rbac::assert_refusals(&api, grant_for(&[]), 0, &explain(&agents));
    });
}

/// How many AddPortMapping requests miniupnpd's log shows from `ip`: each request is logged as
/// `HTTP REQUEST from [::ffff:10.96.0.2]:37516 : POST …`, then its `SOAPAction: …#Action`.
fn adds_from(log: &str, ip: &str) -> usize {
    let mut client = String::new();
    let mut n = 0;
    for line in log.lines() {
        if let Some(rest) = line.split("HTTP REQUEST from [").nth(1) {
            let addr = rest.split(']').next().unwrap_or_default();
            client = addr.trim_start_matches("::ffff:").to_string();
        } else if line.contains("SOAPAction:") && line.ends_with("#AddPortMapping") {
            n += usize::from(client == ip);
        }
    }
    n
}

#[test]
fn adds_from_counts_add_port_mapping_requests_per_client() {
    let log = "miniupnpd[1]: HTTP REQUEST from [::ffff:10.96.0.2]:1 : POST /ctl/IPConn (HTTP/1.1)\n\
               miniupnpd[1]: SOAPAction: urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\n\
               miniupnpd[1]: HTTP REQUEST from [::ffff:10.96.1.2]:2 : POST /ctl/IPConn (HTTP/1.1)\n\
               miniupnpd[1]: SOAPAction: urn:schemas-upnp-org:service:WANIPConnection:2#GetGenericPortMappingEntry\n";
    assert_eq!(adds_from(log, "10.96.0.2"), 1);
    assert_eq!(adds_from(log, "10.96.1.2"), 0);
}

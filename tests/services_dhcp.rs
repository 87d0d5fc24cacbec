//! DHCP VIPs in services mode, end to end: the real agent (`vipd manager`, services + BGP) on a
//! node, vipd's in-process API server, BIRD and dnsmasq on the tor. A `0.0.0.0` Service gets an
//! address from dnsmasq on a macvlan of the node's link; BIRD learns it, the status shows it, the
//! Service carries `hwaddr` and `requestedIP`; a restarted agent gets the same address; deleting
//! the Service releases the lease and removes the macvlan and the route. Root, BIRD and dnsmasq.
//! In ARP mode (no BGP) the elected node answers for the lease with the Service's MAC.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::net::IpAddr;
use std::time::Duration;

use fake_apiserver::ApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::DeleteParams;
use kube::Api;
use support::bird::Bird;
use support::cluster::{self, in_netns, lb_service, slice, Ep};
use support::dnsmasq::{self, LeaseLine};
use support::lan::{client_neigh, Lan};
use support::netns::Topology;
use support::rbac::{self, Grant};
use support::router::{Router, RouterConfig};
use support::vipd::Vipd;
use support::{ns_stdout, ns_succeeds, run_ok, VIPD_NEEDS};

const UP: Duration = Duration::from_secs(30);
const SOON: Duration = Duration::from_secs(10);

/// vipd's ClusterRole for ARP mode with per-Service election, as `vipd manifest rbac` prints it.
const ARP_GRANT: Grant = Grant::Vipd(&["--services", "--arp", "--servicesElection"]);

fn leased(lines: &[LeaseLine], mac: &str) -> Option<String> {
    lines
        .iter()
        .find(|l| l.mac.eq_ignore_ascii_case(mac))
        .map(|l| l.ip.clone())
}

/// The macvlans in namespace `node`.
fn macvlans(node: &str) -> Vec<String> {
    ns_stdout(node, &["ip", "-o", "link", "show", "type", "macvlan"])
        .lines()
        .filter_map(|l| {
            let name = l.split_whitespace().nth(1)?;
            Some(name.trim_end_matches(':').split('@').next()?.to_string())
        })
        .collect()
}

/// Starts dnsmasq in `ns` on `interface` serving `range` (2-minute leases, `extra` config lines)
/// and waits for it.
fn start_dnsmasq(
    ns: &str,
    dir: &std::path::Path,
    interface: &str,
    range: &str,
    extra: &[&str],
) -> (support::daemon::Daemon, std::path::PathBuf) {
    let conf = dir.join("dnsmasq.conf");
    let lease_file = dir.join("dnsmasq.leases");
    dnsmasq::write_config(&conf, interface, range, "2m", &lease_file, extra);
    let mut daemon = dnsmasq::daemon(ns, &conf, dir.join("dnsmasq.log"));
    dnsmasq::start(&mut daemon, ns);
    (daemon, lease_file)
}

/// The DHCP segment: br-dhcp 10.97.0.1/24 on the tor, a veth `dhcp0` from each node.
fn dhcp_segment(topo: &Topology) {
    let tor = topo.tor.clone();
    run_ok(
        "ip",
        &["-n", &tor, "link", "add", "br-dhcp", "type", "bridge"],
    );
    run_ok(
        "ip",
        &["-n", &tor, "addr", "add", "10.97.0.1/24", "dev", "br-dhcp"],
    );
    run_ok("ip", &["-n", &tor, "link", "set", "br-dhcp", "up"]);
    for (i, ns) in topo.nodes.iter().enumerate() {
        let port = format!("dhcp-n{i}");
        run_ok(
            "ip",
            &[
                "-n", ns, "link", "add", "dhcp0", "type", "veth", "peer", "name", &port, "netns",
                &tor,
            ],
        );
        run_ok(
            "ip",
            &["-n", &tor, "link", "set", &port, "master", "br-dhcp", "up"],
        );
        run_ok("ip", &["-n", ns, "link", "set", "dhcp0", "up"]);
    }
}

/// An annotation of the Service `web`.
async fn annotation(api: &Api<Service>, key: &str) -> Option<String> {
    let client = api.clone().into_client();
    cluster::annotation(&client, "web", key).await
}

#[test]
fn a_dhcp_service_is_leased_announced_kept_across_restart_and_released_on_delete() {
    skip_unless!(root, Bird::NEEDS, dnsmasq::NEEDS, VIPD_NEEDS);
    // Field order is drop order: agent, daemons, then the namespaces.
    let topo = Topology::with_nodes(1);
    let mut bird = Bird::new(&topo, RouterConfig::nodes(1));
    bird.start();
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("dnsmasq.conf");
    let lease_file = dir.path().join("dnsmasq.leases");
    dnsmasq::write_config(
        &conf,
        "veth-node",
        "10.99.0.100,10.99.0.150,255.255.255.0",
        "2m",
        &lease_file,
        &[],
    );
    let mut dnsmasq = dnsmasq::daemon(&topo.tor, &conf, dir.path().join("dnsmasq.log"));
    dnsmasq.start();
    let tor = topo.tor.clone();
    let node = topo.node.clone();
    dnsmasq.wait_ready(
        Duration::from_secs(10),
        "dnsmasq bound to udp/67",
        || {
            !ns_stdout(&tor, &["ss", "-Hlun", "sport = :67"])
                .trim()
                .is_empty()
        },
        "",
    );
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        cluster::create_node(&client, "node0").await;
        // Under kube-vip's RBAC, as after an image swap: DHCP writes hwaddr and requestedIP.
        let token = rbac::grant(&api, Grant::KubeVip);
        let kubeconfig =
            cluster::node_kubeconfig_as(dir.path(), 0, api.addr().port(), Some(&token));
        let agent_env = [("vip_interface", "veth-tor")];
        let mut agent = Vipd::services(&topo, 0, &kubeconfig, &agent_env);
        agent.start();
        let mut svc = lb_service("web", "0.0.0.0", false);
        svc.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("kube-vip.io/loadbalancerHostname".into(), "web".into());
        cluster::create_service(&client, &svc).await;
        cluster::put_slice(
            &client,
            &slice("web", "web-1", &[Ep::ready("10.244.0.5", "node0")]),
        )
        .await;
        let explain = |agent: &Vipd| {
            format!(
                "---- lease file ----\n{:?}\n---- dnsmasq ----\n{}\n---- vipd ----\n{}\n---- bird ----\n{}",
                dnsmasq::leases(&lease_file),
                dnsmasq.log_tail(20),
                agent.log_tail(),
                bird.log_tail()
            )
        };

        // 1. Leased, announced, reported, remembered on the Service.
        eventually!(
            UP,
            "the Service has a hwaddr and a requestedIP",
            annotation(&services, "kube-vip.io/requestedIP")
                .await
                .is_some(),
            explain(&agent)
        );
        let mac = annotation(&services, "kube-vip.io/hwaddr")
            .await
            .expect("hwaddr");
        let ip = annotation(&services, "kube-vip.io/requestedIP")
            .await
            .unwrap();
        assert_eq!(
            leased(&dnsmasq::leases(&lease_file), &mac),
            Some(ip.clone()),
            "{}",
            explain(&agent)
        );
        let prefix = format!("{ip}/32");
        eventually!(
            UP,
            "BIRD holds the leased address via node0",
            bird.next_hops(&prefix) == vec!["10.99.0.1".parse::<IpAddr>().unwrap()],
            explain(&agent)
        );
        eventually!(
            SOON,
            "the status shows the leased address",
            cluster::ingress(&client, "web").await == [ip.clone()],
            explain(&agent)
        );
        let mv = macvlans(&node);
        assert_eq!(mv.len(), 1, "{mv:?}");
        let on_mv = ns_stdout(&node, &["ip", "-4", "-o", "addr", "show", "dev", &mv[0]]);
        assert!(on_mv.contains(&prefix), "{on_mv}");
        let on_link = ns_stdout(
            &node,
            &["ip", "-4", "-o", "addr", "show", "dev", "veth-tor"],
        );
        assert!(
            !on_link.contains(&prefix),
            "the lease stays off vip_interface: {on_link}"
        );
        eprintln!(
            "leased {ip} to {mac} on {}; dnsmasq: {:?}",
            mv[0],
            dnsmasq::leases(&lease_file)
        );

        // 2. A restarted agent (SIGTERM deletes the macvlan but keeps the lease; the Service
        // remembers MAC and address) gets the same address again.
        agent.terminate();
        assert!(
            agent.wait_exit(Duration::from_secs(10)).is_some(),
            "{}",
            explain(&agent)
        );
        assert!(macvlans(&node).is_empty(), "shutdown deletes the macvlan");
        assert_eq!(
            leased(&dnsmasq::leases(&lease_file), &mac),
            Some(ip.clone()),
            "shutdown keeps the lease: a restart must not lose the address"
        );
        assert!(
            !dnsmasq.log().contains("DHCPRELEASE"),
            "{}",
            explain(&agent)
        );
        let mut agent = Vipd::services(&topo, 0, &kubeconfig, &agent_env);
        agent.start();
        let on_macvlan = |node: &str| {
            macvlans(node).iter().any(|m| {
                ns_stdout(node, &["ip", "-4", "-o", "addr", "show", "dev", m]).contains(&prefix)
            })
        };
        eventually!(
            UP,
            "the restarted agent holds the same address on its macvlan again",
            on_macvlan(&node),
            explain(&agent)
        );
        assert_eq!(
            dnsmasq::discover_exchanges(&dnsmasq.log()),
            1,
            "the restarted agent used INIT-REBOOT\n{}",
            explain(&agent)
        );
        eventually!(
            UP,
            "BIRD holds it again",
            !bird.next_hops(&prefix).is_empty(),
            explain(&agent)
        );
        assert_eq!(
            annotation(&services, "kube-vip.io/hwaddr").await,
            Some(mac.clone())
        );

        // 3. The Service goes: RELEASE (gone from dnsmasq's file), macvlan and route gone.
        services
            .delete("web", &DeleteParams::default())
            .await
            .expect("delete");
        eventually!(
            SOON,
            "dnsmasq drops the released lease",
            leased(&dnsmasq::leases(&lease_file), &mac).is_none(),
            explain(&agent)
        );
        eventually!(
            SOON,
            "the macvlan is gone",
            macvlans(&node).is_empty(),
            explain(&agent)
        );
        eventually!(
            SOON,
            "BIRD no longer holds the route",
            bird.route(&prefix).is_none(),
            explain(&agent)
        );
        let released = dnsmasq
            .log()
            .lines()
            .filter(|l| l.contains("DHCPRELEASE"))
            .count();
        assert_eq!(
            released,
            1,
            "one RELEASE, when the Service was deleted\n{}",
            explain(&agent)
        );
        let log = dnsmasq.log();
        let exchange: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("DHCP") && l.contains("(veth-node)"))
            .collect();
        eprintln!("dnsmasq:\n{}", exchange.join("\n"));

        // 4. A Service deleted while vipd is down: the restarted agent deletes the macvlan left
        // for it (the alias names its owner) and leaves a macvlan that is not vipd's alone.
        cluster::create_service(&client, &lb_service("web", "0.0.0.0", false)).await;
        eventually!(
            UP,
            "the new web is leased on a macvlan",
            macvlans(&node).len() == 1
                && annotation(&services, "kube-vip.io/requestedIP")
                    .await
                    .is_some(),
            explain(&agent)
        );
        let left = macvlans(&node).remove(0);
        let shown = ns_stdout(&node, &["ip", "-o", "link", "show", "dev", &left]);
        assert!(shown.contains("alias vipd dhcp "), "{shown}");
        run_ok(
            "ip",
            &[
                "-n",
                &node,
                "link",
                "add",
                "vip-foreign",
                "link",
                "veth-tor",
                "type",
                "macvlan",
                "mode",
                "bridge",
            ],
        );
        assert!(agent.kill());
        services
            .delete("web", &DeleteParams::default())
            .await
            .expect("delete");
        let mut agent = Vipd::services(&topo, 0, &kubeconfig, &agent_env);
        agent.start();
        eventually!(
            UP,
            "the restarted agent deleted the macvlan of the deleted Service, and only that",
            macvlans(&node) == ["vip-foreign"],
            format!("{:?}\n{}", macvlans(&node), explain(&agent))
        );
        // Three agent processes in turn, each refused at most its first patch and Event.
        rbac::assert_refusals(&api, Grant::KubeVip, 3, &explain(&agent));
        drop(agent);
    });
}

/// Two nodes on a shared DHCP segment with dnsmasq on the tor, BIRD peering with both. Field
/// order is drop order: the daemons stop before the namespaces go.
struct SharedSegment {
    dnsmasq: support::daemon::Daemon,
    lease_file: std::path::PathBuf,
    bird: Bird,
    topo: Topology,
    dir: tempfile::TempDir,
}

impl SharedSegment {
    fn new() -> SharedSegment {
        let topo = Topology::with_nodes(2);
        let mut bird = Bird::new(&topo, RouterConfig::nodes(2));
        bird.start();
        dhcp_segment(&topo);
        let dir = tempfile::tempdir().expect("temp dir");
        let (dnsmasq, lease_file) = start_dnsmasq(
            &topo.tor,
            dir.path(),
            "br-dhcp",
            "10.97.0.100,10.97.0.150,255.255.255.0",
            &[],
        );
        SharedSegment {
            dnsmasq,
            lease_file,
            bird,
            topo,
            dir,
        }
    }

    /// Inside the tor namespace: both nodes' Node objects and started agents, with `extra`.
    async fn agents(&self, api: &ApiServer, extra: &[(&str, &str)]) -> Vec<Vipd> {
        let client = api.client();
        let mut settings = vec![("vip_interface", "dhcp0")];
        settings.extend_from_slice(extra);
        let mut agents = Vec::new();
        for i in 0..2 {
            cluster::create_node(&client, &format!("node{i}")).await;
            let token = rbac::grant(api, Grant::KubeVip);
            let kubeconfig =
                cluster::node_kubeconfig_as(self.dir.path(), i, api.addr().port(), Some(&token));
            let mut agent = Vipd::services(&self.topo, i, &kubeconfig, &settings);
            agent.start();
            agents.push(agent);
        }
        agents
    }

    /// Both agents (with `extra`) and the `0.0.0.0` Service `web` (externalTrafficPolicy
    /// Local if `local`) with its endpoint on node0, once an address is leased and written back:
    /// `(agents, hwaddr, requestedIP)`.
    async fn serve_web(
        &self,
        api: &ApiServer,
        extra: &[(&str, &str)],
        local: bool,
    ) -> (Vec<Vipd>, String, String) {
        let agents = self.agents(api, extra).await;
        let client = api.client();
        cluster::create_served(
            &client,
            &lb_service("web", "0.0.0.0", local),
            "node0",
            "10.244.0.5",
        )
        .await;
        let services: Api<Service> = Api::namespaced(client, "default");
        let (mac, ip) = wait_leased(&services, || self.explain(&agents)).await;
        (agents, mac, ip)
    }

    fn explain(&self, agents: &[Vipd]) -> String {
        let mut s = format!(
            "---- lease file ----\n{:?}\n---- dnsmasq ----\n{}",
            dnsmasq::leases(&self.lease_file),
            self.dnsmasq.log_tail(30)
        );
        for (i, a) in agents.iter().enumerate() {
            s.push_str(&format!("\n---- vipd node{i} ----\n{}", a.log_tail()));
        }
        s
    }
}

/// After a takeover: the Service still asks for `ip`, dnsmasq still leases it to `mac`, nothing
/// was RELEASEd, and there was one DISCOVER exchange only (the next holder used INIT-REBOOT).
async fn assert_kept_by_init_reboot(
    services: &Api<Service>,
    dnsmasq: &support::daemon::Daemon,
    lease_file: &std::path::Path,
    mac: &str,
    ip: &str,
    explain: impl Fn() -> String,
) {
    assert_eq!(
        annotation(services, "kube-vip.io/requestedIP")
            .await
            .as_deref(),
        Some(ip)
    );
    assert_eq!(
        leased(&dnsmasq::leases(lease_file), mac).as_deref(),
        Some(ip)
    );
    let log = dnsmasq.log();
    assert!(!log.contains("DHCPRELEASE"), "{}", explain());
    assert_eq!(
        dnsmasq::discover_exchanges(&log),
        1,
        "the new holder used INIT-REBOOT\n{}",
        explain()
    );
}

/// Waits until the Service `web` has its lease written back: `(hwaddr, requestedIP)`.
async fn wait_leased(services: &Api<Service>, explain: impl Fn() -> String) -> (String, String) {
    eventually!(
        UP,
        "an address is leased and written back",
        annotation(services, "kube-vip.io/requestedIP")
            .await
            .is_some(),
        explain()
    );
    let mac = annotation(services, "kube-vip.io/hwaddr")
        .await
        .expect("hwaddr");
    let ip = annotation(services, "kube-vip.io/requestedIP")
        .await
        .unwrap();
    (mac, ip)
}

/// Failover: two nodes share a DHCP segment (a bridge on the tor, beside their BGP links). The
/// Service's only endpoint moves from node0 to node1 (externalTrafficPolicy Local): node0 stops
/// without RELEASE, node1 asks with the Service's MAC for the same address and gets it; BIRD
/// moves the route to node1.
#[test]
fn a_dhcp_service_keeps_its_address_when_it_fails_over_to_another_node() {
    skip_unless!(root, Bird::NEEDS, dnsmasq::NEEDS, VIPD_NEEDS);
    let bed = SharedSegment::new();
    let (bird, topo, dnsmasq, lease_file) = (&bed.bird, &bed.topo, &bed.dnsmasq, &bed.lease_file);
    in_netns(&topo.tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let (agents, mac, ip) = bed.serve_web(&api, &[], true).await;
        let explain = |agents: &[Vipd]| bed.explain(agents);
        let prefix = format!("{ip}/32");
        eventually!(
            UP,
            "BIRD holds the lease via node0",
            bird.next_hops(&prefix) == vec!["10.99.0.1".parse::<IpAddr>().unwrap()],
            explain(&agents)
        );
        assert_eq!(macvlans(&topo.nodes[0]).len(), 1);
        assert!(
            macvlans(&topo.nodes[1]).is_empty(),
            "node1 has no endpoint: no lease there"
        );
        let first = dnsmasq::leases(lease_file);
        eprintln!("node0 leased {ip} to {mac}: {first:?}");

        cluster::put_slice(
            &client,
            &slice("web", "web-1", &[Ep::ready("10.244.1.5", "node1")]),
        )
        .await;
        eventually!(
            UP,
            "BIRD holds the same address via node1",
            bird.next_hops(&prefix) == vec!["10.99.1.1".parse::<IpAddr>().unwrap()],
            explain(&agents)
        );
        assert!(
            macvlans(&topo.nodes[0]).is_empty(),
            "node0 removed its macvlan"
        );
        assert_eq!(macvlans(&topo.nodes[1]).len(), 1);
        assert_eq!(leased(&dnsmasq::leases(lease_file), &mac), Some(ip.clone()));
        let log = dnsmasq.log();
        assert!(
            !log.contains("DHCPRELEASE"),
            "a failover does not release\n{}",
            explain(&agents)
        );
        assert_eq!(
            dnsmasq::discover_exchanges(&log),
            1,
            "node1 used INIT-REBOOT\n{}",
            explain(&agents)
        );
        eprintln!(
            "node1 holds {ip} with {mac}: {:?}",
            dnsmasq::leases(lease_file)
        );
        drop(agents);
    });
}

/// The macvlans in namespace `node` that carry `mac`, by name.
fn macvlans_with(node: &str, mac: &str) -> Vec<String> {
    ns_stdout(node, &["ip", "-o", "link", "show", "type", "macvlan"])
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains(&mac.to_ascii_lowercase()))
        .filter_map(|l| {
            let name = l.split_whitespace().nth(1)?;
            Some(name.trim_end_matches(':').split('@').next()?.to_string())
        })
        .collect()
}

/// BGP mode, externalTrafficPolicy Cluster: both nodes pass the Service's gates, yet only the
/// elected node of the Service's Lease (`kubevip-web`) leases: one macvlan with the Service's
/// MAC across the nodes at every sample, one DISCOVER, one lease, one next hop in BIRD. The
/// leader is SIGKILLed (its macvlan deleted, as the node's death would): the other node takes
/// the Lease once it expires and asks with the same MAC by INIT-REBOOT for the same address.
#[test]
fn only_the_elected_node_leases_a_dhcp_service_under_cluster_policy() {
    skip_unless!(root, Bird::NEEDS, dnsmasq::NEEDS, VIPD_NEEDS);
    let bed = SharedSegment::new();
    let (bird, topo, dnsmasq, lease_file) = (&bed.bird, &bed.topo, &bed.dnsmasq, &bed.lease_file);
    in_netns(&topo.tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let timing = [
            ("vip_leaseduration", "3"),
            ("vip_renewdeadline", "2"),
            ("vip_retryperiod", "0.5"),
        ];
        // Cluster policy, endpoint on node0: both nodes pass the gates.
        let (mut agents, mac, ip) = bed.serve_web(&api, &timing, false).await;
        let explain = |agents: &[Vipd]| bed.explain(agents);
        let prefix = format!("{ip}/32");
        eventually!(
            UP,
            "BIRD holds the lease",
            bird.next_hops(&prefix).len() == 1,
            explain(&agents)
        );
        let holder = |topo: &Topology| -> Vec<usize> {
            (0..2)
                .filter(|i| !macvlans_with(&topo.nodes[*i], &mac).is_empty())
                .collect()
        };
        // Sample for 5 s (10 lease retry periods): one macvlan, one next hop, all along.
        let mut samples = 0;
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < until {
            let with_mac: usize = (0..2)
                .map(|i| macvlans_with(&topo.nodes[i], &mac).len())
                .sum();
            assert_eq!(
                with_mac,
                1,
                "exactly one macvlan with {mac} across the nodes\n{}",
                explain(&agents)
            );
            assert_eq!(
                bird.next_hops(&prefix).len(),
                1,
                "exactly one next hop for {prefix}\n{}",
                explain(&agents)
            );
            samples += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let leader = holder(topo)[0];
        let other = 1 - leader;
        assert_eq!(
            bird.next_hops(&prefix),
            vec![Topology::node_v4(leader).parse::<IpAddr>().unwrap()],
            "the route points at the node holding the macvlan"
        );
        let log = dnsmasq.log();
        assert_eq!(
            dnsmasq::discover_exchanges(&log),
            1,
            "one client asked\n{}",
            explain(&agents)
        );
        let lines = dnsmasq::leases(lease_file);
        assert_eq!(lines.len(), 1, "one lease: {lines:?}");
        eprintln!("node{leader} leads and leased {ip} to {mac}; {samples} samples with one macvlan and one next hop");
        // Each node's /metrics says who leads the Service's Lease, as in ARP mode.
        let leads = |i: usize| {
            let (_, metrics) = in_netns(
                &topo.nodes[i],
                cluster::http_get("127.0.0.1:2112", "/metrics"),
            );
            metrics.lines().any(|l| {
                l == format!("kube_vip_is_leader{{node=\"node{i}\",lease_name=\"kubevip-web\"}} 1")
            })
        };
        assert!(
            leads(leader),
            "node{leader}'s kube_vip_is_leader for default/kubevip-web"
        );
        assert!(
            !leads(other),
            "node{other} does not lead default/kubevip-web"
        );

        // The leader dies: no Cease, no RELEASE, no Lease release. Its macvlan goes with the
        // node (here: deleted by hand, the namespace outliving the process).
        let killed_at = std::time::Instant::now();
        assert!(agents[leader].kill());
        for name in macvlans_with(&topo.nodes[leader], &mac) {
            run_ok("ip", &["-n", &topo.nodes[leader], "link", "del", &name]);
        }
        let other_hop: IpAddr = Topology::node_v4(other).parse().unwrap();
        eventually!(
            UP,
            "the other node holds the same address",
            bird.next_hops(&prefix) == vec![other_hop],
            explain(&agents)
        );
        let took = killed_at.elapsed();
        // The Lease expires 3 s after the dead leader's last renew; then one retry period, the
        // INIT-REBOOT exchange and the BGP UPDATE. Well within 8 s, or the takeover waited on
        // something else (the 2-minute DHCP lease, the 9 s hold time).
        assert!(
            took < Duration::from_secs(8),
            "takeover took {took:?}\n{}",
            explain(&agents)
        );
        assert_eq!(holder(topo), vec![other], "{}", explain(&agents));
        assert_kept_by_init_reboot(&services, dnsmasq, lease_file, &mac, &ip, || {
            explain(&agents)
        })
        .await;
        eprintln!("node{other} took over {ip} with {mac} {took:?} after the kill");
        drop(agents);
    });
}

/// Whether a macvlan with `mac` in namespace `node` carries `ip`.
fn holds(node: &str, mac: &str, ip: &str) -> bool {
    assert!(!ip.is_empty(), "holds() needs an address");
    macvlans_with(node, mac).iter().any(|m| {
        ns_stdout(node, &["ip", "-br", "addr", "show", "dev", m]).contains(&format!("{ip}/"))
    })
}

/// ARP mode's DHCP bed: `nodes` nodes and a client on a LAN bridge with dnsmasq on it
/// (10.97.0.1, serving `range`, `extra` config lines), the API server in the tor namespace.
/// Field order is drop order: dnsmasq stops before the namespaces go.
struct ArpLan {
    dnsmasq: support::daemon::Daemon,
    lease_file: std::path::PathBuf,
    lan: Lan,
    topo: Topology,
    dir: tempfile::TempDir,
}

impl ArpLan {
    fn new(nodes: usize, range: &str, extra: &[&str]) -> ArpLan {
        let topo = Topology::with_nodes(nodes);
        let lan = Lan::new(&topo);
        run_ok(
            "ip",
            &["-n", &lan.sw, "addr", "add", "10.97.0.1/24", "dev", "br0"],
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let (dnsmasq, lease_file) = start_dnsmasq(&lan.sw, dir.path(), "br0", range, extra);
        ArpLan {
            dnsmasq,
            lease_file,
            lan,
            topo,
            dir,
        }
    }

    /// Node `i`'s Node object and its started ARP-mode agent on `lan0`, with `extra` settings.
    async fn agent(&self, api: &ApiServer, i: usize, extra: &[(&str, &str)]) -> Vipd {
        cluster::create_node(&api.client(), &format!("node{i}")).await;
        // Under vipd's own RBAC for ARP mode (the tests read Warning Events, which kube-vip's
        // role does not allow; BGP mode's DHCP tests run under kube-vip's).
        let token = rbac::grant(api, ARP_GRANT);
        let kubeconfig =
            cluster::node_kubeconfig_as(self.dir.path(), i, api.addr().port(), Some(&token));
        let mut settings = vec![("vip_interface", "lan0")];
        settings.extend_from_slice(extra);
        let mut agent = Vipd::arp(&self.topo, i, &kubeconfig, &settings);
        agent.start();
        agent
    }

    fn explain(&self, agents: &[&Vipd]) -> String {
        let mut s = format!(
            "---- lease file ----\n{:?}\n---- dnsmasq ----\n{}\n---- client neigh ----\n{}",
            dnsmasq::leases(&self.lease_file),
            self.dnsmasq.log_tail(30),
            ns_stdout(&self.lan.client, &["ip", "neigh"])
        );
        for (i, a) in agents.iter().enumerate() {
            s.push_str(&format!("\n---- vipd {i} ----\n{}", a.log_tail_quiet()));
        }
        s
    }
}

/// Short Leases, so failovers fit a test.
const ARP_TIMING: &[(&str, &str)] = &[
    ("svc_election", "true"),
    ("vip_leaseduration", "3"),
    ("vip_renewdeadline", "2"),
    ("vip_retryperiod", "0.5"),
];

/// ARP mode: two agents on a LAN with dnsmasq and a client. Only the leader of the Service's
/// Lease leases; it holds the address on the Service's macvlan, so the client's neighbour entry
/// for the address is the Service's MAC (`kube-vip.io/hwaddr`), not the node's. The leader is
/// SIGKILLed (its macvlan deleted, as the node's death would): the other node asks with the same
/// MAC for the same address, and the client reaches it with the entry it already had. Deleting
/// the Service releases the lease and removes the macvlan.
#[test]
fn in_arp_mode_the_leader_answers_for_the_lease_with_the_services_mac_and_so_does_the_next() {
    skip_unless!(
        root,
        dnsmasq::NEEDS,
        VIPD_NEEDS,
        &[("ping", "apt-get install iputils-ping")]
    );
    let bed = ArpLan::new(2, "10.97.0.100,10.97.0.150,255.255.255.0", &[]);
    let (topo, lan, dnsmasq, lease_file) = (&bed.topo, &bed.lan, &bed.dnsmasq, &bed.lease_file);
    in_netns(&topo.tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let mut agents = Vec::new();
        for i in 0..2 {
            agents.push(bed.agent(&api, i, ARP_TIMING).await);
        }
        let explain = |agents: &[Vipd]| bed.explain(&agents.iter().collect::<Vec<_>>());
        cluster::create_served(
            &client,
            &lb_service("web", "0.0.0.0", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        let (mac, ip) = wait_leased(&services, || explain(&agents)).await;
        let mac = mac.to_lowercase();
        let holders = || -> Vec<usize> {
            (0..2)
                .filter(|i| holds(&topo.nodes[*i], &mac, &ip))
                .collect()
        };
        eventually!(
            UP,
            "one node holds the lease on the Service's macvlan",
            holders().len() == 1,
            explain(&agents)
        );
        let leader = holders()[0];
        let other = 1 - leader;
        assert!(
            macvlans_with(&topo.nodes[other], &mac).is_empty(),
            "only the leader has the Service's macvlan"
        );
        // Set by netlink (as in a container, where /proc/sys is read-only), read back here.
        let conf = |ifname: &str, key: &str| {
            let path = format!("net.ipv4.conf.{ifname}.{key}");
            ns_stdout(&topo.nodes[leader], &["sysctl", "-n", &path])
                .trim()
                .to_string()
        };
        let mv = macvlans_with(&topo.nodes[leader], &mac).remove(0);
        assert_eq!(
            [conf("lan0", "arp_ignore"), conf("lan0", "arp_announce")],
            ["1", "2"],
            "strict ARP on the parent"
        );
        assert_eq!(
            [
                conf(&mv, "arp_ignore"),
                conf(&mv, "arp_announce"),
                conf(&mv, "rp_filter")
            ],
            ["1", "2", "0"],
            "the macvlan answers for its own address only, asks with it (never the node's, \
             which would give the node's address the Service's MAC) and filters no source"
        );
        eventually!(
            SOON,
            "the client reaches the leased address",
            ns_succeeds(&lan.client, &["ping", "-c1", "-W1", &ip]),
            explain(&agents)
        );
        // A few exchanges both ways: the node's own ARP requests must not rename the lease.
        assert!(ns_succeeds(
            &lan.client,
            &["ping", "-c3", "-i0.2", "-W1", &ip]
        ));
        assert_eq!(
            client_neigh(lan, &ip),
            Some(mac.clone()),
            "the client knows the lease by the Service's MAC\n{}",
            explain(&agents)
        );
        eventually!(
            SOON,
            "the status shows the leased address",
            cluster::ingress(&client, "web").await == [ip.clone()],
            explain(&agents)
        );
        eprintln!("node{leader} leads and holds {ip} with {mac}");

        let killed_at = std::time::Instant::now();
        assert!(agents[leader].kill());
        for name in macvlans_with(&topo.nodes[leader], &mac) {
            run_ok("ip", &["-n", &topo.nodes[leader], "link", "del", &name]);
        }
        eventually!(
            UP,
            "the other node holds the same address with the same MAC",
            holders() == [other],
            explain(&agents)
        );
        let took = killed_at.elapsed();
        eventually!(
            SOON,
            "the client reaches the address again",
            ns_succeeds(&lan.client, &["ping", "-c1", "-W1", &ip]),
            explain(&agents)
        );
        assert_eq!(client_neigh(lan, &ip), Some(mac.clone()));
        assert_kept_by_init_reboot(&services, dnsmasq, lease_file, &mac, &ip, || {
            explain(&agents)
        })
        .await;
        eprintln!("node{other} took over {ip} with {mac} {took:?} after the kill");

        services
            .delete("web", &DeleteParams::default())
            .await
            .expect("delete");
        eventually!(
            UP,
            "the lease is released and the macvlan gone",
            leased(&dnsmasq::leases(lease_file), &mac).is_none()
                && macvlans_with(&topo.nodes[other], &mac).is_empty(),
            explain(&agents)
        );
        assert!(dnsmasq.log().contains("DHCPRELEASE"));
        rbac::assert_refusals(&api, ARP_GRANT, agents.len(), &explain(&agents));
        drop(agents);
    });
}

/// ARP mode: the address the Service asks for (`requestedIP`, which dnsmasq grants by
/// INIT-REBOOT without checking) is already answered by another host. The leader's probe finds
/// it: vipd DECLINEs it, a Warning Event names the other host's MAC, and ten seconds later it
/// asks anew and gets another address, which the client reaches by the Service's MAC.
#[test]
fn in_arp_mode_an_address_in_use_is_declined_and_another_one_leased() {
    skip_unless!(
        root,
        dnsmasq::NEEDS,
        VIPD_NEEDS,
        &[("ping", "apt-get install iputils-ping")]
    );
    let taken = "10.97.0.100";
    let mut bed = ArpLan::new(
        1,
        "10.97.0.100,10.97.0.110,255.255.255.0",
        &["dhcp-authoritative"],
    );
    let squatter = bed.lan.add_squatter(taken);
    let (topo, lan, dnsmasq) = (&bed.topo, &bed.lan, &bed.dnsmasq);
    in_netns(&topo.tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let agent = bed.agent(&api, 0, &[]).await;
        let explain = |agent: &Vipd| bed.explain(&[agent]);
        let mut svc = lb_service("web", "0.0.0.0", false);
        svc.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("kube-vip.io/requestedIP".into(), taken.into());
        cluster::create_served(&client, &svc, "node0", "10.244.0.5").await;
        eventually!(
            UP,
            "dnsmasq hears the DECLINE of the address in use",
            dnsmasq.log().contains(&format!("DHCPDECLINE(br0) {taken}")),
            explain(&agent)
        );
        let mac = annotation(&services, "kube-vip.io/hwaddr")
            .await
            .expect("hwaddr");
        let ip = || async {
            annotation(&services, "kube-vip.io/requestedIP")
                .await
                .filter(|ip| !ip.is_empty() && ip != taken)
        };
        eventually!(
            Duration::from_secs(45),
            "another address is leased and held on the Service's macvlan",
            match ip().await {
                Some(ip) => holds(&topo.nodes[0], &mac, &ip),
                None => false,
            },
            explain(&agent)
        );
        let ip = ip().await.unwrap();
        assert!(
            !holds(&topo.nodes[0], &mac, taken),
            "the declined address is gone from the macvlan"
        );
        eventually!(
            SOON,
            "the client reaches the new address",
            ns_succeeds(&lan.client, &["ping", "-c1", "-W1", &ip]),
            explain(&agent)
        );
        assert_eq!(client_neigh(lan, &ip), Some(mac.to_lowercase()));
        assert!(
            client_neigh(lan, taken).is_none_or(|m| m == squatter),
            "the address in use stays the other host's"
        );
        let notes = cluster::event_notes(&client, "AddressInUse").await;
        assert!(
            notes
                .iter()
                .any(|n| n.contains(taken) && n.contains(&squatter)),
            "a Warning Event names the other host's MAC: {notes:?}"
        );
        eprintln!("declined {taken} (answered by {squatter}); leased {ip} with {mac}");
        drop(agent);
    });
}

/// ARP mode: a node that wins a DHCP Service's Lease but cannot start its client (here its
/// `kube-vip.io/macvlanName` is taken by another interface on that node only) reports
/// `DHCPFailed` and stands down, so the other node takes the Lease and leases.
#[test]
fn in_arp_mode_a_node_that_cannot_lease_stands_down_for_one_that_can() {
    skip_unless!(root, dnsmasq::NEEDS, VIPD_NEEDS);
    let bed = ArpLan::new(2, "10.97.0.100,10.97.0.150,255.255.255.0", &[]);
    let topo = &bed.topo;
    run_ok(
        "ip",
        &[
            "-n",
            &topo.nodes[0],
            "link",
            "add",
            "mv-web",
            "type",
            "veth",
            "peer",
            "name",
            "mv-web-p",
        ],
    );
    in_netns(&topo.tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let mut svc = lb_service("web", "0.0.0.0", false);
        svc.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("kube-vip.io/macvlanName".into(), "mv-web".into());
        cluster::create_served(&client, &svc, "node0", "10.244.0.5").await;
        // node0 alone first: it wins the Lease and fails.
        let first = bed.agent(&api, 0, ARP_TIMING).await;
        eventually!(
            UP,
            "node0 reports that DHCP cannot start there",
            cluster::warned(&client, "DHCPFailed", "\"mv-web\"").await,
            bed.explain(&[&first])
        );
        let second = bed.agent(&api, 1, ARP_TIMING).await;
        let (mac, ip) = wait_leased(&services, || bed.explain(&[&first, &second])).await;
        eventually!(
            UP,
            "node1 holds the lease on its macvlan mv-web",
            holds(&topo.nodes[1], &mac.to_lowercase(), &ip),
            bed.explain(&[&first, &second])
        );
        let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
        let holder = leases
            .get("kubevip-web")
            .await
            .ok()
            .and_then(|l| l.spec?.holder_identity);
        assert_eq!(holder.as_deref(), Some("node1"));
        assert!(
            ns_stdout(&topo.nodes[0], &["ip", "-br", "link", "show", "mv-web"]).contains("mv-web"),
            "node0's own interface is untouched"
        );
        eprintln!("node0 stood down; node1 leased {ip} with {mac}");
        drop((first, second));
    });
}

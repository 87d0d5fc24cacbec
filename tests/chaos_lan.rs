//! Chaos on a LAN: the real agent in ARP mode behind a home-router-like gateway, its Services'
//! addresses leased from dnsmasq (`0.0.0.0`, a macvlan each) and their ports forwarded by
//! miniupnpd, while the DHCP server vanishes, the gateway reboots and forgets every mapping, the
//! agent is `kill -9`ed and restarted, its link loses carrier and the API server restarts.
//!
//! The invariant: every Service keeps the address it was first leased, in its status and on the
//! node, through every fault (sampled every 250 ms while the DHCP server, the gateway or the API
//! server is away: losing a server that only renews must never withdraw a healthy VIP); after
//! each fault the gateway maps every Service's port to that address again within the fault's
//! budget; after SIGTERM no macvlan, address or mapping is left; the agent's RSS and descriptors
//! stay flat.
//!
//! `CHAOS_SECONDS` (default 30, CI's short run), `CHAOS_SEED`, `CHAOS_REPORT` as in
//! `tests/chaos.rs`; `scripts/chaos.sh` runs both.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fake_apiserver::ApiServer;
use kube::Client;
use serde_json::json;
use support::chaos;
use support::cluster::{self, in_netns, slice, Ep};
use support::daemon::Daemon;
use support::miniupnpd::{self, UpnpBed};
use support::rbac::{self, Grant};
use support::{dnsmasq, ns_stdout, ns_succeeds, path_str, proc_usage, VIPD_NEEDS};

const SERVICES: usize = 4;
const GRANT: Grant = Grant::Vipd(&["--services", "--arp", "--enableUPNP"]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    DhcpServerGone,
    GatewayReboot,
    AgentKill,
    LinkFlap,
    ApiRestart,
}

const ALL: [Fault; 5] = [
    Fault::DhcpServerGone,
    Fault::GatewayReboot,
    Fault::AgentKill,
    Fault::LinkFlap,
    Fault::ApiRestart,
];

/// Service `i`: its name and the TCP port the gateway forwards.
fn service(i: usize) -> (String, u16) {
    (format!("lan-{i}"), 32400 + i as u16)
}

/// A DHCP Service (`0.0.0.0`) whose port is forwarded with a 20 s UPnP lease, so vipd
/// refreshes it every 10 s and a rebooted gateway gets it back quickly.
fn dhcp_service(i: usize) -> k8s_openapi::api::core::v1::Service {
    let (name, port) = service(i);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"kube-vip.io/loadbalancerIPs": "0.0.0.0",
                                     "kube-vip.io/forwardUPNP": "true",
                                     "kube-vip.io/upnp-lease-duration": "20s"}},
        "spec": {"type": "LoadBalancer", "selector": {"app": name},
                 "ports": [{"name": "p", "port": port, "protocol": "TCP"}]},
    }))
    .expect("service")
}

/// dnsmasq on the gateway's LAN side: 2-minute leases (its minimum) renewed every 5 s (T1),
/// rebound from 10 s (T2), so an outage exercises RENEW and REBIND going unanswered.
fn dnsmasq_on(bed: &UpnpBed) -> Daemon {
    let conf = bed.dir.path().join("dnsmasq.conf");
    dnsmasq::write_config(
        &conf,
        "lan0",
        "10.96.0.100,10.96.0.150,255.255.255.0",
        "2m",
        &bed.dir.path().join("dnsmasq.leases"),
        &["dhcp-option=option:T1,5", "dhcp-option=option:T2,10"],
    );
    dnsmasq::daemon(&bed.gw, &conf, bed.dir.path().join("dnsmasq.log"))
}

/// The agent on the LAN host as node0: ARP mode on `eth-gw`, UPnP on, under vipd's own role.
fn agent(bed: &UpnpBed, dir: &Path, api: &ApiServer) -> Daemon {
    let token = rbac::grant(api, GRANT);
    let kubeconfig = dir.join("node0.kubeconfig");
    cluster::write_kubeconfig_as(
        &kubeconfig,
        &format!("http://10.96.0.1:{}", api.addr().port()),
        Some(&token),
    );
    let env = [
        ("svc_enable", "true"),
        ("vip_arp", "true"),
        ("vip_interface", "eth-gw"),
        ("vip_nodename", "node0"),
        ("enableUPNP", "true"),
        ("k8s_config_file", path_str(&kubeconfig).as_str()),
        ("RUST_LOG", "info"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Daemon::new(
        "vipd node0",
        &bed.lan,
        vec![support::vipd_bin(), "manager".into()],
        dir.join("node0.log"),
    )
    .with_clean_env(env)
}

/// Per Service index, the first ingress address of its status.
async fn statuses(client: &Client) -> BTreeMap<usize, Option<String>> {
    let mut out = BTreeMap::new();
    for i in 0..SERVICES {
        let (name, _) = service(i);
        let first = cluster::ingress(client, &name).await.into_iter().next();
        out.insert(i, first);
    }
    out
}

/// The addresses each Service should keep (`leased`), checked against the status and the node:
/// a description of every difference, empty when all hold.
async fn not_held(client: &Client, lan: &str, leased: &BTreeMap<usize, String>) -> Vec<String> {
    let addrs = ns_stdout(lan, &["ip", "-o", "-4", "address"]);
    let status = statuses(client).await;
    let mut out = Vec::new();
    for (i, ip) in leased {
        let (name, _) = service(*i);
        if status.get(i) != Some(&Some(ip.clone())) {
            out.push(format!("{name}: status {:?}, leased {ip}", status.get(i)));
        }
        if !addrs.contains(&format!("inet {ip}/")) {
            out.push(format!("{name}: {ip} is not on the node"));
        }
    }
    out
}

/// The gateway must know the node's own address by the node's own MAC, never by a Service's
/// macvlan: that MAC goes when the Service does, and the node's traffic with it.
fn node_neighbour_wrong(bed: &UpnpBed) -> Option<String> {
    let mac = ns_stdout(&bed.lan, &["cat", "/sys/class/net/eth-gw/address"]);
    let entry = ns_stdout(
        &bed.gw,
        &["ip", "neigh", "show", miniupnpd::LAN_IP, "dev", "lan0"],
    );
    let known = entry
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)?;
    (known != mac.trim()).then(|| {
        format!(
            "the gateway knows the node's {} by {known}, not by the node's {}",
            miniupnpd::LAN_IP,
            mac.trim()
        )
    })
}

/// Samples every 250 ms for `window`: every address stays, in the status and on the node.
async fn hold(
    client: &Client,
    lan: &str,
    leased: &BTreeMap<usize, String>,
    window: Duration,
    fault: Fault,
    report: &mut Report,
) {
    let t0 = Instant::now();
    while t0.elapsed() < window {
        let lost = not_held(client, lan, leased).await;
        if !lost.is_empty() {
            report.violations.push(format!(
                "{fault:?}: after {:.1?}: {}",
                t0.elapsed(),
                lost.join("; ")
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The Services whose port the gateway does not map to their address.
fn not_mapped(bed: &UpnpBed, leased: &BTreeMap<usize, String>) -> Vec<String> {
    let mappings = bed.upnpc_mappings();
    leased
        .iter()
        .filter_map(|(i, ip)| {
            let (name, port) = service(*i);
            let needle = format!("TCP {port}->{ip}:{port}");
            (!mappings.iter().any(|m| m.contains(&needle))).then_some(name)
        })
        .collect()
}

/// How many DHCPACKs dnsmasq logged for each leased address.
fn acks(dhcp: &Daemon, leased: &BTreeMap<usize, String>) -> BTreeMap<usize, usize> {
    let log = dhcp.log();
    leased
        .iter()
        .map(|(i, ip)| (*i, log.matches(&format!("DHCPACK(lan0) {ip} ")).count()))
        .collect()
}

/// RSS (KiB) and open descriptors of a process.
type Usage = (u64, usize);

#[derive(Default)]
struct Report {
    faults: BTreeMap<Fault, usize>,
    slowest: BTreeMap<Fault, Duration>,
    violations: Vec<String>,
    /// Per agent process: first and last usage.
    usage: BTreeMap<u32, (Usage, Usage)>,
}

impl Report {
    fn sample(&mut self, agent: &mut Daemon) {
        if let Some(u) = agent.pid().and_then(proc_usage) {
            let pid = agent.pid().unwrap_or_default();
            self.usage
                .entry(pid)
                .and_modify(|e| e.1 = u)
                .or_insert((u, u));
        }
    }

    fn summary(&self, ran: Duration, seed: u64) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(f, n)| {
                format!(
                    "{f:?} {n} (slowest {:.1?})",
                    self.slowest.get(f).copied().unwrap_or_default()
                )
            })
            .collect();
        let usage: Vec<String> = self
            .usage
            .values()
            .map(|(a, b)| format!("RSS {} → {} KiB, fds {} → {}", a.0, b.0, a.1, b.1))
            .collect();
        format!(
            "chaos on the LAN (dnsmasq, miniupnpd): {ran:.0?} run, seed {seed}, {} faults: {}; violations: {}{}; agent: {}",
            self.faults.values().sum::<usize>(),
            faults.join(", "),
            self.violations.len(),
            support::chaos::listed(&self.violations),
            usage.join("; ")
        )
    }
}

#[test]
fn chaos_on_a_lan_keeps_every_leased_address_and_its_mapping() {
    skip_unless!(root, miniupnpd::NEEDS, dnsmasq::NEEDS, VIPD_NEEDS);
    let mut run = chaos::Run::from_env();
    let seed = run.seed;
    let mut bed = UpnpBed::setup();
    let mut dhcp = dnsmasq_on(&bed);
    dnsmasq::start(&mut dhcp, &bed.gw);
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = bed.gw.clone();
    let lan = bed.lan.clone();
    let summary = in_netns(&gw, async {
        let mut api = cluster::api_server().await;
        let addr = api.addr();
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        let mut agent = agent(&bed, dir.path(), &api);
        agent.start();
        for i in 0..SERVICES {
            let (name, _) = service(i);
            cluster::create_service(&client, &dhcp_service(i)).await;
            cluster::put_slice(
                &client,
                &slice(
                    &name,
                    &format!("{name}-1"),
                    &[Ep::ready(&format!("10.244.0.{}", 10 + i), "node0")],
                ),
            )
            .await;
        }
        let explain = |bed: &UpnpBed, agent: &Daemon, dhcp: &Daemon| {
            format!(
                "---- upnpc -l ----\n{}\n---- miniupnpd ----\n{}\n---- dnsmasq ----\n{}\n---- vipd ----\n{}",
                bed.upnpc_list(),
                bed.miniupnpd.log_tail(15),
                dhcp.log_tail(15),
                agent.log_tail(40)
            )
        };
        // Every Service leased, on the node and mapped: the addresses to keep from now on.
        let mut leased = BTreeMap::new();
        let t0 = Instant::now();
        while leased.len() < SERVICES || !not_mapped(&bed, &leased).is_empty() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "not every Service leased and mapped within 60 s: {:?}\n{}",
                statuses(&client).await,
                explain(&bed, &agent, &dhcp)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
            leased = statuses(&client)
                .await
                .into_iter()
                .filter_map(|(n, ip)| Some((n, ip?)))
                .filter(|(_, ip)| ip.starts_with("10.96.0."))
                .collect();
        }
        eprintln!("leased: {leased:?}");
        let mut report = Report::default();
        report.sample(&mut agent);
        run.begin();
        while let Some(fault) = run.next(&ALL) {
            *report.faults.entry(fault).or_default() += 1;
            // After the faults that touch leasing, every address must also be ACKed again:
            // proof that a live client (the restarted agent's, after AgentKill) renews it.
            let mut acked_before = None;
            let budget = match fault {
                Fault::DhcpServerGone => {
                    // Past T1 and T2 (RENEW and REBIND unanswered), well within the lease.
                    dhcp.kill();
                    let window = Duration::from_secs(run.rng.u64(5..40));
                    hold(&client, &lan, &leased, window, fault, &mut report).await;
                    acked_before = Some(acks(&dhcp, &leased));
                    dnsmasq::start(&mut dhcp, &gw);
                    // REBINDING retransmits at half the time left, at least 60 s apart
                    // (RFC 2131 §4.4.5): the next REBIND comes within 60 s of the last.
                    Duration::from_secs(75)
                }
                Fault::GatewayReboot => {
                    bed.gateway_lost();
                    let window = Duration::from_secs(run.rng.u64(2..15));
                    hold(&client, &lan, &leased, window, fault, &mut report).await;
                    bed.gateway_back();
                    // The next refresh (every 10 s), or the failure backoff (≤ 60 s) if the
                    // gateway was away for several attempts.
                    Duration::from_secs(75)
                }
                Fault::AgentKill => {
                    agent.kill();
                    tokio::time::sleep(Duration::from_millis(run.rng.u64(0..2000))).await;
                    acked_before = Some(acks(&dhcp, &leased));
                    agent.start();
                    Duration::from_secs(30)
                }
                Fault::LinkFlap => {
                    // The cable pulled at the gateway's end: the node's link loses its carrier
                    // and keeps its routes, as a real one does (setting the node's own link
                    // down would flush the test bed's static routes, which nothing restores).
                    ns_succeeds(&gw, &["ip", "link", "set", "lan0", "down"]);
                    tokio::time::sleep(Duration::from_millis(run.rng.u64(500..4000))).await;
                    ns_succeeds(&gw, &["ip", "link", "set", "lan0", "up"]);
                    Duration::from_secs(30)
                }
                Fault::ApiRestart => {
                    let store = api.stop().await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    api = ApiServer::start_with(store, addr)
                        .await
                        .expect("API server back");
                    hold(
                        &client,
                        &lan,
                        &leased,
                        Duration::from_secs(3),
                        fault,
                        &mut report,
                    )
                    .await;
                    Duration::from_secs(15)
                }
            };
            // Converges: every address held, ACKed again where asked, every port mapped to it.
            let t0 = Instant::now();
            loop {
                let lost = not_held(&client, &lan, &leased).await;
                let unmapped = not_mapped(&bed, &leased);
                let unacked: Vec<String> = match &acked_before {
                    Some(before) => acks(&dhcp, &leased)
                        .into_iter()
                        .filter(|(i, n)| *n <= before[i])
                        .map(|(i, _)| format!("{} not ACKed again", leased[&i]))
                        .collect(),
                    None => Vec::new(),
                };
                if let Some(wrong) = node_neighbour_wrong(&bed) {
                    report.violations.push(format!("{fault:?}: {wrong}"));
                    break;
                }
                if lost.is_empty() && unmapped.is_empty() && unacked.is_empty() {
                    let slowest = report.slowest.entry(fault).or_default();
                    *slowest = (*slowest).max(t0.elapsed());
                    break;
                }
                if t0.elapsed() > budget {
                    report.violations.push(format!(
                        "{fault:?}: not back in {budget:?}: {} not mapped; {}; {}",
                        unmapped.join(", "),
                        lost.join("; "),
                        unacked.join("; ")
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            report.sample(&mut agent);
            if !report.violations.is_empty() {
                eprintln!("{}", explain(&bed, &agent, &dhcp));
                break;
            }
        }
        let ran = run.elapsed();
        for ((first, last), pid) in report.usage.values().copied().zip(report.usage.keys()) {
            if last.1 > first.1 + 16 {
                report
                    .violations
                    .push(format!("pid {pid}: fds {} → {}", first.1, last.1));
            }
            if last.0 > first.0 * 3 / 2 + 16 * 1024 {
                report
                    .violations
                    .push(format!("pid {pid}: RSS {} → {} KiB", first.0, last.0));
            }
        }
        // SIGTERM: the agent removes what it put on the node and on the gateway.
        agent.signal("TERM");
        if agent.wait_exit(Duration::from_secs(15)).is_none() {
            report
                .violations
                .push("the agent did not exit within 15 s of SIGTERM".into());
        }
        let left = bed.upnpc_mappings();
        if !left.is_empty() {
            report
                .violations
                .push(format!("mappings left behind: {left:?}"));
        }
        let addrs = ns_stdout(&lan, &["ip", "-o", "-4", "address"]);
        for ip in leased.values() {
            if addrs.contains(&format!("inet {ip}/")) {
                report.violations.push(format!("{ip} left on the node"));
            }
        }
        if ns_succeeds(
            &lan,
            &["sh", "-c", "ip -o link show type macvlan | grep -q ."],
        ) {
            report.violations.push("a macvlan left behind".into());
        }
        rbac::assert_refusals(&api, GRANT, 0, "chaos on the LAN");
        report.summary(ran, seed)
    });
    dhcp.stop();
    eprintln!("==== {summary} ====");
    chaos::append_report(&summary);
    assert!(summary.contains("violations: 0;"), "seed {seed}: {summary}");
}

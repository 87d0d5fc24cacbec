//! Chaos: three real agents in services mode peering with a real router (BIRD 2, then FRR), the
//! in-repo API server holding 200 LoadBalancer Services with endpoints that keep moving, and
//! faults injected one after another: agents `kill -9`ed and restarted, the router killed and
//! restarted, node links flapped, loss and a bottleneck on a link (nftables, `tc tbf`), the API server
//! restarted, watches sent `410 Gone`, the API answering `500` or slowly.
//!
//! The invariant, checked against the router's own table: after each fault the table converges
//! to exactly the routes the API objects call for, computed here independently of vipd (every
//! running agent's node for an `externalTrafficPolicy: Cluster` Service, the nodes with a ready
//! endpoint for `Local`), within the fault's budget; while only the API server misbehaves, not
//! one route of a Service that stayed healthy is withdrawn, not even for one sample; after the
//! agents stop, the table holds none of their routes and no node holds a VIP address. Each
//! agent's RSS and open file descriptors are reported and must stay flat.
//!
//! `CHAOS_SECONDS` (per router; default 30, CI's short run), `CHAOS_SEED`, `CHAOS_REPORT` (a
//! file the summary is appended to); `scripts/chaos.sh` runs the long campaign.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use fake_apiserver::{ApiServer, Faults};
use kube::Client;
use support::bird::Bird;
use support::chaos;
use support::cluster::{self, in_netns, Ep};
use support::frr::Frr;
use support::netns::Topology;
use support::router::{Router, RouterConfig, Tables};
use support::vipd::Vipd;
use support::{ns_stdout, ns_succeeds, run_ok, VIPD_NEEDS};

const NODES: usize = 3;
const SERVICES: usize = 200;
const TC: &[(&str, &str)] = &[
    ("tc", "apt-get install iproute2"),
    ("nft", "apt-get install nftables"),
];

/// Service `i`: its name, VIP, and whether it is `externalTrafficPolicy: Local`.
fn service(i: usize) -> (String, String, bool) {
    (
        format!("svc-{i:03}"),
        format!("198.19.{}.{}", i / 200, 10 + i % 200),
        i % 5 < 2,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    EndpointsMove,
    AgentKill,
    RouterKill,
    LinkFlap,
    Netem,
    ApiRestart,
    Watch410,
    Api500,
    ApiSlow,
}

const ALL: [Fault; 9] = [
    Fault::EndpointsMove,
    Fault::AgentKill,
    Fault::Api500,
    Fault::LinkFlap,
    Fault::ApiRestart,
    Fault::Netem,
    Fault::Watch410,
    Fault::ApiSlow,
    Fault::RouterKill,
];

/// What the cluster should look like, kept by the test as it changes it.
struct World {
    /// Per Service index, the nodes with its ready endpoint.
    endpoints: Vec<BTreeSet<usize>>,
    /// Agents running.
    running: BTreeSet<usize>,
}

impl World {
    /// The next hops the API objects call for, per prefix: computed without vipd.
    fn expected(&self) -> BTreeMap<String, Vec<IpAddr>> {
        let mut out = BTreeMap::new();
        for (i, eps) in self.endpoints.iter().enumerate() {
            let (_, vip, local) = service(i);
            let mut hops: Vec<IpAddr> = self
                .running
                .iter()
                .filter(|n| !local || eps.contains(n))
                .map(|n| Topology::node_v4(*n).parse().unwrap())
                .collect();
            hops.sort();
            if !hops.is_empty() {
                out.insert(format!("{vip}/32"), hops);
            }
        }
        out
    }
}

/// The router's table restricted to the Services' prefixes.
fn vip_table(router: &impl Tables) -> BTreeMap<String, Vec<IpAddr>> {
    router
        .table4()
        .into_iter()
        .filter(|(p, hops)| p.starts_with("198.19.") && !hops.is_empty())
        .collect()
}

fn diff(want: &BTreeMap<String, Vec<IpAddr>>, have: &BTreeMap<String, Vec<IpAddr>>) -> String {
    let mut lines = Vec::new();
    for (p, w) in want {
        match have.get(p) {
            Some(h) if h == w => {}
            h => lines.push(format!("{p}: want {w:?}, have {h:?}")),
        }
    }
    for p in have.keys().filter(|p| !want.contains_key(*p)) {
        lines.push(format!("{p}: want none, have {:?}", have[p]));
    }
    let n = lines.len();
    lines.truncate(8);
    format!("{n} prefixes differ: {}", lines.join("; "))
}

/// RSS (KiB) and open descriptors of a process.
type Usage = (u64, usize);

#[derive(Default)]
struct Report {
    faults: BTreeMap<Fault, usize>,
    /// Per fault kind, the slowest convergence.
    slowest: BTreeMap<Fault, Duration>,
    violations: Vec<String>,
    /// Per agent process (pid): its node, first and last usage.
    usage: BTreeMap<u32, (usize, Usage, Usage)>,
}

impl Report {
    fn sample(&mut self, agents: &mut [Vipd]) {
        for (i, a) in agents.iter_mut().enumerate() {
            if let Some(pid) = a.pid().filter(|_| a.is_running()) {
                if let Some(u) = support::proc_usage(pid) {
                    self.usage
                        .entry(pid)
                        .and_modify(|e| e.2 = u)
                        .or_insert((i, u, u));
                }
            }
        }
    }

    fn summary(&self, router: &str, ran: Duration, seed: u64) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(f, n)| format!("{f:?} {n} (slowest {:.1?})", self.slowest[f]))
            .collect();
        let usage: Vec<String> = self
            .usage
            .values()
            .map(|(i, a, b)| format!("node{i}: RSS {} → {} KiB, fds {} → {}", a.0, b.0, a.1, b.1))
            .collect();
        format!(
            "chaos against {router}: {:.0?} run, seed {seed}, {} faults: {}; violations: {}{}; agents: {}",
            ran,
            self.faults.values().sum::<usize>(),
            faults.join(", "),
            self.violations.len(),
            support::chaos::listed(&self.violations),
            usage.join("; ")
        )
    }
}

async fn put_endpoints(client: &Client, i: usize, nodes: &BTreeSet<usize>) {
    let (name, _, _) = service(i);
    let ips: Vec<String> = nodes
        .iter()
        .map(|n| format!("10.244.{n}.{}", 10 + i % 200))
        .collect();
    let names: Vec<String> = nodes.iter().map(|n| format!("node{n}")).collect();
    let eps: Vec<Ep> = ips
        .iter()
        .zip(&names)
        .map(|(ip, node)| Ep::ready(ip, node))
        .collect();
    let slice = cluster::slice(&name, &format!("{name}-1"), &eps);
    cluster::put_slice(client, &slice).await;
}

fn run_chaos<R: Router + Tables + Send + Sync>() {
    let mut run = chaos::Run::from_env();
    let seed = run.seed;
    let topo = Topology::with_nodes(NODES);
    let mut router = R::new(&topo, RouterConfig::nodes(NODES));
    router.start();
    let dir = tempfile::tempdir().unwrap();
    let tor = topo.tor.clone();
    let summary = in_netns(&tor, async {
        let mut api = cluster::api_server().await;
        let addr = api.addr();
        let client = api.client();
        let mut world = World {
            endpoints: Vec::new(),
            running: BTreeSet::new(),
        };
        for n in 0..NODES {
            cluster::create_node(&client, &format!("node{n}")).await;
        }
        for i in 0..SERVICES {
            let (name, vip, local) = service(i);
            cluster::create_service(&client, &cluster::lb_service(&name, &vip, local)).await;
            let nodes = BTreeSet::from([run.rng.usize(0..NODES)]);
            put_endpoints(&client, i, &nodes).await;
            world.endpoints.push(nodes);
        }
        let mut agents: Vec<Vipd> = (0..NODES)
            .map(|n| {
                let kubeconfig = cluster::node_kubeconfig(dir.path(), n, addr.port());
                let mut a = Vipd::services(&topo, n, &kubeconfig, &[("RUST_LOG", "info")]);
                a.start();
                a
            })
            .collect();
        world.running = (0..NODES).collect();
        let mut report = Report::default();
        let explain = |agents: &[Vipd], router: &R| -> String {
            let mut s = format!("---- {} ----\n{}", R::NAME, router.log_tail());
            for (i, a) in agents.iter().enumerate() {
                s.push_str(&format!("\n---- agent {i} ----\n{}", a.log_tail()));
            }
            s
        };
        // Converges within `budget`, or a violation.
        async fn converge<R: Tables + Sync>(
            router: &R,
            world: &World,
            budget: Duration,
            what: &str,
            report: &mut Report,
            fault: Fault,
        ) {
            let t0 = Instant::now();
            let want = world.expected();
            loop {
                let have = vip_table(router);
                if have == want {
                    let took = t0.elapsed();
                    let slowest = report.slowest.entry(fault).or_default();
                    *slowest = (*slowest).max(took);
                    return;
                }
                if t0.elapsed() > budget {
                    report.violations.push(format!(
                        "{what}: not converged in {budget:?}: {}",
                        diff(&want, &have)
                    ));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        converge(
            &router,
            &world,
            Duration::from_secs(60),
            "start",
            &mut report,
            Fault::EndpointsMove,
        )
        .await;
        assert!(
            report.violations.is_empty(),
            "{:?}\n{}",
            report.violations,
            explain(&agents, &router)
        );
        report.slowest.clear();
        report.sample(&mut agents);
        run.begin();
        while let Some(fault) = run.next(&ALL) {
            *report.faults.entry(fault).or_default() += 1;
            let before = vip_table(&router);
            let mut withdrawn: BTreeSet<String> = BTreeSet::new();
            // Samples the table while an API fault lasts: nothing that was there may go.
            let mut watch_api = |report: &mut Report, have: &BTreeMap<String, Vec<IpAddr>>| {
                for (p, hops) in &before {
                    let now = have.get(p);
                    if now != Some(hops) && withdrawn.insert(p.clone()) {
                        report.violations.push(format!(
                            "{fault:?}: {p} changed from {hops:?} to {now:?} while only the API server misbehaved"
                        ));
                    }
                }
            };
            let budget = match fault {
                Fault::EndpointsMove => {
                    for _ in 0..10 {
                        let i = run.rng.usize(0..SERVICES);
                        let nodes = BTreeSet::from([run.rng.usize(0..NODES)]);
                        put_endpoints(&client, i, &nodes).await;
                        world.endpoints[i] = nodes;
                    }
                    // A watch may be waiting out its backoff (at most 8 s) after an API fault.
                    Duration::from_secs(15)
                }
                Fault::AgentKill => {
                    let n = run.rng.usize(0..NODES);
                    agents[n].kill();
                    world.running.remove(&n);
                    converge(
                        &router,
                        &world,
                        Duration::from_secs(15),
                        "agent killed",
                        &mut report,
                        fault,
                    )
                    .await;
                    tokio::time::sleep(Duration::from_millis(run.rng.u64(0..2000))).await;
                    agents[n].start();
                    world.running.insert(n);
                    Duration::from_secs(30)
                }
                Fault::RouterKill => {
                    router.restart_after_kill();
                    // vipd's connect backoff tops out at 30 s; then a session and the table.
                    Duration::from_secs(50)
                }
                Fault::LinkFlap => {
                    let n = run.rng.usize(0..NODES);
                    let ns = &topo.nodes[n];
                    run_ok("ip", &["-n", ns, "link", "set", "veth-tor", "down"]);
                    tokio::time::sleep(Duration::from_millis(run.rng.u64(500..4000))).await;
                    run_ok("ip", &["-n", ns, "link", "set", "veth-tor", "up"]);
                    Duration::from_secs(50)
                }
                Fault::Netem => {
                    // 10% loss both ways (nftables) and a 256 kbit/s bottleneck (tbf) on one
                    // node's link for 5 s. (This kernel has no sch_netem for added delay.)
                    let n = run.rng.usize(0..NODES);
                    let ns = &topo.nodes[n];
                    let nft = "add table inet chaos\n\
                        add chain inet chaos out { type filter hook output priority 0; }\n\
                        add chain inet chaos in { type filter hook input priority 0; }\n\
                        add rule inet chaos out oifname veth-tor numgen random mod 10 < 1 drop\n\
                        add rule inet chaos in iifname veth-tor numgen random mod 10 < 1 drop\n";
                    let script = dir.path().join("loss.nft");
                    std::fs::write(&script, nft).unwrap();
                    run_ok(
                        "ip",
                        &[
                            "netns",
                            "exec",
                            ns,
                            "nft",
                            "-f",
                            &support::path_str(&script),
                        ],
                    );
                    run_ok(
                        "ip",
                        &[
                            "netns", "exec", ns, "tc", "qdisc", "add", "dev", "veth-tor", "root",
                            "tbf", "rate", "256kbit", "burst", "16kbit", "latency", "200ms",
                        ],
                    );
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    run_ok(
                        "ip",
                        &[
                            "netns", "exec", ns, "tc", "qdisc", "del", "dev", "veth-tor", "root",
                        ],
                    );
                    run_ok(
                        "ip",
                        &[
                            "netns", "exec", ns, "nft", "delete", "table", "inet", "chaos",
                        ],
                    );
                    Duration::from_secs(30)
                }
                Fault::ApiRestart | Fault::Watch410 => {
                    if fault == Fault::Watch410 {
                        // Every watch resumes from before the compaction: 410, then a re-list.
                        api.compact();
                    }
                    let store = api.stop().await;
                    for _ in 0..8 {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        watch_api(&mut report, &vip_table(&router));
                    }
                    api = ApiServer::start_with(store, addr)
                        .await
                        .expect("API server back");
                    for _ in 0..12 {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        watch_api(&mut report, &vip_table(&router));
                    }
                    Duration::from_secs(10)
                }
                Fault::Api500 | Fault::ApiSlow => {
                    api.set_faults(if fault == Fault::Api500 {
                        Faults {
                            errors_per_mille: 700,
                            delay: Duration::ZERO,
                        }
                    } else {
                        Faults {
                            errors_per_mille: 0,
                            delay: Duration::from_secs(3),
                        }
                    });
                    for _ in 0..20 {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        watch_api(&mut report, &vip_table(&router));
                    }
                    api.set_faults(Faults::default());
                    Duration::from_secs(15)
                }
            };
            converge(
                &router,
                &world,
                budget,
                &format!("{fault:?}"),
                &mut report,
                fault,
            )
            .await;
            report.sample(&mut agents);
            if !report.violations.is_empty() {
                eprintln!("{}", explain(&agents, &router));
                break;
            }
        }
        let ran = run.elapsed();
        // Flat: no agent process grew its descriptors, or its RSS beyond a margin.
        for (pid, (i, first, last)) in &report.usage {
            if last.1 > first.1 + 16 {
                report
                    .violations
                    .push(format!("node{i} (pid {pid}): fds {} → {}", first.1, last.1));
            }
            if last.0 > first.0 * 3 / 2 + 16 * 1024 {
                report.violations.push(format!(
                    "node{i} (pid {pid}): RSS {} → {} KiB",
                    first.0, last.0
                ));
            }
        }
        // Stop: every route goes (Cease), nothing is left on the nodes.
        for a in agents.iter_mut() {
            a.terminate();
            if a.wait_exit(Duration::from_secs(10)).is_none() {
                report
                    .violations
                    .push("an agent did not exit within 10 s of SIGTERM".into());
            }
        }
        world.running.clear();
        converge(
            &router,
            &world,
            Duration::from_secs(10),
            "agents stopped",
            &mut report,
            Fault::AgentKill,
        )
        .await;
        for ns in &topo.nodes {
            let addrs = ns_stdout(ns, &["ip", "-o", "address"]);
            if addrs.contains("198.19.") {
                report
                    .violations
                    .push(format!("{ns}: a VIP address left behind: {addrs}"));
            }
            if ns_succeeds(
                ns,
                &["sh", "-c", "ip -o link show type macvlan | grep -q ."],
            ) {
                report
                    .violations
                    .push(format!("{ns}: a macvlan left behind"));
            }
        }
        report.summary(R::NAME, ran, seed)
    });
    eprintln!("==== {summary} ====");
    chaos::append_report(&summary);
    assert!(summary.contains("violations: 0;"), "seed {seed}: {summary}");
}

#[test]
fn chaos_against_bird_keeps_the_table_equal_to_what_the_api_calls_for() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS, TC);
    run_chaos::<Bird>();
}

#[test]
fn chaos_against_frr_keeps_the_table_equal_to_what_the_api_calls_for() {
    skip_unless!(root, Frr::NEEDS, VIPD_NEEDS, TC);
    run_chaos::<Frr>();
}

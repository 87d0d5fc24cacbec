//! Services mode benchmark (root; BIRD 2): how long from a Service being created in the API to
//! its route being in BIRD's table, over 1,000 Services (p50, p99, max), and the agent's memory
//! with 10,000 Services announced. The same bed as tests/services_bird.rs (`vipd_testbed::bed`): vipd's
//! in-process API server in the tor namespace, the real release `vipd manager --services` on
//! the node, BIRD as the router. Run: `sudo cargo bench --bench services` (see BENCHMARKS.md).
//!
//! Latency uses BIRD's own import stamps (`timeformat route "%s.%6f"`) against the wall clock
//! taken when the create request returned, so polling adds nothing to it.

#[allow(unused_macros, unused_imports)]
#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::Api;
use support::bed::BirdBed;
use support::bird::Bird;
use support::cluster::{self, in_netns};
use support::router::{Family, Router};

fn main() {
    if !support::prerequisites_met(&[Bird::NEEDS, support::VIPD_NEEDS].concat()) {
        return;
    }
    let n_latency: usize = env_or("VIPD_BENCH_SERVICES", 1000);
    let n_memory: usize = env_or("VIPD_BENCH_SERVICES_RSS", 10_000);
    println!(
        "vipd services benchmark: {} at {}",
        env!("CARGO_PKG_VERSION"),
        date()
    );
    let lat = run(n_latency);
    let mem = run(n_memory);
    println!();
    println!("| Services | created → route at BIRD p50 | p99 | max | all routes in BIRD after | vipd RSS | vipd peak RSS | idle CPU | stop → BIRD empty | cold start → all routes |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (n, o) in [(n_latency, &lat), (n_memory, &mem)] {
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} s | {:.1} MiB | {:.1} MiB | {:.2} % | {:.2} s | {:.2} s |",
            n,
            pct(&o.latencies, 50.0),
            pct(&o.latencies, 99.0),
            pct(&o.latencies, 100.0),
            o.converged.as_secs_f64(),
            o.rss_mib,
            o.hwm_mib,
            o.idle_cpu_pct,
            o.stop_to_empty.as_secs_f64(),
            o.cold_start.as_secs_f64()
        );
    }
}

struct Outcome {
    /// Per Service, ms from its create request returning to BIRD's import of its route.
    latencies: Vec<f64>,
    /// From the first create to BIRD holding every route.
    converged: Duration,
    rss_mib: f64,
    hwm_mib: f64,
    /// vipd's CPU over 10 s of quiet with every route in BIRD, in % of one core.
    idle_cpu_pct: f64,
    /// SIGTERM (a Cease: the bed's agents shut down on it) → BIRD holds none of the routes.
    stop_to_empty: Duration,
    /// The process started again → BIRD holds all N routes (one list, one burst).
    cold_start: Duration,
}

fn run(n: usize) -> Outcome {
    let bed = BirdBed::new(1);
    let bird = &bed.bird;
    in_netns(&bed.topo.tor, async {
        let (api, client) = bed.cluster(&[]).await;
        let mut agent = bed.agent(0, api.addr().port(), &[("RUST_LOG", "warn")]);
        eventually!(
            Duration::from_secs(20),
            "the session is up",
            bird.session_established(),
            agent.log_tail()
        );
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let mut created = BTreeMap::new();
        let start = Instant::now();
        for i in 0..n {
            let vip = format!("100.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
            let mut svc = cluster::lb_service(&format!("svc-{i}"), &vip, false);
            // No EndpointSlice needed: one request per Service, so the latency is the agent's.
            svc.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    "kube-vip.io/allow-reconcile-without-endpoints".into(),
                    "true".into(),
                );
            // As on a real cluster, 10,000 LoadBalancers do not fit the NodePort range.
            if let Some(spec) = svc.spec.as_mut() {
                spec.allocate_load_balancer_node_ports = Some(false);
            }
            as_kubectl_applied(&mut svc);
            services
                .create(&PostParams::default(), &svc)
                .await
                .expect("create service");
            created.insert(format!("{vip}/32"), unix_now());
        }
        eventually!(
            Duration::from_secs(600),
            format!("BIRD holds {n} routes"),
            bird.route_count(Family::Ipv4) == n,
            agent.log_tail()
        );
        let converged = start.elapsed();
        let pid = agent.pid().expect("vipd runs");
        let (rss_mib, hwm_mib) = memory(pid);
        let idle_cpu_pct = {
            let before = cpu_ticks(pid);
            std::thread::sleep(Duration::from_secs(10));
            let ticks = cpu_ticks(pid) - before;
            let hz: f64 = std::process::Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
                .unwrap_or(100.0);
            100.0 * ticks as f64 / hz / 10.0
        };
        let mut latencies: Vec<f64> = bird
            .import_times("master4")
            .into_iter()
            .filter_map(|(prefix, at)| Some((at - created.get(&prefix)?) * 1000.0))
            .collect();
        assert_eq!(latencies.len(), n, "every route has an import stamp");
        latencies.sort_by(f64::total_cmp);
        println!(
            "N={n}: all routes in BIRD {:.2} s after the first create; p50 {:.1} ms, p99 {:.1} ms; vipd RSS {rss_mib:.1} MiB (peak {hwm_mib:.1} MiB)",
            converged.as_secs_f64(),
            pct(&latencies, 50.0),
            pct(&latencies, 99.0)
        );
        // Cold start: the agent stopped (its Cease empties BIRD), then started again with the N
        // Services already in the API.
        let stopped = Instant::now();
        agent.terminate();
        eventually!(
            Duration::from_secs(120),
            "BIRD holds none of the routes after the stop",
            bird.route_count(Family::Ipv4) == 0,
            agent.log_tail()
        );
        let stop_to_empty = stopped.elapsed();
        agent
            .wait_exit(Duration::from_secs(30))
            .expect("the agent exits");
        let started = Instant::now();
        agent.start();
        eventually!(
            Duration::from_secs(300),
            format!("BIRD holds {n} routes again"),
            bird.route_count(Family::Ipv4) == n,
            agent.log_tail()
        );
        let cold_start = started.elapsed();
        println!(
            "N={n}: idle CPU {idle_cpu_pct:.2} % of a core; stop → BIRD empty {:.2} s; cold start → all routes {:.2} s",
            stop_to_empty.as_secs_f64(),
            cold_start.as_secs_f64()
        );
        api.stop().await;
        Outcome {
            latencies,
            converged,
            rss_mib,
            hwm_mib,
            idle_cpu_pct,
            stop_to_empty,
            cold_start,
        }
    })
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // After the command name (which may hold spaces) in parentheses: fields 3.. of proc(5).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields[i - 3].parse::<u64>().expect("a tick count");
    field(14) + field(15)
}

/// VmRSS and VmHWM of `pid`, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// The `p`th percentile of sorted `v` (nearest rank).
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn date() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// What `kubectl apply` leaves on a Service in a real API server, which the in-repo one does not
/// add by itself: the `last-applied-configuration` annotation (the object as applied) and the
/// server's `managedFields` entry for the client-side apply. `VIPD_BENCH_BARE=1` leaves them out.
fn as_kubectl_applied(svc: &mut Service) {
    if std::env::var("VIPD_BENCH_BARE").is_ok_and(|v| v == "1") {
        return;
    }
    let applied = serde_json::to_string(&svc).expect("serialize the Service");
    svc.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            applied,
        );
    let fields = serde_json::json!({
        "f:metadata": {"f:annotations": {".": {}, "f:kube-vip.io/allow-reconcile-without-endpoints": {},
            "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
        "f:spec": {"f:allocateLoadBalancerNodePorts": {}, "f:externalTrafficPolicy": {},
            "f:internalTrafficPolicy": {}, "f:loadBalancerIP": {},
            "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {},
                "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
            "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}},
    });
    svc.metadata.managed_fields = Some(vec![serde_json::from_value(serde_json::json!({
        "manager": "kubectl-client-side-apply", "operation": "Update",
        "apiVersion": "v1", "time": "2026-12-07T00:00:00Z",
        "fieldsType": "FieldsV1", "fieldsV1": fields,
    }))
    .expect("a managedFields entry")]);
}

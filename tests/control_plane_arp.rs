//! The control-plane VIP (`cp_enable`) in ARP mode, end to end: three control-plane nodes on
//! one LAN, each with a stand-in for its kube-apiserver (TLS on every address, certificate from
//! the cluster CA naming the VIP too) and the real `vipd manager --controlplane --arp`; one
//! Lease (`kube-system/plndr-cp-lock`) in the in-repo API server elects the holder. A client on
//! the LAN GETs `https://VIP:6443/livez` every 100 ms, verifying the certificate, as kubectl
//! would. Each fault — the holder's agent SIGKILLed (and restarted, as the kubelet does), a
//! SIGTERM, its API server stopped, its LAN link cut — may leave the client failing for at most
//! the lease duration plus one second, and a capture of the LAN must never show two MACs
//! answering for the VIP at once.
//!
//! ```text
//!   node<i> lan0 10.97.0.10+i ─ br0 (ns sw) ─ lan0 10.97.0.2 client (curl, arping, tcpdump)
//!   node<i> veth-tor ── tor (the API server holding the Lease)
//! ```

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use support::cluster::{self, in_netns};
use support::lan::{vip_on, Lan, Watch};
use support::livez::{Livez, Pki};
use support::netns::Topology;
use support::vipd::Vipd;
use support::{ns_succeeds, path_str, run_ok, VIPD_NEEDS};

const NEEDS: &[(&str, &str)] = &[
    ("tcpdump", "apt-get install tcpdump"),
    ("arping", "apt-get install iputils-arping"),
    ("curl", "apt-get install curl"),
];

const NODES: usize = 3;
const VIP: &str = "10.97.0.100";
const LEASE: Duration = Duration::from_secs(3);
/// The issue's budget for the client: the lease duration plus one second.
const BUDGET: Duration = LEASE.saturating_add(Duration::from_secs(1));

/// Node `i`'s agent: kube-vip's control-plane settings, ARP mode, no Services.
fn cp_env(i: usize, kubeconfig: &std::path::Path, ca: &std::path::Path) -> Vec<(String, String)> {
    [
        ("vip_arp", "true".to_owned()),
        ("cp_enable", "true".to_owned()),
        ("vip_address", VIP.to_owned()),
        ("vip_interface", "lan0".to_owned()),
        ("vip_nodename", format!("node{i}")),
        ("k8s_config_file", path_str(kubeconfig)),
        ("vip_leaseduration", "3".to_owned()),
        ("vip_renewdeadline", "2".to_owned()),
        ("vip_retryperiod", "0.5".to_owned()),
        ("vip_arpRate", "1000".to_owned()),
        ("control_plane_health_check_period_seconds", "1".to_owned()),
        ("control_plane_health_check_timeout_seconds", "1".to_owned()),
        (
            "control_plane_health_check_failure_threshold",
            "2".to_owned(),
        ),
        ("control_plane_health_check_ca_path", path_str(ca)),
        ("prometheus_server", "127.0.0.1:2112".to_owned()),
        ("RUST_LOG", "vipd=debug,info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn holder(client: &Client) -> Option<String> {
    let l = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get_opt("plndr-cp-lock")
        .await
        .ok()??;
    l.spec?.holder_identity.filter(|h| !h.is_empty())
}

async fn has_ip_label(client: &Client, node: &str) -> Option<String> {
    let n = Api::<Node>::all(client.clone()).get(node).await.ok()?;
    n.metadata.labels?.get("kube-vip.io/has-ip").cloned()
}

/// The one live node whose `lan0` holds the VIP, if exactly one does.
fn holder_of(topo: &Topology) -> Option<usize> {
    let on: Vec<usize> = (0..NODES)
        .filter(|i| vip_on(&topo.nodes[*i], VIP))
        .collect();
    (on.len() == 1).then(|| on[0])
}

/// The client's GETs: when, and whether each got a 200 with a verified certificate.
#[derive(Clone, Default)]
struct Samples(Arc<Mutex<Vec<(Instant, bool)>>>);

impl Samples {
    /// A thread in the client namespace: one GET every 100 ms until `stop`.
    fn run(
        &self,
        ns: &str,
        ca: &std::path::Path,
        stop: std::sync::mpsc::Receiver<()>,
    ) -> std::thread::JoinHandle<()> {
        let (ns, ca, out) = (ns.to_owned(), path_str(ca), self.0.clone());
        std::thread::spawn(move || {
            let url = format!("https://{VIP}:6443/livez");
            loop {
                let t = Instant::now();
                let ok = ns_succeeds(
                    &ns,
                    &[
                        "curl",
                        "-sf",
                        "-o",
                        "/dev/null",
                        "--max-time",
                        "0.5",
                        "--cacert",
                        &ca,
                        &url,
                    ],
                );
                out.lock().unwrap().push((t, ok));
                let next = t + Duration::from_millis(100);
                let wait = next.saturating_duration_since(Instant::now());
                if stop.recv_timeout(wait).is_ok() {
                    return;
                }
            }
        })
    }

    /// The longest time the client went without an answer after `from`: from its first
    /// failed GET to the next one that succeeded (still failing at the end: up to the last).
    fn longest_failure_since(&self, from: Instant) -> Duration {
        let samples = self.0.lock().unwrap();
        let mut longest = Duration::ZERO;
        let mut failing_since: Option<Instant> = None;
        for (t, ok) in samples.iter().filter(|(t, _)| *t >= from) {
            match (ok, failing_since) {
                (false, None) => failing_since = Some(*t),
                (true, Some(f)) => {
                    longest = longest.max(*t - f);
                    failing_since = None;
                }
                _ => {}
            }
        }
        if let (Some(f), Some((last, _))) = (failing_since, samples.last()) {
            longest = longest.max(*last - f);
        }
        longest
    }

    /// Whether every GET of the last `span` succeeded (and there were some).
    fn steady(&self, span: Duration) -> bool {
        let samples = self.0.lock().unwrap();
        let recent: Vec<bool> = samples
            .iter()
            .filter(|(t, _)| t.elapsed() <= span)
            .map(|(_, ok)| *ok)
            .collect();
        recent.len() >= 5 && recent.iter().all(|ok| *ok)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL of the holder's agent; the kubelet restarts it a second later. Its address stays
    /// meanwhile (and its kernel answers for it): the client need not notice at all.
    Kill,
    /// SIGTERM: the address goes, the Lease is released, another node takes it at once.
    Terminate,
    /// The holder's kube-apiserver stops: after period × threshold it stands down.
    StopApiServer,
    /// The holder's LAN link goes down (the API server, over its other link, is still there):
    /// it stands down at once, releasing the Lease.
    CutLan,
}

#[test]
fn the_control_plane_vip_follows_a_healthy_node_within_the_lease_duration_and_one_second() {
    skip_unless!(root, VIPD_NEEDS, NEEDS, support::livez::NEEDS);
    let topo = Topology::with_nodes(NODES);
    let lan = Lan::new(&topo);
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::for_addresses("cluster-ca", &[VIP]);
    let mut servers: Vec<Livez> = topo
        .nodes
        .iter()
        .map(|ns| {
            let mut s = Livez::on_every_address(ns, 6443, &pki);
            s.start();
            s
        })
        .collect();
    let watch = Watch::start(&lan, dir.path(), VIP);
    let samples = Samples::default();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let getter = samples.run(&lan.client, &pki.ca, stop_rx);
    let tor = topo.tor.clone();
    let report = in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let mut agents = Vec::new();
        for i in 0..NODES {
            cluster::create_node(&client, &format!("node{i}")).await;
            let kubeconfig = cluster::node_kubeconfig(dir.path(), i, api.addr().port());
            let mut a = Vipd::with_env(&topo, i, cp_env(i, &kubeconfig, &pki.ca));
            a.start();
            agents.push(a);
        }
        let explain = |agents: &[Vipd]| -> String {
            agents
                .iter()
                .enumerate()
                .map(|(i, a)| format!("---- agent {i} ----\n{}\n", a.log_tail()))
                .collect()
        };
        eventually!(
            Duration::from_secs(20),
            "the client reaches the API servers through the VIP",
            samples.steady(Duration::from_secs(1)),
            explain(&agents)
        );
        let mut report = Vec::new();
        let faults = [
            Fault::Kill,
            Fault::Terminate,
            Fault::StopApiServer,
            Fault::CutLan,
            Fault::StopApiServer,
            Fault::CutLan,
        ];
        for fault in faults {
            eventually!(
                Duration::from_secs(10),
                "one node holds the VIP, leads the Lease and is labelled",
                {
                    let on = holder_of(&topo);
                    let lease = holder(&client).await;
                    match on {
                        Some(i) => {
                            let name = format!("node{i}");
                            lease.as_deref() == Some(name.as_str())
                                && has_ip_label(&client, &name).await.as_deref() == Some(VIP)
                        }
                        None => false,
                    }
                },
                explain(&agents)
            );
            let old = holder_of(&topo).unwrap();
            let ns = topo.nodes[old].clone();
            for (i, other) in topo.nodes.iter().enumerate().filter(|(i, _)| *i != old) {
                assert_eq!(
                    has_ip_label(&client, &format!("node{i}")).await,
                    None,
                    "only the holder is labelled ({other})"
                );
            }
            let (_, metrics) = in_netns(&ns, cluster::http_get("127.0.0.1:2112", "/metrics"));
            let leader =
                format!("kube_vip_is_leader{{node=\"node{old}\",lease_name=\"plndr-cp-lock\"}} 1");
            assert!(
                metrics.contains(&leader),
                "the holder reports kube_vip_is_leader for the control-plane Lease:\n{}",
                metrics
                    .lines()
                    .filter(|l| l.contains("is_leader"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            // A standby says why it does not hold the VIP.
            let standby = (old + 1) % NODES;
            let (_, status) = in_netns(
                &topo.nodes[standby],
                cluster::http_get("127.0.0.1:2112", "/status"),
            );
            assert!(
                status.contains("(control plane: cp_enable)") && status.contains("NotLeader"),
                "node{standby}'s /status: {status}"
            );
            let t0 = Instant::now();
            match fault {
                Fault::Kill => {
                    agents[old].kill();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    agents[old].start();
                }
                Fault::Terminate => {
                    assert!(
                        agents[old].terminate_cleanly(),
                        "vipd exits cleanly on SIGTERM\n{}",
                        explain(&agents)
                    );
                    assert!(!vip_on(&ns, VIP), "SIGTERM removed the VIP from node{old}");
                }
                Fault::StopApiServer => servers[old].kill(),
                Fault::CutLan => run_ok("ip", &["-n", &ns, "link", "set", "lan0", "down"]),
            }
            // Kill: any live node may end up holding it (the restarted agent renews its own
            // Lease if it is back in time). The others: another node.
            let moved = |on: Option<usize>| match fault {
                Fault::Kill => on.is_some(),
                _ => on.is_some_and(|i| i != old),
            };
            eventually!(
                BUDGET + Duration::from_secs(6),
                "another healthy node holds the VIP and the client is answered again",
                moved(holder_of(&topo)) && samples.steady(Duration::from_millis(500)),
                explain(&agents)
            );
            let failed = samples.longest_failure_since(t0);
            eprintln!(
                "==== {fault:?} of node{old}: the client went unanswered for {failed:?} ===="
            );
            report.push((fault, failed));
            if std::env::var_os("CP_DUMP_LOGS").is_some() {
                eprintln!("---- node{old} after {fault:?} ----\n{}", agents[old].log());
            }
            assert!(
                failed <= BUDGET,
                "{fault:?}: the client went unanswered for {failed:?} (> {BUDGET:?})\n{}",
                explain(&agents)
            );
            // Repair; the node comes back as a standby.
            match fault {
                Fault::Kill => {}
                Fault::Terminate => agents[old].start(),
                Fault::StopApiServer => servers[old].start(),
                Fault::CutLan => {
                    assert!(!vip_on(&ns, VIP), "node{old} took the VIP off its cut link");
                    run_ok("ip", &["-n", &ns, "link", "set", "lan0", "up"]);
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        report
    });
    let _ = stop_tx.send(());
    getter.join().unwrap();
    let seen = watch.finish(std::env::var_os("CP_KEEP_CAPTURE").as_deref());
    eprintln!(
        "==== {} faults {:?}; capture: {} client rounds ({} answered), {} claiming frames from {} MACs, {} overlaps ====",
        report.len(),
        report,
        seen.rounds.len(),
        seen.answered(),
        seen.claims.len(),
        seen.macs().len(),
        seen.overlaps.len()
    );
    assert!(
        seen.answered() >= 100,
        "the capture saw the VIP answered ({} of {} rounds)",
        seen.answered(),
        seen.rounds.len()
    );
    assert!(
        seen.macs().len() >= 2,
        "the capture saw more than one holder: {:?}",
        seen.macs()
    );
    assert!(
        seen.overlaps.is_empty(),
        "two MACs answered for {VIP} at once:\n{}",
        seen.overlaps.join("\n")
    );
    drop(lan);
}

/// Bootstrap, as under `kubeadm init` with kube-vip's static Pod: the agent's kubeconfig names
/// the control-plane VIP (as admin.conf does), which is not up yet, so it talks to the API
/// server named by `kubernetes_addr` instead (kube-vip's setting; its static Pod reaches the
/// node's own API server as `kubernetes`). The node's API server answers only 5 s after the
/// agent started: nothing is claimed before, the VIP comes up once it answers and stays.
#[test]
fn an_agent_started_before_its_api_server_claims_the_vip_once_it_answers_and_keeps_it() {
    skip_unless!(root, VIPD_NEEDS, NEEDS, support::livez::NEEDS);
    let topo = Topology::with_nodes(1);
    let _lan = Lan::new(&topo);
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::for_addresses("cluster-ca", &[VIP]);
    let tor = topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        let admin_conf = dir.path().join("admin.conf");
        cluster::write_kubeconfig(&admin_conf, &format!("http://{VIP}:6443"));
        let mut env = cp_env(0, &admin_conf, &pki.ca);
        env.push((
            "kubernetes_addr".into(),
            format!("http://{}:{}", Topology::tor_v4(0), api.addr().port()),
        ));
        let mut agent = Vipd::with_env(&topo, 0, env);
        agent.start();
        let ns = topo.nodes[0].clone();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            assert!(
                !vip_on(&ns, VIP),
                "nothing is claimed while no API server answers\n{}",
                agent.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut server = Livez::on_every_address(&ns, 6443, &pki);
        server.start();
        eventually!(
            Duration::from_secs(5),
            "the VIP is claimed once the API server answers",
            vip_on(&ns, VIP) && holder(&client).await.as_deref() == Some("node0"),
            agent.log_tail()
        );
        // An operator's drain signal, meant for BGP mode, neither ends ARP mode nor moves the VIP.
        assert!(agent.signal("USR1"), "vipd is not running");
        let t1 = Instant::now();
        while t1.elapsed() < Duration::from_secs(5) {
            assert!(vip_on(&ns, VIP), "the VIP stays\n{}", agent.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            agent.is_running(),
            "SIGUSR1 ended vipd\n{}",
            agent.log_tail()
        );
        let log = agent.log();
        assert!(
            log.contains("ARP mode has none to mark and ignores them"),
            "{}",
            agent.log_tail()
        );
        assert!(
            log.contains("talking to this API server instead of the kubeconfig's"),
            "{}",
            agent.log_tail()
        );
        assert!(
            log.contains("this node's API server fails its health check"),
            "the wait is explained: {}",
            agent.log_tail()
        );
        server.kill();
    });
}

/// Hybrid in ARP mode: one agent holds the control-plane VIP (its own Lease, gated on its API
/// server) and a Service's VIP (the Service's Lease) on the same link; the API server stopping
/// releases only the control-plane VIP and its Lease.
#[test]
fn hybrid_one_agent_holds_the_control_plane_vip_and_a_services_vip_each_on_its_own_lease() {
    skip_unless!(root, VIPD_NEEDS, NEEDS, support::livez::NEEDS);
    const SVC_VIP: &str = "10.97.0.60";
    let topo = Topology::with_nodes(1);
    let lan = Lan::new(&topo);
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::for_addresses("cluster-ca", &[VIP]);
    let ns = topo.nodes[0].clone();
    let mut server = Livez::on_every_address(&ns, 6443, &pki);
    server.start();
    let tor = topo.tor.clone();
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        cluster::create_served(
            &client,
            &cluster::lb_service("web", SVC_VIP, false),
            "node0",
            "10.244.0.5",
        )
        .await;
        let kubeconfig = cluster::node_kubeconfig(dir.path(), 0, api.addr().port());
        let mut env = cp_env(0, &kubeconfig, &pki.ca);
        env.push(("svc_enable".into(), "true".into()));
        env.push(("svc_election".into(), "true".into()));
        let mut agent = Vipd::with_env(&topo, 0, env);
        agent.start();
        eventually!(
            Duration::from_secs(15),
            "both VIPs are on node0's link, each under its own Lease, the Service's status set",
            vip_on(&ns, VIP)
                && vip_on(&ns, SVC_VIP)
                && holder(&client).await.as_deref() == Some("node0")
                && cluster::ingress(&client, "web").await == [SVC_VIP.to_string()],
            agent.log_tail()
        );
        for vip in [VIP, SVC_VIP] {
            assert!(
                ns_succeeds(&lan.client, &["ping", "-c1", "-W1", vip]),
                "the client reaches {vip}"
            );
        }
        server.kill();
        eventually!(
            Duration::from_secs(4),
            "the control-plane VIP and its Lease go; the Service's VIP stays",
            !vip_on(&ns, VIP) && holder(&client).await.is_none(),
            agent.log_tail()
        );
        assert!(vip_on(&ns, SVC_VIP), "the Service's VIP stays");
        let lease = Api::<Lease>::namespaced(client.clone(), "default")
            .get("kubevip-web")
            .await
            .expect("the Service's Lease");
        assert_eq!(
            lease.spec.and_then(|s| s.holder_identity).as_deref(),
            Some("node0")
        );
    });
}

//! Graceful restart (RFC 4724, vipd's default) against the real routers, which are helpers by
//! default: a restarted or crashed vipd costs no route (the routers keep them as stale until the
//! new process sends them again), while a stop on a node that goes away (cordoned, here) still
//! withdraws every route at once. Root, BIRD 2 and FRR needed; skipped loudly otherwise.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use support::bed::BirdBed;
use support::bird::Bird;
use support::cluster::{self, in_netns, lb_service};
use support::frr::Frr;
use support::router::{Family, Router};
use support::{scenarios, VIPD_NEEDS};

const WEB: &str = "198.18.0.10/32";

/// Inside the tor namespace: the API server with node0, the agent of node0 started with
/// `settings`, a Service `web` (198.18.0.10) served by node0 and in BIRD's table; then a
/// SIGTERM, which the agent survives cleanly (exit 0).
async fn serve_web_then_restart(
    bed: &mut BirdBed,
    settings: &[(&str, &str)],
) -> (fake_apiserver::ApiServer, kube::Client) {
    let (api, client) = bed.cluster(&[("web", "198.18.0.10", true)]).await;
    bed.start_agent(0, api.addr().port(), settings);
    eventually!(
        Duration::from_secs(20),
        "BIRD holds 198.18.0.10/32",
        bed.bird.route(WEB).is_some(),
        bed.explain()
    );
    bed.agents[0].terminate();
    assert!(
        bed.agents[0]
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "{}",
        bed.explain()
    );
    (api, client)
}

#[test]
fn bird_keeps_every_route_through_ten_restarts_and_crashes() {
    scenarios::graceful_restart_keeps_every_route::<Bird>();
}

#[test]
fn frr_keeps_every_route_through_ten_restarts_and_crashes() {
    scenarios::graceful_restart_keeps_every_route::<Frr>();
}

/// Services mode with graceful restart on: SIGTERM on a node that stays leaves BIRD the route
/// (and the new process takes it up). Cordoning the node (what `kubectl drain` does first) marks
/// its routes with GRACEFUL_SHUTDOWN (RFC 8326), withdrawn after `vipd_bgp_drain_time` (3 s);
/// uncordoning brings them back unmarked; a SIGTERM while it is cordoned is a shutdown: a
/// Cease, and BIRD holds nothing within a second although its hold time is 90 s and the restart
/// time 120 s.
#[test]
fn a_cordoned_node_marks_its_routes_for_graceful_shutdown_and_its_stop_withdraws_them() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let mut bed = BirdBed::new(1);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let gr = [
            ("vipd_bgp_restart_time", "120"),
            ("vipd_bgp_drain_time", "3"),
        ];
        let (_api, client) = serve_web_then_restart(&mut bed, &gr).await;
        let held = |bed: &BirdBed| bed.bird.route(WEB).is_some();
        // A plain SIGTERM: a restart. The route stays while no vipd runs.
        support::holds_for(
            Duration::from_secs(3),
            "BIRD keeps the route of a restarting vipd",
            || held(&bed),
            || bed.explain(),
        );
        assert!(
            bed.agents[0].log().contains("stopping for a restart"),
            "{}",
            bed.explain()
        );
        bed.agents[0].start();
        eventually!(
            Duration::from_secs(20),
            "the new process's session is up with the route",
            bed.bird.session_established() && held(&bed),
            bed.explain()
        );
        // Cordoned: the routes stay, marked for graceful shutdown (RFC 8326), so BIRD (or a
        // policy on it) can prefer any other path; uncordoned, the mark goes.
        let nodes: Api<Node> = Api::all(client.clone());
        let cordon = |on: bool| {
            let nodes = nodes.clone();
            async move {
                nodes
                    .patch(
                        "node0",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"unschedulable": on}})),
                    )
                    .await
                    .expect("cordon or uncordon node0")
            }
        };
        let marked = |bed: &BirdBed| {
            bed.bird
                .route_all("198.18.0.10/32")
                .contains("BGP.community: (65535,0)")
        };
        let cordoned = Instant::now();
        cordon(true).await;
        eventually!(
            Duration::from_secs(10),
            "BIRD's route carries GRACEFUL_SHUTDOWN (65535,0) once node0 is cordoned",
            held(&bed) && marked(&bed),
            format!(
                "{}\n{}",
                bed.bird.route_all("198.18.0.10/32"),
                bed.explain()
            )
        );
        // After vipd_bgp_drain_time (3 s) with the mark, the route goes while vipd runs.
        eventually!(
            Duration::from_secs(10),
            "the route is withdrawn once the drain time is over",
            !held(&bed),
            bed.explain()
        );
        let drained = cordoned.elapsed();
        assert!(
            drained >= Duration::from_millis(2900),
            "withdrawn {drained:?} after the cordon, before the 3 s drain time\n{}",
            bed.explain()
        );
        assert!(
            bed.agents[0].log().contains("vipd_bgp_drain_time is over"),
            "{}",
            bed.explain()
        );
        cordon(false).await;
        eventually!(
            Duration::from_secs(10),
            "uncordoned, the route is back without the mark",
            held(&bed) && !marked(&bed),
            bed.explain()
        );
        // Cordoned again: the next SIGTERM is a shutdown.
        cordon(true).await;
        eventually!(
            Duration::from_secs(10),
            "marked again",
            marked(&bed),
            bed.explain()
        );
        let sent = Instant::now();
        bed.agents[0].terminate();
        support::wait_until_or_explain(
            Duration::from_secs(1),
            "BIRD holds no route from vipd within 1 s of SIGTERM on a cordoned node",
            || bed.bird.route_count(Family::Ipv4) == 0,
            || bed.explain(),
        );
        let emptied = sent.elapsed();
        assert!(
            bed.agents[0]
                .wait_exit(Duration::from_secs(10))
                .is_some_and(|s| s.success()),
            "{}",
            bed.explain()
        );
        let log = bed.agents[0].log();
        assert!(
            log.contains("shutting down: the node is cordoned"),
            "the log says why the stop is a shutdown\n{}",
            bed.explain()
        );
        eprintln!("cordoned node: BIRD empty {emptied:.1?} after SIGTERM");
    });
}

/// Traffic through FRR (zebra installs its routes in the kernel) to one of 1,000 VIPs on the
/// node while vipd is restarted ten times, alternately by SIGTERM and SIGKILL: with graceful
/// restart not one echo request of 1,000 a second is lost and the replies never pause for
/// 100 ms; restarts with `vipd_bgp_restart_time=0` (every stop a Cease, as before; four of
/// them) leave the client without a route for each gap, measured in the same run.
/// Services mode, restarted while the API server answers slowly (3 s per request, as a loaded
/// API server or a large cluster's first list): the new process's session comes up long before
/// it knows its Services. It must send neither an empty table nor End-of-RIB until it does, or
/// BIRD (a graceful-restart helper) would drop the previous process's route as no longer
/// announced. Sampled every 50 ms from the stop until the new process has sent it again.
#[test]
fn a_restart_whose_first_list_is_slow_keeps_the_route_until_the_table_is_known() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let mut bed = BirdBed::new(1);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let (api, _client) =
            serve_web_then_restart(&mut bed, &[("vipd_bgp_restart_time", "120")]).await;
        let held = |bed: &BirdBed| bed.bird.route(WEB).is_some();
        api.set_faults(fake_apiserver::Faults {
            errors_per_mille: 0,
            delay: Duration::from_secs(3),
        });
        bed.agents[0].start();
        let started = Instant::now();
        eventually!(
            Duration::from_secs(10),
            "the new process's session is up",
            bed.bird.session_established(),
            bed.explain()
        );
        let up_after = started.elapsed();
        // From the session's start until the table is known and sent: never missing.
        let mut samples = 0;
        while started.elapsed() < Duration::from_secs(8) {
            assert!(
                held(&bed),
                "BIRD dropped the route {:?} after the new process started (session up after {up_after:?})\n{}",
                started.elapsed(),
                bed.explain()
            );
            samples += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api.set_faults(fake_apiserver::Faults::default());
        assert!(
            up_after < Duration::from_secs(3),
            "the session came up after {up_after:?}, not before the slow first list: the test proves nothing"
        );
        eprintln!(
            "==== session up {up_after:?} after start; route held at all {samples} samples ===="
        );
        assert!(
            bed.agents[0]
                .log()
                .contains("announced from this node by BGP"),
            "{}",
            bed.explain()
        );
    });
}

#[test]
fn frr_forwards_every_packet_through_ten_restarts_with_graceful_restart() {
    skip_unless!(
        root,
        Frr::NEEDS,
        VIPD_NEEDS,
        &[("ping", "apt-get install iputils-ping")]
    );
    let gr = scenarios::pings_through_restarts::<Frr>("120", 10);
    // Four are enough to show the gap each Cease leaves.
    let cease = scenarios::pings_through_restarts::<Frr>("0", 4);
    for (what, t) in [("graceful restart", gr), ("Cease", cease)] {
        eprintln!(
            "frr, restarts at 1,000 pps, {what}: {} sent, {} answered, {} refused for want of a \
             route, longest silence {:.3?}",
            t.sent, t.received, t.errors, t.longest_silence
        );
    }
    assert_eq!(
        (gr.received, gr.errors),
        (gr.sent, 0),
        "graceful restart lost packets: {gr:?}"
    );
    assert!(
        gr.longest_silence < Duration::from_millis(100),
        "graceful restart: {gr:?}"
    );
    assert!(
        cease.longest_silence > Duration::from_millis(500),
        "without graceful restart the gaps must show (else this test cannot fail): {cease:?}"
    );
}

/// The same through BIRD (its kernel protocol exporting the routes), with graceful restart:
/// four restarts, SIGTERM and SIGKILL, not one echo request lost.
#[test]
fn bird_forwards_every_packet_through_restarts_with_graceful_restart() {
    skip_unless!(
        root,
        Bird::NEEDS,
        VIPD_NEEDS,
        &[("ping", "apt-get install iputils-ping")]
    );
    let t = scenarios::pings_through_restarts::<Bird>("120", 4);
    eprintln!("bird, 4 restarts at 1,000 pps, graceful restart: {t:?}");
    assert_eq!((t.received, t.errors), (t.sent, 0), "lost packets: {t:?}");
    assert!(t.longest_silence < Duration::from_millis(100), "{t:?}");
}

/// The next hops of the router's kernel route for `vip` (ECMP: one per `nexthop via`).
fn fib_hops(tor: &str, vip: &str) -> Vec<String> {
    let out = support::ns_stdout(tor, &["ip", "route", "show", vip]);
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut hops: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_owned())
        .collect();
    hops.sort();
    hops
}

/// Echo requests namespace `ns` has answered so far.
fn echoes(ns: &str) -> u64 {
    support::ns_stdout(ns, &["nstat", "-asz", "IcmpInEchos"])
        .lines()
        .find_map(|l| {
            l.strip_prefix("IcmpInEchos")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Two nodes announce one VIP; BIRD installs both paths in its kernel (ECMP) and ranks a path
/// marked GRACEFUL_SHUTDOWN last (RFC 8326's policy). A client on the router pings the VIP
/// 1,000 times a second. The node its packets reach is cordoned: its route is marked, the
/// router's kernel moves the traffic to the other node while BIRD still holds the marked path,
/// and only after `vipd_bgp_drain_time` (3 s) is that path withdrawn. Not one request is lost.
#[test]
fn draining_a_node_moves_its_traffic_before_its_route_goes() {
    skip_unless!(
        root,
        Bird::NEEDS,
        VIPD_NEEDS,
        &[("ping", "apt-get install iputils-ping")]
    );
    const VIP: &str = "198.18.0.10";
    let mut bed = BirdBed::with(2, |c| c.kernel_ecmp());
    for i in 0..2 {
        // The address kube-proxy would answer on.
        support::run_ok(
            "ip",
            &["-n", &bed.node(i), "address", "add", VIP, "dev", "lo"],
        );
    }
    let tor = bed.topo.tor.clone();
    let hop = |i: usize| format!("10.99.{i}.1");
    in_netns(&tor, async {
        let api = cluster::api_server().await;
        let client = api.client();
        let drain = [
            ("vipd_bgp_restart_time", "120"),
            ("vipd_bgp_drain_time", "3"),
        ];
        for i in 0..2 {
            cluster::create_node(&client, &format!("node{i}")).await;
            bed.start_agent(i, api.addr().port(), &drain);
        }
        cluster::create_served(
            &client,
            &lb_service("web", VIP, false),
            "node0",
            "10.244.0.5",
        )
        .await;
        eventually!(
            Duration::from_secs(20),
            "the router's kernel sends the VIP to both nodes",
            fib_hops(&tor, VIP) == [hop(0), hop(1)],
            format!(
                "{}\n{}",
                support::ns_stdout(&tor, &["ip", "route"]),
                bed.explain()
            )
        );
        let log = tempfile::NamedTempFile::new().expect("ping log");
        let mut ping = std::process::Command::new(support::tool("ip"))
            .args([
                "netns", "exec", &tor, "ping", "-D", "-n", "-i", "0.001", "-W", "1",
            ])
            .args(["-c", "9000", VIP])
            .stdout(log.reopen().expect("ping log handle"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ping");
        let before: Vec<u64> = (0..2).map(|i| echoes(&bed.node(i))).collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = (0..2)
            .max_by_key(|&i| echoes(&bed.node(i)) - before[i])
            .unwrap_or(0);
        let other = 1 - busy;
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .patch(
                &format!("node{busy}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": true}})),
            )
            .await
            .expect("cordon the busy node");
        let cordoned = Instant::now();
        eventually!(
            Duration::from_secs(5),
            "the router's kernel sends the VIP to the other node only",
            fib_hops(&tor, VIP) == [hop(other)],
            bed.explain()
        );
        let moved = cordoned.elapsed();
        assert_eq!(
            bed.bird.next_hops(&format!("{VIP}/32")).len(),
            2,
            "BIRD still holds the drained node's (marked) path when the traffic has moved\n{}",
            bed.explain()
        );
        eventually!(
            Duration::from_secs(10),
            "the drained node withdraws its path after the drain time",
            bed.bird.next_hops(&format!("{VIP}/32")).len() == 1,
            bed.explain()
        );
        let withdrawn = cordoned.elapsed();
        assert!(withdrawn >= Duration::from_millis(2900), "{withdrawn:?}");
        let after_move = echoes(&bed.node(busy));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            echoes(&bed.node(busy)),
            after_move,
            "the drained node gets no more traffic"
        );
        ping.wait().expect("ping ends");
        let text = std::fs::read_to_string(log.path()).expect("ping output");
        let t = scenarios::tally(&text).expect("ping statistics");
        eprintln!(
            "drain: traffic moved {moved:.1?} after the cordon, route withdrawn after \
             {withdrawn:.1?}; {t:?}"
        );
        assert_eq!(
            (t.received, t.errors),
            (t.sent, 0),
            "every echo request answered through the drain: {t:?}"
        );
    });
}

/// Long-lived graceful restart (RFC 9494): past the restart time BIRD keeps the routes of a
/// vipd that is away, least preferred, rather than dropping them.
#[test]
fn bird_keeps_routes_as_llgr_stale_past_the_restart_time() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let away = scenarios::llgr_keeps_routes_least_preferred();
    eprintln!("BIRD while vipd was away:\n{away}");
}

/// Static VIPs have no Node to cordon: an operator drains vipd by signal.
#[test]
fn an_operator_drains_vipd_by_signal() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    scenarios::operator_drain_by_signal();
}

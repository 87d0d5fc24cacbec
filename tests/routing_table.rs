//! Routing-table mode end to end (`vip_routingtable`, kube-vip's `--table`): the real `vipd
//! manager` on a node puts each Service VIP it serves as a route in kernel table 198 with
//! protocol 248; BIRD on the same node learns the table through its `kernel` protocol and
//! announces it to the ToR's BIRD. Checked as a user would: `ip route show table 198` on the
//! node, the ToR's table (`birdc`), the Service's status. Root and BIRD needed; skipped loudly
//! otherwise.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::bed::BirdBed;
use support::bird::Bird;
use support::cluster::{self, in_netns, lb_service, slice, Ep};
use support::host_bird::HostBird;
use support::router::Router;
use support::vipd::Vipd;
use support::{ns_stdout, VIPD_NEEDS};

const UP: Duration = Duration::from_secs(20);
const SOON: Duration = Duration::from_secs(10);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `ip route show table 198` on the node, one route per line.
fn table(bed: &BirdBed) -> Vec<String> {
    ns_stdout(&bed.node(0), &["ip", "route", "show", "table", "198"])
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

fn has_route(bed: &BirdBed, line: &str) -> bool {
    table(bed).iter().any(|l| l == line)
}

fn explain(bed: &BirdBed, host: &HostBird, agent: &Vipd) -> String {
    format!(
        "---- ip route show table 198 ----\n{}\n{}\n---- the tor's routes ----\n{}\n{}\n---- vipd ----\n{}",
        table(bed).join("\n"),
        host.explain(),
        bed.bird.route_all("198.18.0.0/16"),
        bed.explain(),
        agent.log_tail()
    )
}

/// SIGTERM, and the agent exits 0 within 10 s.
fn stop(agent: &mut Vipd, bed: &BirdBed, host: &HostBird) {
    agent.terminate();
    let exited = agent.wait_exit(Duration::from_secs(10));
    assert!(
        exited.is_some_and(|s| s.success()),
        "{}",
        explain(bed, host, agent)
    );
}

/// A served Service's VIP becomes `198.18.0.10 dev veth-tor proto 248` in table 198, reaches the
/// ToR through the host's BIRD with the node as next hop, and gets its status; without endpoints
/// it leaves the table and the ToR, and comes back with them. A route of the table vipd did not
/// add (`ip route add`: proto boot) is never touched; a stale one of vipd's protocol (an earlier
/// vipd's) is removed once vipd knows what it serves.
#[test]
fn service_vips_go_to_the_kernel_table_and_through_the_hosts_bird_to_the_tor() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let bed = BirdBed::new(1);
    let node = bed.node(0);
    for args in [
        // Someone else's route in the same table.
        &[
            "ip",
            "route",
            "add",
            "198.18.0.99/32",
            "dev",
            "veth-tor",
            "table",
            "198",
        ][..],
        // What an earlier vipd left and nothing wants any more.
        &[
            "ip",
            "route",
            "add",
            "198.18.0.77/32",
            "dev",
            "veth-tor",
            "table",
            "198",
            "proto",
            "248",
        ][..],
    ] {
        let mut argv = vec!["ip", "netns", "exec", node.as_str()];
        argv.extend_from_slice(args);
        support::run_ok(argv[0], &argv[1..]);
    }
    let host = HostBird::start(&bed.topo, 0, 198);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let (api, client) = bed.cluster(&[]).await;
        let mut agent = Vipd::table(&bed.topo, 0, &bed.kubeconfig(0, api.addr().port()), &[]);
        agent.start();
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.10", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        let vip_route = "198.18.0.10 dev veth-tor proto 248";
        eventually!(
            UP,
            "table 198 holds the VIP's route",
            has_route(&bed, vip_route),
            explain(&bed, &host, &agent)
        );
        eventually!(
            UP,
            "the ToR's BIRD holds 198.18.0.10/32 via node0, from the host's BIRD",
            bed.hops("198.18.0.10/32") == [ip("10.99.0.1")],
            explain(&bed, &host, &agent)
        );
        eventually!(
            SOON,
            "status.loadBalancer.ingress is [198.18.0.10]",
            cluster::ingress(&client, "web").await == ["198.18.0.10"],
            explain(&bed, &host, &agent)
        );
        assert!(
            has_route(&bed, "198.18.0.99 dev veth-tor scope link"),
            "a route vipd did not add stays\n{}",
            explain(&bed, &host, &agent)
        );
        assert!(
            !table(&bed).iter().any(|l| l.starts_with("198.18.0.77 ")),
            "an earlier vipd's stale route is gone\n{}",
            explain(&bed, &host, &agent)
        );
        // A Service asking for 198.18.0.99, whose route in the table is someone else's: left as
        // it is, and the log says why.
        cluster::create_served(
            &client,
            &lb_service("theirs", "198.18.0.99", false),
            "node0",
            "10.244.0.8",
        )
        .await;
        eventually!(
            SOON,
            "vipd says the route to 198.18.0.99 is not its own",
            agent
                .log()
                .contains("a route to 198.18.0.99 in table 198 exists and is not vipd's"),
            explain(&bed, &host, &agent)
        );
        assert!(
            has_route(&bed, "198.18.0.99 dev veth-tor scope link"),
            "the other route is untouched\n{}",
            explain(&bed, &host, &agent)
        );
        // Routing-table mode puts no address on the interface (kube-vip's way).
        assert!(
            !ns_stdout(&node, &["ip", "-4", "address", "show", "dev", "veth-tor"])
                .contains("198.18.0.10"),
            "no VIP address on the interface\n{}",
            explain(&bed, &host, &agent)
        );

        cluster::put_slice(&client, &slice("web", "web-1", &[])).await;
        eventually!(
            SOON,
            "without endpoints the route leaves the table and the ToR",
            !has_route(&bed, vip_route) && bed.bird.route("198.18.0.10/32").is_none(),
            explain(&bed, &host, &agent)
        );
        cluster::put_slice(
            &client,
            &slice("web", "web-1", &[Ep::ready("10.244.0.6", "node0")]),
        )
        .await;
        eventually!(
            SOON,
            "with an endpoint again it is back at the ToR",
            has_route(&bed, vip_route) && bed.hops("198.18.0.10/32") == [ip("10.99.0.1")],
            explain(&bed, &host, &agent)
        );
        assert!(
            agent.log().contains("routing table 198 (protocol 248)"),
            "the log says where it announces\n{}",
            explain(&bed, &host, &agent)
        );

        // Someone deletes vipd's route: the table is read again every 10 s, and the next plan
        // (here: another Service) puts it back.
        support::run_ok(
            "ip",
            &[
                "-n",
                &node,
                "route",
                "del",
                "198.18.0.10/32",
                "table",
                "198",
                "proto",
                "248",
            ],
        );
        assert!(!has_route(&bed, vip_route));
        tokio::time::sleep(vipd::table::kernel::RELIST).await;
        cluster::create_served(
            &client,
            &lb_service("second", "198.18.0.11", false),
            "node0",
            "10.244.0.7",
        )
        .await;
        eventually!(
            SOON,
            "the deleted route is back beside the new one",
            has_route(&bed, vip_route) && has_route(&bed, "198.18.0.11 dev veth-tor proto 248"),
            explain(&bed, &host, &agent)
        );
        assert!(
            agent.log().contains("is gone from the table"),
            "the log says a route was put back\n{}",
            explain(&bed, &host, &agent)
        );
    });
}

/// A SIGTERM on a node that stays is a restart: the routes stay in the table (the ToR keeps
/// them) and the next process adopts them without a gap. A stop while the node is cordoned is a
/// shutdown: the table is emptied of vipd's routes, and the ToR loses them.
#[test]
fn a_restart_leaves_the_routes_for_the_next_process_and_a_shutdown_takes_them() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let bed = BirdBed::new(1);
    let host = HostBird::start(&bed.topo, 0, 198);
    let tor = bed.topo.tor.clone();
    in_netns(&tor, async {
        let (api, client) = bed.cluster(&[]).await;
        let gr = [("vipd_bgp_restart_time", "120")];
        let mut agent = Vipd::table(&bed.topo, 0, &bed.kubeconfig(0, api.addr().port()), &gr);
        agent.start();
        cluster::create_served(
            &client,
            &lb_service("web", "198.18.0.10", false),
            "node0",
            "10.244.0.5",
        )
        .await;
        let vip_route = "198.18.0.10 dev veth-tor proto 248";
        let held = |bed: &BirdBed| {
            has_route(bed, vip_route) && bed.hops("198.18.0.10/32") == [ip("10.99.0.1")]
        };
        eventually!(
            UP,
            "the route is in the table and at the ToR",
            held(&bed),
            explain(&bed, &host, &agent)
        );
        stop(&mut agent, &bed, &host);
        assert!(
            agent.log().contains("stay in the routing table"),
            "{}",
            explain(&bed, &host, &agent)
        );
        support::holds_for(
            Duration::from_secs(2),
            "the route stays while no vipd runs",
            || held(&bed),
            || explain(&bed, &host, &agent),
        );
        // The next process adopts it: at no sample is it missing.
        agent.start();
        support::holds_for(
            Duration::from_secs(4),
            "the route stays while the next process starts and takes over",
            || held(&bed),
            || explain(&bed, &host, &agent),
        );
        eventually!(
            SOON,
            "the new process adopted it",
            agent
                .log()
                .contains("adopted the VIP routes an earlier vipd left"),
            explain(&bed, &host, &agent)
        );

        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .patch(
                "node0",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": true}})),
            )
            .await
            .expect("cordon node0");
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop(&mut agent, &bed, &host);
        assert!(
            !has_route(&bed, vip_route),
            "a shutdown empties the table of vipd's routes\n{}",
            explain(&bed, &host, &agent)
        );
        eventually!(
            SOON,
            "the ToR loses the route",
            bed.bird.route("198.18.0.10/32").is_none(),
            explain(&bed, &host, &agent)
        );
    });
}

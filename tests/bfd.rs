//! BFD (RFC 5880/5881) against FRR's bfdd and BIRD's BFD: a cut path is noticed by both sides
//! within a second (the hold timer would take 90 s), and a restart of vipd still costs no route.
//! Root, nftables, BIRD 2 and FRR needed; skipped loudly otherwise.
//!
//! `failover_table` (ignored: about 7 minutes) is the benchmark of BENCHMARKS.md: BFD against
//! the hold timer (9 s and 90 s) on both routers in one run; `bench/failover.sh` runs it.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::time::Duration;
use support::bird::Bird;
use support::frr::Frr;
use support::router::{BfdMode, Router};
use support::scenarios::{self, Failover};
use support::VIPD_NEEDS;

const NFT: (&str, &str) = ("nft", "apt-get install nftables");
/// Reads vipd's /metrics in the node's namespace.
const PYTHON: (&str, &str) = ("python3", "apt-get install python3");

/// Detection is 3 × 300 ms after the last packet heard; the rest is the router's processing and
/// this test's polling (10 ms, plus a CLI call per poll).
const WITHIN: Duration = Duration::from_millis(1500);

fn check(name: &str, f: &[Failover]) {
    for x in f {
        assert!(
            x.router_withdrew < WITHIN && x.vipd_noticed < WITHIN,
            "{name}: {x:?}"
        );
    }
}

#[test]
fn frr_and_vipd_notice_a_cut_path_within_a_second() {
    skip_unless!(root, Frr::NEEDS, VIPD_NEEDS, &[NFT, PYTHON]);
    check(
        "frr",
        &scenarios::failover_after_a_cut::<Frr>(true, 90, "120", 3),
    );
}

#[test]
fn bird_and_vipd_notice_a_cut_path_within_a_second() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS, &[NFT, PYTHON]);
    check(
        "bird",
        &scenarios::failover_after_a_cut::<Bird>(true, 90, "120", 3),
    );
}

/// FRR (8.4, `neighbor X bfd`) keeps every route through SIGTERMs and SIGKILLs of vipd with BFD
/// on: the BGP session closes first (FRR keeps the routes as stale), and the BFD session going
/// down after it (AdminDown, or silence after a crash) does not end the graceful restart.
#[test]
fn frr_keeps_every_route_through_restarts_with_bfd() {
    skip_unless!(root, Frr::NEEDS, VIPD_NEEDS);
    let (fewest, samples) = scenarios::bfd_restarts::<Frr>(BfdMode::Down, 4, true);
    assert_eq!(fewest, 3, "FRR dropped routes ({samples} samples)");
}

/// BIRD 2.0.12 takes any BFD Down, AdminDown included, for a failure that ends a graceful
/// restart (fixed in BIRD 2.14); with `bfd graceful` it keeps the routes through restarts.
#[test]
fn bird_with_bfd_graceful_keeps_every_route_through_restarts() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let (fewest, samples) = scenarios::bfd_restarts::<Bird>(BfdMode::Graceful, 4, true);
    assert_eq!(fewest, 3, "BIRD dropped routes ({samples} samples)");
}

/// BENCHMARKS.md's failover table: the same cut, detected by BFD (with graceful restart on, the
/// default) and by hold timers of 9 s and 90 s (graceful restart off: with it, the routers
/// would keep the routes for the restart time on top, RFC 8538), on FRR and BIRD, in one run.
#[test]
#[ignore = "a benchmark of about 7 minutes: bench/failover.sh"]
fn failover_table() {
    skip_unless!(root, Frr::NEEDS, Bird::NEEDS, VIPD_NEEDS, &[NFT, PYTHON]);
    let mut rows = Vec::new();
    for (what, bfd, hold, restart, rounds) in [
        (
            "BFD 300 ms x 3 (hold 90 s, graceful restart 120 s)",
            true,
            90,
            "120",
            5,
        ),
        ("hold timer 9 s (no graceful restart)", false, 9, "0", 2),
        ("hold timer 90 s (no graceful restart)", false, 90, "0", 1),
    ] {
        let frr = scenarios::failover_after_a_cut::<Frr>(bfd, hold, restart, rounds);
        let bird = scenarios::failover_after_a_cut::<Bird>(bfd, hold, restart, rounds);
        rows.push((what, frr, bird));
    }
    let worst =
        |f: &[Failover], by: fn(&Failover) -> Duration| f.iter().map(by).max().unwrap_or_default();
    println!("| detection | FRR withdraws (worst) | BIRD withdraws (worst) | vipd ends the session (worst) |");
    println!("|---|---|---|---|");
    for (what, frr, bird) in &rows {
        let vipd = worst(frr, |x| x.vipd_noticed).max(worst(bird, |x| x.vipd_noticed));
        println!(
            "| {what} | {:.2?} | {:.2?} | {:.2?} |",
            worst(frr, |x| x.router_withdrew),
            worst(bird, |x| x.router_withdrew),
            vipd
        );
    }
}

#[test]
fn multihop_bfd_with_frr_and_bird() {
    skip_unless!(root, Frr::NEEDS, Bird::NEEDS, VIPD_NEEDS, &[NFT]);
    for took in [
        scenarios::bfd_multihop::<Frr>(),
        scenarios::bfd_multihop::<Bird>(),
    ] {
        assert!(took < WITHIN, "{took:?}");
    }
}

#[test]
fn bfd_over_ipv4_and_ipv6_with_frr_and_bird() {
    skip_unless!(root, Frr::NEEDS, Bird::NEEDS, VIPD_NEEDS);
    scenarios::bfd_dual_stack::<Frr>();
    scenarios::bfd_dual_stack::<Bird>();
}

//! The acceptance scenarios of the BGP speaker, written once and run against each real router
//! (tests/bgp_bird.rs, bgp_frr.rs, bgp_gobgp.rs). Each scenario builds its own namespaces, starts
//! the router and the real vipd binary, and checks only what the router's own CLI shows.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::netns::{Topology, NODE_LO, NODE_V4, NODE_V6};
use super::router::{Family, RouteInfo, Router, RouterConfig, VIPD_AS};
use super::vipd::Vipd;
use super::{holds_for, wait_until_or_explain, VIPD_NEEDS};
use vipd::bgp::fsm::Backoff;

const VIP4: &str = "198.18.0.10/32";
const VIP4_B: &str = "198.18.0.11/32";
const VIP4_C: &str = "198.18.0.12/32";
const VIP6: &str = "fd00:98::10/128";

/// Time allowed for a session to come up: vipd connects at once, but FRR and GoBGP may take a
/// second or two to accept after their control socket answers.
const SESSION_UP: Duration = Duration::from_secs(20);
/// Time allowed for an UPDATE to show in the router's table once the session is up.
const ROUTE_SEEN: Duration = Duration::from_secs(10);
/// How many times in a row the scenarios that lose the router do so.
const ROUNDS: usize = 10;
/// The VIPs of the scenarios that lose the router.
const THREE_VIPS: &[&str] = &[VIP4, VIP4_B, VIP4_C];

/// Time allowed for vipd to win the router back after losing it: its longest ConnectRetry
/// backoff (the default, which `vipd manager` runs with), then a session setup and the UPDATEs.
fn back_after_loss() -> Duration {
    Backoff::default().max + Duration::from_secs(15)
}

/// A running router and vipd in fresh namespaces. Field order is drop order: vipd and the router
/// stop before their namespaces are deleted.
struct Bed<R: Router> {
    vipd: Vipd,
    router: R,
    topo: Topology,
}

impl<R: Router> Bed<R> {
    fn start(cfg: RouterConfig, vips: &[&str]) -> Bed<R> {
        Bed::start_with(cfg, vips, &[])
    }

    /// As [`Bed::start`], with more settings for vipd (later ones win).
    fn start_with(cfg: RouterConfig, vips: &[&str], extra: &[(&str, &str)]) -> Bed<R> {
        let topo = Topology::setup();
        let mut router = R::new(&topo, cfg.clone());
        router.start();
        let addresses: Vec<&str> = vips.iter().map(|p| address_of(p)).collect();
        let mut vipd = Vipd::new(&topo, &cfg, &addresses);
        for (k, v) in extra {
            vipd.set_env(k, v);
        }
        vipd.start();
        Bed { vipd, router, topo }
    }

    /// Both daemons' log tails, for failure messages.
    fn explain(&self) -> String {
        format!(
            "---- {} log ----\n{}\n---- vipd log ----\n{}",
            R::NAME,
            self.router.log_tail(),
            self.vipd.log_tail()
        )
    }

    fn wait_established(&self) -> Duration {
        wait_until_or_explain(
            SESSION_UP,
            &format!("{} shows every session with vipd Established", R::NAME),
            || self.router.session_established(),
            || self.explain(),
        )
    }

    fn wait_route(&self, prefix: &str) -> RouteInfo {
        let mut found = None;
        wait_until_or_explain(
            ROUTE_SEEN,
            &format!("{} holds {prefix}", R::NAME),
            || {
                found = self.router.route(prefix);
                found.is_some()
            },
            || self.explain(),
        );
        found.expect("route seen")
    }

    fn wait_gone(&self, prefix: &str) {
        wait_until_or_explain(
            ROUTE_SEEN,
            &format!("{} no longer holds {prefix}", R::NAME),
            || self.router.route(prefix).is_none(),
            || self.explain(),
        );
    }

    fn wait_count(&self, family: Family, n: usize) {
        wait_until_or_explain(
            ROUTE_SEEN,
            &format!("{} holds {n} {} BGP routes", R::NAME, family.word()),
            || self.router.route_count(family) == n,
            || self.explain(),
        );
    }

    /// Waits, within [`back_after_loss`], until the router shows every session Established again
    /// and holds exactly `prefixes`, each from vipd via `next_hop`; returns how long that took.
    /// `when` names the round for the failure message.
    fn wait_table_back(&self, prefixes: &[&str], next_hop: &str, when: &str) -> Duration {
        let want = expected(next_hop);
        let count = |family: Family| prefixes.iter().filter(|p| Family::of(p) == family).count();
        wait_until_or_explain(
            back_after_loss(),
            &format!(
                "{} shows the session Established and holds exactly {} from vipd via {next_hop}, \
                 {when}",
                R::NAME,
                prefixes.join(", ")
            ),
            || {
                self.router.session_established()
                    && [Family::Ipv4, Family::Ipv6]
                        .into_iter()
                        .all(|family| self.router.route_count(family) == count(family))
                    && prefixes
                        .iter()
                        .all(|p| self.router.route(p).as_ref() == Some(&want))
            },
            || self.explain(),
        )
    }
}

/// Runs `round` [`ROUNDS`] times (numbered from 1), each returning how long the table took to
/// come back, and prints each time and the longest: the margin left under [`back_after_loss`].
fn rounds(router: &str, what: &str, mut round: impl FnMut(usize) -> Duration) {
    let mut longest = Duration::ZERO;
    for i in 1..=ROUNDS {
        let took = round(i);
        eprintln!("{router}: {what} {i} of {ROUNDS}: table back after {took:.1?}");
        longest = longest.max(took);
    }
    eprintln!(
        "{router}: {what}: longest {longest:.1?} over {ROUNDS} rounds (allowed {:.0?})",
        back_after_loss()
    );
}

/// "198.18.0.10/32" -> "198.18.0.10": vipd takes addresses, routers show prefixes.
fn address_of(prefix: &str) -> &str {
    prefix.split('/').next().expect("prefix")
}

fn expected(next_hop: &str) -> RouteInfo {
    RouteInfo {
        next_hop: next_hop.parse::<IpAddr>().expect("next hop"),
        as_path: vec![VIPD_AS],
        origin: "IGP".to_string(),
    }
}

/// IPv4 and IPv6 VIPs over an IPv4 and an IPv6 session arrive with vipd's session address as next
/// hop, AS path [65000] (one AS_SEQUENCE) and origin IGP.
pub fn ipv4_and_ipv6_vips_arrive<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let bed = Bed::<R>::start(RouterConfig::ipv4().with_ipv6(), &[VIP4, VIP6]);
    bed.wait_established();
    assert_eq!(
        bed.wait_route(VIP4),
        expected(NODE_V4),
        "{VIP4} at {}",
        R::NAME
    );
    assert_eq!(
        bed.wait_route(VIP6),
        expected(NODE_V6),
        "{VIP6} at {}",
        R::NAME
    );
    // Nothing else: the table holds exactly what vipd was told to announce.
    bed.wait_count(Family::Ipv4, 1);
    bed.wait_count(Family::Ipv6, 1);
}

/// A VIP removed from the VIP file is withdrawn on SIGHUP; the others stay.
pub fn removed_vip_is_withdrawn<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::<R>::start(RouterConfig::ipv4(), &[VIP4, VIP4_B]);
    bed.wait_established();
    bed.wait_route(VIP4);
    bed.wait_route(VIP4_B);
    bed.vipd.write_vips(&[address_of(VIP4)]);
    bed.vipd.reload();
    bed.wait_gone(VIP4_B);
    assert_eq!(
        bed.router.route(VIP4),
        Some(expected(NODE_V4)),
        "{VIP4} must stay"
    );
    assert!(
        bed.router.session_established(),
        "the session must stay up\n{}",
        bed.explain()
    );
}

/// TCP-MD5 with the same password on both sides: the session comes up and the route arrives.
pub fn md5_with_the_right_password<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let bed = Bed::<R>::start(RouterConfig::ipv4().password("s3cret-md5"), &[VIP4]);
    bed.wait_established();
    assert_eq!(bed.wait_route(VIP4), expected(NODE_V4));
    assert_eq!(
        bed.topo.md5_failures(),
        0,
        "no segment may fail its MD5 check"
    );
}

/// TCP-MD5 with different passwords: the session stays down and the kernel counts the failures;
/// the password itself never reaches vipd's log.
pub fn md5_with_a_wrong_password_stays_down<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let topo = Topology::setup();
    let mut router = R::new(&topo, RouterConfig::ipv4().password("router-side-key"));
    router.start();
    let mut vipd = Vipd::new(
        &topo,
        &RouterConfig::ipv4().password("vipd-side-key"),
        &["198.18.0.10"],
    );
    vipd.start();
    holds_for(
        Duration::from_secs(8),
        &format!("the session with {} stays down", R::NAME),
        || !router.session_established() && router.route_count(Family::Ipv4) == 0,
        || vipd.log_tail(),
    );
    assert!(
        topo.md5_failures() > 0,
        "the kernel must count TCP-MD5 failures (TcpExtTCPMD5Failure)"
    );
    assert!(vipd.is_running(), "vipd must keep retrying, not exit");
    assert!(
        !vipd.log().contains("vipd-side-key"),
        "the password leaked into vipd's log"
    );
}

/// eBGP multihop between loopbacks: vipd binds `bgp_sourceip` 10.99.255.1 and the router peers
/// with it from 10.99.255.2; the next hop is vipd's loopback.
pub fn multihop_between_loopbacks<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let bed = Bed::<R>::start(RouterConfig::ipv4().multihop(), &[VIP4]);
    bed.wait_established();
    assert_eq!(bed.wait_route(VIP4), expected(NODE_LO));
}

/// A router listening on port 1179 only: vipd honours the port from `bgp_peers`.
pub fn non_default_port<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let bed = Bed::<R>::start(RouterConfig::ipv4().port(1179), &[VIP4]);
    assert!(
        bed.topo.tor_listens_on(1179),
        "{} must listen on 1179",
        R::NAME
    );
    assert!(
        !bed.topo.tor_listens_on(179),
        "{} must not listen on 179",
        R::NAME
    );
    bed.wait_established();
    assert_eq!(bed.wait_route(VIP4), expected(NODE_V4));
}

/// The router restarts with an empty table: vipd reconnects and the table is complete again.
pub fn router_restart_restores_the_table<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::<R>::start(RouterConfig::ipv4(), &[VIP4, VIP4_B, VIP4_C]);
    bed.wait_established();
    bed.wait_count(Family::Ipv4, 3);
    bed.router.restart();
    bed.wait_established();
    bed.wait_count(Family::Ipv4, 3);
    for prefix in [VIP4, VIP4_B, VIP4_C] {
        assert_eq!(
            bed.router.route(prefix),
            Some(expected(NODE_V4)),
            "{prefix}"
        );
    }
    assert!(bed.vipd.is_running(), "vipd must ride out the restart");
}

/// Lets the session run for the backoff's stable period, so the next loss is a first failure
/// (a router that crashes after running a while), not a flap, which vipd damps on purpose.
fn settle() {
    std::thread::sleep(Backoff::default().stable);
}

/// The router crashes (SIGKILL) ten times: no NOTIFICATION, the kernel just closes the
/// connection, and the router comes back with an empty table. Each time vipd reconnects within
/// its backoff and announces every VIP again.
pub fn router_killed_comes_back<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::<R>::start(RouterConfig::ipv4(), THREE_VIPS);
    bed.wait_established();
    bed.wait_count(Family::Ipv4, THREE_VIPS.len());
    rounds(R::NAME, "SIGKILL and restart", |round| {
        settle();
        bed.router.restart_after_kill();
        // Timed from the router answering again: its own start-up is not vipd's doing.
        bed.wait_table_back(
            THREE_VIPS,
            NODE_V4,
            &format!("after SIGKILL {round} of {ROUNDS}"),
        )
    });
    assert!(
        bed.vipd.is_running(),
        "vipd must ride out {ROUNDS} router crashes\n{}",
        bed.explain()
    );
}

/// The link goes down ten times, at both ends, for longer than the hold time (3 s): the router
/// drops the session as its interface goes, its NOTIFICATION cannot cross, vipd's hold timer
/// expires with no word from the peer and its reconnects fail until the link is back. Each time
/// the session and the table come back within vipd's backoff. Both ends, because BIRD only drops
/// a direct session at once when its own interface goes down; dropping it on its hold timer
/// instead, it would refuse vipd for its `error wait time` (60 s by default). Not for GoBGP,
/// which ignores interfaces and, after its hold timer, refuses the peer for its
/// `idle-hold-time-after-reset` (30 s by default).
pub fn link_flap_comes_back<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let cfg = RouterConfig::ipv4().hold_time(3);
    let hold = Duration::from_secs(u64::from(cfg.hold_time));
    let mut bed = Bed::<R>::start(cfg, THREE_VIPS);
    bed.wait_established();
    bed.wait_count(Family::Ipv4, THREE_VIPS.len());
    rounds(R::NAME, "link flap", |round| {
        settle();
        bed.topo.set_link(false);
        let down = Instant::now();
        wait_until_or_explain(
            hold + Duration::from_secs(5),
            &format!(
                "{} drops the session with the link down (flap {round} of {ROUNDS})",
                R::NAME
            ),
            || !bed.router.session_established(),
            || bed.explain(),
        );
        // Down past vipd's hold time too: vipd must find out by itself, not from a segment of
        // the old connection that crosses once the link is back.
        std::thread::sleep((hold + Duration::from_secs(2)).saturating_sub(down.elapsed()));
        bed.topo.set_link(true);
        bed.wait_table_back(
            THREE_VIPS,
            NODE_V4,
            &format!("after link flap {round} of {ROUNDS}"),
        )
    });
    assert!(
        bed.vipd.is_running(),
        "vipd must ride out {ROUNDS} link flaps\n{}",
        bed.explain()
    );
}

/// SIGTERM: vipd sends Cease, so the router withdraws at once although the hold time is 90 s;
/// vipd exits 0.
pub fn cease_on_shutdown_empties_the_table<R: Router>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let mut bed = Bed::<R>::start(
        RouterConfig::ipv4().with_ipv6().hold_time(90),
        &[VIP4, VIP6],
    );
    bed.wait_established();
    bed.wait_route(VIP4);
    bed.wait_route(VIP6);
    let sent = Instant::now();
    bed.vipd.terminate();
    wait_until_or_explain(
        Duration::from_secs(1),
        &format!(
            "{} holds no route from vipd, within 1 s of SIGTERM (hold time 90 s)",
            R::NAME
        ),
        || bed.router.route_count(Family::Ipv4) == 0 && bed.router.route_count(Family::Ipv6) == 0,
        || bed.explain(),
    );
    let emptied = sent.elapsed();
    let status = bed.vipd.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "vipd must exit 0 after SIGTERM, got {status:?}\n{}",
        bed.explain()
    );
    eprintln!("{}: table empty {emptied:.1?} after SIGTERM", R::NAME);
}

/// How many times vipd is restarted in [`graceful_restart_keeps_every_route`], alternately by
/// SIGTERM and SIGKILL.
const RESTARTS: usize = 10;
/// How long vipd stays away in each restart: long enough that a router that dropped the routes
/// would show it in many samples (and a ping at 1,000 a second in a thousand).
const AWAY: Duration = Duration::from_secs(1);

/// Stops vipd `rounds` times (SIGTERM; with `crashes` every other one SIGKILL), away [`AWAY`],
/// and starts it again, while a thread samples the router's IPv4 route count every 50 ms.
/// `before` runs before each stop; `back` waits for the table after each start and says how
/// long it took. Returns the samples taken and the fewest routes seen.
fn restarts_sampled<R: Router + Sync>(
    bed: &mut Bed<R>,
    rounds: usize,
    crashes: bool,
    before: impl Fn(&Bed<R>, usize),
    back: impl Fn(&Bed<R>, usize) -> Duration,
) -> (usize, usize) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let router = &bed.router;
        let stop = &stop;
        let sampler = scope.spawn(move || {
            let (mut samples, mut fewest) = (0usize, usize::MAX);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fewest = fewest.min(router.route_count(Family::Ipv4));
                samples += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (samples, fewest)
        });
        for i in 1..=rounds {
            before(bed, i);
            let crash = crashes && i % 2 == 0;
            if crash {
                assert!(bed.vipd.kill(), "vipd was not running\n{}", bed.explain());
            } else {
                bed.vipd.terminate();
                let status = bed.vipd.wait_exit(Duration::from_secs(5));
                assert!(
                    status.is_some_and(|s| s.success()),
                    "vipd must exit 0 after SIGTERM, got {status:?}\n{}",
                    bed.explain()
                );
            }
            std::thread::sleep(AWAY);
            bed.vipd.start();
            let took = back(bed, i);
            let how = if crash { "SIGKILL" } else { "SIGTERM" };
            eprintln!(
                "{}: restart {i} ({how}): table back after {took:.1?}",
                R::NAME
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sampler.join().expect("sampler")
    })
}

/// How many VIPs [`graceful_restart_keeps_every_route`] announces.
pub const MANY_VIPS: usize = 1000;

/// 198.19.0.1/32 … : `n` host routes for the scenarios with many VIPs.
fn many_vips(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("198.19.{}.{}/32", i / 256, i % 256))
        .collect()
}

/// Graceful restart, vipd's default (120 s): vipd announces [`MANY_VIPS`] VIPs and is stopped
/// [`RESTARTS`] times, alternately by SIGTERM (a restart on a node that stays) and SIGKILL (a
/// crash), stays away [`AWAY`], and a new process starts. The router, a graceful-restart helper
/// by default, keeps every route at every 50 ms sample of its table, from the first stop to the
/// last session back; each new process's session comes up with the whole table, every route via
/// the node. Against the same router with graceful restart off, a SIGTERM empties the table at
/// once ([`cease_on_shutdown_empties_the_table`]).
pub fn graceful_restart_keeps_every_route<R: Router + super::router::Tables + Sync>() {
    skip_unless!(root, R::NEEDS, VIPD_NEEDS);
    let prefixes = many_vips(MANY_VIPS);
    let vips: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let mut bed = Bed::<R>::start_with(
        RouterConfig::ipv4().hold_time(90),
        &vips,
        &[("vipd_bgp_restart_time", "120")],
    );
    let node: IpAddr = NODE_V4.parse().expect("node address");
    let whole = |bed: &Bed<R>| {
        bed.router.session_established()
            && bed.router.route_count(Family::Ipv4) == MANY_VIPS
            && bed.router.table4().values().all(|hops| hops == &[node])
    };
    let back = |bed: &Bed<R>, when: &str| {
        wait_until_or_explain(
            back_after_loss(),
            &format!(
                "{} shows the session Established and all {MANY_VIPS} routes via {NODE_V4}, {when}",
                R::NAME
            ),
            || whole(bed),
            || bed.explain(),
        )
    };
    back(&bed, "at start");
    let (samples, fewest) = restarts_sampled(
        &mut bed,
        RESTARTS,
        true,
        |_, _| {},
        |bed, i| back(bed, &format!("after restart {i}")),
    );
    assert_eq!(
        fewest,
        MANY_VIPS,
        "{} held only {fewest} of {MANY_VIPS} routes at some sample ({samples} samples over \
         {RESTARTS} restarts)\n{}",
        R::NAME,
        bed.explain()
    );
    eprintln!(
        "{}: {samples} samples over {RESTARTS} restarts, never fewer than {fewest} routes",
        R::NAME
    );
}

/// What a client behind the router saw while vipd restarted: echo requests sent, answered, and
/// refused at once for want of a route (ping's "+N errors"), and the longest time without an
/// answer.
#[derive(Debug, Clone, Copy)]
pub struct PingTally {
    pub sent: u64,
    pub received: u64,
    pub errors: u64,
    pub longest_silence: Duration,
}

/// vipd announces [`MANY_VIPS`] VIPs and a client on the router's host pings one of them at
/// 1,000 packets a second, through the route the router installed in its kernel (FRR's zebra
/// does; BIRD with [`RouterConfig::kernel_ecmp`]; the node answers for the VIP on its loopback,
/// as kube-proxy's address would), while vipd is restarted `rounds` times, alternately by
/// SIGTERM and SIGKILL, away [`AWAY`] each time. `restart_time` is `vipd_bgp_restart_time`
/// ("0": every stop is a Cease, as before graceful restart).
pub fn pings_through_restarts<R: Router>(restart_time: &str, rounds: usize) -> PingTally {
    let mut vips = vec![VIP4.to_owned()];
    vips.extend(many_vips(MANY_VIPS - 1));
    let vips: Vec<&str> = vips.iter().map(String::as_str).collect();
    let mut bed = Bed::<R>::start_with(
        RouterConfig::ipv4().hold_time(90).kernel_ecmp(),
        &vips,
        &[("vipd_bgp_restart_time", restart_time)],
    );
    let node = bed.topo.node.clone();
    crate::run_ok("ip", &["-n", &node, "address", "add", VIP4, "dev", "lo"]);
    let want = expected(NODE_V4);
    let back = |bed: &Bed<R>, when: &str| {
        wait_until_or_explain(
            back_after_loss(),
            &format!(
                "{} shows the session Established, {MANY_VIPS} routes and {VIP4} via {NODE_V4}, {when}",
                R::NAME
            ),
            || {
                bed.router.session_established()
                    && bed.router.route_count(Family::Ipv4) == MANY_VIPS
                    && bed.router.route(VIP4).as_ref() == Some(&want)
            },
            || bed.explain(),
        )
    };
    back(&bed, "at start");
    let tor = bed.topo.tor.clone();
    let in_fib = || crate::ns_stdout(&tor, &["ip", "route", "show", VIP4]).contains("via");
    wait_until_or_explain(
        ROUTE_SEEN,
        "the router's kernel routes the VIP to the node",
        in_fib,
        || bed.explain(),
    );
    // Each round: away, the session and table back (well under 0.5 s), one second of traffic.
    let span = (AWAY + Duration::from_millis(1500)) * rounds as u32 + Duration::from_secs(1);
    let count = (span.as_millis() as u64).to_string();
    // Into a file, not a pipe: a pipe nobody reads until the end fills at 64 KiB and stalls ping.
    let log = tempfile::NamedTempFile::new().expect("ping log");
    let mut ping = std::process::Command::new(crate::tool("ip"))
        .args([
            "netns", "exec", &tor, "ping", "-D", "-n", "-i", "0.001", "-W", "1",
        ])
        .args(["-c", &count, address_of(VIP4)])
        .stdout(log.reopen().expect("ping log handle"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ping");
    std::thread::sleep(Duration::from_secs(1));
    for i in 1..=rounds {
        if i % 2 == 0 {
            assert!(bed.vipd.kill(), "vipd was not running\n{}", bed.explain());
        } else {
            bed.vipd.terminate();
            assert!(
                bed.vipd.wait_exit(Duration::from_secs(5)).is_some(),
                "vipd did not exit after SIGTERM\n{}",
                bed.explain()
            );
        }
        std::thread::sleep(AWAY);
        bed.vipd.start();
        back(&bed, &format!("after restart {i}"));
        std::thread::sleep(Duration::from_secs(1));
    }
    ping.wait().expect("ping ends");
    let text = std::fs::read_to_string(log.path()).expect("ping output");
    tally(&text).unwrap_or_else(|| {
        panic!(
            "no ping statistics in:\n{}\n{}",
            crate::tail(&text, 5),
            bed.explain()
        )
    })
}

/// Reads ping's `-D` reply lines (`[1765100000.123456] 64 bytes from …`) and its summary
/// ("N packets transmitted, M received[, +E errors], …").
pub fn tally(ping: &str) -> Option<PingTally> {
    let line = ping.lines().find(|l| l.contains("packets transmitted"))?;
    let number = |field: &str| {
        field
            .split_whitespace()
            .next()?
            .trim_start_matches('+')
            .parse()
            .ok()
    };
    let fields: Vec<&str> = line.split(", ").collect();
    let sent = number(fields.first()?)?;
    let received = number(fields.get(1)?)?;
    let errors = fields
        .iter()
        .find(|f| f.ends_with("errors"))
        .and_then(|f| number(f))
        .unwrap_or(0);
    let stamps: Vec<f64> = ping
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    let longest = stamps
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(0.0f64, f64::max);
    Some(PingTally {
        sent,
        received,
        errors,
        longest_silence: Duration::from_secs_f64(longest.max(0.0)),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ping_summaries_and_silences_are_read() {
        let t = super::tally(
            "[1765100000.000100] 64 bytes from 198.18.0.10: icmp_seq=1 ttl=64 time=0.05 ms\n\
             [1765100000.001200] 64 bytes from 198.18.0.10: icmp_seq=2 ttl=64 time=0.05 ms\n\
             [1765100001.251200] 64 bytes from 198.18.0.10: icmp_seq=900 ttl=64 time=0.05 ms\n\
             --- 198.18.0.10 ping statistics ---\n\
             26000 packets transmitted, 25123 received, +870 errors, 3.37% packet loss, time 31002ms\n",
        )
        .unwrap();
        assert_eq!((t.sent, t.received, t.errors), (26000, 25123, 870));
        assert_eq!(t.longest_silence.as_millis(), 1250);
        let t =
            super::tally("5 packets transmitted, 5 received, 0% packet loss, time 4ms").unwrap();
        assert_eq!(
            (t.errors, t.longest_silence),
            (0, std::time::Duration::ZERO)
        );
        assert!(super::tally("ping: connect: Network is unreachable").is_none());
    }
}

/// The path between vipd and the router cut where no link notices: nftables in the router's
/// namespace drops every packet from and to vipd's address (as a dead switch or a dead node
/// would), until dropped.
struct PathCut {
    ns: String,
}

impl PathCut {
    fn new(ns: &str, peer: &str) -> PathCut {
        let rules = format!(
            "table inet vipd_cut {{\n\
             chain in {{ type filter hook input priority -300; ip saddr {peer} drop; }}\n\
             chain out {{ type filter hook output priority -300; ip daddr {peer} drop; }}\n\
             }}\n"
        );
        let mut child = std::process::Command::new(super::tool("ip"))
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run nft");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("nft stdin")
            .write_all(rules.as_bytes())
            .expect("write nft rules");
        assert!(child.wait().expect("nft").success(), "nft refused {rules}");
        PathCut { ns: ns.to_owned() }
    }
}

impl Drop for PathCut {
    fn drop(&mut self) {
        let _ = super::ns_succeeds(&self.ns, &["nft", "delete", "table", "inet", "vipd_cut"]);
    }
}

/// What a cut path cost with BFD on: how long until the router held none of vipd's routes, and
/// until vipd had ended its BGP session.
#[derive(Debug, Clone, Copy)]
pub struct Failover {
    pub router_withdrew: Duration,
    pub vipd_noticed: Duration,
}

/// vipd and the router, with a `hold` s hold time, graceful restart offered for `restart_time`
/// s, and with `bfd` BFD (300 ms × 3, from the seventh field of `bgp_peers`). The path is cut
/// `rounds` times: each time both sides must notice (by BFD, else by the hold timer), the
/// router dropping every route, and after the path heals the sessions, BFD included, come back
/// with the routes. (With graceful restart and no BFD a helper keeps the routes for the restart
/// time after its hold timer, RFC 8538: that case is not a failover to measure.)
pub fn failover_after_a_cut<R: Router + super::router::BfdPeer>(
    bfd: bool,
    hold: u16,
    restart_time: &str,
    rounds: usize,
) -> Vec<Failover> {
    let mut cfg = RouterConfig::ipv4().hold_time(hold);
    if bfd {
        cfg = cfg.bfd(super::router::BfdMode::Down);
    }
    let bed = Bed::<R>::start_with(cfg, THREE_VIPS, &[("vipd_bgp_restart_time", restart_time)]);
    bed.wait_established();
    bed.wait_table_back(THREE_VIPS, NODE_V4, "at start");
    let mut out = Vec::new();
    let limit = Duration::from_secs(u64::from(hold) + 10);
    for round in 1..=rounds {
        if bfd {
            wait_until_or_explain(
                Duration::from_secs(20),
                &format!(
                    "{}'s and vipd's BFD sessions are Up (round {round})",
                    R::NAME
                ),
                || {
                    bed.router.bfd_up(NODE_V4)
                        && vipd_status(&bed.topo.node)["peers"][0]["bfd"]["state"] == "Up"
                },
                || bed.explain(),
            );
        }
        let downs_before = bed.vipd.log().matches("session down:").count();
        let start = Instant::now();
        let cut = PathCut::new(&bed.topo.tor, NODE_V4);
        let (mut router_withdrew, mut vipd_noticed) = (None, None);
        while router_withdrew.is_none() || vipd_noticed.is_none() {
            assert!(
                start.elapsed() < limit,
                "the cut path went unnoticed for {limit:?} (router: {router_withdrew:?}, vipd: \
                 {vipd_noticed:?})\n{}",
                bed.explain()
            );
            if router_withdrew.is_none() && bed.router.route_count(Family::Ipv4) == 0 {
                router_withdrew = Some(start.elapsed());
            }
            if vipd_noticed.is_none()
                && bed.vipd.log().matches("session down:").count() > downs_before
            {
                vipd_noticed = Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let f = Failover {
            router_withdrew: router_withdrew.unwrap_or_default(),
            vipd_noticed: vipd_noticed.unwrap_or_default(),
        };
        if bfd {
            // What an operator reads: `vipd status` names the failure.
            let status = vipd_status(&bed.topo.node);
            let b = &status["peers"][0]["bfd"];
            assert!(
                b["failures"].as_u64() >= Some(round as u64) && b["state"] != "Up",
                "vipd status after cut {round}: {b}\n{}",
                bed.explain()
            );
            // And what Prometheus scrapes.
            let metrics = crate::ns_stdout(
                &bed.topo.node,
                &[
                    "python3",
                    "-c",
                    "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:2112/metrics').read().decode())",
                ],
            );
            let sample = |name: &str| -> Option<f64> {
                metrics
                    .lines()
                    .find(|l| l.starts_with(name))?
                    .rsplit(' ')
                    .next()?
                    .parse()
                    .ok()
            };
            assert!(
                sample("vipd_bfd_session_failures_total") >= Some(round as f64)
                    && sample(
                        "vipd_bgp_session_downs_total{peer=\"10.99.0.2:179\",reason=\"bfd_down\"}"
                    ) >= Some(round as f64),
                "BFD failures in /metrics after cut {round}:\n{metrics}"
            );
        }
        eprintln!("{} (BFD {bfd}, hold {hold} s): cut {round}: {f:?}", R::NAME);
        out.push(f);
        drop(cut);
        bed.wait_table_back(THREE_VIPS, NODE_V4, &format!("after cut {round} healed"));
    }
    let by_bfd = bed.vipd.log().contains("session down: BFD session down");
    assert_eq!(
        by_bfd,
        bfd,
        "vipd's BGP session ended for BFD exactly when BFD runs\n{}",
        bed.explain()
    );
    out
}

/// `vipd status -o json` of the agent in namespace `ns` (its HTTP endpoint at the default
/// `:2112`).
fn vipd_status(ns: &str) -> serde_json::Value {
    let out = crate::ns_stdout(ns, &[&crate::vipd_bin(), "status", "-o", "json"]);
    serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
}

/// vipd with BFD and graceful restart is restarted `rounds` times (SIGTERM; with `crashes`,
/// every other one a SIGKILL) while the router's table is sampled every 50 ms: returns the
/// fewest routes seen and the samples taken. A restart closes the BGP session first (the router
/// keeps the routes as stale) and only then takes BFD AdminDown.
pub fn bfd_restarts<R: Router + super::router::BfdPeer + Sync>(
    mode: super::router::BfdMode,
    rounds: usize,
    crashes: bool,
) -> (usize, usize) {
    let mut bed = Bed::<R>::start_with(
        RouterConfig::ipv4().hold_time(90).bfd(mode),
        THREE_VIPS,
        &[("vipd_bgp_restart_time", "120")],
    );
    bed.wait_established();
    bed.wait_table_back(THREE_VIPS, NODE_V4, "at start");
    let (samples, fewest) = restarts_sampled(
        &mut bed,
        rounds,
        crashes,
        |bed, i| {
            wait_until_or_explain(
                Duration::from_secs(20),
                &format!("{}'s BFD session is Up before restart {i}", R::NAME),
                || bed.router.bfd_up(NODE_V4),
                || bed.explain(),
            );
        },
        |bed, i| bed.wait_table_back(THREE_VIPS, NODE_V4, &format!("after restart {i}")),
    );
    eprintln!(
        "{} ({mode:?}): {samples} samples over {rounds} restarts, fewest routes {fewest}",
        R::NAME
    );
    assert_eq!(
        fewest,
        THREE_VIPS.len(),
        "{} ({mode:?}) dropped routes ({samples} samples)\n{}",
        R::NAME,
        bed.explain()
    );
    (fewest, samples)
}

/// Multihop BFD (RFC 5883: UDP 4784) beside an eBGP multihop session between the loopbacks:
/// both sides bring it Up, and a cut path empties the router's table within the returned time.
pub fn bfd_multihop<R: Router + super::router::BfdPeer>() -> Duration {
    let bed = Bed::<R>::start_with(
        RouterConfig::ipv4()
            .multihop()
            .hold_time(90)
            .bfd(super::router::BfdMode::Down),
        THREE_VIPS,
        &[("vipd_bgp_restart_time", "120")],
    );
    bed.wait_established();
    bed.wait_table_back(THREE_VIPS, NODE_LO, "at start");
    wait_until_or_explain(
        Duration::from_secs(20),
        &format!("{}'s and vipd's multihop BFD sessions are Up", R::NAME),
        || {
            let b = &vipd_status(&bed.topo.node)["peers"][0]["bfd"];
            bed.router.bfd_up(NODE_LO) && b["state"] == "Up" && b["multihop"] == true
        },
        || bed.explain(),
    );
    let start = Instant::now();
    let _cut = PathCut::new(&bed.topo.tor, NODE_LO);
    wait_until_or_explain(
        Duration::from_secs(10),
        &format!("{} drops vipd's routes after the cut", R::NAME),
        || bed.router.route_count(Family::Ipv4) == 0,
        || bed.explain(),
    );
    let took = start.elapsed();
    eprintln!(
        "{} multihop BFD: routes gone {took:.2?} after the cut",
        R::NAME
    );
    took
}

/// BFD over IPv4 and IPv6 sessions side by side (RFC 5881 with hop limit 255 for IPv6): both
/// Up on both sides.
pub fn bfd_dual_stack<R: Router + super::router::BfdPeer>() {
    let bed = Bed::<R>::start_with(
        RouterConfig::ipv4()
            .with_ipv6()
            .hold_time(90)
            .bfd(super::router::BfdMode::Down),
        &[VIP4, VIP6],
        &[("vipd_bgp_restart_time", "120")],
    );
    bed.wait_established();
    wait_until_or_explain(
        Duration::from_secs(20),
        &format!("{}'s and vipd's IPv4 and IPv6 BFD sessions are Up", R::NAME),
        || {
            let peers = &vipd_status(&bed.topo.node)["peers"];
            bed.router.bfd_up(NODE_V4)
                && bed.router.bfd_up(NODE_V6)
                && (0..2).all(|i| peers[i]["bfd"]["state"] == "Up")
        },
        || bed.explain(),
    );
}

/// Long-lived graceful restart (RFC 9494) with BIRD, an LLGR helper by default: vipd offers a
/// 2 s restart time and 60 s of long-lived stale time, and is killed. After the restart time
/// BIRD keeps the routes, marked LLGR_STALE (65535:6) and least preferred, instead of dropping
/// them; the next process takes them back unmarked. Returns BIRD's route as it showed while
/// vipd was away.
pub fn llgr_keeps_routes_least_preferred() -> String {
    let mut bed = Bed::<super::bird::Bird>::start_with(
        RouterConfig::ipv4().hold_time(90),
        &[VIP4],
        &[
            ("vipd_bgp_restart_time", "2"),
            ("vipd_bgp_llgr_stale_time", "60"),
        ],
    );
    bed.wait_established();
    bed.wait_table_back(&[VIP4], NODE_V4, "at start");
    assert!(bed.vipd.kill(), "vipd was not running\n{}", bed.explain());
    let llgr_stale = |bed: &Bed<super::bird::Bird>| {
        bed.router
            .route_all(VIP4)
            .contains("BGP.community: (65535,6)")
    };
    wait_until_or_explain(
        Duration::from_secs(10),
        "BIRD keeps the route past the 2 s restart time, marked LLGR_STALE (65535,6)",
        || llgr_stale(&bed),
        || format!("{}\n{}", bed.router.route_all(VIP4), bed.explain()),
    );
    // Well past the restart time it is still there.
    std::thread::sleep(Duration::from_secs(3));
    let away = bed.router.route_all(VIP4);
    assert!(llgr_stale(&bed), "{away}\n{}", bed.explain());
    bed.vipd.start();
    wait_until_or_explain(
        back_after_loss(),
        "the new process's route replaces the stale one, unmarked",
        || {
            bed.router.session_established()
                && bed.router.route(VIP4).is_some()
                && !llgr_stale(&bed)
        },
        || bed.explain(),
    );
    away
}

/// An operator drains vipd by signal (static VIPs: no Node to cordon): SIGUSR1 marks the routes
/// with GRACEFUL_SHUTDOWN at BIRD, `vipd_bgp_drain_time` (2 s) later they are withdrawn, SIGUSR2
/// brings them back unmarked; drained again, a SIGTERM is a shutdown (BIRD empty at once,
/// graceful restart notwithstanding).
pub fn operator_drain_by_signal() {
    let mut bed = Bed::<super::bird::Bird>::start_with(
        RouterConfig::ipv4().hold_time(90),
        THREE_VIPS,
        &[
            ("vipd_bgp_restart_time", "120"),
            ("vipd_bgp_drain_time", "2"),
        ],
    );
    bed.wait_established();
    bed.wait_table_back(THREE_VIPS, NODE_V4, "at start");
    let marked = |bed: &Bed<super::bird::Bird>| {
        bed.router
            .route_all(VIP4)
            .contains("BGP.community: (65535,0)")
    };
    let drained = Instant::now();
    assert!(bed.vipd.signal("USR1"), "vipd is not running");
    wait_until_or_explain(
        Duration::from_secs(5),
        "SIGUSR1: BIRD's routes carry GRACEFUL_SHUTDOWN (65535,0)",
        || marked(&bed),
        || bed.explain(),
    );
    wait_until_or_explain(
        Duration::from_secs(10),
        "the routes are withdrawn after the 2 s drain time",
        || bed.router.route_count(Family::Ipv4) == 0,
        || bed.explain(),
    );
    let took = drained.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "withdrawn after {took:?}"
    );
    assert!(bed.vipd.signal("USR2"), "vipd is not running");
    bed.wait_table_back(THREE_VIPS, NODE_V4, "after SIGUSR2");
    assert!(!marked(&bed), "unmarked after SIGUSR2\n{}", bed.explain());
    assert!(bed.vipd.signal("USR1"), "vipd is not running");
    wait_until_or_explain(
        Duration::from_secs(5),
        "marked again",
        || marked(&bed),
        || bed.explain(),
    );
    bed.vipd.terminate();
    wait_until_or_explain(
        Duration::from_secs(1),
        "BIRD holds nothing within 1 s of SIGTERM on a drained vipd",
        || bed.router.route_count(Family::Ipv4) == 0,
        || bed.explain(),
    );
    assert!(
        bed.vipd
            .log()
            .contains("shutting down: an operator drained vipd"),
        "{}",
        bed.explain()
    );
}

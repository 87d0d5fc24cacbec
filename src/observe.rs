//! [I/O] What the agent shows about itself: the owner loop publishes into an [`Observer`], the
//! HTTP endpoint reads from it (`/status` as JSON for `vipd status`, `/metrics` as OpenMetrics).
//!
//! Peer metrics are read live from the speaker's [`PeerBoard`] at scrape time rather than
//! mirrored into counters, so they can never drift from what `vipd status` says.

use crate::bgp::speaker::PeerBoard;
use crate::report::{self, AgentReport, ServiceState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What keeps the agent from being ready, by component. Empty = ready.
#[derive(Clone, Default, Debug)]
pub struct Readiness(Arc<Mutex<BTreeMap<&'static str, String>>>);

impl Readiness {
    pub fn not_ready(&self, component: &'static str, why: impl Into<String>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(component, why.into());
        }
    }

    pub fn ready(&self, component: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(component);
        }
    }

    /// `None` when ready, else one line per reason.
    pub fn reasons(&self) -> Option<String> {
        let m = self.0.lock().ok()?;
        (!m.is_empty()).then(|| m.iter().map(|(c, why)| format!("{c}: {why}\n")).collect())
    }
}

/// The states kube-vip's `kube_vip_manager_bgp_session_info` enumerates (GoBGP's names), in
/// the order of RFC 4271's states vipd reports.
const SESSION_STATES: [(&str, &str); 6] = [
    ("Idle", "SESSION_STATE_IDLE"),
    ("Connect", "SESSION_STATE_CONNECT"),
    ("Active", "SESSION_STATE_ACTIVE"),
    ("OpenSent", "SESSION_STATE_OPENSENT"),
    ("OpenConfirm", "SESSION_STATE_OPENCONFIRM"),
    ("Established", "SESSION_STATE_ESTABLISHED"),
];

type Labels = Vec<(&'static str, String)>;
/// Reads one counter of a peer.
type PeerCount = fn(&report::PeerReport) -> u64;
type BfdCount = fn(&report::BfdReport) -> u64;

/// Cheap to clone; every clone shows the same agent.
#[derive(Clone)]
pub struct Observer {
    live: Arc<Live>,
    registry: Arc<Registry>,
    reconcile: Histogram,
    reconcile_by_ns: Family<Labels, Histogram, fn() -> Histogram>,
    errors: Family<Labels, Counter>,
    events_suppressed: Counter,
    leader: Family<Labels, Gauge>,
    transitions: Family<Labels, Counter>,
    election_loops: Family<Labels, Gauge>,
    election_attempts: Family<Labels, Counter>,
    election_errors: Family<Labels, Counter>,
}

/// The reconcile histograms' buckets: 0.5 ms doubling to 16 s.
fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// What changes between scrapes and is read at scrape time.
#[derive(Debug)]
struct Live {
    node: String,
    mode: String,
    readiness: Readiness,
    peers: Mutex<Option<PeerBoard>>,
    services: Mutex<Vec<ServiceState>>,
    /// Service watch events by type, exposed under kube-vip's exact name (no `_total`).
    service_events: Mutex<BTreeMap<&'static str, u64>>,
}

impl Observer {
    pub fn new(node: &str, mode: &str, readiness: Readiness) -> Observer {
        let live = Arc::new(Live {
            node: node.to_owned(),
            mode: mode.to_owned(),
            readiness,
            peers: Mutex::default(),
            services: Mutex::default(),
            service_events: Mutex::default(),
        });
        let reconcile = reconcile_histogram();
        let reconcile_by_ns = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            reconcile_histogram,
        );
        let errors = Family::<Labels, Counter>::default();
        let events_suppressed = Counter::default();
        let leader = Family::<Labels, Gauge>::default();
        let transitions = Family::<Labels, Counter>::default();
        let election_loops = Family::<Labels, Gauge>::default();
        let election_attempts = Family::<Labels, Counter>::default();
        let election_errors = Family::<Labels, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "kube_vip_build",
            "vipd's version on this node",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("build", "vipd".to_owned()),
                ("node", node.to_owned()),
            ]),
        );
        registry.register(
            "vipd_reconcile_duration_seconds",
            "Time from a change seen to routes, addresses and status requests handed out, per batch",
            reconcile.clone(),
        );
        registry.register(
            "kube_vip_service_reconcile_errors",
            "Problems found in a Service's input (each counted once while it lasts)",
            errors.clone(),
        );
        registry.register(
            "vipd_events_suppressed",
            "Kubernetes Events not sent because a Service exceeded its event rate",
            events_suppressed.clone(),
        );
        registry.register(
            "kube_vip_is_leader",
            "1 while this node holds the lease",
            leader.clone(),
        );
        registry.register(
            "kube_vip_service_reconcile_duration_seconds",
            "Time of each reconcile, under every namespace whose Services it decided (kube-vip's name; vipd reconciles all Services in one pass)",
            reconcile_by_ns.clone(),
        );
        registry.register(
            "kube_vip_leader_election_transitions",
            "Times this node gained a Lease; frequent transitions mean instability",
            transitions.clone(),
        );
        registry.register(
            "kube_vip_service_election_loops",
            "Per-Service elections this node stands in now (1 per Service; more would be a leak)",
            election_loops.clone(),
        );
        registry.register(
            "kube_vip_service_election_attempts",
            "Times this node started standing for a Service's Lease",
            election_attempts.clone(),
        );
        registry.register(
            "kube_vip_service_election_errors",
            "Per-Service election failures by reason",
            election_errors.clone(),
        );
        registry.register_collector(Box::new(LiveCollector(Arc::clone(&live))));
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        Observer {
            live,
            registry: Arc::new(registry),
            reconcile,
            reconcile_by_ns,
            errors,
            events_suppressed,
            leader,
            transitions,
            election_loops,
            election_attempts,
            election_errors,
        }
    }

    /// A reconcile that decided Services in `namespaces` took `took`.
    pub fn reconciled_namespaces<'a>(
        &self,
        namespaces: impl IntoIterator<Item = &'a str>,
        took: Duration,
    ) {
        for ns in namespaces {
            self.reconcile_by_ns
                .get_or_create(&vec![("namespace", ns.to_owned())])
                .observe(took.as_secs_f64());
        }
    }

    /// A Service watch event of `kind` (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn service_event(&self, kind: &'static str) {
        *lock(&self.live.service_events).entry(kind).or_default() += 1;
    }

    /// The per-Service elections this node stands in now, as (namespace, name) of the Service:
    /// a Service new here counts an attempt; one gone drops its loop gauge.
    pub fn service_elections(&self, now: &[(String, String)], before: &[(String, String)]) {
        for (ns, name) in now {
            let labels = vec![("namespace", ns.clone()), ("name", name.clone())];
            self.election_loops.get_or_create(&labels).set(1);
            if !before.contains(&(ns.clone(), name.clone())) {
                self.election_attempts.get_or_create(&labels).inc();
            }
        }
        for (ns, name) in before.iter().filter(|b| !now.contains(b)) {
            self.election_loops
                .remove(&vec![("namespace", ns.clone()), ("name", name.clone())]);
        }
    }

    /// A per-Service election that could not run, e.g. its Lease name is unusable.
    pub fn service_election_error(&self, namespace: &str, name: &str, reason: &str) {
        self.election_errors
            .get_or_create(&vec![
                ("namespace", namespace.to_owned()),
                ("name", name.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    pub fn set_peers(&self, board: PeerBoard) {
        *lock(&self.live.peers) = Some(board);
    }

    /// The owner loop's decisions after a reconcile.
    pub fn publish(&self, services: Vec<ServiceState>, took: Duration) {
        let namespaces: std::collections::BTreeSet<String> = services
            .iter()
            .filter_map(|s| s.service.split_once('/').map(|(ns, _)| ns.to_owned()))
            .collect();
        *lock(&self.live.services) = services;
        self.reconcile.observe(took.as_secs_f64());
        self.reconciled_namespaces(namespaces.iter().map(String::as_str), took);
    }

    pub fn reconcile_error(&self, namespace: &str, name: &str, reason: &str) {
        self.errors
            .get_or_create(&vec![
                ("namespace", namespace.to_owned()),
                ("name", name.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    pub fn event_suppressed(&self) {
        self.events_suppressed.inc();
    }

    /// This node leads Lease `lease` (its name, as kube-vip labels it) or no longer; a gain
    /// counts a transition, as in kube-vip.
    pub fn set_leader(&self, lease: &str, is_leader: bool) {
        let was = self
            .leader
            .get_or_create(&vec![
                ("node", self.live.node.clone()),
                ("lease_name", lease.to_owned()),
            ])
            .set(i64::from(is_leader));
        if is_leader && was == 0 {
            self.transitions
                .get_or_create(&vec![("lease_name", lease.to_owned())])
                .inc();
        }
    }

    pub fn report(&self) -> AgentReport {
        self.live.report()
    }

    /// The OpenMetrics text exposition.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Live {
    fn report(&self) -> AgentReport {
        let now = Instant::now();
        let peers = lock(&self.peers)
            .as_ref()
            .map(|b| {
                b.snapshot()
                    .iter()
                    .map(|(addr, s)| report::peer_report(*addr, s, now))
                    .collect()
            })
            .unwrap_or_default();
        let not_ready = self
            .readiness
            .reasons()
            .map(|r| r.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        report::assemble(
            (self.node.clone(), self.mode.clone(), not_ready),
            &lock(&self.services),
            peers,
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Series derived from the live report at each scrape.
#[derive(Debug)]
struct LiveCollector(Arc<Live>);

impl Collector for LiveCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = self.0.report();
        let peer = |p: &report::PeerReport| vec![("peer", p.peer.clone())];
        let mut fam = enc.encode_descriptor(
            "kube_vip_manager_bgp_session_info",
            "1 for the session's current state (kube-vip's name and states).",
            None,
            MetricType::Gauge,
        )?;
        for p in &r.peers {
            for (ours, theirs) in SESSION_STATES {
                let labels = vec![("state", theirs.to_owned()), ("peer", p.peer.clone())];
                ConstGauge::new(i64::from(p.state == ours)).encode(fam.encode_family(&labels)?)?;
            }
        }
        gauges(
            &mut enc,
            "vipd_bgp_session_up",
            "1 while the session is Established.",
            &r,
            |p| i64::from(p.established()),
        )?;
        gauges(
            &mut enc,
            "vipd_bgp_session_uptime_seconds",
            "Seconds since the session was established (0 when down).",
            &r,
            |p| {
                p.uptime_seconds
                    .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX))
            },
        )?;
        gauges(
            &mut enc,
            "vipd_bgp_prefixes_advertised",
            "Prefixes the peer holds from this node now.",
            &r,
            |p| i64::try_from(p.prefixes_sent).unwrap_or(i64::MAX),
        )?;
        let counters: [(&str, &str, PeerCount); 7] = [
            ("vipd_bgp_updates_sent", "UPDATE messages sent.", |p| {
                p.updates_sent
            }),
            (
                "vipd_bgp_updates_received",
                "UPDATE messages received.",
                |p| p.updates_received,
            ),
            (
                "vipd_bgp_notifications_sent",
                "NOTIFICATION messages sent.",
                |p| p.notifications_sent,
            ),
            (
                "vipd_bgp_notifications_received",
                "NOTIFICATION messages received.",
                |p| p.notifications_received,
            ),
            (
                "vipd_bgp_session_flaps",
                "Times an Established session went down.",
                |p| p.flaps,
            ),
            (
                "vipd_bgp_updates_treated_as_withdraw",
                "Malformed UPDATEs whose routes were taken as withdrawn, the session kept (RFC 7606).",
                |p| p.updates_treated_as_withdraw,
            ),
            (
                "vipd_bgp_attributes_discarded",
                "Malformed path attributes discarded, the UPDATE kept (RFC 7606).",
                |p| p.attributes_discarded,
            ),
        ];
        for (name, help, value) in counters {
            let mut fam = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for p in &r.peers {
                ConstCounter::new(value(p)).encode(fam.encode_family(&peer(p))?)?;
            }
        }
        let bfd: Vec<(&report::PeerReport, &report::BfdReport)> = r
            .peers
            .iter()
            .filter_map(|p| p.bfd.as_ref().map(|b| (p, b)))
            .collect();
        let mut fam = enc.encode_descriptor(
            "vipd_bfd_session_up",
            "1 while the peer's BFD session is Up (peers with BFD only).",
            None,
            MetricType::Gauge,
        )?;
        for (p, b) in &bfd {
            ConstGauge::new(i64::from(b.up())).encode(fam.encode_family(&peer(p))?)?;
        }
        let bfd_counters: [(&str, &str, BfdCount); 2] = [
            (
                "vipd_bfd_session_failures",
                "Times the BFD session failed (left Up without an AdminDown), each ending the BGP session.",
                |b| b.failures,
            ),
            (
                "vipd_bfd_packets_discarded",
                "BFD packets from the peer refused (RFC 5880 6.8.6, wrong TTL of RFC 5881).",
                |b| b.discarded,
            ),
        ];
        for (name, help, value) in bfd_counters {
            let mut fam = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (p, b) in &bfd {
                ConstCounter::new(value(b)).encode(fam.encode_family(&peer(p))?)?;
            }
        }
        let mut fam = enc.encode_descriptor(
            "vipd_bgp_session_downs",
            "Sessions and connection attempts ended, by reason (connection_closed, peer_notification, hold_timer_expired, …).",
            None,
            MetricType::Counter,
        )?;
        for p in &r.peers {
            for (reason, n) in &p.downs {
                let labels = vec![("peer", p.peer.clone()), ("reason", reason.clone())];
                ConstCounter::new(*n).encode(fam.encode_family(&labels)?)?;
            }
        }
        // kube-vip's client_golang counter without `_total`, served in the Prometheus text
        // format: the same series name only as an untyped metric in OpenMetrics.
        let mut fam = enc.encode_descriptor(
            "kube_vip_manager_all_services_events",
            "Service watch events seen, by type (ADDED, MODIFIED, DELETED); a counter, under kube-vip's name.",
            None,
            MetricType::Unknown,
        )?;
        for (kind, n) in lock(&self.0.service_events).iter() {
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            ConstGauge::new(n).encode(fam.encode_family(&vec![("type", (*kind).to_owned())])?)?;
        }
        let mut per_ns: BTreeMap<&str, i64> = BTreeMap::new();
        // The agent's own mode shows, 0 when nothing is announced (static VIPs are BGP routes).
        let own = if r.mode == "bgp-static" {
            "bgp"
        } else {
            r.mode.as_str()
        };
        let mut per_mode: BTreeMap<&str, i64> = BTreeMap::from([(own, 0)]);
        for s in &r.services {
            let announced: Vec<_> = s.vips.iter().filter(|v| v.withheld.is_none()).collect();
            if !announced.is_empty() {
                let ns = s.service.split_once('/').map_or("", |(ns, _)| ns);
                *per_ns.entry(ns).or_default() += 1;
            }
            for v in announced {
                *per_mode.entry(v.mode.as_str()).or_default() += 1;
            }
        }
        let mut fam = enc.encode_descriptor(
            "kube_vip_active_services",
            "Services with a VIP announced from this node.",
            None,
            MetricType::Gauge,
        )?;
        for (ns, n) in per_ns {
            ConstGauge::new(n).encode(fam.encode_family(&vec![("namespace", ns.to_owned())])?)?;
        }
        let mut withheld: BTreeMap<&str, i64> = BTreeMap::new();
        for v in r.services.iter().flat_map(|s| &s.vips) {
            if let Some(why) = &v.withheld {
                *withheld.entry(why.code.as_str()).or_default() += 1;
            }
        }
        let mut fam = enc.encode_descriptor(
            "vipd_vips_withheld",
            "VIPs of vipd's Services not announced from this node, by reason code (as `vipd status` names it).",
            None,
            MetricType::Gauge,
        )?;
        for (reason, n) in withheld {
            ConstGauge::new(n).encode(fam.encode_family(&vec![("reason", reason.to_owned())])?)?;
        }
        let mut fam = enc.encode_descriptor(
            "vipd_vips_announced",
            "VIPs announced from this node to at least one peer, by mode.",
            None,
            MetricType::Gauge,
        )?;
        for (mode, n) in per_mode {
            ConstGauge::new(n).encode(fam.encode_family(&vec![("mode", mode.to_owned())])?)?;
        }
        Ok(())
    }
}

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    r: &AgentReport,
    value: impl Fn(&report::PeerReport) -> i64,
) -> Result<(), std::fmt::Error> {
    let mut fam = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for p in &r.peers {
        ConstGauge::new(value(p)).encode(fam.encode_family(&vec![("peer", p.peer.clone())])?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{VipState, Withheld};

    #[test]
    fn metrics_show_services_and_counts_with_the_incumbents_names() {
        let o = Observer::new("n1", "bgp", Readiness::default());
        o.publish(
            vec![
                ServiceState {
                    service: "shop/web".into(),
                    vips: vec![("192.0.2.1".parse().unwrap(), VipState::Routed)],
                    withheld: None,
                },
                ServiceState {
                    service: "shop/idle".into(),
                    vips: vec![(
                        "192.0.2.2".parse().unwrap(),
                        VipState::Withheld(Withheld::Skip(crate::decide::Skip::NoEndpoints)),
                    )],
                    withheld: None,
                },
            ],
            Duration::from_millis(3),
        );
        o.reconcile_error("shop", "bad", "InvalidLoadBalancerIP");
        o.set_leader("vipd-ipam", true);
        let text = o.metrics_text();
        // No peers: the routed VIP is withheld (NoSession), so nothing is active.
        assert!(!text.contains("kube_vip_active_services{"), "{text}");
        assert!(
            text.contains("vipd_vips_announced{mode=\"bgp\"} 0"),
            "{text}"
        );
        assert!(text.contains(
            "kube_vip_service_reconcile_errors_total{namespace=\"shop\",name=\"bad\",reason=\"InvalidLoadBalancerIP\"} 1"
        ), "{text}");
        assert!(text.contains("kube_vip_is_leader{node=\"n1\",lease_name=\"vipd-ipam\"} 1"));
        assert!(
            text.contains("vipd_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("kube_vip_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn kube_vips_other_metric_names_and_the_process_series_are_there() {
        let o = Observer::new("n1", "arp", Readiness::default());
        o.publish(
            vec![ServiceState {
                service: "shop/idle".into(),
                vips: vec![(
                    "192.0.2.2".parse().unwrap(),
                    VipState::Withheld(Withheld::Skip(crate::decide::Skip::NoEndpoints)),
                )],
                withheld: None,
            }],
            Duration::from_millis(3),
        );
        o.service_event("ADDED");
        o.service_event("ADDED");
        o.service_event("MODIFIED");
        o.set_leader("kubevip-web", false);
        o.set_leader("kubevip-web", true);
        o.set_leader("kubevip-web", true);
        o.set_leader("kubevip-web", false);
        o.set_leader("kubevip-web", true);
        let web = ("default".to_string(), "web".to_string());
        o.service_elections(std::slice::from_ref(&web), &[]);
        o.service_elections(std::slice::from_ref(&web), std::slice::from_ref(&web));
        o.service_election_error("default", "web", "write_failed");
        let text = o.metrics_text();
        for line in [
            "kube_vip_service_reconcile_duration_seconds_count{namespace=\"shop\"} 1",
            "kube_vip_manager_all_services_events{type=\"ADDED\"} 2",
            "kube_vip_manager_all_services_events{type=\"MODIFIED\"} 1",
            "kube_vip_leader_election_transitions_total{lease_name=\"kubevip-web\"} 2",
            "kube_vip_service_election_loops{namespace=\"default\",name=\"web\"} 1",
            "kube_vip_service_election_attempts_total{namespace=\"default\",name=\"web\"} 1",
            "kube_vip_service_election_errors_total{namespace=\"default\",name=\"web\",reason=\"write_failed\"} 1",
            "vipd_vips_withheld{reason=\"NoEndpoints\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        for family in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(family), "{family} missing in\n{text}");
        }
        // The loop ends: its gauge goes.
        o.service_elections(&[], std::slice::from_ref(&web));
        assert!(!o
            .metrics_text()
            .contains("kube_vip_service_election_loops{"));
    }
}

//! [I/O] Services mode's input for the owner loop — the watched cluster and its wake-ups
//! (changes, Leases won and lost, the fence, DHCP and UPnP results, the resync) — and what the
//! loop holds for both of its executors and how it tells the cluster: the elections, the DHCP
//! clients and UPnP mappings, Events for VIPs announced and withdrawn (each once per change),
//! Warnings once while they last, and the status ingress asked of the writer.

use super::elect::Elect;
use super::node_labels::{NodeLabels, Owned};
use super::Context;
use crate::decide::ingress::{ingress_write, IngressTarget, IngressWrite};
use crate::decide::{Desired, ServiceDecision, ServiceKey, Skip};
use crate::dhcp::services::DhcpServices;
use crate::election::lease::Leadership;
use crate::election::LeaseKey;
use crate::kube::status::{EventSink, ProblemReports, ServiceEvent, StatusWriter};
use crate::kube::view::Snapshot;
use crate::kube::view::View;
use crate::observe::Observer;
use crate::observe::Readiness;
use crate::plan::shutdown::Step;
use crate::report::EventReason;
use crate::upnp::services::UpnpServices;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

/// Changes arriving together (a rollout touches many slices) are decided once.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// Re-decide this often even without events.
const RESYNC: Duration = Duration::from_secs(60);

/// Services mode's input and what the owner loop holds for both of its executors: the watched
/// cluster, the elections, the DHCP clients and UPnP mappings, and how it tells the cluster.
pub struct Common {
    pub node: String,
    pub client: kube::Client,
    pub elect: Elect,
    pub events: EventSink,
    pub observer: Observer,
    /// The DHCP VIPs (`0.0.0.0` Services) this node leases; their addresses live on macvlans.
    pub dhcp: DhcpServices,
    /// UPnP mappings of `forwardUPNP` Services served here (`enable_upnp`).
    pub upnp: Option<UpnpServices>,
    view: View,
    readiness: Readiness,
    lead_rx: mpsc::UnboundedReceiver<(LeaseKey, Leadership)>,
    dhcp_changed: Arc<Notify>,
    upnp_changed: Option<Arc<Notify>>,
    resync: tokio::time::Interval,
    /// A change seen whose debounce was cut short: plan at the next wake-up.
    dirty: bool,
    status: Option<StatusWriter>,
    /// Per Service, the VIPs this node serves, as last reported.
    served: BTreeMap<ServiceKey, Vec<IpAddr>>,
    /// Per Service, why it is not announced from this node, as last logged.
    skipped: BTreeMap<ServiceKey, Skip>,
    /// Per Service, the last ingress asked of the status writer and not yet seen in the view,
    /// with the Service's resourceVersion when asked: a newer version that still differs means
    /// the write was lost or overwritten, so it is asked again.
    requested: BTreeMap<ServiceKey, (IngressWrite, Option<String>)>,
    /// Problems in Services' input (bad addresses, malformed annotations), each reported once.
    input_problems: ProblemReports,
    /// Warnings of the executor raised up to the last round…
    warned: BTreeSet<(ServiceKey, String)>,
    /// …and those raised in this one (a Warning gone and back is raised again).
    warned_now: BTreeSet<(ServiceKey, String)>,
    /// `enable_node_labeling`'s `service-provided.kube-vip.io` labels, and `cp_enable`'s
    /// `kube-vip.io/has-ip`.
    node_labels: Option<NodeLabels>,
    /// The Services whose own Lease this node stood for at the last report (namespace, name).
    elections: Vec<(String, String)>,
}

/// What [`Common`] is made of, started by the caller.
pub(super) struct Parts {
    pub node: String,
    pub client: kube::Client,
    pub view: View,
    pub readiness: Readiness,
    pub elect: Elect,
    pub lead_rx: mpsc::UnboundedReceiver<(LeaseKey, Leadership)>,
    pub events: EventSink,
    pub observer: Observer,
    pub dhcp: DhcpServices,
    pub upnp: Option<UpnpServices>,
    pub status: Option<StatusWriter>,
    pub node_labels: Owned,
}

impl Common {
    pub(super) fn new(p: Parts) -> Common {
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Common {
            node: p.node,
            client: p.client,
            elect: p.elect,
            events: p.events,
            observer: p.observer,
            dhcp_changed: p.dhcp.notifier(),
            upnp_changed: p.upnp.as_ref().map(UpnpServices::notifier),
            dhcp: p.dhcp,
            upnp: p.upnp,
            view: p.view,
            readiness: p.readiness,
            lead_rx: p.lead_rx,
            resync,
            dirty: false,
            status: p.status,
            served: BTreeMap::new(),
            skipped: BTreeMap::new(),
            requested: BTreeMap::new(),
            input_problems: ProblemReports::default(),
            warned: BTreeSet::new(),
            warned_now: BTreeSet::new(),
            node_labels: (p.node_labels != Owned::default())
                .then(|| NodeLabels::new(p.node_labels)),
            elections: Vec::new(),
        }
    }

    /// kube-vip's per-Service election metrics: the Services standing for a Lease of their own
    /// (`standing`), and each failed Lease read or write counted on the Services it elects.
    pub fn report_elections(&mut self, standing: &BTreeMap<ServiceKey, LeaseKey>) {
        let now: Vec<(String, String)> = standing
            .keys()
            .map(|k| (k.namespace.clone(), k.name.clone()))
            .collect();
        self.observer.service_elections(&now, &self.elections);
        for (lease, reason) in self.elect.take_failures() {
            for (key, _) in standing.iter().filter(|(_, l)| **l == lease) {
                self.observer
                    .service_election_error(&key.namespace, &key.name, reason);
            }
        }
        self.elections = now;
    }

    /// `enable_node_labeling`: labels this node for what it serves now (after [`Common::report`]).
    /// `cp_held`: the control-plane VIPs held here now.
    pub fn label_node(&mut self, snap: &Snapshot, cp_held: &[IpAddr]) {
        if let Some(labels) = self.node_labels.as_mut() {
            labels.update(&self.client, snap.node.as_deref(), &self.served, cp_held);
        }
    }

    /// The cluster as watched now.
    pub fn snapshot(&self) -> Snapshot {
        self.view.snapshot()
    }

    /// A Warning (log line and Event) about `key`, raised once while it lasts: raise it again
    /// every round it still holds, and it is sent only the first time.
    pub fn warn_once(&mut self, key: &ServiceKey, reason: EventReason, note: String) {
        let new = !self.warned.contains(&(key.clone(), note.clone()));
        self.warned_now.insert((key.clone(), note.clone()));
        if new {
            warn!(service = %key, reason = reason.code(), "{note}");
            self.events.send(ServiceEvent {
                service: key.clone(),
                reason,
                note,
            });
        }
    }

    /// What this node serves per Service now: Events and log lines for what changed (`how`:
    /// "BGP", "ARP/NDP"), the reasons for what is not served, and the problems in the input.
    /// Ends the round of [`Common::warn_once`].
    pub fn report(
        &mut self,
        desired: &Desired,
        served: BTreeMap<ServiceKey, Vec<IpAddr>>,
        how: &str,
    ) {
        for (key, d) in &desired.services {
            let before = self.served.get(key).map(Vec::as_slice).unwrap_or(&[]);
            let now = served.get(key).map(Vec::as_slice).unwrap_or(&[]);
            if before != now {
                let (reason, note) = if now.is_empty() {
                    let why = d.skip.as_ref().map_or(String::new(), |s| format!(": {s}"));
                    info!(service = %key, why = why.trim_start_matches(": "), "withdrawn from this node");
                    (
                        EventReason::Withdrawn,
                        format!("no longer announced from node {}{why}", self.node),
                    )
                } else {
                    let vips = join(now);
                    info!(service = %key, %vips, "announced from this node by {how}");
                    (
                        EventReason::Announced,
                        format!("{vips} announced by {how} from node {}", self.node),
                    )
                };
                self.events.send(ServiceEvent {
                    service: key.clone(),
                    reason,
                    note,
                });
            }
            if let Some(skip) = &d.skip {
                if self.skipped.get(key) != Some(skip) {
                    // Services that are not vipd's are the common case: keep them out of info.
                    if matches!(
                        skip,
                        Skip::NotLoadBalancer { .. } | Skip::ClassNotOurs { .. } | Skip::Ignored
                    ) {
                        debug!(service = %key, why = %skip, "not announced");
                    } else {
                        info!(service = %key, why = %skip, "not announced from this node");
                    }
                }
            }
        }
        self.served = served;
        self.skipped = desired
            .services
            .iter()
            .filter_map(|(k, d)| Some((k.clone(), d.skip.clone()?)))
            .collect();
        self.input_problems
            .report(desired, &self.events, &self.observer);
        self.warned = std::mem::take(&mut self.warned_now);
    }

    /// The VIPs served here per Service, as last reported.
    pub fn served(&self) -> &BTreeMap<ServiceKey, Vec<IpAddr>> {
        &self.served
    }

    /// Asks the status writer for each Service's ingress where it differs from `target`'s
    /// (with the UPnP gateway's external address of a Service mapped from here).
    pub fn write_status(
        &mut self,
        snap: &Snapshot,
        desired: &Desired,
        target: impl Fn(&ServiceKey, &ServiceDecision) -> IngressTarget,
    ) {
        let Some(status) = &self.status else { return };
        let mut still_requested = BTreeMap::new();
        for svc in &snap.services {
            let Some(key) = ServiceKey::of(svc) else {
                continue;
            };
            let Some(d) = desired.services.get(&key) else {
                continue;
            };
            let external = self.upnp.as_ref().and_then(|u| u.external_for(&key));
            let target = crate::upnp::plan::with_external(target(&key, d), external);
            let Some(change) = ingress_write(&target, svc) else {
                continue;
            };
            // Asked already and the watch has shown no newer version: do not ask again.
            let asked = (change, svc.metadata.resource_version.clone());
            if self.requested.get(&key) != Some(&asked) {
                status.set(key.clone(), asked.0.clone());
            }
            still_requested.insert(key, asked);
        }
        self.requested = still_requested;
    }
}

impl Context for Common {
    fn node(&self) -> Option<Arc<k8s_openapi::api::core::v1::Node>> {
        self.view.node()
    }

    async fn ready(&mut self) {
        self.view.ready().await;
        info!("watches listed; deciding");
        self.readiness.ready("services");
    }

    async fn wake(&mut self) -> bool {
        if std::mem::take(&mut self.dirty) {
            return true;
        }
        let fence = self.elect.fence();
        tokio::select! {
            // The fence: a leadership ends at its renew deadline whatever the election task
            // does, and what it elects goes with it.
            () = sleep_until_opt(fence) => true,
            Some((key, l)) = self.lead_rx.recv() => {
                let mut changed = self.elect.on_leadership(key, l);
                while let Ok((key, l)) = self.lead_rx.try_recv() {
                    changed |= self.elect.on_leadership(key, l);
                }
                // A renew only moves the fence; a new or lost leadership re-plans.
                changed
            }
            () = self.view.changed() => {
                // Cancelled during the debounce (the executor woke first), the change is
                // still planned on: `dirty` says so at the next wake-up.
                self.dirty = true;
                tokio::time::sleep(DEBOUNCE).await;
                self.dirty = false;
                true
            }
            () = crate::wake::notified(Some(&self.dhcp_changed)) => true,
            () = crate::wake::notified(self.upnp_changed.as_deref()) => true,
            _ = self.resync.tick() => true,
        }
    }

    async fn shutdown_step(&mut self, step: Step) -> bool {
        match step {
            Step::StopDhcp => self.dhcp.shutdown().await,
            Step::UnmapPorts => {
                if let Some(upnp) = self.upnp.as_mut() {
                    upnp.shutdown().await;
                }
            }
            Step::ReleaseLeases => self.elect.release_all().await,
            Step::LeaveForNextProcess => {
                self.elect.abandon_all();
                if let Some(upnp) = self.upnp.as_mut() {
                    upnp.abandon();
                }
            }
            Step::UnlabelNode => {
                if let Some(labels) = self.node_labels.as_mut() {
                    labels.clear(&self.client, &self.node).await;
                }
            }
            _ => return false,
        }
        true
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

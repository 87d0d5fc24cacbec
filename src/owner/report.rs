//! [I/O] What the owner loop holds for both executors, and how it tells the cluster: the
//! elections, the DHCP clients and UPnP mappings, Events for VIPs announced and withdrawn (each
//! once per change), Warnings once while they last, and the status ingress asked of the writer.

use super::elect::Elect;
use crate::decide::ingress::{current_ingress, ingress_change, IngressTarget};
use crate::decide::{Desired, ServiceDecision, ServiceKey, Skip};
use crate::dhcp::services::DhcpServices;
use crate::kube::status::{EventSink, ProblemReports, ServiceEvent, StatusWriter};
use crate::kube::view::Snapshot;
use crate::observe::Observer;
use crate::report::EventReason;
use crate::upnp::services::UpnpServices;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use tracing::{debug, info, warn};

/// The owner loop's state that does not depend on the mode.
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
    status: Option<StatusWriter>,
    /// Per Service, the VIPs this node serves, as last reported.
    served: BTreeMap<ServiceKey, Vec<IpAddr>>,
    /// Per Service, why it is not announced from this node, as last logged.
    skipped: BTreeMap<ServiceKey, Skip>,
    /// Per Service, the last ingress asked of the status writer and not yet seen in the view,
    /// with the Service's resourceVersion when asked: a newer version that still differs means
    /// the write was lost or overwritten, so it is asked again.
    requested: BTreeMap<ServiceKey, (Vec<IpAddr>, Option<String>)>,
    /// Problems in Services' input (bad addresses, malformed annotations), each reported once.
    input_problems: ProblemReports,
    /// Warnings of the executor raised up to the last round…
    warned: BTreeSet<(ServiceKey, String)>,
    /// …and those raised in this one (a Warning gone and back is raised again).
    warned_now: BTreeSet<(ServiceKey, String)>,
}

impl Common {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        node: &str,
        elect: Elect,
        status: Option<StatusWriter>,
        events: EventSink,
        observer: Observer,
        dhcp: DhcpServices,
        upnp: Option<UpnpServices>,
        client: kube::Client,
    ) -> Common {
        Common {
            node: node.to_owned(),
            client,
            elect,
            events,
            observer,
            dhcp,
            upnp,
            status,
            served: BTreeMap::new(),
            skipped: BTreeMap::new(),
            requested: BTreeMap::new(),
            input_problems: ProblemReports::default(),
            warned: BTreeSet::new(),
            warned_now: BTreeSet::new(),
        }
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
            let Some(change) = ingress_change(&target, &current_ingress(svc)) else {
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

pub fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

//! [I/O] The owner loop of services mode with ARP/NDP (`vip_arp`), no BGP:
//!
//! watch (kube view) → decide (pure: which Services this node may serve) → elect (one Lease
//! per Service or one for all; only eligible nodes stand) → the leader claims each VIP
//! ([`super::link`]: probe, address, announcements) → status ingress, `kube-vip.io/vipHost`,
//! Events.
//!
//! Only this loop adds nothing and removes addresses: a VIP's address goes at once when its
//! Lease is lost, when leadership reaches its fence deadline (a timer here, independent of the
//! election task), when the Service goes or loses its endpoints here, and on shutdown — always
//! before the Lease is released, so the next leader never overlaps.

use super::frame::Mac;
use super::link::{self, LinkEvent};
use crate::agent::RunError;
use crate::config::{ArpSettings, ElectionScope, ServicesSettings};
use crate::decide::ingress::{current_ingress, ingress_change, ingress_target, IngressTarget};
use crate::decide::{self, ClusterView, DecideConfig, Desired, NodeCtx, ServiceKey};
use crate::http::Readiness;
use crate::kube::lease::{Election, Leadership, LeaseKey};
use crate::kube::status::{EventSink, ServiceEvent, StatusWriter};
use crate::kube::view::{AbortOnDrop, Snapshot, View};
use crate::netlink::VipAddresses;
use crate::observe::Observer;
use crate::report::{self, Reason, ServiceState, VipState};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// Service annotations read and written here.
pub const ANNOTATION_SERVICE_INTERFACE: &str = "kube-vip.io/serviceInterface";
pub use crate::election::serve::ANNOTATION_LEASE_NAME;
pub const ANNOTATION_VIP_HOST: &str = "kube-vip.io/vipHost";

const DEBOUNCE: Duration = Duration::from_millis(10);
const RESYNC: Duration = Duration::from_secs(60);
/// How long shutdown waits for each Lease release.
const RELEASE_DEADLINE: Duration = Duration::from_secs(2);

pub use crate::election::serve::lease_key;

/// Runs ARP mode until `shutdown`, then removes every VIP address and releases the Leases.
pub async fn run(
    svc: &ServicesSettings,
    arp: &ArpSettings,
    client: Client,
    readiness: Readiness,
    observer: crate::observe::Observer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // A crashed predecessor's addresses would answer ARP for VIPs this node does not lead.
    let left = crate::netlink::remove_all_marked().await?;
    if left > 0 {
        info!(
            removed = left,
            "removed VIP addresses of an earlier vipd before standing for election"
        );
    }
    readiness.not_ready(
        "services",
        "waiting for the first complete list of Services, EndpointSlices and this node",
    );
    let _ipam = svc.ipam.clone().map(|settings| {
        AbortOnDrop(tokio::spawn(crate::kube::ipam::run(
            client.clone(),
            settings,
            decide_config(svc),
            svc.node_name.clone(),
            observer.clone(),
        )))
    });
    let mut view = View::start(client.clone(), svc.namespace.as_deref(), &svc.node_name);
    let (lead_tx, mut lead_rx) = mpsc::unbounded_channel();
    let (link_tx, mut link_rx) = mpsc::unbounded_channel();
    let mut owner = Owner {
        svc: svc.clone(),
        arp: arp.clone(),
        client: client.clone(),
        decide: decide_config(svc),
        status: svc
            .status_updates
            .then(|| StatusWriter::start(client.clone())),
        events: EventSink::start(client, &svc.node_name, observer.clone()),
        observer,
        held: Arc::new(AtomicUsize::new(0)),
        elections: BTreeMap::new(),
        leading: BTreeMap::new(),
        lead_tx,
        links: BTreeMap::new(),
        claims: BTreeMap::new(),
        link_tx,
        served: BTreeMap::new(),
        requested: BTreeMap::new(),
        host_asked: BTreeMap::new(),
        problems: BTreeSet::new(),
        problems_now: BTreeSet::new(),
    };
    tokio::pin!(shutdown);
    info!(node = %svc.node_name, election = ?arp.election, "ARP mode: waiting for the first complete list of Services, EndpointSlices and this node");
    tokio::select! {
        () = &mut shutdown => return Ok(()),
        () = view.ready() => {}
    }
    readiness.ready("services");
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'decide: loop {
        owner.reconcile(&view.snapshot()).await;
        let fence = owner.leading.values().min().copied();
        tokio::select! {
            () = &mut shutdown => break 'decide,
            () = view.changed() => tokio::time::sleep(DEBOUNCE).await,
            Some((key, l)) = lead_rx.recv() => {
                owner.on_leadership(key, l);
                while let Ok((key, l)) = lead_rx.try_recv() {
                    owner.on_leadership(key, l);
                }
            }
            Some(ev) = link_rx.recv() => owner.on_link(ev),
            // The fence: leadership ends at its deadline whatever the election task does.
            () = sleep_until_opt(fence) => {}
            _ = resync.tick() => {}
        }
    }
    owner.shutdown().await;
    Ok(())
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// ARP reaches both families on the link: no peer decides which family can be announced.
fn decide_config(svc: &ServicesSettings) -> DecideConfig {
    DecideConfig {
        lb_class_only: svc.lb_class_only,
        lb_class_name: svc.lb_class_name.clone(),
        lb_class_legacy_handling: svc.lb_class_legacy_handling,
        announce_ipv4: true,
        announce_ipv6: true,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClaimState {
    Probing,
    Held,
    Refused(Mac),
    Failed,
}

struct Claim {
    link: Arc<VipAddresses>,
    task: JoinHandle<()>,
    state: ClaimState,
}

struct Owner {
    svc: ServicesSettings,
    arp: ArpSettings,
    client: Client,
    decide: DecideConfig,
    status: Option<StatusWriter>,
    events: EventSink,
    observer: Observer,
    /// How many Leases this node leads (the spread delay of every election reads it).
    held: Arc<AtomicUsize>,
    elections: BTreeMap<LeaseKey, Election>,
    /// Leases this node leads, each until its fence deadline.
    leading: BTreeMap<LeaseKey, Instant>,
    lead_tx: mpsc::UnboundedSender<(LeaseKey, Leadership)>,
    /// One handle per interface used.
    links: BTreeMap<String, Arc<VipAddresses>>,
    claims: BTreeMap<IpAddr, Claim>,
    link_tx: mpsc::UnboundedSender<LinkEvent>,
    /// Per Service, the VIPs this node serves (for Events).
    served: BTreeMap<ServiceKey, Vec<IpAddr>>,
    /// Per Service, the last ingress asked and the resourceVersion then (as in BGP mode).
    requested: BTreeMap<ServiceKey, (Vec<IpAddr>, Option<String>)>,
    /// Per Service, the resourceVersion when `vipHost` was last asked.
    host_asked: BTreeMap<ServiceKey, Option<String>>,
    /// Problems reported up to the last reconcile (each once while it lasts)…
    problems: BTreeSet<(ServiceKey, String)>,
    /// …and those found in this one (a problem gone and back is reported again).
    problems_now: BTreeSet<(ServiceKey, String)>,
}

impl Owner {
    fn on_leadership(&mut self, key: LeaseKey, l: Leadership) {
        match l {
            Leadership::Leading { until } => {
                self.observer.set_leader(&key.to_string(), true);
                self.leading.insert(key, until);
            }
            Leadership::NotLeading(why) => {
                self.observer.set_leader(&key.to_string(), false);
                if self.leading.remove(&key).is_some() {
                    info!(lease = %key, %why, "leadership ended: dropping its VIPs");
                }
            }
        }
    }

    fn on_link(&mut self, ev: LinkEvent) {
        let (vip, state) = match &ev {
            LinkEvent::Claimed(vip) => (*vip, ClaimState::Held),
            LinkEvent::Refused(vip, mac) => (*vip, ClaimState::Refused(*mac)),
            LinkEvent::Failed(vip, _) => (*vip, ClaimState::Failed),
            LinkEvent::Contested(..) => return,
        };
        if let Some(c) = self.claims.get_mut(&vip) {
            c.state = state;
        }
    }

    async fn reconcile(&mut self, snap: &Snapshot) {
        let now = Instant::now();
        let before = self.leading.len();
        for (k, _) in self.leading.iter().filter(|(_, until)| **until <= now) {
            self.observer.set_leader(&k.to_string(), false);
        }
        self.leading.retain(|_, until| *until > now);
        if self.leading.len() < before {
            info!("a leadership reached its renew deadline without a renew: dropping its VIPs");
        }
        let view = ClusterView {
            services: &snap.services,
            endpoint_slices: &snap.endpoint_slices,
        };
        let node = NodeCtx::from_node(&self.svc.node_name, snap.node.as_deref());
        let desired = decide::desired(&view, &node, &self.decide);
        let services: BTreeMap<ServiceKey, &Service> = snap
            .services
            .iter()
            .filter_map(|s| {
                Some((
                    ServiceKey {
                        namespace: s.metadata.namespace.clone()?,
                        name: s.metadata.name.clone()?,
                    },
                    s.as_ref(),
                ))
            })
            .collect();

        // Which Lease each of vipd's Services is elected by, and whether this node stands: it
        // may serve the Service (decide) and knows an interface for each of its VIPs (a leader
        // that cannot put the VIP anywhere would leave it dark while holding the Lease).
        let mut lease_of = BTreeMap::new();
        let mut eligible: BTreeMap<LeaseKey, bool> = BTreeMap::new();
        let mut placed: BTreeMap<ServiceKey, Vec<(IpAddr, String)>> = BTreeMap::new();
        for (key, d) in &desired.services {
            if d.vips.is_empty() {
                continue;
            }
            let svc = services.get(key).copied();
            let annotation = svc.and_then(|s| annotation(s, ANNOTATION_LEASE_NAME));
            let lk = lease_key(key, annotation, &self.arp.election);
            let mut ifaces = Vec::new();
            for vip in &d.announced {
                match self.interface_for(svc, *vip) {
                    Ok(ifname) => ifaces.push((*vip, ifname)),
                    Err(why) => self.problem(key, "NoInterface", why),
                }
            }
            let can_serve = !d.announced.is_empty() && ifaces.len() == d.announced.len();
            let stands = matches!(self.arp.election, ElectionScope::Global { .. }) || can_serve;
            *eligible.entry(lk.clone()).or_default() |= stands;
            if can_serve {
                placed.insert(key.clone(), ifaces);
            }
            lease_of.insert(key.clone(), lk);
        }

        // The VIPs to hold: those of Services whose Lease this node leads and that it may serve.
        let mut wanted: BTreeMap<IpAddr, (String, BTreeSet<ServiceKey>)> = BTreeMap::new();
        for (key, lk) in &lease_of {
            if !self.leading.contains_key(lk) {
                continue;
            }
            for (vip, ifname) in placed.get(key).into_iter().flatten() {
                wanted
                    .entry(*vip)
                    .or_insert_with(|| (ifname.clone(), BTreeSet::new()))
                    .1
                    .insert(key.clone());
            }
        }

        // Drop first: addresses go before any Lease is released or handed on.
        let drop: Vec<IpAddr> = self
            .claims
            .iter()
            .filter(|(ip, c)| {
                wanted
                    .get(ip)
                    .is_none_or(|(ifname, _)| ifname != c.link.ifname())
            })
            .map(|(ip, _)| *ip)
            .collect();
        for ip in drop {
            if let Some(c) = self.claims.remove(&ip) {
                release(ip, c).await;
            }
        }
        let gone: Vec<LeaseKey> = self
            .elections
            .keys()
            .filter(|k| !eligible.contains_key(k))
            .cloned()
            .collect();
        for k in gone {
            self.leading.remove(&k);
            if let Some(e) = self.elections.remove(&k) {
                info!(lease = %k, "no Service uses this Lease any more: releasing it");
                tokio::spawn(e.stop(RELEASE_DEADLINE));
            }
        }
        for (lk, stands) in &eligible {
            match self.elections.get(lk) {
                Some(e) => e.set_eligible(*stands),
                None => {
                    info!(lease = %lk, eligible = stands, "standing for election");
                    let e = Election::start(
                        self.client.clone(),
                        lk.clone(),
                        self.svc.node_name.clone(),
                        self.svc.election_timing,
                        *stands,
                        self.held.clone(),
                        self.lead_tx.clone(),
                    );
                    self.elections.insert(lk.clone(), e);
                }
            }
        }

        // Claim what is newly led.
        for (vip, (ifname, _)) in &wanted {
            if self.claims.contains_key(vip) {
                continue;
            }
            let link = match self.link(ifname).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(%vip, interface = %ifname, "{e}");
                    continue;
                }
            };
            info!(%vip, interface = %ifname, "leading: probing before claiming the VIP");
            let task = tokio::spawn(link::claim(
                *vip,
                link.clone(),
                self.arp.rate,
                self.link_tx.clone(),
            ));
            self.claims.insert(
                *vip,
                Claim {
                    link,
                    task,
                    state: ClaimState::Probing,
                },
            );
        }

        self.report(&desired, &wanted, &services);
        self.problems = std::mem::take(&mut self.problems_now);
        self.observer
            .publish(self.states(&desired, &lease_of, &wanted), now.elapsed());
    }

    /// What `vipd status` shows per Service: each VIP held here (and on which interface), or
    /// why not. Services that are not vipd's are left out.
    fn states(
        &self,
        desired: &Desired,
        lease_of: &BTreeMap<ServiceKey, LeaseKey>,
        wanted: &BTreeMap<IpAddr, (String, BTreeSet<ServiceKey>)>,
    ) -> Vec<ServiceState> {
        let why = report::skip_reason;
        desired
            .services
            .iter()
            .filter(|(_, d)| report::listed(d))
            .map(|(key, d)| {
                let vip_state = |vip: &IpAddr| {
                    if let Some((_, s)) = d.not_announced.iter().find(|(v, _)| v == vip) {
                        return VipState::Withheld(why(s));
                    }
                    if let Some(s) = &d.skip {
                        return VipState::Withheld(why(s));
                    }
                    let lease = lease_of.get(key);
                    let led = lease.is_some_and(|l| self.leading.contains_key(l));
                    let lease = lease.map_or(String::new(), ToString::to_string);
                    match (wanted.get(vip), self.claims.get(vip).map(|c| &c.state)) {
                        (Some((ifname, _)), Some(ClaimState::Held)) => VipState::Held {
                            mode: if vip.is_ipv4() { "arp" } else { "ndp" }.into(),
                            via: ifname.clone(),
                        },
                        (Some(_), Some(ClaimState::Refused(mac))) => VipState::Withheld(
                            Reason::new("AddressInUse", format!("already answered by {mac}")),
                        ),
                        (Some(_), Some(ClaimState::Failed)) => VipState::Withheld(Reason::new(
                            "ClaimFailed",
                            "the address could not be put on the interface (see the log)",
                        )),
                        (Some(_), _) => VipState::Withheld(Reason::new(
                            "Probing",
                            "leading: probing before claiming",
                        )),
                        (None, _) if led => VipState::Withheld(Reason::new(
                            "NoInterface",
                            "leading, but no interface for it (see the Warning Event)",
                        )),
                        (None, _) => VipState::Withheld(Reason::new(
                            "NotLeader",
                            format!("this node does not lead Lease {lease}"),
                        )),
                    }
                };
                ServiceState {
                    service: key.to_string(),
                    withheld: d.skip.as_ref().map(why),
                    vips: d.vips.iter().map(|v| (*v, vip_state(v))).collect(),
                }
            })
            .collect()
    }

    /// The VIP's interface: the Service's annotation, `vip_servicesinterface`, `vip_interface`,
    /// else the interface whose subnet holds the VIP.
    fn interface_for(&self, svc: Option<&Service>, vip: IpAddr) -> Result<String, String> {
        let named = svc
            .and_then(|s| annotation(s, ANNOTATION_SERVICE_INTERFACE))
            .filter(|i| *i != "auto")
            .or(self.arp.services_interface.as_deref())
            .or(self.arp.interface.as_deref());
        if let Some(i) = named {
            return Ok(i.to_owned());
        }
        let ifs = crate::netif::Interfaces::read()
            .map_err(|e| format!("cannot read the local interfaces: {e}"))?;
        ifs.subnet_holding(vip).map(str::to_owned).ok_or_else(|| {
            format!("no interface has a subnet holding {vip}: set vip_servicesinterface or the {ANNOTATION_SERVICE_INTERFACE} annotation")
        })
    }

    async fn link(
        &mut self,
        ifname: &str,
    ) -> Result<Arc<VipAddresses>, crate::netlink::NetlinkError> {
        if let Some(l) = self.links.get(ifname) {
            return Ok(l.clone());
        }
        let l = Arc::new(VipAddresses::open(ifname).await?);
        self.links.insert(ifname.to_owned(), l.clone());
        Ok(l)
    }

    fn problem(&mut self, key: &ServiceKey, reason: &str, note: String) {
        let new = !self.problems.contains(&(key.clone(), note.clone()));
        self.problems_now.insert((key.clone(), note.clone()));
        if new {
            warn!(service = %key, reason, "{note}");
            self.events.send(ServiceEvent {
                service: key.clone(),
                warning: true,
                reason: reason.into(),
                note,
            });
        }
    }

    /// Events for Services served or no longer served from here, a Warning naming the MAC
    /// of a refused claim, status ingress and `vipHost` for what is held.
    fn report(
        &mut self,
        desired: &Desired,
        wanted: &BTreeMap<IpAddr, (String, BTreeSet<ServiceKey>)>,
        services: &BTreeMap<ServiceKey, &Service>,
    ) {
        let mut served: BTreeMap<ServiceKey, Vec<IpAddr>> = BTreeMap::new();
        let mut refused = Vec::new();
        for (vip, (ifname, keys)) in wanted {
            match self.claims.get(vip).map(|c| &c.state) {
                Some(ClaimState::Held) => {
                    for k in keys {
                        served.entry(k.clone()).or_default().push(*vip);
                    }
                }
                Some(ClaimState::Refused(mac)) => {
                    for k in keys {
                        refused.push((k.clone(), format!("{vip} is already answered on {ifname} by {mac}: node {} does not claim it", self.svc.node_name)));
                    }
                }
                _ => {}
            }
        }
        for (k, note) in refused {
            self.problem(&k, "AddressInUse", note);
        }
        for (key, vips) in &served {
            if self.served.get(key) != Some(vips) {
                let vips = join(vips);
                info!(service = %key, %vips, "announced from this node by ARP/NDP");
                self.events.send(ServiceEvent {
                    service: key.clone(),
                    warning: false,
                    reason: "Announced".into(),
                    note: format!(
                        "{vips} announced by ARP/NDP from node {}",
                        self.svc.node_name
                    ),
                });
            }
        }
        for key in self.served.keys() {
            if !served.contains_key(key) && desired.services.contains_key(key) {
                info!(service = %key, "no longer announced from this node");
                self.events.send(ServiceEvent {
                    service: key.clone(),
                    warning: false,
                    reason: "Withdrawn".into(),
                    note: format!("no longer announced from node {}", self.svc.node_name),
                });
            }
        }
        self.served = served;

        let mut still = BTreeMap::new();
        let mut hosts = BTreeMap::new();
        for (key, d) in &desired.services {
            let Some(svc) = services.get(key) else {
                continue;
            };
            let target = match self.served.get(key) {
                // Only when every VIP this node may serve is held: no half-written status.
                Some(vips) if vips.len() == d.announced.len() => {
                    if d.not_announced.is_empty() {
                        IngressTarget::Set(d.announced.clone())
                    } else {
                        IngressTarget::SetIfEmpty(d.announced.clone())
                    }
                }
                Some(_) => IngressTarget::Leave,
                // Cluster-wide facts (no longer a LoadBalancer, no endpoint anywhere) clear it.
                None if d.announced.is_empty() => ingress_target(d, true),
                None => IngressTarget::Leave,
            };
            let version = svc.metadata.resource_version.clone();
            if self.served.contains_key(key)
                && annotation(svc, ANNOTATION_VIP_HOST) != Some(self.svc.node_name.as_str())
            {
                if self.host_asked.get(key) != Some(&version) {
                    self.write_vip_host(key.clone());
                }
                hosts.insert(key.clone(), version.clone());
            }
            let (Some(status), Some(change)) =
                (&self.status, ingress_change(&target, &current_ingress(svc)))
            else {
                continue;
            };
            let asked = (change, version);
            if self.requested.get(key) != Some(&asked) {
                status.set(key.clone(), asked.0.clone());
            }
            still.insert(key.clone(), asked);
        }
        self.requested = still;
        self.host_asked = hosts;
    }

    /// `kube-vip.io/vipHost=<node>` on the Service, by merge patch (only that key changes).
    fn write_vip_host(&self, key: ServiceKey) {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_VIP_HOST: self.svc.node_name}}});
        tokio::spawn(async move {
            if let Err(e) = api
                .patch(&key.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                warn!(service = %key, error = %e, "cannot write the {ANNOTATION_VIP_HOST} annotation");
            }
        });
    }

    /// Addresses first, then the Leases: the next leader never overlaps with us.
    async fn shutdown(mut self) {
        info!(
            vips = self.claims.len(),
            "shutting down: removing VIP addresses, then releasing Leases"
        );
        for (ip, c) in std::mem::take(&mut self.claims) {
            release(ip, c).await;
        }
        let stops: Vec<_> = std::mem::take(&mut self.elections)
            .into_values()
            .map(|e| e.stop(RELEASE_DEADLINE))
            .collect();
        futures::future::join_all(stops).await;
    }
}

/// Stops announcing `ip` and removes its address (the task is stopped first, so it cannot add
/// the address back).
async fn release(ip: IpAddr, c: Claim) {
    c.task.abort();
    let _ = c.task.await;
    match c.link.remove(ip).await {
        Ok(()) => info!(%ip, interface = c.link.ifname(), "VIP released"),
        Err(e) => warn!(%ip, "cannot remove the VIP address: {e}"),
    }
}

fn annotation<'a>(svc: &'a Service, name: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()?
        .get(name)
        .map(String::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> ServiceKey {
        ServiceKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn lk(ns: &str, name: &str) -> LeaseKey {
        LeaseKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn per_service_leases_are_named_after_the_service_unless_the_annotation_names_one() {
        let s = key("web", "shop");
        assert_eq!(
            lease_key(&s, None, &ElectionScope::PerService),
            lk("web", "kubevip-shop")
        );
        assert_eq!(
            lease_key(&s, Some("shared"), &ElectionScope::PerService),
            lk("web", "shared")
        );
        assert_eq!(
            lease_key(&s, Some("infra/shared"), &ElectionScope::PerService),
            lk("infra", "shared")
        );
        assert_eq!(
            lease_key(&s, Some(" "), &ElectionScope::PerService),
            lk("web", "kubevip-shop")
        );
    }

    #[test]
    fn one_lease_for_all_ignores_the_service() {
        let global = ElectionScope::Global {
            namespace: "kube-system".into(),
            name: "plndr-svcs-lock".into(),
        };
        assert_eq!(
            lease_key(&key("web", "shop"), Some("x"), &global),
            lk("kube-system", "plndr-svcs-lock")
        );
    }
}

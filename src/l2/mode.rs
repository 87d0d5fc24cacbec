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
//!
//! DHCP (`0.0.0.0`) Services are elected like any other: a node stands when it knows the
//! macvlan's parent. The leader runs the DHCP client ([`DhcpServices`]) and claims the leased
//! address on the macvlan itself, so clients learn the Service's own MAC
//! (`kube-vip.io/hwaddr`), which the next leader asks with too. On losing the Lease the order
//! is: stop announcing, delete the macvlan (no RELEASE: the next leader renews), then the
//! Lease. UPnP (`enable_upnp`) maps the Services whose VIPs this node holds.

use super::frame::Mac;
use super::link::{self, LinkEvent};
use crate::config::{ArpSettings, ElectionScope, ServicesSettings};
use crate::decide::ingress::{current_ingress, ingress_change, ingress_target, IngressTarget};
use crate::decide::{self, ClusterView, DecideConfig, Desired, NodeCtx, ServiceKey, Skip};
use crate::dhcp::plan::{self as dhcp_plan, Want};
use crate::dhcp::services::DhcpServices;
use crate::election::lease::{Election, Leadership, LeaseKey};
use crate::error::RunError;
use crate::kube::status::{EventSink, ProblemReports, ServiceEvent, StatusWriter};
use crate::kube::view::{AbortOnDrop, Snapshot, View};
use crate::model::annotation::{LEASE_NAME, SERVICE_INTERFACE, VIP_HOST};
use crate::netlink::VipAddresses;
use crate::observe::Observer;
use crate::observe::Readiness;
use crate::plan::gate;
use crate::report::{self, Reason, ServiceState, VipState};
use crate::upnp::gateway::SearchSettings;
use crate::upnp::services::UpnpServices;
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

const DEBOUNCE: Duration = Duration::from_millis(10);
const RESYNC: Duration = Duration::from_secs(60);
/// How long shutdown waits for each Lease release.
const RELEASE_DEADLINE: Duration = Duration::from_secs(2);

pub use crate::plan::gate::lease_key;

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
        AbortOnDrop(tokio::spawn(crate::ipam::task::run(
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
    let events = EventSink::start(client.clone(), &svc.node_name, observer.clone());
    let mut owner = Owner {
        svc: svc.clone(),
        arp: arp.clone(),
        client: client.clone(),
        decide: decide_config(svc),
        status: svc
            .status_updates
            .then(|| StatusWriter::start(client.clone())),
        events: events.clone(),
        observer,
        input_problems: ProblemReports::default(),
        dhcp: DhcpServices::new(
            client.clone(),
            &default_parent(arp).unwrap_or_default(),
            svc.namespace.as_deref(),
            false,
        ),
        upnp: svc
            .upnp
            .then(|| UpnpServices::start(SearchSettings::default(), events)),
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
    let dhcp_changed = owner.dhcp.notifier();
    let upnp_changed = owner.upnp.as_ref().map(UpnpServices::notifier);
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
            () = crate::wake::notified(Some(dhcp_changed.as_ref())) => {}
            () = crate::wake::notified(upnp_changed.as_deref()) => {}
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
    /// The Service whose DHCP lease this is: the address lives on its macvlan.
    dhcp: Option<ServiceKey>,
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
    /// Problems in Services' input (bad addresses, malformed annotations), each reported once.
    input_problems: ProblemReports,
    /// The DHCP clients of the `0.0.0.0` Services this node leads.
    dhcp: DhcpServices,
    /// UPnP mappings of the `forwardUPNP` Services whose VIPs this node holds.
    upnp: Option<UpnpServices>,
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
            // A leased address another host answers for goes back to the server: the lease
            // ends, and with it this claim, at the next reconcile.
            if let (ClaimState::Refused(mac), Some(key), IpAddr::V4(v4)) = (&state, &c.dhcp, vip) {
                self.dhcp.decline(key, v4);
                // Said here: the claim goes with the lease before the next report.
                let note = format!(
                    "{vip}, leased for {key}, is already answered on {} by {mac}: declined to the \
                     DHCP server; node {} asks for another address",
                    c.link.ifname(),
                    self.svc.node_name
                );
                warn!(service = %key, "{note}");
                self.events.send(ServiceEvent {
                    service: key.clone(),
                    warning: true,
                    reason: "AddressInUse".into(),
                    note,
                });
            }
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
        let mut desired = decide::desired(&view, &node, &self.decide);
        let services: BTreeMap<ServiceKey, &Service> = snap
            .services
            .iter()
            .filter_map(|s| Some((ServiceKey::of(s)?, s.as_ref())))
            .collect();

        // Which Lease each of vipd's Services is elected by, and whether this node stands: it
        // may serve the Service (decide) and knows an interface for each of its VIPs (a leader
        // that cannot put the VIP anywhere would leave it dark while holding the Lease), and
        // for a DHCP Service the parent of its macvlan.
        let mut lease_of = BTreeMap::new();
        let mut eligible: BTreeMap<LeaseKey, bool> = BTreeMap::new();
        let mut placed: BTreeMap<ServiceKey, Vec<(IpAddr, String)>> = BTreeMap::new();
        let mut dhcp_standing: BTreeMap<ServiceKey, LeaseKey> = BTreeMap::new();
        let mut no_parent: BTreeMap<ServiceKey, Skip> = BTreeMap::new();
        for (key, d) in &desired.services {
            if d.vips.is_empty() {
                continue;
            }
            let svc = services.get(key).copied();
            let annotation = svc.and_then(|s| annotation(s, LEASE_NAME));
            let lk = lease_key(key, annotation, &self.arp.election);
            let mut ifaces = Vec::new();
            for vip in &d.announced {
                match self.interface_for(svc, *vip) {
                    Ok(ifname) => ifaces.push((*vip, ifname)),
                    Err(why) => self.problem(key, "NoInterface", why),
                }
            }
            // A DHCP Service also needs its macvlan's parent here; static VIPs beside it are
            // stood for without (a missing parent must not darken them).
            let dhcp = dhcp_plan::want(Some(d)) == Want::Lease;
            let parent = match (dhcp, svc) {
                (true, Some(s)) => self.lease_here(key, s),
                _ => Err(Skip::NoInterface {
                    note: String::new(),
                }),
            };
            if let (true, Err(skip)) = (dhcp, &parent) {
                if let Skip::NoInterface { note } = skip {
                    self.problem(key, "NoInterface", note.clone());
                }
                no_parent.insert(key.clone(), skip.clone());
            }
            let statics_placed = ifaces.len() == d.announced.len();
            let can_serve = statics_placed && (!d.announced.is_empty() || parent.is_ok());
            let stands = matches!(self.arp.election, ElectionScope::Global { .. }) || can_serve;
            *eligible.entry(lk.clone()).or_default() |= stands;
            if can_serve {
                placed.insert(key.clone(), ifaces);
                if parent.is_ok() {
                    dhcp_standing.insert(key.clone(), lk.clone());
                }
            }
            lease_of.insert(key.clone(), lk);
        }

        // DHCP: only the leader of a Service's Lease holds its lease. Elsewhere the client
        // stops without RELEASE, after its address stopped being announced from here.
        let led: BTreeSet<LeaseKey> = self.leading.keys().cloned().collect();
        gate::gate(&mut desired, &dhcp_standing, &led);
        let stopping: Vec<IpAddr> = self
            .claims
            .iter()
            .filter(|(_, c)| {
                c.dhcp.as_ref().is_some_and(|k| {
                    dhcp_plan::want(desired.services.get(k)) != Want::Lease
                        || !dhcp_standing.contains_key(k)
                })
            })
            .map(|(ip, _)| *ip)
            .collect();
        for ip in stopping {
            if let Some(c) = self.claims.remove(&ip) {
                release(ip, c).await;
            }
        }
        for (key, d) in desired.services.iter_mut() {
            // No parent here: no client here, as if served elsewhere, and why.
            if dhcp_plan::want(Some(d)) == Want::Lease && !dhcp_standing.contains_key(key) {
                let skip = no_parent.get(key).cloned().unwrap_or_else(|| Skip::NoInterface {
                    note: format!(
                        "node {} cannot serve the Service's other VIPs, so it does not lease for it",
                        self.svc.node_name
                    ),
                });
                for (vip, why) in &mut d.not_announced {
                    if vip.is_unspecified() {
                        *why = skip.clone();
                    }
                }
                if d.announced.is_empty() {
                    d.skip = Some(skip);
                }
            }
        }
        self.dhcp
            .reconcile(&snap.services, &mut desired, &self.events)
            .await;
        let on_macvlans = self.dhcp.leased_on();

        // The VIPs to hold: those of Services whose Lease this node leads and that it may
        // serve; a DHCP lease on its macvlan.
        let mut wanted: BTreeMap<IpAddr, (String, BTreeSet<ServiceKey>)> = BTreeMap::new();
        for (key, lk) in &lease_of {
            if !self.leading.contains_key(lk) {
                continue;
            }
            let leased = on_macvlans
                .get(key)
                .map(|(ip, ifname)| (*ip, ifname.clone()));
            for (vip, ifname) in placed.get(key).into_iter().flatten().cloned().chain(leased) {
                wanted
                    .entry(vip)
                    .or_insert_with(|| (ifname, BTreeSet::new()))
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
            let dhcp = on_macvlans
                .iter()
                .find(|(_, (ip, _))| ip == vip)
                .map(|(k, _)| k.clone());
            let link = if dhcp.is_some() {
                // Not cached: the macvlan goes with the lease, and a new one has a new index.
                VipAddresses::open(ifname).await.map(Arc::new)
            } else {
                self.link(ifname).await
            };
            let link = match link {
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
                    dhcp,
                    task,
                    state: ClaimState::Probing,
                },
            );
        }

        self.report(&desired, &wanted, &services);
        self.input_problems
            .report(&desired, &self.events, &self.observer);
        if let Some(upnp) = self.upnp.as_mut() {
            upnp.update(&snap.services, &held_view(&desired, &self.served));
        }
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

    /// Whether this node can hold `key`'s DHCP lease: its macvlan's parent exists here, and no
    /// start failed here lately (a node that cannot lease must not keep the Lease from one that
    /// can: it stands down for a while, then tries again).
    fn lease_here(&self, key: &ServiceKey, svc: &Service) -> Result<String, Skip> {
        let parent = dhcp_parent(svc, &self.arp).map_err(|note| Skip::NoInterface { note })?;
        if !crate::sys::interface_exists(&parent) {
            return Err(Skip::NoInterface {
                note: format!(
                    "interface {parent} (the DHCP macvlan's parent) does not exist on node {}",
                    self.svc.node_name
                ),
            });
        }
        match self.dhcp.failing(key) {
            Some(note) => Err(Skip::DhcpFailed {
                note: format!(
                    "DHCP cannot start on node {}: {note}; it stands again later",
                    self.svc.node_name
                ),
            }),
            None => Ok(parent),
        }
    }

    /// The VIP's interface: the Service's annotation, `vip_servicesinterface`, `vip_interface`,
    /// else the interface whose subnet holds the VIP.
    fn interface_for(&self, svc: Option<&Service>, vip: IpAddr) -> Result<String, String> {
        let named = svc
            .and_then(|s| annotation(s, SERVICE_INTERFACE))
            .filter(|i| *i != "auto")
            .or(self.arp.services_interface.as_deref())
            .or(self.arp.interface.as_deref());
        if let Some(i) = named {
            return Ok(i.to_owned());
        }
        let ifs = crate::netif::Interfaces::read()
            .map_err(|e| format!("cannot read the local interfaces: {e}"))?;
        ifs.subnet_holding(vip).map(str::to_owned).ok_or_else(|| {
            format!("no interface has a subnet holding {vip}: set vip_servicesinterface or the {SERVICE_INTERFACE} annotation")
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
                // A DHCP lease refused is reported (and declined) as it happens (`on_link`).
                Some(ClaimState::Refused(mac))
                    if self.claims.get(vip).is_some_and(|c| c.dhcp.is_none()) =>
                {
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
            // The gateway's external address joins the VIPs of a Service mapped from here.
            let external = self.upnp.as_ref().and_then(|u| u.external_for(key));
            let target = crate::upnp::plan::with_external(target, external);
            let version = svc.metadata.resource_version.clone();
            if self.served.contains_key(key)
                && annotation(svc, VIP_HOST) != Some(self.svc.node_name.as_str())
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
        let patch =
            serde_json::json!({"metadata": {"annotations": {VIP_HOST: self.svc.node_name}}});
        tokio::spawn(async move {
            if let Err(e) = api
                .patch(&key.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                warn!(service = %key, error = %e, "cannot write the {VIP_HOST} annotation");
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
        // Then the macvlans (leases kept for the next holder) and the UPnP mappings.
        self.dhcp.shutdown().await;
        if let Some(upnp) = self.upnp.as_mut() {
            upnp.shutdown().await;
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

/// The interface DHCP macvlans sit on unless the Service names one.
fn default_parent(arp: &ArpSettings) -> Option<String> {
    arp.services_interface
        .clone()
        .or_else(|| arp.interface.clone())
        .filter(|i| i != "auto")
}

/// The parent of a DHCP Service's macvlan: `kube-vip.io/serviceInterface`, else
/// `vip_servicesinterface`, else `vip_interface`. There is no address yet to find a subnet by.
fn dhcp_parent(svc: &Service, arp: &ArpSettings) -> Result<String, String> {
    dhcp_plan::identity(svc)
        .parent
        .or_else(|| default_parent(arp))
        .ok_or_else(|| {
            format!(
                "a 0.0.0.0 (DHCP) Service needs the interface its macvlan sits on: set \
                 vip_servicesinterface, vip_interface or the {SERVICE_INTERFACE} annotation"
            )
        })
}

/// What UPnP maps from: `desired` with only the VIPs this node holds announced.
fn held_view(desired: &Desired, held: &BTreeMap<ServiceKey, Vec<IpAddr>>) -> Desired {
    let mut view = desired.clone();
    for (key, d) in view.services.iter_mut() {
        let here = held.get(key).map(Vec::as_slice).unwrap_or(&[]);
        d.announced.retain(|v| here.contains(v));
    }
    view
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

    fn arp(services_interface: Option<&str>, interface: Option<&str>) -> ArpSettings {
        ArpSettings {
            election: ElectionScope::PerService,
            rate: Duration::from_secs(3),
            services_interface: services_interface.map(Into::into),
            interface: interface.map(Into::into),
        }
    }

    fn dhcp_service(interface: Option<&str>) -> Service {
        let mut ann = serde_json::Map::new();
        if let Some(i) = interface {
            ann.insert(SERVICE_INTERFACE.into(), i.into());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "annotations": ann},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "0.0.0.0"},
        }))
        .unwrap()
    }

    #[test]
    fn a_dhcp_macvlan_sits_on_the_annotated_then_the_services_then_the_vip_interface() {
        let both = arp(Some("eth1"), Some("eth0"));
        assert_eq!(
            dhcp_parent(&dhcp_service(Some("eth2")), &both),
            Ok("eth2".into())
        );
        assert_eq!(
            dhcp_parent(&dhcp_service(Some("auto")), &both),
            Ok("eth1".into())
        );
        assert_eq!(
            dhcp_parent(&dhcp_service(None), &arp(None, Some("eth0"))),
            Ok("eth0".into())
        );
        // No address to find a subnet by: the error names the settings that fix it.
        let err = dhcp_parent(&dhcp_service(None), &arp(None, Some("auto"))).unwrap_err();
        assert!(
            err.contains("vip_interface") && err.contains(SERVICE_INTERFACE),
            "{err}"
        );
    }

    #[test]
    fn upnp_maps_only_what_this_node_holds() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut desired = Desired::default();
        for name in ["held", "led-elsewhere"] {
            desired.services.insert(
                key("default", name),
                crate::decide::ServiceDecision {
                    vips: vec![ip("10.0.0.1"), ip("10.0.0.2")],
                    announced: vec![ip("10.0.0.1"), ip("10.0.0.2")],
                    not_announced: Vec::new(),
                    skip: None,
                    problems: Vec::new(),
                },
            );
        }
        let held = BTreeMap::from([(key("default", "held"), vec![ip("10.0.0.2")])]);
        let view = held_view(&desired, &held);
        assert_eq!(
            view.services[&key("default", "held")].announced,
            [ip("10.0.0.2")]
        );
        assert!(view.services[&key("default", "led-elsewhere")]
            .announced
            .is_empty());
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

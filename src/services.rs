//! [I/O] The owner loop of services mode: watch (kube view) → decide (pure) → do (BGP routes,
//! status, Events). Only this loop holds what has been applied; the watch, status and event
//! tasks report to it or take orders from it.
//!
//! Safety: nothing is decided before every watch has listed once (a Service not yet seen would
//! read as "withdraw"), and a watch in error keeps the last state, so an API server that goes
//! away withdraws nothing (kube-vip#867). A periodic resync re-decides even without events
//! (kube-vip#948).

use crate::bgp::driver::PeerEvent;
use crate::bgp::speaker::Speaker;
use crate::bgp::types::host_routes;
use crate::config::{Config, ServicesSettings};
use crate::decide::ingress::{current_ingress, ingress_change, ingress_target};
use crate::decide::{self, ClusterView, DecideConfig, Desired, NodeCtx, ServiceKey, Skip};
use crate::dhcp::services::DhcpServices;
use crate::election::lease::{Election, Leadership, LeaseKey};
use crate::error::RunError;
use crate::kube::status::{EventSink, ProblemReports, ServiceEvent, StatusWriter};
use crate::kube::view::{AbortOnDrop, Snapshot, View};
use crate::netlink::VipAddresses;
use crate::observe::Observer;
use crate::observe::Readiness;
use crate::peers::PeerSources;
use crate::plan::{self, gate};
use crate::report::{self, Reason, ServiceState, VipState};
use crate::upnp::gateway::SearchSettings;
use crate::upnp::services::UpnpServices;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use vipd_providers::{MpBgpNextHop, PeerSpec};

/// Changes arriving together (a rollout touches many slices) are decided once.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// Re-decide this often even without events.
const RESYNC: Duration = Duration::from_secs(60);
/// How long shutdown waits for each Lease release.
const RELEASE_DEADLINE: Duration = Duration::from_secs(2);

/// Runs services mode until `shutdown`, then withdraws: Cease to every peer first, then the VIP
/// addresses vipd added (so no router sends traffic to a node that no longer answers for it).
pub async fn run(
    cfg: &Config,
    svc: &ServicesSettings,
    mut agent: Agent,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let mut addresses = None;
    let mut dhcp = None;
    let mut upnp = None;
    let mut elections = BTreeMap::new();
    let result = serve(
        cfg,
        svc,
        &mut agent,
        &mut addresses,
        (&mut dhcp, &mut upnp, &mut elections),
        shutdown,
    )
    .await;
    let Agent {
        speaker, mut peers, ..
    } = agent;
    speaker.cease().await;
    peers.remove_routes().await;
    if let Some(addrs) = addresses.as_mut() {
        for e in addrs.remove_unwanted(&BTreeSet::new()).await {
            warn!("shutdown: {e}");
        }
    }
    // After the routes: delete the macvlans (the leases are kept for the next holder) and the
    // UPnP mappings.
    if let Some(dhcp) = dhcp.as_mut() {
        dhcp.shutdown().await;
    }
    if let Some(upnp) = upnp.as_mut() {
        upnp.shutdown().await;
    }
    // Last, the Leases: the next leader starts once this node's macvlans are gone.
    stop_elections(elections).await;
    result
}

/// What the agent started before services mode: the speaker, its peers, the Kubernetes client
/// and the readiness the HTTP endpoint reports.
pub struct Agent {
    pub speaker: Speaker,
    pub peers: PeerSources,
    pub client: kube::Client,
    pub readiness: Readiness,
    pub observer: Observer,
}

async fn serve(
    cfg: &Config,
    svc: &ServicesSettings,
    agent: &mut Agent,
    addresses: &mut Option<VipAddresses>,
    (dhcp_out, upnp_out, elections_out): (
        &mut Option<DhcpServices>,
        &mut Option<UpnpServices>,
        &mut BTreeMap<LeaseKey, Election>,
    ),
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let Agent {
        speaker,
        peers,
        client,
        readiness,
        observer,
    } = agent;
    let client = client.clone();
    readiness.not_ready(
        "services",
        "waiting for the first complete list of Services, EndpointSlices and this node",
    );
    if svc.attach_to_interface {
        *addresses = Some(VipAddresses::open(&svc.interface).await?);
    }
    // The allocator runs beside the owner loop (it only writes Services; what it writes comes
    // back through the watch like any other change). Aborted when services mode ends.
    let _ipam = svc.ipam.clone().map(|settings| {
        AbortOnDrop(tokio::spawn(crate::ipam::task::run(
            client.clone(),
            settings,
            decide_config(cfg, svc, &[]),
            svc.node_name.clone(),
            observer.clone(),
        )))
    });
    let mut view = View::start(client.clone(), svc.namespace.as_deref(), &svc.node_name);
    let events = EventSink::start(client.clone(), &svc.node_name, observer.clone());
    let (lead_tx, mut lead_rx) = mpsc::unbounded_channel();
    let mut owner = Owner {
        elect: Elect {
            client: client.clone(),
            timing: svc.election_timing,
            held: Arc::new(AtomicUsize::new(0)),
            elections: BTreeMap::new(),
            leading: BTreeMap::new(),
            lead_tx,
            observer: observer.clone(),
        },
        node_name: svc.node_name.clone(),
        decide: decide_config(cfg, svc, &peers.current()),
        status: svc
            .status_updates
            .then(|| StatusWriter::start(client.clone())),
        events: events.clone(),
        observer: observer.clone(),
        dhcp: Some(DhcpServices::new(
            client,
            &svc.interface,
            svc.namespace.as_deref(),
            true,
        )),
        upnp: svc
            .upnp
            .then(|| UpnpServices::start(SearchSettings::default(), events)),
        routes: BTreeSet::new(),
        announced: BTreeMap::new(),
        problems: ProblemReports::default(),
        skipped: BTreeMap::new(),
        requested: BTreeMap::new(),
    };
    // Peer events only wake the loop; whether a session is up is read from the speaker, so an
    // Up that happened before this point is not missed.
    let mut peer_events = speaker.events();
    let dhcp_changed = owner.dhcp.as_ref().map(DhcpServices::notifier);
    let upnp_changed = owner.upnp.as_ref().map(UpnpServices::notifier);
    tokio::pin!(shutdown);
    info!(
        node = %svc.node_name,
        namespace = svc.namespace.as_deref().unwrap_or("(all)"),
        "services mode: waiting for the first complete list of Services, EndpointSlices and this node"
    );
    tokio::select! {
        () = &mut shutdown => return Ok(()),
        () = view.ready() => {}
    }
    info!("watches listed; deciding");
    readiness.ready("services");
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'decide: loop {
        owner
            .reconcile(
                speaker,
                addresses.as_mut(),
                &view.snapshot(),
                any_peer_up(speaker),
            )
            .await;
        // Wait for something that can change a decision; UPDATEs a peer sends us cannot.
        loop {
            let fence = owner.elect.leading.values().min().copied();
            tokio::select! {
                () = &mut shutdown => break 'decide,
                // The fence: a leadership ends at its renew deadline whatever the election
                // task does, and the DHCP VIP goes with it.
                () = sleep_until_opt(fence) => break,
                Some((key, l)) = lead_rx.recv() => {
                    let mut changed = owner.elect.on_leadership(key, l);
                    while let Ok((key, l)) = lead_rx.try_recv() {
                        changed |= owner.elect.on_leadership(key, l);
                    }
                    // A renew only moves the fence; a new or lost leadership re-decides.
                    if changed {
                        break;
                    }
                }
                () = view.changed() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    break;
                }
                () = crate::wake::notified(dhcp_changed.as_deref()) => break,
                () = crate::wake::notified(upnp_changed.as_deref()) => break,
                _ = resync.tick() => break,
                () = peers.changed() => {
                    owner.decide = decide_config(cfg, svc, &peers.current());
                    peers.apply(speaker).await;
                    break;
                }
                Some(ev) = peer_events.recv() => {
                    if !matches!(ev, PeerEvent::Learned { .. }) {
                        break;
                    }
                }
            }
        }
    }
    // The leases outlive the loop: released after the routes are withdrawn (see `run`).
    *dhcp_out = owner.dhcp.take();
    *upnp_out = owner.upnp.take();
    *elections_out = std::mem::take(&mut owner.elect.elections);
    Ok(())
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn stop_elections(elections: BTreeMap<LeaseKey, Election>) {
    let stops: Vec<_> = elections
        .into_values()
        .map(|e| e.stop(RELEASE_DEADLINE))
        .collect();
    futures::future::join_all(stops).await;
}

/// BGP mode's per-Service Leases: DHCP and UPnP Services are served by their elected node
/// only ([`serve`]).
struct Elect {
    client: kube::Client,
    timing: crate::election::Timing,
    /// How many Leases this node leads (the spread delay of every election reads it).
    held: Arc<AtomicUsize>,
    elections: BTreeMap<LeaseKey, Election>,
    /// Leases this node leads, each until its fence deadline.
    leading: BTreeMap<LeaseKey, tokio::time::Instant>,
    lead_tx: mpsc::UnboundedSender<(LeaseKey, Leadership)>,
    /// `kube_vip_is_leader` per Lease, as ARP mode reports its own.
    observer: Observer,
}

impl Elect {
    /// Whether the set of Leases led changed (a renew only moves a deadline).
    fn on_leadership(&mut self, key: LeaseKey, l: Leadership) -> bool {
        match l {
            Leadership::Leading { until } => {
                let new = self.leading.insert(key.clone(), until).is_none();
                if new {
                    self.observer.set_leader(&key.to_string(), true);
                }
                new
            }
            Leadership::NotLeading(why) => {
                let was = self.leading.remove(&key).is_some();
                if was {
                    info!(lease = %key, %why, "leadership ended: its DHCP VIPs and UPnP mappings stop here");
                    self.observer.set_leader(&key.to_string(), false);
                }
                was
            }
        }
    }

    /// The Leases led now: those past their fence deadline are dropped first.
    fn led(&mut self) -> BTreeSet<LeaseKey> {
        let now = tokio::time::Instant::now();
        let fenced: Vec<LeaseKey> = self
            .leading
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in fenced {
            self.leading.remove(&key);
            info!(lease = %key, "leadership reached its renew deadline without a renew: its DHCP VIPs stop here");
            self.observer.set_leader(&key.to_string(), false);
        }
        self.leading.keys().cloned().collect()
    }

    /// Stands for the Leases of `standing`, and stops standing (releasing, if held) for the
    /// others. Called after what was served under a Lease no longer led has stopped.
    fn update(&mut self, standing: &BTreeMap<ServiceKey, LeaseKey>, node: &str) {
        let wanted: BTreeSet<&LeaseKey> = standing.values().collect();
        let gone: Vec<LeaseKey> = self
            .elections
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for k in gone {
            self.leading.remove(&k);
            if let Some(e) = self.elections.remove(&k) {
                info!(lease = %k, "this node no longer stands for the Lease: releasing it");
                tokio::spawn(e.stop(RELEASE_DEADLINE));
            }
        }
        for lk in wanted {
            if !self.elections.contains_key(lk) {
                info!(lease = %lk, "standing for election (DHCP/UPnP served by one node)");
                let e = Election::start(
                    self.client.clone(),
                    lk.clone(),
                    node.to_owned(),
                    self.timing,
                    true,
                    self.held.clone(),
                    self.lead_tx.clone(),
                );
                self.elections.insert(lk.clone(), e);
            }
        }
    }
}

fn any_peer_up(speaker: &Speaker) -> bool {
    speaker
        .status()
        .iter()
        .any(|(_, s)| s.established_since.is_some())
}

/// Which families some peer can carry: its own, and the other one when `mpbgp_nexthop` gives
/// it a next hop.
fn decide_config(cfg: &Config, svc: &ServicesSettings, peers: &[PeerSpec]) -> DecideConfig {
    let mut d = DecideConfig {
        lb_class_only: svc.lb_class_only,
        lb_class_name: svc.lb_class_name.clone(),
        lb_class_legacy_handling: svc.lb_class_legacy_handling,
        // No peers yet (annotations not read yet): nothing reaches a router anyway, and
        // "no peer for this family" Warnings on every Service would be noise.
        announce_ipv4: peers.is_empty(),
        announce_ipv6: peers.is_empty(),
    };
    for p in peers {
        let v6 = matches!(p.address, vipd_providers::PeerAddress::Ip(IpAddr::V6(_)));
        let mpbgp = if p.mpbgp.next_hop == MpBgpNextHop::None {
            cfg.bgp.mpbgp.next_hop
        } else {
            p.mpbgp.next_hop
        };
        let both = mpbgp != MpBgpNextHop::None;
        d.announce_ipv4 |= !v6 || both;
        d.announce_ipv6 |= v6 || both;
    }
    d
}

/// What has been applied, and the writes asked for.
struct Owner {
    elect: Elect,
    node_name: String,
    decide: DecideConfig,
    status: Option<StatusWriter>,
    events: EventSink,
    observer: Observer,
    /// The VIPs handed to the speaker.
    routes: BTreeSet<IpAddr>,
    /// Per Service, the VIPs this node announces for it.
    announced: BTreeMap<ServiceKey, Vec<IpAddr>>,
    /// The problems in Services' input, each reported once while it lasts.
    problems: ProblemReports,
    /// Per Service, why it is not announced from this node, as last logged.
    skipped: BTreeMap<ServiceKey, Skip>,
    /// Per Service, the last ingress asked of the status writer and not yet seen in the view.
    /// (with the Service's resourceVersion when asked: a newer version that still differs means
    /// the write was lost or overwritten, so it is asked again).
    requested: BTreeMap<ServiceKey, (Vec<IpAddr>, Option<String>)>,
    /// The DHCP VIPs (`0.0.0.0` Services) this node leases; their addresses live on macvlans.
    dhcp: Option<DhcpServices>,
    /// UPnP mappings of `forwardUPNP` Services this node announces (`enable_upnp`).
    upnp: Option<UpnpServices>,
}

impl Owner {
    async fn reconcile(
        &mut self,
        speaker: &Speaker,
        addresses: Option<&mut VipAddresses>,
        snap: &Snapshot,
        peers_up: bool,
    ) {
        let started = Instant::now();
        let view = ClusterView {
            services: &snap.services,
            endpoint_slices: &snap.endpoint_slices,
        };
        let node = NodeCtx::from_node(&self.node_name, snap.node.as_deref());
        let mut desired = decide::desired(&view, &node, &self.decide);
        // One node per DHCP (and UPnP) Service: the elected one.
        let standing = gate::standing(&desired, &snap.services, self.upnp.is_some());
        let led = self.elect.led();
        gate::gate(&mut desired, &standing, &led);
        let mut on_macvlans = BTreeSet::new();
        if let Some(dhcp) = self.dhcp.as_mut() {
            dhcp.reconcile(&snap.services, &mut desired, &self.events)
                .await;
            on_macvlans = dhcp.leased();
        }
        // After DHCP stopped what is no longer led here: a released Lease is taken at once.
        self.elect.update(&standing, &self.node_name);
        let wanted: BTreeSet<IpAddr> = desired.routes.keys().copied().collect();
        self.apply_plan(speaker, addresses, &wanted, &on_macvlans)
            .await;
        if let Some(upnp) = self.upnp.as_mut() {
            upnp.update(&snap.services, &gate::upnp_view(&desired, &standing, &led));
        }
        self.report(&desired);
        if self.status.is_some() {
            self.write_status(snap, &desired, peers_up);
        }
        self.observer
            .publish(service_states(&desired, &self.routes), started.elapsed());
    }

    /// Carries out [`plan::bgp`]'s steps, with the VIP interface read just before planning. An
    /// address added changes what may be announced, so the plan is made again at once with the
    /// interface read anew; the second round adds nothing it did not already try.
    async fn apply_plan(
        &mut self,
        speaker: &Speaker,
        mut addresses: Option<&mut VipAddresses>,
        wanted: &BTreeSet<IpAddr>,
        on_macvlans: &BTreeSet<IpAddr>,
    ) {
        for _round in 0..2 {
            let present = match addresses.as_deref() {
                Some(a) => a.present().await,
                None => BTreeSet::new(),
            };
            let ours = addresses
                .as_deref()
                .map(|a| a.ours().clone())
                .unwrap_or_default();
            let routed = self.routes.clone();
            let held = plan::bgp::Held {
                routed: &routed,
                interface: addresses.is_some().then_some(plan::bgp::Interface {
                    present: &present,
                    ours: &ours,
                }),
            };
            let mut added = false;
            for step in plan::bgp::plan(wanted, on_macvlans, held) {
                match (step, addresses.as_deref_mut()) {
                    (plan::bgp::Step::AddAddress(ip), Some(a)) => match a.put(ip).await {
                        Ok(_) => added = true,
                        Err(e) => warn!("{e}; not announcing it until its address is in place"),
                    },
                    (plan::bgp::Step::RemoveAddress(ip), Some(a)) => {
                        if let Err(e) = a.take(ip).await {
                            warn!("{e}");
                        }
                    }
                    (plan::bgp::Step::SetRoutes(routes), _) => self.apply_routes(speaker, routes),
                    // Address steps come only with an interface to put them on.
                    (plan::bgp::Step::AddAddress(_) | plan::bgp::Step::RemoveAddress(_), None) => {}
                }
            }
            if !added {
                break;
            }
        }
    }

    fn apply_routes(&mut self, speaker: &Speaker, wanted: BTreeSet<IpAddr>) {
        if wanted != self.routes {
            let added = wanted.difference(&self.routes).count();
            let removed = self.routes.difference(&wanted).count();
            info!(
                added,
                removed,
                total = wanted.len(),
                "announcing a new route set"
            );
            let vips: Vec<IpAddr> = wanted.iter().copied().collect();
            speaker.set_routes(host_routes(&vips));
            self.routes = wanted;
        }
    }

    /// Log lines and Events for what changed: VIPs announced or withdrawn per Service, and new
    /// problems in a Service's input.
    fn report(&mut self, desired: &Desired) {
        for (key, d) in &desired.services {
            let before = self.announced.get(key).map(Vec::as_slice).unwrap_or(&[]);
            if before != d.announced.as_slice() {
                let note = if d.announced.is_empty() {
                    let why = d.skip.as_ref().map_or(String::new(), |s| s.to_string());
                    info!(service = %key, %why, "withdrawn from this node");
                    format!("no longer announced from node {}: {why}", self.node_name)
                } else {
                    let vips = join(&d.announced);
                    info!(service = %key, %vips, "announced from this node by BGP");
                    format!("{vips} announced by BGP from node {}", self.node_name)
                };
                self.events.send(ServiceEvent {
                    service: key.clone(),
                    warning: false,
                    reason: if d.announced.is_empty() {
                        "Withdrawn"
                    } else {
                        "Announced"
                    }
                    .into(),
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
        self.announced = desired
            .services
            .iter()
            .filter(|(_, d)| !d.announced.is_empty())
            .map(|(k, d)| (k.clone(), d.announced.clone()))
            .collect();
        self.skipped = desired
            .services
            .iter()
            .filter_map(|(k, d)| Some((k.clone(), d.skip.clone()?)))
            .collect();
        self.problems.report(desired, &self.events, &self.observer);
    }

    fn write_status(&mut self, snap: &Snapshot, desired: &Desired, peers_up: bool) {
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
            let target = crate::upnp::plan::with_external(ingress_target(d, peers_up), external);
            let Some(change) = ingress_change(&target, &current_ingress(svc)) else {
                continue;
            };
            // Asked already and the watch has shown no newer version: do not ask again.
            let version = svc.metadata.resource_version.clone();
            let asked = (change, version);
            if self.requested.get(&key) != Some(&asked) {
                status.set(key.clone(), asked.0.clone());
            }
            still_requested.insert(key, asked);
        }
        self.requested = still_requested;
    }
}

/// What `vipd status` shows per Service: each VIP routed, or why not. Services that are not
/// vipd's (not LoadBalancer, another class) are left out.
fn service_states(desired: &Desired, routed: &BTreeSet<IpAddr>) -> Vec<ServiceState> {
    let why = report::skip_reason;
    desired
        .services
        .iter()
        .filter(|(_, d)| report::listed(d))
        .map(|(key, d)| ServiceState {
            service: key.to_string(),
            withheld: d.skip.as_ref().map(why),
            vips: d
                .vips
                .iter()
                .map(|vip| {
                    let state = if routed.contains(vip) {
                        VipState::Routed
                    } else if let Some((_, s)) = d.not_announced.iter().find(|(v, _)| v == vip) {
                        VipState::Withheld(why(s))
                    } else if let Some(s) = &d.skip {
                        VipState::Withheld(why(s))
                    } else {
                        VipState::Withheld(Reason::new(
                            "AddressMissing",
                            "the address could not be put on the interface (see the log)",
                        ))
                    };
                    (*vip, state)
                })
                .collect(),
        })
        .collect()
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

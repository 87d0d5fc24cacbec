//! [I/O] ARP/NDP mode's executor (`vip_arp`, no BGP): the leader of each Service's Lease
//! claims its VIPs on their links ([`crate::l2::link`]: probe, address, announcements), as
//! [`crate::plan::arp`] orders, and writes `kube-vip.io/vipHost`.
//!
//! A VIP's address goes at once when its Lease is lost, when leadership reaches its fence
//! deadline, when the Service goes or loses its endpoints here, and on shutdown — always before
//! the Lease is released, so the next leader never overlaps.
//!
//! The control-plane VIP (`cp_enable`) is elected the same way, on its own Lease, by nodes whose
//! API server is healthy and whose VIP interface is up ([`crate::plan::arp`]); its holder labels
//! its Node `kube-vip.io/has-ip`.
//!
//! DHCP (`0.0.0.0`) Services are elected like any other: a node stands when it knows the
//! macvlan's parent. The leader runs the DHCP client and claims the leased address on the
//! macvlan itself, so clients learn the Service's own MAC (`kube-vip.io/hwaddr`), which the
//! next leader asks with too. On losing the Lease: stop announcing, delete the macvlan (no
//! RELEASE: the next leader renews), then the Lease.

use super::common::Common;
use super::vip_host::VipHosts;
use super::{Executor, ServicesExecutor};
use crate::config::{ArpSettings, ServicesSettings};
use crate::control_plane::link::{self as cp_link, LinkState, LinkWatch};
use crate::control_plane::{ControlPlaneVip, STATUS_NAME};
use crate::decide::ingress::{ingress_target, IngressTarget};
use crate::decide::{self, ClusterView, DecideConfig, Desired, NodeCtx, ServiceKey};
use crate::dhcp::plan::{self as dhcp_plan, Want};
use crate::error::RunError;
use crate::kube::status::ServiceEvent;
use crate::l2::frame::Mac;
use crate::l2::link::{self, LinkEvent};
use crate::l2::vlan::Vlans;
use crate::netlink::VipAddresses;
use crate::plan::arp::{
    self as arp_plan, Claimed, ControlPlane, Links, NotStanding, Standing, Step, Wanted,
};
use crate::plan::shutdown::{self, Step as ShutdownStep};
use crate::report::{self, EventReason, ServiceState, VipState, Withheld};
use k8s_openapi::api::core::v1::Service;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

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

/// What wakes ARP mode besides the cluster.
pub enum Wake {
    /// A claim was probed, refused or failed.
    Link(LinkEvent),
    /// The control-plane VIP's API server or interface changed.
    ControlPlane,
    /// SIGUSR1 or SIGUSR2, the operator's drain of BGP mode: nothing to mark here.
    OperatorDrain,
}

pub struct Arp<'a> {
    svc: &'a ServicesSettings,
    arp: &'a ArpSettings,
    /// `cp_enable`: the control-plane VIP, with the state of its interface.
    control_plane: Option<(ControlPlaneVip, LinkWatch)>,
    /// Why the control-plane VIP was last not stood for (logged when it changes).
    cp_not_standing: Option<NotStanding>,
    /// One handle per interface used.
    links: BTreeMap<String, Arc<VipAddresses>>,
    claims: BTreeMap<IpAddr, Claim>,
    link_tx: mpsc::Sender<LinkEvent>,
    link_rx: mpsc::Receiver<LinkEvent>,
    vip_hosts: VipHosts,
    /// SIGUSR1 and SIGUSR2 caught, so that a drain meant for BGP mode does not end vipd.
    operator_signals: Option<(Signal, Signal)>,
    /// The VLAN sub-interfaces vipd made for Services (opened in `prepare`).
    vlans: Option<Vlans>,
}

impl<'a> Arp<'a> {
    pub fn new(
        svc: &'a ServicesSettings,
        arp: &'a ArpSettings,
        control_plane: Option<ControlPlaneVip>,
    ) -> Arp<'a> {
        let (link_tx, link_rx) = mpsc::channel(link::LINK_EVENTS);
        Arp {
            svc,
            arp,
            control_plane: control_plane.map(|cp| (cp, LinkWatch::start())),
            cp_not_standing: None,
            links: BTreeMap::new(),
            claims: BTreeMap::new(),
            link_tx,
            link_rx,
            vip_hosts: VipHosts::default(),
            operator_signals: None,
            vlans: None,
        }
    }

    /// ARP reaches both families on the link: no peer decides which family can be announced.
    fn decide_config(&self) -> DecideConfig {
        self.svc.decide_config(true, true)
    }

    /// The plan's view of the claims.
    fn claimed(&self) -> BTreeMap<IpAddr, Claimed> {
        self.claims
            .iter()
            .map(|(ip, c)| {
                let claimed = Claimed {
                    ifname: c.link.ifname().to_owned(),
                    dhcp: c.dhcp.clone(),
                };
                (*ip, claimed)
            })
            .collect()
    }

    /// The control-plane VIP as the plan sees it.
    fn control_plane_now(&self) -> Option<ControlPlane> {
        let (cp, _) = self.control_plane.as_ref()?;
        Some(ControlPlane {
            lease: cp.lease().clone(),
            vips: cp.vips().to_vec(),
            unhealthy: cp.unhealthy(),
        })
    }

    /// One snapshot of the node's interfaces, read before planning; the control-plane VIP's
    /// interfaces are watched from here on, against the states read now.
    fn links_now(&self, desired: &Desired) -> Links {
        let mut links = Links::default();
        let cp_vips = self
            .control_plane
            .as_ref()
            .map(|(cp, _)| cp.vips())
            .unwrap_or_default();
        match crate::netif::Interfaces::read() {
            Ok(ifs) => {
                let vips = desired.services.values().flat_map(|d| d.announced.iter());
                for vip in vips.chain(cp_vips) {
                    if let Some(i) = ifs.subnet_holding(*vip) {
                        links.subnet_of.insert(*vip, i.to_owned());
                    }
                }
            }
            Err(e) => links.read_error = Some(e.to_string()),
        }
        links.existing = arp_plan::parents_to_check(desired, self.arp)
            .into_iter()
            .filter(|i| crate::sys::interface_exists(i))
            .collect();
        if let Some((_, watch)) = &self.control_plane {
            let ifnames: BTreeSet<String> = cp_vips
                .iter()
                .filter_map(|vip| arp_plan::control_plane_interface(*vip, self.arp, &links).ok())
                .collect();
            let states: Vec<(String, LinkState)> = ifnames
                .into_iter()
                .map(|i| {
                    let state = cp_link::read(&i);
                    (i, state)
                })
                .collect();
            for (ifname, state) in &states {
                if let LinkState::Down(why) = state {
                    links.down.insert(ifname.clone(), why.clone());
                }
            }
            watch.watch(states);
        }
        links
    }

    /// Logs each change of why this node does not stand for the control-plane VIP.
    fn log_control_plane(&mut self, standing: &Standing) {
        let now = standing
            .control_plane
            .as_ref()
            .and_then(|cp| cp.not_standing.clone());
        if now == self.cp_not_standing {
            return;
        }
        match &now {
            None => info!("control-plane VIP: standing for its Lease"),
            Some(NotStanding::Unhealthy(why)) => {
                warn!("control-plane VIP: not standing for its Lease: this node's API server fails its health check ({why})")
            }
            Some(NotStanding::LinkDown(why)) => {
                warn!("control-plane VIP: not standing for its Lease: {why}")
            }
            Some(NotStanding::Unplaced(why)) => {
                warn!("control-plane VIP: not standing for its Lease: {why}")
            }
        }
        self.cp_not_standing = now;
    }

    /// The control-plane VIPs held here now.
    fn control_plane_held(&self, wanted: &Wanted) -> Vec<IpAddr> {
        let Some((cp, _)) = &self.control_plane else {
            return Vec::new();
        };
        cp.vips()
            .iter()
            .copied()
            .filter(|vip| {
                wanted.contains_key(vip)
                    && self
                        .claims
                        .get(vip)
                        .is_some_and(|c| c.state == ClaimState::Held)
            })
            .collect()
    }

    /// A wanted VIP's state from its claim: held, or why not yet; `None` when it is not
    /// wanted here (the caller says why).
    fn claim_state(&self, vip: &IpAddr, wanted: &Wanted) -> Option<VipState> {
        let (ifname, _) = wanted.get(vip)?;
        let withheld = match self.claims.get(vip).map(|c| &c.state) {
            Some(ClaimState::Held) => {
                return Some(VipState::Held {
                    mode: if vip.is_ipv4() { "arp" } else { "ndp" }.into(),
                    via: ifname.clone(),
                })
            }
            Some(ClaimState::Refused(mac)) => Withheld::AddressInUse {
                mac: mac.to_string(),
            },
            Some(ClaimState::Failed) => Withheld::ClaimFailed,
            _ => Withheld::Probing,
        };
        Some(VipState::Withheld(withheld))
    }

    /// What `vipd status` shows for the control-plane VIP.
    fn control_plane_state(
        &self,
        standing: &Standing,
        led: &BTreeSet<crate::election::LeaseKey>,
        wanted: &Wanted,
    ) -> Option<ServiceState> {
        let (cp, _) = self.control_plane.as_ref()?;
        let plan = standing.control_plane.as_ref()?;
        let vip_state = |vip: &IpAddr| {
            if let Some(claimed) = self.claim_state(vip, wanted) {
                return claimed;
            }
            VipState::Withheld(match &plan.not_standing {
                Some(NotStanding::Unhealthy(why)) => {
                    Withheld::ApiServerUnhealthy { why: why.clone() }
                }
                Some(NotStanding::LinkDown(why)) => Withheld::LinkDown { why: why.clone() },
                Some(NotStanding::Unplaced(_)) => Withheld::Unplaced,
                None if led.contains(&plan.lease) => Withheld::Unplaced,
                None => Withheld::NotLeader {
                    lease: plan.lease.to_string(),
                },
            })
        };
        Some(ServiceState {
            service: STATUS_NAME.into(),
            withheld: None,
            vips: cp.vips().iter().map(|v| (*v, vip_state(v))).collect(),
        })
    }

    async fn execute(&mut self, step: Step, c: &mut Common) {
        match step {
            Step::Release(ip) => {
                if let Some(claim) = self.claims.remove(&ip) {
                    release(ip, claim).await;
                }
            }
            Step::Lease(s) => c.elect.apply(s),
            Step::Claim { vip, ifname, dhcp } => {
                let link = if dhcp.is_some() {
                    // Not cached: the macvlan goes with the lease, and a new one has a new index.
                    VipAddresses::open(&ifname).await.map(Arc::new)
                } else {
                    self.link(&ifname).await
                };
                let link = match link {
                    Ok(l) => l,
                    Err(e) => {
                        warn!(%vip, interface = %ifname, "{e}");
                        return;
                    }
                };
                info!(%vip, interface = %ifname, "leading: probing before claiming the VIP");
                let task = tokio::spawn(link::claim(
                    vip,
                    link.clone(),
                    self.arp.rate,
                    self.link_tx.clone(),
                ));
                let state = ClaimState::Probing;
                self.claims.insert(
                    vip,
                    Claim {
                        link,
                        dhcp,
                        task,
                        state,
                    },
                );
            }
        }
    }

    async fn link(
        &mut self,
        ifname: &str,
    ) -> Result<Arc<VipAddresses>, crate::netlink::NetlinkError> {
        // Only while the interface is the one opened: a VLAN deleted and made again (or any
        // interface re-created) has a new index.
        if let Some(l) = self.links.get(ifname) {
            if crate::sys::interface_index(ifname) == Some(l.index()) {
                return Ok(l.clone());
            }
        }
        // DHCP leases keep /32 (their macvlans are opened elsewhere); the rest take vip_subnet.
        let l = Arc::new(VipAddresses::open(ifname).await?.with_masks(self.arp.masks));
        if self.arp.masks.v4 != crate::model::Mask::Fixed(32) {
            promote_secondaries(&l).await;
        }
        self.links.insert(ifname.to_owned(), l.clone());
        Ok(l)
    }

    /// The VIPs held per Service, and Warnings naming the MAC of a refused claim.
    fn served(&self, wanted: &Wanted, c: &mut Common) -> BTreeMap<ServiceKey, Vec<IpAddr>> {
        let mut served: BTreeMap<ServiceKey, Vec<IpAddr>> = BTreeMap::new();
        for (vip, (ifname, keys)) in wanted {
            let Some(claim) = self.claims.get(vip) else {
                continue;
            };
            match &claim.state {
                ClaimState::Held => {
                    for k in keys {
                        served.entry(k.clone()).or_default().push(*vip);
                    }
                }
                // A DHCP lease refused is reported (and declined) as it happens (`on_wake`).
                ClaimState::Refused(mac) if claim.dhcp.is_none() => {
                    for k in keys {
                        let note = format!(
                            "{vip} is already answered on {ifname} by {mac}: node {} does not claim it",
                            c.node
                        );
                        c.warn_once(k, EventReason::AddressInUse, note);
                    }
                }
                _ => {}
            }
        }
        served
    }

    /// What `vipd status` shows per Service: each VIP held here (and on which interface), or
    /// why not. Services that are not vipd's are left out.
    fn states(
        &self,
        desired: &Desired,
        standing: &Standing,
        led: &BTreeSet<crate::election::LeaseKey>,
        wanted: &Wanted,
    ) -> Vec<ServiceState> {
        desired
            .services
            .iter()
            .filter(|(_, d)| report::listed(d))
            .map(|(key, d)| {
                let vip_state = |vip: &IpAddr| {
                    if let Some((_, s)) = d.not_announced.iter().find(|(v, _)| v == vip) {
                        return VipState::Withheld(s.clone().into());
                    }
                    if let Some(s) = &d.skip {
                        return VipState::Withheld(s.clone().into());
                    }
                    if let Some(claimed) = self.claim_state(vip, wanted) {
                        return claimed;
                    }
                    let lease = standing.lease_of.get(key);
                    VipState::Withheld(if lease.is_some_and(|l| led.contains(l)) {
                        Withheld::Unplaced
                    } else {
                        Withheld::NotLeader {
                            lease: lease.map_or(String::new(), ToString::to_string),
                        }
                    })
                };
                ServiceState {
                    service: key.to_string(),
                    withheld: d.skip.clone().map(Withheld::Skip),
                    vips: d.vips.iter().map(|v| (*v, vip_state(v))).collect(),
                }
            })
            .collect()
    }
}

impl ServicesExecutor for Arp<'_> {
    fn dhcp_parent(&self) -> (String, bool) {
        (
            arp_plan::default_parent(self.arp).unwrap_or_default(),
            false,
        )
    }

    fn control_plane(&self) -> bool {
        self.control_plane.is_some()
    }
}

impl Executor for Arp<'_> {
    type Ctx = Common;
    type Wake = Wake;
    const MODE: shutdown::Mode = shutdown::Mode::Arp;
    const NAME: &'static str = "ARP mode";

    /// A crashed predecessor's addresses would answer ARP for VIPs this node does not lead.
    async fn prepare(&mut self) -> Result<(), RunError> {
        let caught = signal(SignalKind::user_defined1())
            .and_then(|a| Ok((a, signal(SignalKind::user_defined2())?)))
            .map_err(|source| RunError::Io {
                what: "SIGUSR1 and SIGUSR2".into(),
                source,
            })?;
        self.operator_signals = Some(caught);
        self.vlans = Some(Vlans::open().await?);
        let left = crate::netlink::remove_all_marked().await?;
        if left > 0 {
            info!(
                removed = left,
                "removed VIP addresses of an earlier vipd before standing for election"
            );
        }
        if self.svc.watch_services {
            info!(election = ?self.arp.election, "ARP mode: Services");
        }
        if let Some((cp, _)) = &self.control_plane {
            info!(lease = %cp.lease(), vips = ?cp.vips(), "ARP mode: the control-plane VIP, held by its Lease's holder");
        }
        Ok(())
    }

    async fn wake(&mut self) -> Wake {
        let control_plane = async {
            match self.control_plane.as_mut() {
                Some((cp, link)) => tokio::select! {
                    () = cp.changed() => {},
                    () = link.changed() => {},
                },
                None => std::future::pending().await,
            }
        };
        let operator = async {
            match self.operator_signals.as_mut() {
                Some((drain, undrain)) => tokio::select! {
                    Some(()) = drain.recv() => {},
                    Some(()) = undrain.recv() => {},
                    else => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = self.link_rx.recv() => match ev {
                Some(ev) => Wake::Link(ev),
                // The loop holds a sender: never closed while it runs.
                None => std::future::pending().await,
            },
            () = control_plane => Wake::ControlPlane,
            () = operator => Wake::OperatorDrain,
        }
    }

    async fn on_wake(&mut self, wake: Wake, c: &mut Common) -> bool {
        let ev = match wake {
            Wake::Link(ev) => ev,
            Wake::ControlPlane => return true,
            Wake::OperatorDrain => {
                warn!("SIGUSR1/SIGUSR2 drain BGP mode's routes; ARP mode has none to mark and ignores them (cordon the node, or stop vipd, to move its VIPs)");
                return false;
            }
        };
        let (vip, state) = match &ev {
            LinkEvent::Claimed(vip) => (*vip, ClaimState::Held),
            LinkEvent::Refused(vip, mac) => (*vip, ClaimState::Refused(*mac)),
            LinkEvent::Failed(vip, _) => (*vip, ClaimState::Failed),
            LinkEvent::Contested(..) => return false,
        };
        if let Some(claim) = self.claims.get_mut(&vip) {
            // A leased address another host answers for goes back to the server: the lease
            // ends, and with it this claim, at the next plan.
            if let (ClaimState::Refused(mac), Some(key), IpAddr::V4(v4)) =
                (&state, &claim.dhcp, vip)
            {
                c.dhcp.decline(key, v4);
                let note = format!(
                    "{vip}, leased for {key}, is already answered on {} by {mac}: declined to the \
                     DHCP server; node {} asks for another address",
                    claim.link.ifname(),
                    c.node
                );
                warn!(service = %key, "{note}");
                c.events.send(ServiceEvent {
                    service: key.clone(),
                    reason: EventReason::AddressInUse,
                    note,
                });
            }
            claim.state = state;
        }
        true
    }

    async fn reconcile(&mut self, c: &mut Common) {
        let snap = &c.snapshot();
        let started = Instant::now();
        let led = c.elect.led();
        let view = ClusterView {
            services: &snap.services,
            endpoint_slices: &snap.endpoint_slices,
        };
        let node = NodeCtx::from_node(&c.node, snap.node.as_deref());
        let mut desired = decide::desired(&view, &node, &self.decide_config());
        let services: BTreeMap<ServiceKey, &Service> = snap
            .services
            .iter()
            .filter_map(|s| Some((ServiceKey::of(s)?, s.as_ref())))
            .collect();
        let failing: BTreeMap<ServiceKey, String> = desired
            .services
            .iter()
            .filter(|(_, d)| dhcp_plan::want(Some(d)) == Want::Lease)
            .filter_map(|(k, _)| Some((k.clone(), c.dhcp.failing(k)?.to_owned())))
            .collect();
        // The Services' VLANs exist before the interfaces are read: a VIP goes on its VLAN
        // only once the VLAN is there.
        let vlans = arp_plan::vlans(&desired);
        let verified = match self.vlans.as_mut() {
            Some(v) => {
                let (ok, errors) = v.ensure(&vlans).await;
                for e in errors {
                    warn!("{e}");
                }
                ok
            }
            None => BTreeSet::new(),
        };
        let mut links = self.links_now(&desired);
        // A link with a VLAN's name that is not that VLAN (someone else's) is no place for it.
        let vlan_names: BTreeSet<String> = vlans.iter().map(crate::model::Vlan::name).collect();
        links
            .existing
            .retain(|n| !vlan_names.contains(n) || verified.contains(n));
        let control_plane = self.control_plane_now();
        let standing = arp_plan::stand(
            &desired,
            self.arp,
            &c.node,
            &links,
            &failing,
            control_plane.as_ref(),
        );
        self.log_control_plane(&standing);
        for (key, note) in &standing.unplaced {
            c.warn_once(key, EventReason::NoInterface, note.clone());
        }
        arp_plan::gate(&mut desired, &standing, &led, &c.node);
        for step in arp_plan::before_dhcp(&self.claimed(), &desired, &standing) {
            self.execute(step, c).await;
        }
        c.dhcp
            .reconcile(&snap.services, &mut desired, &c.events)
            .await;
        let leased = c.dhcp.leased_on();
        let (wanted, steps) =
            arp_plan::hold(&standing, &led, &leased, &self.claimed(), &c.elect.stood());
        for step in steps {
            self.execute(step, c).await;
        }
        // After the releases and DHCP's stops: nothing sits on a VLAN that goes.
        if let Some(v) = self.vlans.as_mut() {
            for e in v.remove_unwanted(&vlans).await {
                warn!("{e}");
            }
        }

        let served = self.served(&wanted, c);
        c.report(&desired, served, "ARP/NDP");
        // Every Service held in ARP mode is held by this node alone.
        self.vip_hosts.write(c, &desired, &services, |_| true);
        c.label_node(snap, &self.control_plane_held(&wanted));
        // Per-Service elections only: one Lease for all elects no Service on its own.
        let own_leases = match self.arp.election {
            crate::config::ElectionScope::PerService => standing.lease_of.clone(),
            crate::config::ElectionScope::Global { .. } => BTreeMap::new(),
        };
        c.report_elections(&own_leases);
        let served = c.served().clone();
        let clear = self.svc.clear_ingress_without_endpoints;
        c.write_status(snap, &desired, |key, d| {
            status_target(served.get(key), d, clear)
        });
        if let Some(upnp) = c.upnp.as_mut() {
            upnp.update(&snap.services, &held_view(&desired, &served));
        }
        let mut states = self.states(&desired, &standing, &led, &wanted);
        if let Some(cp) = self.control_plane_state(&standing, &led, &wanted) {
            states.insert(0, cp);
        }
        c.observer.publish(states, started.elapsed());
    }

    async fn shutdown_step(&mut self, step: ShutdownStep) {
        match step {
            ShutdownStep::ReleaseClaims => {
                info!(vips = self.claims.len(), "removing the VIP addresses");
                for (ip, claim) in std::mem::take(&mut self.claims) {
                    release(ip, claim).await;
                }
            }
            ShutdownStep::RemoveVlans => {
                if let Some(v) = self.vlans.as_mut() {
                    v.remove_all().await;
                }
            }
            other => warn!(step = ?other, "not a step of ARP mode's shutdown"),
        }
    }
}

/// The ingress this node writes for a Service: only when every VIP it may serve is held (no
/// half-written status); cluster-wide facts (no longer a LoadBalancer, no endpoint anywhere)
/// clear it.
fn status_target(
    served: Option<&Vec<IpAddr>>,
    d: &decide::ServiceDecision,
    clear_without_endpoints: bool,
) -> IngressTarget {
    match served {
        Some(vips) if vips.len() == d.announced.len() => {
            if d.not_announced.is_empty() {
                IngressTarget::Set(d.announced.clone())
            } else {
                IngressTarget::SetIfEmpty(d.announced.clone())
            }
        }
        Some(_) => IngressTarget::Leave,
        None if d.announced.is_empty() => ingress_target(d, true, clear_without_endpoints),
        None => IngressTarget::Leave,
    }
}

/// With `vip_subnet` shorter than /32, the first VIP of a subnet on an interface becomes that
/// subnet's primary address, and the kernel deletes every secondary with it unless
/// `promote_secondaries` is set: removing one VIP would silently take the others of its subnet.
async fn promote_secondaries(link: &VipAddresses) {
    use crate::dhcp::devconf::{self, Setting};
    let Ok((conn, handle, _)) = rtnetlink::new_connection() else {
        warn!(
            interface = link.ifname(),
            "cannot open netlink to set promote_secondaries"
        );
        return;
    };
    tokio::spawn(conn);
    match devconf::set(&handle, link.index(), &[(Setting::PromoteSecondaries, 1)]).await {
        Ok(()) => info!(
            interface = link.ifname(),
            "promote_secondaries=1 (vip_subnet: removing one VIP must not remove the others of its subnet)"
        ),
        Err(e) => warn!(
            interface = link.ifname(),
            "cannot set promote_secondaries=1 ({e}): removing the first VIP of a subnet removes the others of it"
        ),
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

/// What UPnP maps from: `desired` with only the VIPs this node holds announced.
fn held_view(desired: &Desired, held: &BTreeMap<ServiceKey, Vec<IpAddr>>) -> Desired {
    let mut view = desired.clone();
    for (key, d) in view.services.iter_mut() {
        let here = held.get(key).map(Vec::as_slice).unwrap_or(&[]);
        d.announced.retain(|v| here.contains(v));
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::ServiceDecision;

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Both VIPs 10.0.0.1 and 10.0.0.2 may be served here.
    fn both_servable() -> ServiceDecision {
        let vips = vec![ip("10.0.0.1"), ip("10.0.0.2")];
        ServiceDecision {
            vips: vips.clone(),
            announced: vips,
            not_announced: Vec::new(),
            skip: None,
            problems: Vec::new(),
            intent: Default::default(),
        }
    }

    #[test]
    fn upnp_maps_only_what_this_node_holds() {
        let mut desired = Desired::default();
        for name in ["held", "led-elsewhere"] {
            desired.services.insert(key(name), both_servable());
        }
        let held = BTreeMap::from([(key("held"), vec![ip("10.0.0.2")])]);
        let view = held_view(&desired, &held);
        assert_eq!(view.services[&key("held")].announced, [ip("10.0.0.2")]);
        assert!(view.services[&key("led-elsewhere")].announced.is_empty());
    }

    #[test]
    fn status_is_written_only_when_every_vip_this_node_may_serve_is_held() {
        let d = both_servable();
        let both = vec![ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(
            status_target(Some(&both), &d, false),
            IngressTarget::Set(both.clone())
        );
        assert_eq!(
            status_target(Some(&vec![ip("10.0.0.1")]), &d, false),
            IngressTarget::Leave
        );
        // Led elsewhere: not this node's to write.
        assert_eq!(status_target(None, &d, false), IngressTarget::Leave);
    }
}

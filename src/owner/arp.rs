//! [I/O] ARP/NDP mode's executor (`vip_arp`, no BGP): the leader of each Service's Lease
//! claims its VIPs on their links ([`crate::l2::link`]: probe, address, announcements), as
//! [`crate::plan::arp`] orders, and writes `kube-vip.io/vipHost`.
//!
//! A VIP's address goes at once when its Lease is lost, when leadership reaches its fence
//! deadline, when the Service goes or loses its endpoints here, and on shutdown — always before
//! the Lease is released, so the next leader never overlaps.
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
use crate::decide::ingress::{ingress_target, IngressTarget};
use crate::decide::{self, ClusterView, DecideConfig, Desired, NodeCtx, ServiceKey};
use crate::dhcp::plan::{self as dhcp_plan, Want};
use crate::error::RunError;
use crate::kube::status::ServiceEvent;
use crate::l2::frame::Mac;
use crate::l2::link::{self, LinkEvent};
use crate::netlink::VipAddresses;
use crate::plan::arp::{self as arp_plan, Claimed, Links, Standing, Step, Wanted};
use crate::plan::shutdown::{self, Step as ShutdownStep};
use crate::report::{self, EventReason, ServiceState, VipState, Withheld};
use k8s_openapi::api::core::v1::Service;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
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

pub struct Arp<'a> {
    svc: &'a ServicesSettings,
    arp: &'a ArpSettings,
    /// One handle per interface used.
    links: BTreeMap<String, Arc<VipAddresses>>,
    claims: BTreeMap<IpAddr, Claim>,
    link_tx: mpsc::UnboundedSender<LinkEvent>,
    link_rx: mpsc::UnboundedReceiver<LinkEvent>,
    vip_hosts: VipHosts,
}

impl<'a> Arp<'a> {
    pub fn new(svc: &'a ServicesSettings, arp: &'a ArpSettings) -> Arp<'a> {
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        Arp {
            svc,
            arp,
            links: BTreeMap::new(),
            claims: BTreeMap::new(),
            link_tx,
            link_rx,
            vip_hosts: VipHosts::default(),
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

    /// One snapshot of the node's interfaces, read before planning.
    fn links_now(&self, desired: &Desired) -> Links {
        let mut links = Links::default();
        match crate::netif::Interfaces::read() {
            Ok(ifs) => {
                for d in desired.services.values() {
                    for vip in &d.announced {
                        if let Some(i) = ifs.subnet_holding(*vip) {
                            links.subnet_of.insert(*vip, i.to_owned());
                        }
                    }
                }
            }
            Err(e) => links.read_error = Some(e.to_string()),
        }
        links.existing = arp_plan::parents_to_check(desired, self.arp)
            .into_iter()
            .filter(|i| crate::sys::interface_exists(i))
            .collect();
        links
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
        if let Some(l) = self.links.get(ifname) {
            return Ok(l.clone());
        }
        let l = Arc::new(VipAddresses::open(ifname).await?);
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
                    let lease = standing.lease_of.get(key);
                    let is_led = lease.is_some_and(|l| led.contains(l));
                    let withheld = match (wanted.get(vip), self.claims.get(vip).map(|c| &c.state)) {
                        (Some((ifname, _)), Some(ClaimState::Held)) => {
                            return VipState::Held {
                                mode: if vip.is_ipv4() { "arp" } else { "ndp" }.into(),
                                via: ifname.clone(),
                            }
                        }
                        (Some(_), Some(ClaimState::Refused(mac))) => Withheld::AddressInUse {
                            mac: mac.to_string(),
                        },
                        (Some(_), Some(ClaimState::Failed)) => Withheld::ClaimFailed,
                        (Some(_), _) => Withheld::Probing,
                        (None, _) if is_led => Withheld::Unplaced,
                        (None, _) => Withheld::NotLeader {
                            lease: lease.map_or(String::new(), ToString::to_string),
                        },
                    };
                    VipState::Withheld(withheld)
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
}

impl Executor for Arp<'_> {
    type Ctx = Common;
    type Wake = LinkEvent;
    const MODE: shutdown::Mode = shutdown::Mode::Arp;
    const NAME: &'static str = "ARP mode";

    /// A crashed predecessor's addresses would answer ARP for VIPs this node does not lead.
    async fn prepare(&mut self) -> Result<(), RunError> {
        let left = crate::netlink::remove_all_marked().await?;
        if left > 0 {
            info!(
                removed = left,
                "removed VIP addresses of an earlier vipd before standing for election"
            );
        }
        info!(election = ?self.arp.election, "ARP mode");
        Ok(())
    }

    async fn wake(&mut self) -> LinkEvent {
        match self.link_rx.recv().await {
            Some(ev) => ev,
            // The loop holds a sender: never closed while it runs.
            None => std::future::pending().await,
        }
    }

    async fn on_wake(&mut self, ev: LinkEvent, c: &mut Common) -> bool {
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
        let links = self.links_now(&desired);
        let standing = arp_plan::stand(&desired, self.arp, &c.node, &links, &failing);
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

        let served = self.served(&wanted, c);
        c.report(&desired, served, "ARP/NDP");
        // Every Service held in ARP mode is held by this node alone.
        self.vip_hosts.write(c, &desired, &services, |_| true);
        c.label_node(snap);
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
        c.observer.publish(
            self.states(&desired, &standing, &led, &wanted),
            started.elapsed(),
        );
    }

    async fn shutdown_step(&mut self, step: ShutdownStep) {
        match step {
            ShutdownStep::ReleaseClaims => {
                info!(vips = self.claims.len(), "removing the VIP addresses");
                for (ip, claim) in std::mem::take(&mut self.claims) {
                    release(ip, claim).await;
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

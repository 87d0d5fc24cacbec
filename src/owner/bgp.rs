//! [I/O] BGP mode's executor: hands the speaker its routes and puts the VIP addresses on the
//! interface, as [`crate::plan::bgp`] orders. Every eligible node announces (ECMP), except
//! what one node alone may hold (a DHCP lease, a UPnP mapping): those are served by the elected
//! node of a per-Service Lease ([`crate::plan::gate`]). With `svc_election` every Service is
//! served so, and its elected node writes `kube-vip.io/vipHost`.

use super::announcer::Announcer;
use super::common::Common;
use super::vip_host::VipHosts;
use super::{Executor, ServicesExecutor};
use crate::bgp::driver::PeerEvent;
use crate::bgp::speaker::Speaker;
use crate::config::{Config, ServicesSettings};
use crate::decide::ingress::ingress_target;
use crate::decide::{self, ClusterView, DecideConfig, Desired, NodeCtx, ServiceKey};
use crate::error::RunError;
use crate::netlink::VipAddresses;
use crate::peers::PeerSources;
use crate::plan::shutdown::{self, Step};
use crate::plan::{self, gate};
use crate::report::{self, ServiceState, VipState, Withheld};
use k8s_openapi::api::core::v1::Service;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::warn;
use vipd_providers::{MpBgpNextHop, PeerSpec};

pub struct Bgp<'a> {
    cfg: &'a Config,
    svc: &'a ServicesSettings,
    announcer: Announcer,
    /// Peer events only wake the loop; whether a session is up is read from the speaker, so
    /// an Up that happened before the loop started is not missed.
    peer_events: mpsc::UnboundedReceiver<PeerEvent>,
    /// The VIP interface, when vipd puts the addresses on it (`bgp_attach_ip_to_interface`).
    addresses: Option<VipAddresses>,
    decide: DecideConfig,
    vip_hosts: VipHosts,
}

/// What wakes BGP mode.
pub enum Wake {
    /// The peer set changed (annotations, the Metal API).
    Peers,
    Peer(PeerEvent),
}

impl<'a> Bgp<'a> {
    pub fn new(
        cfg: &'a Config,
        svc: &'a ServicesSettings,
        mut speaker: Speaker,
        peers: PeerSources,
    ) -> Bgp<'a> {
        let peer_events = speaker.events();
        let decide = decide_config(cfg, svc, &peers.current());
        Bgp {
            cfg,
            svc,
            announcer: Announcer::new(speaker, peers, BTreeSet::new()),
            peer_events,
            addresses: None,
            decide,
            vip_hosts: VipHosts::default(),
        }
    }

    /// Carries out [`plan::bgp`]'s steps, with the VIP interface read just before planning. An
    /// address added changes what may be announced, so the plan is made again at once with the
    /// interface read anew; the second round adds nothing it did not already try.
    async fn apply_plan(&mut self, wanted: &BTreeSet<IpAddr>, on_macvlans: &BTreeSet<IpAddr>) {
        for _round in 0..2 {
            let present = match &self.addresses {
                Some(a) => a.present().await,
                None => BTreeSet::new(),
            };
            let ours = self
                .addresses
                .as_ref()
                .map(|a| a.ours().clone())
                .unwrap_or_default();
            let routed = self.announcer.routes().clone();
            let held = plan::bgp::Held {
                routed: &routed,
                interface: self.addresses.is_some().then_some(plan::bgp::Interface {
                    present: &present,
                    ours: &ours,
                }),
            };
            let mut added = false;
            for step in plan::bgp::plan(wanted, on_macvlans, held) {
                match (step, self.addresses.as_mut()) {
                    (plan::bgp::Step::AddAddress(ip), Some(a)) => match a.put(ip).await {
                        Ok(_) => added = true,
                        Err(e) => warn!("{e}; not announcing it until its address is in place"),
                    },
                    (plan::bgp::Step::RemoveAddress(ip), Some(a)) => {
                        if let Err(e) = a.take(ip).await {
                            warn!("{e}");
                        }
                    }
                    (plan::bgp::Step::SetRoutes(routes), _) => self.announcer.set_routes(routes),
                    // Address steps come only with an interface to put them on.
                    (plan::bgp::Step::AddAddress(_) | plan::bgp::Step::RemoveAddress(_), None) => {}
                }
            }
            if !added {
                break;
            }
        }
    }
}

impl ServicesExecutor for Bgp<'_> {
    /// `vip_servicesinterface`, else `vip_interface` (the annotation comes first, per Service).
    fn dhcp_parent(&self) -> (String, bool) {
        let parent = self
            .svc
            .services_interface
            .as_ref()
            .unwrap_or(&self.svc.interface);
        (parent.clone(), true)
    }
}

impl Executor for Bgp<'_> {
    type Ctx = Common;
    type Wake = Wake;
    const MODE: shutdown::Mode = shutdown::Mode::Bgp;
    const NAME: &'static str = "services mode";

    async fn prepare(&mut self) -> Result<(), RunError> {
        if self.svc.attach_to_interface {
            self.addresses = Some(VipAddresses::open(&self.svc.interface).await?);
        }
        Ok(())
    }

    async fn wake(&mut self) -> Wake {
        tokio::select! {
            () = self.announcer.peers.changed() => Wake::Peers,
            Some(ev) = self.peer_events.recv() => Wake::Peer(ev),
        }
    }

    async fn on_wake(&mut self, wake: Wake, _c: &mut Common) -> bool {
        match wake {
            Wake::Peers => {
                self.decide = decide_config(self.cfg, self.svc, &self.announcer.peers.current());
                self.announcer.apply_peers().await;
                true
            }
            // UPDATEs a peer sends us cannot change a decision.
            Wake::Peer(ev) => !matches!(ev, PeerEvent::Learned { .. }),
        }
    }

    async fn reconcile(&mut self, c: &mut Common) {
        let snap = &c.snapshot();
        let started = Instant::now();
        let view = ClusterView {
            services: &snap.services,
            endpoint_slices: &snap.endpoint_slices,
        };
        let node = NodeCtx::from_node(&c.node, snap.node.as_deref());
        let mut desired = decide::desired(&view, &node, &self.decide);
        // One node per DHCP (and UPnP) Service: the elected one.
        let elect_all = self.svc.per_service_election;
        let standing = gate::standing(&desired, c.upnp.is_some(), elect_all);
        let led = c.elect.led();
        gate::gate(&mut desired, &standing, &led, elect_all);
        c.dhcp
            .reconcile(&snap.services, &mut desired, &c.events)
            .await;
        let on_macvlans = c.dhcp.leased();
        // After DHCP stopped what is no longer led here: a released Lease is taken at once.
        let eligible: BTreeMap<_, _> = standing.values().map(|l| (l.clone(), true)).collect();
        for step in gate::lease_steps(&eligible, &c.elect.stood()) {
            c.elect.apply(step);
        }
        let wanted: BTreeSet<IpAddr> = desired.routes.keys().copied().collect();
        self.apply_plan(&wanted, &on_macvlans).await;
        if let Some(upnp) = c.upnp.as_mut() {
            upnp.update(&snap.services, &gate::upnp_view(&desired, &standing, &led));
        }
        let served = desired
            .services
            .iter()
            .filter(|(_, d)| !d.announced.is_empty())
            .map(|(k, d)| (k.clone(), d.announced.clone()))
            .collect();
        c.report(&desired, served, "BGP");
        // An elected Service (svc_election, DHCP, UPnP) is held here alone: say so.
        let services: BTreeMap<ServiceKey, &Service> = snap
            .services
            .iter()
            .filter_map(|s| Some((ServiceKey::of(s)?, s.as_ref())))
            .collect();
        let alone = |key: &ServiceKey| standing.get(key).is_some_and(|l| led.contains(l));
        self.vip_hosts.write(c, &desired, &services, alone);
        c.label_node(snap);
        c.report_elections(&standing);
        let peers_up = self.announcer.any_peer_up();
        let clear = self.svc.clear_ingress_without_endpoints;
        c.write_status(snap, &desired, |_, d| ingress_target(d, peers_up, clear));
        c.observer.publish(
            service_states(&desired, self.announcer.routes()),
            started.elapsed(),
        );
    }

    async fn shutdown_step(&mut self, step: Step) {
        if self.announcer.shutdown_step(step).await {
            return;
        }
        match (step, self.addresses.as_mut()) {
            (Step::RemoveAddresses, Some(addrs)) => {
                for e in addrs.remove_unwanted(&BTreeSet::new()).await {
                    warn!("shutdown: {e}");
                }
            }
            (Step::RemoveAddresses, None) => {}
            (other, _) => warn!(step = ?other, "not a step of BGP mode's shutdown"),
        }
    }
}

/// Which families some peer can carry: its own, and the other one when `mpbgp_nexthop` gives
/// it a next hop.
fn decide_config(cfg: &Config, svc: &ServicesSettings, peers: &[PeerSpec]) -> DecideConfig {
    // No peers yet (annotations not read yet): nothing reaches a router anyway, and "no peer
    // for this family" Warnings on every Service would be noise.
    let mut d = svc.decide_config(peers.is_empty(), peers.is_empty());
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

/// What `vipd status` shows per Service: each VIP routed, or why not. Services that are not
/// vipd's (not LoadBalancer, another class) are left out.
fn service_states(desired: &Desired, routed: &BTreeSet<IpAddr>) -> Vec<ServiceState> {
    desired
        .services
        .iter()
        .filter(|(_, d)| report::listed(d))
        .map(|(key, d)| ServiceState {
            service: key.to_string(),
            withheld: d.skip.clone().map(Withheld::Skip),
            vips: d
                .vips
                .iter()
                .map(|vip| {
                    let state = if routed.contains(vip) {
                        VipState::Routed
                    } else if let Some((_, s)) = d.not_announced.iter().find(|(v, _)| v == vip) {
                        VipState::Withheld(s.clone().into())
                    } else if let Some(s) = &d.skip {
                        VipState::Withheld(s.clone().into())
                    } else {
                        VipState::Withheld(Withheld::AddressMissing)
                    };
                    (*vip, state)
                })
                .collect(),
        })
        .collect()
}

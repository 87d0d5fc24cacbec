//! [I/O] BGP mode's executor: hands the speaker its routes and puts the VIP addresses on the
//! interface, as [`crate::plan::bgp`] orders. Every eligible node announces (ECMP), except
//! what one node alone may hold (a DHCP lease, a UPnP mapping): those are served by the elected
//! node of a per-Service Lease ([`crate::plan::gate`]). With `svc_election` every Service is
//! served so, and its elected node writes `kube-vip.io/vipHost`.
//!
//! Routing-table mode (`vip_routingtable`) is this executor with a kernel routing table in place
//! of the speaker ([`Bgp::with_table`]): the same decide, gates and plan; no peers.

use super::announcer::Announcer;
use super::common::Common;
use super::drain::Drainer;
use super::vip_host::VipHosts;
use super::{Context, Executor, ServicesExecutor};
use crate::bgp::driver::PeerEvent;
use crate::bgp::speaker::Speaker;
use crate::config::{Config, ServicesSettings};
use crate::control_plane::ControlPlaneVip;
use crate::decide::ingress::ingress_target;
use crate::decide::{self, ClusterView, DecideConfig, Desired, NodeCtx, ServiceKey};
use crate::error::RunError;
use crate::netlink::VipAddresses;
use crate::peers::PeerSources;
use crate::plan::gate;
use crate::plan::shutdown::{self, Drain, Step};
use crate::report::{self, ServiceState, VipState, Withheld};
use crate::table::kernel::KernelTable;
use k8s_openapi::api::core::v1::Service;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;
use tokio::sync::mpsc;
use vipd_providers::{MpBgpNextHop, PeerSpec};

pub struct Bgp<'a> {
    cfg: &'a Config,
    svc: &'a ServicesSettings,
    announcer: Announcer,
    /// Peer events only wake the loop; whether a session is up is read from the speaker, so
    /// an Up that happened before the loop started is not missed.
    peer_events: mpsc::Receiver<PeerEvent>,
    /// The VIP interface, when vipd puts addresses on it (`bgp_attach_ip_to_interface`, or
    /// the control-plane VIP's).
    addresses: Option<VipAddresses>,
    decide: DecideConfig,
    vip_hosts: VipHosts,
    /// `cp_enable`: the control-plane VIP, one more wanted VIP while the API server is healthy.
    control_plane: Option<ControlPlaneVip>,
    /// The drain of a leaving node (the Node's say or the operator's), and its clock.
    drain: Drainer,
}

/// What wakes BGP mode.
pub enum Wake {
    /// The peer set changed (annotations, the Metal API).
    Peers,
    Peer(PeerEvent),
    /// The local API server's health changed (`cp_enable`).
    ControlPlane,
    /// An operator's SIGUSR1/SIGUSR2, or a leaving node's drain time ran out; whether that
    /// changed the drain.
    Drain(bool),
}

impl<'a> Bgp<'a> {
    pub fn new(
        cfg: &'a Config,
        svc: &'a ServicesSettings,
        mut speaker: Speaker,
        peers: PeerSources,
        control_plane: Option<ControlPlaneVip>,
    ) -> Bgp<'a> {
        let peer_events = speaker.events();
        let decide = decide_config(cfg, svc, &peers.current());
        let announcer = Announcer::new(speaker, peers, BTreeSet::new());
        Bgp::with(cfg, svc, announcer, decide, peer_events, control_plane)
    }

    /// Routing-table mode: routes go to `table` (both families); `peers` is empty.
    pub fn with_table(
        cfg: &'a Config,
        svc: &'a ServicesSettings,
        table: KernelTable,
        peers: PeerSources,
        control_plane: Option<ControlPlaneVip>,
    ) -> Bgp<'a> {
        let decide = svc.decide_config(true, true);
        // No speaker: nothing ever sends a peer event.
        let (_, peer_events) = mpsc::channel(1);
        let announcer = Announcer::with_table(table, peers);
        Bgp::with(cfg, svc, announcer, decide, peer_events, control_plane)
    }

    fn with(
        cfg: &'a Config,
        svc: &'a ServicesSettings,
        announcer: Announcer,
        decide: DecideConfig,
        peer_events: mpsc::Receiver<PeerEvent>,
        control_plane: Option<ControlPlaneVip>,
    ) -> Bgp<'a> {
        Bgp {
            cfg,
            svc,
            announcer,
            peer_events,
            addresses: None,
            decide,
            vip_hosts: VipHosts::default(),
            control_plane,
            drain: Drainer::new(cfg.bgp.drain_time),
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

    fn control_plane(&self) -> bool {
        self.control_plane.is_some()
    }
}

impl Executor for Bgp<'_> {
    type Ctx = Common;
    type Wake = Wake;
    const MODE: shutdown::Mode = shutdown::Mode::Bgp;
    const NAME: &'static str = "services mode";

    async fn prepare(&mut self) -> Result<(), RunError> {
        if self.svc.attach_to_interface || self.control_plane.is_some() {
            self.addresses = Some(VipAddresses::open(&self.svc.interface).await?);
        }
        self.drain.listen().map_err(|source| RunError::Io {
            what: "SIGUSR1 and SIGUSR2".into(),
            source,
        })?;
        Ok(())
    }

    async fn wake(&mut self) -> Wake {
        let control_plane = async {
            match self.control_plane.as_mut() {
                Some(cp) => cp.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.announcer.peers.changed() => Wake::Peers,
            Some(ev) = self.peer_events.recv() => Wake::Peer(ev),
            () = control_plane => Wake::ControlPlane,
            changed = self.drain.changed() => Wake::Drain(changed),
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
            Wake::ControlPlane => true,
            Wake::Drain(changed) => changed,
        }
    }

    async fn reconcile(&mut self, c: &mut Common) {
        let snap = &c.snapshot();
        let started = Instant::now();
        let view = ClusterView {
            services: &snap.services,
            endpoint_slices: &snap.endpoint_slices,
        };
        let mut node = NodeCtx::from_node(&c.node, snap.node.as_deref());
        // A node on its way out (cordoned, deleted, shutting down, or drained by its operator)
        // keeps its routes, marked for graceful shutdown so routers prefer any other path,
        // until the drain time (if set) runs out or the stop withdraws them.
        let leaving = snap
            .node
            .as_deref()
            .and_then(|n| shutdown::node_leaving(n, self.svc.honour_exclude_label));
        if let Drain::Withdrawn { why } = self.drain.update(leaving, &mut self.announcer) {
            node.drained = Some(why);
        }
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
        let mut eligible: BTreeMap<_, _> = standing.values().map(|l| (l.clone(), true)).collect();
        // vip_leaderelection: the control-plane Lease is stood for while the API server is
        // healthy (an unhealthy holder releases it: the next healthy node takes it at once).
        let cp_led = match &self.control_plane {
            Some(cp) if cp.elected() => {
                *eligible.entry(cp.lease().clone()).or_default() |= cp.unhealthy().is_none();
                led.contains(cp.lease())
            }
            _ => true,
        };
        for step in gate::lease_steps(&eligible, &c.elect.stood()) {
            c.elect.apply(step);
        }
        let mut wanted: BTreeSet<IpAddr> = desired.routes.keys().copied().collect();
        // Without bgp_attach_ip_to_interface only the control-plane VIP gets an address here.
        let mut off_interface = on_macvlans;
        if !self.svc.attach_to_interface {
            off_interface.extend(wanted.iter().copied());
        }
        if let Some(cp) = self.control_plane.as_ref().filter(|_| cp_led) {
            cp.join(&mut wanted, &mut off_interface);
        }
        self.announcer
            .apply_plan(self.addresses.as_mut(), &wanted, &off_interface)
            .await;
        if let Some(upnp) = c.upnp.as_mut() {
            upnp.update(&snap.services, &gate::upnp_view(&desired, &standing, &led));
        }
        let served = desired
            .services
            .iter()
            .filter(|(_, d)| !d.announced.is_empty())
            .map(|(k, d)| (k.clone(), d.announced.clone()))
            .collect();
        // Handed to the speaker is not yet at a router: say so while no session is up.
        let how = self.announcer.how();
        c.report(&desired, served, &how);
        // An elected Service (svc_election, DHCP, UPnP) is held here alone: say so.
        let services: BTreeMap<ServiceKey, &Service> = snap
            .services
            .iter()
            .filter_map(|s| Some((ServiceKey::of(s)?, s.as_ref())))
            .collect();
        let alone = |key: &ServiceKey| standing.get(key).is_some_and(|l| led.contains(l));
        self.vip_hosts.write(c, &desired, &services, alone);
        let cp_held: Vec<IpAddr> = match &self.control_plane {
            Some(cp) => {
                let routed = self.announcer.routes();
                cp.vips()
                    .iter()
                    .copied()
                    .filter(|v| routed.contains(v))
                    .collect()
            }
            None => Vec::new(),
        };
        c.label_node(snap, &cp_held);
        c.report_elections(&standing);
        let peers_up = self.announcer.any_peer_up();
        let clear = self.svc.clear_ingress_without_endpoints;
        c.write_status(snap, &desired, |_, d| ingress_target(d, peers_up, clear));
        let mut states = service_states(&desired, self.announcer.routes());
        if let Some(cp) = &self.control_plane {
            states.insert(0, cp.state(self.announcer.routes(), cp_led));
        }
        c.observer.publish(states, started.elapsed());
    }

    async fn shutdown_step(&mut self, step: Step) {
        self.announcer
            .shutdown_step_with(step, self.addresses.as_mut(), "BGP mode")
            .await;
    }

    /// Routing-table mode follows the same rule (`vipd_bgp_restart_time` above 0: a restart
    /// keeps the routes in the table for the next process to adopt, as BGP peers keep them).
    fn stop(&self, ctx: &Common) -> (shutdown::Stop, String) {
        shutdown::stop(
            self.cfg.bgp.graceful_restart.is_some(),
            self.drain.by_operator(),
            self.svc.honour_exclude_label,
            ctx.node().as_deref(),
        )
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

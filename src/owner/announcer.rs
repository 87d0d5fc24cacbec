//! [I/O] What BGP mode, routing-table mode and static VIPs share: where the routes go (the
//! speaker, with the peer set it talks to, or a kernel routing table) and the route set handed
//! there — routes set only when they change, peer changes applied, the execution of
//! [`crate::plan::bgp`]'s steps (addresses and routes), and the shutdown steps that belong to
//! the routes (the Cease or the table emptied, then the host routes to the peers).

use crate::bgp::speaker::Speaker;
use crate::bgp::types::{host_routes_with, RouteAttrs};
use crate::netlink::VipAddresses;
use crate::peers::PeerSources;
use crate::plan;
use crate::plan::shutdown::Step;
use crate::table::kernel::KernelTable;
use std::collections::BTreeSet;
use std::net::IpAddr;
use tracing::{info, warn};

/// Where the routes go.
enum Sink {
    // Boxed: a speaker is several times the size of a table.
    Speaker(Box<Speaker>),
    /// Routing-table mode: no speaker, no peers.
    Table(KernelTable),
}

pub struct Announcer {
    /// Taken by the shutdown step that ends the routes.
    sink: Option<Sink>,
    pub peers: PeerSources,
    /// The VIPs handed to the speaker, or routed in the table.
    routes: BTreeSet<IpAddr>,
    /// The attributes every route carries (RFC 8326's graceful shutdown while the node leaves).
    attrs: RouteAttrs,
    /// The speaker has been handed a complete table (after the first plan): until then its
    /// sessions send nothing, not even End-of-RIB, so graceful-restart peers keep the previous
    /// process's routes.
    handed: bool,
}

impl Announcer {
    /// `routes`: what `speaker` already holds.
    pub fn new(speaker: Speaker, peers: PeerSources, routes: BTreeSet<IpAddr>) -> Announcer {
        Announcer {
            sink: Some(Sink::Speaker(Box::new(speaker))),
            peers,
            routes,
            attrs: RouteAttrs::default(),
            handed: false,
        }
    }

    /// Routing-table mode: the routes are `table`'s (what it adopted at start first); `peers`
    /// is an empty set that never changes.
    pub fn with_table(table: KernelTable, peers: PeerSources) -> Announcer {
        Announcer {
            routes: table.installed().clone(),
            sink: Some(Sink::Table(table)),
            peers,
            attrs: RouteAttrs::default(),
            handed: true,
        }
    }

    fn speaker(&self) -> Option<&Speaker> {
        match &self.sink {
            Some(Sink::Speaker(s)) => Some(s),
            _ => None,
        }
    }

    /// Whether routes go to a kernel table rather than to BGP peers.
    pub fn to_table(&self) -> bool {
        matches!(self.sink, Some(Sink::Table(_)))
    }

    /// RFC 8326: while `on`, every route carries GRACEFUL_SHUTDOWN (and LOCAL_PREF 0 to iBGP
    /// peers), so routers move traffic to other paths before this node withdraws; off again, the
    /// routes are announced as usual. Whether it changed. A kernel route has no such mark:
    /// in routing-table mode nothing changes (the drain time still runs).
    pub fn set_graceful_shutdown(&mut self, on: bool) -> bool {
        if self.attrs.graceful_shutdown == on || self.to_table() {
            return false;
        }
        self.attrs.graceful_shutdown = on;
        // Before the first plan the speaker has no table to mark: the plan hands it marked.
        if let Some(speaker) = self.speaker().filter(|_| self.handed) {
            let vips: Vec<IpAddr> = self.routes.iter().copied().collect();
            speaker.set_routes(host_routes_with(&vips, &self.attrs));
        }
        true
    }

    /// The VIPs handed to the speaker, or routed in the table.
    pub fn routes(&self) -> &BTreeSet<IpAddr> {
        &self.routes
    }

    /// Hands the speaker exactly `wanted` (each session sends its peer only the difference),
    /// or makes the table's routes exactly `wanted` (a route that fails is tried again at the
    /// next plan; the others stand).
    pub async fn set_routes(&mut self, wanted: BTreeSet<IpAddr>) {
        if wanted == self.routes {
            return;
        }
        info!(
            added = wanted.difference(&self.routes).count(),
            removed = self.routes.difference(&wanted).count(),
            total = wanted.len(),
            "announcing a new route set"
        );
        match &mut self.sink {
            Some(Sink::Speaker(speaker)) => {
                let vips: Vec<IpAddr> = wanted.iter().copied().collect();
                speaker.set_routes(host_routes_with(&vips, &self.attrs));
                self.routes = wanted;
                self.handed = true;
            }
            Some(Sink::Table(table)) => {
                for e in table.sync(&wanted).await {
                    warn!("{e}; tried again at the next change");
                }
                self.routes = table.installed().clone();
            }
            None => self.routes = wanted,
        }
    }

    /// Carries out [`plan::bgp`]'s steps, with the VIP interface (when vipd puts addresses on
    /// it) read just before planning. An address added changes what may be announced, so the
    /// plan is made again at once with the interface read anew; the second round adds nothing
    /// it did not already try. `off_interface`: wanted VIPs routed without an address here.
    pub async fn apply_plan(
        &mut self,
        mut addresses: Option<&mut VipAddresses>,
        wanted: &BTreeSet<IpAddr>,
        off_interface: &BTreeSet<IpAddr>,
    ) {
        for _round in 0..2 {
            let present = match &addresses {
                Some(a) => a.present().await,
                None => BTreeSet::new(),
            };
            let ours = addresses
                .as_ref()
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
            for step in plan::bgp::plan(wanted, off_interface, held) {
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
                    (plan::bgp::Step::SetRoutes(routes), _) => self.set_routes(routes).await,
                    // Address steps come only with an interface to put them on.
                    (plan::bgp::Step::AddAddress(_) | plan::bgp::Step::RemoveAddress(_), None) => {}
                }
            }
            if !added {
                break;
            }
        }
        // The first plan is a complete table even when it changed nothing (no VIP at all): the
        // sessions may now send it and their End-of-RIB.
        if !self.handed {
            if let Some(Sink::Speaker(speaker)) = &self.sink {
                let vips: Vec<IpAddr> = self.routes.iter().copied().collect();
                speaker.set_routes(host_routes_with(&vips, &self.attrs));
            }
            self.handed = true;
        }
        // A table is checked at every plan (read again every `RELIST`): a route someone else
        // deleted comes back although nothing changed here.
        if let Some(Sink::Table(table)) = &mut self.sink {
            let routed = self.routes.clone();
            for e in table.sync(&routed).await {
                warn!("{e}; tried again at the next change");
            }
            self.routes = table.installed().clone();
        }
    }

    /// The peer set changed: hand it to the speaker.
    pub async fn apply_peers(&mut self) {
        if let Some(Sink::Speaker(speaker)) = self.sink.as_mut() {
            self.peers.apply(speaker).await;
        }
    }

    /// Whether the routes reach where they go: some BGP session is Established now (a kernel
    /// table is always there).
    pub fn any_peer_up(&self) -> bool {
        match &self.sink {
            Some(Sink::Speaker(s)) => s
                .status()
                .iter()
                .any(|(_, s)| s.established_since.is_some()),
            Some(Sink::Table(_)) => true,
            None => false,
        }
    }

    /// How the routes are announced, for the "announced from this node by …" Event and log.
    pub fn how(&self) -> String {
        match &self.sink {
            Some(Sink::Table(t)) => format!(
                "routing table {} (protocol {})",
                t.spec().table,
                t.spec().protocol
            ),
            _ if self.any_peer_up() => "BGP".into(),
            _ => "BGP (no session is up yet: routers get it once one is)".into(),
        }
    }

    /// A shutdown step of a mode that announces by BGP (`mode`: for the log): the speaker's own,
    /// or taking vipd's addresses off the VIP interface.
    pub async fn shutdown_step_with(
        &mut self,
        step: Step,
        addresses: Option<&mut VipAddresses>,
        mode: &str,
    ) {
        if self.shutdown_step(step).await {
            return;
        }
        match (step, addresses) {
            (Step::RemoveAddresses, Some(addrs)) => {
                for e in addrs.remove_unwanted(&BTreeSet::new()).await {
                    warn!("shutdown: {e}");
                }
            }
            (Step::RemoveAddresses, None) => {}
            // Static mode runs no election or UPnP task of the services' kind: nothing to leave.
            (Step::LeaveForNextProcess, _) => {}
            (other, _) => warn!(step = ?other, "not a step of {mode}'s shutdown"),
        }
    }

    /// Carries out `step` if it is one of the routes'; whether it was. Routing-table mode: a
    /// shutdown empties the table of vipd's routes, a restart leaves them for the next process
    /// to adopt (traffic keeps flowing meanwhile).
    pub async fn shutdown_step(&mut self, step: Step) -> bool {
        match step {
            Step::CeaseSessions => match self.sink.take() {
                Some(Sink::Speaker(speaker)) => speaker.cease().await,
                Some(Sink::Table(mut table)) => {
                    let n = table.clear().await;
                    info!(
                        table = table.spec().table,
                        "shutdown: removed {n} VIP routes from the routing table"
                    );
                }
                None => {}
            },
            Step::RestartSessions => match self.sink.take() {
                Some(Sink::Speaker(speaker)) => speaker.restart().await,
                Some(Sink::Table(table)) => info!(
                    table = table.spec().table,
                    routes = table.installed().len(),
                    "restart: the VIP routes stay in the routing table for the next vipd to adopt"
                ),
                None => {}
            },
            Step::RemovePeerRoutes => self.peers.remove_routes().await,
            _ => return false,
        }
        true
    }
}

//! [I/O] What BGP mode and static VIPs share: the speaker with the route set handed to it, and
//! the peer set it talks to — routes set only when they change, peer changes applied, the
//! execution of [`crate::plan::bgp`]'s steps (addresses and routes), and the two shutdown steps
//! that belong to BGP (the Cease, then the host routes to the peers).

use crate::bgp::speaker::Speaker;
use crate::bgp::types::{host_routes_with, RouteAttrs};
use crate::netlink::VipAddresses;
use crate::peers::PeerSources;
use crate::plan;
use crate::plan::shutdown::Step;
use std::collections::BTreeSet;
use std::net::IpAddr;
use tracing::{info, warn};

pub struct Announcer {
    /// Taken by the Cease of shutdown.
    speaker: Option<Speaker>,
    pub peers: PeerSources,
    /// The VIPs handed to the speaker.
    routes: BTreeSet<IpAddr>,
    /// The attributes every route carries (RFC 8326's graceful shutdown while the node leaves).
    attrs: RouteAttrs,
}

impl Announcer {
    /// `routes`: what `speaker` already holds.
    pub fn new(speaker: Speaker, peers: PeerSources, routes: BTreeSet<IpAddr>) -> Announcer {
        Announcer {
            speaker: Some(speaker),
            peers,
            routes,
            attrs: RouteAttrs::default(),
        }
    }

    /// RFC 8326: while `on`, every route carries GRACEFUL_SHUTDOWN (and LOCAL_PREF 0 to iBGP
    /// peers), so routers move traffic to other paths before this node withdraws; off again, the
    /// routes are announced as usual. Whether it changed.
    pub fn set_graceful_shutdown(&mut self, on: bool) -> bool {
        if self.attrs.graceful_shutdown == on {
            return false;
        }
        self.attrs.graceful_shutdown = on;
        if let Some(speaker) = &self.speaker {
            let vips: Vec<IpAddr> = self.routes.iter().copied().collect();
            speaker.set_routes(host_routes_with(&vips, &self.attrs));
        }
        true
    }

    /// The VIPs handed to the speaker.
    pub fn routes(&self) -> &BTreeSet<IpAddr> {
        &self.routes
    }

    /// Hands the speaker exactly `wanted` (each session sends its peer only the difference).
    pub fn set_routes(&mut self, wanted: BTreeSet<IpAddr>) {
        if wanted == self.routes {
            return;
        }
        info!(
            added = wanted.difference(&self.routes).count(),
            removed = self.routes.difference(&wanted).count(),
            total = wanted.len(),
            "announcing a new route set"
        );
        if let Some(speaker) = &self.speaker {
            let vips: Vec<IpAddr> = wanted.iter().copied().collect();
            speaker.set_routes(host_routes_with(&vips, &self.attrs));
        }
        self.routes = wanted;
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
                    (plan::bgp::Step::SetRoutes(routes), _) => self.set_routes(routes),
                    // Address steps come only with an interface to put them on.
                    (plan::bgp::Step::AddAddress(_) | plan::bgp::Step::RemoveAddress(_), None) => {}
                }
            }
            if !added {
                break;
            }
        }
    }

    /// The peer set changed: hand it to the speaker.
    pub async fn apply_peers(&mut self) {
        if let Some(speaker) = self.speaker.as_mut() {
            self.peers.apply(speaker).await;
        }
    }

    /// Whether some session is Established now.
    pub fn any_peer_up(&self) -> bool {
        self.speaker.as_ref().is_some_and(|s| {
            s.status()
                .iter()
                .any(|(_, s)| s.established_since.is_some())
        })
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

    /// Carries out `step` if it is one of the speaker's; whether it was.
    pub async fn shutdown_step(&mut self, step: Step) -> bool {
        match step {
            Step::CeaseSessions => {
                if let Some(speaker) = self.speaker.take() {
                    speaker.cease().await;
                }
            }
            Step::RestartSessions => {
                if let Some(speaker) = self.speaker.take() {
                    speaker.restart().await;
                }
            }
            Step::RemovePeerRoutes => self.peers.remove_routes().await,
            _ => return false,
        }
        true
    }
}

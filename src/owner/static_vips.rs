//! [I/O] Static VIPs (`vip_address`, `vip_file`, no services mode): the owner loop's third
//! input, the smallest. No cluster to watch ([`Detached`]): the VIPs are the routes, re-read
//! from the file on SIGHUP; the peer set can change under them. A broken edit of the file keeps
//! what is announced. With `cp_enable`, `vip_address` is the control-plane VIP instead: put on
//! the VIP interface and announced while this node's API server is healthy.

use super::announcer::Announcer;
use super::drain::Drainer;
use super::{Context, Executor};
use crate::bgp::speaker::Speaker;
use crate::config::{parse_vip_list, Config};
use crate::control_plane::ControlPlaneVip;
use crate::decide::Skip;
use crate::error::RunError;
use crate::netlink::VipAddresses;
use crate::observe::Observer;
use crate::peers::PeerSources;
use crate::plan::shutdown::{self, Drain, Step};
use crate::report::{ServiceState, VipState, Withheld};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info, warn};

/// No cluster: always ready, never wakes the loop, owns no shutdown step.
pub struct Detached;

impl Context for Detached {
    async fn ready(&mut self) {}

    async fn wake(&mut self) -> bool {
        std::future::pending().await
    }

    async fn shutdown_step(&mut self, _step: Step) -> bool {
        false
    }
}

pub struct StaticVips<'a> {
    cfg: &'a Config,
    /// The VIPs from the settings and the file, as last read.
    vips: Vec<IpAddr>,
    announcer: Announcer,
    observer: Observer,
    hangup: Option<Signal>,
    control_plane: Option<ControlPlaneVip>,
    /// The control-plane VIP's interface (`vip_interface`, else `lo`).
    addresses: Option<VipAddresses>,
    /// An operator's drain (SIGUSR1) and its clock: no Node is watched here.
    drain: Drainer,
}

/// What wakes static mode.
pub enum Wake {
    /// The peer set changed (annotations, the Metal API).
    Peers,
    /// SIGHUP: read the VIP file again.
    Hangup,
    /// The local API server's health changed (`cp_enable`).
    ControlPlane,
    /// An operator's SIGUSR1/SIGUSR2, or the drain time ran out; whether the drain changed.
    Drain(bool),
}

impl<'a> StaticVips<'a> {
    /// `speaker` already holds `vips` (set before any session started, so the first UPDATEs
    /// carry the whole table).
    pub fn new(
        cfg: &'a Config,
        vips: Vec<IpAddr>,
        speaker: Speaker,
        peers: PeerSources,
        observer: Observer,
        control_plane: Option<ControlPlaneVip>,
    ) -> StaticVips<'a> {
        StaticVips {
            cfg,
            announcer: Announcer::new(speaker, peers, vips.iter().copied().collect()),
            vips,
            observer,
            hangup: None,
            control_plane,
            addresses: None,
            drain: Drainer::new(cfg.bgp.drain_time),
        }
    }
}

impl Executor for StaticVips<'_> {
    type Wake = Wake;
    type Ctx = Detached;
    const MODE: shutdown::Mode = shutdown::Mode::Static;
    const NAME: &'static str = "static VIPs";

    async fn prepare(&mut self) -> Result<(), RunError> {
        let hangup = signal(SignalKind::hangup()).map_err(|source| RunError::Io {
            what: "SIGHUP".into(),
            source,
        })?;
        self.hangup = Some(hangup);
        self.drain.listen().map_err(|source| RunError::Io {
            what: "SIGUSR1 and SIGUSR2".into(),
            source,
        })?;
        if let Some(cp) = &self.cfg.control_plane {
            self.addresses = Some(VipAddresses::open(&cp.interface).await?);
        }
        if !self.vips.is_empty() || self.control_plane.is_none() {
            info!(vips = self.vips.len(), "announcing static VIPs");
        }
        Ok(())
    }

    async fn wake(&mut self) -> Wake {
        let hangup = async {
            match self.hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        let control_plane = async {
            match self.control_plane.as_mut() {
                Some(cp) => cp.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.announcer.peers.changed() => Wake::Peers,
            Some(()) = hangup => Wake::Hangup,
            () = control_plane => Wake::ControlPlane,
            changed = self.drain.changed() => Wake::Drain(changed),
        }
    }

    async fn on_wake(&mut self, wake: Wake, _c: &mut Detached) -> bool {
        match wake {
            Wake::ControlPlane => true,
            Wake::Drain(changed) => changed,
            Wake::Peers => {
                self.announcer.apply_peers().await;
                false
            }
            Wake::Hangup => match load_vips(self.cfg).await {
                Ok(new) => {
                    let added = new.iter().filter(|v| !self.vips.contains(v)).count();
                    let removed = self.vips.iter().filter(|v| !new.contains(v)).count();
                    info!(
                        added,
                        removed,
                        total = new.len(),
                        "SIGHUP: VIP file re-read"
                    );
                    self.vips = new;
                    true
                }
                // A broken edit must not withdraw healthy VIPs.
                Err(e) => {
                    error!(
                        "SIGHUP: {e}; keeping the {} VIPs announced now",
                        self.vips.len()
                    );
                    false
                }
            },
        }
    }

    async fn reconcile(&mut self, _c: &mut Detached) {
        // Drained by the operator for the whole drain time: nothing is announced.
        let withdrawn = match self.drain.update(None, &mut self.announcer) {
            Drain::Withdrawn { why } => Some(why),
            _ => None,
        };
        // Static VIPs are routes only; the control-plane VIP's address goes on the interface.
        let mut off_interface: BTreeSet<IpAddr> = BTreeSet::new();
        let mut wanted = BTreeSet::new();
        if withdrawn.is_none() {
            off_interface.extend(self.vips.iter().copied());
            wanted = off_interface.clone();
            if let Some(cp) = &self.control_plane {
                cp.join(&mut wanted, &mut off_interface);
            }
        }
        self.announcer
            .apply_plan(self.addresses.as_mut(), &wanted, &off_interface)
            .await;
        let mut states = Vec::new();
        if let Some(cp) = &self.control_plane {
            states.push(cp.state(self.announcer.routes(), true));
        }
        if !self.vips.is_empty() || self.control_plane.is_none() {
            states.extend(static_state(&self.vips, withdrawn));
        }
        self.observer.publish(states, Duration::ZERO);
    }

    async fn shutdown_step(&mut self, step: Step) {
        self.announcer
            .shutdown_step_with(step, self.addresses.as_mut(), "static mode")
            .await;
    }

    /// No Node is watched here: a restart unless graceful restart is off or an operator
    /// drained vipd.
    fn stop(&self, _ctx: &Detached) -> (shutdown::Stop, String) {
        shutdown::stop(
            self.cfg.bgp.graceful_restart.is_some(),
            self.drain.by_operator(),
            false,
            None,
        )
    }
}

/// The VIPs of `vip_address` and `vip_file`, sorted, without duplicates.
pub async fn load_vips(cfg: &Config) -> Result<Vec<IpAddr>, RunError> {
    let mut vips = cfg.vips.clone();
    if let Some(path) = &cfg.vip_file {
        let text = crate::vip_file::read_settled(path).await?;
        vips.extend(parse_vip_list(
            &text,
            &format!("vip_file {}", path.display()),
        )?);
    }
    vips.sort();
    vips.dedup();
    if vips.is_empty() && cfg.control_plane.is_none() {
        warn!(
            "no VIPs configured (vip_address, vip_file): sessions come up with nothing to announce"
        );
    }
    Ok(vips)
}

/// Static VIPs as `vipd status` shows them: one pseudo-Service, every VIP routed.
/// `withdrawn`: why the drain withdrew them, if it did.
fn static_state(vips: &[IpAddr], withdrawn: Option<String>) -> Vec<ServiceState> {
    let state = match withdrawn {
        None => VipState::Routed,
        Some(why) => VipState::Withheld(Withheld::Skip(Skip::NodeDrained {
            node: "this host".into(),
            why,
        })),
    };
    vec![ServiceState {
        service: "(static: vip_address, vip_file)".into(),
        vips: vips.iter().map(|v| (*v, state.clone())).collect(),
        withheld: None,
    }]
}

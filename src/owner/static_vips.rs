//! [I/O] Static VIPs (`vip_address`, `vip_file`, no services mode): the owner loop's third
//! input, the smallest. No cluster to watch ([`Detached`]): the VIPs are the routes, re-read
//! from the file on SIGHUP; the peer set can change under them. A broken edit of the file keeps
//! what is announced.

use super::announcer::Announcer;
use super::{Context, Executor};
use crate::bgp::speaker::Speaker;
use crate::config::{parse_vip_list, Config};
use crate::error::RunError;
use crate::observe::Observer;
use crate::peers::PeerSources;
use crate::plan;
use crate::plan::shutdown::{self, Step};
use crate::report::{ServiceState, VipState};
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
}

/// What wakes static mode.
pub enum Wake {
    /// The peer set changed (annotations, the Metal API).
    Peers,
    /// SIGHUP: read the VIP file again.
    Hangup,
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
    ) -> StaticVips<'a> {
        StaticVips {
            cfg,
            announcer: Announcer::new(speaker, peers, vips.iter().copied().collect()),
            vips,
            observer,
            hangup: None,
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
        info!(vips = self.vips.len(), "announcing static VIPs");
        Ok(())
    }

    async fn wake(&mut self) -> Wake {
        let hangup = async {
            match self.hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.announcer.peers.changed() => Wake::Peers,
            Some(()) = hangup => Wake::Hangup,
        }
    }

    async fn on_wake(&mut self, wake: Wake, _c: &mut Detached) -> bool {
        match wake {
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
        let wanted: BTreeSet<IpAddr> = self.vips.iter().copied().collect();
        let held = plan::bgp::Held {
            routed: self.announcer.routes(),
            interface: None,
        };
        for step in plan::bgp::plan(&wanted, &BTreeSet::new(), held) {
            if let plan::bgp::Step::SetRoutes(routes) = step {
                self.announcer.set_routes(routes);
            }
        }
        self.observer
            .publish(static_state(&self.vips), Duration::ZERO);
    }

    async fn shutdown_step(&mut self, step: Step) {
        if !self.announcer.shutdown_step(step).await {
            warn!(step = ?step, "not a step of static mode's shutdown");
        }
    }
}

/// The VIPs of `vip_address` and `vip_file`, sorted, without duplicates.
pub async fn load_vips(cfg: &Config) -> Result<Vec<IpAddr>, RunError> {
    let mut vips = cfg.vips.clone();
    if let Some(path) = &cfg.vip_file {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| RunError::Io {
                what: format!("vip_file {}", path.display()),
                source,
            })?;
        vips.extend(parse_vip_list(
            &text,
            &format!("vip_file {}", path.display()),
        )?);
    }
    vips.sort();
    vips.dedup();
    if vips.is_empty() {
        warn!(
            "no VIPs configured (vip_address, vip_file): sessions come up with nothing to announce"
        );
    }
    Ok(vips)
}

/// Static VIPs as `vipd status` shows them: one pseudo-Service, every VIP routed.
fn static_state(vips: &[IpAddr]) -> Vec<ServiceState> {
    vec![ServiceState {
        service: "(static: vip_address, vip_file)".into(),
        vips: vips.iter().map(|v| (*v, VipState::Routed)).collect(),
        withheld: None,
    }]
}

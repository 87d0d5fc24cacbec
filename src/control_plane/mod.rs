//! [I/O] The control-plane VIP (`cp_enable`, kube-vip's `--controlplane`): the address of the
//! cluster's API servers, held only by nodes whose own API server passes its health check
//! ([`health`], [`probe`]). In BGP mode every such node announces it (ECMP), or only the holder
//! of its Lease with `vip_leaderelection`; in ARP mode the holder of its Lease claims it on the
//! LAN while its interface is up ([`link`]). It is one more wanted VIP of the owner loop, alone
//! or beside the Services' (hybrid), over the same sessions or links.

pub mod health;
pub mod link;
pub mod probe;

use crate::config::ControlPlaneSettings;
use crate::election::LeaseKey;
use crate::report::{ServiceState, VipState, Withheld};
use health::{Change, Health};
use probe::{pace, Probe, ProbeError};
use std::collections::BTreeSet;
use std::net::IpAddr;
use tokio::sync::watch;
use tracing::{info, warn};

/// Whether this node's API server may be announced, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiServer {
    Healthy,
    /// Not (yet, or no longer) healthy: the last failure.
    Unhealthy(String),
}

/// The control-plane VIP as the owner loop holds it.
pub struct ControlPlaneVip {
    vips: Vec<IpAddr>,
    lease: LeaseKey,
    elected: bool,
    /// `None` when the health check is off (`vipd_cp_health_check=false`): always announced,
    /// as kube-vip does without `control_plane_health_check_address`.
    health: Option<watch::Receiver<ApiServer>>,
    _task: Option<Aborted>,
}

/// Aborts the health-check task with the VIP's owner.
struct Aborted(tokio::task::JoinHandle<()>);

impl Drop for Aborted {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ControlPlaneVip {
    /// Starts the health check (a bad CA file is an error at start, not a silent skip).
    pub fn start(settings: &ControlPlaneSettings) -> Result<ControlPlaneVip, ProbeError> {
        let Some(check) = &settings.health else {
            info!(vips = ?settings.vips, "control-plane VIP: announced without a health check (vipd_cp_health_check=false)");
            return Ok(ControlPlaneVip {
                vips: settings.vips.clone(),
                lease: settings.lease.clone(),
                elected: settings.elected,
                health: None,
                _task: None,
            });
        };
        let probe = Probe::new(check)?;
        let (tx, rx) = watch::channel(ApiServer::Unhealthy(
            "no health check has passed yet".into(),
        ));
        info!(
            vips = ?settings.vips,
            url = probe.url(),
            period = ?check.period,
            timeout = ?check.timeout,
            failure_threshold = check.failure_threshold,
            "control-plane VIP: announced while this node's API server passes its health check"
        );
        let task = tokio::spawn(run(
            probe,
            Health::new(check.failure_threshold),
            check.period,
            tx,
        ));
        Ok(ControlPlaneVip {
            vips: settings.vips.clone(),
            lease: settings.lease.clone(),
            elected: settings.elected,
            health: Some(rx),
            _task: Some(Aborted(task)),
        })
    }

    /// The VIPs, whether held now or not.
    pub fn vips(&self) -> &[IpAddr] {
        &self.vips
    }

    /// The Lease that elects the holder (`cp_namespace`/`vip_leasename`).
    pub fn lease(&self) -> &LeaseKey {
        &self.lease
    }

    /// Whether one elected node holds it (ARP mode, or BGP with `vip_leaderelection`).
    pub fn elected(&self) -> bool {
        self.elected
    }

    /// Why this node's API server may not be announced, if it may not.
    pub fn unhealthy(&self) -> Option<String> {
        match self.api_server() {
            ApiServer::Healthy => None,
            ApiServer::Unhealthy(why) => Some(why),
        }
    }

    pub fn api_server(&self) -> ApiServer {
        match &self.health {
            None => ApiServer::Healthy,
            Some(rx) => rx.borrow().clone(),
        }
    }

    /// The VIPs to announce now: all of them while the API server is healthy, else none.
    pub fn wanted(&self) -> BTreeSet<IpAddr> {
        match self.api_server() {
            ApiServer::Healthy => self.vips.iter().copied().collect(),
            ApiServer::Unhealthy(_) => BTreeSet::new(),
        }
    }

    /// Adds the VIPs to announce now to `wanted`, each with its address on the VIP interface
    /// (taken out of `off_interface`, should a Service name the same address).
    pub fn join(&self, wanted: &mut BTreeSet<IpAddr>, off_interface: &mut BTreeSet<IpAddr>) {
        let vips = self.wanted();
        off_interface.retain(|ip| !vips.contains(ip));
        wanted.extend(vips);
    }

    /// Completes when the health changes; cancel-safe. Never, without a health check.
    pub async fn changed(&mut self) {
        match self.health.as_mut() {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // The task ended (it does not, short of a panic): no more changes.
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// What `vipd status` shows for it in BGP mode; `led`: whether this node holds its Lease
    /// (always true when not elected).
    pub fn state(&self, routed: &BTreeSet<IpAddr>, led: bool) -> ServiceState {
        let why = match self.api_server() {
            ApiServer::Healthy if led => None,
            ApiServer::Healthy => Some(Withheld::NotLeader {
                lease: self.lease.to_string(),
            }),
            ApiServer::Unhealthy(why) => Some(Withheld::ApiServerUnhealthy { why }),
        };
        ServiceState {
            service: STATUS_NAME.into(),
            vips: self
                .vips
                .iter()
                .map(|vip| {
                    let state = match (&why, routed.contains(vip)) {
                        (_, true) => VipState::Routed,
                        (Some(w), false) => VipState::Withheld(w.clone()),
                        (None, false) => VipState::Withheld(Withheld::NoSession {
                            family: if vip.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
                        }),
                    };
                    (*vip, state)
                })
                .collect(),
            withheld: None,
        }
    }
}

/// How `vipd status` names the control-plane VIP.
pub const STATUS_NAME: &str = "(control plane: cp_enable)";

/// Checks every `period` for the life of the agent, publishing each change.
async fn run(
    probe: Probe,
    mut health: Health,
    period: std::time::Duration,
    tx: watch::Sender<ApiServer>,
) {
    loop {
        let started = tokio::time::Instant::now();
        match health.observe(probe.check().await) {
            Change::Up => {
                info!(
                    url = probe.url(),
                    "the API server passes its health check: announcing the control-plane VIP"
                );
                tx.send_replace(ApiServer::Healthy);
            }
            Change::Failing { consecutive, why } => {
                warn!(
                    url = probe.url(),
                    consecutive, "the API server failed its health check: {why}"
                );
            }
            Change::Down { consecutive, why } => {
                warn!(
                    url = probe.url(),
                    consecutive,
                    "the API server failed its health check {consecutive} times in a row ({why}): withdrawing the control-plane VIP"
                );
                tx.send_replace(ApiServer::Unhealthy(why));
            }
            Change::None => {
                if let Some(why) = health.why_down() {
                    let why = why.to_owned();
                    tx.send_if_modified(|s| {
                        if let ApiServer::Unhealthy(old) = s {
                            if *old != why {
                                warn!(url = probe.url(), "not announcing the control-plane VIP: the API server's health check fails: {why}");
                                *old = why;
                            }
                        }
                        // Only the reason changed: no wake-up for the loop.
                        false
                    });
                }
            }
        }
        pace(started, period).await;
    }
}

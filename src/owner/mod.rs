//! [I/O] The owner loop, one for every mode: an input (the watched cluster, or the static VIPs)
//! → decide (pure) → plan (pure, [`crate::plan`]) → execute, with one executor per mode:
//!
//! ```text
//!              ┌──────────── wake-ups: watch, Leases, DHCP, UPnP, fence, resync ────────────┐
//!              │             (or, for static VIPs, SIGHUP and the peer set)                  │
//!              ▼                                                                             │
//!   input ──► reconcile: decide → plan → execute ──► bgp::Bgp       speaker routes, addresses
//!                                                    arp::Arp       claims on links
//!                                                    static_vips    speaker routes
//!              ▲                                                                             │
//!              └──────── what an executor learns (address added, claim probed, lease bound) ─┘
//! ```
//!
//! [`drive`] is the loop: plan and execute, wait for a wake-up, again; then stop in the order
//! of the mode ([`crate::plan::shutdown::order`]). Only this loop holds what has been applied;
//! the watch, election, DHCP, UPnP, status and Event tasks report to it or take orders from it.
//!
//! Safety: nothing is decided before every watch has listed once (a Service not yet seen would
//! read as "withdraw"), and a watch in error keeps the last state, so an API server that goes
//! away withdraws nothing (kube-vip#867). A periodic resync re-decides even without events
//! (kube-vip#948). A Lease led ends at its fence deadline, a timer in [`Common`].
//!
//! May import everything below it (decide, plan, the feature folders, kube, observe); only
//! `agent` imports it.

mod announcer;
pub mod arp;
pub mod bgp;
mod common;
mod drain;
pub mod elect;
mod node_labels;
pub mod static_vips;
mod vip_host;

use crate::config::ServicesSettings;
use crate::decide::DecideConfig;
use crate::dhcp::services::DhcpServices;
use crate::error::RunError;
use crate::kube::status::{EventSink, StatusWriter};
use crate::kube::view::{AbortOnDrop, View};
use crate::observe::{Observer, Readiness};
use crate::plan::shutdown::{self, Step};
use crate::upnp::gateway::SearchSettings;
use crate::upnp::services::UpnpServices;
pub use common::Common;
use elect::Elect;
use std::future::Future;
use tracing::info;

/// Where the owner loop's wants come from, and what it shuts down besides the executor.
pub(crate) trait Context {
    /// Completes once the input is complete enough to plan on.
    async fn ready(&mut self);
    /// The next wake-up of the input; whether to plan again. Cancel-safe: the loop selects on
    /// it beside the executor's.
    async fn wake(&mut self) -> bool;
    /// Carries out `step` if it is the context's own; whether it was.
    async fn shutdown_step(&mut self, step: Step) -> bool;
    /// This node's Node object as last seen, if the context watches it.
    fn node(&self) -> Option<std::sync::Arc<k8s_openapi::api::core::v1::Node>> {
        None
    }
}

/// What one mode does with the plan.
pub(crate) trait Executor {
    /// What wakes the loop besides the input.
    type Wake;
    /// The input it plans from.
    type Ctx: Context;
    /// Which shutdown order applies.
    const MODE: shutdown::Mode;
    /// "services mode", "ARP mode", "static VIPs", for the log.
    const NAME: &'static str;

    /// Before the input is waited for (ARP: addresses an earlier vipd left; BGP: the VIP
    /// interface).
    async fn prepare(&mut self) -> Result<(), RunError>;
    /// The next mode-specific wake-up; must be cancel-safe (the loop selects on it).
    async fn wake(&mut self) -> Self::Wake;
    /// Handles a wake-up; whether to plan again.
    async fn on_wake(&mut self, wake: Self::Wake, c: &mut Self::Ctx) -> bool;
    /// Decide, plan and execute once.
    async fn reconcile(&mut self, c: &mut Self::Ctx);
    /// One of this mode's own shutdown steps.
    async fn shutdown_step(&mut self, step: Step);
    /// Whether stopping now is a restart or a shutdown ([`shutdown::stop`]), and why. Without
    /// graceful restart (ARP mode) always a shutdown.
    fn stop(&self, _ctx: &Self::Ctx) -> (shutdown::Stop, String) {
        (
            shutdown::Stop::Shutdown,
            "this mode has no graceful restart".into(),
        )
    }
}

/// A services-mode executor: plans from the watched cluster ([`Common`]).
pub(crate) trait ServicesExecutor: Executor<Ctx = Common> {
    /// The DHCP clients' default macvlan parent, and whether each client puts its lease on the
    /// macvlan itself (else the executor does, after probing).
    fn dhcp_parent(&self) -> (String, bool);
    /// Whether it holds the control-plane VIP (`cp_enable`).
    fn control_plane(&self) -> bool;
}

/// The loop: once the input is ready, plan and execute, then wait for a wake-up of the input or
/// the executor, again, until `shutdown`; then the mode's shutdown steps in order.
pub(crate) async fn drive<E: Executor>(
    mut exec: E,
    ctx: &mut E::Ctx,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    exec.prepare().await?;
    tokio::pin!(shutdown);
    let ready = tokio::select! {
        () = &mut shutdown => false,
        () = ctx.ready() => true,
    };
    if ready {
        'plan: loop {
            exec.reconcile(ctx).await;
            loop {
                tokio::select! {
                    () = &mut shutdown => break 'plan,
                    again = ctx.wake() => if again {
                        break;
                    },
                    w = exec.wake() => if exec.on_wake(w, ctx).await {
                        break;
                    },
                }
            }
        }
    }
    let (stop, why) = exec.stop(ctx);
    match stop {
        shutdown::Stop::Restart => info!("{}: stopping for a restart: {why}", E::NAME),
        shutdown::Stop::Shutdown => info!("{}: shutting down: {why}", E::NAME),
    }
    for step in shutdown::order(E::MODE, stop) {
        if !ctx.shutdown_step(step).await {
            exec.shutdown_step(step).await;
        }
    }
    Ok(())
}

/// Runs services mode with `exec` until `shutdown`, then stops in the order of its mode.
pub(crate) async fn run<E: ServicesExecutor>(
    exec: E,
    svc: &ServicesSettings,
    client: kube::Client,
    readiness: Readiness,
    observer: Observer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let waiting = if svc.watch_services {
        "waiting for the first complete list of Services, EndpointSlices and this node"
    } else {
        "waiting for this node's Node (the control-plane VIP alone: no Service is watched)"
    };
    readiness.not_ready("services", waiting);
    // The allocator runs beside the owner loop (it only writes Services; what it writes comes
    // back through the watch like any other change). Aborted when services mode ends.
    let _ipam = svc.ipam.clone().map(|settings| {
        AbortOnDrop(tokio::spawn(crate::ipam::task::run(
            client.clone(),
            settings,
            ipam_decide_config(svc),
            svc.node_name.clone(),
            observer.clone(),
        )))
    });
    let view = View::start(
        client.clone(),
        svc.watch_services,
        svc.namespace.as_deref(),
        &svc.node_name,
        observer.clone(),
    );
    let events = EventSink::start(client.clone(), &svc.node_name, observer.clone());
    let (lead_tx, lead_rx) = tokio::sync::mpsc::unbounded_channel();
    let (parent, clients_hold) = exec.dhcp_parent();
    let elect = Elect::new(
        client.clone(),
        &svc.node_name,
        svc.election_timing,
        lead_tx,
        observer.clone(),
    );
    let dhcp = DhcpServices::new(
        client.clone(),
        &parent,
        svc.namespace.as_deref(),
        clients_hold,
    );
    let upnp = svc
        .upnp
        .then(|| UpnpServices::start(SearchSettings::default(), events.clone()));
    let status = svc
        .status_updates
        .then(|| StatusWriter::start(client.clone()));
    let mut common = Common::new(common::Parts {
        node: svc.node_name.clone(),
        client,
        view,
        readiness,
        elect,
        lead_rx,
        events,
        observer,
        dhcp,
        upnp,
        status,
        node_labels: node_labels::Owned {
            services: svc.node_labeling,
            control_plane: exec.control_plane(),
        },
    });
    info!(
        node = %svc.node_name,
        namespace = svc.namespace.as_deref().unwrap_or("(all)"),
        "{}: {waiting}",
        E::NAME
    );
    drive(exec, &mut common, shutdown).await
}

/// The allocator assigns addresses to every Service vipd serves, whichever family a peer
/// carries.
fn ipam_decide_config(svc: &ServicesSettings) -> DecideConfig {
    svc.decide_config(true, true)
}

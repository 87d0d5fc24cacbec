//! [I/O] The owner loop of services mode, one for every mode: watch (kube view) → decide
//! (pure) → plan (pure, [`crate::plan`]) → execute, with one executor per mode —
//! [`bgp::Bgp`] (the speaker's routes and the VIP addresses) and [`arp::Arp`] (claims on
//! links). Only this loop holds what has been applied; the watch, election, DHCP, UPnP, status
//! and Event tasks report to it or take orders from it, and what an executor learns (an
//! address added, a claim probed, a lease bound) comes back as a wake-up, after which the
//! loop plans again.
//!
//! Safety: nothing is decided before every watch has listed once (a Service not yet seen would
//! read as "withdraw"), and a watch in error keeps the last state, so an API server that goes
//! away withdraws nothing (kube-vip#867). A periodic resync re-decides even without events
//! (kube-vip#948). A Lease led ends at its fence deadline, a timer here. Shutdown runs
//! [`crate::plan::shutdown::order`].
//!
//! May import everything below it (decide, plan, the feature folders, kube, observe); only
//! `agent` imports it.

pub mod arp;
pub mod bgp;
pub mod elect;
mod report;

use crate::config::ServicesSettings;
use crate::decide::DecideConfig;
use crate::dhcp::services::DhcpServices;
use crate::error::RunError;
use crate::kube::status::{EventSink, StatusWriter};
use crate::kube::view::{AbortOnDrop, Snapshot, View};
use crate::observe::{Observer, Readiness};
use crate::plan::shutdown::{self, Step};
use crate::upnp::gateway::SearchSettings;
use crate::upnp::services::UpnpServices;
use elect::Elect;
pub use report::Common;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::info;

/// Changes arriving together (a rollout touches many slices) are decided once.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// Re-decide this often even without events.
const RESYNC: Duration = Duration::from_secs(60);

/// What one mode does with the plan. The loop owns the rest.
pub(crate) trait Executor {
    /// What wakes the loop besides the watch, the elections, DHCP, UPnP and the timers.
    type Wake;
    /// Which shutdown order applies.
    const MODE: shutdown::Mode;
    /// "services mode" or "ARP mode", for the log.
    const NAME: &'static str;

    /// The DHCP clients' default macvlan parent, and whether each client puts its lease on the
    /// macvlan itself (else the executor does, after probing).
    fn dhcp_parent(&self) -> (String, bool);
    /// Before anything is watched (ARP: addresses an earlier vipd left; BGP: the VIP interface).
    async fn prepare(&mut self) -> Result<(), RunError>;
    /// The next mode-specific wake-up; must be cancel-safe (the loop selects on it).
    async fn wake(&mut self) -> Self::Wake;
    /// Handles a wake-up; whether to plan again.
    async fn on_wake(&mut self, wake: Self::Wake, c: &mut Common) -> bool;
    /// Decide, plan and execute once, on one snapshot of the cluster.
    async fn reconcile(&mut self, c: &mut Common, snap: &Snapshot);
    /// One of this mode's shutdown steps (the loop does DHCP, UPnP and the Leases).
    async fn shutdown_step(&mut self, step: Step);
}

/// Runs services mode with `exec` until `shutdown`, then stops in the order of its mode.
pub(crate) async fn run<E: Executor>(
    mut exec: E,
    svc: &ServicesSettings,
    client: kube::Client,
    readiness: Readiness,
    observer: Observer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    readiness.not_ready(
        "services",
        "waiting for the first complete list of Services, EndpointSlices and this node",
    );
    exec.prepare().await?;
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
    let mut view = View::start(client.clone(), svc.namespace.as_deref(), &svc.node_name);
    let events = EventSink::start(client.clone(), &svc.node_name, observer.clone());
    let (lead_tx, mut lead_rx) = mpsc::unbounded_channel();
    let (parent, clients_hold) = exec.dhcp_parent();
    let mut c = Common::new(
        &svc.node_name,
        Elect::new(
            client.clone(),
            &svc.node_name,
            svc.election_timing,
            lead_tx,
            observer.clone(),
        ),
        svc.status_updates
            .then(|| StatusWriter::start(client.clone())),
        events.clone(),
        observer,
        DhcpServices::new(
            client.clone(),
            &parent,
            svc.namespace.as_deref(),
            clients_hold,
        ),
        svc.upnp
            .then(|| UpnpServices::start(SearchSettings::default(), events)),
        client,
    );
    tokio::pin!(shutdown);
    info!(
        node = %svc.node_name,
        namespace = svc.namespace.as_deref().unwrap_or("(all)"),
        "{}: waiting for the first complete list of Services, EndpointSlices and this node",
        E::NAME
    );
    let listed = tokio::select! {
        () = &mut shutdown => false,
        () = view.ready() => true,
    };
    if listed {
        info!("watches listed; deciding");
        readiness.ready("services");
        let dhcp_changed = c.dhcp.notifier();
        let upnp_changed = c.upnp.as_ref().map(UpnpServices::notifier);
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'decide: loop {
            exec.reconcile(&mut c, &view.snapshot()).await;
            // Wait for something that can change a decision.
            loop {
                let fence = c.elect.fence();
                tokio::select! {
                    () = &mut shutdown => break 'decide,
                    // The fence: a leadership ends at its renew deadline whatever the election
                    // task does, and what it elects goes with it.
                    () = sleep_until_opt(fence) => break,
                    Some((key, l)) = lead_rx.recv() => {
                        let mut changed = c.elect.on_leadership(key, l);
                        while let Ok((key, l)) = lead_rx.try_recv() {
                            changed |= c.elect.on_leadership(key, l);
                        }
                        // A renew only moves the fence; a new or lost leadership re-plans.
                        if changed {
                            break;
                        }
                    }
                    () = view.changed() => {
                        tokio::time::sleep(DEBOUNCE).await;
                        break;
                    }
                    () = crate::wake::notified(Some(&dhcp_changed)) => break,
                    () = crate::wake::notified(upnp_changed.as_deref()) => break,
                    _ = resync.tick() => break,
                    w = exec.wake() => {
                        if exec.on_wake(w, &mut c).await {
                            break;
                        }
                    }
                }
            }
        }
    }
    info!("{}: shutting down", E::NAME);
    for step in shutdown::order(E::MODE) {
        match step {
            Step::StopDhcp => c.dhcp.shutdown().await,
            Step::UnmapPorts => {
                if let Some(upnp) = c.upnp.as_mut() {
                    upnp.shutdown().await;
                }
            }
            Step::ReleaseLeases => c.elect.release_all().await,
            mode_step => exec.shutdown_step(mode_step).await,
        }
    }
    Ok(())
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The allocator assigns addresses to every Service vipd serves, whichever family a peer
/// carries.
fn ipam_decide_config(svc: &ServicesSettings) -> DecideConfig {
    DecideConfig {
        lb_class_only: svc.lb_class_only,
        lb_class_name: svc.lb_class_name.clone(),
        lb_class_legacy_handling: svc.lb_class_legacy_handling,
        announce_ipv4: true,
        announce_ipv6: true,
    }
}

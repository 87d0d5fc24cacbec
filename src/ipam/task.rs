//! [I/O] The address allocator (`lb_ipam` / `--ipam`): one agent, elected through the Lease
//! `vipd-ipam`, reads the kube-vip-cloud-provider ConfigMap and every Service, asks the pure
//! planner ([`crate::ipam::plan`]) what to write, and writes it by merge patch. The others
//! stand by. The in-use set is rebuilt from the Services on every plan, so a new leader never
//! hands out an address twice; each patch carries the Service's resourceVersion, so a plan made
//! from a stale view fails with a conflict instead of overwriting, and the next plan decides.

use crate::config::{IpamSettings, IpamStandalone};
use crate::decide::{DecideConfig, ServiceKey};
use crate::election::lease::{Election, Leadership};
use crate::election::{LeaseKey, Timing};
use crate::ipam::{plan, IpamProblem};
use crate::kube::status::{EventSink, ServiceEvent};
use crate::kube::view::{reflect, wait_ready, AbortOnDrop};
use crate::kube::write::{self, Target};
use crate::observe::Observer;
use crate::observe::Readiness;
use crate::report::EventReason;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

pub const LEASE: &str = "vipd-ipam";

/// kube-vip's election timing (15 s Lease, renewed within 10 s, read every 2 s): a crashed
/// allocator is replaced within about 15 s.
const ELECTION_TIMING: Timing = Timing {
    lease_duration: Duration::from_secs(15),
    renew_deadline: Duration::from_secs(10),
    retry: Duration::from_secs(2),
};

/// Turns the election's reports into "may allocate now": true from `Leading`, false at its
/// `until` unless a later `Leading` moved it, and at once on `NotLeading`.
async fn fence(
    mut reports: mpsc::UnboundedReceiver<(LeaseKey, Leadership)>,
    leader: watch::Sender<bool>,
) {
    let mut until: Option<tokio::time::Instant> = None;
    loop {
        let deadline = until;
        tokio::select! {
            report = reports.recv() => match report {
                Some((_, Leadership::Leading { until: u })) => {
                    until = Some(u);
                    leader.send_if_modified(|l| !std::mem::replace(l, true));
                }
                // A failed read or write changes nothing: the fence ends a stale leadership.
                Some((_, Leadership::Failed(_))) => {}
                Some((_, Leadership::NotLeading(_))) | None => {
                    until = None;
                    leader.send_if_modified(|l| std::mem::replace(l, false));
                    if report.is_none() {
                        return;
                    }
                }
            },
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                until = None;
                leader.send_if_modified(|l| std::mem::replace(l, false));
            }
        }
    }
}

/// `vipd ipam`: the allocator alone, until `shutdown`.
pub async fn run_standalone(
    s: IpamStandalone,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), crate::kube::client::ClientError> {
    let client = crate::kube::client::client(s.kubeconfig.as_deref()).await?;
    let identity = s.identity.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_lowercase())
            .unwrap_or_else(|_| "vipd-ipam".into())
    });
    let settings = s.ipam;
    let decide = DecideConfig {
        lb_class_only: s.lb_class_only,
        lb_class_name: s.lb_class_name,
        ..DecideConfig::default()
    };
    info!(identity, configmap = %settings.configmap, namespace = %settings.namespace, "vipd ipam started");
    tokio::select! {
        () = run(client, settings, decide, identity.clone(), Observer::new(&identity, "ipam", Readiness::default())) => {}
        () = shutdown => info!("vipd ipam stopping"),
    }
    Ok(())
}

/// Runs until the task is dropped: contends for the Lease and, while holding it, allocates.
pub async fn run(
    client: Client,
    settings: IpamSettings,
    decide: DecideConfig,
    identity: String,
    observer: Observer,
) {
    let (tx, mut changed) = watch::channel(0u64);
    // The tasks end with this function (the allocator's task is aborted at shutdown).
    let (services, t1) = reflect(
        "ipam services",
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
    );
    let (configmaps, t2) = reflect(
        "ipam configmap",
        Api::<ConfigMap>::namespaced(client.clone(), &settings.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", settings.configmap)),
        tx,
    );
    let _watches = (AbortOnDrop(t1), AbortOnDrop(t2));
    let events = EventSink::start(client.clone(), &identity, observer.clone());
    // The crate's own fenced elector (as ARP mode's): leadership ends at the renew deadline of
    // the last write that kept it, by this node's clock, even when the API server is gone.
    let (lead_tx, lead_rx) = mpsc::unbounded_channel();
    let _election = Election::start(
        client.clone(),
        LeaseKey {
            namespace: settings.lease_namespace.clone(),
            name: LEASE.to_owned(),
        },
        identity.clone(),
        ELECTION_TIMING,
        true,
        Arc::new(AtomicUsize::new(0)),
        lead_tx,
    );
    let (fence_tx, mut leader) = watch::channel(false);
    let _fence = AbortOnDrop(tokio::spawn(fence(lead_rx, fence_tx)));
    wait_ready(&services, "ipam services").await;
    wait_ready(&configmaps, "ipam configmap").await;
    let mut reported: BTreeMap<ServiceKey, Vec<IpamProblem>> = BTreeMap::new();
    let mut was_leader = false;
    loop {
        let is_leader = *leader.borrow_and_update();
        if is_leader != was_leader {
            info!(
                lease = LEASE,
                leader = is_leader,
                "IPAM allocator {}",
                if is_leader {
                    "elected: allocating"
                } else {
                    "standing by"
                }
            );
            was_leader = is_leader;
            observer.set_leader(LEASE, is_leader);
        }
        if is_leader {
            let inputs = Inputs {
                client: &client,
                settings: &settings,
                decide: &decide,
                services: &services,
                configmaps: &configmaps,
                events: &events,
            };
            allocate(&inputs, &mut reported, &leader).await;
        }
        tokio::select! {
            r = leader.changed() => if r.is_err() {
                warn!("the IPAM election ended; standing by");
                std::future::pending::<()>().await;
            },
            _ = changed.changed() => tokio::time::sleep(Duration::from_millis(20)).await,
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// What one allocation pass reads and writes through.
struct Inputs<'a> {
    client: &'a Client,
    settings: &'a IpamSettings,
    decide: &'a DecideConfig,
    services: &'a Store<Service>,
    configmaps: &'a Store<ConfigMap>,
    events: &'a EventSink,
}

async fn allocate(
    inputs: &Inputs<'_>,
    reported: &mut BTreeMap<ServiceKey, Vec<IpamProblem>>,
    leader: &watch::Receiver<bool>,
) {
    let Inputs {
        client,
        settings,
        decide,
        services,
        configmaps,
        events,
    } = *inputs;
    let config = configmaps
        .state()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(settings.configmap.as_str()))
        .map(|c| c.data.clone().unwrap_or_default());
    let plan = plan(&services.state(), config.as_ref(), decide);
    for a in &plan.allocations {
        // Leadership can end mid-plan: stop writing at once.
        if !*leader.borrow() {
            return;
        }
        let api: Api<Service> = Api::namespaced(client.clone(), &a.service.namespace);
        match write::merge(&api, &a.service.name, Target::Service, &a.merge_patch()).await {
            Ok(_) => {
                info!(service = %a.service, addresses = %a.annotation_value(), "address allocated");
                events.send(ServiceEvent {
                    service: a.service.clone(),
                    reason: EventReason::AddressAllocated,
                    note: format!(
                        "{} from the {}/{} pools",
                        a.annotation_value(),
                        settings.namespace,
                        settings.configmap
                    ),
                });
            }
            // Changed since the plan was made: the next plan (on its watch event) decides.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                debug!(service = %a.service, "allocation skipped: {}", e.message)
            }
            Err(e) => warn!(service = %a.service, "cannot write the allocated address: {e}"),
        }
    }
    for (key, problems) in &plan.problems {
        let known = reported.get(key).map(Vec::as_slice).unwrap_or(&[]);
        for p in problems.iter().filter(|p| !known.contains(p)) {
            warn!(service = %key, reason = p.reason(), "{p}");
            events.send(ServiceEvent {
                service: key.clone(),
                reason: EventReason::Problem(p.reason()),
                note: p.to_string(),
            });
        }
    }
    *reported = plan.problems;
}

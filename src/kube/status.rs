//! [I/O] What vipd writes to the API: `status.loadBalancer.ingress` by merge patch on the status
//! subresource (never a full-object update that could clobber another controller's write,
//! kube-vip#221), and Events on Services. Both run as tasks fed by channels, so a slow or absent
//! API server never stalls the owner loop; a failed write is kept and retried, latest wins.

use crate::decide::{Desired, Problem, ServiceKey};
use crate::event_limit::{EventLimiter, Verdict};
use crate::observe::Observer;
use crate::report::EventReason;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Field manager name on every write.
pub const MANAGER: &str = "vipd";

/// Sends ingress writes to the writer task.
#[derive(Clone)]
pub struct StatusWriter {
    tx: mpsc::UnboundedSender<(ServiceKey, Vec<IpAddr>)>,
}

impl StatusWriter {
    pub fn start(client: Client) -> StatusWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(client, rx));
        StatusWriter { tx }
    }

    /// Asks for `ingress` (empty: clear) on `key`; a later call for the same key replaces it.
    pub fn set(&self, key: ServiceKey, ingress: Vec<IpAddr>) {
        let _ = self.tx.send((key, ingress));
    }
}

async fn write_loop(client: Client, mut rx: mpsc::UnboundedReceiver<(ServiceKey, Vec<IpAddr>)>) {
    let mut pending: BTreeMap<ServiceKey, Vec<IpAddr>> = BTreeMap::new();
    let mut delay = Duration::ZERO;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some((k, v)) => {
                    pending.insert(k, v);
                }
                None => return,
            }
        }
        // Take everything queued meanwhile: the latest request per Service wins.
        while let Ok((k, v)) = rx.try_recv() {
            pending.insert(k, v);
        }
        let mut failed = false;
        for (key, ingress) in std::mem::take(&mut pending) {
            match patch_ingress(&client, &key, &ingress).await {
                Ok(()) => debug!(service = %key, ?ingress, "status.loadBalancer.ingress written"),
                // Gone: nothing left to write to.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    if delay.is_zero() {
                        warn!(service = %key, error = %e, "cannot write status.loadBalancer.ingress; will retry");
                    }
                    failed = true;
                    // A newer request that arrived meanwhile must not be overwritten.
                    pending.entry(key).or_insert(ingress);
                }
            }
        }
        if failed {
            // Retry with growing pauses, but take new requests at once.
            delay = (delay * 2).clamp(Duration::from_millis(200), Duration::from_secs(10));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                msg = rx.recv() => match msg {
                    Some((k, v)) => { pending.insert(k, v); }
                    None => return,
                },
            }
        } else if !delay.is_zero() {
            info!("status writes work again");
            delay = Duration::ZERO;
        }
    }
}

async fn patch_ingress(client: &Client, key: &ServiceKey, ingress: &[IpAddr]) -> kube::Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), &key.namespace);
    let entries: Vec<serde_json::Value> = ingress
        .iter()
        .map(|ip| serde_json::json!({ "ip": ip.to_string() }))
        .collect();
    // A merge patch replaces the list as a whole; null removes it.
    let ingress = if entries.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Array(entries)
    };
    let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": ingress } } });
    api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

/// One Event about a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEvent {
    pub service: ServiceKey,
    /// Why; also whether it is a Warning.
    pub reason: EventReason,
    pub note: String,
}

/// Publishes Events (events.k8s.io/v1) from a task, at most a burst and then one per period per
/// Service ([`EventLimiter`]); a failure is logged, never retried.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<ServiceEvent>,
}

impl EventSink {
    pub fn start(client: Client, node_name: &str, observer: Observer) -> EventSink {
        let reporter = Reporter {
            controller: "vipd".into(),
            instance: Some(node_name.to_owned()),
        };
        let recorder = Recorder::new(client, reporter);
        let (tx, mut rx) = mpsc::unbounded_channel::<ServiceEvent>();
        let mut limiter = EventLimiter::default();
        tokio::spawn(async move {
            while let Some(mut ev) = rx.recv().await {
                match limiter.check(&ev.service, std::time::Instant::now()) {
                    Verdict::Drop => {
                        observer.event_suppressed();
                        debug!(service = %ev.service, reason = ev.reason.code(), "event rate limit: not sent");
                        continue;
                    }
                    Verdict::Send { suppressed: 0 } => {}
                    Verdict::Send { suppressed } => ev.note.push_str(&format!(
                        " ({suppressed} earlier events about this Service were not sent: rate limit)"
                    )),
                }
                let reference = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Service".into()),
                    namespace: Some(ev.service.namespace.clone()),
                    name: Some(ev.service.name.clone()),
                    ..Default::default()
                };
                let event = Event {
                    type_: if ev.reason.is_warning() {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: ev.reason.code().to_owned(),
                    note: Some(ev.note.clone()),
                    action: "Announce".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &reference).await {
                    debug!(service = %ev.service, reason = ev.reason.code(), error = %e, "cannot publish an event");
                }
            }
        });
        EventSink { tx }
    }

    pub fn send(&self, ev: ServiceEvent) {
        let _ = self.tx.send(ev);
    }
}

/// Each problem in a Service's input (a malformed annotation, a bad address, …) reported once
/// while it lasts: a Warning log line, a Warning Event and the reconcile-error counter. A
/// problem that goes and comes back is reported again.
#[derive(Default)]
pub struct ProblemReports {
    reported: BTreeMap<ServiceKey, Vec<Problem>>,
}

impl ProblemReports {
    pub fn report(&mut self, desired: &Desired, events: &EventSink, observer: &Observer) {
        for (key, d) in &desired.services {
            let known = self.reported.get(key).map(Vec::as_slice).unwrap_or(&[]);
            for p in d.problems.iter().filter(|p| !known.contains(p)) {
                warn!(service = %key, reason = p.reason(), "{p}");
                observer.reconcile_error(&key.namespace, &key.name, p.reason());
                events.send(ServiceEvent {
                    service: key.clone(),
                    reason: EventReason::Problem(p.reason()),
                    note: p.to_string(),
                });
            }
        }
        self.reported = desired
            .services
            .iter()
            .filter(|(_, d)| !d.problems.is_empty())
            .map(|(k, d)| (k.clone(), d.problems.clone()))
            .collect();
    }
}

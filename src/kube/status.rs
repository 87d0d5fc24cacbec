//! [I/O] What vipd writes to the API: `status.loadBalancer.ingress` by merge patch on the status
//! subresource (never a full-object update that could clobber another controller's write,
//! kube-vip#221; get + update where RBAC forbids patch, [`super::write`]), and Events on
//! Services. Both run as tasks fed by channels, so a slow or absent
//! API server never stalls the owner loop; a failed write is kept and retried, latest wins.

use crate::decide::ingress::IngressWrite;
use crate::decide::{Desired, Problem, ServiceKey};
use crate::event_limit::{EventLimiter, Verdict};
use crate::note::{bounded, EVENT_NOTE_LIMIT, LOG_LIMIT};
use crate::observe::Observer;
use crate::report::EventReason;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Field manager name on every write.
pub const MANAGER: &str = "vipd";

/// Sends ingress writes to the writer task.
#[derive(Clone)]
pub struct StatusWriter {
    tx: mpsc::UnboundedSender<(ServiceKey, IngressWrite)>,
}

impl StatusWriter {
    pub fn start(client: Client) -> StatusWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(client, rx));
        StatusWriter { tx }
    }

    /// Asks for `ingress` (no addresses: clear) on `key`; a later call for the same key
    /// replaces it.
    pub fn set(&self, key: ServiceKey, ingress: IngressWrite) {
        let _ = self.tx.send((key, ingress));
    }
}

async fn write_loop(client: Client, mut rx: mpsc::UnboundedReceiver<(ServiceKey, IngressWrite)>) {
    let mut pending: BTreeMap<ServiceKey, IngressWrite> = BTreeMap::new();
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
                Ok(()) => {
                    debug!(service = %key, ingress = ?ingress.ips, "status.loadBalancer.ingress written")
                }
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

async fn patch_ingress(
    client: &Client,
    key: &ServiceKey,
    ingress: &IngressWrite,
) -> kube::Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), &key.namespace);
    let ports: Vec<serde_json::Value> = ingress
        .ports
        .iter()
        .map(|p| serde_json::json!({ "port": p.port, "protocol": p.protocol }))
        .collect();
    let entries: Vec<serde_json::Value> = ingress
        .ips
        .iter()
        .map(|ip| {
            let mut entry = serde_json::json!({ "ip": ip.to_string() });
            if !ports.is_empty() {
                entry["ports"] = serde_json::Value::Array(ports.clone());
            }
            entry
        })
        .collect();
    // A merge patch replaces the list as a whole; null removes it.
    let ingress = if entries.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Array(entries)
    };
    let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": ingress } } });
    super::write::merge(&api, &key.name, super::write::Target::Status, &patch).await
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
/// Service ([`EventLimiter`]); a failure is logged, never retried. Forbidden by RBAC: one
/// warning, then no Event is tried for [`FORBIDDEN_PAUSE`].
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
        let mut forbidden = Forbidden::default();
        tokio::spawn(async move {
            while let Some(mut ev) = rx.recv().await {
                if forbidden.holds(std::time::Instant::now()) {
                    observer.event_suppressed();
                    debug!(service = %ev.service, reason = ev.reason.code(), "events are forbidden by RBAC: not sent");
                    continue;
                }
                let suffix = match limiter.check(&ev.service, std::time::Instant::now()) {
                    Verdict::Drop => {
                        observer.event_suppressed();
                        debug!(service = %ev.service, reason = ev.reason.code(), "event rate limit: not sent");
                        continue;
                    }
                    Verdict::Send { suppressed: 0 } => String::new(),
                    Verdict::Send { suppressed } => format!(
                        " ({suppressed} earlier events about this Service were not sent: rate limit)"
                    ),
                };
                // Within kube-apiserver's 1,024 bytes, or the Event is refused and lost.
                ev.note = bounded(&ev.note, EVENT_NOTE_LIMIT - suffix.len()) + &suffix;
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
                match recorder.publish(&event, &reference).await {
                    Ok(()) => forbidden.lifted(),
                    Err(kube::Error::Api(e)) if e.code == 403 => {
                        if forbidden.refused(std::time::Instant::now()) {
                            warn!(error = %e.message, "RBAC does not allow creating Events (events.k8s.io, as under kube-vip's ClusterRole): Events are not sent, and tried again every {} minutes; `vipd manifest rbac` grants create on events", FORBIDDEN_PAUSE.as_secs() / 60);
                        }
                    }
                    Err(e) => {
                        debug!(service = %ev.service, reason = ev.reason.code(), error = %e, "cannot publish an event");
                    }
                }
            }
        });
        EventSink { tx }
    }

    pub fn send(&self, ev: ServiceEvent) {
        let _ = self.tx.send(ev);
    }
}

/// How long Events are not even tried after a 403 (RBAC is rarely fixed within minutes; each
/// try would be another refused request).
const FORBIDDEN_PAUSE: Duration = Duration::from_secs(600);

/// Whether Events are forbidden now: after a 403, for [`FORBIDDEN_PAUSE`]; warned about once
/// until an Event gets through again.
#[derive(Default)]
struct Forbidden {
    until: Option<std::time::Instant>,
    warned: bool,
}

impl Forbidden {
    fn holds(&self, now: std::time::Instant) -> bool {
        self.until.is_some_and(|t| now < t)
    }

    /// A 403: pause; `true` when this is the one to warn about.
    fn refused(&mut self, now: std::time::Instant) -> bool {
        self.until = Some(now + FORBIDDEN_PAUSE);
        !std::mem::replace(&mut self.warned, true)
    }

    fn lifted(&mut self) {
        if self.warned {
            info!("Events are allowed again");
        }
        *self = Forbidden::default();
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
                warn!(service = %key, reason = p.reason(), "{}", bounded(&p.to_string(), LOG_LIMIT));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_forbidden_event_warns_once_and_pauses_tries_until_one_gets_through() {
        let mut f = Forbidden::default();
        let t0 = Instant::now();
        assert!(!f.holds(t0));
        assert!(f.refused(t0), "the first 403 is warned about");
        assert!(f.holds(t0 + Duration::from_secs(1)));
        assert!(!f.holds(t0 + FORBIDDEN_PAUSE));
        assert!(
            !f.refused(t0 + FORBIDDEN_PAUSE),
            "still forbidden: no second warning"
        );
        assert!(f.holds(t0 + FORBIDDEN_PAUSE + Duration::from_secs(1)));
        f.lifted();
        assert!(!f.holds(t0 + FORBIDDEN_PAUSE + Duration::from_secs(1)));
        assert!(
            f.refused(t0),
            "forbidden again after it worked: warned again"
        );
    }
}

//! [I/O] UPnP in services mode (`enable_upnp`): the owner loop hands over each decision; the
//! Services this node announces that carry `kube-vip.io/forwardUPNP: "true"` get their ports
//! mapped on the gateway by a [`gateway::run`] task. Refusals become Warning Events on the
//! Service. On shutdown every mapping is deleted.

use super::gateway::{self, SearchSettings, UpnpState};
use super::plan::{self, UpnpRequest};
use crate::decide::{Desired, ServiceKey};
use crate::kube::status::{EventSink, ServiceEvent};
use crate::kube::view::AbortOnDrop;
use crate::report::EventReason;
use k8s_openapi::api::core::v1::Service;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tracing::warn;

pub struct UpnpServices {
    desired: watch::Sender<BTreeMap<plan::Key, plan::Mapping>>,
    state: watch::Receiver<UpnpState>,
    /// Notified when the external address or the set of mapped Services changes (status).
    changed: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// Sends the forwarder's failures as Events as they happen (rounds run on their own timers).
    _events: AbortOnDrop,
    /// Contested ports already logged.
    conflicts: Vec<plan::Conflict>,
}

impl UpnpServices {
    pub fn start(search: SearchSettings, events: EventSink) -> UpnpServices {
        let (desired, desired_rx) = watch::channel(BTreeMap::new());
        let (state_tx, state) = watch::channel(UpnpState::default());
        let changed = Arc::new(Notify::new());
        let events = AbortOnDrop(tokio::spawn(report_failures(
            state.clone(),
            events,
            changed.clone(),
        )));
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway::run(search, desired_rx, state_tx, false, async {
            let _ = stop_rx.await;
        }));
        UpnpServices {
            desired,
            state,
            changed,
            stop: Some(stop),
            task: Some(task),
            _events: events,
            conflicts: Vec::new(),
        }
    }

    /// The mappings the Services this node announces ask for.
    pub fn update(&mut self, services: &[Arc<Service>], desired: &Desired) {
        let (want, conflicts) = plan::desired(&requests(services, desired));
        for c in conflicts.iter().filter(|c| !self.conflicts.contains(c)) {
            warn!(
                "UPnP: {} port {} is mapped for {}; {} cannot have it too",
                c.key.0, c.key.1, c.kept, c.refused
            );
        }
        self.conflicts = conflicts;
        self.desired.send_if_modified(|cur| {
            let changed = *cur != want;
            *cur = want;
            changed
        });
    }

    pub fn notifier(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// The gateway's external address, if a port of `key` is mapped.
    pub fn external_for(&self, key: &ServiceKey) -> Option<IpAddr> {
        let state = self.state.borrow();
        let name = key.to_string();
        state
            .installed
            .values()
            .any(|m| m.service == name)
            .then_some(state.external_ip)
            .flatten()
    }

    /// A restart: ends the task and leaves every mapping for the next process to refresh.
    pub fn abandon(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.stop = None;
    }

    /// Deletes every mapping and ends the task.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A Warning Event per Service whose mapping failed, once per distinct failure while it lasts.
/// Also wakes the owner loop when what the status shows changes.
async fn report_failures(
    mut state: watch::Receiver<UpnpState>,
    events: EventSink,
    changed: Arc<Notify>,
) {
    let mut reported: BTreeMap<String, String> = BTreeMap::new();
    let mut shown = (None, Vec::new());
    while state.changed().await.is_ok() {
        let (failed, now_shown) = {
            let s = state.borrow_and_update();
            let services: Vec<String> = s.installed.values().map(|m| m.service.clone()).collect();
            (s.failed.clone(), (s.external_ip, services))
        };
        if now_shown != shown {
            shown = now_shown;
            changed.notify_one();
        }
        for (service, error) in &failed {
            if reported.get(service) == Some(error) {
                continue;
            }
            let Some((namespace, name)) = service.split_once('/') else {
                continue;
            };
            events.send(ServiceEvent {
                service: ServiceKey {
                    namespace: namespace.into(),
                    name: name.into(),
                },
                reason: EventReason::UpnpFailed,
                note: error.clone(),
            });
        }
        reported = failed;
    }
}

/// One request per Service this node announces: its first announced IPv4 VIP, its annotations
/// and ports.
fn requests(services: &[Arc<Service>], desired: &Desired) -> Vec<UpnpRequest> {
    services
        .iter()
        .filter_map(|svc| {
            let key = ServiceKey::of(svc)?;
            let d = desired.services.get(&key)?;
            let vip = d.announced.iter().find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            });
            let ports = svc
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .map(|ports| ports.iter().map(|p| (p.protocol.clone(), p.port)).collect())
                .unwrap_or_default();
            Some(UpnpRequest {
                service: key.to_string(),
                forward: d.intent.forward_upnp,
                lease_duration: d.intent.upnp_lease_duration.clone(),
                vip,
                ports,
            })
        })
        .collect()
}

//! [I/O] Reflectors for the three things vipd decides from: Services (all namespaces or one),
//! every EndpointSlice that belongs to a Service, and this node. The stores keep the last state
//! through API errors and re-lists (a 410 Gone re-list swaps the store only once complete), so
//! an API server going away never empties the view, and nothing is withdrawn for it.

use crate::observe::Observer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The watched objects at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub node: Option<Arc<Node>>,
}

pub struct View {
    /// `None`: services mode runs for the control-plane VIP alone and watches no Service.
    services: Option<(Store<Service>, Store<EndpointSlice>)>,
    nodes: Store<Node>,
    changed: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl View {
    /// Starts the watches. `namespace`: Services and EndpointSlices of one namespace only;
    /// `watch_services` false: none at all (the node only). Each Service event is counted in
    /// `observer` (kube-vip's `all_services_events`).
    pub fn start(
        client: Client,
        watch_services: bool,
        namespace: Option<&str>,
        node_name: &str,
        observer: Observer,
    ) -> View {
        let (tx, changed) = watch::channel(0u64);
        let mut tasks = Vec::new();
        let services = watch_services.then(|| {
            let (services, t1) = services_and_slices(client.clone(), namespace, &tx, observer);
            tasks.extend(t1);
            services
        });
        let (nodes, t3) = reflect_seen(
            "node",
            Api::<Node>::all(client),
            watcher::Config::default().fields(&format!("metadata.name={node_name}")),
            tx,
            |_: &str| {},
            super::trim::node,
        );
        tasks.push(t3);
        View {
            services,
            nodes,
            changed,
            tasks,
        }
    }

    /// Waits until every store holds a complete first list. Before that, a missing Service
    /// could be a Service not yet listed: deciding then could withdraw a healthy VIP.
    pub async fn ready(&self) {
        if let Some((services, slices)) = &self.services {
            wait_ready(services, "services").await;
            wait_ready(slices, "endpointslices").await;
        }
        wait_ready(&self.nodes, "node").await;
    }

    /// Resolves when any store changed since the last call.
    pub async fn changed(&mut self) {
        if self.changed.changed().await.is_err() {
            // Every watch task ended (only at shutdown): never resolve again.
            std::future::pending::<()>().await;
        }
    }

    /// This node's Node object as last seen.
    pub fn node(&self) -> Option<Arc<Node>> {
        self.nodes.state().into_iter().next()
    }

    pub fn snapshot(&self) -> Snapshot {
        let (services, endpoint_slices) = match &self.services {
            Some((services, slices)) => (services.state(), slices.state()),
            None => (Vec::new(), Vec::new()),
        };
        Snapshot {
            services,
            endpoint_slices,
            node: self.nodes.state().into_iter().next(),
        }
    }
}

type Stores = (Store<Service>, Store<EndpointSlice>);

/// The Services and EndpointSlices watches.
fn services_and_slices(
    client: Client,
    namespace: Option<&str>,
    tx: &watch::Sender<u64>,
    observer: Observer,
) -> (Stores, [JoinHandle<()>; 2]) {
    let (services, t1) = reflect_seen(
        "services",
        scoped(client.clone(), namespace),
        watcher::Config::default(),
        tx.clone(),
        move |kind| observer.service_event(kind),
        super::trim::service,
    );
    // Only slices managed for a Service carry this label; one watch for all of them beats
    // one per Service (kube-vip) and sees every slice of a Service, not just the last.
    let (slices, t2) = reflect_seen(
        "endpointslices",
        scoped(client, namespace),
        watcher::Config::default().labels("kubernetes.io/service-name"),
        tx.clone(),
        |_: &str| {},
        super::trim::endpoint_slice,
    );
    ((services, slices), [t1, t2])
}

impl Drop for View {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Waits until `store` has its first complete list. If its watch task is gone, it never will:
/// waiting forever beats deciding from an empty store (that would withdraw every VIP).
pub(crate) async fn wait_ready<K>(store: &Store<K>, what: &str)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    if store.wait_until_ready().await.is_err() {
        tracing::error!(
            watch = what,
            "the watch ended before its first list; not deciding from it"
        );
        std::future::pending::<()>().await;
    }
}

/// Aborts its task when dropped (a plain `JoinHandle` only detaches).
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn scoped<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// One reflector: a store and the task that feeds it, logging each failure streak once.
pub(crate) fn reflect<K>(
    what: &'static str,
    api: Api<K>,
    cfg: watcher::Config,
    changed: watch::Sender<u64>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    reflect_seen(what, api, cfg, changed, |_: &str| {}, |_: &mut K| {})
}

/// As [`reflect`], telling `seen` the kind of each event as a watch names it (`ADDED`,
/// `MODIFIED`, `DELETED`), told apart by whether the store held the object before it, and
/// keeping of each object what `trim` leaves ([`super::trim`]).
pub(crate) fn reflect_seen<K>(
    what: &'static str,
    api: Api<K>,
    cfg: watcher::Config,
    changed: watch::Sender<u64>,
    seen: impl Fn(&'static str) + Send + 'static,
    trim: impl FnMut(&mut K) + Send + 'static,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let before = store.clone();
    let stream = watcher(api, cfg)
        .backoff(super::backoff::WatchBackoff::default())
        .inspect_ok(move |ev| {
            let kind = match ev {
                watcher::Event::InitApply(_) => "ADDED",
                watcher::Event::Apply(obj) => {
                    let known = before.get(&reflector::ObjectRef::from_obj(obj)).is_some();
                    if known {
                        "MODIFIED"
                    } else {
                        "ADDED"
                    }
                }
                watcher::Event::Delete(_) => "DELETED",
                watcher::Event::Init | watcher::Event::InitDone => return,
            };
            seen(kind);
        })
        .modify(trim)
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if failing {
                        info!(watch = what, "watch works again");
                        failing = false;
                    }
                    changed.send_modify(|n| *n += 1);
                }
                Err(e) => {
                    if !failing {
                        warn!(watch = what, error = %e, "watch failed; keeping the last known state and retrying with backoff");
                        failing = true;
                    }
                }
            }
        }
    });
    (store, task)
}

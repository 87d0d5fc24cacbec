//! [I/O] An in-process fake Kubernetes API server speaking real HTTP, for `vipd demo` (no cluster, no
//! root) and for tests that drive vipd through the real `kube` client. kubectl works against it.
//!
//! It serves Services (with `/status`), Nodes (with `/status`), Namespaces, Endpoints,
//! ConfigMaps, ServiceAccounts (with `/token`) and core Events in `v1`, EndpointSlices in
//! `discovery.k8s.io/v1`, Leases in `coordination.k8s.io/v1`, Events in `events.k8s.io/v1` and
//! Roles, ClusterRoles and their bindings in `rbac.authorization.k8s.io/v1`: get, list, create,
//! update, patch (merge, JSON, strategic-as-merge, server-side apply without field ownership),
//! delete, and watch with resourceVersions, bookmarks and 410 Expired after [`Store::compact`].
//! ServiceAccount tokens (`kubectl create token`, [`ApiServer::token`]) are authorized by RBAC
//! as kube-apiserver does; a request without credentials is the cluster admin (`auth`).
//!
//! # Layout
//! - `resources` [pure]: the table of served kinds.
//! - `routes` [pure]: URL and query string → what is asked for.
//! - `discovery` [pure]: `/version`, `/api`, `/apis`, resource lists, OpenAPI stand-ins.
//! - `store` [pure `Db`]: objects, the resourceVersion counter, the event history; `Store`
//!   shares it and wakes watches.
//! - `objects` [pure]: server-filled metadata, status-subresource split; `service` [pure]:
//!   Service defaults and cluster IP / node port allocation.
//! - `patch` [pure]: the four patch types; `selector` [pure]: label and field selectors.
//! - `proto` [pure]: the protobuf bodies `kubectl create service|configmap|namespace` send.
//! - `api` [pure]: the REST verbs on a `Db`; `table` [pure]: kubectl's server-side printing.
//! - `auth` [pure]: bearer tokens → ServiceAccounts, and the RBAC authorizer.
//! - `watch`: watch streams; `http` [I/O]: hyper glue; this file: the handle.
//!
//! Not a real API server: no TLS or client certificates, admission, field ownership,
//! protobuf responses, pagination (`limit` is ignored; every list is one page), or
//! aggregated discovery (clients fall back to the plain documents).

mod api;
mod auth;
mod discovery;
mod error;
mod event_view;
mod http;
mod meta;
mod objects;
mod patch;
mod proto;
mod resources;
mod routes;
mod selector;
mod service;
mod store;
mod table;
mod watch;

/// The request parsers, re-exported for the fuzz targets (`fuzz/`): selectors, query strings,
/// paths, patch bodies and their application, protobuf bodies. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::error::ApiError;
    pub use crate::patch::{apply, parse_body, PatchKind};
    pub use crate::proto::decode;
    pub use crate::routes::{route, Query, Route};
    pub use crate::selector::Selector;
}

pub use store::Store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Tunables of a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
}

/// Faults the server injects into every request until changed ([`ApiServer::set_faults`]): what
/// a loaded or failing kube-apiserver does to its clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Requests (watches included) answered `500 InternalError`, per thousand, at random.
    pub errors_per_mille: u32,
    /// Every request waits this long before it is served.
    pub delay: Duration,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// A running fake API server. Dropping the handle stops it too (as [`ApiServer::stop`] does,
/// without waiting).
pub struct ApiServer {
    addr: SocketAddr,
    store: Store,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
    ctx: Arc<http::Ctx>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ApiServer {
    /// Listens on addr (port 0 = any) with an empty store.
    pub async fn start(addr: SocketAddr) -> std::io::Result<ApiServer> {
        ApiServer::start_with_options(Store::new(), addr, ServerOptions::default()).await
    }

    /// Listens on addr serving an existing store (to restart a stopped server on the same port
    /// with its data).
    pub async fn start_with(store: Store, addr: SocketAddr) -> std::io::Result<ApiServer> {
        ApiServer::start_with_options(store, addr, ServerOptions::default()).await
    }

    /// As [`ApiServer::start_with`], with options.
    pub async fn start_with_options(
        store: Store,
        addr: SocketAddr,
        options: ServerOptions,
    ) -> std::io::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::watch::channel(false);
        let ctx = Arc::new(http::Ctx {
            store: store.clone(),
            addr,
            bookmark_interval: options.bookmark_interval,
            refused: std::sync::Mutex::new(Vec::new()),
            faults: std::sync::Mutex::new(Faults::default()),
        });
        let task = tokio::spawn(http::serve(listener, ctx.clone(), stop));
        tracing::debug!(%addr, "fake API server listening");
        Ok(ApiServer {
            addr,
            store,
            shutdown,
            task,
            ctx,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (a wildcard listen address is reached via loopback).
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            ip if !ip.is_unspecified() => ip,
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The data (a cheap clone: the same store).
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// A kubeconfig (YAML text) pointing at [`ApiServer::url`], context `vipd-demo`, no auth.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: vipd-demo
  cluster:
    server: {url}
contexts:
- name: vipd-demo
  context:
    cluster: vipd-demo
    user: vipd-demo
    namespace: default
current-context: vipd-demo
users:
- name: vipd-demo
  user: {{}}
preferences: {{}}
",
            url = self.url()
        )
    }

    /// As [`ApiServer::kubeconfig`], authenticating as the holder of `token` (see
    /// [`ApiServer::token`]).
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        self.kubeconfig()
            .replace("  user: {}\n", &format!("  user:\n    token: {token}\n"))
    }

    /// Creates the ServiceAccount `namespace/name` unless it exists, and mints a bearer token
    /// for it, as `kubectl create token name -n namespace` does.
    pub fn token(&self, namespace: &str, name: &str) -> String {
        self.store
            .write(|db| api::service_account_token(db, namespace, name))
    }

    /// Creates every object of a multi-document YAML manifest as the admin (`kubectl create -f`),
    /// all or nothing: e.g. the RBAC of `vipd manifest rbac` or kube-vip's. Returns `kind/name`
    /// of each object, or why none was created.
    pub fn create_manifest(&self, yaml: &str) -> Result<Vec<String>, String> {
        self.store
            .write(|db| api::create_manifest(db, yaml, std::time::SystemTime::now()))
            .map_err(|e| e.to_string())
    }

    /// Injects `faults` into every request from now on (`Faults::default()` ends them).
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.ctx.faults.lock() {
            *f = faults;
        }
    }

    /// Drops the history of changes so that every watch and list resumed from an older
    /// resourceVersion gets `410 Gone` (what an etcd compaction does).
    pub fn compact(&self) {
        self.store.compact();
    }

    /// Every request answered 401 or 403 so far, as `METHOD path: message`.
    pub fn refused(&self) -> Vec<String> {
        self.ctx
            .refused
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// A `kube::Client` for [`ApiServer::url`]: plain HTTP, no auth, default namespace
    /// `default`. Built directly on hyper because kube's own builder sets up TLS, which reads
    /// the system CA store and fails on hosts without one.
    pub fn client(&self) -> kube::Client {
        use tower_layer::Layer;
        let base = hyper::Uri::builder()
            .scheme("http")
            .authority(self.url().trim_start_matches("http://"))
            .path_and_query("/")
            .build()
            // A SocketAddr's text form is always a valid URI authority.
            .unwrap_or_else(|e| unreachable!("{}: {e}", self.url()));
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, kube::client::Body>(connector);
        let svc = kube::client::middleware::BaseUriLayer::new(base).layer(http);
        kube::Client::new(svc, "default")
    }

    /// Stops listening AND drops every open connection/watch at once (like an apiserver dying);
    /// returns the data.
    pub async fn stop(self) -> Store {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "fake API server task ended abnormally");
        }
        self.store
    }
}

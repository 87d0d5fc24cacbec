//! [I/O] Where the speaker's peers come from: the static settings (`bgp_peers`, …) and, with
//! `annotation`, this node's annotations, and with `vip_packet` the Equinix Metal API; the
//! annotations are watched so the peers follow every change without a
//! restart (kube-vip read them once). The sets are merged, the first entry for an address wins
//! (kube-vip#242 duplicated peers), and the speaker gets the whole set on every change: new peers
//! connect, removed ones get a Cease, changed ones re-establish, the rest are untouched.

use crate::bgp::speaker::Speaker;
use crate::netif::Interfaces;
use crate::netlink::{NetlinkError, PeerRoutes};
use crate::observe::Readiness;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::collections::BTreeSet;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use vipd_providers::{AnnotationSource, PeerAddress, PeerFeed, PeerRoute, PeerSnapshot, PeerSpec};

pub struct PeerSources {
    static_peers: Vec<PeerSpec>,
    /// Discovered peers: node annotations, the Equinix Metal API.
    feeds: Vec<PeerFeed>,
    /// `bgp_routerid` was set: it wins over a discovered router id.
    fixed_router_id: bool,
    tasks: Vec<JoinHandle<()>>,
    /// `Some` with `metal_peer_routes`: the host routes the providers ask for.
    routes: Option<PeerRoutes>,
    /// Not ready while a provider has not answered yet.
    readiness: Readiness,
}

impl PeerSources {
    /// Static peers only, until feeds are added.
    pub fn new(
        static_peers: Vec<PeerSpec>,
        fixed_router_id: bool,
        readiness: Readiness,
    ) -> PeerSources {
        PeerSources {
            static_peers,
            feeds: Vec::new(),
            fixed_router_id,
            tasks: Vec::new(),
            routes: None,
            readiness,
        }
    }

    /// Installs the host routes the providers give for their peers (`--metal-peer-routes`).
    pub fn install_routes(&mut self) -> Result<(), NetlinkError> {
        self.routes = Some(PeerRoutes::open()?);
        Ok(())
    }

    /// Hands the speaker the current peers: routes for new peers first, then the peer set
    /// (removed peers get their Cease over the old route), then stale routes go.
    pub async fn apply(&mut self, speaker: &mut Speaker) {
        let wanted = self.routes();
        if let Some(routes) = self.routes.as_mut() {
            for e in routes.add_missing(&wanted).await {
                warn!("{e}");
            }
        }
        speaker.set_peers(self.current()).await;
        if let Some(routes) = self.routes.as_mut() {
            for e in routes.remove_unwanted(&wanted).await {
                warn!("{e}");
            }
        }
        let pending: Vec<String> = self
            .feeds
            .iter()
            .filter_map(|f| match f.current() {
                PeerSnapshot::Pending { why } => Some(format!("{}: {why}", f.source())),
                _ => None,
            })
            .collect();
        if pending.is_empty() {
            self.readiness.ready("peers");
        } else {
            self.readiness.not_ready("peers", pending.join("; "));
        }
    }

    /// Removes the routes vipd installed (after the Cease, at exit).
    pub async fn remove_routes(&mut self) {
        if let Some(routes) = self.routes.as_mut() {
            for e in routes.remove_unwanted(&BTreeSet::new()).await {
                warn!("shutdown: {e}");
            }
        }
    }

    /// Also takes the annotations of Node `node` under `prefix`, watched through `client`.
    pub fn watch_annotations(&mut self, client: Client, node: &str, prefix: &str) {
        let (source, feed) = AnnotationSource::new(prefix, node);
        info!(
            node,
            prefix, "taking BGP peers from this node's annotations"
        );
        self.tasks
            .push(tokio::spawn(watch_node(client, node.to_owned(), source)));
        self.feeds.push(feed);
    }

    /// Also takes the peers of `feed`, fed by `task` (aborted with this value).
    pub fn add_feed(&mut self, feed: PeerFeed, task: JoinHandle<()>) {
        if let Some(why) = feed.current().problem() {
            info!(
                source = feed.source(),
                "taking BGP peers from a provider; until it answers: {why}"
            );
        } else {
            info!(source = feed.source(), "taking BGP peers from a provider");
        }
        self.feeds.push(feed);
        self.tasks.push(task);
    }

    /// The peers in force now. While a provider has given no answer yet, the others' (the log
    /// says what it lacks).
    pub fn current(&self) -> Vec<PeerSpec> {
        let discovered = self
            .feeds
            .iter()
            .filter_map(|f| f.current().peers().map(<[PeerSpec]>::to_vec))
            .flatten();
        merge(&self.static_peers, discovered, self.fixed_router_id)
    }

    /// Routes the providers say the peers need (`--metal-peer-routes`).
    pub fn routes(&self) -> BTreeSet<PeerRoute> {
        self.feeds
            .iter()
            .filter_map(|f| f.current().peer_set().map(|s| s.routes.clone()))
            .flatten()
            .collect()
    }

    /// Waits for any provider's change (then call [`apply`](Self::apply)). Never resolves
    /// without providers.
    pub async fn changed(&mut self) {
        if self.feeds.is_empty() {
            return std::future::pending().await;
        }
        let (snapshot, i, _) =
            futures::future::select_all(self.feeds.iter_mut().map(|f| Box::pin(f.changed()))).await;
        let source = self.feeds[i].source();
        match &snapshot {
            PeerSnapshot::Pending { why } => info!(source, "peers not known yet: {why}"),
            PeerSnapshot::Stale { why, .. } => {
                warn!(source, "{why}; keeping the last good peers")
            }
            PeerSnapshot::Ready(set) => info!(source, peers = set.peers.len(), "peers changed"),
        }
    }
}

impl Drop for PeerSources {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Static peers first, then discovered ones at addresses not taken yet (an address given by both
/// the annotations and the Metal API is one peer, kube-vip#242).
fn merge(
    static_peers: &[PeerSpec],
    discovered: impl Iterator<Item = PeerSpec>,
    fixed_router_id: bool,
) -> Vec<PeerSpec> {
    let mut seen: BTreeSet<PeerAddress> = BTreeSet::new();
    let mut out = Vec::new();
    for mut p in static_peers.iter().cloned().chain(discovered) {
        if fixed_router_id {
            p.router_id = None;
        }
        if seen.insert(p.address.clone()) {
            out.push(p);
        }
    }
    out
}

/// Follows Node `node` and feeds its annotations to `source`. Watch errors keep the last good
/// peers (the watcher retries with backoff).
async fn watch_node(client: Client, node: String, source: AnnotationSource) {
    let api: Api<Node> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let mut events =
        std::pin::pin!(watcher(api, cfg).backoff(crate::kube::backoff::WatchBackoff::default()));
    // A failed read keeps the last good prefixes: an empty list would make every peer
    // multihop, change every spec and re-establish every session.
    let mut connected = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                let annotations = n.metadata.annotations.unwrap_or_default();
                match Interfaces::read() {
                    Ok(i) => connected = i.prefixes(),
                    Err(e) => {
                        warn!("cannot read the interface prefixes ({e}); using the last ones")
                    }
                }
                source.update(&annotations, &connected);
            }
            Ok(watcher::Event::Delete(_)) => {
                source.node_unavailable(format!("Node {node:?} was deleted"));
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => {
                source.node_unavailable(format!("cannot watch Node {node:?}: {e}"));
            }
        }
    }
}

//! [I/O] Where the speaker's peers come from: the static settings (`bgp_peers`, …) and, with
//! `annotation`, this node's annotations, watched so the peers follow every change without a
//! restart (kube-vip read them once). The sets are merged, the first entry for an address wins
//! (kube-vip#242 duplicated peers), and the speaker gets the whole set on every change: new peers
//! connect, removed ones get a Cease, changed ones re-establish, the rest are untouched.

use crate::netif::Interfaces;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::collections::BTreeSet;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use vipd_providers::{AnnotationSource, PeerAddress, PeerFeed, PeerSnapshot, PeerSpec};

pub struct PeerSources {
    static_peers: Vec<PeerSpec>,
    annotations: Option<PeerFeed>,
    /// `bgp_routerid` was set: it wins over an annotated router id.
    fixed_router_id: bool,
    task: Option<JoinHandle<()>>,
}

impl PeerSources {
    /// Static peers only.
    pub fn fixed(static_peers: Vec<PeerSpec>) -> PeerSources {
        PeerSources {
            static_peers,
            annotations: None,
            fixed_router_id: true,
            task: None,
        }
    }

    /// Static peers plus the annotations of Node `node` under `prefix`, watched through `client`.
    pub fn with_annotations(
        static_peers: Vec<PeerSpec>,
        client: Client,
        node: &str,
        prefix: &str,
        fixed_router_id: bool,
    ) -> PeerSources {
        let (source, feed) = AnnotationSource::new(prefix, node);
        info!(
            node,
            prefix, "taking BGP peers from this node's annotations"
        );
        let task = tokio::spawn(watch_node(client, node.to_owned(), source));
        PeerSources {
            static_peers,
            annotations: Some(feed),
            fixed_router_id,
            task: Some(task),
        }
    }

    /// The peers in force now. While the annotations have given no answer yet, only the static
    /// peers (the log says what the annotations lack).
    pub fn current(&self) -> Vec<PeerSpec> {
        let annotated = self
            .annotations
            .as_ref()
            .map(|f| f.current())
            .and_then(|s| s.peers().map(<[PeerSpec]>::to_vec))
            .unwrap_or_default();
        merge(&self.static_peers, annotated, self.fixed_router_id)
    }

    /// Waits for a change of the annotated peers and returns the new merged set. Never resolves
    /// without an annotation source.
    pub async fn changed(&mut self) -> Vec<PeerSpec> {
        match self.annotations.as_mut() {
            Some(feed) => {
                let snapshot = feed.changed().await;
                match &snapshot {
                    PeerSnapshot::Pending { why } => info!("annotated peers not known yet: {why}"),
                    PeerSnapshot::Stale { why, .. } => {
                        warn!("annotated peers: {why}; keeping the last good peers")
                    }
                    PeerSnapshot::Ready(set) => {
                        info!(peers = set.peers.len(), "annotated peers changed")
                    }
                }
                self.current()
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for PeerSources {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Static peers first, then annotated ones at addresses not taken yet.
fn merge(
    static_peers: &[PeerSpec],
    annotated: Vec<PeerSpec>,
    fixed_router_id: bool,
) -> Vec<PeerSpec> {
    let mut seen: BTreeSet<PeerAddress> = BTreeSet::new();
    let mut out = Vec::new();
    for mut p in static_peers.iter().cloned().chain(annotated) {
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
    let mut events = std::pin::pin!(watcher(api, cfg).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                let annotations = n.metadata.annotations.unwrap_or_default();
                let connected = Interfaces::read().map(|i| i.prefixes()).unwrap_or_default();
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

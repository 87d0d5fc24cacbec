//! The static and node-annotation providers behind the one [`PeerFeed`] interface. (The Equinix
//! Metal provider lives in [`crate::equinix::source`].)
//!
//! Neither does I/O: static peers are known at start, and the agent already watches its own Node,
//! so it calls [`AnnotationSource::update`] with the annotations on every change.

use crate::annotations::{apply_connected_multihop, peers_from_annotations, AnnotationPeers};
use crate::feed::{PeerFeed, PeerPublisher, PeerSet, PeerSnapshot};
use crate::peer::PeerSpec;
use ipnet::IpNet;
use std::collections::BTreeMap;

/// Static peers (`bgp_peers`, `bgp_peeraddress`…): Ready at once, never changing. (A SIGHUP
/// reload makes a new feed.)
pub fn static_feed(peers: Vec<PeerSpec>) -> PeerFeed {
    PeerFeed::fixed("static settings", peers)
}

/// Peers from this node's annotations under one prefix, following every change.
#[derive(Debug)]
pub struct AnnotationSource {
    prefix: String,
    publisher: PeerPublisher,
}

impl AnnotationSource {
    /// The source and its feed; Pending until the first [`update`](Self::update).
    pub fn new(prefix: &str, node_name: &str) -> (AnnotationSource, PeerFeed) {
        let (publisher, feed) = PeerFeed::channel(
            "node annotations",
            PeerSnapshot::Pending {
                why: format!("waiting for Node {node_name:?} and its {prefix}/ annotations"),
            },
        );
        (
            AnnotationSource {
                prefix: prefix.to_owned(),
                publisher,
            },
            feed,
        )
    }

    /// Reads `annotations` (the Node's, after any change) and publishes the result. Peers that
    /// are not on one of the `connected` prefixes get multihop. A missing key or a bad value keeps
    /// the last good peers (Stale) and says why; before any good answer it stays Pending.
    /// Returns the snapshot now in force and whether it changed (log it when it did).
    pub fn update(
        &self,
        annotations: &BTreeMap<String, String>,
        connected: &[IpNet],
    ) -> (PeerSnapshot, bool) {
        let changed = match peers_from_annotations(&self.prefix, annotations) {
            Ok(AnnotationPeers::Found { mut peers, .. }) => {
                apply_connected_multihop(&mut peers, connected);
                self.publisher.ready(PeerSet::new(peers))
            }
            Ok(AnnotationPeers::Waiting(w)) => self.publisher.problem(w.to_string()),
            Err(e) => self.publisher.problem(e.to_string()),
        };
        (self.publisher.current(), changed)
    }

    /// The Node itself is gone or cannot be read (`why`); the last good peers stay in force.
    pub fn node_unavailable(&self, why: String) -> (PeerSnapshot, bool) {
        let changed = self.publisher.problem(why);
        (self.publisher.current(), changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ccm(peer1: &str) -> BTreeMap<String, String> {
        [
            ("metal.equinix.com/bgp-peers-0-node-asn", "65000"),
            ("metal.equinix.com/bgp-peers-0-peer-asn", "65530"),
            ("metal.equinix.com/bgp-peers-0-peer-ip", "169.254.255.1"),
            ("metal.equinix.com/bgp-peers-0-src-ip", "10.66.29.1"),
            ("metal.equinix.com/bgp-peers-1-node-asn", "65000"),
            ("metal.equinix.com/bgp-peers-1-peer-asn", "65530"),
            ("metal.equinix.com/bgp-peers-1-peer-ip", peer1),
            ("metal.equinix.com/bgp-peers-1-src-ip", "10.66.29.1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    #[test]
    fn static_peers_are_ready_at_once() {
        let peers = crate::parse_bgp_peers("10.0.0.1:65000").unwrap();
        let feed = static_feed(peers.clone());
        assert_eq!(feed.current(), PeerSnapshot::Ready(PeerSet::new(peers)));
    }

    #[test]
    fn annotations_are_pending_then_ready_then_follow_edits_and_keep_the_last_set_on_bad_input() {
        let (src, feed) = AnnotationSource::new("metal.equinix.com", "worker-1");
        assert_eq!(
            feed.current().problem(),
            Some("waiting for Node \"worker-1\" and its metal.equinix.com/ annotations")
        );

        let (snap, changed) = src.update(&BTreeMap::new(), &[]);
        assert!(changed);
        assert_eq!(
            snap,
            PeerSnapshot::Pending {
                why: "node annotation metal.equinix.com/bgp-peers-0-peer-ip is missing".into()
            }
        );

        let connected: Vec<IpNet> = vec!["10.66.29.1/31".parse().unwrap()];
        let (snap, changed) = src.update(&ccm("169.254.255.2"), &connected);
        assert!(changed);
        let peers = snap.peers().unwrap();
        assert_eq!(peers.len(), 2);
        assert!(
            peers.iter().all(|p| p.multihop),
            "169.254.255.x is not connected"
        );

        // The same annotations again: nothing to tell the agent.
        assert!(!src.update(&ccm("169.254.255.2"), &connected).1);

        // An edit moves the second peer.
        let (snap, _) = src.update(&ccm("169.254.255.3"), &connected);
        assert_eq!(
            snap.peers().unwrap()[1].address.to_string(),
            "169.254.255.3"
        );
        let good = snap.peer_set().unwrap().clone();

        // A bad value keeps the last good set.
        let (snap, changed) = src.update(&ccm("not-an-ip"), &connected);
        assert!(changed);
        assert_eq!(snap.peer_set(), Some(&good));
        assert!(snap.problem().unwrap().contains("\"not-an-ip\""));
        assert_eq!(feed.current(), snap);

        let (snap, _) = src.node_unavailable("Node \"worker-1\" was deleted".into());
        assert_eq!(snap.peer_set(), Some(&good));
    }
}

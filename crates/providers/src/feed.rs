//! The one interface between every peer provider and the agent: a watched [`PeerSnapshot`].
//!
//! A provider owns a [`PeerPublisher`]; the agent holds the matching [`PeerFeed`]. Reading the
//! feed never blocks: [`PeerFeed::current`] answers at once, so the agent starts immediately and,
//! while the snapshot is [`PeerSnapshot::Pending`], reports "not ready" with the provider's reason
//! (for example "node annotation metal.equinix.com/bgp-peers-0-peer-ip is missing").
//! [`PeerFeed::changed`] resolves with each later snapshot and is cancel-safe, so it sits in the
//! agent's `select!` loop next to its other event sources.
//!
//! Once a provider has produced a good peer set, later failures (a malformed annotation, an API
//! outage) do not take it away: the snapshot becomes [`PeerSnapshot::Stale`], which still carries
//! the last good set. Bad input never withdraws healthy sessions.

use crate::peer::PeerSpec;
use std::net::IpAddr;
use tokio::sync::watch;

/// A route the agent should install so that a peer is reachable (the Equinix Metal routers at
/// `169.254.255.{1,2}` are reached through the private gateway; kube-vip#256). Providers only
/// describe it; whether it is installed is the agent's choice (`--metal-peer-routes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerRoute {
    /// The peer address; the route is a host route (/32 or /128).
    pub destination: IpAddr,
    pub gateway: IpAddr,
    /// Preferred source address of the route (`src`), the address BGP binds to.
    pub source: Option<IpAddr>,
}

/// What a provider knows right now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerSet {
    /// Ordered as the provider found them (annotation index, sorted neighbour addresses).
    pub peers: Vec<PeerSpec>,
    pub routes: Vec<PeerRoute>,
}

impl PeerSet {
    pub fn new(peers: Vec<PeerSpec>) -> Self {
        PeerSet {
            peers,
            routes: Vec::new(),
        }
    }
}

/// The state of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSnapshot {
    /// No usable answer yet: the agent is not ready and says `why`.
    Pending { why: String },
    /// The current peer set.
    Ready(PeerSet),
    /// The provider cannot refresh (`why`); `last` is the last good set and stays in force.
    Stale { last: PeerSet, why: String },
}

impl PeerSnapshot {
    /// The peer set in force, if any (Ready or Stale).
    pub fn peer_set(&self) -> Option<&PeerSet> {
        match self {
            PeerSnapshot::Pending { .. } => None,
            PeerSnapshot::Ready(set) | PeerSnapshot::Stale { last: set, .. } => Some(set),
        }
    }

    /// The peers in force, if any (Ready or Stale).
    pub fn peers(&self) -> Option<&[PeerSpec]> {
        self.peer_set().map(|s| s.peers.as_slice())
    }

    /// Whether the agent may consider peer discovery done (Ready or Stale).
    pub fn is_ready(&self) -> bool {
        self.peer_set().is_some()
    }

    /// The provider's current complaint (Pending or Stale), for the readiness endpoint and logs.
    pub fn problem(&self) -> Option<&str> {
        match self {
            PeerSnapshot::Ready(_) => None,
            PeerSnapshot::Pending { why } | PeerSnapshot::Stale { why, .. } => Some(why),
        }
    }
}

/// The agent's end: the current snapshot and every later change.
#[derive(Debug, Clone)]
pub struct PeerFeed {
    rx: watch::Receiver<PeerSnapshot>,
    source: &'static str,
}

impl PeerFeed {
    /// A feed and its publisher, starting at `initial`. `source` names the provider in logs
    /// and on the readiness endpoint ("static", "node annotations", "Equinix Metal API").
    pub fn channel(source: &'static str, initial: PeerSnapshot) -> (PeerPublisher, PeerFeed) {
        let (tx, rx) = watch::channel(initial);
        (PeerPublisher { tx }, PeerFeed { rx, source })
    }

    /// A feed that is Ready with `peers` and never changes (static `bgp_peers` settings).
    pub fn fixed(source: &'static str, peers: Vec<PeerSpec>) -> PeerFeed {
        let (_publisher, feed) =
            PeerFeed::channel(source, PeerSnapshot::Ready(PeerSet::new(peers)));
        feed
    }

    /// The provider's name, as given to [`PeerFeed::channel`].
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The snapshot now. Never waits.
    pub fn current(&self) -> PeerSnapshot {
        self.rx.borrow().clone()
    }

    /// Waits for the next snapshot that differs from the last one seen and returns it.
    /// Cancel-safe. When the provider has gone away (a fixed feed, or a finished task) it
    /// never resolves: the last snapshot simply stays in force.
    pub async fn changed(&mut self) -> PeerSnapshot {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.rx.borrow_and_update().clone()
    }
}

/// The provider's end. Publishing an equal snapshot again wakes nobody.
#[derive(Debug)]
pub struct PeerPublisher {
    tx: watch::Sender<PeerSnapshot>,
}

impl PeerPublisher {
    /// Publishes `snapshot`; returns whether it differed from the previous one.
    pub fn publish(&self, snapshot: PeerSnapshot) -> bool {
        self.tx.send_if_modified(|cur| {
            if *cur == snapshot {
                false
            } else {
                *cur = snapshot;
                true
            }
        })
    }

    /// A fresh good answer.
    pub fn ready(&self, set: PeerSet) -> bool {
        self.publish(PeerSnapshot::Ready(set))
    }

    /// A failure: Pending if there never was a good set, else Stale keeping the last one.
    pub fn problem(&self, why: String) -> bool {
        let next = match self.current() {
            PeerSnapshot::Pending { .. } => PeerSnapshot::Pending { why },
            PeerSnapshot::Ready(last) | PeerSnapshot::Stale { last, .. } => {
                PeerSnapshot::Stale { last, why }
            }
        };
        self.publish(next)
    }

    /// What was published last.
    pub fn current(&self) -> PeerSnapshot {
        self.tx.borrow().clone()
    }

    /// Whether every feed has been dropped (the agent no longer listens).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when every feed has been dropped.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer(last: u8) -> PeerSpec {
        PeerSpec::new(IpAddr::from([10, 0, 0, last]), 65000)
    }

    #[test]
    fn a_problem_before_any_answer_is_pending_and_after_one_keeps_the_last_set() {
        let (publ, feed) = PeerFeed::channel(
            "test",
            PeerSnapshot::Pending {
                why: "start".into(),
            },
        );
        assert!(publ.problem("no node yet".into()));
        assert_eq!(
            feed.current(),
            PeerSnapshot::Pending {
                why: "no node yet".into()
            }
        );
        assert!(!feed.current().is_ready());

        let set = PeerSet::new(vec![peer(1)]);
        assert!(publ.ready(set.clone()));
        assert!(publ.problem("API down".into()));
        let snap = feed.current();
        assert_eq!(
            snap,
            PeerSnapshot::Stale {
                last: set.clone(),
                why: "API down".into()
            }
        );
        assert!(snap.is_ready());
        assert_eq!(snap.peers(), Some(&[peer(1)][..]));
        assert_eq!(snap.problem(), Some("API down"));
    }

    #[test]
    fn publishing_the_same_snapshot_again_is_not_a_change() {
        let (publ, _feed) = PeerFeed::channel("test", PeerSnapshot::Ready(PeerSet::default()));
        assert!(!publ.ready(PeerSet::default()));
        assert!(publ.ready(PeerSet::new(vec![peer(2)])));
    }

    #[tokio::test]
    async fn changed_yields_each_new_snapshot() {
        let (publ, mut feed) = PeerFeed::channel("test", PeerSnapshot::Pending { why: "x".into() });
        publ.ready(PeerSet::new(vec![peer(3)]));
        assert_eq!(feed.changed().await.peers(), Some(&[peer(3)][..]));
        assert_eq!(feed.source(), "test");
    }

    #[tokio::test]
    async fn a_fixed_feed_is_ready_and_never_changes() {
        let mut feed = PeerFeed::fixed("static", vec![peer(4)]);
        assert_eq!(feed.current().peers(), Some(&[peer(4)][..]));
        let waited = tokio::time::timeout(Duration::from_millis(20), feed.changed()).await;
        assert!(waited.is_err(), "a fixed feed must never report a change");
    }

    #[tokio::test]
    async fn the_publisher_sees_when_the_agent_stops_listening() {
        let (publ, feed) = PeerFeed::channel("test", PeerSnapshot::Pending { why: "x".into() });
        assert!(!publ.is_closed());
        drop(feed);
        publ.closed().await;
        assert!(publ.is_closed());
    }
}

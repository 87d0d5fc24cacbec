//! Peer discovery for vipd: who the BGP peers are, and nothing about what is announced to them.
//!
//! Every provider yields [`PeerSpec`]s through one interface, a [`PeerFeed`] (see [`feed`]):
//! the current [`PeerSnapshot`] at once (never blocking the agent's start) and every later change.
//! The agent hands the peers to its BGP speaker, which connects, re-connects and withdraws;
//! providers never touch a socket of the speaker.
//!
//! Layout:
//! - [`peer`]: the peer type; [`static_peers`]: kube-vip's `bgp_peers` syntax [pure];
//! - [`feed`]: [`PeerFeed`] / [`PeerPublisher`] / [`PeerSnapshot`], the one interface;
//! - [`annotations`]: peers from a Node's annotations [pure]; [`AnnotationSource`] publishes them;
//! - [`equinix`]: the legacy Equinix Metal API provider: `cloud-sa.json` [pure], the JSON model
//!   [pure], the HTTP client and the periodic refresh task [I/O].

pub mod annotations;
pub mod equinix;
pub mod feed;
pub mod peer;
pub mod sources;
pub mod static_peers;

pub use annotations::{
    apply_connected_multihop, needs_multihop, peers_from_annotations, AnnotationError,
    AnnotationPeers, Generation, Waiting,
};
pub use feed::{PeerFeed, PeerPublisher, PeerRoute, PeerSet, PeerSnapshot};
pub use peer::{BfdSpec, MpBgpNextHop, MpBgpSpec, Password, PeerAddress, PeerSpec};
pub use sources::{static_feed, AnnotationSource};
pub use static_peers::{parse_bgp_peers, PeerParseError};

/// Any provider's error, for callers that want one type.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Static(#[from] PeerParseError),
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    #[error(transparent)]
    CloudConfig(#[from] equinix::CloudConfigError),
    #[error(transparent)]
    Metal(#[from] equinix::MetalError),
}

/// An error and each cause its message does not already hold ("error sending request: …:
/// connection refused", and "No such file (os error 2)" once, not twice).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        cur = s.source();
    }
    text
}

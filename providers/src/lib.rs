//! Peer discovery for vipd: who the BGP peers are, and nothing about what is announced to them.
//!
//! Every provider (static settings now; node annotations and the Equinix Metal API later) yields
//! [`PeerSpec`]s. The agent hands them to its BGP speaker, which connects, re-connects and
//! withdraws; providers never touch a socket of the speaker.
//!
//! Layout: [`peer`] holds the peer type, [`static_peers`] parses kube-vip's `bgp_peers` syntax.

pub mod peer;
pub mod static_peers;

pub use peer::{BfdSpec, MpBgpNextHop, MpBgpSpec, Password, PeerAddress, PeerSpec};
pub use static_peers::{parse_bgp_peers, PeerParseError};

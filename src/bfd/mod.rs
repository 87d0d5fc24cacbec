//! [pure] Bidirectional Forwarding Detection (RFC 5880 asynchronous mode, RFC 5881 single hop,
//! RFC 5883 multihop) for vipd's BGP sessions.
//!
//! - [`packet`], [`session`]: pure — the Control packet and one session's state machine.
//! - [`socket`], [`driver`]: I/O — the UDP sockets (shared receivers with the TTL check, a
//!   sender per session) and the task that runs one session.
//!
//! A BGP peer task runs the session of its peer (RFC 5882: a BFD Down tears the BGP session
//! down). Imports nothing of the agent but [`crate::sys`].

pub mod driver;
pub mod packet;
pub mod session;
pub mod socket;

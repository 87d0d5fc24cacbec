//! [pure] The embedded BGP speaker.
//!
//! - [`types`], [`wire`], [`inbound`], [`notification`], [`open`], [`adj_out`], [`fsm`], [`bfd_gate`]: pure —
//!   message building, the checks on what peers send (RFC 4271 §6, RFC 7606), NOTIFICATIONs,
//!   the OPEN exchange, route diffs, the per-peer session state machine, and when a session
//!   with BFD may start.
//! - [`driver`], [`speaker`]: I/O — one task per peer running a [`fsm::Session`] over TCP, and
//!   the handle the agent uses (`set_peers`, `set_routes`, `shutdown`).
//!
//! Owns the sessions and the routes handed to them. May import only [`crate::netif`],
//! [`crate::sys`] (TCP-MD5) and [`crate::bfd`] (each peer's BFD session); the agent and the
//! owner loop import it.

pub mod adj_out;
pub mod bfd_gate;
pub mod driver;
pub mod fsm;
pub mod inbound;
pub mod notification;
pub mod open;
pub mod speaker;
pub mod types;
pub mod wire;

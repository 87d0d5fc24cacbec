//! [I/O] The Kubernetes side: the client, the watched view of the cluster, and what vipd writes
//! back (Service status and Events). Decisions are made in [`crate::decide`], never here.
//!
//! Plumbing: may import [`crate::decide`] (keys, ingress), [`crate::report`] (Event reasons),
//! [`crate::observe`] and [`crate::event_limit`]; never the owner loop or a feature folder.

pub mod backoff;
pub mod client;
pub mod status;
pub mod trim;
pub mod view;
pub mod write;

//! [I/O] The Kubernetes side: the client, the watched view of the cluster, and what vipd writes
//! back (Service status and Events). Decisions are made in [`crate::decide`], never here.

pub mod client;
pub mod status;
pub mod view;

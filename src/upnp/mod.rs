//! [pure] UPnP port forwarding of annotated Services (`enable_upnp`, `kube-vip.io/forwardUPNP`).
//!
//! - [`plan`] [pure]: which mappings should exist, lease parsing, the add/remove/refresh steps.
//! - [`gateway`] [I/O]: applies them to the Internet gateway with igd-next and keeps them
//!   refreshed; deletes them when they go and on shutdown.
//! - [`services`] [I/O]: the services-mode side: requests from the decisions, Events.
//!
//! Owns the port mappings. May import [`crate::decide`], [`crate::report`] and [`crate::kube`]
//! (Events); the owner loop drives it.

pub mod gateway;
pub mod plan;
pub mod services;

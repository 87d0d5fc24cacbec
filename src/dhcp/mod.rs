//! [pure] DHCP-acquired VIPs (`loadBalancerIP: 0.0.0.0`).
//!
//! - [`client`] [pure]: the RFC 2131 client state machine (messages by `dhcproto`).
//! - [`devconf`]: per-interface IPv4 settings (`rp_filter`, `arp_ignore`, …) by netlink.
//! - [`naming`] [pure]: the macvlan's name, its MAC, and the alias naming its owner.
//! - [`macvlan`] [I/O]: the per-Service macvlan a lease is held on, created and removed.
//! - [`edge`] [I/O]: drives a [`client::Client`] over a UDP socket bound to the macvlan and keeps
//!   the leased address on it.
//! - [`plan`] [pure]: which Services this node leases for, their identity from annotations, and
//!   how a lease joins the decision.
//! - [`services`] [I/O]: the DHCP VIPs of services mode, driven by the owner loop.
//!
//! Owns the DHCP clients and their macvlans. May import [`crate::decide`], [`crate::model`],
//! [`crate::netlink`], [`crate::report`] and [`crate::kube`] (annotation writes, Events); the
//! owner loop drives it.

pub mod client;
pub mod devconf;
pub mod edge;
pub mod macvlan;
pub mod naming;
pub mod plan;
pub mod services;

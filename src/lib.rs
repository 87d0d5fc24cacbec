//! [pure] vipd: routable addresses for Kubernetes `type: LoadBalancer` Services on bare metal.
//!
//! # Layout
//! - [`cli`] reads kube-vip's flags and environment variables; [`config`] (pure) checks them.
//! - [`decide`] (pure) says what this node should announce: Services and EndpointSlices in,
//!   VIPs with typed skip reasons and problems out.
//! - [`ipam`] (pure) allocates addresses from the kube-vip-cloud-provider ConfigMap's pools.
//! - [`agent`] starts the BGP speaker with its peers and runs [`services`] mode (the owner
//!   loop: watch, decide, announce, report) or the static VIPs.
//! - [`kube`] (I/O): the client, the watched view, status and Events writes.
//! - [`peers`] (I/O): the peer set, static and from this node's annotations (watched).
//! - [`bgp`]: the embedded speaker — pure protocol core (`wire`, `open`, `adj_out`, `fsm`) and
//!   its I/O edge (`driver`, `speaker`).
//! - [`dhcp`]: DHCP-acquired VIPs — the pure RFC 2131 client and its macvlan/socket edge.
//! - [`netlink`] puts VIP addresses on an interface (marked as vipd's); [`netif`] reads local
//!   interface addresses; [`sys`] holds the only `unsafe` (TCP-MD5).
//! - [`upnp`]: UPnP port mappings for annotated Services (pure plan, igd-next edge).
//! - [`manifest`] (pure) prints the RBAC, DaemonSet and static Pod that install vipd.
//! - [`report`] (pure) is what `vipd status` shows; [`observe`] collects it and the metrics;
//!   [`http`] serves `/healthz`, `/readyz`, `/metrics` and `/status`.
//! - [`demo`] runs `vipd demo`.
//!
//! Peer discovery lives in the `vipd-providers` crate.

pub mod agent;
pub mod bgp;
pub mod cli;
pub mod config;
pub mod decide;
pub mod demo;
pub mod dhcp;
pub mod election;
pub mod error;
pub mod event_limit;
pub mod http;
pub mod ipam;
pub mod kube;
pub mod l2;
pub mod manifest;
pub mod model;
pub mod netif;
pub mod netlink;
pub mod observe;
pub mod owner;
pub mod peers;
pub mod plan;
pub mod report;
pub mod sys;
pub mod upnp;
pub mod wake;

pub use agent::run;

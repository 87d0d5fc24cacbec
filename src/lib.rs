//! [pure] vipd: routable addresses for Kubernetes `type: LoadBalancer` Services on bare metal.
//!
//! # The pipeline
//! ```text
//!   kube::view ──► decide ──► plan ──► owner (one loop) ──► executor of the mode
//!   (Services,     (pure:     (pure:    wake-ups, fence,     bgp: speaker routes, addresses
//!    slices,        what       what to   elections, DHCP,     arp: claims on links
//!    Node)          this node  do now,   UPnP, Events,        static_vips: speaker routes
//!                   may serve, in which  status                    │
//!   (or the static  typed      order)      ▲                       │
//!    VIP file)      reasons)               └── results come back as wake-ups; plan again
//! ```
//! Routing-table mode runs the bgp executor with kernel table routes in place of the speaker.
//! Protocol cores are sans-I/O state machines fed events (`bgp::fsm`, `election`,
//! `dhcp::client`, `l2::announcer`); their drivers hold the sockets and timers.
//!
//! # Layout, top of the stack first (a module imports only modules below it)
//! - `main.rs`, [`cli`], [`agent`]: read kube-vip's flags and environment
//!   variables, start the speaker and peers, run the [`owner`] loop with the mode's executor.
//! - [`owner`] (I/O): the one owner loop and its executors (BGP, ARP, static VIPs).
//! - [`plan`] (pure): ordered steps from what is wanted and what is held.
//! - [`decide`] (pure): Services and EndpointSlices in, VIPs with typed reasons and problems out.
//! - Feature folders, each a pure core and its driver: [`bgp`], [`election`], [`ipam`],
//!   [`l2`], [`dhcp`], [`upnp`], [`table`] (routing-table mode's kernel routes),
//!   [`control_plane`] (the API server's VIP and its health check).
//! - Plumbing: [`kube`] (client, watched view, status and Events writes), [`peers`] (the peer
//!   set, static and watched), [`netlink`] (VIP addresses, marked as vipd's), [`netif`] (local
//!   addresses), [`vip_file`] (the VIP file, read whole and settled), [`sys`] (the only
//!   `unsafe`), [`config`] (pure: checked settings), [`model`]
//!   (pure: every `kube-vip.io/*` name once).
//! - [`note`] (pure) bounds outside text before it becomes an Event note or a log line.
//! - [`report`] (pure) is what `vipd status` shows; [`observe`] collects it and the metrics;
//!   [`http`] serves `/healthz`, `/readyz`, `/metrics` and `/status`.
//! - [`manifest`] (pure) prints the RBAC, DaemonSet and static Pod; [`demo`] runs `vipd demo`.
//!
//! Peer discovery lives in the `vipd-providers` crate, the in-process API server in
//! `vipd-fake-apiserver`.

pub mod agent;
pub mod bfd;
pub mod bgp;
pub mod cli;
pub mod config;
pub mod control_plane;
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
pub mod migrate;
pub mod model;
pub mod netif;
pub mod netlink;
pub mod note;
pub mod observe;
pub mod owner;
pub mod peers;
pub mod plan;
pub mod process_metrics;
pub mod report;
pub mod sys;
pub mod table;
pub mod upnp;
pub mod vip_file;
pub mod wake;

pub use agent::run;

//! [pure] What to do now, given what [`crate::decide`] says this node may serve: the step
//! between deciding and acting, tested by exact step lists.
//!
//! - [`gate`]: which node alone serves what one node alone may hold (DHCP leases, UPnP
//!   mappings): the elected node of the Service's Lease.
//! - [`bgp`]: BGP mode's addresses and routes, ordered so no router sends traffic here for an
//!   address this node does not hold.
//! - [`arp`]: ARP/NDP mode's Leases and claims: who stands, what is held on which interface,
//!   addresses released before any Lease is.
//! - [`shutdown`]: the order every mode stops in.
//!
//! Owns the order of effects. Pure: may import [`crate::decide`], [`crate::model`],
//! [`crate::config`], [`crate::election`]'s keys and [`crate::dhcp::plan`]; only the owner
//! loop imports it.

pub mod arp;
pub mod bgp;
pub mod gate;
pub mod shutdown;

//! [pure] ARP/NDP mode (`vip_arp`): one elected node per VIP puts the address on its interface and
//! tells the link.
//!
//! - [`frame`] [pure]: the ARP and NDP frames, built and read.
//! - [`announcer`] [pure]: RFC 5227 probe, claim, announcements for one VIP.
//! - [`link`] [I/O]: the raw socket and the task that runs one announcer.
//! - [`vlan`] [I/O]: the VLAN sub-interfaces Services ask for (`kube-vip.io/serviceVLAN`).
//!
//! The owner loop's ARP executor ([`crate::owner::arp`]) runs one [`link`] task per VIP held.
//!
//! May import only [`crate::netlink`], [`crate::sys`] and [`crate::model`] (the VLAN's name).

pub mod announcer;
pub mod frame;
pub mod link;
pub mod vlan;

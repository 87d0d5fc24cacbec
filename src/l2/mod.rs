//! [pure] ARP/NDP mode (`vip_arp`): one elected node per VIP puts the address on its interface and
//! tells the link.
//!
//! - [`frame`] [pure]: the ARP and NDP frames, built and read.
//! - [`announcer`] [pure]: RFC 5227 probe, claim, announcements for one VIP.
//! - [`link`] [I/O]: the raw socket and the task that runs one announcer.
//!
//! The owner loop's ARP executor ([`crate::owner::arp`]) runs one [`link`] task per VIP held.
//!
//! May import only [`crate::netlink`] and [`crate::sys`].

pub mod announcer;
pub mod frame;
pub mod link;

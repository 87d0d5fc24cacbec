//! ARP/NDP mode (`vip_arp`): one elected node per VIP puts the address on its interface and
//! tells the link.
//!
//! - [`frame`] [pure]: the ARP and NDP frames, built and read.
//! - [`announcer`] [pure]: RFC 5227 probe, claim, announcements for one VIP.

pub mod announcer;
pub mod frame;

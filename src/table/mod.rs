//! [pure] Routing-table mode (`vip_routingtable`): each VIP this node serves becomes a route in a
//! kernel routing table (`vip_routingtableid`, 198) with vipd's routing protocol number
//! (`vip_routingprotocol`, 248), for a routing daemon already on the host (BIRD's `kernel`
//! protocol, FRR's `redistribute table`) to announce. It runs from the same owner loop, decide
//! and gates as BGP mode; only the announcer differs.
//!
//! - [`route`] (pure): the route message for a VIP, and which routes in the kernel are vipd's.
//! - [`kernel`] (I/O): the routes in the table, by rtnetlink: adopted at start, kept equal to
//!   the wanted set.
//!
//! May import nothing of the agent but [`crate::netlink`]'s error type.

pub mod kernel;
pub mod route;

//! [pure] Units of the BGP speaker: AS numbers, router ids, hold times, families and the route
//! set the speaker is told to announce.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// An autonomous system number (4-octet, RFC 6793).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Asn(pub u32);

impl Asn {
    /// AS_TRANS (RFC 6793 §9): stands in for a 4-octet AS in 2-octet fields.
    pub const TRANS: u16 = 23456;

    /// The value for the 2-octet "My Autonomous System" field of an OPEN.
    pub fn two_octet(self) -> u16 {
        u16::try_from(self.0).unwrap_or(Self::TRANS)
    }
}

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AS{}", self.0)
    }
}

/// The BGP Identifier (RFC 4271 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouterId(pub Ipv4Addr);

/// A hold time as sent in an OPEN: 0 (no keepalives) or at least 3 seconds (RFC 4271 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HoldTime(u16);

impl HoldTime {
    /// `None` for 1 and 2, which RFC 4271 forbids.
    pub fn new(secs: u16) -> Option<Self> {
        (secs == 0 || secs >= 3).then_some(HoldTime(secs))
    }
    pub fn secs(self) -> u16 {
        self.0
    }
    pub fn duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

/// An address family the speaker announces (unicast SAFI only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
    pub fn of_prefix(p: &IpNet) -> Family {
        Family::of(p.addr())
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4-unicast",
            Family::Ipv6 => "ipv6-unicast",
        })
    }
}

/// Per-route attributes beyond those every route gets (ORIGIN, AS_PATH, NEXT_HOP).
///
/// Routes with equal attributes share UPDATEs, and a change of attributes re-announces the
/// route (the packing and diffing group by this type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteAttrs {
    /// RFC 8326: the GRACEFUL_SHUTDOWN community (65535:0), and LOCAL_PREF 0 to iBGP peers, so
    /// routers prefer any other path before this node withdraws.
    pub graceful_shutdown: bool,
}

/// The whole set of routes the speaker should announce to every peer, ordered so UPDATEs
/// and diffs are deterministic.
pub type RouteSet = BTreeMap<IpNet, RouteAttrs>;

/// A host route (/32, /128) with default attributes for each VIP.
pub fn host_routes(vips: &[IpAddr]) -> RouteSet {
    host_routes_with(vips, &RouteAttrs::default())
}

/// A host route (/32, /128) with `attrs` for each VIP.
pub fn host_routes_with(vips: &[IpAddr], attrs: &RouteAttrs) -> RouteSet {
    vips.iter()
        .map(|ip| (host_prefix(*ip), attrs.clone()))
        .collect()
}

/// A host route for a VIP: /32 or /128.
pub fn host_prefix(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// A peer's state as `vipd status` and metrics show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    pub state: String,
    pub established_since: Option<Instant>,
    /// The families negotiated in the OPENs of the current session (empty when down).
    pub families: Vec<Family>,
    pub last_error: Option<String>,
    pub advertised: usize,
    pub updates_sent: u64,
    pub updates_received: u64,
    pub notifications_sent: u64,
    pub notifications_received: u64,
    pub flaps: u64,
    /// UPDATEs whose announcements were taken as withdrawals (RFC 7606).
    pub updates_treated_as_withdraw: u64,
    /// Attributes dropped by RFC 7606's attribute discard.
    pub attributes_discarded: u64,
    /// Sessions (and attempts) ended, by `crate::bgp::fsm::DownReason::label`.
    pub downs: BTreeMap<&'static str, u64>,
    /// Since when the session has not been Established (its start, or its last end); `None`
    /// while Established or stopped.
    pub down_since: Option<Instant>,
    /// The peer's BFD session, when it runs one.
    pub bfd: Option<crate::bfd::session::Report>,
}

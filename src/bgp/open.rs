//! [pure] The OPEN exchange (RFC 4271 §4.2, §6.2): the OPEN we send, the checks on the peer's,
//! and what the two together negotiate.

use crate::bgp::inbound::PeerOpen;
use crate::bgp::notification::{code, Notification};
use crate::bgp::types::{Asn, Family, HoldTime, RouterId};
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    LongLivedGracefulRestartAddressFamily, LongLivedGracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What we offer in our OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOffer {
    pub local_as: Asn,
    pub router_id: RouterId,
    pub hold_time: HoldTime,
    /// Families we would announce on this session (those we have a next hop for).
    pub families: Vec<Family>,
    pub graceful_restart: Option<GracefulRestartOffer>,
}

/// What vipd offers as a restarting speaker (RFC 4724, with RFC 8538's N bit and RFC 9494).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartOffer {
    /// How long the peer keeps our routes as stale once the session is gone (12 bits).
    pub restart_time: u16,
    /// RFC 9494: how long the peer then keeps them as least preferred; 0 offers no LLGR.
    pub long_lived_stale_time: u32,
}

// The bits of our capability, the same in every OPEN, so vipd keeps no state across processes:
// - F (forwarding state preserved) set for every family: what forwards to a VIP is the node's
//   kernel and kube-proxy, which a restart of vipd does not touch; a peer seeing F=0 would drop
//   our stale routes the moment the new process connects, before it has sent them again. After
//   a clean shutdown the peer holds no stale route, so F changes nothing there; after a reboot
//   the new process sends its whole table and End-of-RIB at once, and the peer removes what is
//   still stale then.
// - R (restarted) clear: it only tells the peer not to wait for our End-of-RIB before sending
//   its own routes, and vipd takes none.

impl GracefulRestartOffer {
    /// The most the 12-bit Restart Time field holds.
    pub const MAX_RESTART_TIME: u16 = 4095;
}

impl OpenOffer {
    pub fn message(&self) -> BgpMessage {
        let mut caps: Vec<BgpCapability> = self
            .families
            .iter()
            .map(|f| {
                BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                    address_type(*f),
                ))
            })
            .collect();
        if let Some(gr) = self.graceful_restart {
            let families: Vec<GracefulRestartAddressFamily> = self
                .families
                .iter()
                .map(|f| GracefulRestartAddressFamily::new(true, address_type(*f)))
                .collect();
            // N is always set: vipd sends Hard Reset when it means the routes to go.
            caps.push(BgpCapability::GracefulRestartCapability(
                GracefulRestartCapability::new(
                    false,
                    true,
                    gr.restart_time.min(GracefulRestartOffer::MAX_RESTART_TIME),
                    families,
                ),
            ));
            if gr.long_lived_stale_time > 0 {
                let stale = gr
                    .long_lived_stale_time
                    .min(LongLivedGracefulRestartAddressFamily::MAX_STALE_TIME);
                let families: Vec<LongLivedGracefulRestartAddressFamily> = self
                    .families
                    .iter()
                    .map(|f| {
                        LongLivedGracefulRestartAddressFamily::new(true, address_type(*f), stale)
                    })
                    .collect();
                caps.push(BgpCapability::LongLivedGracefulRestart(
                    LongLivedGracefulRestartCapability::new(families),
                ));
            }
        }
        caps.push(BgpCapability::RouteRefresh);
        caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(
            self.local_as.0,
        )));
        BgpMessage::Open(BgpOpenMessage::new(
            self.local_as.two_octet(),
            self.hold_time.secs(),
            self.router_id.0,
            vec![BgpOpenMessageParameter::new_capabilities(caps)],
        ))
    }
}

pub fn address_type(f: Family) -> AddressType {
    match f {
        Family::Ipv4 => AddressType::Ipv4Unicast,
        Family::Ipv6 => AddressType::Ipv6Unicast,
    }
}

/// The family of an (AFI, SAFI) pair from a capability, if vipd speaks it.
pub fn family_of(afi: u16, safi: u8) -> Option<Family> {
    match (afi, safi) {
        (1, 1) => Some(Family::Ipv4),
        (2, 1) => Some(Family::Ipv6),
        _ => None,
    }
}

/// The outcome of a successful OPEN exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Negotiated {
    pub peer_as: Asn,
    pub peer_router_id: std::net::Ipv4Addr,
    /// Minimum of both hold times; zero means no keepalives and no hold timer.
    pub hold_time: u16,
    pub keepalive: Option<Duration>,
    pub asn4: bool,
    /// Families both sides offered, in our order.
    pub families: Vec<Family>,
    pub peer_route_refresh: bool,
    /// Both sent Graceful Restart: the peer keeps our routes as stale when the session ends
    /// without a NOTIFICATION (RFC 4724 §4.2).
    #[serde(default)]
    pub graceful_restart: bool,
    /// Both sent the N bit too: a NOTIFICATION other than Hard Reset keeps them as well, and
    /// Hard Reset is how vipd says they must go (RFC 8538).
    #[serde(default)]
    pub graceful_notification: bool,
}

/// Why the peer's OPEN was refused: the NOTIFICATION to send and the operator's explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRejected {
    pub notification: Notification,
    pub reason: String,
}

/// Checks the peer's OPEN against what we expect (RFC 4271 §6.2, RFC 7607) and negotiates.
/// The version and the shape of the parameters were checked when it was decoded.
///
/// `expected_as` of 0 accepts any AS (unnumbered peers learn it). `keepalive` is the configured
/// interval, capped at a third of the negotiated hold time so the session cannot expire.
pub fn negotiate(
    offer: &OpenOffer,
    expected_as: Asn,
    keepalive: Option<Duration>,
    open: &PeerOpen,
) -> Result<Negotiated, OpenRejected> {
    let reject = |subcode: u8, data: Vec<u8>, reason: String| OpenRejected {
        notification: Notification::new(code::OPEN, subcode, data),
        reason,
    };
    let caps = &open.caps;
    let asn4 = caps.as4.is_some();
    let peer_as = Asn(open.asn());
    if peer_as.0 == 0 || (expected_as.0 != 0 && peer_as != expected_as) {
        return Err(reject(
            2,
            open.my_as.to_be_bytes().into(),
            format!("peer says it is {peer_as}, configured as {expected_as}"),
        ));
    }
    let peer_hold = open.hold_time;
    if peer_hold == 1 || peer_hold == 2 {
        return Err(reject(
            6,
            vec![],
            format!("peer hold time {peer_hold} s is not allowed (0 or at least 3)"),
        ));
    }
    let id = open.bgp_id;
    let ibgp = peer_as == offer.local_as;
    if id.is_unspecified() || id.is_broadcast() || (ibgp && id == offer.router_id.0) {
        return Err(reject(
            3,
            id.octets().into(),
            format!("peer BGP identifier {id} is not usable here"),
        ));
    }
    let peer_families: Vec<Family> = caps
        .multiprotocol
        .iter()
        .filter_map(|(afi, safi)| family_of(*afi, *safi))
        .collect();
    let has_mp = !caps.multiprotocol.is_empty();
    let families = offer
        .families
        .iter()
        .copied()
        // A peer without any MP capability speaks plain IPv4 unicast (RFC 4760 §8).
        .filter(|f| peer_families.contains(f) || (!has_mp && *f == Family::Ipv4))
        .collect();
    let hold_time = offer.hold_time.secs().min(peer_hold);
    let keepalive = (hold_time > 0).then(|| {
        let third = Duration::from_secs(u64::from(hold_time)) / 3;
        keepalive
            .map_or(third, |k| k.min(third))
            .max(Duration::from_secs(1))
    });
    Ok(Negotiated {
        peer_as,
        peer_router_id: id,
        hold_time,
        keepalive,
        asn4,
        families,
        peer_route_refresh: caps.route_refresh,
        graceful_restart: offer.graceful_restart.is_some() && caps.graceful_restart.is_some(),
        graceful_notification: offer.graceful_restart.is_some()
            && caps
                .graceful_restart
                .as_ref()
                .is_some_and(|g| g.notification),
    })
}

//! [pure] Bytes ↔ BGP messages: framing of the TCP stream (what is in a frame is
//! [`crate::bgp::inbound`]'s to check), and encoding what we send with `netgauze-bgp-pkt`: our
//! UPDATEs packed into as few 4096-byte messages as fit, End-of-RIB, Cease.

use crate::bgp::inbound::Rejected;
use crate::bgp::notification::{code, Notification};
use crate::bgp::types::{Asn, Family, RouteAttrs};
use bytes::{Buf, BytesMut};
use ipnet::IpNet;
use netgauze_bgp_pkt::community::Community;
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::{
    As2PathSegment, As4Path, As4PathSegment, AsPath, AsPathSegmentType, Communities,
    LocalPreference, MpReach, MpUnreach, NextHop, Origin, PathAttribute, PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_parse_utils::WritablePdu;
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 4271 §4.1: no message is longer (we negotiate no Extended Message capability).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Marker (16) + length (2) + type (1).
pub const HEADER_LEN: usize = 19;

/// Splits the byte stream of one connection into whole messages.
#[derive(Debug, Default)]
pub struct Framer {
    buf: BytesMut,
}

impl Framer {
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The next whole message, `None` if more bytes are needed. A bad header is fatal for the
    /// connection (RFC 4271 §6.1), so the caller closes it after sending the NOTIFICATION.
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>, Rejected> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        if self.buf[..16].iter().any(|b| *b != 0xff) {
            let mut marker = [0u8; 16];
            marker.copy_from_slice(&self.buf[..16]);
            return Err(Rejected {
                notification: Notification::new(code::MESSAGE_HEADER, 1, []),
                description: format!(
                    "message marker is not all ones: {:032x}",
                    u128::from_be_bytes(marker)
                ),
            });
        }
        let len = usize::from(u16::from_be_bytes([self.buf[16], self.buf[17]]));
        if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
            return Err(Rejected {
                notification: Notification::new(
                    code::MESSAGE_HEADER,
                    2,
                    (len as u16).to_be_bytes(),
                ),
                description: format!(
                    "message length {len} is outside {HEADER_LEN}..={MAX_MESSAGE_LEN}"
                ),
            });
        }
        if self.buf.len() < len {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(len)))
    }

    /// Bytes received but not yet a whole message.
    pub fn pending(&self) -> usize {
        self.buf.remaining()
    }
}

/// Our own message could not be written: a bug, reported rather than panicking.
#[derive(Debug, thiserror::Error)]
#[error("could not encode a BGP {kind:?} message: {detail}")]
pub struct EncodeError {
    pub kind: netgauze_bgp_pkt::iana::BgpMessageType,
    pub detail: String,
}

/// Appends the wire form of `msg` to `out`.
pub fn encode_into(msg: &BgpMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    msg.write(out).map_err(|e| EncodeError {
        kind: msg.get_type(),
        detail: e.to_string(),
    })
}

/// Wire length of a message.
pub fn encoded_len(msg: &BgpMessage) -> usize {
    msg.len()
}

/// What every UPDATE we originate to one peer carries, fixed for the life of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateContext {
    pub local_as: Asn,
    /// eBGP prepends our AS; iBGP sends an empty AS_PATH and LOCAL_PREF.
    pub ebgp: bool,
    /// Both sides sent the 4-octet AS capability (RFC 6793).
    pub asn4: bool,
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Sent as the second MP_REACH next hop when the peer is on our link (RFC 2545 §3).
    pub next_hop_v6_link_local: Option<Ipv6Addr>,
}

impl UpdateContext {
    /// Whether this session can carry routes of `family` (it has a next hop for them).
    pub fn can_announce(&self, family: Family) -> bool {
        match family {
            Family::Ipv4 => self.next_hop_v4.is_some(),
            Family::Ipv6 => self.next_hop_v6.is_some(),
        }
    }

    fn common_attributes(&self, route: &RouteAttrs) -> Vec<PathAttribute> {
        let mut attrs = vec![attr(PathAttributeValue::Origin(Origin::IGP))];
        let our_path: Vec<u32> = if self.ebgp {
            vec![self.local_as.0]
        } else {
            vec![]
        };
        let segments = |path: &[u32]| -> Vec<As4PathSegment> {
            if path.is_empty() {
                vec![]
            } else {
                vec![As4PathSegment::new(AsPathSegmentType::AsSequence, path)]
            }
        };
        if self.asn4 {
            attrs.push(attr(PathAttributeValue::AsPath(AsPath::As4PathSegments(
                segments(&our_path).into(),
            ))));
        } else {
            // A 2-octet peer gets AS_TRANS in AS_PATH and the real path in AS4_PATH (RFC 6793 §4.2.2).
            let two: Vec<u16> = our_path.iter().map(|a| Asn(*a).two_octet()).collect();
            let two_segments = if two.is_empty() {
                vec![]
            } else {
                vec![As2PathSegment::new(AsPathSegmentType::AsSequence, two)]
            };
            attrs.push(attr(PathAttributeValue::AsPath(AsPath::As2PathSegments(
                two_segments.into(),
            ))));
            if our_path.iter().any(|a| *a > u32::from(u16::MAX)) {
                attrs.push(optional_transitive(PathAttributeValue::As4Path(
                    As4Path::new(segments(&our_path)),
                )));
            }
        }
        if !self.ebgp {
            // RFC 8326 §4: LOCAL_PREF 0 inside the AS, where the community may not be acted on.
            let pref = if route.graceful_shutdown { 0 } else { 100 };
            attrs.push(attr(PathAttributeValue::LocalPreference(
                LocalPreference::new(pref),
            )));
        }
        if route.graceful_shutdown {
            attrs.push(optional_transitive(PathAttributeValue::Communities(
                Communities::new([Community::new(GRACEFUL_SHUTDOWN)]),
            )));
        }
        attrs
    }

    /// UPDATEs announcing `prefixes` (all of `family`, all with `route`), each at most 4096
    /// bytes. Empty when the session has no next hop for the family.
    pub fn announcements(
        &self,
        family: Family,
        route: &RouteAttrs,
        prefixes: &[IpNet],
    ) -> Vec<BgpMessage> {
        match family {
            Family::Ipv4 => {
                let Some(nh) = self.next_hop_v4 else {
                    return vec![];
                };
                let mut attrs = self.common_attributes(route);
                attrs.push(attr(PathAttributeValue::NextHop(NextHop::new(nh))));
                let base = update_len(BgpUpdateMessage::new([], attrs.clone(), []));
                pack(prefixes, base, |chunk| {
                    BgpUpdateMessage::new([], attrs.clone(), v4_nlri(chunk))
                })
            }
            Family::Ipv6 => {
                let Some(global) = self.next_hop_v6 else {
                    return vec![];
                };
                let common = self.common_attributes(route);
                let with_reach = |nlri: Vec<Ipv6UnicastAddress>| {
                    let mut attrs = common.clone();
                    attrs.insert(
                        0,
                        optional_extended(PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                            next_hop_global: global,
                            next_hop_local: self.next_hop_v6_link_local,
                            nlri: nlri.into(),
                        })),
                    );
                    BgpUpdateMessage::new([], attrs, [])
                };
                let base = update_len(with_reach(vec![]));
                pack(prefixes, base, |chunk| with_reach(v6_nlri(chunk)))
            }
        }
    }
}

/// UPDATEs withdrawing `prefixes` of `family`, packed like announcements.
pub fn withdrawals(family: Family, prefixes: &[IpNet]) -> Vec<BgpMessage> {
    match family {
        Family::Ipv4 => {
            let base = update_len(BgpUpdateMessage::new([], [], []));
            pack(prefixes, base, |chunk| {
                BgpUpdateMessage::new(v4_nlri(chunk), [], [])
            })
        }
        Family::Ipv6 => {
            let unreach = |nlri: Vec<Ipv6UnicastAddress>| {
                BgpUpdateMessage::new(
                    [],
                    [optional_extended(PathAttributeValue::MpUnreach(
                        MpUnreach::Ipv6Unicast { nlri: nlri.into() },
                    ))],
                    [],
                )
            };
            let base = update_len(unreach(vec![]));
            pack(prefixes, base, |chunk| unreach(v6_nlri(chunk)))
        }
    }
}

/// End-of-RIB marker (RFC 4724 §2): an empty UPDATE for IPv4, an empty MP_UNREACH otherwise.
pub fn end_of_rib(family: Family) -> BgpMessage {
    match family {
        Family::Ipv4 => BgpMessage::Update(BgpUpdateMessage::new([], [], [])),
        Family::Ipv6 => BgpMessage::Update(BgpUpdateMessage::new(
            [],
            [optional_extended(PathAttributeValue::MpUnreach(
                MpUnreach::Ipv6Unicast { nlri: Box::new([]) },
            ))],
            [],
        )),
    }
}

/// A Cease NOTIFICATION. Administrative Shutdown and Reset carry `reason` as the RFC 9003
/// shutdown communication (a length byte and at most 255 bytes of UTF-8).
pub fn cease(kind: CeaseKind, reason: &str) -> Notification {
    let data = match kind {
        CeaseKind::AdministrativeShutdown | CeaseKind::AdministrativeReset => {
            let mut text = reason.as_bytes();
            if text.len() > 255 {
                // Cut on a character boundary so the peer can display it.
                let mut end = 255;
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                text = &reason.as_bytes()[..end];
            }
            let mut comm = Vec::with_capacity(text.len() + 1);
            comm.push(text.len() as u8);
            comm.extend_from_slice(text);
            comm
        }
        _ => Vec::new(),
    };
    Notification::new(code::CEASE, kind.subcode(), data)
}

/// RFC 8538 §3: Cease / Hard Reset (subcode 9) carrying `inner` (its code, subcode and data):
/// the peer drops our routes at once even though graceful restart was negotiated.
pub fn hard_reset(inner: &Notification) -> Notification {
    let mut data = Vec::with_capacity(inner.data.len() + 2);
    data.push(inner.code);
    data.push(inner.subcode);
    data.extend_from_slice(&inner.data);
    Notification::new(code::CEASE, HARD_RESET, data)
}

/// RFC 8326's well-known community 65535:0.
pub const GRACEFUL_SHUTDOWN: u32 = 0xFFFF_0000;

/// RFC 8538's Cease subcode.
pub const HARD_RESET: u8 = 9;

/// The Cease subcodes (RFC 4486) vipd sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CeaseKind {
    AdministrativeShutdown,
    AdministrativeReset,
    PeerDeconfigured,
    OtherConfigurationChange,
    /// RFC 4271 §6.8: the connection that loses a collision.
    ConnectionCollisionResolution,
    /// RFC 9384: BFD saw the path to the peer fail.
    BfdDown,
}

impl CeaseKind {
    pub fn subcode(self) -> u8 {
        match self {
            CeaseKind::AdministrativeShutdown => 2,
            CeaseKind::PeerDeconfigured => 3,
            CeaseKind::AdministrativeReset => 4,
            CeaseKind::OtherConfigurationChange => 6,
            CeaseKind::ConnectionCollisionResolution => 7,
            CeaseKind::BfdDown => 10,
        }
    }
}

/// Well-known attributes: transitive, not optional, not partial (RFC 4271 §5).
fn attr(value: PathAttributeValue) -> PathAttribute {
    flags(false, true, false, value)
}

fn optional_transitive(value: PathAttributeValue) -> PathAttribute {
    flags(true, true, false, value)
}

/// MP_REACH / MP_UNREACH: optional, non-transitive, always with a 2-byte length so packing can
/// count each prefix's bytes without the attribute header changing size at 255 bytes.
fn optional_extended(value: PathAttributeValue) -> PathAttribute {
    flags(true, false, true, value)
}

fn flags(
    optional: bool,
    transitive: bool,
    extended: bool,
    value: PathAttributeValue,
) -> PathAttribute {
    match PathAttribute::from(optional, transitive, false, extended, value) {
        Ok(a) => a,
        // Unreachable: the callers pass the flags RFC 4271/4760/6793 define for each attribute
        // type, and netgauze refuses only flags that contradict the type.
        Err((value, why)) => unreachable!("flags for {value:?} rejected: {why:?}"),
    }
}

fn update_len(update: BgpUpdateMessage) -> usize {
    BgpMessage::Update(update).len()
}

/// Bytes one prefix takes in NLRI or withdrawn routes: length octet plus the significant octets.
fn prefix_wire_len(p: &IpNet) -> usize {
    1 + usize::from(p.prefix_len()).div_ceil(8)
}

/// Greedily fills messages of at most [`MAX_MESSAGE_LEN`] bytes: `base` is the length with no
/// prefixes, and every prefix adds exactly its own bytes.
fn pack(
    prefixes: &[IpNet],
    base: usize,
    build: impl Fn(&[IpNet]) -> BgpUpdateMessage,
) -> Vec<BgpMessage> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < prefixes.len() {
        let mut len = base;
        let mut end = start;
        while end < prefixes.len() && len + prefix_wire_len(&prefixes[end]) <= MAX_MESSAGE_LEN {
            len += prefix_wire_len(&prefixes[end]);
            end += 1;
        }
        // `base` is far below the limit, so every message takes at least one prefix.
        let end = end.max(start + 1);
        out.push(BgpMessage::Update(build(&prefixes[start..end])));
        start = end;
    }
    out
}

fn v4_nlri(prefixes: &[IpNet]) -> Vec<Ipv4UnicastAddress> {
    prefixes
        .iter()
        .filter_map(|p| match p {
            IpNet::V4(n) => Ipv4Unicast::from_net(*n)
                .ok()
                .map(Ipv4UnicastAddress::new_no_path_id),
            IpNet::V6(_) => None,
        })
        .collect()
}

fn v6_nlri(prefixes: &[IpNet]) -> Vec<Ipv6UnicastAddress> {
    prefixes
        .iter()
        .filter_map(|p| match p {
            IpNet::V6(n) => Ipv6Unicast::from_net(*n)
                .ok()
                .map(|n| Ipv6UnicastAddress::new(None, n)),
            IpNet::V4(_) => None,
        })
        .collect()
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;

//! [pure] The Ethernet frames of ARP/NDP mode, built and parsed by hand (a few fixed layouts do
//! not need a packet crate):
//! - IPv4: the RFC 5227 ARP probe (sender IP 0.0.0.0, §2.1.1) and ARP announcement (sender and
//!   target IP both the VIP, §2.3), broadcast.
//! - IPv6: the duplicate-address-detection Neighbour Solicitation (source `::`, to the
//!   solicited-node group, RFC 4862 §5.4.2) and the unsolicited Neighbour Advertisement with the
//!   Override flag to all-nodes (RFC 4861 §7.2.6).
//!
//! [`claim_by_other`] reads a received frame: does another MAC say it holds (or is probing
//! for) the VIP?

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An Ethernet (EUI-48) address. Display: `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub const ZERO: Mac = Mac([0; 6]);
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = ();
    fn from_str(s: &str) -> Result<Mac, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.trim().split(':');
        for b in &mut out {
            *b = u8::from_str_radix(parts.next().ok_or(())?, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Mac(out))
    }
}

pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ICMPV6: u8 = 58;
const NS: u8 = 135;
const NA: u8 = 136;
/// Neighbour Advertisement flag: Override (RFC 4861 §4.4): replace a cached link-layer address.
const NA_OVERRIDE: u8 = 0x20;
/// Ethernet frames are at least 60 bytes before the FCS; some NICs do not pad short frames.
const MIN_FRAME: usize = 60;

fn ethernet(dst: Mac, src: Mac, ethertype: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

fn arp(op: u16, sha: Mac, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(MIN_FRAME);
    ethernet(Mac::BROADCAST, sha, ETHERTYPE_ARP, &mut f);
    f.extend_from_slice(&1u16.to_be_bytes()); // htype Ethernet
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes()); // ptype IPv4
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&Mac::ZERO.0);
    f.extend_from_slice(&tpa.octets());
    f.resize(MIN_FRAME, 0);
    f
}

/// RFC 5227 §2.1.1 ARP probe: "who has `vip`?" from 0.0.0.0, so no host's cache learns us.
pub fn arp_probe(mac: Mac, vip: Ipv4Addr) -> Vec<u8> {
    arp(1, mac, Ipv4Addr::UNSPECIFIED, vip)
}

/// RFC 5227 §2.3 ARP announcement (a gratuitous ARP request): sender and target both `vip`.
/// Hosts with a cache entry for `vip` update it to `mac` (also with `arp_accept=0`).
pub fn arp_announcement(mac: Mac, vip: Ipv4Addr) -> Vec<u8> {
    arp(1, mac, vip, vip)
}

/// `ff02::1:ffXX:XXXX`, the solicited-node group of `ip` (RFC 4291 §2.7.1).
fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet group address of an IPv6 multicast group: 33:33 + its last 32 bits (RFC 2464 §7).
fn multicast_mac(group: Ipv6Addr) -> Mac {
    let o = group.octets();
    Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The ICMPv6 checksum (RFC 4443 §2.3): one's complement sum over the pseudo-header (RFC 8200
/// §8.1) and the message, whose checksum field is zero.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv6_icmp(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mut icmp: Vec<u8>,
) -> Vec<u8> {
    let checksum = icmpv6_checksum(src, dst, &icmp);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    ethernet(dst_mac, src_mac, ETHERTYPE_IPV6, &mut f);
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class 0, flow label 0
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    // Hop limit 255: receivers drop NDP messages that crossed a router (RFC 4861 §7.1.1).
    f.extend_from_slice(&[ICMPV6, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

/// RFC 4862 §5.4.2 DAD probe: a Neighbour Solicitation for `vip` from `::` to its
/// solicited-node group, without a source link-layer option (forbidden from `::`).
pub fn ns_probe(mac: Mac, vip: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(vip);
    let mut icmp = vec![NS, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&vip.octets());
    ipv6_icmp(
        mac,
        multicast_mac(group),
        Ipv6Addr::UNSPECIFIED,
        group,
        icmp,
    )
}

/// RFC 4861 §7.2.6 unsolicited Neighbour Advertisement for `vip` to all-nodes (ff02::1),
/// Override set (hosts replace the cached MAC), Solicited and Router clear, with our MAC as the
/// target link-layer address option.
pub fn unsolicited_na(mac: Mac, vip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![NA, 0, 0, 0, NA_OVERRIDE, 0, 0, 0];
    icmp.extend_from_slice(&vip.octets());
    icmp.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac.0);
    ipv6_icmp(mac, multicast_mac(all_nodes), vip, all_nodes, icmp)
}

/// The probe for `vip` (ARP for IPv4, DAD NS for IPv6).
pub fn probe(mac: Mac, vip: IpAddr) -> Vec<u8> {
    match vip {
        IpAddr::V4(v4) => arp_probe(mac, v4),
        IpAddr::V6(v6) => ns_probe(mac, v6),
    }
}

/// The announcement for `vip` (gratuitous ARP for IPv4, unsolicited NA for IPv6).
pub fn announcement(mac: Mac, vip: IpAddr) -> Vec<u8> {
    match vip {
        IpAddr::V4(v4) => arp_announcement(mac, v4),
        IpAddr::V6(v6) => unsolicited_na(mac, v6),
    }
}

/// If `frame` comes from a MAC other than `ours` and says that MAC holds `vip` (an ARP packet
/// with sender IP `vip`; a Neighbour Advertisement for `vip`) or is probing for it itself (an
/// ARP probe or DAD solicitation for `vip`, RFC 5227 §2.1.1 / RFC 4862 §5.4.3), that MAC.
/// Anything else — including truncated or garbage frames — is `None`.
pub fn claim_by_other(frame: &[u8], ours: Mac, vip: IpAddr) -> Option<Mac> {
    let src = Mac(frame.get(6..12)?.try_into().ok()?);
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let claimer = match (vip, ethertype) {
        (IpAddr::V4(vip), ETHERTYPE_ARP) => arp_claim(frame.get(14..)?, vip)?,
        (IpAddr::V6(vip), ETHERTYPE_IPV6) => ndp_claim(frame.get(14..)?, src, vip)?,
        _ => return None,
    };
    (claimer != ours && src != ours).then_some(claimer)
}

fn arp_claim(arp: &[u8], vip: Ipv4Addr) -> Option<Mac> {
    if arp.get(0..6)? != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let sha = Mac(arp.get(8..14)?.try_into().ok()?);
    let spa = Ipv4Addr::from(<[u8; 4]>::try_from(arp.get(14..18)?).ok()?);
    let tpa = Ipv4Addr::from(<[u8; 4]>::try_from(arp.get(24..28)?).ok()?);
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    let probing = op == 1 && spa.is_unspecified() && tpa == vip;
    (spa == vip || probing).then_some(sha)
}

fn ndp_claim(ip: &[u8], src: Mac, vip: Ipv6Addr) -> Option<Mac> {
    if ip.first()? >> 4 != 6 || *ip.get(6)? != ICMPV6 {
        return None;
    }
    let src_ip = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
    let icmp = ip.get(40..)?;
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(icmp.get(8..24)?).ok()?);
    if target != vip {
        return None;
    }
    match *icmp.first()? {
        NA => Some(target_lladdr(icmp.get(24..)?).unwrap_or(src)),
        NS if src_ip.is_unspecified() => Some(src),
        _ => None,
    }
}

/// The target link-layer address option (type 2) among NDP options.
fn target_lladdr(mut options: &[u8]) -> Option<Mac> {
    while options.len() >= 8 {
        let len = usize::from(options[1]) * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        if options[0] == 2 {
            return Some(Mac(options.get(2..8)?.try_into().ok()?));
        }
        options = &options[len..];
    }
    None
}

#[cfg(test)]
mod tests;

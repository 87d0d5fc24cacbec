//! [pure] BGP settings: the speaker (AS, router id, timers, source, passive mode), its peers
//! (`bgp_peers` and the single-peer variables) and the Equinix Metal provider.

use super::{err, flag, non_empty, ConfigError, RawSettings};
use crate::bgp::open::GracefulRestartOffer;
use crate::bgp::types::HoldTime;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;
use vipd_providers::static_peers::{parse_bfd, parse_mpbgp_nexthop};
use vipd_providers::{parse_bgp_peers, BfdSpec, MpBgpSpec, Password, PeerAddress, PeerSpec};

/// Where the BGP identifier comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterIdSource {
    Fixed(Ipv4Addr),
    /// The first IPv4 address of this interface (`bgp_routerinterface`).
    Interface(String),
    /// The host's lowest non-loopback IPv4 address, as BIRD and FRR pick it.
    Lowest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpSettings {
    pub local_as: u32,
    pub router_id: RouterIdSource,
    pub hold_time: HoldTime,
    pub keepalive: Option<Duration>,
    pub peers: Vec<PeerSpec>,
    pub source_ip: Option<IpAddr>,
    pub source_if: Option<String>,
    pub passive: bool,
    pub listen_port: u16,
    pub mpbgp: MpBgpSpec,
    /// `annotation`: also take peers from this node's annotations under this prefix (e.g.
    /// `metal.equinix.com`), following them as they change.
    pub annotations: Option<String>,
    /// `vipd_bgp_unready_after`: `/readyz` fails while a session has been down this long
    /// (`None`: never), so a probe sees an agent whose peers are gone.
    pub unready_after: Option<Duration>,
    /// `vipd_bgp_restart_time` and `vipd_bgp_llgr_stale_time`: graceful restart as offered to
    /// every peer; `None` (restart time 0) offers none, and every stop is a Cease.
    pub graceful_restart: Option<GracefulRestartOffer>,
    /// `vipd_bfd`: BFD for the peers whose entry sets none (annotation and Metal peers too).
    pub bfd: Option<BfdSpec>,
    /// `vipd_bgp_drain_time`: how long a leaving node's routes stay, marked for graceful
    /// shutdown, before they are withdrawn; `None` (0): until vipd stops.
    pub drain_time: Option<Duration>,
}

/// The legacy Equinix Metal API provider (`vip_packet` / `--metal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetalSettings {
    /// `provider_config`: the CCM's `cloud-sa.json`; env `METAL_API_KEY` / `METAL_PROJECT_ID`
    /// override it.
    pub provider_config: Option<PathBuf>,
    /// `metal_peer_routes`: install host routes to the peers via the private gateway.
    pub peer_routes: bool,
}

pub(super) fn bgp_settings(raw: &RawSettings, bgp_on: bool) -> Result<BgpSettings, ConfigError> {
    let local_as = match &raw.bgp_as {
        Some(v) => match v.parse::<u32>() {
            Ok(0) | Err(_) => {
                return Err(err(
                    "bgp_as (--localAS)",
                    v,
                    "is not an AS number (1..4294967295)",
                ))
            }
            Ok(a) => a,
        },
        None => 65000,
    };
    let router_id = match (&raw.bgp_routerid, &raw.bgp_routerinterface) {
        (Some(id), _) if !id.is_empty() => {
            let ip: Ipv4Addr = id
                .parse()
                .map_err(|_| err("bgp_routerid (--bgpRouterID)", id, "is not an IPv4 address"))?;
            if ip.is_unspecified() || ip.is_broadcast() {
                return Err(err(
                    "bgp_routerid (--bgpRouterID)",
                    id,
                    "is not a usable BGP identifier",
                ));
            }
            RouterIdSource::Fixed(ip)
        }
        (_, Some(ifname)) if !ifname.is_empty() => RouterIdSource::Interface(ifname.clone()),
        _ => RouterIdSource::Lowest,
    };
    let hold_time = match &raw.bgp_hold_time {
        Some(v) => v
            .parse::<u16>()
            .ok()
            .and_then(HoldTime::new)
            .ok_or_else(|| {
                err(
                    "bgp_hold_time (--bgpHoldTimer)",
                    v,
                    "is not a hold time in seconds (0, or 3..65535)",
                )
            })?,
        None => HoldTime::new(30).unwrap_or_else(|| unreachable!("30 is a valid hold time")),
    };
    let keepalive = match &raw.bgp_keepalive_interval {
        Some(v) => match v.parse::<u64>() {
            Ok(s) if s >= 1 => Some(Duration::from_secs(s)),
            _ => {
                return Err(err(
                    "bgp_keepalive_interval (--bgpKeepAliveInterval)",
                    v,
                    "is not a number of seconds (at least 1)",
                ))
            }
        },
        None => Some(Duration::from_secs(10)),
    };
    let unready_after = match &raw.bgp_unready_after {
        Some(v) => match v.parse::<u64>() {
            Ok(0) => None,
            Ok(s) => Some(Duration::from_secs(s)),
            Err(_) => {
                return Err(err(
                    "vipd_bgp_unready_after (--bgp-unready-after)",
                    v,
                    "is not a number of seconds (0 turns the check off)",
                ))
            }
        },
        None => Some(DEFAULT_UNREADY_AFTER),
    };
    let graceful_restart = graceful_restart(raw)?;
    let drain_time =
        match &raw.bgp_drain_time {
            Some(v) => match v.parse::<u64>() {
                Ok(0) => None,
                Ok(s) if s <= 86_400 => Some(Duration::from_secs(s)),
                _ => return Err(err(
                    "vipd_bgp_drain_time (--bgp-drain-time)",
                    v,
                    "is not a number of seconds from 0 (keep the routes until vipd stops) to 86400",
                )),
            },
            None => None,
        };
    let bfd = match &raw.bfd {
        Some(v) if !v.is_empty() => {
            Some(parse_bfd(v).map_err(|why| err("vipd_bfd (--bfd)", v, &why))?)
        }
        _ => None,
    };
    let mut peers = match &raw.bgp_peers {
        Some(v) => parse_bgp_peers(v).map_err(|e| ConfigError {
            setting: "bgp_peers (--bgppeers)".into(),
            value: e.shown.clone(),
            reason: format!("entry {}: {} {}", e.entry, e.field, e.problem),
        })?,
        None => Vec::new(),
    };
    if let Some(addr) = raw.bgp_peeraddress.as_deref().filter(|a| !a.is_empty()) {
        peers.push(single_peer(raw, addr)?);
    }
    if let Some(p) = peers
        .iter()
        .find(|p| matches!(p.address, PeerAddress::Unnumbered(_)))
    {
        return Err(err(
            "bgp_peers (--bgppeers)",
            &p.address.to_string(),
            "is an unnumbered peer, which vipd does not support yet; give the neighbour's address",
        ));
    }
    let annotations = non_empty(&raw.annotation).map(str::to_owned);
    // Peers may come from the node's annotations or the Equinix Metal API instead.
    let discovered = annotations.is_some() || flag(&raw.vip_packet, "vip_packet (--metal)")?;
    // In ARP mode no BGP runs: the BGP settings are checked for syntax only.
    if peers.is_empty() && !discovered && bgp_on {
        return Err(err(
            "bgp_peers (--bgppeers)",
            raw.bgp_peers.as_deref().unwrap_or(""),
            "holds no peer, and neither bgp_peeraddress, annotation nor vip_packet is set: BGP needs at least one peer",
        ));
    }
    let source_ip = match raw.bgp_sourceip.as_deref().filter(|s| !s.is_empty()) {
        Some(v) => Some(
            v.parse::<IpAddr>()
                .map_err(|_| err("bgp_sourceip (--sourceIP)", v, "is not an IP address"))?,
        ),
        None => None,
    };
    let source_if = raw.bgp_sourceif.clone().filter(|s| !s.is_empty());
    if let (Some(ip), Some(ifname)) = (&source_ip, &source_if) {
        return Err(err(
            "bgp_sourceif (--sourceIF)",
            ifname,
            format!("is set together with bgp_sourceip {ip}; set one of them"),
        ));
    }
    let listen_port = match &raw.bgp_listen_port {
        Some(v) => v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            err(
                "bgp_listen_port (--bgp-listen-port)",
                v,
                "is not a TCP port (1..65535)",
            )
        })?,
        None => 179,
    };
    let mut mpbgp = MpBgpSpec::default();
    if let Some(v) = &raw.mpbgp_nexthop {
        mpbgp.next_hop = parse_mpbgp_nexthop(v).map_err(|r| err("mpbgp_nexthop", v, r))?;
    }
    if let Some(v) = raw.mpbgp_ipv4.as_deref().filter(|v| !v.is_empty()) {
        mpbgp.ipv4 = Some(
            v.parse()
                .map_err(|_| err("mpbgp_ipv4", v, "is not an IPv4 address"))?,
        );
    }
    if let Some(v) = raw.mpbgp_ipv6.as_deref().filter(|v| !v.is_empty()) {
        mpbgp.ipv6 = Some(
            v.parse()
                .map_err(|_| err("mpbgp_ipv6", v, "is not an IPv6 address"))?,
        );
    }
    // `fixed` needs an address to fix the next hop to, globally or in some peer's entry.
    let fixed_somewhere = |m: &MpBgpSpec| m.ipv4.is_some() || m.ipv6.is_some();
    if mpbgp.next_hop == vipd_providers::MpBgpNextHop::Fixed
        && !fixed_somewhere(&mpbgp)
        && !peers.iter().any(|p| fixed_somewhere(&p.mpbgp))
    {
        return Err(err(
            "mpbgp_nexthop",
            "fixed",
            "needs the next hop to fix: set mpbgp_ipv4 and/or mpbgp_ipv6",
        ));
    }
    Ok(BgpSettings {
        local_as,
        router_id,
        hold_time,
        keepalive,
        peers,
        source_ip,
        source_if,
        passive: flag(&raw.bgp_passive, "bgp_passive (--bgp-passive)")?,
        listen_port,
        mpbgp,
        annotations,
        unready_after,
        graceful_restart,
        bfd,
        drain_time,
    })
}

/// Peers keep the routes this long across a restart unless set otherwise: FRR's and BIRD's
/// default restart time.
pub const DEFAULT_RESTART_TIME: u16 = 120;

fn graceful_restart(raw: &RawSettings) -> Result<Option<GracefulRestartOffer>, ConfigError> {
    let restart_time = match &raw.bgp_restart_time {
        Some(v) => match v.parse::<u16>() {
            Ok(t) if t <= GracefulRestartOffer::MAX_RESTART_TIME => t,
            _ => {
                return Err(err(
                    "vipd_bgp_restart_time (--bgp-restart-time)",
                    v,
                    "is not a number of seconds from 0 (no graceful restart) to 4095",
                ))
            }
        },
        None => DEFAULT_RESTART_TIME,
    };
    let long_lived_stale_time = match &raw.bgp_llgr_stale_time {
        Some(v) => match v.parse::<u32>() {
            Ok(t) if t <= 0x00ff_ffff => t,
            _ => {
                return Err(err(
                    "vipd_bgp_llgr_stale_time (--bgp-llgr-stale-time)",
                    v,
                    "is not a number of seconds from 0 (not offered) to 16777215",
                ))
            }
        },
        None => 0,
    };
    if restart_time == 0 && long_lived_stale_time > 0 {
        return Err(err(
            "vipd_bgp_llgr_stale_time (--bgp-llgr-stale-time)",
            &long_lived_stale_time.to_string(),
            "needs graceful restart, which vipd_bgp_restart_time=0 turns off (RFC 9494 §2)",
        ));
    }
    Ok((restart_time > 0).then_some(GracefulRestartOffer {
        restart_time,
        long_lived_stale_time,
    }))
}

/// Long enough for a router reboot and the connect-retry backoff's top (30 s) to pass.
pub const DEFAULT_UNREADY_AFTER: Duration = Duration::from_secs(120);

/// The peer of `bgp_peeraddress`, `bgp_peeras`, `bgp_peerpass` and `bgp_multihop`.
pub(super) fn single_peer(raw: &RawSettings, addr: &str) -> Result<PeerSpec, ConfigError> {
    let bare = addr.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = bare
        .parse()
        .map_err(|_| err("bgp_peeraddress", addr, "is not an IP address"))?;
    let remote_as = match &raw.bgp_peeras {
        Some(v) => match v.parse::<u32>() {
            Ok(a) if a != 0 => a,
            _ => return Err(err("bgp_peeras", v, "is not an AS number (1..4294967295)")),
        },
        None => 65000,
    };
    let mut spec = PeerSpec::new(ip, remote_as);
    if let Some(pw) = raw.bgp_peerpass.as_deref().filter(|p| !p.is_empty()) {
        if pw.len() > 80 {
            return Err(err(
                "bgp_peerpass",
                "*****",
                format!("is {} bytes long; TCP-MD5 keys hold at most 80", pw.len()),
            ));
        }
        spec.password = Some(Password::new(pw.to_owned()));
    }
    spec.multihop = flag(&raw.bgp_multihop, "bgp_multihop")?;
    Ok(spec)
}

//! [pure] The description of one BGP peer, as every provider produces it.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Where the peer is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerAddress {
    /// A numbered neighbour.
    Ip(IpAddr),
    /// `unnumbered:<ifname>`: the IPv6 link-local neighbour on that link (parsed for
    /// compatibility with kube-vip; the speaker does not support it yet and says so).
    Unnumbered(String),
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddress::Ip(ip) => write!(f, "{ip}"),
            PeerAddress::Unnumbered(ifname) => write!(f, "unnumbered:{ifname}"),
        }
    }
}

/// A TCP-MD5 key (RFC 2385). Shared, never printed: `Debug` shows `[REDACTED]`.
#[derive(Clone)]
pub struct Password(Arc<SecretString>);

impl Password {
    pub fn new(key: String) -> Self {
        Password(Arc::new(SecretString::from(key)))
    }

    /// The key bytes, for the one place that hands them to the kernel.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl PartialEq for Password {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}
impl Eq for Password {}

/// How the next hop is chosen for VIPs of the family other than the session's (kube-vip's
/// `mpbgp_nexthop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MpBgpNextHop {
    /// Only the session's own family is negotiated.
    #[default]
    None,
    /// `fixed`: the addresses in `mpbgp_ipv4` / `mpbgp_ipv6`.
    Fixed,
    /// `auto_sourceip`: the other family's (non link-local) address on the interface that holds
    /// `bgp_sourceip`.
    AutoSourceIp,
    /// `auto_sourceif`: the other-family address of the source interface.
    AutoSourceIf,
}

/// Multiprotocol settings of one peer (kube-vip's `mpbgp` field of `bgp_peers`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MpBgpSpec {
    pub next_hop: MpBgpNextHop,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// BFD settings (RFC 5880), parsed now and used when BFD lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdSpec {
    pub enabled: bool,
    pub rx_ms: u32,
    pub tx_ms: u32,
    pub multiplier: u8,
}

impl Default for BfdSpec {
    fn default() -> Self {
        BfdSpec {
            enabled: false,
            rx_ms: 300,
            tx_ms: 300,
            multiplier: 3,
        }
    }
}

/// One BGP peer. Fields a provider does not know stay `None` and take the agent's globals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub address: PeerAddress,
    /// TCP port of the peer (179 unless told otherwise).
    pub port: u16,
    pub remote_as: u32,
    /// Overrides the agent's `bgp_as` for this session.
    pub local_as: Option<u32>,
    pub password: Option<Password>,
    /// eBGP multihop: TTL 255 instead of 1.
    pub multihop: bool,
    /// Local address to bind; overrides `bgp_sourceip`.
    pub source: Option<IpAddr>,
    /// Overrides the agent's router id.
    pub router_id: Option<Ipv4Addr>,
    pub mpbgp: MpBgpSpec,
    pub bfd: Option<BfdSpec>,
}

impl PeerSpec {
    /// A peer with defaults for everything but its address and AS.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        PeerSpec {
            address: PeerAddress::Ip(address),
            port: 179,
            remote_as,
            local_as: None,
            password: None,
            multihop: false,
            source: None,
            router_id: None,
            mpbgp: MpBgpSpec::default(),
            bfd: None,
        }
    }
}

impl PeerSpec {
    /// The same peer on another TCP port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
}

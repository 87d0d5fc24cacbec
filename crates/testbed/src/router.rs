//! What the scenarios need from a real BGP router in the tor namespace (AS 65530, router id
//! 10.99.0.2) peering with vipd (AS 65000), and the options it is started with. Pure types.

use std::net::IpAddr;

use super::netns::{Topology, NODE_LO, NODE_V4, NODE_V6, TOR_LO, TOR_V4, TOR_V6};

pub const ROUTER_AS: u32 = 65530;
pub const VIPD_AS: u32 = 65000;
pub const ROUTER_ID: &str = "10.99.0.2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// The family of a prefix or address written as text.
    pub fn of(prefix: &str) -> Family {
        if prefix.contains(':') {
            Family::Ipv6
        } else {
            Family::Ipv4
        }
    }

    /// The word BIRD/FRR/GoBGP use on their command lines: `ipv4` / `ipv6`.
    pub fn word(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// A route as the router's table shows it, reduced to what vipd controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The global next hop (a link-local IPv6 next hop shown next to it is ignored).
    pub next_hop: IpAddr,
    pub as_path: Vec<u32>,
    /// "IGP", "EGP" or "INCOMPLETE".
    pub origin: String,
}

/// One BGP session, seen from the router.
#[derive(Debug, Clone)]
pub struct Neighbor {
    /// vipd's address: the router's BGP neighbor.
    pub vipd: IpAddr,
    /// The router's own address for this session.
    pub local: IpAddr,
}

impl Neighbor {
    fn new(vipd: &str, local: &str) -> Neighbor {
        Neighbor {
            vipd: vipd.parse().expect("neighbor address"),
            local: local.parse().expect("local address"),
        }
    }

    pub fn family(&self) -> Family {
        if self.vipd.is_ipv6() {
            Family::Ipv6
        } else {
            Family::Ipv4
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub neighbors: Vec<Neighbor>,
    /// TCP-MD5 key for every session.
    pub password: Option<String>,
    /// eBGP multihop (TTL 2) between the loopbacks.
    pub multihop: bool,
    /// The port the router listens on (and the only one).
    pub port: u16,
    /// Passive: wait for vipd to connect (the default; vipd connects actively and does not
    /// accept connections unless `bgp_passive=true`, so an active router adds nothing).
    pub passive: bool,
    pub hold_time: u16,
    /// BFD (300 ms × 3) on every session: FRR's bfdd with `neighbor X bfd`, BIRD's `protocol
    /// bfd` with `bfd on` (or `bfd graceful`).
    pub bfd: Option<BfdMode>,
    /// BIRD: install the best routes in the router's kernel, equal ones merged (ECMP), and
    /// rank a route carrying GRACEFUL_SHUTDOWN (65535:0) last (LOCAL_PREF 0, RFC 8326 §4's
    /// policy).
    pub kernel_ecmp: bool,
}

/// A router that runs BFD with vipd ([`RouterConfig::bfd`]).
pub trait BfdPeer {
    /// Whether the router's BFD session with `peer` is Up.
    fn bfd_up(&self, peer: &str) -> bool;
}

/// What the router's BGP does when BFD says the path failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BfdMode {
    /// End the session and drop the routes (FRR's only way; BIRD's `bfd on`).
    Down,
    /// BIRD's `bfd graceful`: treat it as the peer restarting (keep the routes as stale).
    Graceful,
}

impl RouterConfig {
    /// One IPv4 session over the veth: vipd 10.99.0.1 to router 10.99.0.2, port 179, hold 9 s.
    pub fn ipv4() -> RouterConfig {
        RouterConfig {
            neighbors: vec![Neighbor::new(NODE_V4, TOR_V4)],
            password: None,
            multihop: false,
            port: 179,
            passive: true,
            hold_time: 9,
            bfd: None,
            kernel_ecmp: false,
        }
    }

    /// One IPv4 session per node of a [`Topology::with_nodes`] topology.
    pub fn nodes(n: usize) -> RouterConfig {
        let mut cfg = RouterConfig::ipv4();
        cfg.neighbors = (0..n)
            .map(|i| Neighbor::new(&Topology::node_v4(i), &Topology::tor_v4(i)))
            .collect();
        cfg
    }

    /// Adds an IPv6 session over the veth: fd00:99::1 to fd00:99::2 (IPv6 unicast only).
    pub fn with_ipv6(mut self) -> RouterConfig {
        self.neighbors.push(Neighbor::new(NODE_V6, TOR_V6));
        self
    }

    /// Replaces the sessions with one eBGP multihop session between the loopbacks
    /// 10.99.255.1 (vipd) and 10.99.255.2 (router).
    pub fn multihop(mut self) -> RouterConfig {
        self.neighbors = vec![Neighbor::new(NODE_LO, TOR_LO)];
        self.multihop = true;
        self
    }

    /// Replaces the sessions with one to vipd at `vipd` from the router's address `local`.
    pub fn only_neighbor(mut self, vipd: &str, local: &str) -> RouterConfig {
        self.neighbors = vec![Neighbor::new(vipd, local)];
        self
    }

    /// Adds the direct session over the veth (10.99.0.1 <-> 10.99.0.2) next to the loopback one
    /// of [`RouterConfig::multihop`], with the same settings.
    pub fn and_direct(mut self) -> RouterConfig {
        self.neighbors.push(Neighbor::new(NODE_V4, TOR_V4));
        self
    }

    /// See [`RouterConfig::kernel_ecmp`] (BIRD only).
    pub fn kernel_ecmp(mut self) -> RouterConfig {
        self.kernel_ecmp = true;
        self
    }

    /// BFD on every session, 300 ms × 3.
    pub fn bfd(mut self, mode: BfdMode) -> RouterConfig {
        self.bfd = Some(mode);
        self
    }

    pub fn password(mut self, password: &str) -> RouterConfig {
        self.password = Some(password.to_string());
        self
    }

    pub fn port(mut self, port: u16) -> RouterConfig {
        self.port = port;
        self
    }

    pub fn active(mut self) -> RouterConfig {
        self.passive = false;
        self
    }

    pub fn hold_time(mut self, seconds: u16) -> RouterConfig {
        self.hold_time = seconds;
        self
    }

    /// Keepalive at a third of the hold time (RFC 4271 §10's suggestion), at least 1 s.
    pub fn keepalive(&self) -> u16 {
        (self.hold_time / 3).max(1)
    }
}

/// A real BGP daemon in the tor namespace. Created stopped; dropping it stops it.
pub trait Router {
    /// Short name for messages: "bird", "frr", "gobgp".
    const NAME: &'static str;
    /// Binaries it needs, with how to install them.
    const NEEDS: &'static [(&'static str, &'static str)];

    /// Writes the configuration into a fresh temporary directory; does not start anything.
    fn new(topo: &Topology, cfg: RouterConfig) -> Self;
    /// Starts the daemon(s) and waits until their control interface answers.
    fn start(&mut self);
    fn stop(&mut self);
    /// SIGKILL to every process of the router, as a crash: no NOTIFICATION, no Cease, the kernel
    /// just closes its TCP connections. Waits until they have exited.
    fn kill(&mut self);
    /// Stop, then start with the same configuration: the routing table starts empty again.
    fn restart(&mut self) {
        self.stop();
        self.start();
    }
    /// [`Router::kill`], then start with the same configuration and an empty table.
    fn restart_after_kill(&mut self) {
        self.kill();
        self.start();
    }
    /// True when every configured session is Established.
    fn session_established(&self) -> bool;
    /// The best route for exactly `prefix` ("198.18.0.10/32", "fd00:98::10/128"), if any.
    fn route(&self, prefix: &str) -> Option<RouteInfo>;
    /// How many BGP routes the router holds for `family`.
    fn route_count(&self, family: Family) -> usize;
    /// The end of the router's own log, for failure messages.
    fn log_tail(&self) -> String;
}

/// A router whose whole IPv4 BGP table can be read at once (the chaos test compares 200
/// prefixes every second; one CLI call per prefix would be too slow).
pub trait Tables {
    /// Every IPv4 BGP prefix with the next hop of each path (sorted).
    fn table4(&self) -> std::collections::BTreeMap<String, Vec<std::net::IpAddr>>;
}

/// Parses each number in an AS path as printed by BIRD ("65000 65001", sets as "{65002 65003}"),
/// flattening sets.
pub fn as_numbers(text: &str) -> Vec<u32> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

//! [I/O] Local interface addresses: router id fallback, `bgp_routerinterface`, next hops of the other
//! family (`mpbgp_nexthop=auto_*`) and on-link checks for IPv6 link-local next hops.
//!
//! [`Interfaces`] is a snapshot; reading one is the only I/O here, the lookups are pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One address on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub ifname: String,
    pub ip: IpAddr,
    pub prefix_len: u8,
}

/// All addresses of this host (network namespace) at one moment.
#[derive(Debug, Clone, Default)]
pub struct Interfaces(pub Vec<IfAddr>);

impl Interfaces {
    pub fn read() -> std::io::Result<Self> {
        Ok(Interfaces(
            if_addrs::get_if_addrs()?
                .into_iter()
                .map(|i| {
                    let (ip, prefix_len) = match i.addr {
                        if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), a.prefixlen),
                        if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), a.prefixlen),
                    };
                    IfAddr {
                        ifname: i.name,
                        ip,
                        prefix_len,
                    }
                })
                .collect(),
        ))
    }

    /// The interface that holds `ip`.
    pub fn holding(&self, ip: IpAddr) -> Option<&str> {
        self.0
            .iter()
            .find(|a| a.ip == ip)
            .map(|a| a.ifname.as_str())
    }

    /// The interface with a subnet (not a host address: /32, /128) that contains `ip`, the
    /// longest prefix first; never `lo`. ARP mode's `auto` interface for a VIP.
    pub fn subnet_holding(&self, ip: IpAddr) -> Option<&str> {
        self.0
            .iter()
            .filter(|a| a.ifname != "lo" && a.ip.is_ipv4() == ip.is_ipv4())
            .filter(|a| a.prefix_len < if ip.is_ipv4() { 32 } else { 128 })
            .filter(|a| ipnet::IpNet::new(a.ip, a.prefix_len).is_ok_and(|n| n.contains(&ip)))
            .max_by_key(|a| a.prefix_len)
            .map(|a| a.ifname.as_str())
    }

    /// Every connected prefix (address and prefix length), e.g. to tell whether a peer is one
    /// hop away.
    pub fn prefixes(&self) -> Vec<ipnet::IpNet> {
        self.0
            .iter()
            .filter_map(|a| ipnet::IpNet::new(a.ip, a.prefix_len).ok())
            .map(|n| n.trunc())
            .collect()
    }

    pub fn first_v4(&self, ifname: &str) -> Option<Ipv4Addr> {
        self.0.iter().find_map(|a| match a.ip {
            IpAddr::V4(v4) if a.ifname == ifname => Some(v4),
            _ => None,
        })
    }

    /// A global (not link-local) IPv6 address of `ifname`.
    pub fn global_v6(&self, ifname: &str) -> Option<Ipv6Addr> {
        self.0.iter().find_map(|a| match a.ip {
            IpAddr::V6(v6) if a.ifname == ifname && !is_link_local(v6) && !v6.is_loopback() => {
                Some(v6)
            }
            _ => None,
        })
    }

    pub fn link_local_v6(&self, ifname: &str) -> Option<Ipv6Addr> {
        self.0.iter().find_map(|a| match a.ip {
            IpAddr::V6(v6) if a.ifname == ifname && is_link_local(v6) => Some(v6),
            _ => None,
        })
    }

    /// Whether `peer` lies in a subnet connected to `ifname` (so it can use a link-local next hop).
    pub fn on_link(&self, ifname: &str, peer: IpAddr) -> bool {
        self.0.iter().any(|a| {
            a.ifname == ifname
                && ipnet::IpNet::new(a.ip, a.prefix_len)
                    .map(|net| net.contains(&peer))
                    .unwrap_or(false)
        })
    }

    /// The lowest non-loopback IPv4 address: BIRD's and FRR's router-id fallback.
    pub fn lowest_v4(&self) -> Option<Ipv4Addr> {
        self.0
            .iter()
            .filter_map(|a| match a.ip {
                IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
                _ => None,
            })
            .min()
    }

    /// The other family's address for a session bound to `local` on `ifname`
    /// (kube-vip's `auto_sourceip` / `auto_sourceif`).
    pub fn other_family(&self, ifname: &str, local: IpAddr) -> Option<IpAddr> {
        match local {
            IpAddr::V4(_) => self.global_v6(ifname).map(IpAddr::V6),
            IpAddr::V6(_) => self.first_v4(ifname).map(IpAddr::V4),
        }
    }
}

fn is_link_local(v6: Ipv6Addr) -> bool {
    (v6.segments()[0] & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Interfaces {
        let a = |ifname: &str, ip: &str, prefix_len| IfAddr {
            ifname: ifname.into(),
            ip: ip.parse().unwrap(),
            prefix_len,
        };
        Interfaces(vec![
            a("lo", "127.0.0.1", 8),
            a("eth0", "10.99.0.1", 24),
            a("eth0", "fd00:99::1", 64),
            a("eth0", "fe80::1", 64),
            a("eth1", "192.0.2.9", 24),
        ])
    }

    #[test]
    fn lookups_find_the_right_addresses() {
        let s = snapshot();
        assert_eq!(s.holding("10.99.0.1".parse().unwrap()), Some("eth0"));
        assert_eq!(
            s.subnet_holding("10.99.0.50".parse().unwrap()),
            Some("eth0")
        );
        assert_eq!(
            s.subnet_holding("192.0.2.50".parse().unwrap()),
            Some("eth1")
        );
        assert_eq!(
            s.subnet_holding("fd00:99::50".parse().unwrap()),
            Some("eth0")
        );
        assert_eq!(s.subnet_holding("127.0.0.2".parse().unwrap()), None);
        assert_eq!(s.subnet_holding("198.51.100.1".parse().unwrap()), None);
        assert_eq!(s.global_v6("eth0"), Some("fd00:99::1".parse().unwrap()));
        assert_eq!(s.link_local_v6("eth0"), Some("fe80::1".parse().unwrap()));
        assert_eq!(s.lowest_v4(), Some("10.99.0.1".parse().unwrap()));
        assert!(s.on_link("eth0", "fd00:99::2".parse().unwrap()));
        assert!(!s.on_link("eth0", "fd00:98::2".parse().unwrap()));
        assert_eq!(
            s.other_family("eth0", "10.99.0.1".parse().unwrap()),
            Some("fd00:99::1".parse().unwrap())
        );
        assert_eq!(
            s.other_family("eth0", "fd00:99::1".parse().unwrap()),
            Some("10.99.0.1".parse().unwrap())
        );
    }
}

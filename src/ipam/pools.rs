//! [pure] The kube-vip-cloud-provider ConfigMap (`kubevip` in `kube-system` by default) read as
//! address pools: [`Pools::parse`] turns its `data` into one [`Scope`] per namespace plus the
//! global one, with a typed [`PoolError`] for every entry it could not use.
//!
//! Keys (values are comma-separated lists; blanks around entries and empty entries are ignored):
//! - `cidr-<ns>` / `range-<ns>` (`first-last`): addresses for Services of namespace `<ns>` only;
//!   `cidr-global` / `range-global`: for every namespace. IPv4 and IPv6, overlaps allowed (the
//!   pool is the union).
//! - `allow-share-<ns>` / `allow-share-global`: IPv4 sharing between Services whose ports differ.
//! - `interface-<ns>` / `interface-global`: written as `kube-vip.io/serviceInterface`.
//! - `search-order: desc`: allocate from the top. `skip-end-ips-in-cidr: true`: leave out the
//!   network and broadcast address of each IPv4 CIDR shorter than /31.
//!
//! A malformed entry is skipped and reported; the other entries of the same key keep working.
//! Unknown keys are ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `search-order`: `asc` (default) or `desc`.
pub const KEY_SEARCH_ORDER: &str = "search-order";
/// `skip-end-ips-in-cidr`: `true` leaves out each IPv4 CIDR's network and broadcast address.
pub const KEY_SKIP_END_IPS: &str = "skip-end-ips-in-cidr";
/// The scope name that serves every namespace (`cidr-global`, …).
pub const GLOBAL: &str = "global";

const PREFIX_CIDR: &str = "cidr-";
const PREFIX_RANGE: &str = "range-";
const PREFIX_ALLOW_SHARE: &str = "allow-share-";
const PREFIX_INTERFACE: &str = "interface-";

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The other family (dual-stack's second choice).
    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Which end of a pool allocation starts from (`search-order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchOrder {
    /// Lowest free address first (the default).
    #[default]
    Ascending,
    /// Highest free address first (`search-order: desc`).
    Descending,
}

/// A set of addresses of one family, as sorted, disjoint, non-adjacent inclusive ranges of
/// the address as a number (IPv4 in the low 32 bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSet {
    family: Family,
    ranges: Vec<(u128, u128)>,
    /// The keys that gave addresses to the set, in key order (for messages).
    keys: Vec<String>,
}

impl AddrSet {
    pub fn new(family: Family) -> AddrSet {
        AddrSet {
            family,
            ranges: Vec::new(),
            keys: Vec::new(),
        }
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ConfigMap keys the addresses came from (`cidr-default`, `range-global`).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let Some(x) = number(ip, self.family) else {
            return false;
        };
        self.ranges.iter().any(|&(lo, hi)| lo <= x && x <= hi)
    }

    /// The ranges as first and last address, ascending.
    pub fn ranges(&self) -> impl DoubleEndedIterator<Item = (IpAddr, IpAddr)> + '_ {
        self.ranges
            .iter()
            .map(|&(lo, hi)| (address(self.family, lo), address(self.family, hi)))
    }

    /// Adds `first..=last` from `key` (same family as the set, `first <= last`: the callers
    /// check).
    fn insert(&mut self, key: &str, first: u128, last: u128) {
        if !self.keys.iter().any(|k| k == key) {
            self.keys.push(key.to_owned());
        }
        let mut lo = first;
        let mut hi = last;
        // Keep the ranges that neither overlap nor touch the new one; absorb the others.
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        for &(a, b) in &self.ranges {
            if b.saturating_add(1) < lo || hi.saturating_add(1) < a {
                kept.push((a, b));
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        kept.push((lo, hi));
        kept.sort_unstable();
        self.ranges = kept;
    }

    /// Every address, in `order`, lazily (pools may be an IPv6 /64), starting at `from`
    /// (inclusive) when given: `from` and above ascending, `from` and below descending.
    pub fn iter_from(
        &self,
        order: SearchOrder,
        from: Option<&IpAddr>,
    ) -> Box<dyn Iterator<Item = IpAddr> + '_> {
        let family = self.family;
        let from = from.and_then(|ip| number(ip, family));
        match order {
            SearchOrder::Ascending => {
                let start = from.unwrap_or(u128::MIN);
                Box::new(
                    self.ranges
                        .iter()
                        .filter(move |&&(_, hi)| hi >= start)
                        .flat_map(move |&(lo, hi)| {
                            (lo.max(start)..=hi).map(move |x| address(family, x))
                        }),
                )
            }
            SearchOrder::Descending => {
                let start = from.unwrap_or(u128::MAX);
                Box::new(
                    self.ranges
                        .iter()
                        .rev()
                        .filter(move |&&(lo, _)| lo <= start)
                        .flat_map(move |&(lo, hi)| {
                            (lo..=hi.min(start)).rev().map(move |x| address(family, x))
                        }),
                )
            }
        }
    }
}

/// `ip` as a number, if it is of `family`.
fn number(ip: &IpAddr, family: Family) -> Option<u128> {
    match (ip, family) {
        (IpAddr::V4(a), Family::V4) => Some(u128::from(u32::from(*a))),
        (IpAddr::V6(a), Family::V6) => Some(u128::from(*a)),
        _ => None,
    }
}

fn address(family: Family, x: u128) -> IpAddr {
    match family {
        // Proof: every IPv4 number in a set came from a u32 (`number`), so it fits.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(x).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(x)),
    }
}

/// The pools and settings that serve one namespace, or every namespace (`global`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The namespace, or `global`.
    pub name: String,
    /// IPv4 addresses of `cidr-<scope>` and `range-<scope>`.
    pub v4: AddrSet,
    /// IPv6 addresses of `cidr-<scope>` and `range-<scope>`.
    pub v6: AddrSet,
    /// `allow-share-<scope>`, if present and valid.
    pub allow_share: Option<bool>,
    /// `interface-<scope>`, if present and not empty.
    pub interface: Option<String>,
    /// Entries of this scope's keys vipd could not use (for `global`, also the settings).
    pub problems: Vec<PoolError>,
}

impl Scope {
    fn new(name: &str) -> Self {
        Scope {
            name: name.to_owned(),
            v4: AddrSet::new(Family::V4),
            v6: AddrSet::new(Family::V6),
            allow_share: None,
            interface: None,
            problems: Vec::new(),
        }
    }

    /// The pool of `family`.
    pub fn set(&self, family: Family) -> &AddrSet {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    fn set_mut(&mut self, family: Family) -> &mut AddrSet {
        match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }
}

/// The whole ConfigMap, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pools {
    /// `<ns>` → the scope of the `*-<ns>` keys.
    pub namespaces: BTreeMap<String, Scope>,
    /// The `*-global` keys, and the problems of the settings keys.
    pub global: Scope,
    pub order: SearchOrder,
    pub skip_end_ips: bool,
}

impl Pools {
    /// Parses the ConfigMap's `data`. Never fails: what cannot be used is in the scopes'
    /// `problems`.
    pub fn parse(data: &BTreeMap<String, String>) -> Pools {
        let mut pools = Pools {
            namespaces: BTreeMap::new(),
            global: Scope::new(GLOBAL),
            order: SearchOrder::default(),
            skip_end_ips: false,
        };
        // The settings first: skip-end-ips changes how CIDRs read.
        if let Some(value) = data.get(KEY_SEARCH_ORDER) {
            match value.trim() {
                "desc" => pools.order = SearchOrder::Descending,
                "asc" | "" => {}
                _ => pools.global.problems.push(PoolError::InvalidSearchOrder {
                    value: value.clone(),
                }),
            }
        }
        if let Some(value) = data.get(KEY_SKIP_END_IPS) {
            match parse_bool(value) {
                Some(b) => pools.skip_end_ips = b,
                None => pools.global.problems.push(PoolError::InvalidBool {
                    key: KEY_SKIP_END_IPS.to_owned(),
                    value: value.clone(),
                }),
            }
        }
        for (key, value) in data {
            let Some((kind, scope_name)) = split_key(key) else {
                continue; // unknown key (or a setting, read above)
            };
            let skip_end_ips = pools.skip_end_ips;
            let scope = pools.scope_mut(scope_name);
            match kind {
                KeyKind::Cidr | KeyKind::Range => {
                    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                        let parsed = if kind == KeyKind::Cidr {
                            parse_cidr(key, entry, skip_end_ips)
                        } else {
                            parse_range(key, entry)
                        };
                        match parsed {
                            Ok(Parsed {
                                family,
                                first,
                                last,
                                note,
                            }) => {
                                scope.set_mut(family).insert(key, first, last);
                                scope.problems.extend(note);
                            }
                            Err(p) => scope.problems.push(p),
                        }
                    }
                }
                KeyKind::AllowShare => match parse_bool(value) {
                    Some(b) => scope.allow_share = Some(b),
                    None => scope.problems.push(PoolError::InvalidBool {
                        key: key.clone(),
                        value: value.clone(),
                    }),
                },
                KeyKind::Interface => {
                    let name = value.trim();
                    if !name.is_empty() {
                        scope.interface = Some(name.to_owned());
                    }
                }
            }
        }
        pools
    }

    fn scope_mut(&mut self, name: &str) -> &mut Scope {
        if name == GLOBAL {
            &mut self.global
        } else {
            self.namespaces
                .entry(name.to_owned())
                .or_insert_with(|| Scope::new(name))
        }
    }

    /// The scopes serving `namespace`: its own first, then the global one.
    pub fn scopes_for<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Scope> + 'a {
        self.namespaces
            .get(namespace)
            .into_iter()
            .chain(std::iter::once(&self.global))
    }

    /// `allow-share-<namespace>` if set, else `allow-share-global`, else false.
    pub fn allow_share(&self, namespace: &str) -> bool {
        self.scopes_for(namespace)
            .find_map(|s| s.allow_share)
            .unwrap_or(false)
    }

    /// `interface-<namespace>` if set, else `interface-global`.
    pub fn interface(&self, namespace: &str) -> Option<&str> {
        self.scopes_for(namespace)
            .find_map(|s| s.interface.as_deref())
    }

    /// The problems of every key a Service of `namespace` reads.
    pub fn problems_for<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a PoolError> {
        self.scopes_for(namespace).flat_map(|s| s.problems.iter())
    }

    /// Every problem, namespaces in name order, then the global keys and settings.
    pub fn problems(&self) -> impl Iterator<Item = &PoolError> {
        self.namespaces
            .values()
            .chain(std::iter::once(&self.global))
            .flat_map(|s| s.problems.iter())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Cidr,
    Range,
    AllowShare,
    Interface,
}

/// `cidr-finance` → (Cidr, "finance"). Namespace names may hold '-' (`cidr-kube-system`).
fn split_key(key: &str) -> Option<(KeyKind, &str)> {
    let (kind, rest) = [
        (KeyKind::Cidr, PREFIX_CIDR),
        (KeyKind::Range, PREFIX_RANGE),
        (KeyKind::AllowShare, PREFIX_ALLOW_SHARE),
        (KeyKind::Interface, PREFIX_INTERFACE),
    ]
    .into_iter()
    .find_map(|(kind, prefix)| key.strip_prefix(prefix).map(|rest| (kind, rest)))?;
    (!rest.is_empty()).then_some((kind, rest))
}

/// Go's `strconv.ParseBool`, which kube-vip-cloud-provider uses for `allow-share-*`.
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

struct Parsed {
    family: Family,
    first: u128,
    last: u128,
    /// A usable entry worth a word (host bits set).
    note: Option<PoolError>,
}

fn parse_cidr(key: &str, entry: &str, skip_end_ips: bool) -> Result<Parsed, PoolError> {
    let net: ipnet::IpNet = entry.parse().map_err(|_| PoolError::InvalidCidr {
        key: key.to_owned(),
        entry: entry.to_owned(),
    })?;
    if entry == "0.0.0.0/32" {
        // kube-vip-cloud-provider's "pool" that hands out 0.0.0.0 (DHCP) to every Service.
        return Err(PoolError::DhcpPool {
            key: key.to_owned(),
        });
    }
    let network = net.trunc();
    // Go's netip.ParsePrefix keeps host bits and IPSetBuilder.AddPrefix drops them, so
    // kube-vip-cloud-provider reads 192.168.0.220/29 as 192.168.0.216/29; vipd does the same
    // and says so.
    let note = (network != net).then(|| PoolError::HostBitsSet {
        key: key.to_owned(),
        entry: entry.to_owned(),
        network,
    });
    let (family, mut first, mut last) = match network {
        ipnet::IpNet::V4(n) => (
            Family::V4,
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        ipnet::IpNet::V6(n) => (
            Family::V6,
            u128::from(n.network()),
            u128::from(n.broadcast()),
        ),
    };
    if skip_end_ips && family == Family::V4 && network.prefix_len() <= 30 {
        first += 1;
        last -= 1;
    }
    Ok(Parsed {
        family,
        first,
        last,
        note,
    })
}

fn parse_range(key: &str, entry: &str) -> Result<Parsed, PoolError> {
    let invalid = || PoolError::InvalidRange {
        key: key.to_owned(),
        entry: entry.to_owned(),
    };
    let (a, b) = entry.split_once('-').ok_or_else(invalid)?;
    let first: IpAddr = a.trim().parse().map_err(|_| invalid())?;
    let last: IpAddr = b.trim().parse().map_err(|_| invalid())?;
    // As decide reads Service addresses: ::ffff:a.b.c.d is the IPv4 address a.b.c.d.
    let (first, last) = (first.to_canonical(), last.to_canonical());
    let family = Family::of(&first);
    let (Some(lo), Some(hi)) = (number(&first, family), number(&last, family)) else {
        return Err(PoolError::MixedFamilies {
            key: key.to_owned(),
            entry: entry.to_owned(),
        });
    };
    if lo > hi {
        return Err(PoolError::ReversedRange {
            key: key.to_owned(),
            entry: entry.to_owned(),
        });
    }
    Ok(Parsed {
        family,
        first: lo,
        last: hi,
        note: None,
    })
}

/// An entry of the ConfigMap vipd cannot use as written. Each names the key and the value;
/// the I/O side logs it and raises it as a Warning on the Services that read the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error(
        "IPAM ConfigMap {key}: {entry:?} is not a CIDR (address/length); the entry is skipped"
    )]
    InvalidCidr { key: String, entry: String },
    #[error(
        "IPAM ConfigMap {key}: {entry:?} is not a range of two addresses (first-last); the entry is skipped"
    )]
    InvalidRange { key: String, entry: String },
    #[error("IPAM ConfigMap {key}: range {entry:?} mixes IPv4 and IPv6; the entry is skipped")]
    MixedFamilies { key: String, entry: String },
    #[error("IPAM ConfigMap {key}: range {entry:?} ends before it starts; the entry is skipped")]
    ReversedRange { key: String, entry: String },
    #[error(
        "IPAM ConfigMap {key}: {entry:?} has host bits set; vipd uses {network} ({} to {}), as kube-vip-cloud-provider does",
        network.network(),
        network.broadcast()
    )]
    HostBitsSet {
        key: String,
        entry: String,
        network: ipnet::IpNet,
    },
    #[error(
        "IPAM ConfigMap {key}: 0.0.0.0/32 (a pool handing every Service DHCP) is not supported by vipd's allocator yet; the entry is skipped (a Service annotated kube-vip.io/loadbalancerIPs: 0.0.0.0 gets its address by DHCP from the agents)"
    )]
    DhcpPool { key: String },
    #[error("IPAM ConfigMap {key}: {value:?} is neither true nor false; false is used")]
    InvalidBool { key: String, value: String },
    #[error(
        "IPAM ConfigMap search-order: {value:?} is neither \"asc\" nor \"desc\"; ascending order is used"
    )]
    InvalidSearchOrder { value: String },
}

//! Fuzz target: kube-vip-cloud-provider's ConfigMap (`cidr-<ns>`, `range-<ns>`,
//! `allow-share-<ns>`, `interface-<ns>`, `search-order`, `skip-end-ips-in-cidr`) as
//! `vipd::ipam::Pools::parse` reads it, and the allocator `vipd::ipam::plan` handing addresses
//! from it to two Services that ask for one.
//!
//! Input: UTF-8 text, one `key=value` per line (a line without `=` is a key with an empty
//! value), i.e. the ConfigMap's `data`.
//!
//! Asserted (besides "no panic"):
//! - parsing is deterministic;
//! - each pool is what `AddrSet` promises: ranges of its own family, ascending, neither
//!   overlapping nor touching; iteration from either end yields only pool members;
//! - every usable `cidr-`/`range-` entry, read again independently (std/ipnet parsing), is in
//!   its scope's pool: both ends (minus network and broadcast with `skip-end-ips-in-cidr`);
//! - problems render;
//! - the allocator hands out each address once (the Services list no ports, so they can never
//!   share), at most one per family per Service, never `0.0.0.0`/`::` or an IPv4 address
//!   ending in .0 or .255, and only from a pool serving the Service's namespace.

#![no_main]

use k8s_openapi::api::core::v1::Service;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, LazyLock};
use vipd::decide::DecideConfig;
use vipd::ipam::pools::{AddrSet, Scope, SearchOrder};
use vipd::ipam::{self, Family, Pools};

/// Two Services of vipd's without an address: dual-stack-preferring in `default`, plain in
/// `kube-system` (the namespaces the seed corpus names).
static SERVICES: LazyLock<Vec<Arc<Service>>> = LazyLock::new(|| {
    [
        serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-web",
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"type": "LoadBalancer", "ipFamilyPolicy": "PreferDualStack",
                     "ipFamilies": ["IPv4", "IPv6"]},
        }),
        serde_json::json!({
            "metadata": {"name": "dns", "namespace": "kube-system", "uid": "uid-dns",
                         "creationTimestamp": "2024-01-01T00:00:01Z"},
            "spec": {"type": "LoadBalancer"},
        }),
    ]
    .into_iter()
    .map(|v| Arc::new(serde_json::from_value(v).expect("a valid Service")))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config: BTreeMap<String, String> = text
        .lines()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect();

    let pools = Pools::parse(&config);
    assert_eq!(pools, Pools::parse(&config), "not deterministic");
    for scope in pools.namespaces.values().chain(std::iter::once(&pools.global)) {
        check_set(&scope.v4);
        check_set(&scope.v6);
    }
    for p in pools.problems() {
        assert!(!p.to_string().is_empty());
    }
    for (key, value) in &config {
        entries_are_pooled(&pools, key, value);
    }
    for ns in pools
        .namespaces
        .keys()
        .map(String::as_str)
        .chain(["default", "kube-system", "global", "nowhere"])
    {
        let _ = pools.allow_share(ns);
        let _ = pools.interface(ns);
        let _ = pools.problems_for(ns).count();
    }
    check_plan(&pools, &config);
});

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn check_set(set: &AddrSet) {
    let mut previous_end: Option<u128> = None;
    for (first, last) in set.ranges() {
        assert_eq!(Family::of(&first), set.family());
        assert_eq!(Family::of(&last), set.family());
        let (lo, hi) = (number(first), number(last));
        assert!(lo <= hi, "range {first}..{last} reversed");
        if let Some(end) = previous_end {
            assert!(end.saturating_add(1) < lo, "ranges overlap or touch at {first}");
        }
        previous_end = Some(hi);
        assert!(set.contains(&first) && set.contains(&last));
    }
    assert_eq!(set.is_empty(), set.ranges().next().is_none());
    for order in [SearchOrder::Ascending, SearchOrder::Descending] {
        for ip in set.iter_from(order, None).take(4) {
            assert!(set.contains(&ip), "{ip} iterated but not in the pool");
        }
    }
}

/// First and last address a `cidr-` entry adds, read independently of vipd.
fn cidr_ends(entry: &str, skip_end_ips: bool) -> Option<(IpAddr, IpAddr)> {
    let net: ipnet::IpNet = entry.parse().ok()?;
    if entry == "0.0.0.0/32" {
        return None; // the DHCP "pool", refused
    }
    let net = net.trunc();
    let (mut lo, mut hi) = (number(net.network()), number(net.broadcast()));
    if skip_end_ips && net.addr().is_ipv4() && net.prefix_len() <= 30 {
        lo += 1;
        hi -= 1;
    }
    Some(if net.addr().is_ipv4() {
        (
            IpAddr::V4(Ipv4Addr::from(lo as u32)),
            IpAddr::V4(Ipv4Addr::from(hi as u32)),
        )
    } else {
        (IpAddr::V6(Ipv6Addr::from(lo)), IpAddr::V6(Ipv6Addr::from(hi)))
    })
}

/// First and last address of a `range-` entry (`first-last`), read independently of vipd.
fn range_ends(entry: &str) -> Option<(IpAddr, IpAddr)> {
    let (a, b) = entry.split_once('-')?;
    let first = a.trim().parse::<IpAddr>().ok()?.to_canonical();
    let last = b.trim().parse::<IpAddr>().ok()?.to_canonical();
    (first.is_ipv4() == last.is_ipv4() && number(first) <= number(last)).then_some((first, last))
}

fn entries_are_pooled(pools: &Pools, key: &str, value: &str) {
    let (cidr, scope_name) = if let Some(s) = key.strip_prefix("cidr-") {
        (true, s)
    } else if let Some(s) = key.strip_prefix("range-") {
        (false, s)
    } else {
        return;
    };
    if scope_name.is_empty() {
        return;
    }
    let scope: &Scope = if scope_name == "global" {
        &pools.global
    } else {
        pools
            .namespaces
            .get(scope_name)
            .unwrap_or_else(|| panic!("key {key:?} made no scope"))
    };
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let ends = if cidr {
            cidr_ends(entry, pools.skip_end_ips)
        } else {
            range_ends(entry)
        };
        if let Some((first, last)) = ends {
            let set = scope.set(Family::of(&first));
            assert!(
                set.contains(&first) && set.contains(&last),
                "{key}: {entry:?} ({first}..{last}) is not in the pool"
            );
        }
    }
}

fn check_plan(pools: &Pools, config: &BTreeMap<String, String>) {
    let plan = ipam::plan(&SERVICES, Some(config), &DecideConfig::default());
    let mut handed_out = BTreeSet::new();
    for a in &plan.allocations {
        assert!(!a.addresses.is_empty(), "an allocation without addresses");
        let mut families = BTreeSet::new();
        for ip in &a.addresses {
            assert!(!ip.is_unspecified(), "{}: allocated {ip}", a.service);
            if let IpAddr::V4(v4) = ip {
                let last = v4.octets()[3];
                assert!(last != 0 && last != 255, "{}: allocated {ip}", a.service);
            }
            let family = Family::of(ip);
            assert!(families.insert(family), "{}: two {family} addresses", a.service);
            assert!(
                pools
                    .scopes_for(&a.service.namespace)
                    .any(|s| s.set(family).contains(ip)),
                "{}: {ip} is from no pool serving {}",
                a.service,
                a.service.namespace
            );
            assert!(handed_out.insert(*ip), "{ip} handed out twice");
        }
        let _ = a.merge_patch();
        let _ = a.annotation_value();
    }
    for problems in plan.problems.values() {
        for p in problems {
            assert!(!p.to_string().is_empty());
        }
    }
}

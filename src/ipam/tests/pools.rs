//! The ConfigMap keys, one by one.

use super::*;
use crate::ipam::pools::{AddrSet, Scope, SearchOrder, GLOBAL};

fn ranges(set: &AddrSet) -> Vec<(IpAddr, IpAddr)> {
    set.ranges().collect()
}

fn r(first: &str, last: &str) -> (IpAddr, IpAddr) {
    (ip(first), ip(last))
}

fn ns<'a>(p: &'a Pools, name: &str) -> &'a Scope {
    &p.namespaces[name]
}

#[test]
fn a_cidr_key_serves_its_namespace_with_every_address_of_the_block() {
    let p = Pools::parse(&cm(&[("cidr-default", "192.168.0.200/29")]));
    assert_eq!(p.namespaces.keys().collect::<Vec<_>>(), ["default"]);
    let s = ns(&p, "default");
    assert_eq!(ranges(&s.v4), [r("192.168.0.200", "192.168.0.207")]);
    assert!(s.v6.is_empty());
    assert_eq!(s.v4.keys(), ["cidr-default"]);
    assert!(p.global.v4.is_empty() && p.problems().next().is_none());
    assert_eq!(p.order, SearchOrder::Ascending);
}

#[test]
fn global_keys_serve_every_namespace_after_its_own() {
    let p = Pools::parse(&cm(&[
        ("cidr-global", "192.168.0.240/29"),
        ("range-global", "192.168.1.220-192.168.1.230"),
        ("range-development", "192.168.0.210-192.168.0.219"),
    ]));
    assert_eq!(p.global.name, GLOBAL);
    assert_eq!(
        ranges(&p.global.v4),
        [
            r("192.168.0.240", "192.168.0.247"),
            r("192.168.1.220", "192.168.1.230")
        ]
    );
    assert_eq!(p.global.v4.keys(), ["cidr-global", "range-global"]);
    let names = |n: &str| p.scopes_for(n).map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names("development"), ["development", "global"]);
    assert_eq!(names("finance"), ["global"]);
}

#[test]
fn several_entries_of_one_namespace_merge_overlaps_included() {
    let p = Pools::parse(&cm(&[
        (
            "range-a",
            "192.168.0.10-192.168.0.11, 192.168.0.10-192.168.0.13,,",
        ),
        ("cidr-a", "192.168.0.14/31,10.0.0.0/30"),
    ]));
    assert_eq!(
        ranges(&ns(&p, "a").v4),
        [r("10.0.0.0", "10.0.0.3"), r("192.168.0.10", "192.168.0.15")]
    );
    assert_eq!(ns(&p, "a").v4.keys(), ["cidr-a", "range-a"]);
    assert!(p.problems().next().is_none());
}

#[test]
fn ipv6_cidrs_and_ranges_fill_the_ipv6_pool_next_to_the_ipv4_one() {
    let p = Pools::parse(&cm(&[
        ("cidr-a", "fe80::10/127,192.168.0.200/30,fe80::fe/127"),
        (
            "range-a",
            "fe80::ffff-fe80::1:3,::ffff:10.0.0.1-::ffff:10.0.0.2",
        ),
    ]));
    let s = ns(&p, "a");
    assert_eq!(s.v6.keys(), ["cidr-a", "range-a"]);
    assert_eq!(
        ranges(&s.v6),
        [
            r("fe80::10", "fe80::11"),
            r("fe80::fe", "fe80::ff"),
            r("fe80::ffff", "fe80::1:3")
        ]
    );
    // IPv4-mapped addresses are IPv4, as decide reads Service addresses.
    assert_eq!(
        ranges(&s.v4),
        [
            r("10.0.0.1", "10.0.0.2"),
            r("192.168.0.200", "192.168.0.203")
        ]
    );
}

#[test]
fn skip_end_ips_drops_network_and_broadcast_of_each_ipv4_cidr_only() {
    let p = Pools::parse(&cm(&[
        ("skip-end-ips-in-cidr", "true"),
        (
            "cidr-a",
            "192.168.0.200/30,192.168.1.0/31,192.168.2.7/32,fe80::10/126",
        ),
        ("range-a", "192.168.3.0-192.168.3.3"),
    ]));
    assert!(p.skip_end_ips);
    let s = ns(&p, "a");
    assert_eq!(
        ranges(&s.v4),
        [
            r("192.168.0.201", "192.168.0.202"),
            // RFC 3021: a /31 has no network or broadcast address.
            r("192.168.1.0", "192.168.1.1"),
            r("192.168.2.7", "192.168.2.7"),
            // Ranges are taken as written.
            r("192.168.3.0", "192.168.3.3"),
        ]
    );
    assert_eq!(ranges(&s.v6), [r("fe80::10", "fe80::13")]);
}

#[test]
fn skip_end_ips_applies_to_each_cidr_as_written() {
    let p = Pools::parse(&cm(&[
        ("skip-end-ips-in-cidr", "true"),
        ("cidr-a", "192.168.0.200/30,192.168.0.200/29"),
    ]));
    assert_eq!(
        ranges(&ns(&p, "a").v4),
        [r("192.168.0.201", "192.168.0.206")]
    );
}

#[test]
fn a_cidr_with_host_bits_is_its_network_as_in_kube_vip_cloud_provider_and_says_so() {
    // The guide's own finance example: 192.168.0.220/29 is 192.168.0.216-223.
    let p = Pools::parse(&cm(&[(
        "cidr-finance",
        "192.168.0.220/29,192.168.0.230/29",
    )]));
    assert_eq!(
        ranges(&ns(&p, "finance").v4),
        [r("192.168.0.216", "192.168.0.231")]
    );
    let problems: Vec<String> = p.problems().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "IPAM ConfigMap cidr-finance: \"192.168.0.220/29\" has host bits set; vipd uses \
             192.168.0.216/29 (192.168.0.216 to 192.168.0.223), as kube-vip-cloud-provider does",
            "IPAM ConfigMap cidr-finance: \"192.168.0.230/29\" has host bits set; vipd uses \
             192.168.0.224/29 (192.168.0.224 to 192.168.0.231), as kube-vip-cloud-provider does",
        ]
    );
}

#[test]
fn malformed_entries_are_named_with_their_key_and_the_valid_ones_kept() {
    let p = Pools::parse(&cm(&[
        ("cidr-a", "10.0.0.0/24,banana,10.0.1.0/33,10.0.9.9"),
        (
            "range-a",
            "10.0.2.1-10.0.2.5,10.0.3.9-10.0.3.1,10.0.4.1-fd00::1,10.0.5.1,10.0.6.1-x,1-2-3",
        ),
        ("cidr-global", "0.0.0.0/32"),
    ]));
    assert_eq!(
        ranges(&ns(&p, "a").v4),
        [r("10.0.0.0", "10.0.0.255"), r("10.0.2.1", "10.0.2.5")]
    );
    let key = |k: &str| k.to_owned();
    let entry = |e: &str| e.to_owned();
    assert_eq!(
        ns(&p, "a").problems,
        [
            PoolError::InvalidCidr {
                key: key("cidr-a"),
                entry: entry("banana")
            },
            PoolError::InvalidCidr {
                key: key("cidr-a"),
                entry: entry("10.0.1.0/33")
            },
            PoolError::InvalidCidr {
                key: key("cidr-a"),
                entry: entry("10.0.9.9")
            },
            PoolError::ReversedRange {
                key: key("range-a"),
                entry: entry("10.0.3.9-10.0.3.1")
            },
            PoolError::MixedFamilies {
                key: key("range-a"),
                entry: entry("10.0.4.1-fd00::1")
            },
            PoolError::InvalidRange {
                key: key("range-a"),
                entry: entry("10.0.5.1")
            },
            PoolError::InvalidRange {
                key: key("range-a"),
                entry: entry("10.0.6.1-x")
            },
            PoolError::InvalidRange {
                key: key("range-a"),
                entry: entry("1-2-3")
            },
        ]
    );
    assert_eq!(
        p.global.problems,
        [PoolError::DhcpPool {
            key: key("cidr-global")
        }]
    );
    assert!(p.global.v4.is_empty());
    assert_eq!(
        ns(&p, "a").problems[0].to_string(),
        "IPAM ConfigMap cidr-a: \"banana\" is not a CIDR (address/length); the entry is skipped"
    );
    // A Service of namespace a reads both scopes' problems; one of b only the global ones.
    assert_eq!(p.problems_for("a").count(), 9);
    assert_eq!(p.problems_for("b").count(), 1);
}

#[test]
fn search_order_desc_reverses_and_anything_else_but_asc_is_a_problem() {
    let order = |v: &str| {
        let p = Pools::parse(&cm(&[("search-order", v)]));
        (p.order, p.global.problems)
    };
    assert_eq!(order("desc"), (SearchOrder::Descending, vec![]));
    assert_eq!(order("asc"), (SearchOrder::Ascending, vec![]));
    assert_eq!(
        order("down"),
        (
            SearchOrder::Ascending,
            vec![PoolError::InvalidSearchOrder {
                value: "down".to_owned()
            }]
        )
    );
}

#[test]
fn booleans_read_as_go_parse_bool_and_anything_else_is_a_problem() {
    for (value, want) in [
        ("true", Some(true)),
        ("1", Some(true)),
        ("True", Some(true)),
        ("false", Some(false)),
        ("F", Some(false)),
    ] {
        let p = Pools::parse(&cm(&[
            ("allow-share-a", value),
            ("skip-end-ips-in-cidr", value),
        ]));
        assert_eq!(ns(&p, "a").allow_share, want, "{value}");
        assert_eq!(p.skip_end_ips, want == Some(true), "{value}");
    }
    let p = Pools::parse(&cm(&[
        ("allow-share-a", "yes"),
        ("skip-end-ips-in-cidr", "on"),
    ]));
    assert_eq!(ns(&p, "a").allow_share, None);
    assert!(!p.skip_end_ips);
    assert_eq!(
        p.problems().cloned().collect::<Vec<_>>(),
        [
            PoolError::InvalidBool {
                key: "allow-share-a".to_owned(),
                value: "yes".to_owned()
            },
            PoolError::InvalidBool {
                key: "skip-end-ips-in-cidr".to_owned(),
                value: "on".to_owned()
            },
        ]
    );
}

#[test]
fn allow_share_and_interface_take_the_namespace_key_then_the_global_one() {
    let p = Pools::parse(&cm(&[
        ("allow-share-global", "true"),
        ("allow-share-finance", "false"),
        ("interface-global", "eth0"),
        ("interface-finance", "bond0.100"),
        ("interface-dev", " "),
    ]));
    assert!(p.allow_share("default"));
    assert!(!p.allow_share("finance"));
    assert_eq!(p.interface("default"), Some("eth0"));
    assert_eq!(p.interface("finance"), Some("bond0.100"));
    assert_eq!(p.interface("dev"), Some("eth0"));
    let none = Pools::parse(&cm(&[]));
    assert!(!none.allow_share("default"));
    assert_eq!(none.interface("default"), None);
}

#[test]
fn namespace_names_may_hold_dashes_and_unknown_keys_are_ignored() {
    let p = Pools::parse(&cm(&[
        ("cidr-kube-system", "10.0.0.0/30"),
        ("allow-share-kube-system", "true"),
        ("cidr-", "10.0.1.0/30"),
        ("cidrdefault", "10.0.2.0/30"),
        ("loadbalancer-class", "x"),
    ]));
    assert_eq!(p.namespaces.keys().collect::<Vec<_>>(), ["kube-system"]);
    assert_eq!(
        ranges(&ns(&p, "kube-system").v4),
        [r("10.0.0.0", "10.0.0.3")]
    );
    assert!(p.allow_share("kube-system"));
    assert!(p.global.v4.is_empty() && p.problems().next().is_none());
}

#[test]
fn iteration_goes_up_or_down_from_a_starting_point_across_ranges() {
    let p = Pools::parse(&cm(&[("range-a", "10.0.0.1-10.0.0.3,10.0.0.8-10.0.0.9")]));
    let set = &ns(&p, "a").v4;
    let walk = |order, from: Option<&str>| -> Vec<String> {
        let from = from.map(ip);
        set.iter_from(order, from.as_ref())
            .map(|a| a.to_string())
            .collect()
    };
    assert_eq!(
        walk(SearchOrder::Ascending, None),
        ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.8", "10.0.0.9"]
    );
    assert_eq!(
        walk(SearchOrder::Ascending, Some("10.0.0.3")),
        ["10.0.0.3", "10.0.0.8", "10.0.0.9"]
    );
    assert_eq!(
        walk(SearchOrder::Descending, None),
        ["10.0.0.9", "10.0.0.8", "10.0.0.3", "10.0.0.2", "10.0.0.1"]
    );
    assert_eq!(
        walk(SearchOrder::Descending, Some("10.0.0.5")),
        ["10.0.0.3", "10.0.0.2", "10.0.0.1"]
    );
    assert!(set.contains(&ip("10.0.0.8")) && !set.contains(&ip("10.0.0.5")));
    assert!(!set.contains(&ip("::a00:8")));
}

//! Address families: single-stack, PreferDualStack, RequireDualStack.

use super::*;
use serde_json::json;

fn dual() -> BTreeMap<String, String> {
    cm(&[
        ("cidr-default", "10.0.0.0/24,fd00::/120"),
        ("range-global", "fd00:1::1-fd00:1::1"),
    ])
}

#[test]
fn dual_stack_services_get_one_address_per_family_first_family_first() {
    let services = vec![
        lb(
            "default",
            "v4v6",
            1,
            json!({}),
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
        ),
        lb(
            "default",
            "v6v4",
            2,
            json!({}),
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
        ),
        lb(
            "default",
            "v6",
            3,
            json!({}),
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
        ),
        lb(
            "default",
            "v4",
            4,
            json!({}),
            json!({"ipFamilies": ["IPv4"]}),
        ),
    ];
    let p = run(&services, &dual());
    assert_eq!(
        p.allocations,
        [
            // IPv6 has no network or broadcast address: the first is the pool's first.
            alloc("default", "v4v6", &["10.0.0.1", "fd00::"]),
            alloc("default", "v6v4", &["fd00::1", "10.0.0.2"]),
            alloc("default", "v6", &["fd00::2"]),
            alloc("default", "v4", &["10.0.0.3"]),
        ]
    );
    assert!(p.problems.is_empty());
}

#[test]
fn prefer_dual_stack_settles_for_one_family_and_says_why() {
    let config = cm(&[("cidr-default", "10.0.0.0/24")]);
    let s = lb(
        "default",
        "a",
        1,
        json!({}),
        json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
    );
    let p = run(&[s], &config);
    assert_eq!(p.allocations, [alloc("default", "a", &["10.0.0.1"])]);
    assert_eq!(
        problems(&p, "default", "a"),
        [IpamProblem::NoPool {
            namespace: "default".to_owned(),
            family: Family::V6
        }]
    );
}

#[test]
fn require_dual_stack_gets_both_families_or_nothing_and_holds_nothing_meanwhile() {
    let require = |name: &str, t: u32| {
        lb(
            "default",
            name,
            t,
            json!({}),
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
        )
    };
    let config = cm(&[
        ("cidr-default", "10.0.0.0/24"),
        ("range-default", "fd00::1-fd00::1"),
    ]);
    let p = run(
        &[require("a", 1), require("b", 2), fresh("default", "c", 3)],
        &config,
    );
    assert_eq!(
        p.allocations,
        [
            alloc("default", "a", &["10.0.0.1", "fd00::1"]),
            alloc("default", "c", &["10.0.0.2"])
        ]
    );
    assert_eq!(
        problems(&p, "default", "b"),
        [IpamProblem::Exhausted {
            family: Family::V6,
            keys: vec!["range-default".to_owned()]
        }]
    );
}

#[test]
fn without_ip_families_a_service_is_ipv4_unless_only_ipv6_pools_serve_it() {
    let p = run(&[fresh("default", "a", 1)], &dual());
    assert_eq!(p.allocations, [alloc("default", "a", &["10.0.0.1"])]);
    let p = run(
        &[fresh("default", "a", 1)],
        &cm(&[("cidr-global", "fd00::/120")]),
    );
    assert_eq!(p.allocations, [alloc("default", "a", &["fd00::"])]);
}

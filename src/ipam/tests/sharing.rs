//! allow-share: who may hold an address together.

use super::*;
use serde_json::json;

fn ports(list: &[(u16, &str)]) -> serde_json::Value {
    json!({"ports": list.iter().map(|(p, proto)| json!({"port": p, "protocol": proto})).collect::<Vec<_>>()})
}

#[test]
fn with_allow_share_services_whose_ports_differ_share_an_address_before_a_free_one() {
    let config = cm(&[
        ("cidr-default", "192.168.0.200/29"),
        ("allow-share-global", "true"),
    ]);
    let services = vec![
        lb(
            "default",
            "web",
            1,
            json!({"kube-vip.io/loadbalancerIPs": "192.168.0.200"}),
            ports(&[(80, "TCP")]),
        ),
        lb("default", "tls", 2, json!({}), ports(&[(443, "TCP")])),
        lb("default", "web2", 3, json!({}), ports(&[(80, "TCP")])),
        // Same port, other protocol: no overlap.
        lb("default", "dns", 4, json!({}), ports(&[(80, "UDP")])),
    ];
    let p = run(&services, &config);
    assert_eq!(
        p.allocations,
        [
            alloc("default", "tls", &["192.168.0.200"]),
            alloc("default", "web2", &["192.168.0.201"]),
            alloc("default", "dns", &["192.168.0.200"]),
        ]
    );
    assert!(p.problems.is_empty());
}

#[test]
fn without_allow_share_every_service_gets_its_own_address() {
    for config in [
        cm(&[("cidr-default", "192.168.0.200/29")]),
        cm(&[
            ("cidr-default", "192.168.0.200/29"),
            ("allow-share-global", "true"),
            ("allow-share-default", "false"),
        ]),
    ] {
        let services = vec![
            lb(
                "default",
                "web",
                1,
                json!({"kube-vip.io/loadbalancerIPs": "192.168.0.200"}),
                ports(&[(80, "TCP")]),
            ),
            lb("default", "tls", 2, json!({}), ports(&[(443, "TCP")])),
        ];
        let p = run(&services, &config);
        assert_eq!(p.allocations, [alloc("default", "tls", &["192.168.0.201"])]);
    }
}

#[test]
fn sharing_needs_both_namespaces_to_allow_it_and_both_services_to_list_ports() {
    let config = cm(&[
        ("cidr-global", "192.168.0.200/29"),
        ("allow-share-a", "true"),
    ]);
    let services = vec![
        lb(
            "b",
            "held",
            1,
            json!({"kube-vip.io/loadbalancerIPs": "192.168.0.200"}),
            ports(&[(80, "TCP")]),
        ),
        lb(
            "a",
            "portless",
            2,
            json!({"kube-vip.io/loadbalancerIPs": "192.168.0.201"}),
            json!({"ports": []}),
        ),
        lb("a", "tls", 3, json!({}), ports(&[(443, "TCP")])),
        lb("a", "tls2", 4, json!({}), ports(&[(8443, "TCP")])),
    ];
    let p = run(&services, &config);
    assert_eq!(
        p.allocations,
        [
            alloc("a", "tls", &["192.168.0.202"]),
            alloc("a", "tls2", &["192.168.0.202"])
        ]
    );
}

#[test]
fn static_addresses_may_share_when_allowed_and_ports_differ_and_are_warned_otherwise() {
    let config = cm(&[
        ("cidr-default", "192.168.0.200/29"),
        ("allow-share-default", "true"),
    ]);
    let at = |name: &str, t: u32, port: u16| {
        lb(
            "default",
            name,
            t,
            json!({"kube-vip.io/loadbalancerIPs": "192.168.0.200"}),
            ports(&[(port, "TCP")]),
        )
    };
    let p = run(&[at("a", 1, 80), at("b", 2, 443), at("c", 3, 443)], &config);
    assert_eq!(
        p.problems,
        BTreeMap::from([(
            key("default", "c"),
            vec![IpamProblem::AddressInUse {
                address: ip("192.168.0.200"),
                holder: key("default", "b")
            }]
        )])
    );
}

#[test]
fn ipv6_addresses_are_never_shared() {
    let config = cm(&[
        ("range-default", "fd00::1-fd00::3"),
        ("allow-share-default", "true"),
    ]);
    let services = vec![
        lb(
            "default",
            "a",
            1,
            json!({"kube-vip.io/loadbalancerIPs": "fd00::1"}),
            ports(&[(80, "TCP")]),
        ),
        lb(
            "default",
            "b",
            2,
            json!({}),
            json!({"ipFamilies": ["IPv6"], "ports": [{"port": 443}]}),
        ),
    ];
    let p = run(&services, &config);
    assert_eq!(p.allocations, [alloc("default", "b", &["fd00::2"])]);
}

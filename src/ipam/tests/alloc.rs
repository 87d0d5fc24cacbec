//! Who gets which address.

use super::*;
use serde_json::json;

/// The guide's example ConfigMap ("The Kube-vip Cloud Provider configmap").
fn guide() -> BTreeMap<String, String> {
    cm(&[
        ("cidr-default", "192.168.0.200/29"),
        ("range-development", "192.168.0.210-192.168.0.219"),
        ("cidr-finance", "192.168.0.220/29,192.168.0.230/29"),
        ("cidr-global", "192.168.0.240/29"),
    ])
}

/// `n` fresh Services `<ns>/s00`, `s01`, … created one second apart.
fn many(ns: &str, n: u32) -> Vec<Arc<Service>> {
    (0..n).map(|i| fresh(ns, &format!("s{i:02}"), i)).collect()
}

/// The addresses handed out, in order, as text.
fn handed_out(plan: &IpamPlan) -> Vec<String> {
    plan.allocations
        .iter()
        .map(|a| a.annotation_value())
        .collect()
}

fn problems(plan: &IpamPlan, ns: &str, name: &str) -> Vec<IpamProblem> {
    plan.problems
        .get(&key(ns, name))
        .cloned()
        .unwrap_or_default()
}

// ---- The guide's seed examples ------------------------------------------------------------------

#[test]
fn seed_cidr_default_29_gives_200_to_207_then_the_global_pool() {
    let p = run(&many("default", 10), &guide());
    assert_eq!(
        handed_out(&p),
        [
            "192.168.0.200",
            "192.168.0.201",
            "192.168.0.202",
            "192.168.0.203",
            "192.168.0.204",
            "192.168.0.205",
            "192.168.0.206",
            "192.168.0.207",
            "192.168.0.240",
            "192.168.0.241",
        ]
    );
    assert_eq!(
        p.allocations[0],
        alloc("default", "s00", &["192.168.0.200"])
    );
    assert!(p.problems.is_empty());
}

#[test]
fn seed_range_development_gives_210_to_219_then_the_global_pool() {
    let p = run(&many("development", 11), &guide());
    assert_eq!(
        handed_out(&p),
        [
            "192.168.0.210",
            "192.168.0.211",
            "192.168.0.212",
            "192.168.0.213",
            "192.168.0.214",
            "192.168.0.215",
            "192.168.0.216",
            "192.168.0.217",
            "192.168.0.218",
            "192.168.0.219",
            "192.168.0.240",
        ]
    );
    assert!(p.problems.is_empty());
}

#[test]
fn seed_two_cidrs_for_finance_give_both_blocks_as_kube_vip_cloud_provider_reads_them() {
    // 192.168.0.220/29 and 192.168.0.230/29 have host bits set: the blocks are .216-.223 and
    // .224-.231, one run of 16 addresses; every finance Service is told so.
    let p = run(&many("finance", 17), &guide());
    let want: Vec<String> = (216..=231)
        .map(|i| format!("192.168.0.{i}"))
        .chain(["192.168.0.240".to_owned()])
        .collect();
    assert_eq!(handed_out(&p), want);
    let host_bits = |entry: &str, network: &str| {
        IpamProblem::Pool(PoolError::HostBitsSet {
            key: "cidr-finance".to_owned(),
            entry: entry.to_owned(),
            network: network.parse().expect("fixture is a CIDR"),
        })
    };
    for i in 0..17 {
        assert_eq!(
            problems(&p, "finance", &format!("s{i:02}")),
            [
                host_bits("192.168.0.220/29", "192.168.0.216/29"),
                host_bits("192.168.0.230/29", "192.168.0.224/29"),
            ]
        );
    }
    assert_eq!(p.config_problems.len(), 2);
}

#[test]
fn seed_cidr_global_serves_any_other_namespace_until_exhausted() {
    let p = run(&many("shop", 9), &guide());
    assert_eq!(
        handed_out(&p),
        [
            "192.168.0.240",
            "192.168.0.241",
            "192.168.0.242",
            "192.168.0.243",
            "192.168.0.244",
            "192.168.0.245",
            "192.168.0.246",
            "192.168.0.247",
        ]
    );
    assert_eq!(
        p.problems,
        BTreeMap::from([(
            key("shop", "s08"),
            vec![IpamProblem::Exhausted {
                family: Family::V4,
                keys: vec!["cidr-global".to_owned()]
            }]
        )])
    );
}

#[test]
fn seed_namespaces_together_never_hand_out_an_address_of_overlapping_pools_twice() {
    // range-development (.210-.219) overlaps finance's .216-.231.
    let mut services = many("development", 10);
    services.push(fresh("finance", "f", 100));
    services.push(fresh("default", "d", 101));
    services.push(fresh("shop", "g", 102));
    let p = run(&services, &guide());
    assert_eq!(
        &handed_out(&p)[10..],
        ["192.168.0.220", "192.168.0.200", "192.168.0.240"]
    );
}

#[test]
fn seed_quick_start_global_cidr_and_global_range() {
    let p = run(&many("any", 2), &cm(&[("cidr-global", "192.168.0.220/29")]));
    assert_eq!(handed_out(&p), ["192.168.0.216", "192.168.0.217"]);
    let p = run(
        &many("any", 12),
        &cm(&[("range-global", "192.168.1.220-192.168.1.230")]),
    );
    let want: Vec<String> = (220..=230).map(|i| format!("192.168.1.{i}")).collect();
    assert_eq!(handed_out(&p), want);
    assert_eq!(p.problems.len(), 1);
}

// ---- Order and what is in use -------------------------------------------------------------------

#[test]
fn services_are_served_oldest_first_then_by_namespace_and_name_whatever_the_input_order() {
    let config = cm(&[("cidr-global", "10.0.0.0/24")]);
    let services = vec![
        fresh("b", "x", 5),
        fresh("a", "z", 5),
        fresh("a", "y", 5),
        fresh("c", "old", 1),
    ];
    let p = run(&services, &config);
    assert_eq!(
        p.allocations,
        [
            alloc("c", "old", &["10.0.0.1"]),
            alloc("a", "y", &["10.0.0.2"]),
            alloc("a", "z", &["10.0.0.3"]),
            alloc("b", "x", &["10.0.0.4"]),
        ]
    );
    let mut reversed = services.clone();
    reversed.reverse();
    assert_eq!(run(&reversed, &config), p);
}

#[test]
fn static_addresses_are_honoured_inside_or_outside_pools_and_count_as_in_use() {
    let config = cm(&[("cidr-default", "192.168.0.200/29")]);
    let services = vec![
        lb(
            "default",
            "by-annotation",
            1,
            json!({"kube-vip.io/loadbalancerIPs": "192.168.0.200"}),
            json!({}),
        ),
        lb(
            "default",
            "by-spec",
            2,
            json!({}),
            json!({"loadBalancerIP": "192.168.0.201"}),
        ),
        lb(
            "default",
            "outside",
            3,
            json!({"kube-vip.io/loadbalancerIPs": "1.1.1.1"}),
            json!({}),
        ),
        fresh("default", "new", 4),
    ];
    let p = run(&services, &config);
    assert_eq!(p.allocations, [alloc("default", "new", &["192.168.0.202"])]);
    assert!(p.problems.is_empty());
}

#[test]
fn dhcp_placeholders_pass_through_untouched_and_hold_nothing() {
    let config = cm(&[("cidr-default", "0.0.0.0/30,192.168.0.200/30")]);
    let services = vec![
        lb(
            "default",
            "dhcp",
            1,
            json!({}),
            json!({"loadBalancerIP": "0.0.0.0"}),
        ),
        lb(
            "default",
            "dhcp6",
            2,
            json!({"kube-vip.io/loadbalancerIPs": "::"}),
            json!({}),
        ),
        fresh("default", "new", 3),
    ];
    let p = run(&services, &config);
    // 0.0.0.0 is never handed out either (rule 6).
    assert_eq!(p.allocations, [alloc("default", "new", &["0.0.0.1"])]);
    assert!(p.problems.is_empty());
}

#[test]
fn an_address_comes_free_when_its_service_is_gone_or_no_longer_a_load_balancer() {
    let config = cm(&[("cidr-default", "192.168.0.200/29")]);
    let was_lb = svc(json!({
        "metadata": {"name": "was-lb", "namespace": "default",
                     "annotations": {"kube-vip.io/loadbalancerIPs": "192.168.0.200"}},
        "spec": {"type": "ClusterIP"},
    }));
    let p = run(&[was_lb, fresh("default", "new", 1)], &config);
    assert_eq!(p.allocations, [alloc("default", "new", &["192.168.0.200"])]);
}

#[test]
fn services_of_other_classes_or_ignored_are_neither_allocated_nor_warned() {
    let config = cm(&[("cidr-default", "192.168.0.200/29")]);
    let services = vec![
        lb(
            "default",
            "metallb",
            1,
            json!({}),
            json!({"loadBalancerClass": "metallb.io/x"}),
        ),
        lb(
            "default",
            "ignored",
            2,
            json!({"kube-vip.io/ignore": "true"}),
            json!({}),
        ),
        lb(
            "default",
            "ours",
            3,
            json!({}),
            json!({"loadBalancerClass": "kube-vip.io/kube-vip-class"}),
        ),
        fresh("default", "no-class", 4),
    ];
    let p = run(&services, &config);
    assert_eq!(
        p.allocations,
        [
            alloc("default", "ours", &["192.168.0.200"]),
            alloc("default", "no-class", &["192.168.0.201"]),
        ]
    );
    // lb_class_only: a Service without a class is another implementation's.
    let only = DecideConfig {
        lb_class_only: true,
        ..DecideConfig::default()
    };
    let p = plan(&services, Some(&config), &only);
    assert_eq!(
        p.allocations,
        [alloc("default", "ours", &["192.168.0.200"])]
    );
    assert!(p.problems.is_empty());
}

#[test]
fn an_annotation_of_only_blanks_asks_for_an_allocation_and_one_of_garbage_does_not() {
    let config = cm(&[("cidr-default", "192.168.0.200/29")]);
    let services = vec![
        lb(
            "default",
            "blank",
            1,
            json!({"kube-vip.io/loadbalancerIPs": " , "}),
            json!({"loadBalancerIP": ""}),
        ),
        lb(
            "default",
            "garbage",
            2,
            json!({"kube-vip.io/loadbalancerIPs": "banana"}),
            json!({}),
        ),
    ];
    let p = run(&services, &config);
    // decide warns about "banana"; the allocator never overwrites what the user wrote.
    assert_eq!(
        p.allocations,
        [alloc("default", "blank", &["192.168.0.200"])]
    );
    assert!(p.problems.is_empty());
}

// ---- Problems -----------------------------------------------------------------------------------

#[test]
fn a_missing_configmap_warns_each_service_waiting_for_an_address_and_honours_static_ones() {
    let services = vec![
        lb(
            "default",
            "static",
            1,
            json!({"kube-vip.io/loadbalancerIPs": "10.0.0.1"}),
            json!({}),
        ),
        fresh("default", "waiting", 2),
    ];
    let p = plan(&services, None, &DecideConfig::default());
    assert_eq!(
        p,
        IpamPlan {
            allocations: vec![],
            problems: BTreeMap::from([(key("default", "waiting"), vec![IpamProblem::NoConfigMap])]),
            config_problems: vec![],
        }
    );
}

#[test]
fn a_namespace_without_any_pool_is_told_which_keys_would_serve_it() {
    let p = run(
        &[fresh("shop", "a", 1)],
        &cm(&[("cidr-default", "10.0.0.0/24")]),
    );
    let want = IpamProblem::NoPool {
        namespace: "shop".to_owned(),
        family: Family::V4,
    };
    assert_eq!(problems(&p, "shop", "a"), std::slice::from_ref(&want));
    assert!(p.allocations.is_empty());
    assert_eq!(
        want.to_string(),
        "no IPv4 pool serves namespace shop (keys cidr-shop, range-shop, cidr-global, range-global)"
    );
    assert_eq!(want.reason(), "IPAMNoPool");
}

#[test]
fn an_exhausted_namespace_pool_falls_back_to_global_and_then_names_every_key() {
    let config = cm(&[
        ("range-default", "10.0.0.1-10.0.0.1"),
        ("cidr-default", "10.0.1.1/32"),
        ("range-global", "10.0.9.1-10.0.9.1"),
    ]);
    let p = run(&many("default", 4), &config);
    assert_eq!(handed_out(&p), ["10.0.0.1", "10.0.1.1", "10.0.9.1"]);
    let want = IpamProblem::Exhausted {
        family: Family::V4,
        keys: vec![
            "cidr-default".to_owned(),
            "range-default".to_owned(),
            "range-global".to_owned(),
        ],
    };
    assert_eq!(problems(&p, "default", "s03"), std::slice::from_ref(&want));
    assert_eq!(
        want.to_string(),
        "every IPv4 address of cidr-default, range-default, range-global is in use; no address is allocated"
    );
}

#[test]
fn malformed_entries_warn_the_services_that_read_the_key_and_valid_entries_keep_working() {
    let config = cm(&[
        ("cidr-default", "banana,192.168.0.200/30"),
        ("cidr-global", "10.0.0.0/30"),
    ]);
    let p = run(&[fresh("default", "a", 1), fresh("other", "b", 2)], &config);
    let banana = PoolError::InvalidCidr {
        key: "cidr-default".to_owned(),
        entry: "banana".to_owned(),
    };
    assert_eq!(
        p,
        IpamPlan {
            allocations: vec![
                alloc("default", "a", &["192.168.0.200"]),
                alloc("other", "b", &["10.0.0.1"])
            ],
            problems: BTreeMap::from([(
                key("default", "a"),
                vec![IpamProblem::Pool(banana.clone())]
            )]),
            config_problems: vec![banana],
        }
    );
    assert_eq!(
        IpamProblem::Pool(PoolError::DhcpPool {
            key: "x".to_owned()
        })
        .reason(),
        "IPAMInvalidConfigMapEntry"
    );
}

#[test]
fn a_second_service_asking_for_a_held_address_gets_a_warning_not_the_address() {
    let config = cm(&[("cidr-default", "192.168.0.200/29")]);
    let services = vec![
        lb(
            "default",
            "second",
            2,
            json!({"kube-vip.io/loadbalancerIPs": "192.168.0.200"}),
            json!({}),
        ),
        lb(
            "default",
            "first",
            1,
            json!({}),
            json!({"loadBalancerIP": "192.168.0.200"}),
        ),
    ];
    let p = run(&services, &config);
    let want = IpamProblem::AddressInUse {
        address: ip("192.168.0.200"),
        holder: key("default", "first"),
    };
    assert_eq!(
        p,
        IpamPlan {
            allocations: vec![],
            problems: BTreeMap::from([(key("default", "second"), vec![want.clone()])]),
            config_problems: vec![],
        }
    );
    assert_eq!(
        want.to_string(),
        "192.168.0.200 is already used by Service default/first and the two may not share it \
         (sharing needs allow-share, IPv4 and ports that do not overlap)"
    );
    assert_eq!(want.reason(), "LoadBalancerIPInUse");
}

// ---- Sharing ------------------------------------------------------------------------------------

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

// ---- Settings -----------------------------------------------------------------------------------

#[test]
fn search_order_desc_hands_out_the_highest_free_address_first() {
    let config = cm(&[
        ("cidr-default", "192.168.0.200/29"),
        ("cidr-global", "10.0.0.0/30"),
        ("search-order", "desc"),
    ]);
    let mut services = many("default", 9);
    services.insert(
        0,
        lb(
            "default",
            "held",
            0,
            json!({"kube-vip.io/loadbalancerIPs": "192.168.0.206"}),
            json!({}),
        ),
    );
    let p = run(&services, &config);
    assert_eq!(
        handed_out(&p),
        [
            "192.168.0.207",
            "192.168.0.205",
            "192.168.0.204",
            "192.168.0.203",
            "192.168.0.202",
            "192.168.0.201",
            "192.168.0.200",
            "10.0.0.3",
            "10.0.0.2",
        ]
    );
}

#[test]
fn skip_end_ips_leaves_network_and_broadcast_unallocated() {
    let config = cm(&[
        ("cidr-default", "192.168.0.200/30"),
        ("skip-end-ips-in-cidr", "true"),
    ]);
    let p = run(&many("default", 3), &config);
    assert_eq!(handed_out(&p), ["192.168.0.201", "192.168.0.202"]);
    let config = cm(&[
        ("cidr-default", "192.168.0.200/30"),
        ("skip-end-ips-in-cidr", "true"),
        ("search-order", "desc"),
    ]);
    assert_eq!(
        handed_out(&run(&many("default", 1), &config)),
        ["192.168.0.202"]
    );
}

#[test]
fn ipv4_addresses_ending_in_0_or_255_are_never_handed_out_as_in_kube_vip_cloud_provider() {
    let config = cm(&[("range-default", "192.168.0.253-192.168.1.2")]);
    let mut services = vec![lb(
        "default",
        "x",
        0,
        json!({"kube-vip.io/loadbalancerIPs": "192.168.0.253,192.168.0.254"}),
        json!({}),
    )];
    services.extend(many("default", 3));
    assert_eq!(
        handed_out(&run(&services, &config)),
        ["192.168.1.1", "192.168.1.2"]
    );
    let config = cm(&[
        ("cidr-default", "192.168.0.10/24"),
        ("search-order", "desc"),
    ]);
    assert_eq!(
        handed_out(&run(&many("default", 1), &config)),
        ["192.168.0.254"]
    );
}

#[test]
fn the_interface_setting_of_the_namespace_or_global_goes_with_the_allocation() {
    let config = cm(&[
        ("cidr-global", "10.0.0.0/24"),
        ("interface-global", "eth0"),
        ("interface-finance", "bond0.100"),
    ]);
    let p = run(&[fresh("finance", "a", 1), fresh("shop", "b", 2)], &config);
    assert_eq!(p.allocations[0].interface.as_deref(), Some("bond0.100"));
    assert_eq!(p.allocations[1].interface.as_deref(), Some("eth0"));
}

#[test]
fn the_merge_patch_writes_annotation_spec_label_interface_and_checks_the_resource_version() {
    let a = Allocation {
        service: key("default", "a"),
        resource_version: Some("4711".to_owned()),
        addresses: ips(&["fd00::1", "10.0.0.1"]),
        interface: Some("eth0".to_owned()),
    };
    assert_eq!(
        a.merge_patch(),
        json!({
            "metadata": {
                "resourceVersion": "4711",
                "labels": {"implementation": "kube-vip"},
                "annotations": {"kube-vip.io/loadbalancerIPs": "fd00::1,10.0.0.1",
                                "kube-vip.io/serviceInterface": "eth0"},
            },
            "spec": {"loadBalancerIP": "fd00::1"},
        })
    );
    let b = Allocation {
        resource_version: None,
        interface: None,
        ..a
    };
    assert_eq!(
        b.merge_patch(),
        json!({
            "metadata": {
                "labels": {"implementation": "kube-vip"},
                "annotations": {"kube-vip.io/loadbalancerIPs": "fd00::1,10.0.0.1"},
            },
            "spec": {"loadBalancerIP": "fd00::1"},
        })
    );
}

#[test]
fn the_plan_carries_the_resource_version_it_was_made_from() {
    let s = svc(json!({
        "metadata": {"name": "a", "namespace": "default", "resourceVersion": "42"},
        "spec": {"type": "LoadBalancer"},
    }));
    let p = run(&[s], &cm(&[("cidr-global", "10.0.0.0/24")]));
    assert_eq!(p.allocations[0].resource_version.as_deref(), Some("42"));
}

// ---- Address families ---------------------------------------------------------------------------

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

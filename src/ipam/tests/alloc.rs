//! Who gets which address: order, what is in use, problems, settings.

use super::*;
use serde_json::json;

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

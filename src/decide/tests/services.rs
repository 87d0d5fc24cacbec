//! Which Services are vipd's; which addresses they ask for; address families.

use super::*;
use crate::decide::reasons::AddressField::{Annotation, Spec};
use serde_json::json;

// ---- Which Services are vipd's ----------------------------------------------------------------

#[test]
fn services_that_are_not_load_balancers_are_skipped_with_their_type() {
    let cluster_ip = svc(json!({
        "metadata": {"name": "a", "namespace": "default"},
        "spec": {"type": "ClusterIP", "loadBalancerIP": "192.0.2.10"},
    }));
    let no_type = svc(json!({"metadata": {"name": "b", "namespace": "default"}, "spec": {}}));
    let no_spec = svc(json!({"metadata": {"name": "c", "namespace": "default"}}));
    let d = run(
        &[cluster_ip, no_type, no_spec],
        &[ready_here("a"), ready_here("b"), ready_here("c")],
    );
    let no_type_skip = skipped(Skip::NotLoadBalancer { service_type: None });
    assert_eq!(
        d.services,
        BTreeMap::from([
            (
                key("a"),
                skipped(Skip::NotLoadBalancer {
                    service_type: Some("ClusterIP".into())
                })
            ),
            (key("b"), no_type_skip.clone()),
            (key("c"), no_type_skip),
        ])
    );
    assert!(d.routes.is_empty());
}

#[test]
fn ignore_annotation_true_skips_the_service() {
    let s = lb(
        "a",
        json!({"kube-vip.io/ignore": "true", "kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({}),
    );
    let d = run(&[s], &[ready_here("a")]);
    assert_eq!(one(&d, "a"), skipped(Skip::Ignored));
    assert!(d.routes.is_empty());
}

#[test]
fn ignore_values_other_than_exact_true_keep_the_service_like_kube_vip_and_warn_when_meant_true() {
    for (value, warns) in [
        ("True", true),
        ("TRUE", true),
        ("1", true),
        ("t", true),
        (" true", true),
        ("yes", true),
        ("false", false),
        ("", false),
        ("please", false),
    ] {
        let s = lb(
            "a",
            json!({"kube-vip.io/ignore": value, "kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
            json!({}),
        );
        let d = run(&[s], &[ready_here("a")]);
        let mut want = announced(&["192.0.2.10"]);
        if warns {
            want.problems = vec![Problem::IgnoreNotTrue {
                value: value.into(),
            }];
        }
        assert_eq!(one(&d, "a"), want, "ignore: {value:?}");
    }
}

#[test]
fn load_balancer_class_rules_follow_kube_vip_legacy_and_strict_filters() {
    const OURS: &str = "kube-vip.io/kube-vip-class";
    let not_ours = |class: &str, ours: &str| {
        Some(Skip::ClassNotOurs {
            class: class.into(),
            ours: ours.into(),
        })
    };
    let missing = |ours: &str| Some(Skip::ClassMissing { ours: ours.into() });
    // (legacy, lb_class_only, lb_class_name, spec.loadBalancerClass) → skip reason (None = served)
    type Row<'a> = (bool, bool, &'a str, Option<&'a str>, Option<Skip>);
    let table: Vec<Row> = vec![
        // Legacy (default): unset class is served unless lb_class_only; a set class must match.
        (true, false, OURS, None, None),
        (true, false, OURS, Some(OURS), None),
        (true, false, OURS, Some("other"), not_ours("other", OURS)),
        (true, true, OURS, None, missing(OURS)),
        (true, true, OURS, Some(OURS), None),
        (true, true, OURS, Some("other"), not_ours("other", OURS)),
        (true, false, "", None, None),
        (true, true, "", None, missing("")),
        (true, false, "", Some("other"), not_ours("other", "")),
        // Strict: the class must equal the name, "unset" matching only an empty name;
        // lb_class_only is not read.
        (false, false, OURS, None, missing(OURS)),
        (false, true, OURS, None, missing(OURS)),
        (false, false, OURS, Some(OURS), None),
        (false, false, OURS, Some("other"), not_ours("other", OURS)),
        (false, false, "", None, None),
        (false, true, "", None, None),
        (false, false, "", Some("other"), not_ours("other", "")),
    ];
    for (legacy, only, name, class, want) in table {
        let cfg = DecideConfig {
            lb_class_only: only,
            lb_class_name: name.into(),
            lb_class_legacy_handling: legacy,
            ..DecideConfig::default()
        };
        let s = lb(
            "a",
            json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
            json!({"loadBalancerClass": class}),
        );
        let d = run_with(&[s], &[ready_here("a")], &node(), &cfg);
        let expect = match &want {
            None => announced(&["192.0.2.10"]),
            Some(skip) => skipped(skip.clone()),
        };
        assert_eq!(
            one(&d, "a"),
            expect,
            "legacy={legacy} only={only} name={name:?} class={class:?}"
        );
    }
}

#[test]
fn services_not_ours_raise_no_problems_even_with_bad_addresses() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "not-an-ip!, 0.0.0.0"}),
        json!({"loadBalancerClass": "metallb.io/metallb"}),
    );
    let d = run(&[s], &[]);
    assert_eq!(
        one(&d, "a"),
        skipped(Skip::ClassNotOurs {
            class: "metallb.io/metallb".into(),
            ours: "kube-vip.io/kube-vip-class".into()
        })
    );
}

// ---- Addresses ----------------------------------------------------------------------------------

#[test]
fn annotation_list_is_trimmed_deduplicated_and_kept_in_order_across_families() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": " 192.0.2.10 ,, 2001:db8::10,192.0.2.11, 192.0.2.10 ,"}),
        json!({"loadBalancerIP": "198.51.100.1"}),
    );
    let d = run(&[s], &[ready_here("a")]);
    assert_eq!(
        one(&d, "a"),
        announced(&["192.0.2.10", "2001:db8::10", "192.0.2.11"])
    );
    assert_eq!(
        d.routes,
        routes(&[
            ("192.0.2.10", &["a"]),
            ("192.0.2.11", &["a"]),
            ("2001:db8::10", &["a"])
        ])
    );
}

#[test]
fn spec_load_balancer_ip_is_used_when_the_annotation_is_absent_or_has_no_entries() {
    for annotations in [json!({}), json!({"kube-vip.io/loadbalancerIPs": " , ,"})] {
        let s = lb(
            "a",
            annotations.clone(),
            json!({"loadBalancerIP": "192.0.2.20"}),
        );
        let d = run(&[s], &[ready_here("a")]);
        let mut want = announced(&["192.0.2.20"]);
        // An annotation that names nothing is read as absent, and said.
        if let Some(v) = annotations["kube-vip.io/loadbalancerIPs"].as_str() {
            want.problems = vec![Problem::NoAddressGiven {
                field: Annotation,
                value: v.into(),
            }];
        }
        assert_eq!(one(&d, "a"), want, "{annotations}");
    }
}

#[test]
fn status_ingress_is_not_an_address_source() {
    let s = svc(json!({
        "metadata": {"name": "a", "namespace": "default"},
        "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.30"}]}},
    }));
    let d = run(&[s], &[ready_here("a")]);
    assert_eq!(one(&d, "a"), skipped(Skip::NoAddress));
    assert!(d.routes.is_empty());
}

#[test]
fn hostname_entry_is_a_problem_and_the_other_addresses_still_work() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10,web.example.com"}),
        json!({}),
    );
    let d = run(&[s], &[ready_here("a")]);
    let mut want = announced(&["192.0.2.10"]);
    want.problems = vec![Problem::UnsupportedHostname {
        field: Annotation,
        value: "web.example.com".into(),
    }];
    assert_eq!(one(&d, "a"), want);
    assert_eq!(
        want.problems[0].to_string(),
        "annotation kube-vip.io/loadbalancerIPs: \"web.example.com\" is a hostname; \
         vipd does not resolve hostnames yet, use an IP address"
    );
    assert_eq!(want.problems[0].reason(), "UnsupportedLoadBalancerHostname");
}

#[test]
fn garbage_loopback_and_multicast_entries_are_problems_naming_field_and_value() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.300,fe80::1%eth0,127.0.0.1,ff02::1,255.255.255.255,192.0.2.10"}),
        json!({}),
    );
    let d = run(&[s], &[ready_here("a")]);
    let mut want = announced(&["192.0.2.10"]);
    want.problems = vec![
        Problem::InvalidAddress {
            field: Annotation,
            value: "192.0.2.300".into(),
        },
        Problem::InvalidAddress {
            field: Annotation,
            value: "fe80::1%eth0".into(),
        },
        Problem::UnusableAddress {
            field: Annotation,
            value: ip("127.0.0.1"),
        },
        Problem::UnusableAddress {
            field: Annotation,
            value: ip("ff02::1"),
        },
        Problem::UnusableAddress {
            field: Annotation,
            value: ip("255.255.255.255"),
        },
    ];
    assert_eq!(one(&d, "a"), want);
    assert_eq!(
        want.problems[0].to_string(),
        "annotation kube-vip.io/loadbalancerIPs: \"192.0.2.300\" is not an IP address"
    );
    assert_eq!(want.problems[0].reason(), "InvalidLoadBalancerIP");
}

#[test]
fn only_bad_entries_mean_no_usable_address_and_spec_is_not_consulted() {
    // kube-vip takes the first non-empty source; a bad annotation does not fall back to spec.
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "oops!"}),
        json!({"loadBalancerIP": "192.0.2.20"}),
    );
    let d = run(&[s], &[ready_here("a")]);
    let mut want = skipped(Skip::NoUsableAddress { field: Annotation });
    want.problems = vec![Problem::InvalidAddress {
        field: Annotation,
        value: "oops!".into(),
    }];
    assert_eq!(one(&d, "a"), want);
    assert_eq!(
        Skip::NoUsableAddress { field: Spec }.to_string(),
        "spec.loadBalancerIP holds no usable IP address"
    );
}

#[test]
fn service_without_an_address_yet_is_skipped_with_no_address() {
    let d = run(&[lb("a", json!({}), json!({}))], &[ready_here("a")]);
    assert_eq!(one(&d, "a"), skipped(Skip::NoAddress));
}

#[test]
fn ipv4_mapped_ipv6_is_read_as_ipv4_like_go() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "::ffff:192.0.2.10"}),
        json!({}),
    );
    let d = run(&[s], &[ready_here("a")]);
    assert_eq!(one(&d, "a"), announced(&["192.0.2.10"]));
}

#[test]
fn dhcp_address_is_skipped_and_raises_a_problem() {
    let s = lb("a", json!({}), json!({"loadBalancerIP": "0.0.0.0"}));
    let d = run(&[s], &[ready_here("a")]);
    let mut want = all_skipped(&["0.0.0.0"], Skip::Dhcp { vip: ip("0.0.0.0") });
    want.problems = vec![Problem::DhcpNotSupported {
        field: Spec,
        value: ip("0.0.0.0"),
    }];
    assert_eq!(one(&d, "a"), want);
    assert!(d.routes.is_empty());
    assert_eq!(want.problems[0].reason(), "DHCPNotSupported");
}

#[test]
fn dhcp_placeholder_next_to_a_static_address_skips_only_the_placeholder() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10,::"}),
        json!({}),
    );
    let d = run(&[s], &[ready_here("a")]);
    assert_eq!(
        one(&d, "a"),
        ServiceDecision {
            vips: ips(&["192.0.2.10", "::"]),
            announced: ips(&["192.0.2.10"]),
            skip: None,
            not_announced: vec![(ip("::"), Skip::Dhcp { vip: ip("::") })],
            problems: vec![Problem::DhcpNotSupported {
                field: Annotation,
                value: ip("::")
            }],
            intent: Default::default(),
        }
    );
}

// ---- Address families ---------------------------------------------------------------------------

#[test]
fn dual_stack_without_an_ipv6_peer_announces_ipv4_and_reports_ipv6() {
    let cfg = DecideConfig {
        announce_ipv6: false,
        ..DecideConfig::default()
    };
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10,2001:db8::10"}),
        json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
    );
    let d = run_with(&[s], &[ready_here("a")], &node(), &cfg);
    let v6 = ip("2001:db8::10");
    assert_eq!(
        one(&d, "a"),
        ServiceDecision {
            vips: ips(&["192.0.2.10", "2001:db8::10"]),
            announced: ips(&["192.0.2.10"]),
            skip: None,
            not_announced: vec![(v6, Skip::NoPeerForFamily { vip: v6 })],
            problems: vec![Problem::NoPeerForFamily { vip: v6 }],
            intent: Default::default(),
        }
    );
    assert_eq!(d.routes, routes(&[("192.0.2.10", &["a"])]));
}

#[test]
fn single_family_service_without_a_peer_of_its_family_announces_nothing() {
    let cfg = DecideConfig {
        announce_ipv4: false,
        ..DecideConfig::default()
    };
    let s = lb("a", json!({}), json!({"loadBalancerIP": "192.0.2.10"}));
    let d = run_with(&[s], &[ready_here("a")], &node(), &cfg);
    let v4 = ip("192.0.2.10");
    let mut want = all_skipped(&["192.0.2.10"], Skip::NoPeerForFamily { vip: v4 });
    want.problems = vec![Problem::NoPeerForFamily { vip: v4 }];
    assert_eq!(one(&d, "a"), want);
    assert_eq!(
        want.problems[0].to_string(),
        "192.0.2.10 is IPv4, but no BGP peer carries IPv4 routes; it is not announced"
    );
}

#[test]
fn the_intent_is_read_with_the_decision_and_an_unusable_annotation_is_a_problem_not_a_withdrawal() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10",
               "kube-vip.io/leaseName": "shared",
               "kube-vip.io/forwardUPNP": "yes"}),
        json!({}),
    );
    let d = one(&run(&[s], &[ready_here("a")]), "a");
    assert_eq!(d.announced, ips(&["192.0.2.10"]));
    assert_eq!(d.intent.lease_name.as_deref(), Some("shared"));
    assert!(!d.intent.forward_upnp);
    assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
    assert_eq!(d.problems[0].reason(), "InvalidAnnotation");
    assert_eq!(
        d.problems[0].to_string(),
        "annotation kube-vip.io/forwardUPNP: \"yes\" is not \"true\" or \"false\"; the Service's ports are not mapped"
    );
}

#[test]
fn a_kube_vip_annotation_vipd_lacks_is_a_warning_and_the_vip_stays_announced() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10", "kube-vip.io/serviceVLAN": "100"}),
        json!({}),
    );
    let d = one(&run(&[s], &[ready_here("a")]), "a");
    assert_eq!(d.announced, ips(&["192.0.2.10"]));
    assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
    assert_eq!(d.problems[0].reason(), "UnsupportedAnnotation");
    assert_eq!(
        d.problems[0].to_string(),
        "annotation kube-vip.io/serviceVLAN: \"100\" is not supported by vipd yet and is ignored \
         (kube-vip puts the VIP on a VLAN sub-interface of this tag, which vipd does in ARP mode only)"
    );
}

// ---- status.loadBalancer.ingress as a source (disable_service_updates) ---------------------------

/// `web` with `spec.loadBalancerIP` = `spec_ip` (if any), the status ingress another controller
/// wrote, and no annotation.
fn with_status(spec_ip: Option<&str>, ingress: &[&str]) -> Arc<Service> {
    let mut s = (*lb("a", json!({}), json!({}))).clone();
    if let Some(ip) = spec_ip {
        s.spec.as_mut().unwrap().load_balancer_ip = Some(ip.into());
    }
    s.status = serde_json::from_value(json!({"loadBalancer": {"ingress":
        ingress.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()}}))
    .unwrap();
    Arc::new(s)
}

#[test]
fn with_status_updates_off_the_status_is_read_between_annotation_and_spec_as_kube_vip_does() {
    let reads_status = DecideConfig {
        status_is_source: true,
        ..DecideConfig::default()
    };
    let node = NodeCtx::from_node(NODE, None);
    let decided = |s: Arc<Service>, cfg: &DecideConfig| {
        one(&run_with(&[s], &[ready_here("a")], &node, cfg), "a")
    };
    // Status only: read.
    let d = decided(with_status(None, &["192.0.2.20"]), &reads_status);
    assert_eq!(d.announced, ips(&["192.0.2.20"]));
    // The same address in the spec: the status (the same).
    let d = decided(
        with_status(Some("192.0.2.20"), &["192.0.2.20", "2001:db8::20"]),
        &reads_status,
    );
    assert_eq!(d.announced, ips(&["192.0.2.20", "2001:db8::20"]));
    // Another address of the family in the spec: the spec wins.
    let d = decided(
        with_status(Some("192.0.2.21"), &["192.0.2.20"]),
        &reads_status,
    );
    assert_eq!(d.announced, ips(&["192.0.2.21"]));
    // The annotation wins over both.
    let mut annotated = (*with_status(Some("192.0.2.21"), &["192.0.2.20"])).clone();
    annotated.metadata.annotations = Some(
        [(
            "kube-vip.io/loadbalancerIPs".to_string(),
            "192.0.2.22".to_string(),
        )]
        .into(),
    );
    let d = decided(Arc::new(annotated), &reads_status);
    assert_eq!(d.announced, ips(&["192.0.2.22"]));
    // vipd writing the status itself (the default): never read back.
    let d = decided(with_status(None, &["192.0.2.20"]), &DecideConfig::default());
    assert!(d.announced.is_empty());
    assert!(d.vips.is_empty());
}

#[test]
fn an_address_field_that_names_nothing_is_a_problem_not_silence() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": ",,,"}),
        json!({"loadBalancerIP": "  "}),
    );
    let d = run(&[s], &[ready_here("a")]);
    let got = one(&d, "a");
    assert_eq!(
        got.problems,
        vec![
            Problem::NoAddressGiven {
                field: Annotation,
                value: ",,,".into(),
            },
            Problem::NoAddressGiven {
                field: Spec,
                value: "  ".into(),
            },
        ]
    );
    assert!(got.vips.is_empty());
    assert_eq!(got.problems[0].reason(), "EmptyLoadBalancerIP");
    // An empty spec.loadBalancerIP is what many charts write: no problem.
    let s = lb("b", json!({}), json!({"loadBalancerIP": ""}));
    assert!(one(&run(&[s], &[ready_here("b")]), "b").problems.is_empty());
}

#[test]
fn a_link_local_vip_is_announced_with_a_warning() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "169.254.10.10"}),
        json!({}),
    );
    let d = run(&[s], &[ready_here("a")]);
    let mut want = announced(&["169.254.10.10"]);
    want.problems = vec![Problem::LinkLocalAddress {
        field: Annotation,
        value: ip("169.254.10.10"),
    }];
    assert_eq!(one(&d, "a"), want);
    assert_eq!(want.problems[0].reason(), "LinkLocalLoadBalancerIP");
}

#[test]
fn a_garbage_allow_reconcile_without_endpoints_is_false_and_said() {
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10",
               "kube-vip.io/allow-reconcile-without-endpoints": "yes"}),
        json!({}),
    );
    let d = run(&[s], &[]);
    let got = one(&d, "a");
    assert_eq!(got.skip, Some(Skip::NoEndpoints));
    assert!(
        matches!(&got.problems[..], [Problem::InvalidAnnotation(p)]
            if p.annotation == "kube-vip.io/allow-reconcile-without-endpoints" && p.value == "yes"),
        "{:?}",
        got.problems
    );
}

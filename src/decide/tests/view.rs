//! The node, several Services in one view, and the texts operators read.

use super::*;
use serde_json::json;

// ---- Node -------------------------------------------------------------------------------------

#[test]
fn with_the_opt_in_a_node_labelled_exclude_from_external_load_balancers_announces_nothing() {
    let honour = DecideConfig {
        honour_exclude_label: true,
        ..DecideConfig::default()
    };
    for value in ["", "true", "false"] {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": NODE,
                         "labels": {"node.kubernetes.io/exclude-from-external-load-balancers": value}},
        }))
        .expect("node fixture");
        let node = NodeCtx::from_node(NODE, Some(&n));
        let s = lb(
            "a",
            json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
            json!({}),
        );
        let d = run_with(std::slice::from_ref(&s), &[ready_here("a")], &node, &honour);
        assert_eq!(
            one(&d, "a"),
            all_skipped(&["192.0.2.10"], Skip::NodeExcluded { node: NODE.into() }),
            "{value:?}"
        );
        assert!(d.routes.is_empty());
        // By default the label is ignored, as kube-vip ignores it (kubeadm puts it on every
        // control-plane node, where kube-vip's documented DaemonSet runs).
        let d = run_with(&[s], &[ready_here("a")], &node, &DecideConfig::default());
        assert_eq!(one(&d, "a").announced, [ip("192.0.2.10")], "{value:?}");
    }
}

#[test]
fn a_drained_node_announces_nothing_and_says_why() {
    let mut node = NodeCtx::from_node(NODE, None);
    node.drained = Some("the node is cordoned".into());
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({}),
    );
    let d = run_with(&[s], &[ready_here("a")], &node, &DecideConfig::default());
    let skip = Skip::NodeDrained {
        node: NODE.into(),
        why: "the node is cordoned".into(),
    };
    assert_eq!(one(&d, "a"), all_skipped(&["192.0.2.10"], skip.clone()));
    assert!(d.routes.is_empty());
    assert_eq!(skip.code(), "NodeDrained");
    assert!(skip.to_string().contains("vipd_bgp_drain_time"), "{skip}");
}

#[test]
fn node_ctx_takes_labels_from_the_node_and_none_when_unknown() {
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
    }))
    .expect("node fixture");
    let ctx = NodeCtx::from_node(NODE, Some(&n));
    assert_eq!(ctx.name, NODE);
    assert_eq!(
        ctx.labels,
        BTreeMap::from([("kubernetes.io/hostname".to_owned(), NODE.to_owned())])
    );
    assert!(NodeCtx::from_node(NODE, None).labels.is_empty());
}

// ---- Several Services ---------------------------------------------------------------------------

#[test]
fn shared_vip_stays_while_one_sharing_service_has_endpoints() {
    let with_pods = lb(
        "web",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({}),
    );
    let without = lb(
        "dns",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({}),
    );
    let d = run(&[with_pods.clone(), without.clone()], &[ready_here("web")]);
    assert_eq!(d.routes, routes(&[("192.0.2.10", &["web"])]));
    assert_eq!(one(&d, "web"), announced(&["192.0.2.10"]));
    assert_eq!(
        one(&d, "dns"),
        all_skipped(&["192.0.2.10"], Skip::NoEndpoints)
    );
    let both = run(
        &[with_pods, without],
        &[ready_here("web"), ready_here("dns")],
    );
    assert_eq!(both.routes, routes(&[("192.0.2.10", &["dns", "web"])]));
}

#[test]
fn bad_input_in_one_service_does_not_change_another() {
    let good = lb(
        "good",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({}),
    );
    let bad = lb(
        "bad",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10,???,0.0.0.0", "kube-vip.io/ignore": "TRUE"}),
        json!({"externalTrafficPolicy": "Local"}),
    );
    let alone = run(std::slice::from_ref(&good), &[ready_here("good")]);
    let together = run(&[bad, good], &[ready_here("good")]);
    assert_eq!(one(&together, "good"), one(&alone, "good"));
    assert_eq!(together.routes, routes(&[("192.0.2.10", &["good"])]));
    assert_eq!(one(&together, "bad").problems.len(), 3);
}

#[test]
fn objects_without_name_or_namespace_are_left_out() {
    let nameless = svc(
        json!({"metadata": {"namespace": "default"}, "spec": {"type": "LoadBalancer", "loadBalancerIP": "192.0.2.10"}}),
    );
    let no_ns = svc(
        json!({"metadata": {"name": "a"}, "spec": {"type": "LoadBalancer", "loadBalancerIP": "192.0.2.11"}}),
    );
    let d = run(&[nameless, no_ns], &[ready_here("a")]);
    assert_eq!(d, Desired::default());
}

#[test]
fn output_does_not_depend_on_the_order_of_the_view() {
    let services = vec![
        lb(
            "a",
            json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10,2001:db8::1"}),
            json!({}),
        ),
        lb(
            "b",
            json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
            json!({}),
        ),
        lb("c", json!({}), json!({"loadBalancerIP": "192.0.2.12"})),
    ];
    let slices = vec![ready_here("a"), ready_here("b"), ready_here("c")];
    let forward = run(&services, &slices);
    let mut rs = services.clone();
    rs.reverse();
    let mut rsl = slices.clone();
    rsl.reverse();
    assert_eq!(run(&rs, &rsl), forward);
    assert_eq!(
        forward.routes,
        routes(&[
            ("192.0.2.10", &["a", "b"]),
            ("192.0.2.12", &["c"]),
            ("2001:db8::1", &["a"]),
        ])
    );
}

// ---- Texts --------------------------------------------------------------------------------------

#[test]
fn skip_texts_name_the_value() {
    let cases = [
        (
            Skip::ClassNotOurs {
                class: "other".into(),
                ours: "kube-vip.io/kube-vip-class".into(),
            },
            "loadBalancerClass \"other\" is not vipd's (kube-vip.io/kube-vip-class)",
        ),
        (
            Skip::NotLoadBalancer {
                service_type: Some("NodePort".into()),
            },
            "type \"NodePort\" is not LoadBalancer",
        ),
        (Skip::Ignored, "annotation kube-vip.io/ignore is \"true\""),
        (
            Skip::NodeExcluded { node: "n1".into() },
            "node n1 has label node.kubernetes.io/exclude-from-external-load-balancers",
        ),
        (
            Skip::Dhcp { vip: ip("::") },
            ":: asks for an address by DHCP, which vipd does not support yet",
        ),
        (
            Skip::Dhcp { vip: ip("0.0.0.0") },
            "0.0.0.0 asks for an address by DHCP; none is leased on this node yet",
        ),
        (
            Skip::NoPeerForFamily {
                vip: ip("2001:db8::1"),
            },
            "no BGP peer carries IPv6 routes for 2001:db8::1",
        ),
    ];
    for (skip, text) in cases {
        assert_eq!(skip.to_string(), text);
    }
    assert_eq!(key("a").to_string(), "default/a");
}

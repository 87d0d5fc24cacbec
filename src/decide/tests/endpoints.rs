//! The endpoint gate: externalTrafficPolicy Cluster and Local.

use super::*;
use serde_json::json;

// ---- Endpoints, externalTrafficPolicy Cluster ---------------------------------------------------

#[test]
fn cluster_policy_without_any_serving_endpoint_announces_nothing() {
    let not_ready = eps(
        "a",
        "a-1",
        json!([{"addresses": ["10.244.2.5"], "nodeName": "n2", "conditions": {"ready": false}}]),
    );
    let serving_false = eps(
        "a",
        "a-2",
        json!([{"addresses": ["10.244.2.6"], "nodeName": "n2",
                "conditions": {"ready": false, "serving": false, "terminating": true}}]),
    );
    let empty = eps("a", "a-3", json!([]));
    for slices in [vec![], vec![not_ready, serving_false, empty]] {
        let s = lb(
            "a",
            json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
            json!({}),
        );
        let d = run(&[s], &slices);
        assert_eq!(
            one(&d, "a"),
            all_skipped(&["192.0.2.10"], Skip::NoEndpoints)
        );
        assert!(d.routes.is_empty());
    }
}

#[test]
fn cluster_policy_counts_an_endpoint_on_any_node_and_absent_conditions_as_ready() {
    let elsewhere = eps(
        "a",
        "a-1",
        json!([{"addresses": ["10.244.2.5"], "nodeName": "n2"}]),
    );
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({"externalTrafficPolicy": "Cluster"}),
    );
    let d = run(&[s], &[elsewhere]);
    assert_eq!(one(&d, "a"), announced(&["192.0.2.10"]));
}

#[test]
fn all_slices_of_a_service_are_merged_when_only_the_second_has_a_ready_endpoint() {
    let first = eps(
        "a",
        "a-1",
        json!([{"addresses": ["10.244.2.5"], "nodeName": "n2", "conditions": {"ready": false}}]),
    );
    let second = eps(
        "a",
        "a-2",
        json!([{"addresses": ["10.244.3.5"], "nodeName": "n3", "conditions": {"ready": true}}]),
    );
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({}),
    );
    // Either order: kube-vip kept whichever slice came last.
    for slices in [
        vec![first.clone(), second.clone()],
        vec![second.clone(), first.clone()],
    ] {
        let d = run(std::slice::from_ref(&s), &slices);
        assert_eq!(one(&d, "a"), announced(&["192.0.2.10"]));
    }
}

#[test]
fn cluster_policy_keeps_announcing_while_terminating_endpoints_still_serve() {
    let draining = eps(
        "a",
        "a-1",
        json!([{"addresses": ["10.244.2.5"], "nodeName": "n2",
                "conditions": {"ready": false, "serving": true, "terminating": true}}]),
    );
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({}),
    );
    let d = run(&[s], &[draining]);
    assert_eq!(one(&d, "a"), announced(&["192.0.2.10"]));
}

#[test]
fn slices_of_other_namespaces_or_services_or_without_the_label_do_not_count() {
    let other_ns = slice(json!({
        "metadata": {"name": "a-x", "namespace": "prod", "labels": {"kubernetes.io/service-name": "a"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.2.5"], "nodeName": NODE}],
    }));
    let unlabelled = slice(json!({
        "metadata": {"name": "a-y", "namespace": "default"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.2.6"], "nodeName": NODE}],
    }));
    let s = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({}),
    );
    let d = run(&[s], &[other_ns, unlabelled, ready_here("b")]);
    assert_eq!(
        one(&d, "a"),
        all_skipped(&["192.0.2.10"], Skip::NoEndpoints)
    );
}

#[test]
fn allow_reconcile_without_endpoints_announces_with_cluster_policy_only() {
    for value in ["true", "TRUE", "True"] {
        let s = lb(
            "a",
            json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10",
                   "kube-vip.io/allow-reconcile-without-endpoints": value}),
            json!({}),
        );
        assert_eq!(
            one(&run(&[s], &[]), "a"),
            announced(&["192.0.2.10"]),
            "{value:?}"
        );
    }
    let not_true = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10",
               "kube-vip.io/allow-reconcile-without-endpoints": "1"}),
        json!({}),
    );
    // "1" is false, as in kube-vip, and said so.
    let got = one(&run(&[not_true], &[]), "a");
    assert_eq!(got.skip, Some(Skip::NoEndpoints));
    assert_eq!(got.problems.len(), 1, "{:?}", got.problems);
    assert_eq!(got.problems[0].reason(), "InvalidAnnotation");
    let local = lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10",
               "kube-vip.io/allow-reconcile-without-endpoints": "true"}),
        json!({"externalTrafficPolicy": "Local"}),
    );
    assert_eq!(
        one(&run(&[local], &[]), "a"),
        all_skipped(
            &["192.0.2.10"],
            Skip::NoLocalEndpoints { node: NODE.into() }
        )
    );
}

// ---- Endpoints, externalTrafficPolicy Local -----------------------------------------------------

fn local_svc() -> Arc<Service> {
    lb(
        "a",
        json!({"kube-vip.io/loadbalancerIPs": "192.0.2.10"}),
        json!({"externalTrafficPolicy": "Local"}),
    )
}

#[test]
fn local_policy_announces_while_a_terminating_endpoint_on_this_node_still_serves() {
    // A rolling update: the old pod here terminates but serves; the new pod elsewhere is ready.
    let s = eps(
        "a",
        "a-1",
        json!([
            {"addresses": ["10.244.1.5"], "nodeName": NODE,
             "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.244.2.9"], "nodeName": "n2",
             "conditions": {"ready": true, "serving": true, "terminating": false}},
        ]),
    );
    let d = run(&[local_svc()], &[s]);
    assert_eq!(one(&d, "a"), announced(&["192.0.2.10"]));
}

#[test]
fn local_policy_with_the_endpoint_on_another_node_announces_nothing_here() {
    let s = eps(
        "a",
        "a-1",
        json!([{"addresses": ["10.244.2.5"], "nodeName": "n2", "conditions": {"ready": true}}]),
    );
    let d = run(&[local_svc()], &[s]);
    let want = all_skipped(
        &["192.0.2.10"],
        Skip::NoLocalEndpoints { node: NODE.into() },
    );
    assert_eq!(one(&d, "a"), want);
    assert_eq!(
        want.skip.map(|s| s.to_string()).as_deref(),
        Some("no serving endpoint on node n1 (externalTrafficPolicy Local)")
    );
}

#[test]
fn local_policy_serving_falls_back_to_ready_then_to_true() {
    // (conditions, announced?)
    for (conditions, want) in [
        (json!({"serving": true, "ready": false}), true),
        (json!({"serving": false, "ready": true}), false),
        (json!({"ready": false}), false),
        (json!({"ready": true}), true),
        (json!({}), true),
        (json!(null), true),
    ] {
        let s = eps(
            "a",
            "a-1",
            json!([{"addresses": ["10.244.1.5"], "nodeName": NODE, "conditions": conditions}]),
        );
        let got = one(&run(&[local_svc()], &[s]), "a").skip.is_none();
        assert_eq!(got, want, "conditions {conditions}");
    }
}

#[test]
fn local_policy_uses_hostname_only_when_node_name_is_absent() {
    let by_hostname = eps(
        "a",
        "a-1",
        json!([{"addresses": ["10.244.1.5"], "hostname": NODE}]),
    );
    assert_eq!(
        one(&run(&[local_svc()], &[by_hostname]), "a"),
        announced(&["192.0.2.10"])
    );
    let other_node = eps(
        "a",
        "a-1",
        json!([{"addresses": ["10.244.2.5"], "hostname": NODE, "nodeName": "n2"}]),
    );
    assert_eq!(
        one(&run(&[local_svc()], &[other_node]), "a").skip,
        Some(Skip::NoLocalEndpoints { node: NODE.into() })
    );
}

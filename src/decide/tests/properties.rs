//! Random input never panics and keeps a decision self-consistent.

use super::*;
use proptest::prelude::*;
use serde_json::json;

// ---- Properties ---------------------------------------------------------------------------------

/// Strings built from the characters that matter in address lists, plus anything at all.
fn address_list() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F:.,% fx/-]{0,60}",
        proptest::collection::vec(
            prop_oneof![
                any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
                any::<std::net::Ipv6Addr>().prop_map(|a| a.to_string()),
                Just("0.0.0.0".to_owned()),
                Just("::".to_owned()),
                "[a-z.-]{0,12}",
                ".{0,8}",
            ],
            0..6
        )
        .prop_map(|v| v.join(",")),
        ".*",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_annotations_never_panic_and_keep_the_decision_consistent(
        ips_annotation in address_list(),
        spec_ip in address_list(),
        ignore in ".{0,6}",
        allow in ".{0,6}",
        local in any::<bool>(),
        v4 in any::<bool>(),
        v6 in any::<bool>(),
    ) {
        let s = lb(
            "a",
            json!({"kube-vip.io/loadbalancerIPs": ips_annotation,
                   "kube-vip.io/ignore": ignore,
                   "kube-vip.io/allow-reconcile-without-endpoints": allow}),
            json!({"loadBalancerIP": spec_ip,
                   "externalTrafficPolicy": if local { "Local" } else { "Cluster" }}),
        );
        let cfg = DecideConfig { announce_ipv4: v4, announce_ipv6: v6, ..DecideConfig::default() };
        let d = run_with(&[s], &[ready_here("a")], &node(), &cfg);
        let dec = one(&d, "a");
        // vips = announced ⊎ not_announced, in vips order.
        let mut merged: Vec<IpAddr> = dec.announced.clone();
        merged.extend(dec.not_announced.iter().map(|(v, _)| *v));
        merged.sort_by_key(|v| dec.vips.iter().position(|x| x == v));
        prop_assert_eq!(&merged, &dec.vips);
        prop_assert_eq!(dec.skip.is_some(), dec.announced.is_empty());
        // Routes hold exactly the announced VIPs, never a DHCP placeholder or a VIP without a peer.
        prop_assert_eq!(d.routes.keys().copied().collect::<Vec<_>>(),
                        dec.announced.iter().copied().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>());
        for vip in &dec.announced {
            prop_assert!(!vip.is_unspecified());
            let has_peer = if vip.is_ipv4() { v4 } else { v6 };
            prop_assert!(has_peer);
        }
        for p in &dec.problems {
            prop_assert!(!p.reason().is_empty() && !p.to_string().is_empty());
        }
    }
}

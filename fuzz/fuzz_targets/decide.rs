//! Fuzz target: what this node announces (`vipd::decide::desired`) from Services,
//! EndpointSlices and the Node as the API server hands them over (their annotations, addresses,
//! classes, traffic policies and endpoint conditions are all user input), then the status
//! writes that follow (`decide::ingress`) and the UPnP lease annotation
//! (`upnp::plan::lease_secs`).
//!
//! Input: three parts split on 0xFF (which valid JSON text never holds): a JSON array of
//! `Service`, a JSON array of `EndpointSlice`, a `Node`. No Services → nothing to do; slices
//! or Node that do not parse are taken as none.
//!
//! Asserted for two settings (kube-vip's defaults; class-only, IPv4 only, exclude label
//! honoured, status as an address source), besides "no panic":
//! - every announced VIP of a decision is among its `vips`; in fact `vips` is exactly
//!   `announced` plus `not_announced`, in `vips` order, without duplicates (the invariant
//!   `ServiceDecision` documents); `skip` is set exactly when nothing is announced;
//! - announced VIPs are never the DHCP placeholder and always of a family some peer carries;
//! - `routes` holds exactly the announced VIPs, each with exactly the Services announcing it
//!   (when no two Services share a namespace/name, as from a real API server);
//! - the decision is deterministic, and (for distinct Service keys) independent of the order
//!   of the Services;
//! - the ingress this node would write holds only VIPs it announces.

#![no_main]

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use vipd::decide::ingress::{ingress_target, ingress_write};
use vipd::decide::{desired, ClusterView, DecideConfig, Desired, NodeCtx, ServiceKey};
use vipd::upnp::plan::lease_secs;

fn configs() -> [DecideConfig; 2] {
    [
        DecideConfig::default(),
        DecideConfig {
            lb_class_only: true,
            lb_class_name: "kube-vip.io/kube-vip-class".to_owned(),
            lb_class_legacy_handling: false,
            announce_ipv4: true,
            announce_ipv6: false,
            honour_exclude_label: true,
            status_is_source: true,
            // ARP mode's reading: kube-vip.io/serviceVLAN honoured.
            vlans: true,
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let Some(Ok(services)) = parts
        .next()
        .map(|p| serde_json::from_slice::<Vec<Service>>(p))
    else {
        return;
    };
    let slices: Vec<EndpointSlice> = parts
        .next()
        .and_then(|p| serde_json::from_slice(p).ok())
        .unwrap_or_default();
    let node: Option<Node> = parts.next().and_then(|p| serde_json::from_slice(p).ok());

    let services: Vec<Arc<Service>> = services.into_iter().map(Arc::new).collect();
    let slices: Vec<Arc<EndpointSlice>> = slices.into_iter().map(Arc::new).collect();
    let name = node
        .as_ref()
        .and_then(|n| n.metadata.name.clone())
        .unwrap_or_else(|| "worker-1".to_owned());
    let ctx = NodeCtx::from_node(&name, node.as_ref());

    let keys: Vec<ServiceKey> = services.iter().filter_map(|s| ServiceKey::of(s)).collect();
    let distinct = keys.iter().collect::<BTreeSet<_>>().len() == keys.len();
    // Later Services with the same key replace earlier ones, in `desired` as here.
    let by_key: BTreeMap<ServiceKey, &Service> = services
        .iter()
        .filter_map(|s| Some((ServiceKey::of(s)?, &**s)))
        .collect();

    for cfg in configs() {
        let view = ClusterView {
            services: &services,
            endpoint_slices: &slices,
        };
        let d = desired(&view, &ctx, &cfg);
        check(&d, &cfg, &by_key, distinct);
        assert_eq!(d, desired(&view, &ctx, &cfg), "not deterministic");
        if distinct {
            let reversed: Vec<Arc<Service>> = services.iter().rev().cloned().collect();
            let view = ClusterView {
                services: &reversed,
                endpoint_slices: &slices,
            };
            assert_eq!(d, desired(&view, &ctx, &cfg), "depends on the order of the Services");
        }
    }
});

/// `distinct`: no two Services share a key. (The API server never returns two; with them, the
/// later one's decision replaces the earlier's while the earlier's routes stay.)
fn check(
    d: &Desired,
    cfg: &DecideConfig,
    by_key: &BTreeMap<ServiceKey, &Service>,
    distinct: bool,
) {
    for (key, dec) in &d.services {
        for vip in &dec.announced {
            assert!(dec.vips.contains(vip), "{key}: announces {vip}, not one of its VIPs");
        }
        // vips = announced ⊎ not_announced, in vips order.
        let mut announced = dec.announced.iter().peekable();
        let mut not_announced = dec.not_announced.iter().map(|(v, _)| v).peekable();
        for vip in &dec.vips {
            if announced.peek() == Some(&vip) {
                announced.next();
            } else if not_announced.peek() == Some(&vip) {
                not_announced.next();
            } else {
                panic!("{key}: {vip} neither announced nor skipped, in order: {dec:?}");
            }
        }
        assert!(
            announced.next().is_none() && not_announced.next().is_none(),
            "{key}: decided VIPs it does not have: {dec:?}"
        );
        let unique: BTreeSet<_> = dec.vips.iter().collect();
        assert_eq!(unique.len(), dec.vips.len(), "{key}: duplicate VIPs");
        assert_eq!(dec.skip.is_some(), dec.announced.is_empty(), "{key}: {dec:?}");

        for vip in &dec.announced {
            assert!(!vip.is_unspecified(), "{key}: announces the DHCP placeholder");
            let carried = if vip.is_ipv4() {
                cfg.announce_ipv4
            } else {
                cfg.announce_ipv6
            };
            assert!(carried, "{key}: announces {vip}, of a family no peer carries");
            assert!(
                d.routes.get(vip).is_some_and(|keys| keys.contains(key)),
                "{key}: {vip} announced but not routed"
            );
        }
        for p in &dec.problems {
            assert!(!p.reason().is_empty() && !p.to_string().is_empty());
        }
        if let Some(skip) = &dec.skip {
            assert!(!skip.to_string().is_empty() && !skip.code().is_empty());
        }
        for (_, skip) in &dec.not_announced {
            assert!(!skip.to_string().is_empty());
        }
        let _ = lease_secs(dec.intent.upnp_lease_duration.as_deref());

        let svc = by_key.get(key).expect("a decision for a Service in the view");
        for peers_up in [false, true] {
            for clear in [false, true] {
                let target = ingress_target(dec, peers_up, clear);
                if let Some(write) = ingress_write(&target, svc) {
                    for ip in &write.ips {
                        assert!(dec.announced.contains(ip), "{key}: writes {ip}, not announced");
                    }
                }
            }
        }
    }
    for (vip, keys) in &d.routes {
        assert!(!keys.is_empty(), "{vip} routed for no Service");
        if !distinct {
            continue;
        }
        for key in keys {
            assert!(
                d.services.get(key).is_some_and(|dec| dec.announced.contains(vip)),
                "{vip} routed for {key}, which does not announce it"
            );
        }
    }
}

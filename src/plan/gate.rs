//! [pure] Which Lease elects the node that serves a Service, and what the Services this node
//! does not lead may still do here.
//!
//! ARP mode elects every Service. BGP mode announces from every eligible node (ECMP), except
//! what one node alone may hold: a DHCP lease (one lease must not be held by many MACs: the
//! LAN would see the Service's MAC flap between ports) and a UPnP mapping (the gateway forwards
//! a port to one internal client). Those are served by the elected node of a per-Service Lease,
//! for which every node that passes the Service's gates stands. With `svc_election` BGP mode
//! elects every Service as kube-vip does: one node announces each.

use crate::config::ElectionScope;
use crate::decide::{Desired, ServiceKey, Skip};
use crate::dhcp::plan::{self, Want};
use crate::election::LeaseKey;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// The Lease a Service is elected by: `kube-vip.io/leaseName` (`[namespace/]name`), else
/// `kubevip-<name>` in its namespace; with one Lease for all, that one.
pub fn lease_key(svc: &ServiceKey, annotation: Option<&str>, scope: &ElectionScope) -> LeaseKey {
    match scope {
        ElectionScope::Global { namespace, name } => LeaseKey {
            namespace: namespace.clone(),
            name: name.clone(),
        },
        ElectionScope::PerService => match annotation.map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) => match a.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => LeaseKey {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                },
                _ => LeaseKey {
                    namespace: svc.namespace.clone(),
                    name: a.trim_matches('/').to_owned(),
                },
            },
            None => LeaseKey {
                namespace: svc.namespace.clone(),
                name: format!("kubevip-{}", svc.name),
            },
        },
    }
}

/// Standing for a Lease, or no longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// Stop standing for the Lease, releasing it if led: no Service uses it any more.
    Unstand(LeaseKey),
    /// Stand for the Lease, or change whether this node is eligible (an ineligible node stays
    /// in the election without taking the Lease, and gives it up if it holds it).
    Stand { lease: LeaseKey, eligible: bool },
}

/// From the Leases stood for now (`stood`, with their eligibility) to `eligible`: the Leases
/// no longer used go first, then the new or changed ones.
pub fn lease_steps(
    eligible: &BTreeMap<LeaseKey, bool>,
    stood: &BTreeMap<LeaseKey, bool>,
) -> Vec<LeaseStep> {
    let gone = stood
        .keys()
        .filter(|k| !eligible.contains_key(*k))
        .map(|k| LeaseStep::Unstand(k.clone()));
    let changed = eligible
        .iter()
        .filter(|(k, e)| stood.get(*k) != Some(*e))
        .map(|(k, e)| LeaseStep::Stand {
            lease: k.clone(),
            eligible: *e,
        });
    gone.chain(changed).collect()
}

/// BGP mode: the Services this node stands for, each with its per-Service Lease. A node
/// stands for a `0.0.0.0` Service whose gates it passes ([`Want::Lease`]), with `upnp` for a
/// `kube-vip.io/forwardUPNP` Service it announces an IPv4 VIP of, and with `elect_all`
/// (`svc_election`) for every Service it could announce.
pub fn standing(desired: &Desired, upnp: bool, elect_all: bool) -> BTreeMap<ServiceKey, LeaseKey> {
    let mut out = BTreeMap::new();
    for (key, d) in &desired.services {
        let dhcp = plan::want(Some(d)) == Want::Lease;
        let maps = upnp && d.intent.forward_upnp && d.announced.iter().any(IpAddr::is_ipv4);
        let elected = elect_all && !d.announced.is_empty();
        if dhcp || maps || elected {
            let lease = lease_key(
                key,
                d.intent.lease_name.as_deref(),
                &ElectionScope::PerService,
            );
            out.insert(key.clone(), lease);
        }
    }
    out
}

/// Marks the DHCP Services this node stands for but does not lead as [`Skip::NotElected`], so
/// their client stops here without RELEASE ([`Want::Elsewhere`]: the leader asks with the same
/// MAC and keeps the address) and no lease of theirs is announced from here. With `elect_all`
/// every Service not led here is withheld: its VIPs not announced, their routes gone unless
/// another Service announced from here shares them.
pub fn gate(
    desired: &mut Desired,
    standing: &BTreeMap<ServiceKey, LeaseKey>,
    leading: &BTreeSet<LeaseKey>,
    elect_all: bool,
) {
    let placeholder = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    for (key, lease) in standing {
        if leading.contains(lease) {
            continue;
        }
        let Some(d) = desired.services.get_mut(key) else {
            continue;
        };
        let skip = Skip::NotElected {
            lease: lease.to_string(),
        };
        if elect_all && !d.announced.is_empty() {
            for vip in std::mem::take(&mut d.announced) {
                d.not_announced.push((vip, skip.clone()));
                if let Some(wanted_by) = desired.routes.get_mut(&vip) {
                    wanted_by.remove(key);
                    if wanted_by.is_empty() {
                        desired.routes.remove(&vip);
                    }
                }
            }
            // `not_announced` stays in `vips` order (the decision's invariant).
            let order = d.vips.clone();
            d.not_announced
                .sort_by_key(|(vip, _)| order.iter().position(|v| v == vip));
            d.skip = Some(skip);
            continue;
        }
        if plan::want(Some(d)) != Want::Lease {
            continue;
        }
        for (vip, why) in &mut d.not_announced {
            if *vip == placeholder {
                *why = skip.clone();
            }
        }
        d.skip = Some(skip);
    }
}

/// What UPnP maps from: `desired`, with nothing announced for the Services this node stands
/// for but does not lead (their mappings belong to the leader).
pub fn upnp_view(
    desired: &Desired,
    standing: &BTreeMap<ServiceKey, LeaseKey>,
    leading: &BTreeSet<LeaseKey>,
) -> Desired {
    let mut view = desired.clone();
    for (key, lease) in standing {
        if leading.contains(lease) {
            continue;
        }
        if let Some(d) = view.services.get_mut(key) {
            d.announced.clear();
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{self, ClusterView, DecideConfig, NodeCtx};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;
    use std::sync::Arc;

    fn service(name: &str, ip: &str, annotations: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                    "annotations": annotations},
                "spec": {"type": "LoadBalancer", "loadBalancerIP": ip,
                    "externalTrafficPolicy": "Cluster",
                    "ports": [{"port": 80, "protocol": "TCP"}]},
            }))
            .unwrap(),
        )
    }

    fn slice(service: &str) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{service}-1"), "namespace": "default",
                    "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.9"], "nodeName": "other",
                    "conditions": {"ready": true, "serving": true}}],
            }))
            .unwrap(),
        )
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn lease(name: &str) -> LeaseKey {
        LeaseKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    /// Services under ETP Cluster with an endpoint on another node: every node passes the
    /// gates of each, as in the MAC-flapping defect.
    fn decided(services: &[Arc<Service>]) -> Desired {
        let slices: Vec<Arc<EndpointSlice>> = services
            .iter()
            .map(|s| slice(s.metadata.name.as_deref().unwrap()))
            .collect();
        let view = ClusterView {
            services,
            endpoint_slices: &slices,
        };
        let cfg = DecideConfig {
            lb_class_only: false,
            lb_class_name: "kube-vip.io/kube-vip-class".into(),
            lb_class_legacy_handling: true,
            announce_ipv4: true,
            announce_ipv6: true,
            honour_exclude_label: true,
            status_is_source: false,
            vlans: false,
        };
        decide::desired(&view, &NodeCtx::from_node("n1", None), &cfg)
    }

    fn fixture() -> (Vec<Arc<Service>>, Desired) {
        let services = vec![
            service("dhcp", "0.0.0.0", json!({})),
            service(
                "named",
                "0.0.0.0",
                json!({"kube-vip.io/leaseName": "infra/shared"}),
            ),
            service(
                "mapped",
                "192.0.2.10",
                json!({"kube-vip.io/forwardUPNP": "true"}),
            ),
            service("plain", "192.0.2.11", json!({})),
        ];
        let desired = decided(&services);
        (services, desired)
    }

    #[test]
    fn a_node_stands_for_dhcp_services_and_with_upnp_for_the_ones_it_maps() {
        let (_, desired) = fixture();
        let with_upnp = standing(&desired, true, false);
        assert_eq!(
            with_upnp,
            BTreeMap::from([
                (key("dhcp"), lease("kubevip-dhcp")),
                (
                    key("named"),
                    LeaseKey {
                        namespace: "infra".into(),
                        name: "shared".into()
                    }
                ),
                (key("mapped"), lease("kubevip-mapped")),
            ]),
            "a static VIP without forwardUPNP is announced by every node: no Lease"
        );
        let without = standing(&desired, false, false);
        assert!(!without.contains_key(&key("mapped")));
        assert_eq!(without.len(), 2);
    }

    #[test]
    fn with_svc_election_every_service_is_announced_by_its_leader_alone() {
        let (_, desired) = fixture();
        let stand = standing(&desired, false, true);
        assert_eq!(
            stand.get(&key("plain")),
            Some(&lease("kubevip-plain")),
            "a static VIP too"
        );
        assert_eq!(stand.len(), 4, "{stand:?}");
        // Leading `plain` only: its route stays, `mapped`'s goes, NotElected says why.
        let mut led_plain = desired.clone();
        gate(
            &mut led_plain,
            &stand,
            &BTreeSet::from([lease("kubevip-plain")]),
            true,
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            led_plain.routes.keys().copied().collect::<Vec<_>>(),
            [ip("192.0.2.11")]
        );
        let mapped = &led_plain.services[&key("mapped")];
        assert!(mapped.announced.is_empty());
        let not_elected = Skip::NotElected {
            lease: "default/kubevip-mapped".into(),
        };
        assert_eq!(mapped.skip, Some(not_elected.clone()));
        assert_eq!(mapped.not_announced, [(ip("192.0.2.10"), not_elected)]);
        assert_eq!(
            led_plain.services[&key("plain")].announced,
            [ip("192.0.2.11")]
        );
        // A shared VIP stays routed while a Service led here announces it.
        let mut shared = desired.clone();
        shared
            .routes
            .get_mut(&ip("192.0.2.11"))
            .unwrap()
            .insert(key("other"));
        gate(&mut shared, &stand, &BTreeSet::new(), true);
        assert_eq!(
            shared.routes.keys().copied().collect::<Vec<_>>(),
            [ip("192.0.2.11")]
        );
        assert_eq!(
            shared.routes[&ip("192.0.2.11")],
            BTreeSet::from([key("other")])
        );
    }

    #[test]
    fn a_node_that_fails_the_gates_does_not_stand() {
        let (_, mut desired) = fixture();
        // What decide says on a node excluded from load balancers.
        for d in desired.services.values_mut() {
            d.skip = Some(Skip::NodeExcluded { node: "n1".into() });
            d.announced.clear();
        }
        assert!(standing(&desired, true, false).is_empty());
        assert!(standing(&desired, true, true).is_empty());
    }

    #[test]
    fn only_the_leader_leases_every_other_node_stops_without_release() {
        let (_, desired) = fixture();
        let stand = standing(&desired, true, false);
        // Not leading: DHCP is served elsewhere (stop, keep the lease for the leader).
        let mut follower = desired.clone();
        gate(&mut follower, &stand, &BTreeSet::new(), false);
        let dhcp = &follower.services[&key("dhcp")];
        assert_eq!(plan::want(Some(dhcp)), Want::Elsewhere);
        assert_eq!(
            dhcp.skip,
            Some(Skip::NotElected {
                lease: "default/kubevip-dhcp".into()
            })
        );
        assert_eq!(
            dhcp.not_announced,
            vec![(
                "0.0.0.0".parse().unwrap(),
                Skip::NotElected {
                    lease: "default/kubevip-dhcp".into()
                }
            )]
        );
        // A static VIP is still announced by BGP from every node: gate touches DHCP only.
        assert_eq!(
            follower.services[&key("mapped")],
            desired.services[&key("mapped")]
        );
        // Leading one Lease: that Service only.
        let mut leader = desired.clone();
        gate(
            &mut leader,
            &stand,
            &BTreeSet::from([lease("kubevip-dhcp")]),
            false,
        );
        assert_eq!(
            plan::want(Some(&leader.services[&key("dhcp")])),
            Want::Lease
        );
        assert_eq!(
            plan::want(Some(&leader.services[&key("named")])),
            Want::Elsewhere
        );
    }

    #[test]
    fn only_the_leader_maps_a_forwarded_service() {
        let (_, desired) = fixture();
        let stand = standing(&desired, true, false);
        let vip: IpAddr = "192.0.2.10".parse().unwrap();
        let follower = upnp_view(&desired, &stand, &BTreeSet::new());
        assert!(follower.services[&key("mapped")].announced.is_empty());
        assert_eq!(
            follower.routes, desired.routes,
            "the BGP routes are not upnp_view's business"
        );
        let leader = upnp_view(&desired, &stand, &BTreeSet::from([lease("kubevip-mapped")]));
        assert_eq!(leader.services[&key("mapped")].announced, vec![vip]);
        assert_eq!(
            leader.services[&key("plain")].announced,
            vec!["192.0.2.11".parse::<IpAddr>().unwrap()]
        );
    }
}

//! [pure] What `status.loadBalancer.ingress` of a Service should hold, seen from this node.
//!
//! Every node runs this on its own view, so a node writes only what every node would agree on:
//! - a node that announces the Service sets the ingress to the VIPs it announces;
//! - any node clears it when the Service is no longer a LoadBalancer, and, only when asked
//!   (`vipd_clear_ingress_without_endpoints`), when no endpoint serves anywhere: by default the
//!   address stays, as kube-vip leaves it (it is still the Service's address, and DNS
//!   controllers watching the status would otherwise drop records whenever a Service scales to
//!   zero);
//! - nobody touches it for per-node facts (an excluded node, no endpoint *here* under
//!   externalTrafficPolicy Local, a family this node has no peer for) or for Services that are
//!   not vipd's (ignored, another class): that status belongs to whoever serves them. A Service
//!   without an address vipd can use is left alone too: under kube-vip's legacy class handling
//!   it may be another controller's (MetalLB during a migration), and clearing its status would
//!   start a write war.

use super::{ServiceDecision, Skip};
use k8s_openapi::api::core::v1::Service;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressTarget {
    /// Write exactly these addresses, in this order.
    Set(Vec<IpAddr>),
    /// This node announces only some of the Service's VIPs for reasons of its own (no peer for
    /// a family): write these only if the status is empty, so a node that announces every VIP
    /// is not overwritten — two nodes writing different lists would patch each other forever.
    SetIfEmpty(Vec<IpAddr>),
    /// Remove every ingress entry.
    Clear,
    /// Not this node's to write.
    Leave,
}

/// The ingress this node should write for `decision`. `peers_up`: some BGP session is
/// Established, so an announced VIP has actually reached a router. `clear_without_endpoints`:
/// a Service with no serving endpoint anywhere loses its ingress.
pub fn ingress_target(
    decision: &ServiceDecision,
    peers_up: bool,
    clear_without_endpoints: bool,
) -> IngressTarget {
    if !decision.announced.is_empty() {
        return if !peers_up {
            IngressTarget::Leave
        } else if decision.not_announced.is_empty() {
            IngressTarget::Set(decision.announced.clone())
        } else {
            IngressTarget::SetIfEmpty(decision.announced.clone())
        };
    }
    match &decision.skip {
        Some(Skip::NotLoadBalancer { .. }) => IngressTarget::Clear,
        Some(Skip::NoEndpoints) if clear_without_endpoints => IngressTarget::Clear,
        _ => IngressTarget::Leave,
    }
}

/// One port of a Service as kube-vip writes it into each ingress entry (`ports`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortStatus {
    pub port: i32,
    pub protocol: String,
}

/// What to write into `status.loadBalancer.ingress`: an entry per address, each with `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressWrite {
    pub ips: Vec<IpAddr>,
    pub ports: Vec<PortStatus>,
}

/// The Service's ports (`spec.ports`: port, protocol, TCP when unset), as kube-vip writes them.
pub fn status_ports(svc: &Service) -> Vec<PortStatus> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .map(|p| PortStatus {
            port: p.port,
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        })
        .collect()
}

/// Whether every IP entry of the ingress now carries exactly `want` as its ports.
fn ports_match(svc: &Service, want: &[PortStatus]) -> bool {
    let entries = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    entries
        .into_iter()
        .flatten()
        .filter(|e| e.ip.is_some())
        .all(|e| {
            let have: Vec<PortStatus> = e
                .ports
                .iter()
                .flatten()
                .map(|p| PortStatus {
                    port: p.port,
                    protocol: p.protocol.clone(),
                })
                .collect();
            have == want
        })
}

/// The write `target` needs on `svc`: its addresses differ ([`ingress_change`]), or they are
/// ours (`Set`) and their `ports` no longer match the Service's. `None`: nothing to write.
pub fn ingress_write(target: &IngressTarget, svc: &Service) -> Option<IngressWrite> {
    let current = current_ingress(svc);
    let ports = status_ports(svc);
    let ips = match ingress_change(target, &current) {
        Some(ips) => ips,
        None => match target {
            IngressTarget::Set(want) if !want.is_empty() && !ports_match(svc, &ports) => {
                want.clone()
            }
            _ => return None,
        },
    };
    let ports = if ips.is_empty() { Vec::new() } else { ports };
    Some(IngressWrite { ips, ports })
}

/// The IP entries of `status.loadBalancer.ingress` now (hostname entries are not vipd's).
pub fn current_ingress(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The write that brings `current` to `target`, if any: `Some(addresses)` (empty = clear).
pub fn ingress_change(target: &IngressTarget, current: &[IpAddr]) -> Option<Vec<IpAddr>> {
    match target {
        IngressTarget::Set(want) if want.as_slice() != current => Some(want.clone()),
        IngressTarget::SetIfEmpty(want) if current.is_empty() => Some(want.clone()),
        IngressTarget::Clear if !current.is_empty() => Some(Vec::new()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn decision(announced: &[&str], skip: Option<Skip>) -> ServiceDecision {
        let announced: Vec<IpAddr> = announced.iter().map(|s| ip(s)).collect();
        ServiceDecision {
            vips: announced.clone(),
            announced,
            skip,
            not_announced: Vec::new(),
            problems: Vec::new(),
            intent: Default::default(),
        }
    }

    #[test]
    fn an_announcing_node_writes_its_vips_once_a_peer_is_up() {
        let d = decision(&["198.18.0.10", "fd00:98::10"], None);
        assert_eq!(
            ingress_target(&d, true, false),
            IngressTarget::Set(vec![ip("198.18.0.10"), ip("fd00:98::10")])
        );
        assert_eq!(ingress_target(&d, false, false), IngressTarget::Leave);
    }

    #[test]
    fn a_node_announcing_only_part_writes_only_into_an_empty_status() {
        let mut d = decision(&["198.18.0.10"], None);
        d.vips.push(ip("fd00:98::10"));
        d.not_announced = vec![(
            ip("fd00:98::10"),
            Skip::NoPeerForFamily {
                vip: ip("fd00:98::10"),
            },
        )];
        let target = ingress_target(&d, true, false);
        assert_eq!(target, IngressTarget::SetIfEmpty(vec![ip("198.18.0.10")]));
        assert_eq!(ingress_change(&target, &[]), Some(vec![ip("198.18.0.10")]));
        // What a dual-stack node wrote stays: no ping-pong between the two nodes.
        assert_eq!(
            ingress_change(&target, &[ip("198.18.0.10"), ip("fd00:98::10")]),
            None
        );
    }

    #[test]
    fn cluster_wide_reasons_clear_and_per_node_or_foreign_reasons_leave_alone() {
        let node = || "n1".to_string();
        let table = [
            (
                Skip::NotLoadBalancer {
                    service_type: Some("ClusterIP".into()),
                },
                IngressTarget::Clear,
            ),
            (Skip::NoAddress, IngressTarget::Leave),
            // Kept by default, as kube-vip keeps it (`clear_without_endpoints` below).
            (Skip::NoEndpoints, IngressTarget::Leave),
            (
                Skip::NoLocalEndpoints { node: node() },
                IngressTarget::Leave,
            ),
            (Skip::NodeExcluded { node: node() }, IngressTarget::Leave),
            (Skip::Ignored, IngressTarget::Leave),
            (
                Skip::ClassNotOurs {
                    class: "metallb".into(),
                    ours: "x".into(),
                },
                IngressTarget::Leave,
            ),
            (
                Skip::NoPeerForFamily { vip: ip("fd00::1") },
                IngressTarget::Leave,
            ),
            (Skip::Dhcp { vip: ip("0.0.0.0") }, IngressTarget::Leave),
        ];
        for (skip, want) in table {
            let d = decision(&[], Some(skip.clone()));
            assert_eq!(ingress_target(&d, true, false), want, "{skip}");
        }
        let none_serve = decision(&[], Some(Skip::NoEndpoints));
        assert_eq!(
            ingress_target(&none_serve, true, true),
            IngressTarget::Clear
        );
    }

    fn web(ingress: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer",
                     "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": ingress}},
        }))
        .unwrap()
    }

    #[test]
    fn each_entry_carries_the_services_ports_as_kube_vip_writes_them() {
        let ports = vec![
            PortStatus {
                port: 80,
                protocol: "TCP".into(),
            },
            PortStatus {
                port: 53,
                protocol: "UDP".into(),
            },
        ];
        let set = IngressTarget::Set(vec![ip("198.18.0.10")]);
        // Empty status: written with the ports.
        assert_eq!(
            ingress_write(&set, &web(serde_json::json!([]))),
            Some(IngressWrite {
                ips: vec![ip("198.18.0.10")],
                ports: ports.clone()
            })
        );
        // The address is there without ports (an older vipd wrote it): written again.
        let bare = web(serde_json::json!([{"ip": "198.18.0.10"}]));
        assert_eq!(
            ingress_write(&set, &bare).map(|w| w.ports),
            Some(ports.clone())
        );
        // Address and ports in place: nothing to write.
        let done = web(serde_json::json!([{"ip": "198.18.0.10",
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}]));
        assert_eq!(ingress_write(&set, &done), None);
        // Clearing writes no ports; another node's entries are not ours to fix.
        assert_eq!(
            ingress_write(&IngressTarget::Clear, &done),
            Some(IngressWrite {
                ips: vec![],
                ports: vec![]
            })
        );
        assert_eq!(ingress_write(&IngressTarget::Leave, &bare), None);
        let partial = IngressTarget::SetIfEmpty(vec![ip("198.18.0.10")]);
        assert_eq!(ingress_write(&partial, &bare), None);
    }

    #[test]
    fn a_write_happens_only_when_the_status_differs() {
        let now = [ip("198.18.0.10")];
        let set = IngressTarget::Set(now.to_vec());
        assert_eq!(ingress_change(&set, &now), None);
        assert_eq!(ingress_change(&set, &[]), Some(now.to_vec()));
        assert_eq!(ingress_change(&IngressTarget::Clear, &now), Some(vec![]));
        assert_eq!(ingress_change(&IngressTarget::Clear, &[]), None);
        assert_eq!(ingress_change(&IngressTarget::Leave, &now), None);
    }

    #[test]
    fn current_ingress_reads_ip_entries_and_skips_hostnames() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "status": {"loadBalancer": {"ingress": [
                {"ip": "198.18.0.10"}, {"hostname": "lb.example.com"}, {"ip": "fd00:98::10"}
            ]}}
        }))
        .unwrap();
        assert_eq!(
            current_ingress(&svc),
            vec![ip("198.18.0.10"), ip("fd00:98::10")]
        );
    }
}

//! [pure] What should THIS node announce? [`desired`] turns the cluster view (Services,
//! EndpointSlices), this node and the settings into [`Desired`]: every VIP to announce with the
//! Services that want it, and one [`ServiceDecision`] per Service with typed reasons.
//!
//! - `addresses`: which Services are vipd's (type, ignore, class) and which addresses they ask for.
//! - [`endpoints`]: merging EndpointSlices; the externalTrafficPolicy Cluster/Local gate.
//! - [`reasons`]: [`Skip`] and [`Problem`].
//! - [`ingress`]: what `status.loadBalancer.ingress` this node writes.
//!
//! No I/O, no clock: the same inputs always give the same `Desired` (BTree maps throughout).
//! The view must be complete (every reflector `InitDone`): the caller does not call `desired`
//! on a partial view, because a missing object here reads as "withdraw" (kube-vip#867, #948).
//!
//! Owns what this node may serve and why not. May import only [`crate::model`]; [`crate::plan`],
//! the owner loop, IPAM and the status report read it.

mod addresses;
pub mod endpoints;
pub mod ingress;
pub mod reasons;
#[cfg(test)]
mod tests;

pub use reasons::{AddressField, Problem, Skip};

use crate::model::label::EXCLUDE_FROM_LB;
use crate::model::ServiceIntent;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// A Service's identity. Display: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    /// The key of a Service as the API server returns it (which always has both).
    pub fn of(svc: &Service) -> Option<ServiceKey> {
        Some(ServiceKey {
            namespace: svc.metadata.namespace.clone()?,
            name: svc.metadata.name.clone()?,
        })
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the reflectors hold, complete (see the module docs).
pub struct ClusterView<'a> {
    pub services: &'a [Arc<Service>],
    pub endpoint_slices: &'a [Arc<EndpointSlice>],
}

/// This node as `decide` needs it.
pub struct NodeCtx {
    /// The node name (`vip_nodename`), compared with `endpoint.nodeName`.
    pub name: String,
    /// The Node object's labels (for `node.kubernetes.io/exclude-from-external-load-balancers`).
    pub labels: BTreeMap<String, String>,
    /// Why the node's routes are withdrawn: it has been leaving (cordoned, being deleted, …)
    /// for the whole `vipd_bgp_drain_time` ([`crate::plan::shutdown::drain`]).
    pub drained: Option<String>,
}

impl NodeCtx {
    /// `node` = this node's Node object as watched; `None` (not seen, or no RBAC to read it)
    /// gives no labels, so the node is not excluded — kube-vip does not read the label at all.
    pub fn from_node(name: &str, node: Option<&Node>) -> NodeCtx {
        NodeCtx {
            name: name.to_owned(),
            labels: node
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_default(),
            drained: None,
        }
    }
}

/// The settings `decide` reads.
#[derive(Debug, Clone)]
pub struct DecideConfig {
    /// `lb_class_only` (default false): with legacy handling, skip Services without a class.
    pub lb_class_only: bool,
    /// `lb_class_name` (default `kube-vip.io/kube-vip-class`; empty is honoured).
    pub lb_class_name: String,
    /// `lb_class_legacy_handling` (default true); false = the class must equal `lb_class_name`.
    pub lb_class_legacy_handling: bool,
    /// Some peer can carry IPv4 VIPs.
    pub announce_ipv4: bool,
    /// Some peer can carry IPv6 VIPs.
    pub announce_ipv6: bool,
    /// `vipd_honour_exclude_label` (default false, as kube-vip): a node labelled
    /// `node.kubernetes.io/exclude-from-external-load-balancers` serves nothing.
    pub honour_exclude_label: bool,
    /// `disable_service_updates`: vipd writes no status, so `status.loadBalancer.ingress` is
    /// another controller's and an address source between the annotation and the spec, as in
    /// kube-vip ([`addresses`]).
    pub status_is_source: bool,
    /// ARP mode: `kube-vip.io/serviceVLAN` is honoured (elsewhere it is a Warning).
    pub vlans: bool,
}

impl Default for DecideConfig {
    /// kube-vip's defaults, with both families announceable.
    fn default() -> Self {
        DecideConfig {
            lb_class_only: false,
            lb_class_name: "kube-vip.io/kube-vip-class".to_owned(),
            lb_class_legacy_handling: true,
            announce_ipv4: true,
            announce_ipv6: true,
            honour_exclude_label: false,
            status_is_source: false,
            vlans: false,
        }
    }
}

/// What this node should announce.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Every VIP this node announces, with the services that want it (a shared VIP stays while
    /// any wants it).
    pub routes: BTreeMap<IpAddr, BTreeSet<ServiceKey>>,
    /// One entry per Service vipd considered (every Service in the view, including skipped
    /// ones). A Service object without `metadata.namespace` or `metadata.name` cannot be keyed,
    /// reported on or sent Events, and is left out; the API server never returns one.
    pub services: BTreeMap<ServiceKey, ServiceDecision>,
}

/// The decision for one Service.
///
/// Invariants (checked by a property test): `vips` is exactly `announced` plus the addresses of
/// `not_announced`, in `vips` order; `skip.is_some()` exactly when `announced` is empty.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDecision {
    /// The addresses the service asks vipd for (parsed, deduplicated, in order; a DHCP
    /// placeholder `0.0.0.0`/`::` included). Empty when the Service is not vipd's.
    pub vips: Vec<IpAddr>,
    /// The subset this node announces.
    pub announced: Vec<IpAddr>,
    /// Why nothing is announced: the whole-Service reason, or when every VIP was skipped on its
    /// own, the first VIP's reason.
    pub skip: Option<Skip>,
    /// Each VIP of `vips` not announced, with its reason (a VIP's own reason — DHCP, no peer for
    /// its family — before the Service's).
    pub not_announced: Vec<(IpAddr, Skip)>,
    /// Bad input; the I/O side turns each into a Warning Event and a log line.
    pub problems: Vec<Problem>,
    /// What the Service asks besides its addresses (Lease, interface, DHCP identity, UPnP),
    /// read once here; default for a Service that is not vipd's.
    pub intent: ServiceIntent,
}

impl ServiceDecision {
    fn skipped(skip: Skip) -> Self {
        ServiceDecision {
            vips: Vec::new(),
            announced: Vec::new(),
            skip: Some(skip),
            not_announced: Vec::new(),
            problems: Vec::new(),
            intent: ServiceIntent::default(),
        }
    }
}

/// What THIS node should announce, given the complete cluster view.
///
/// Each Service is decided on its own: bad input in one never changes another's decision. A VIP
/// is in `routes` while any Service announces it, so a second Service sharing the VIP without
/// endpoints does not withdraw it (kube-vip#823).
pub fn desired(view: &ClusterView, node: &NodeCtx, cfg: &DecideConfig) -> Desired {
    let slices = endpoints::SliceIndex::new(view.endpoint_slices);
    let mut out = Desired::default();
    for svc in view.services {
        let Some(key) = ServiceKey::of(svc) else {
            continue;
        };
        let decision = decide_service(svc, &key, &slices, node, cfg);
        for vip in &decision.announced {
            out.routes.entry(*vip).or_default().insert(key.clone());
        }
        out.services.insert(key, decision);
    }
    out
}

fn decide_service(
    svc: &Service,
    key: &ServiceKey,
    slices: &endpoints::SliceIndex<'_>,
    node: &NodeCtx,
    cfg: &DecideConfig,
) -> ServiceDecision {
    if let Err(skip) = addresses::ours(svc, cfg) {
        return ServiceDecision::skipped(skip);
    }
    let requested = addresses::requested(svc, cfg.status_is_source);
    let mut d = ServiceDecision::skipped(Skip::NoAddress);
    let (intent, annotation_problems) = ServiceIntent::read(svc);
    d.intent = intent;
    d.problems.extend(addresses::ignore_near_miss(svc));
    // Outside ARP mode a VLAN is not read at all: its Warning says so, not how it is malformed.
    let vlan_unread = |p: &crate::model::AnnotationProblem| {
        !cfg.vlans && p.annotation == crate::model::annotation::SERVICE_VLAN
    };
    d.problems.extend(
        annotation_problems
            .into_iter()
            .filter(|p| !vlan_unread(p))
            .map(Problem::InvalidAnnotation),
    );
    d.problems.extend(
        crate::model::unsupported_annotations(svc)
            .into_iter()
            .filter(|u| !(cfg.vlans && u.annotation == crate::model::annotation::SERVICE_VLAN))
            .map(Problem::UnsupportedAnnotation),
    );
    d.problems.extend(requested.problems);
    d.vips = requested.vips;
    let Some(field) = requested.field else {
        return d; // nothing assigned yet: an allocator will fill it in
    };

    // Reasons tied to one VIP: raised as Problems whatever the endpoints say, so the user sees
    // them before the first pod is ready.
    let mut own_reason = BTreeMap::new();
    for vip in &d.vips {
        let reason = if addresses::is_dhcp(vip) {
            d.problems
                .push(Problem::DhcpNotSupported { field, value: *vip });
            Skip::Dhcp { vip: *vip }
        } else if !family_announceable(vip, cfg) {
            d.problems.push(Problem::NoPeerForFamily { vip: *vip });
            Skip::NoPeerForFamily { vip: *vip }
        } else {
            continue;
        };
        own_reason.insert(*vip, reason);
    }

    // Reasons for the whole Service, in the order an operator would look: addresses, node, pods.
    let service_reason = if d.vips.is_empty() {
        Some(Skip::NoUsableAddress { field })
    } else if cfg.honour_exclude_label && node.labels.contains_key(EXCLUDE_FROM_LB) {
        Some(Skip::NodeExcluded {
            node: node.name.clone(),
        })
    } else if let Some(why) = &node.drained {
        Some(Skip::NodeDrained {
            node: node.name.clone(),
            why: why.clone(),
        })
    } else {
        endpoints::gate(svc, key, slices, &node.name).err()
    };

    for vip in &d.vips {
        match own_reason.remove(vip).or_else(|| service_reason.clone()) {
            Some(reason) => d.not_announced.push((*vip, reason)),
            None => d.announced.push(*vip),
        }
    }
    d.skip = if !d.announced.is_empty() {
        None
    } else {
        service_reason.or_else(|| d.not_announced.first().map(|(_, s)| s.clone()))
    };
    d
}

fn family_announceable(vip: &IpAddr, cfg: &DecideConfig) -> bool {
    match vip {
        IpAddr::V4(_) => cfg.announce_ipv4,
        IpAddr::V6(_) => cfg.announce_ipv6,
    }
}

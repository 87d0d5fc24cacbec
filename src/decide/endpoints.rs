//! [pure] The endpoint gate: does a Service have somewhere to send traffic (externalTrafficPolicy
//! Cluster), or a pod on this node (Local)?
//!
//! All EndpointSlices of a Service are merged. kube-vip kept only the last slice per family
//! (compat §9, "code"), so a Service with more than 100 endpoints — several slices — was judged
//! on whichever slice arrived last.

use super::reasons::Skip;
use super::{addresses::annotation, ServiceKey};
use crate::model::annotation::ALLOW_NO_ENDPOINTS;
use crate::model::label::SERVICE_NAME;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The EndpointSlices of each Service, by (namespace, Service name), built once per decision so
/// the whole view costs O(slices + services).
#[derive(Debug, Default)]
pub(super) struct SliceIndex<'a> {
    by_service: BTreeMap<ServiceKey, Vec<&'a EndpointSlice>>,
}

impl<'a> SliceIndex<'a> {
    /// Slices without a namespace or without the service-name label belong to no Service and
    /// are left out.
    pub fn new(slices: &'a [Arc<EndpointSlice>]) -> Self {
        let mut by_service: BTreeMap<ServiceKey, Vec<&'a EndpointSlice>> = BTreeMap::new();
        for slice in slices {
            let meta = &slice.metadata;
            let owner = meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME));
            if let (Some(namespace), Some(name)) = (meta.namespace.as_ref(), owner) {
                let key = ServiceKey {
                    namespace: namespace.clone(),
                    name: name.clone(),
                };
                by_service.entry(key).or_default().push(slice);
            }
        }
        SliceIndex { by_service }
    }

    fn endpoints(&self, key: &ServiceKey) -> impl Iterator<Item = &'a Endpoint> + '_ {
        self.by_service
            .get(key)
            .into_iter()
            .flatten()
            .flat_map(|s| s.endpoints.iter())
    }
}

/// Whether an endpoint can take traffic: `serving`, absent → `ready`, absent → true (the
/// EndpointConditions API: a nil condition reads as true; `serving` was added after `ready`,
/// so a producer that sets only `ready` is judged by it). A terminating endpoint that still
/// serves counts: kube-proxy keeps sending it traffic while no ready endpoint exists
/// (KEP-1669), so withdrawing then would cut traffic that still works (kube-vip#1397).
fn serving(c: Option<&EndpointConditions>) -> bool {
    let c = c.cloned().unwrap_or_default();
    c.serving.or(c.ready).unwrap_or(true)
}

/// Whether the endpoint runs on `node`: `nodeName`; only when that is absent, `hostname`
/// (kube-vip's fallback, for slices written by hand). `hostname` is the pod's host name, so it
/// is not consulted when `nodeName` names another node.
fn on_node(ep: &Endpoint, node: &str) -> bool {
    match &ep.node_name {
        Some(n) => n == node,
        None => ep.hostname.as_deref() == Some(node),
    }
}

/// The endpoint gate of compat §1 for one Service.
///
/// Cluster (also when unset — the API defaults it): any serving endpoint in any slice, or the
/// annotation `kube-vip.io/allow-reconcile-without-endpoints: "true"` (any case, as kube-vip's
/// `strings.EqualFold`). The same test is used for Cluster as for Local: kube-proxy routes
/// Cluster traffic to serving-terminating endpoints when no ready one is left.
///
/// Local: a serving endpoint whose node is this node; the annotation does not apply (compat:
/// "Cluster only"), since announcing from a node without a local pod black-holes the traffic.
pub(super) fn gate(
    svc: &Service,
    key: &ServiceKey,
    slices: &SliceIndex<'_>,
    node: &str,
) -> Result<(), Skip> {
    let local = svc
        .spec
        .as_ref()
        .and_then(|s| s.external_traffic_policy.as_deref())
        == Some("Local");
    let mut eps = slices.endpoints(key);
    if local {
        if eps.any(|ep| serving(ep.conditions.as_ref()) && on_node(ep, node)) {
            Ok(())
        } else {
            Err(Skip::NoLocalEndpoints {
                node: node.to_owned(),
            })
        }
    } else if eps.any(|ep| serving(ep.conditions.as_ref()))
        || annotation(svc, ALLOW_NO_ENDPOINTS).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        Ok(())
    } else {
        Err(Skip::NoEndpoints)
    }
}

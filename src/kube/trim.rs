//! [pure] What the watch caches keep of each object: only what `decide`, the plans and the
//! writers read. Every node's agent holds every Service and EndpointSlice of the cluster, so
//! what is dropped here is paid once per node, not once per cluster. Dropped on arrival, before
//! the object is stored:
//! - every object: `metadata.managedFields` (server-side apply's bookkeeping, often the largest
//!   part of a small object);
//! - Services: every annotation but `kube-vip.io/*` (vipd reads no other; `kubectl apply`'s
//!   `last-applied-configuration` holds the whole object again);
//! - EndpointSlices: annotations, and per endpoint `targetRef`, `hints`, `zone` and
//!   `deprecatedTopology` (the endpoint's addresses, node, host name and conditions stay);
//! - Nodes: `status.images` (every image on the node, often kilobytes).
//!
//! Writes never start from a cached object (they patch, or get the object afresh), so nothing
//! dropped here can be written back as missing.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The annotations vipd reads all start with this.
const READ_PREFIX: &str = "kube-vip.io/";

pub fn service(svc: &mut Service) {
    svc.metadata.managed_fields = None;
    if let Some(ann) = svc.metadata.annotations.as_mut() {
        ann.retain(|k, _| k.starts_with(READ_PREFIX));
        if ann.is_empty() {
            svc.metadata.annotations = None;
        }
    }
}

pub fn endpoint_slice(slice: &mut EndpointSlice) {
    slice.metadata.managed_fields = None;
    slice.metadata.annotations = None;
    for ep in &mut slice.endpoints {
        ep.target_ref = None;
        ep.hints = None;
        ep.zone = None;
        ep.deprecated_topology = None;
    }
}

pub fn node(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(status) = node.status.as_mut() {
        status.images = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_keeps_what_vipd_reads_and_loses_the_rest() {
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1",
                "resourceVersion": "7", "labels": {"app": "web"},
                "annotations": {
                    "kube-vip.io/loadbalancerIPs": "10.0.0.1",
                    "kube-vip.io/vipHost": "n1",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\": true}",
                    "example.com/other": "x"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.1",
                "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}},
        }))
        .unwrap();
        let mut expected = svc.clone();
        service(&mut svc);
        expected.metadata.managed_fields = None;
        expected.metadata.annotations = Some(
            [
                ("kube-vip.io/loadbalancerIPs", "10.0.0.1"),
                ("kube-vip.io/vipHost", "n1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        assert_eq!(svc, expected);
        // Nothing of vipd's left: no empty map either.
        let mut bare: Service = serde_json::from_value(json!({
            "metadata": {"name": "b", "annotations": {"a.io/x": "1"}}}))
        .unwrap();
        service(&mut bare);
        assert_eq!(bare.metadata.annotations, None);
    }

    #[test]
    fn a_slice_keeps_each_endpoints_addresses_node_and_conditions() {
        let mut s: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"},
                "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "t"},
                "managedFields": [{"manager": "kube-controller-manager"}]},
            "addressType": "IPv4",
            "ports": [{"port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.1.0.9"], "nodeName": "n1", "hostname": "p",
                "zone": "z1", "conditions": {"ready": true, "serving": true, "terminating": false},
                "targetRef": {"kind": "Pod", "name": "web-abc", "namespace": "default", "uid": "p1"},
                "hints": {"forZones": [{"name": "z1"}]}}],
        }))
        .unwrap();
        endpoint_slice(&mut s);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-1", "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.1.0.9"], "nodeName": "n1", "hostname": "p",
                    "conditions": {"ready": true, "serving": true, "terminating": false}}],
            })
        );
    }

    #[test]
    fn a_node_keeps_labels_spec_and_conditions_without_its_image_list() {
        let mut n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"},
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "images": [{"names": ["registry/a:1"], "sizeBytes": 1}]},
        }))
        .unwrap();
        node(&mut n);
        assert_eq!(
            serde_json::to_value(&n).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
                "spec": {"unschedulable": true},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            })
        );
    }
}

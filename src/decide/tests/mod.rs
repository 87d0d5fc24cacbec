//! Decision tables for [`desired`](super::desired). Objects are written as the JSON of what a user
//! applies; every case stands alone and compares whole decisions, typed reasons included.
//!
//! - `services`: which Services are vipd's, addresses, address families.
//! - `endpoints`: the externalTrafficPolicy Cluster and Local gates.
//! - `view`: the node, several Services together, texts.
//! - `properties`: random input.

use super::*;
use serde_json::{json, Value};

mod endpoints;
mod properties;
mod services;
mod view;

const NODE: &str = "n1";

fn svc(v: Value) -> Arc<Service> {
    Arc::new(serde_json::from_value(v).expect("fixture is a Service"))
}

fn slice(v: Value) -> Arc<EndpointSlice> {
    Arc::new(serde_json::from_value(v).expect("fixture is an EndpointSlice"))
}

/// A LoadBalancer Service `default/<name>` with these annotations and extra spec fields.
fn lb(name: &str, annotations: Value, spec: Value) -> Arc<Service> {
    let mut s = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    });
    if let (Some(base), Some(extra)) = (s["spec"].as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    svc(s)
}

/// An EndpointSlice of `default/<service>` with these endpoints.
fn eps(service: &str, slice_name: &str, endpoints: Value) -> Arc<EndpointSlice> {
    slice(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice_name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
    }))
}

/// One ready endpoint of `service` on node `n1`.
fn ready_here(service: &str) -> Arc<EndpointSlice> {
    eps(
        service,
        &format!("{service}-abcde"),
        json!([{"addresses": ["10.244.1.5"], "nodeName": NODE, "conditions": {"ready": true}}]),
    )
}

fn node() -> NodeCtx {
    NodeCtx::from_node(NODE, None)
}

fn run_with(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    node: &NodeCtx,
    cfg: &DecideConfig,
) -> Desired {
    desired(
        &ClusterView {
            services,
            endpoint_slices: slices,
        },
        node,
        cfg,
    )
}

fn run(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Desired {
    run_with(services, slices, &node(), &DecideConfig::default())
}

fn key(name: &str) -> ServiceKey {
    ServiceKey {
        namespace: "default".into(),
        name: name.into(),
    }
}

/// The decision for `default/<name>`.
fn one(d: &Desired, name: &str) -> ServiceDecision {
    d.services
        .get(&key(name))
        .cloned()
        .expect("service decided")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn announced(vips: &[&str]) -> ServiceDecision {
    ServiceDecision {
        vips: ips(vips),
        announced: ips(vips),
        skip: None,
        not_announced: vec![],
        problems: vec![],
        intent: Default::default(),
    }
}

fn skipped(skip: Skip) -> ServiceDecision {
    ServiceDecision::skipped(skip)
}

/// Every VIP of `vips` skipped for `skip`.
fn all_skipped(vips: &[&str], skip: Skip) -> ServiceDecision {
    ServiceDecision {
        vips: ips(vips),
        announced: vec![],
        skip: Some(skip.clone()),
        not_announced: ips(vips).into_iter().map(|v| (v, skip.clone())).collect(),
        problems: vec![],
        intent: Default::default(),
    }
}

fn routes(entries: &[(&str, &[&str])]) -> BTreeMap<IpAddr, BTreeSet<ServiceKey>> {
    entries
        .iter()
        .map(|(v, svcs)| (ip(v), svcs.iter().map(|s| key(s)).collect()))
        .collect()
}

//! Tables for [`Pools::parse`](super::Pools::parse) and [`plan`](super::plan). Services are
//! written as the JSON a user applies; every case stands alone and compares whole results.
//!
//! - `pools`: each ConfigMap key, malformed entries.
//! - `seeds`: the guide's seed examples.
//! - `alloc`: allocation order, what is in use, problems, settings.
//! - `sharing`, `families`: allow-share; single- and dual-stack.
//! - `properties`: random histories of create, delete, type change, ConfigMap edit, restart.

use super::*;
use crate::decide::DecideConfig;
use k8s_openapi::api::core::v1::Service;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

mod alloc;
mod families;
mod pools;
mod properties;
mod seeds;
mod sharing;

/// ConfigMap data from key/value pairs.
fn cm(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("fixture is an IP address")
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn svc(v: serde_json::Value) -> Arc<Service> {
    Arc::new(serde_json::from_value(v).expect("fixture is a Service"))
}

/// A LoadBalancer Service `<ns>/<name>` created `t` seconds into the day, serving 80/TCP,
/// with these annotations and extra spec fields.
fn lb(
    ns: &str,
    name: &str,
    t: u32,
    annotations: serde_json::Value,
    spec: serde_json::Value,
) -> Arc<Service> {
    let mut s = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": timestamp(t),
                     "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    });
    if let (Some(base), Some(extra)) = (s["spec"].as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    svc(s)
}

/// `t` seconds into a day, as `metadata.creationTimestamp`.
fn timestamp(t: u32) -> String {
    format!(
        "2025-01-01T{:02}:{:02}:{:02}Z",
        t / 3600,
        (t / 60) % 60,
        t % 60
    )
}

/// A plain LoadBalancer Service waiting for an address.
fn fresh(ns: &str, name: &str, t: u32) -> Arc<Service> {
    lb(ns, name, t, serde_json::json!({}), serde_json::json!({}))
}

fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey {
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

/// The expected allocation (no resourceVersion, no interface).
fn alloc(ns: &str, name: &str, addresses: &[&str]) -> Allocation {
    Allocation {
        service: key(ns, name),
        resource_version: None,
        addresses: ips(addresses),
        interface: None,
    }
}

fn run(services: &[Arc<Service>], config: &BTreeMap<String, String>) -> IpamPlan {
    plan(services, Some(config), &DecideConfig::default())
}

/// The guide's example ConfigMap ("The Kube-vip Cloud Provider configmap").
fn guide() -> BTreeMap<String, String> {
    cm(&[
        ("cidr-default", "192.168.0.200/29"),
        ("range-development", "192.168.0.210-192.168.0.219"),
        ("cidr-finance", "192.168.0.220/29,192.168.0.230/29"),
        ("cidr-global", "192.168.0.240/29"),
    ])
}

/// `n` fresh Services `<ns>/s00`, `s01`, … created one second apart.
fn many(ns: &str, n: u32) -> Vec<Arc<Service>> {
    (0..n).map(|i| fresh(ns, &format!("s{i:02}"), i)).collect()
}

/// The addresses handed out, in order, as text.
fn handed_out(plan: &IpamPlan) -> Vec<String> {
    plan.allocations
        .iter()
        .map(|a| a.annotation_value())
        .collect()
}

fn problems(plan: &IpamPlan, ns: &str, name: &str) -> Vec<IpamProblem> {
    plan.problems
        .get(&key(ns, name))
        .cloned()
        .unwrap_or_default()
}

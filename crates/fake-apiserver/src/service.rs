//! [pure] What the real server defaults and allocates for a Service: type, cluster IP from
//! 10.96.0.0/16, IP family fields, node ports from 30000–32767, traffic policies, and the
//! health-check node port of a `Local` LoadBalancer. Pure.

use super::error::invalid;
use super::error::Result;
use super::meta::meta_str;
use super::resources::ResourceDef;
use super::store::Db;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The range cluster IPs are allocated from: 10.96.0.0/16, from .0.10 up (.0.1 is the
/// `kubernetes` Service on a real cluster).
const CLUSTER_IP_FIRST: u32 = u32::from_be_bytes([10, 96, 0, 10]);
const CLUSTER_IP_LAST: u32 = u32::from_be_bytes([10, 96, 255, 254]);
/// The whole service CIDR, which a requested cluster IP must fall in.
const SERVICE_CIDR: std::ops::RangeInclusive<u32> =
    u32::from_be_bytes([10, 96, 0, 0])..=u32::from_be_bytes([10, 96, 255, 255]);
const NODE_PORTS: std::ops::RangeInclusive<u64> = 30000..=32767;

/// The other Services' cluster IPs and node ports (everything but `ns/name`).
fn allocated(db: &Db, def: &ResourceDef, ns: &str, name: &str) -> (BTreeSet<u32>, BTreeSet<u64>) {
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for s in db.list(def, None) {
        if meta_str(s, "namespace") == Some(ns) && meta_str(s, "name") == Some(name) {
            continue;
        }
        if let Some(ip) = s
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        {
            ips.insert(u32::from(ip));
        }
        for p in s
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                ports.insert(n);
            }
        }
        if let Some(n) = s
            .pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_u64)
        {
            ports.insert(n);
        }
    }
    (ips, ports)
}

/// Fills in what the real server defaults and allocates for a Service; with `old`, keeps the
/// cluster IP and node ports already allocated (an update may leave them out).
pub(super) fn defaults(
    db: &Db,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    svc: &mut Value,
    old: Option<&Value>,
) -> Result<()> {
    let (mut used_ips, mut used_ports) = allocated(db, def, ns, name);
    if !svc.get("spec").is_some_and(Value::is_object) {
        svc["spec"] = json!({});
    }
    let old_spec = old.and_then(|o| o.get("spec"));
    let old_str = |f: &str| old_spec.and_then(|s| s.get(f)).and_then(Value::as_str);
    let spec = &mut svc["spec"];
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty.as_str()) {
        return Err(invalid(
            def,
            name,
            "spec.type",
            format!("Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
        ));
    }
    spec["type"] = json!(ty);
    if ty == "ExternalName" {
        return Ok(());
    }

    // Cluster IP: kept from before, checked if given, else allocated.
    let given = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let ip = match (given, old_str("clusterIP")) {
        (Some(g), Some(o)) if g != o => {
            return Err(invalid(
                def,
                name,
                "spec.clusterIPs[0]",
                format!("Invalid value: {g:?}: may not change once set"),
            ))
        }
        (Some(g), _) if g == "None" => g,
        (Some(g), Some(_)) => g,
        (Some(g), None) => {
            let addr: Ipv4Addr = g.parse().map_err(|_| {
                invalid(
                    def,
                    name,
                    "spec.clusterIPs[0]",
                    format!("Invalid value: {g:?}: must be a valid IP address"),
                )
            })?;
            let n = u32::from(addr);
            if !SERVICE_CIDR.contains(&n) {
                return Err(invalid(
                    def,
                    name,
                    "spec.clusterIPs[0]",
                    format!("Invalid value: {g:?}: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/16"),
                ));
            }
            if used_ips.contains(&n) {
                return Err(invalid(
                    def,
                    name,
                    "spec.clusterIPs[0]",
                    format!("Invalid value: {g:?}: provided IP is already allocated"),
                ));
            }
            g
        }
        (None, Some(o)) => o.to_string(),
        (None, None) => {
            let n = (CLUSTER_IP_FIRST..=CLUSTER_IP_LAST)
                .find(|n| !used_ips.contains(n))
                .ok_or_else(|| {
                    invalid(
                        def,
                        name,
                        "spec.clusterIPs",
                        "Internal error: range 10.96.0.0/16 is full",
                    )
                })?;
            used_ips.insert(n);
            Ipv4Addr::from(n).to_string()
        }
    };
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    for (field, value) in [
        ("ipFamilies", json!(["IPv4"])),
        ("ipFamilyPolicy", json!("SingleStack")),
        ("sessionAffinity", json!("None")),
        ("internalTrafficPolicy", json!("Cluster")),
    ] {
        if spec.get(field).is_none_or(Value::is_null) {
            spec[field] = value;
        }
    }

    let lb = ty == "LoadBalancer";
    let node_ports_wanted = ty == "NodePort"
        || (lb
            && spec
                .get("allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                .unwrap_or(true));
    if ty == "NodePort" || lb {
        if spec.get("externalTrafficPolicy").is_none_or(Value::is_null) {
            spec["externalTrafficPolicy"] = json!("Cluster");
        }
    } else if let Some(o) = spec.as_object_mut() {
        o.remove("externalTrafficPolicy");
    }
    if lb
        && spec
            .get("allocateLoadBalancerNodePorts")
            .is_none_or(Value::is_null)
    {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    } else if !lb {
        // Only LoadBalancers have these; a type change away clears them.
        if let Some(o) = spec.as_object_mut() {
            o.remove("allocateLoadBalancerNodePorts");
            o.remove("loadBalancerClass");
        }
    }

    let old_ports: Vec<Value> = old_spec
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let allocate_port = |used: &mut BTreeSet<u64>, field: &str| -> Result<u64> {
        let n = NODE_PORTS
            .clone()
            .find(|n| !used.contains(n))
            .ok_or_else(|| {
                invalid(
                    def,
                    name,
                    field,
                    "Internal error: range 30000-32767 is full",
                )
            })?;
        used.insert(n);
        Ok(n)
    };
    let mut ports = match spec.get_mut("ports") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(p)) => std::mem::take(p),
        Some(_) => {
            return Err(invalid(
                def,
                name,
                "spec.ports",
                "Invalid value: expected a list",
            ))
        }
    };
    for (i, p) in ports.iter_mut().enumerate() {
        let field = format!("spec.ports[{i}]");
        let Some(po) = p.as_object_mut() else {
            return Err(invalid(
                def,
                name,
                &field,
                "Invalid value: expected an object",
            ));
        };
        let port = po.get("port").and_then(Value::as_u64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            return Err(invalid(
                def,
                name,
                &format!("{field}.port"),
                "Invalid value: must be between 1 and 65535, inclusive",
            ));
        }
        let proto = po
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string();
        po.insert("protocol".into(), json!(proto));
        // Unset, 0 and "" all mean "same as port" (protobuf clients send 0).
        if po
            .get("targetPort")
            .is_none_or(|t| t.is_null() || *t == json!(0) || *t == json!(""))
        {
            po.insert("targetPort".into(), json!(port));
        }
        let given = po
            .get("nodePort")
            .and_then(Value::as_u64)
            .filter(|n| *n != 0);
        if !node_ports_wanted {
            if given.is_none() {
                po.remove("nodePort");
            }
            continue;
        }
        let previous = old_ports
            .iter()
            .find(|o| {
                o.get("port").and_then(Value::as_u64) == Some(port)
                    && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == proto
            })
            .and_then(|o| o.get("nodePort"))
            .and_then(Value::as_u64);
        let n = match (given, previous) {
            (Some(g), prev) => {
                if !NODE_PORTS.contains(&g) {
                    return Err(invalid(
                        def,
                        name,
                        &format!("{field}.nodePort"),
                        format!("Invalid value: {g}: provided port is not in the valid range. The range of valid ports is 30000-32767"),
                    ));
                }
                if prev != Some(g) && used_ports.contains(&g) {
                    return Err(invalid(
                        def,
                        name,
                        &format!("{field}.nodePort"),
                        format!("Invalid value: {g}: provided port is already allocated"),
                    ));
                }
                used_ports.insert(g);
                g
            }
            (None, Some(prev)) => {
                used_ports.insert(prev);
                prev
            }
            (None, None) => allocate_port(&mut used_ports, &format!("{field}.nodePort"))?,
        };
        po.insert("nodePort".into(), json!(n));
    }
    spec["ports"] = Value::Array(ports);

    let local = spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
    if lb && local {
        if spec
            .get("healthCheckNodePort")
            .and_then(Value::as_u64)
            .is_none()
        {
            let n = match old_spec
                .and_then(|s| s.get("healthCheckNodePort"))
                .and_then(Value::as_u64)
            {
                Some(n) => n,
                None => allocate_port(&mut used_ports, "spec.healthCheckNodePort")?,
            };
            spec["healthCheckNodePort"] = json!(n);
        }
    } else if let Some(o) = spec.as_object_mut() {
        o.remove("healthCheckNodePort");
    }
    Ok(())
}

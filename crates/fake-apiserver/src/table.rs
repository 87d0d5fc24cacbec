//! [pure] Server-side printing: `meta.k8s.io/v1` Tables, which kubectl asks for
//! (`Accept: application/json;as=Table;…`) on `get` and `get -w`. With a Table, `kubectl get svc`
//! shows TYPE, CLUSTER-IP, EXTERNAL-IP and PORT(S) as against a real cluster; without one it
//! would print only NAME and AGE. Columns follow the real server's for the kinds served here.
//! Pure: `now` comes in.

use super::objects::parse_rfc3339;
use super::resources::ResourceDef;
use serde_json::{json, Value};
use std::time::SystemTime;

/// What each row carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    /// The default: the object's metadata as a PartialObjectMetadata.
    Metadata,
    Object,
}

impl Include {
    pub fn parse(v: Option<&str>) -> Include {
        match v {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// Whether an Accept header asks for a Table first (kubectl lists it before plain JSON).
pub fn wanted(accept: Option<&str>) -> bool {
    accept
        .and_then(|a| a.split(',').next())
        .is_some_and(|first| {
            first
                .split(';')
                .any(|p| p.trim().eq_ignore_ascii_case("as=Table"))
        })
}

type Cell = fn(&Value, SystemTime) -> Value;

fn columns(def: &ResourceDef) -> Vec<(&'static str, Cell)> {
    let name: (&str, Cell) = ("Name", |o, _| str_at(o, "/metadata/name"));
    let age: (&str, Cell) = ("Age", age);
    match (def.group, def.kind) {
        ("", "Service") => vec![
            name,
            ("Type", |o, _| str_at(o, "/spec/type")),
            ("Cluster-IP", |o, _| {
                or_none(o.pointer("/spec/clusterIP").and_then(Value::as_str))
            }),
            ("External-IP", |o, _| json!(external_ip(o))),
            ("Port(s)", |o, _| json!(ports(o))),
            age,
        ],
        ("", "Node") => vec![
            name,
            ("Status", |o, _| json!(node_status(o))),
            ("Roles", |_, _| json!("<none>")),
            age,
            ("Version", |o, _| {
                str_at(o, "/status/nodeInfo/kubeletVersion")
            }),
        ],
        ("", "Namespace") => vec![name, ("Status", |o, _| str_at(o, "/status/phase")), age],
        ("", "ConfigMap") => vec![
            name,
            ("Data", |o, _| {
                json!(o
                    .get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |d| d.len()))
            }),
            age,
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            name,
            ("AddressType", |o, _| str_at(o, "/addressType")),
            ("Ports", |o, _| {
                let p: Vec<String> = list(o, "/ports")
                    .filter_map(|p| p.get("port").and_then(Value::as_u64))
                    .map(|p| p.to_string())
                    .collect();
                or_none(Some(&p.join(",")))
            }),
            ("Endpoints", |o, _| {
                let a: Vec<&str> = list(o, "/endpoints")
                    .flat_map(|e| list(e, "/addresses"))
                    .filter_map(Value::as_str)
                    .collect();
                or_none(Some(&a.join(",")))
            }),
            age,
        ],
        ("coordination.k8s.io", "Lease") => vec![
            name,
            ("Holder", |o, _| str_at(o, "/spec/holderIdentity")),
            age,
        ],
        _ => vec![name, age],
    }
}

fn str_at(o: &Value, ptr: &str) -> Value {
    json!(o.pointer(ptr).and_then(Value::as_str).unwrap_or(""))
}

fn or_none(s: Option<&str>) -> Value {
    json!(s.filter(|s| !s.is_empty()).unwrap_or("<none>"))
}

fn list<'a>(o: &'a Value, ptr: &str) -> impl Iterator<Item = &'a Value> + 'a {
    o.pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn external_ip(o: &Value) -> String {
    let external: Vec<&str> = list(o, "/spec/externalIPs")
        .filter_map(Value::as_str)
        .collect();
    match o.pointer("/spec/type").and_then(Value::as_str) {
        Some("ExternalName") => o
            .pointer("/spec/externalName")
            .and_then(Value::as_str)
            .unwrap_or("<none>")
            .to_string(),
        Some("LoadBalancer") => {
            let mut ips: Vec<&str> = list(o, "/status/loadBalancer/ingress")
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                })
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        _ if !external.is_empty() => external.join(","),
        _ => "<none>".into(),
    }
}

fn ports(o: &Value) -> String {
    let p: Vec<String> = list(o, "/spec/ports")
        .map(|p| {
            let port = p.get("port").and_then(Value::as_u64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_u64) {
                Some(n) => format!("{port}:{n}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    if p.is_empty() {
        "<none>".into()
    } else {
        p.join(",")
    }
}

fn node_status(o: &Value) -> String {
    let ready = list(o, "/status/conditions")
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status").and_then(Value::as_str));
    match ready {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .into()
}

fn age(o: &Value, now: SystemTime) -> Value {
    let Some(created) = o
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
    else {
        return json!("<unknown>");
    };
    let secs = match now.duration_since(created) {
        Ok(d) => d.as_secs(),
        Err(_) => 0,
    };
    json!(human_duration(secs))
}

/// kubectl's `HumanDuration`: 5s, 3m20s, 5h, 3d4h, 2y…
pub fn human_duration(s: u64) -> String {
    let (m, h) = (s / 60, s / 3600);
    let d = h / 24;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        match d % 365 {
            0 => format!("{}y", d / 365),
            r => format!("{}y{r}d", d / 365),
        }
    } else {
        format!("{}y", d / 365)
    }
}

/// The Table for `objs`.
pub fn table(
    def: &ResourceDef,
    objs: &[Value],
    rv: Option<u64>,
    now: SystemTime,
    include: Include,
) -> Value {
    let cols = columns(def);
    let defs: Vec<Value> = cols
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            json!({
                "name": name,
                "type": if *name == "Data" { "integer" } else { "string" },
                "format": if i == 0 { "name" } else { "" },
                "description": "",
                "priority": 0,
            })
        })
        .collect();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|(_, cell)| cell(o, now)).collect();
            let mut row = json!({"cells": cells});
            match include {
                Include::None => {}
                Include::Object => row["object"] = o.clone(),
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn kubectl_accept_headers_ask_for_tables() {
        assert!(wanted(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        )));
        assert!(!wanted(Some("application/json")));
        assert!(!wanted(None));
    }

    #[test]
    fn a_load_balancer_row_reads_like_kubectl_against_a_real_cluster() {
        let def = resources::find("", "v1", "services").unwrap_or_else(|| unreachable!());
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "1970-01-01T00:00:00Z"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10",
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30000}, {"port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.10"}]}},
        });
        let t = table(
            def,
            std::slice::from_ref(&svc),
            Some(7),
            UNIX_EPOCH + Duration::from_secs(200),
            Include::Metadata,
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "LoadBalancer",
                "10.96.0.10",
                "198.18.0.10",
                "80:30000/TCP,53/UDP",
                "3m20s"
            ])
        );
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web");
        assert_eq!(t["columnDefinitions"][3]["name"], "External-IP");
        let mut pending = svc;
        pending["status"] = json!({"loadBalancer": {}});
        let t = table(def, &[pending], None, UNIX_EPOCH, Include::None);
        assert_eq!(t["rows"][0]["cells"][3], "<pending>");
        assert!(t["rows"][0].get("object").is_none());
    }

    #[test]
    fn ages_are_printed_as_kubectl_does() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (100 * 86400, "100d"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }
}

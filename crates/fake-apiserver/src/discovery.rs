//! [pure] Discovery documents: `/version`, `/api`, `/apis`, the per-group-version resource lists, and
//! the OpenAPI answers kubectl needs before it will create anything. Pure.
//!
//! kubectl asks for aggregated discovery (`Accept: …;as=APIGroupDiscoveryList`) first and falls
//! back to these unaggregated forms when the response's Content-Type is plain
//! `application/json`.
//!
//! OpenAPI: `kubectl create`/`apply` validate by default. kubectl first asks `/openapi/v3` whether
//! the server validates fields itself (a 404 here means "no"), then fetches `/openapi/v2` as
//! protobuf (`openapi_v2.Document`) for client-side validation, and refuses to create anything
//! if that fetch fails. An empty body is a valid, empty protobuf Document: kubectl then knows no
//! schemas and skips validation of every kind, which is what [`openapi_v2`] serves.

use super::resources::{self, ResourceDef};
use serde_json::{json, Value};

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-vipd-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`
pub fn core_versions(server_addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}],
    })
}

fn group(name: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": [gv],
        "preferredVersion": gv,
    })
}

/// `/apis`
pub fn groups() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|g| {
            let mut v = group(g);
            if let Some(o) = v.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            v
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`
pub fn group_doc(name: &str) -> Value {
    group(name)
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn api_resource(r: &ResourceDef) -> Value {
    let mut v = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    v
}

/// `/api/v1`, `/apis/<group>/<version>`: an APIResourceList (`None` if not served).
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let defs = resources::in_group_version(group, version);
    if defs.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in defs {
        list.push(api_resource(r));
        if r.has_status {
            list.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if r.has_token {
            list.push(json!({
                "name": format!("{}/token", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": list,
    }))
}

/// `/openapi/v2`: an empty protobuf `openapi_v2.Document` (see the module docs).
pub fn openapi_v2() -> &'static [u8] {
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resource_list_has_status_subresources_and_short_names() {
        let list = resource_list("", "v1").unwrap_or_default();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "namespaces",
                "namespaces/status",
                "nodes",
                "nodes/status",
                "services",
                "services/status",
                "endpoints",
                "configmaps",
                "events",
                "serviceaccounts",
                "serviceaccounts/token"
            ]
        );
        assert_eq!(list["resources"][4]["shortNames"], json!(["svc"]));
        assert_eq!(list["resources"][2]["namespaced"], json!(false));
    }

    #[test]
    fn groups_list_each_group_with_its_preferred_version() {
        let g = groups();
        assert_eq!(g["groups"][0]["name"], "discovery.k8s.io");
        assert_eq!(
            g["groups"][0]["preferredVersion"]["groupVersion"],
            "discovery.k8s.io/v1"
        );
        assert!(resource_list("apps", "v1").is_none());
    }
}

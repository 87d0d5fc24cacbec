//! [pure] PATCH bodies applied to a stored object. Pure.
//!
//! - `application/merge-patch+json`: RFC 7386.
//! - `application/json-patch+json`: RFC 6902.
//! - `application/strategic-merge-patch+json`: treated as a merge patch once its directives are
//!   honoured or dropped (`$patch: replace|delete`, `$retainKeys`, `$deleteFromPrimitiveList/…`,
//!   `$setElementOrder/…`). Lists of objects merge by key when kubectl names the key in a
//!   `$setElementOrder/…` directive (it does for every list it patches by key), and are replaced
//!   whole otherwise. Enough for `kubectl annotate`, `label`, `edit` and client-side `apply`.
//! - `application/apply-patch+yaml` (server-side apply): the applied configuration is merged
//!   into the object, and creates it when absent. There is no field-ownership tracking
//!   (`managedFields`), so no apply conflicts and no removal of fields a manager stopped applying.

use super::error::ApiError;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

pub const ACCEPTED: &str = "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";

impl PatchKind {
    /// From a `Content-Type` header (parameters such as `; charset=utf-8` ignored).
    pub fn from_content_type(ct: Option<&str>) -> Result<PatchKind, ApiError> {
        let ct = ct.unwrap_or("");
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
            _ => Err(ApiError::UnsupportedMediaType(ACCEPTED.to_string())),
        }
    }
}

/// Parses a patch body: JSON, or YAML for apply patches (kubectl may send YAML; kube sends JSON).
pub fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) if kind == PatchKind::Apply => {
            let text = std::str::from_utf8(body).map_err(|e| {
                ApiError::BadRequest(format!("the apply patch is not UTF-8 text: {e}"))
            })?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiError::BadRequest(format!(
                    "the apply patch is neither JSON ({json_err}) nor YAML ({e})"
                ))
            })
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "the patch body is not valid JSON: {e}"
        ))),
    }
}

/// Applies `patch` to `doc` and returns the result.
pub fn apply(kind: PatchKind, doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut out = doc.clone();
    match kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            json_patch::merge(&mut out, patch);
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                ApiError::BadRequest(format!("the JSON patch is not a list of operations: {e}"))
            })?;
            json_patch::patch(&mut out, &ops.0).map_err(|e| {
                // 422 for a test that fails or a path that does not exist, as the real server.
                ApiError::Invalid {
                    kind: String::new(),
                    name: String::new(),
                    field: "patch".into(),
                    why: e.to_string(),
                }
            })?;
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a strategic merge patch must be a JSON object".into(),
                ));
            }
            out = strategic_merge(doc, patch);
        }
        PatchKind::Apply => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "an apply patch must be an object".into(),
                ));
            }
            out = apply_merge(doc, patch);
        }
    }
    Ok(out)
}

/// A strategic merge patch on maps, with lists replaced whole.
fn strategic_merge(doc: &Value, patch: &Value) -> Value {
    let (Some(d), Some(p)) = (doc.as_object(), patch.as_object()) else {
        return without_directives(patch);
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => return without_directives(patch),
        Some("delete") => return Value::Object(Map::new()),
        _ => {}
    }
    let mut out = d.clone();
    for (k, v) in p {
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(have)), Some(gone)) = (out.get_mut(list), v.as_array()) {
                have.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                out.remove(k);
            }
            Value::Object(po) if po.get("$patch").and_then(Value::as_str) == Some("delete") => {
                out.remove(k);
            }
            Value::Object(_) => {
                let merged = strategic_merge(out.get(k).unwrap_or(&Value::Null), v);
                out.insert(k.clone(), merged);
            }
            Value::Array(items) => {
                let order = p.get(&format!("$setElementOrder/{k}"));
                let merged = match (out.get(k), order.and_then(merge_key)) {
                    (Some(Value::Array(have)), Some(key)) => merge_list(have, items, order, &key),
                    _ => without_directives(v),
                };
                out.insert(k.clone(), merged);
            }
            other => {
                out.insert(k.clone(), without_directives(other));
            }
        }
    }
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        out.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Value::Object(out)
}

/// The merge key of a list, read off its `$setElementOrder/…` directive (kubectl sends one for
/// every list it patches by key: `[{"port": 80}, {"port": 443}]` → `port`). The real server
/// knows the keys from the schema; this one only learns them from the directive, and replaces
/// lists that come without one.
fn merge_key(order: &Value) -> Option<String> {
    let first = order.as_array()?.first()?.as_object()?;
    match first.keys().collect::<Vec<_>>().as_slice() {
        [key] => Some((*key).clone()),
        _ => None,
    }
}

/// Merges list elements by `key`: patched elements merge into the existing element with the
/// same key, `$patch: delete` removes one, and the result follows the `$setElementOrder` order
/// (elements it does not mention keep their place at the end).
fn merge_list(have: &[Value], patch: &[Value], order: Option<&Value>, key: &str) -> Value {
    let key_of = |v: &Value| v.get(key).cloned();
    let mut merged: Vec<Value> = have.to_vec();
    for item in patch {
        let Some(k) = key_of(item) else {
            merged.push(without_directives(item));
            continue;
        };
        let pos = merged.iter().position(|m| key_of(m).as_ref() == Some(&k));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                merged.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merged[i] = strategic_merge(&merged[i], item),
            (None, false) => merged.push(without_directives(item)),
        }
    }
    let order: Vec<Value> = order
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(key_of)
        .collect();
    merged.sort_by_key(|m| {
        key_of(m)
            .and_then(|k| order.iter().position(|o| *o == k))
            .unwrap_or(usize::MAX)
    });
    Value::Array(merged)
}

/// `patch` with every `$…` key removed (and `null`s dropped from maps), at any depth.
fn without_directives(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

/// Server-side apply without field ownership: maps merge recursively, anything else (lists
/// included) is replaced by the applied value; `null` in the applied configuration is ignored.
fn apply_merge(doc: &Value, applied: &Value) -> Value {
    match (doc, applied) {
        (Value::Object(d), Value::Object(a)) => {
            let mut out = d.clone();
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let merged = apply_merge(out.get(k).unwrap_or(&Value::Null), v);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (_, a) => without_nulls(a),
    }
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"metadata": {"name": "web", "annotations": {"a": "1", "b": "2"}},
               "spec": {"ports": [{"port": 80, "name": "http"}], "type": "LoadBalancer"}})
    }

    #[test]
    fn content_types_select_the_patch_kind() {
        assert_eq!(
            PatchKind::from_content_type(Some("application/merge-patch+json; charset=utf-8")),
            Ok(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type(Some("application/apply-patch+yaml")),
            Ok(PatchKind::Apply)
        );
        assert!(matches!(
            PatchKind::from_content_type(Some("application/json")),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(PatchKind::from_content_type(None).is_err());
    }

    #[test]
    fn merge_patch_sets_and_removes_keys() {
        let p = json!({"metadata": {"annotations": {"a": null, "c": "3"}}});
        let out = apply(PatchKind::Merge, &doc(), &p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["metadata"]["annotations"], json!({"b": "2", "c": "3"}));
        assert!(apply(PatchKind::Merge, &doc(), &json!([1])).is_err());
    }

    #[test]
    fn json_patch_runs_operations_and_reports_failed_tests() {
        let p = json!([{"op": "replace", "path": "/spec/type", "value": "ClusterIP"},
                       {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}]);
        let out = apply(PatchKind::Json, &doc(), &p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["spec"]["type"], "ClusterIP");
        assert_eq!(out["metadata"]["labels"], json!({"x": "y"}));
        let failing = json!([{"op": "test", "path": "/spec/type", "value": "NodePort"}]);
        assert!(matches!(
            apply(PatchKind::Json, &doc(), &failing),
            Err(ApiError::Invalid { .. })
        ));
        assert!(matches!(
            apply(PatchKind::Json, &doc(), &json!({"op": "add"})),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn strategic_merge_patch_honours_or_drops_directives() {
        let p = json!({"$setElementOrder/ports": [{"port": 80}],
                       "metadata": {"annotations": {"b": null, "$retainKeys": ["a", "b"]}},
                       "spec": {"ports": [{"port": 81}]}});
        let out = apply(PatchKind::Strategic, &doc(), &p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["metadata"]["annotations"], json!({"a": "1"}));
        assert_eq!(out["spec"]["ports"], json!([{"port": 81}]));
        assert!(out.get("$setElementOrder/ports").is_none());
        // What `kubectl apply` sends to change one port's targetPort and add another.
        let p = json!({"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}],
                                "ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}});
        let out = apply(PatchKind::Strategic, &doc(), &p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 443}, {"port": 80, "name": "http", "targetPort": 9090}])
        );
        let p = json!({"spec": {"$setElementOrder/ports": [{"port": 443}],
                                "ports": [{"port": 80, "$patch": "delete"}, {"port": 443}]}});
        let out = apply(PatchKind::Strategic, &doc(), &p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["spec"]["ports"], json!([{"port": 443}]));
        let replace = json!({"metadata": {"annotations": {"$patch": "replace", "z": "9"}}});
        let out = apply(PatchKind::Strategic, &doc(), &replace).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["metadata"]["annotations"], json!({"z": "9"}));
    }

    #[test]
    fn apply_merges_maps_and_replaces_lists() {
        let p = json!({"metadata": {"annotations": {"c": "3"}}, "spec": {"ports": [{"port": 81}]}});
        let out = apply(PatchKind::Apply, &doc(), &p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out["metadata"]["annotations"],
            json!({"a": "1", "b": "2", "c": "3"})
        );
        assert_eq!(out["spec"]["ports"], json!([{"port": 81}]));
        assert_eq!(out["spec"]["type"], "LoadBalancer");
    }

    #[test]
    fn apply_bodies_may_be_yaml() {
        let v = parse_body(PatchKind::Apply, b"metadata:\n  name: web\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v, json!({"metadata": {"name": "web"}}));
        assert!(matches!(
            parse_body(PatchKind::Merge, b"metadata: {"),
            Err(ApiError::BadRequest(_))
        ));
    }
}

//! [pure] What the server fills in and guards on writes: metadata on create (uid, timestamps,
//! generateName), server-owned fields kept on update, the status subresource split; Service
//! defaults live in `service`. Pure apart from random uids and
//! generated names; time comes in as `now`.

use super::error::{invalid, ApiError, Result};
use super::meta::{meta_str, rfc3339, uid};
use super::resources::{self, ResourceDef};
use super::service;
use super::store::Db;
use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Metadata fields only the server writes; an update or patch cannot change them.
const SERVER_META: &[&str] = &[
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Reads a timestamp [`rfc3339`] writes (fractional seconds and offsets other than `Z` are not
/// accepted: `None`).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days since 1970-01-01 from a civil date (H. Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()?;
    Some(UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// The random suffix of a `generateName`, from the same alphabet as the real server's.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| char::from(ALPHABET[fastrand::usize(0..ALPHABET.len())]))
        .collect()
}

/// Checks `kind`/`apiVersion` (filling them in when absent) and that the body is an object with
/// an object `metadata`.
fn typed_object(def: &ResourceDef, body: Value) -> Result<Map<String, Value>> {
    let Value::Object(mut obj) = body else {
        return Err(ApiError::BadRequest(format!(
            "the body is not a JSON object: expected a {} {}",
            def.api_version(),
            def.kind
        )));
    };
    let want = def.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != want => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )))
        }
        _ => {}
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != def.kind => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )))
        }
        _ => {}
    }
    obj.insert("apiVersion".into(), json!(want));
    obj.insert("kind".into(), json!(def.kind));
    match obj.get("metadata") {
        None | Some(Value::Null) => {
            obj.insert("metadata".into(), json!({}));
        }
        Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(ApiError::BadRequest(
                "metadata: expected an object".to_string(),
            ))
        }
    }
    Ok(obj)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Builds the object a create stores: returns (namespace, name, object).
pub fn for_create(
    db: &Db,
    def: &ResourceDef,
    url_ns: Option<&str>,
    body: Value,
    now: SystemTime,
) -> Result<(String, String, Value)> {
    let mut obj = Value::Object(typed_object(def, body)?);
    let ns = if def.namespaced {
        let url_ns = url_ns.ok_or(ApiError::MethodNotAllowed)?;
        match meta_str(&obj, "namespace") {
            Some(n) if !n.is_empty() && n != url_ns => {
                return Err(ApiError::BadRequest(format!(
                    "the namespace of the provided object ({n}) does not match the namespace sent on the request ({url_ns})"
                )))
            }
            _ => {}
        }
        let namespaces = resources::find("", "v1", "namespaces").ok_or(ApiError::NoRoute)?;
        if db.get(namespaces, "", url_ns).is_none() {
            return Err(ApiError::NotFound {
                resource: "namespaces".into(),
                name: url_ns.into(),
            });
        }
        url_ns.to_string()
    } else {
        String::new()
    };
    let mut name = meta_str(&obj, "name").unwrap_or("").to_string();
    if name.is_empty() {
        match meta_str(&obj, "generateName") {
            Some(prefix) if !prefix.is_empty() => {
                // Retry on the (unlikely) clash, as the real server's registry does.
                for _ in 0..8 {
                    name = format!("{prefix}{}", name_suffix());
                    if db.get(def, &ns, &name).is_none() {
                        break;
                    }
                }
            }
            _ => {
                return Err(invalid(
                    def,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ))
            }
        }
    }
    if def.group == "rbac.authorization.k8s.io" {
        // RBAC objects only need to be a path segment (`system:kube-vip-role`).
        if name == "." || name == ".." || name.contains(['/', '%']) {
            return Err(invalid(
                def,
                &name,
                "metadata.name",
                format!("Invalid value: {name:?}: may not be '.' or '..' or contain '/' or '%'"),
            ));
        }
    } else if !valid_name(&name) {
        return Err(invalid(
            def,
            &name,
            "metadata.name",
            format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    }
    if db.get(def, &ns, &name).is_some() {
        return Err(ApiError::AlreadyExists {
            resource: def.qualified(),
            name,
        });
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("name".into(), json!(name));
        if def.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid()));
        meta.insert("creationTimestamp".into(), json!(rfc3339(now)));
        meta.insert("generation".into(), json!(1));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(f);
        }
    }
    match def.kind {
        "Service" => {
            // A new Service has no load-balancer status yet, whatever the body says.
            obj["status"] = json!({"loadBalancer": {}});
            service::defaults(db, def, &ns, &name, &mut obj, None)?;
        }
        "Namespace" => {
            obj["status"] = json!({"phase": "Active"});
            if let Some(labels) = obj["metadata"]
                .as_object_mut()
                .map(|m| m.entry("labels").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        _ => {}
    }
    Ok((ns, name, obj))
}

/// Builds the object an update or patch stores from the client's `new` version of `old`.
/// `status`: the write went to the `/status` subresource. Returns `None` when nothing changed
/// (the stored object and its resourceVersion stay as they are).
pub fn for_update(
    db: &Db,
    def: &ResourceDef,
    old: &Value,
    new: Value,
    status: bool,
) -> Result<Option<Value>> {
    let name = meta_str(old, "name").unwrap_or("").to_string();
    let ns = meta_str(old, "namespace").unwrap_or("").to_string();
    let new = typed_object(def, new)?;
    let mut new = Value::Object(new);
    for (field, want) in [("name", &name), ("namespace", &ns)] {
        match meta_str(&new, field) {
            Some(v) if !v.is_empty() && v != want => {
                return Err(ApiError::BadRequest(format!(
                    "the {field} of the object ({v}) does not match the {field} on the URL ({want})"
                )))
            }
            _ => {}
        }
    }
    // Optimistic concurrency: a resourceVersion in the body must be the stored one.
    match (
        meta_str(&new, "resourceVersion"),
        meta_str(old, "resourceVersion"),
    ) {
        (Some(sent), Some(have)) if !sent.is_empty() && sent != have => {
            return Err(ApiError::Conflict {
                resource: def.qualified(),
                name,
                why: "the object has been modified; please apply your changes to the latest version and try again".into(),
            })
        }
        _ => {}
    }
    // A UID in the body is a precondition (it cannot change): an object deleted and created
    // again under the same name is not the one the client meant.
    match (meta_str(&new, "uid"), meta_str(old, "uid")) {
        (Some(sent), Some(have)) if !sent.is_empty() && sent != have => {
            return Err(ApiError::Conflict {
                resource: def.qualified(),
                name,
                why: format!(
                    "Precondition failed: UID in precondition: {sent}, UID in object meta: {have}"
                ),
            })
        }
        _ => {}
    }
    let mut out = if status {
        // /status: take only .status from the client.
        let mut out = old.clone();
        match new.get("status") {
            Some(s) => out["status"] = s.clone(),
            None => {
                if let Some(o) = out.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        out
    } else {
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("name".into(), json!(name));
            if def.namespaced {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
            for f in SERVER_META {
                match old.get("metadata").and_then(|m| m.get(*f)) {
                    Some(v) => meta.insert((*f).into(), v.clone()),
                    None => meta.remove(*f),
                };
            }
        }
        if def.has_status {
            // The main resource never changes .status of a kind with a status subresource.
            match (old.get("status"), new.as_object_mut()) {
                (Some(s), Some(o)) => {
                    o.insert("status".into(), s.clone());
                }
                (None, Some(o)) => {
                    o.remove("status");
                }
                _ => {}
            }
        }
        if def.kind == "Service" {
            service::defaults(db, def, &ns, &name, &mut new, Some(old))?;
        }
        new
    };
    // Compare ignoring the resourceVersion the client may have left out.
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        match old.get("metadata").and_then(|m| m.get("resourceVersion")) {
            Some(rv) => meta.insert("resourceVersion".into(), rv.clone()),
            None => meta.remove("resourceVersion"),
        };
    }
    if &out == old {
        return Ok(None);
    }
    if !status && spec_changed(old, &out) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        out["metadata"]["generation"] = json!(generation + 1);
    }
    Ok(Some(out))
}

/// Anything outside metadata and status changed (what bumps metadata.generation).
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn svc_def() -> &'static ResourceDef {
        resources::find("", "v1", "services").unwrap_or_else(|| unreachable!())
    }

    fn db() -> Db {
        let mut db = Db::new(100);
        let ns = resources::find("", "v1", "namespaces").unwrap_or_else(|| unreachable!());
        db.put(
            ns,
            "",
            "default",
            super::super::meta::initial_namespace("default", UNIX_EPOCH),
        );
        db
    }

    fn create(db: &mut Db, body: Value) -> Result<Value> {
        let (ns, name, obj) = for_create(db, svc_def(), Some("default"), body, UNIX_EPOCH)?;
        Ok(db.put(svc_def(), &ns, &name, obj))
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(rfc3339(leap), "2024-02-29T23:59:59Z");
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59Z"), Some(leap));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59.5Z"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn a_load_balancer_service_gets_the_real_defaults() {
        let mut db = db();
        let s = create(
            &mut db,
            json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        );
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s["spec"],
            json!({
                "type": "LoadBalancer",
                "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                "externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": true,
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30000}],
            })
        );
        assert_eq!(s["status"], json!({"loadBalancer": {}}));
        assert_eq!(s["metadata"]["generation"], 1);
        assert_eq!(s["metadata"]["namespace"], "default");
    }

    #[test]
    fn allocations_skip_what_other_services_hold() {
        let mut db = db();
        let lb = |n: &str| json!({"metadata": {"name": n}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let _ = create(&mut db, lb("a"));
        let b = create(&mut db, lb("b")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b["spec"]["clusterIP"], "10.96.0.11");
        assert_eq!(b["spec"]["ports"][0]["nodePort"], 30001);
        let clash = create(
            &mut db,
            json!({"metadata": {"name": "c"}, "spec": {"clusterIP": "10.96.0.11"}}),
        );
        assert!(matches!(clash, Err(ApiError::Invalid { .. })), "{clash:?}");
    }

    #[test]
    fn an_update_keeps_allocations_server_metadata_and_status() {
        let mut db = db();
        let old = create(
            &mut db,
            json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut new = json!({"metadata": {"name": "web", "labels": {"a": "b"}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
        let out = for_update(&db, svc_def(), &old, new.clone(), false)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a label change is a change"));
        assert_eq!(out["spec"], old["spec"]);
        assert_eq!(out["status"], old["status"]);
        assert_eq!(out["metadata"]["uid"], old["metadata"]["uid"]);
        assert_eq!(out["metadata"]["generation"], 1);
        // Another object's UID: a conflict, nothing changes.
        let mut other = new.clone();
        other["metadata"]["uid"] = json!("not-this-one");
        let err = for_update(&db, svc_def(), &old, other, false).unwrap_err();
        assert!(
            err.to_string()
                .contains("Precondition failed: UID in precondition: not-this-one"),
            "{err}"
        );
        // Through /status only the status changes.
        let out = for_update(&db, svc_def(), &old, new.clone(), true)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a status change is a change"));
        assert_eq!(out["status"], new["status"]);
        assert_eq!(out["metadata"], old["metadata"]);
        // A stale resourceVersion conflicts.
        new["metadata"]["resourceVersion"] = json!("1");
        assert!(matches!(
            for_update(&db, svc_def(), &old, new, false),
            Err(ApiError::Conflict { .. })
        ));
    }

    #[test]
    fn an_identical_update_is_no_change() {
        let mut db = db();
        let old =
            create(&mut db, json!({"metadata": {"name": "web"}})).unwrap_or_else(|e| panic!("{e}"));
        let mut same = old.clone();
        if let Some(m) = same["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        assert_eq!(for_update(&db, svc_def(), &old, same, false), Ok(None));
    }

    #[test]
    fn create_checks_names_kinds_and_namespaces() {
        let db = db();
        let bad =
            |body: Value, ns: &str| for_create(&db, svc_def(), Some(ns), body, UNIX_EPOCH).err();
        assert!(matches!(
            bad(json!({"metadata": {}}), "default"),
            Some(ApiError::Invalid { .. })
        ));
        assert!(matches!(
            bad(json!({"metadata": {"name": "Web"}}), "default"),
            Some(ApiError::Invalid { .. })
        ));
        assert!(matches!(
            bad(
                json!({"kind": "Node", "metadata": {"name": "a"}}),
                "default"
            ),
            Some(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            bad(json!([1]), "default"),
            Some(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            bad(json!({"metadata": {"name": "a"}}), "nope"),
            Some(ApiError::NotFound { .. })
        ));
        let gen = for_create(
            &db,
            svc_def(),
            Some("default"),
            json!({"metadata": {"generateName": "web-"}}),
            UNIX_EPOCH,
        );
        let name = gen.map(|(_, n, _)| n).unwrap_or_default();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    }
}

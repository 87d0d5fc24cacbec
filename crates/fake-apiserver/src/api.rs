//! [pure] The REST verbs on one resource path: get, list, create, update, patch, delete, delete
//! collection, and turning a watch request into a [`WatchSpec`]. Pure: works on a [`Db`] under
//! the caller's lock, with `now` passed in.

use super::error::{self, ApiError, Result};
use super::meta;
use super::objects;
use super::patch::{self, PatchKind};
use super::proto;
use super::resources::{self, ResourceDef};
use super::routes::{Query, ResourcePath};
use super::selector::Selector;
use super::store::{Db, TokenOwner};
use super::table::{self, Include};
use super::watch::{Start, WatchSpec};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// One request to a resource path, body already read.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a ResourcePath,
    pub query: &'a Query,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub now: SystemTime,
    /// Reads answer with a Table (kubectl's `Accept: …;as=Table`), rows carrying this much.
    pub table: Option<Include>,
}

/// What to answer.
#[derive(Debug)]
pub enum Outcome {
    /// A JSON body with this HTTP status.
    Json(u16, Value),
    /// A watch stream.
    Watch(WatchSpec),
}

impl Call<'_> {
    fn is_watch(&self) -> bool {
        self.path.watch_prefix || self.query.flag("watch")
    }

    /// Whether this call only reads (and can run under a read of the store).
    pub fn is_read(&self) -> bool {
        self.method == "GET"
    }

    fn dry_run(&self) -> bool {
        self.query.non_empty("dryRun").is_some()
    }

    fn ns(&self) -> &str {
        self.path.namespace.as_deref().unwrap_or("")
    }

    fn selector(&self) -> Result<Selector> {
        Selector::parse(
            self.query.get("labelSelector"),
            self.query.get("fieldSelector"),
        )
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::NotFound {
            resource: self.path.def.qualified(),
            name: name.to_string(),
        }
    }
}

/// Answers a read (GET): get, list, or the parameters of a watch.
pub fn read(db: &Db, call: &Call) -> Result<Outcome> {
    let def = call.path.def;
    if call.method != "GET" {
        return Err(ApiError::MethodNotAllowed);
    }
    if call.is_watch() {
        return watch_spec(call).map(Outcome::Watch);
    }
    let body = match &call.path.name {
        Some(name) => {
            let obj = db
                .get(def, call.ns(), name)
                .cloned()
                .ok_or_else(|| call.not_found(name))?;
            match call.table {
                Some(inc) => table::table(def, &[obj], None, call.now, inc),
                None => obj,
            }
        }
        None => {
            let mut l = list(db, call)?;
            if let Some(inc) = call.table {
                let items = match l.get_mut("items").map(Value::take) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                l = table::table(def, &items, Some(db.rv()), call.now, inc);
            }
            l
        }
    };
    Ok(Outcome::Json(200, body))
}

/// Runs a write (POST, PUT, PATCH, DELETE).
pub fn write(db: &mut Db, call: &Call) -> Result<Outcome> {
    let p = call.path;
    let out = match (call.method, &p.name, p.status) {
        ("POST", None, false) => create(db, call),
        ("POST", Some(name), false) if p.token => token_request(db, call, name),
        ("PUT", Some(name), _) => update(db, call, name).map(|o| (200, o)),
        ("PATCH", Some(name), _) => patch(db, call, name),
        ("DELETE", Some(name), false) => delete(db, call, name).map(|o| (200, o)),
        ("DELETE", None, false) => delete_collection(db, call).map(|o| (200, o)),
        _ => Err(ApiError::MethodNotAllowed),
    }?;
    mirror_event(db, call, &out.1);
    Ok(Outcome::Json(out.0, out.1))
}

/// After a write of an `events.k8s.io` Event: its core `v1` view follows (`event_view`):
/// rewritten while it exists, removed with it.
fn mirror_event(db: &mut Db, call: &Call, written: &Value) {
    let def = call.path.def;
    if def.group != "events.k8s.io" || call.dry_run() {
        return;
    }
    let Some(core) = resources::find("", "v1", "events") else {
        return;
    };
    let Some(name) = call
        .path
        .name
        .clone()
        .or_else(|| written["metadata"]["name"].as_str().map(str::to_string))
    else {
        return;
    };
    let ns = call.ns().to_string();
    match db.get(def, &ns, &name).map(super::event_view::core_event) {
        Some(view) => {
            db.put(core, &ns, &name, view);
        }
        None => {
            db.remove(core, &ns, &name);
        }
    }
}

fn list(db: &Db, call: &Call) -> Result<Value> {
    let def = call.path.def;
    let sel = call.selector()?;
    // Only the current state is kept: an exact read of an older version is gone.
    if call.query.get("resourceVersionMatch") == Some("Exact") {
        let rv = parse_rv(call.query.get("resourceVersion"))?.unwrap_or(0);
        if rv < db.rv() {
            return Err(ApiError::Expired {
                requested: rv,
                oldest: db.rv(),
            });
        }
    }
    let items: Vec<Value> = db
        .list(def, call.path.namespace.as_deref())
        .filter(|o| sel.matches(o))
        .cloned()
        .collect();
    Ok(json!({
        "kind": def.list_kind(),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": db.rv().to_string()},
        "items": items,
    }))
}

fn parse_rv(rv: Option<&str>) -> Result<Option<u64>> {
    match rv {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resource version {s:?}"))),
    }
}

fn watch_spec(call: &Call) -> Result<WatchSpec> {
    let mut selector = call.selector()?;
    if let Some(name) = &call.path.name {
        selector = selector.with_name(name);
    }
    let start = match parse_rv(call.query.get("resourceVersion"))? {
        None | Some(0) => Start::Snapshot,
        Some(rv) => Start::After(rv),
    };
    let timeout = match call.query.non_empty("timeoutSeconds") {
        None => None,
        Some(t) => Some(Duration::from_secs(t.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "invalid timeoutSeconds {t:?}: expected whole seconds"
            ))
        })?)),
    };
    let initial_events = call.query.flag("sendInitialEvents");
    Ok(WatchSpec {
        def: call.path.def,
        namespace: call.path.namespace.clone(),
        selector,
        // With sendInitialEvents the snapshot is asked for explicitly, whatever the version.
        start: if initial_events {
            Start::Snapshot
        } else {
            start
        },
        bookmarks: call.query.flag("allowWatchBookmarks"),
        initial_events_end: initial_events,
        timeout,
        table: call.table,
    })
}

/// The request body as JSON: JSON itself, or the protobuf kubectl's typed clients send.
fn body_json(call: &Call) -> Result<Value> {
    let media = call
        .content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        "" | "application/json" | "*/*" => {}
        proto::MEDIA_TYPE => return proto::decode(call.body),
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "application/json, {}",
                proto::MEDIA_TYPE
            )))
        }
    }
    serde_json::from_slice(call.body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the request body is not a valid {} object: {e}",
            call.path.def.kind
        ))
    })
}

fn create(db: &mut Db, call: &Call) -> Result<(u16, Value)> {
    let def = call.path.def;
    let body = body_json(call)?;
    event_note_fits(def, &body)?;
    let (ns, name, obj) =
        objects::for_create(db, def, call.path.namespace.as_deref(), body, call.now)?;
    if call.dry_run() {
        return Ok((201, obj));
    }
    Ok((201, db.put(def, &ns, &name, obj)))
}

/// kube-apiserver's validation of `events.k8s.io/v1` Events: a `note` of at most 1024 bytes
/// (`NoteLengthLimit`); a longer one is refused with 422 and the Event is lost.
const EVENT_NOTE_LIMIT: usize = 1024;

fn event_note_fits(def: &ResourceDef, body: &Value) -> Result<()> {
    if def.group != "events.k8s.io" {
        return Ok(());
    }
    let note = body.get("note").and_then(Value::as_str).unwrap_or("");
    if note.len() <= EVENT_NOTE_LIMIT {
        return Ok(());
    }
    let name = body["metadata"]["name"]
        .as_str()
        .or_else(|| body["metadata"]["generateName"].as_str())
        .unwrap_or("");
    Err(crate::error::invalid(
        def,
        name,
        "note",
        format!("Too long: may not be more than {EVENT_NOTE_LIMIT} bytes"),
    ))
}

/// `POST …/serviceaccounts/<name>/token` (what `kubectl create token` sends): a bearer token
/// for the ServiceAccount, in an `authentication.k8s.io/v1` TokenRequest.
fn token_request(db: &mut Db, call: &Call, name: &str) -> Result<(u16, Value)> {
    let sa = db
        .get(call.path.def, call.ns(), name)
        .ok_or_else(|| call.not_found(name))?;
    let uid = sa["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let request = body_json(call)?;
    if let Some(kind) = request.get("kind").and_then(Value::as_str) {
        if kind != "TokenRequest" {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({kind}) does not match the expected kind (TokenRequest)"
            )));
        }
    }
    let mut spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let seconds = spec
        .get("expirationSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(3600);
    if seconds < 600 {
        return Err(ApiError::BadRequest(
            "spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes"
                .into(),
        ));
    }
    spec["expirationSeconds"] = json!(seconds);
    let token = db.issue_token(TokenOwner {
        namespace: call.ns().to_string(),
        name: name.to_string(),
        uid,
    });
    let expires = call.now + Duration::from_secs(seconds);
    Ok((
        201,
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": name,
                "namespace": call.ns(),
                "creationTimestamp": meta::rfc3339(call.now),
            },
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": meta::rfc3339(expires)},
        }),
    ))
}

/// Creates every object of a multi-document YAML manifest (`---` between documents), as
/// `kubectl create -f` does, all or nothing; returns `kind/name` of each.
pub fn create_manifest(db: &mut Db, yaml: &str, now: SystemTime) -> Result<Vec<String>> {
    let mut parsed = Vec::new();
    for doc in yaml.split("\n---").map(|d| d.trim_start_matches("---")) {
        if doc
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let obj: Value = serde_saphyr::from_str(doc)
            .map_err(|e| ApiError::BadRequest(format!("a document is not YAML: {e}")))?;
        let api_version = obj["apiVersion"].as_str().unwrap_or("");
        let kind = obj["kind"].as_str().unwrap_or("");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let def = resources::RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("no kind \"{kind}\" is served in {api_version}"))
            })?;
        parsed.push((def, obj));
    }
    // Every document is checked before any is created: nothing is half-created.
    let mut out = Vec::new();
    for (def, obj) in parsed {
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        let ns = ns
            .map(str::to_string)
            .or_else(|| def.namespaced.then(|| "default".to_string()));
        let (ns, name, obj) = objects::for_create(db, def, ns.as_deref(), obj, now)?;
        if db.get(def, &ns, &name).is_some() {
            return Err(ApiError::AlreadyExists {
                resource: def.qualified(),
                name,
            });
        }
        out.push((def, ns, name, obj));
    }
    Ok(out
        .into_iter()
        .map(|(def, ns, name, obj)| {
            db.put(def, &ns, &name, obj);
            format!("{}/{name}", def.singular)
        })
        .collect())
}

/// The ServiceAccount `ns/name` (created unless it exists) and a new token for it.
pub fn service_account_token(db: &mut Db, ns: &str, name: &str) -> String {
    let def = resources::find("", "v1", "serviceaccounts")
        .unwrap_or_else(|| unreachable!("serviceaccounts is in the resource table"));
    if db.get(def, ns, name).is_none() {
        let body = json!({"metadata": {"name": name}});
        match objects::for_create(db, def, Some(ns), body, SystemTime::now()) {
            Ok((ns, name, obj)) => {
                db.put(def, &ns, &name, obj);
            }
            Err(e) => panic!("cannot create ServiceAccount {ns}/{name}: {e}"),
        }
    }
    let uid = db
        .get(def, ns, name)
        .and_then(|sa| sa.pointer("/metadata/uid"));
    let uid = uid.and_then(Value::as_str).unwrap_or("").to_string();
    db.issue_token(TokenOwner {
        namespace: ns.to_string(),
        name: name.to_string(),
        uid,
    })
}

fn update(db: &mut Db, call: &Call, name: &str) -> Result<Value> {
    let def = call.path.def;
    let old = db
        .get(def, call.ns(), name)
        .cloned()
        .ok_or_else(|| call.not_found(name))?;
    let new = body_json(call)?;
    store_update(db, call, &old, new)
}

/// Stores `new` as the next version of `old` (through `/status` if the path says so), or
/// returns `old` untouched when nothing changed.
fn store_update(db: &mut Db, call: &Call, old: &Value, new: Value) -> Result<Value> {
    let def = call.path.def;
    let name = old["metadata"]["name"].as_str().unwrap_or("");
    let Some(out) = objects::for_update(db, def, old, new, call.path.status)
        .map_err(|e| name_invalid(e, def, name))?
    else {
        return Ok(old.clone());
    };
    if call.dry_run() {
        return Ok(out);
    }
    // The last finalizer removed from an object being deleted completes the deletion.
    let finalized = out.pointer("/metadata/deletionTimestamp").is_some()
        && out
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    let stored = db.put(def, call.ns(), name, out);
    if finalized {
        return Ok(db.remove(def, call.ns(), name).unwrap_or(stored));
    }
    Ok(stored)
}

/// A JSON patch failure does not know the object it was applied to; name it.
fn name_invalid(e: ApiError, def: &ResourceDef, name: &str) -> ApiError {
    match e {
        ApiError::Invalid {
            kind,
            name: n,
            field,
            why,
        } if kind.is_empty() => ApiError::Invalid {
            kind: def.kind.to_string(),
            name: if n.is_empty() { name.to_string() } else { n },
            field,
            why,
        },
        other => other,
    }
}

fn patch(db: &mut Db, call: &Call, name: &str) -> Result<(u16, Value)> {
    let def = call.path.def;
    let kind = PatchKind::from_content_type(call.content_type)?;
    if kind == PatchKind::Apply && call.query.non_empty("fieldManager").is_none() {
        return Err(ApiError::Invalid {
            kind: "PatchOptions.meta.k8s.io".into(),
            name: String::new(),
            field: "fieldManager".into(),
            why: "Required value: is required for apply patch".into(),
        });
    }
    let body = patch::parse_body(kind, call.body)?;
    let Some(old) = db.get(def, call.ns(), name).cloned() else {
        if kind != PatchKind::Apply || call.path.status {
            return Err(call.not_found(name));
        }
        // Server-side apply creates what does not exist yet.
        match body.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if n != name => {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => {}
        }
        let mut obj = patch::apply(kind, &json!({}), &body)?;
        obj["metadata"]["name"] = json!(name);
        let (ns, name, obj) =
            objects::for_create(db, def, call.path.namespace.as_deref(), obj, call.now)?;
        if call.dry_run() {
            return Ok((201, obj));
        }
        return Ok((201, db.put(def, &ns, &name, obj)));
    };
    let new = patch::apply(kind, &old, &body).map_err(|e| name_invalid(e, def, name))?;
    store_update(db, call, &old, new).map(|o| (200, o))
}

fn delete(db: &mut Db, call: &Call, name: &str) -> Result<Value> {
    let def = call.path.def;
    let ns = call.ns().to_string();
    let old = db
        .get(def, &ns, name)
        .cloned()
        .ok_or_else(|| call.not_found(name))?;
    if !call.body.is_empty() {
        let opts: Value = serde_json::from_slice(call.body).map_err(|e| {
            ApiError::BadRequest(format!("the DeleteOptions body is not valid JSON: {e}"))
        })?;
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            let want = opts
                .pointer(&format!("/preconditions/{field}"))
                .and_then(Value::as_str);
            let have = old["metadata"][field].as_str().unwrap_or("");
            if let Some(want) = want.filter(|w| *w != have) {
                return Err(ApiError::Conflict {
                    resource: def.qualified(),
                    name: name.to_string(),
                    why: format!(
                        "Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"
                    ),
                });
            }
        }
    }
    if call.dry_run() {
        return Ok(old);
    }
    let has_finalizers = old
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        // Deletion waits for the finalizers to be removed.
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut marked = old;
        marked["metadata"]["deletionTimestamp"] = json!(super::meta::rfc3339(call.now));
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        return Ok(db.put(def, &ns, name, marked));
    }
    let gone = db
        .remove(def, &ns, name)
        .ok_or_else(|| call.not_found(name))?;
    if def.kind == "Namespace" {
        // What the namespace controller would do: delete everything inside.
        for r in resources::RESOURCES.iter().filter(|r| r.namespaced) {
            let names: Vec<String> = db
                .list(r, Some(name))
                .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
                .collect();
            for n in names {
                db.remove(r, name, &n);
            }
        }
    }
    Ok(gone)
}

fn delete_collection(db: &mut Db, call: &Call) -> Result<Value> {
    let def = call.path.def;
    if def.namespaced && call.path.namespace.is_none() {
        return Err(ApiError::MethodNotAllowed);
    }
    let sel = call.selector()?;
    let names: Vec<String> = db
        .list(def, call.path.namespace.as_deref())
        .filter(|o| sel.matches(o))
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let mut items = Vec::new();
    for n in names {
        items.push(delete(db, call, &n)?);
    }
    if items.is_empty() {
        return Ok(error::success());
    }
    Ok(json!({
        "kind": def.list_kind(),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": db.rv().to_string()},
        "items": items,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{route, Route};
    use std::time::UNIX_EPOCH;

    fn db() -> Db {
        let mut db = Db::new(100);
        let ns = resources::find("", "v1", "namespaces").unwrap_or_else(|| unreachable!());
        db.put(
            ns,
            "",
            "default",
            crate::meta::initial_namespace("default", UNIX_EPOCH),
        );
        db
    }

    fn run(db: &mut Db, method: &str, url: &str, ct: Option<&str>, body: Value) -> Result<Value> {
        let (path, q) = url.split_once('?').unwrap_or((url, ""));
        let Some(Route::Resource(path)) = route(path) else {
            panic!("no route for {url}");
        };
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let query = Query::parse(Some(q));
        let call = Call {
            method,
            path: &path,
            query: &query,
            content_type: ct,
            body: &body,
            now: UNIX_EPOCH,
            table: None,
        };
        let out = if call.is_read() {
            read(db, &call)
        } else {
            write(db, &call)
        }?;
        match out {
            Outcome::Json(_, v) => Ok(v),
            Outcome::Watch(w) => Ok(json!(format!("{w:?}"))),
        }
    }

    const SVCS: &str = "/api/v1/namespaces/default/services";

    #[test]
    fn an_event_note_over_1024_bytes_is_refused_as_kube_apiserver_refuses_it() {
        let mut db = db();
        let url = "/apis/events.k8s.io/v1/namespaces/default/events";
        let event = |note: String| {
            json!({"metadata": {"name": "web.1"}, "reason": "Announced", "note": note,
                   "type": "Normal", "action": "Announce", "reportingController": "vipd",
                   "reportingInstance": "node0", "eventTime": "2026-12-07T00:00:00.000000Z"})
        };
        let e = run(&mut db, "POST", url, None, event("x".repeat(1025))).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some(
                "Event \"web.1\" is invalid: note: Too long: may not be more than 1024 bytes"
                    .into()
            )
        );
        assert!(run(&mut db, "POST", url, None, event("x".repeat(1024))).is_ok());
    }

    #[test]
    fn a_no_op_patch_keeps_the_resource_version() {
        let mut db = db();
        let created = run(
            &mut db,
            "POST",
            SVCS,
            None,
            json!({"metadata": {"name": "a"}}),
        );
        let rv = created.map(|c| c["metadata"]["resourceVersion"].clone());
        let patched = run(
            &mut db,
            "PATCH",
            &format!("{SVCS}/a"),
            Some("application/merge-patch+json"),
            json!({"spec": {"type": "ClusterIP"}}),
        );
        assert_eq!(
            patched.map(|p| p["metadata"]["resourceVersion"].clone()),
            rv
        );
        assert_eq!(db.events_after(1).map(|e| e.len()), Ok(1));
    }

    #[test]
    fn apply_requires_a_field_manager_and_creates_when_absent() {
        let mut db = db();
        let url = format!("{SVCS}/web");
        let ct = Some("application/apply-patch+yaml");
        let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        let e = run(&mut db, "PATCH", &url, ct, body.clone()).err();
        assert!(matches!(e, Some(ApiError::Invalid { .. })), "{e:?}");
        let made = run(&mut db, "PATCH", &format!("{url}?fieldManager=t"), ct, body);
        assert_eq!(
            made.map(|m| m["spec"]["type"].clone()),
            Ok(json!("ClusterIP"))
        );
    }

    #[test]
    fn finalizers_hold_a_deletion_until_removed() {
        let mut db = db();
        let url = format!("{SVCS}/a");
        let _ = run(
            &mut db,
            "POST",
            SVCS,
            None,
            json!({"metadata": {"name": "a", "finalizers": ["x/y"]}}),
        );
        let marked = run(&mut db, "DELETE", &url, None, Value::Null);
        assert!(marked.is_ok_and(|m| m["metadata"]["deletionTimestamp"].is_string()));
        let _ = run(
            &mut db,
            "PATCH",
            &url,
            Some("application/merge-patch+json"),
            json!({"metadata": {"finalizers": null}}),
        );
        assert!(matches!(
            run(&mut db, "GET", &url, None, Value::Null),
            Err(ApiError::NotFound { .. })
        ));
    }

    #[test]
    fn delete_preconditions_and_wrong_methods() {
        let mut db = db();
        let url = format!("{SVCS}/a");
        let _ = run(
            &mut db,
            "POST",
            SVCS,
            None,
            json!({"metadata": {"name": "a"}}),
        );
        let e = run(
            &mut db,
            "DELETE",
            &url,
            None,
            json!({"preconditions": {"resourceVersion": "1"}}),
        );
        assert!(matches!(e, Err(ApiError::Conflict { .. })), "{e:?}");
        assert_eq!(
            run(&mut db, "POST", &url, None, json!({})).err(),
            Some(ApiError::MethodNotAllowed)
        );
        assert_eq!(
            run(&mut db, "PUT", SVCS, None, json!({})).err(),
            Some(ApiError::MethodNotAllowed)
        );
    }

    #[test]
    fn list_exact_at_an_old_version_is_expired() {
        let mut db = db();
        let _ = run(
            &mut db,
            "POST",
            SVCS,
            None,
            json!({"metadata": {"name": "a"}}),
        );
        let e = run(
            &mut db,
            "GET",
            &format!("{SVCS}?resourceVersion=1&resourceVersionMatch=Exact"),
            None,
            Value::Null,
        );
        assert!(matches!(e, Err(ApiError::Expired { .. })), "{e:?}");
    }
}

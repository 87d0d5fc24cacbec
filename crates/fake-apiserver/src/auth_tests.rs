//! [pure] The authenticator and the RBAC authorizer, by exact outcome.

use super::*;
use crate::objects;
use crate::routes::{route, Route};
use crate::store::TokenOwner;
use serde_json::json;
use std::time::SystemTime;

fn create(db: &mut Db, group: &str, plural: &str, ns: Option<&str>, body: Value) {
    let def = resources::find(group, "v1", plural).expect("served");
    let (ns, name, obj) =
        objects::for_create(db, def, ns, body, SystemTime::now()).expect("valid object");
    db.put(def, &ns, &name, obj);
}

/// An empty Db with the namespaces the tests use.
fn empty() -> Db {
    let mut db = Db::new(100);
    for ns in ["default", "kube-system"] {
        create(
            &mut db,
            "",
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
        );
    }
    db
}

const RBAC: &str = "rbac.authorization.k8s.io";

fn sa(ns: &str, name: &str) -> Identity {
    Identity::ServiceAccount {
        namespace: ns.into(),
        name: name.into(),
    }
}

/// A Db with ClusterRole `svc-writer` (services get/list/watch/update, services/status update)
/// bound to kube-system/kube-vip.
fn db_with_role() -> Db {
    let mut db = empty();
    create(
        &mut db,
        RBAC,
        "clusterroles",
        None,
        json!({"metadata": {"name": "svc-writer"}, "rules": [
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "update"]},
            {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]},
        ]}),
    );
    create(
        &mut db,
        RBAC,
        "clusterrolebindings",
        None,
        json!({"metadata": {"name": "svc-writer"},
               "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "svc-writer"},
               "subjects": [{"kind": "ServiceAccount", "name": "kube-vip", "namespace": "kube-system"}]}),
    );
    db
}

fn attrs(method: &str, path: &str) -> Attributes {
    let (path, watch) = match path.split_once("?watch=") {
        Some((p, w)) => (p, w == "true"),
        None => (path, false),
    };
    match route(path) {
        Some(Route::Resource(rp)) => Attributes::of(method, &rp, watch),
        other => panic!("{path} is not a resource path: {other:?}"),
    }
}

fn allowed(db: &Db, who: &Identity, method: &str, path: &str) -> Result<(), String> {
    authorize(db, who, &attrs(method, path)).map_err(|e| e.to_string())
}

#[test]
fn requests_map_to_the_verbs_rbac_knows() {
    let verb = |m, p| attrs(m, p).verb;
    assert_eq!(
        verb("GET", "/api/v1/namespaces/default/services/web"),
        "get"
    );
    assert_eq!(verb("GET", "/api/v1/namespaces/default/services"), "list");
    assert_eq!(verb("GET", "/api/v1/services?watch=true"), "watch");
    assert_eq!(verb("GET", "/api/v1/watch/services"), "watch");
    assert_eq!(
        verb("POST", "/api/v1/namespaces/default/services"),
        "create"
    );
    assert_eq!(
        verb("PUT", "/api/v1/namespaces/default/services/web"),
        "update"
    );
    assert_eq!(
        verb("PATCH", "/api/v1/namespaces/default/services/web"),
        "patch"
    );
    assert_eq!(
        verb("DELETE", "/api/v1/namespaces/default/services/web"),
        "delete"
    );
    assert_eq!(
        verb("DELETE", "/api/v1/namespaces/default/services"),
        "deletecollection"
    );
    let status = attrs("PUT", "/api/v1/namespaces/default/services/web/status");
    assert_eq!(
        (status.resource, status.subresource),
        ("services", "status")
    );
    let token = attrs(
        "POST",
        "/api/v1/namespaces/kube-system/serviceaccounts/vipd/token",
    );
    assert_eq!(
        (token.verb, token.resource, token.subresource),
        ("create", "serviceaccounts", "token")
    );
    let lease = attrs(
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x",
    );
    assert_eq!(
        (
            lease.group,
            lease.namespace.as_deref(),
            lease.name.as_deref()
        ),
        ("coordination.k8s.io", Some("kube-system"), Some("x"))
    );
}

#[test]
fn a_cluster_role_grants_its_verbs_and_the_subresource_only_as_named() {
    let db = db_with_role();
    let kv = sa("kube-system", "kube-vip");
    let status = "/api/v1/namespaces/default/services/web/status";
    assert_eq!(allowed(&db, &kv, "PUT", status), Ok(()));
    assert_eq!(
        allowed(&db, &kv, "PATCH", status),
        Err("services \"web\" is forbidden: User \"system:serviceaccount:kube-system:kube-vip\" \
             cannot patch resource \"services/status\" in API group \"\" in the namespace \"default\""
            .into())
    );
    assert_eq!(
        allowed(&db, &kv, "PUT", "/api/v1/namespaces/default/services/web"),
        Ok(())
    );
    // `services` does not cover `services/status`, nor the reverse.
    assert!(allowed(&db, &kv, "GET", status).is_err());
    assert_eq!(
        allowed(&db, &kv, "GET", "/api/v1/services?watch=true"),
        Ok(())
    );
    assert_eq!(
        allowed(&db, &kv, "POST", "/apis/events.k8s.io/v1/namespaces/default/events"),
        Err("events.events.k8s.io is forbidden: User \"system:serviceaccount:kube-system:kube-vip\" \
             cannot create resource \"events\" in API group \"events.k8s.io\" in the namespace \"default\""
            .into())
    );
    assert_eq!(
        allowed(&db, &kv, "GET", "/api/v1/nodes"),
        Err(
            "nodes is forbidden: User \"system:serviceaccount:kube-system:kube-vip\" cannot list \
             resource \"nodes\" in API group \"\" at the cluster scope"
                .into()
        )
    );
    // Another ServiceAccount of the same name elsewhere is somebody else.
    assert!(allowed(&db, &sa("default", "kube-vip"), "PUT", status).is_err());
    // The admin is never asked.
    assert_eq!(allowed(&db, &Identity::Admin, "PATCH", status), Ok(()));
}

#[test]
fn the_forbidden_status_names_the_resource_group_and_object() {
    let db = db_with_role();
    let e = authorize(
        &db,
        &sa("kube-system", "kube-vip"),
        &attrs(
            "PATCH",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/l",
        ),
    )
    .unwrap_err();
    assert_eq!(e.code(), 403);
    assert_eq!(
        e.status()["details"],
        json!({"name": "l", "kind": "leases", "group": "coordination.k8s.io"})
    );
    assert_eq!(e.status()["reason"], "Forbidden");
}

#[test]
fn wildcards_and_resource_names_match_as_in_kube_apiserver() {
    let mut db = empty();
    create(
        &mut db,
        RBAC,
        "clusterroles",
        None,
        json!({"metadata": {"name": "r"}, "rules": [
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
             "resourceNames": ["plndr-svcs-lock"]},
            {"apiGroups": [""], "resources": ["*"], "verbs": ["*"]},
        ]}),
    );
    create(
        &mut db,
        RBAC,
        "clusterrolebindings",
        None,
        json!({"metadata": {"name": "r"},
               "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "r"},
               "subjects": [{"kind": "Group", "name": "system:serviceaccounts:kube-system"}]}),
    );
    let who = sa("kube-system", "anyone");
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
    assert_eq!(
        allowed(&db, &who, "GET", &format!("{leases}/plndr-svcs-lock")),
        Ok(())
    );
    assert!(allowed(&db, &who, "GET", &format!("{leases}/other")).is_err());
    // resourceNames never match a request without a name.
    assert!(allowed(&db, &who, "GET", leases).is_err());
    assert_eq!(
        allowed(&db, &who, "PATCH", "/api/v1/nodes/n1/status"),
        Ok(())
    );
    // `*` in the core group covers every core resource and subresource, any verb.
    assert_eq!(
        allowed(&db, &who, "DELETE", "/api/v1/namespaces/x/configmaps/c"),
        Ok(())
    );
    assert!(allowed(&db, &sa("default", "anyone"), "GET", "/api/v1/nodes").is_err());
}

#[test]
fn a_role_binding_grants_in_its_own_namespace_only() {
    let mut db = empty();
    create(
        &mut db,
        RBAC,
        "clusterroles",
        None,
        json!({"metadata": {"name": "lease-rw"}, "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
        ]}),
    );
    create(
        &mut db,
        RBAC,
        "rolebindings",
        Some("kube-system"),
        json!({"metadata": {"name": "b"},
               "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "lease-rw"},
               "subjects": [{"kind": "ServiceAccount", "name": "vipd", "namespace": "kube-system"}]}),
    );
    create(
        &mut db,
        RBAC,
        "roles",
        Some("default"),
        json!({"metadata": {"name": "cm"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        ]}),
    );
    create(
        &mut db,
        RBAC,
        "rolebindings",
        Some("default"),
        json!({"metadata": {"name": "cm"},
               "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "cm"},
               "subjects": [{"kind": "User", "name": "system:serviceaccount:kube-system:vipd"}]}),
    );
    let who = sa("kube-system", "vipd");
    let lease = |ns: &str| format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/l");
    assert_eq!(allowed(&db, &who, "PUT", &lease("kube-system")), Ok(()));
    assert!(allowed(&db, &who, "PUT", &lease("default")).is_err());
    assert_eq!(
        allowed(&db, &who, "GET", "/api/v1/namespaces/default/configmaps/c"),
        Ok(())
    );
    assert!(allowed(
        &db,
        &who,
        "GET",
        "/api/v1/namespaces/kube-system/configmaps/c"
    )
    .is_err());
    // A RoleBinding never grants at the cluster scope.
    assert!(allowed(&db, &who, "GET", "/apis/coordination.k8s.io/v1/leases").is_err());
}

#[test]
fn a_token_is_its_service_account_while_that_one_exists() {
    let mut db = empty();
    assert_eq!(authenticate(&db, None), Some(Identity::Admin));
    assert_eq!(authenticate(&db, Some("Bearer nonsense")), None);
    assert_eq!(authenticate(&db, Some("Basic dXNlcjpwYXNz")), None);
    let token = crate::api::service_account_token(&mut db, "kube-system", "kube-vip");
    assert_eq!(
        authenticate(&db, Some(&format!("Bearer {token}"))),
        Some(sa("kube-system", "kube-vip"))
    );
    // Deleted and created again under the same name: the old token is not the new one's.
    let def = resources::find("", "v1", "serviceaccounts").unwrap();
    db.remove(def, "kube-system", "kube-vip");
    assert_eq!(authenticate(&db, Some(&format!("Bearer {token}"))), None);
    create(
        &mut db,
        "",
        "serviceaccounts",
        Some("kube-system"),
        json!({"metadata": {"name": "kube-vip"}}),
    );
    assert_eq!(authenticate(&db, Some(&format!("Bearer {token}"))), None);
    assert_eq!(
        db.token_owner(&token).map(|o| o.name.as_str()),
        Some("kube-vip")
    );
    let _: Option<&TokenOwner> = db.token_owner("nonsense");
}

//! [pure] Who is asking, and whether RBAC lets them, as kube-apiserver's authenticator and RBAC
//! authorizer decide it for the requests vipd, kubectl and the tests make.
//!
//! - Authentication: a bearer token minted by the TokenRequest API (`kubectl create token`,
//!   [`crate::ApiServer::token`]) is its ServiceAccount while that ServiceAccount (same UID)
//!   exists; an unknown token is 401. A request without credentials is the cluster admin: it
//!   stands in for admin.conf's client certificate, so the plain kubeconfig of `vipd demo` and
//!   the tests stays cluster-admin.
//! - Authorization (ServiceAccounts only; the admin is in `system:masters`): the union of the
//!   rules of every ClusterRoleBinding whose subjects name the user (cluster-wide) and every
//!   RoleBinding in the request's namespace (its Role, or a ClusterRole granting in that
//!   namespace only). A rule matches on verb, API group, resource (`res`, `res/sub`, `*/sub`,
//!   `*`) and resourceNames (which never match a request without a name: list, watch of a
//!   collection, create). Non-resource requests (discovery, `/version`, health) are allowed to
//!   every authenticated user, as the default `system:discovery` and `system:public-info-viewer`
//!   roles do. Not modelled: aggregated ClusterRoles, `nonResourceURLs` rules, impersonation,
//!   escalation checks on writes of roles and bindings.

use super::error::ApiError;
use super::resources::{self, ResourceDef};
use super::routes::ResourcePath;
use super::store::Db;
use serde_json::Value;

/// The authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials: the cluster admin (`system:masters`), never checked against RBAC.
    Admin,
    ServiceAccount {
        namespace: String,
        name: String,
    },
}

impl Identity {
    /// The user name as the real server reports it in audit logs and 403 messages.
    pub fn user(&self) -> String {
        match self {
            Identity::Admin => "system:admin".into(),
            Identity::ServiceAccount { namespace, name } => {
                format!("system:serviceaccount:{namespace}:{name}")
            }
        }
    }

    pub fn groups(&self) -> Vec<String> {
        match self {
            Identity::Admin => vec!["system:masters".into(), "system:authenticated".into()],
            Identity::ServiceAccount { namespace, .. } => vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// The `Authorization` header → who asks. `None`: the credentials are not valid (401).
pub fn authenticate(db: &Db, authorization: Option<&str>) -> Option<Identity> {
    let Some(header) = authorization else {
        return Some(Identity::Admin);
    };
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))?
        .trim();
    let owner = db.token_owner(token)?;
    // A bound token dies with its ServiceAccount (and does not pass to one created again).
    let sa = db.get(service_accounts(), &owner.namespace, &owner.name)?;
    (sa.pointer("/metadata/uid").and_then(Value::as_str) == Some(owner.uid.as_str())).then(|| {
        Identity::ServiceAccount {
            namespace: owner.namespace.clone(),
            name: owner.name.clone(),
        }
    })
}

fn service_accounts() -> &'static ResourceDef {
    resources::find("", "v1", "serviceaccounts")
        .unwrap_or_else(|| unreachable!("serviceaccounts is in the resource table"))
}

/// What RBAC is asked about one resource request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    /// "", "status" or "token".
    pub subresource: &'static str,
    /// `None`: cluster-scoped, or a list/watch across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Attributes {
    /// The attributes of `method` on `path` (`watch`: the query asks for a watch).
    pub fn of(method: &str, path: &ResourcePath, watch: bool) -> Attributes {
        let verb = match (method, path.name.is_some()) {
            ("GET", _) if watch || path.watch_prefix => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            // Anything else is refused by the REST layer after authorization; name it as the
            // real server's RequestInfo does (the lower-cased method).
            _ => "unknown",
        };
        let subresource = if path.status {
            "status"
        } else if path.token {
            "token"
        } else {
            ""
        };
        Attributes {
            verb,
            group: path.def.group,
            resource: path.def.plural,
            subresource,
            namespace: path.namespace.clone(),
            name: path.name.clone(),
        }
    }

    /// The 403 as kube-apiserver words it, e.g. `services "web" is forbidden: User
    /// "system:serviceaccount:kube-system:kube-vip" cannot patch resource "services/status" in
    /// API group "" in the namespace "default"`.
    pub fn forbidden(&self, who: &Identity) -> ApiError {
        let resource = if self.subresource.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let scope = match &self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".into(),
        };
        let qualified = if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let subject = match &self.name {
            Some(name) => format!("{qualified} \"{name}\""),
            None => qualified,
        };
        ApiError::Forbidden {
            message: format!(
                "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
                who.user(),
                self.verb,
                self.group
            ),
            group: self.group.to_string(),
            kind: self.resource.to_string(),
            name: self.name.clone().unwrap_or_default(),
        }
    }
}

/// Whether `who` may do `a`; the 403 if not.
pub fn authorize(db: &Db, who: &Identity, a: &Attributes) -> Result<(), ApiError> {
    if who.groups().iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let rbac = |plural| {
        resources::find("rbac.authorization.k8s.io", "v1", plural)
            .unwrap_or_else(|| unreachable!("{plural} is in the resource table"))
    };
    let cluster_wide = db
        .list(rbac("clusterrolebindings"), None)
        .filter(|b| binds(b, who))
        .filter_map(|b| role_of(db, b, None));
    let in_namespace = a.namespace.iter().flat_map(|ns| {
        db.list(rbac("rolebindings"), Some(ns))
            .filter(|b| binds(b, who))
            .filter_map(move |b| role_of(db, b, Some(ns)))
    });
    let allowed = cluster_wide
        .chain(in_namespace)
        .flat_map(rules)
        .any(|rule| rule_allows(rule, a));
    if allowed {
        Ok(())
    } else {
        Err(a.forbidden(who))
    }
}

/// Whether binding `b`'s subjects include `who`.
fn binds(b: &Value, who: &Identity) -> bool {
    let Identity::ServiceAccount { namespace, name } = who else {
        return false;
    };
    let subjects = b.get("subjects").and_then(Value::as_array);
    subjects.into_iter().flatten().any(|s| {
        let field = |f| s.get(f).and_then(Value::as_str).unwrap_or("");
        match field("kind") {
            "ServiceAccount" => field("name") == name && field("namespace") == namespace,
            "User" => field("name") == who.user(),
            "Group" => who.groups().iter().any(|g| g == field("name")),
            _ => false,
        }
    })
}

/// The role binding `b` refers to: a ClusterRole, or (for a RoleBinding in `ns`) a Role there.
fn role_of<'a>(db: &'a Db, b: &Value, ns: Option<&str>) -> Option<&'a Value> {
    let role_ref = b.get("roleRef")?;
    let name = role_ref.get("name")?.as_str()?;
    let (plural, ns) = match (role_ref.get("kind")?.as_str()?, ns) {
        ("ClusterRole", _) => ("clusterroles", ""),
        ("Role", Some(ns)) => ("roles", ns),
        _ => return None,
    };
    let def = resources::find("rbac.authorization.k8s.io", "v1", plural)?;
    db.get(def, ns, name)
}

fn rules(role: &Value) -> impl Iterator<Item = &Value> {
    role.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn strings(rule: &Value, field: &str) -> Vec<String> {
    rule.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// kube-apiserver's `RuleAllows` for a resource request.
fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strings(rule, "verbs");
    let groups = strings(rule, "apiGroups");
    let resources = strings(rule, "resources");
    let names = strings(rule, "resourceNames");
    let verb_ok = verbs.iter().any(|v| v == "*" || v == a.verb);
    let group_ok = groups.iter().any(|g| g == "*" || g == a.group);
    let combined = if a.subresource.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
    });
    let name_ok = names.is_empty()
        || a.name
            .as_ref()
            .is_some_and(|n| names.iter().any(|r| r == n));
    verb_ok && group_ok && resource_ok && name_ok
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;

//! [pure] The resource kinds the fake API server knows, as one static table. Pure.
//!
//! Discovery, routing, defaulting and the list/watch `kind` names are all derived from this
//! table, so adding a kind is one entry here.

/// One served resource (a REST collection) of one group/version.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group; "" for the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    /// The plural used in URLs (`services`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Has a `/status` subresource: writes to the main resource leave `.status` alone, writes to
    /// `/status` change nothing else.
    pub has_status: bool,
    /// Has a `/token` subresource (TokenRequest: `kubectl create token`); ServiceAccounts only.
    pub has_token: bool,
    pub categories: &'static [&'static str],
}

impl ResourceDef {
    /// `v1` or `discovery.k8s.io/v1`, as in an object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `services` or `endpointslices.discovery.k8s.io`, as the real server names a resource in
    /// error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

const BASE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    plural: "",
    singular: "",
    kind: "",
    namespaced: true,
    short_names: &[],
    has_status: false,
    has_token: false,
    categories: &[],
};

const RBAC: ResourceDef = ResourceDef {
    group: "rbac.authorization.k8s.io",
    ..BASE
};

/// Every served resource. Two `events` exist, as on a real server: core `v1` (what
/// `kubectl get events` shows) and `events.k8s.io/v1` (what kube's `Recorder` writes). A real
/// server keeps one store under both; here each write of an events.k8s.io Event rewrites its
/// core view (`event_view`), so `kubectl get events` shows what vipd records. Only core events have the
/// short name `ev`, so that `kubectl get ev` is not ambiguous.
pub static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        has_status: true,
        ..BASE
    },
    ResourceDef {
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        has_status: true,
        ..BASE
    },
    ResourceDef {
        plural: "services",
        singular: "service",
        kind: "Service",
        short_names: &["svc"],
        has_status: true,
        categories: &["all"],
        ..BASE
    },
    ResourceDef {
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        short_names: &["ep"],
        ..BASE
    },
    ResourceDef {
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        short_names: &["cm"],
        ..BASE
    },
    ResourceDef {
        plural: "events",
        singular: "event",
        kind: "Event",
        short_names: &["ev"],
        ..BASE
    },
    ResourceDef {
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        short_names: &["sa"],
        has_token: true,
        ..BASE
    },
    ResourceDef {
        group: "discovery.k8s.io",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        ..BASE
    },
    ResourceDef {
        group: "coordination.k8s.io",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        ..BASE
    },
    ResourceDef {
        group: "events.k8s.io",
        plural: "events",
        singular: "event",
        kind: "Event",
        ..BASE
    },
    ResourceDef {
        plural: "roles",
        singular: "role",
        kind: "Role",
        ..RBAC
    },
    ResourceDef {
        plural: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        ..RBAC
    },
    ResourceDef {
        plural: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        ..RBAC
    },
    ResourceDef {
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        ..RBAC
    },
];

/// The API groups other than core, in the order `/apis` lists them.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// The resources of one group/version (empty if the pair is not served).
pub fn in_group_version(group: &str, version: &str) -> Vec<&'static ResourceDef> {
    RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

/// Looks up `plural` in `group`/`version`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The namespaces every store starts with, as on a fresh cluster.
pub const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_group_resources_are_found_by_group_version_and_plural() {
        assert_eq!(find("", "v1", "services").map(|r| r.kind), Some("Service"));
        assert_eq!(
            find("discovery.k8s.io", "v1", "endpointslices").map(|r| r.api_version()),
            Some("discovery.k8s.io/v1".to_string())
        );
        assert_eq!(find("", "v1", "endpointslices"), None);
        assert_eq!(find("apps", "v1", "deployments"), None);
    }

    #[test]
    fn groups_are_listed_once_each() {
        assert_eq!(
            groups(),
            [
                "discovery.k8s.io",
                "coordination.k8s.io",
                "events.k8s.io",
                "rbac.authorization.k8s.io"
            ]
        );
    }
}

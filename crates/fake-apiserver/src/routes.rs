//! [pure] URL → what is asked for: discovery documents or one resource collection/object, and the
//! query string. Pure.

use super::resources::{self, ResourceDef};

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/version`
    Version,
    /// `/healthz`, `/livez`, `/readyz`
    Health,
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: every other group.
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resources of one group/version.
    Resources { group: String, version: String },
    /// `/openapi/v2`
    OpenApiV2,
    /// `/openapi/v3`: the index of group/version documents.
    OpenApiV3Index,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`
    OpenApiV3 { group: String, version: String },
    /// A collection, an object or an object's `/status`.
    Resource(ResourcePath),
}

/// A path inside one served resource.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub def: &'static ResourceDef,
    /// The namespace in the URL; `None` for cluster-scoped kinds and all-namespaces lists.
    pub namespace: Option<String>,
    /// The object's name; `None` for the collection.
    pub name: Option<String>,
    /// The `/status` subresource.
    pub status: bool,
    /// The `/token` subresource of a ServiceAccount (a TokenRequest).
    pub token: bool,
    /// The deprecated `/api/v1/watch/...` form: the request is a watch whatever its query says.
    pub watch_prefix: bool,
}

/// Parses a request path (without query). `None`: nothing is served there (404).
pub fn route(path: &str) -> Option<Route> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => Some(Route::Version),
        ["healthz" | "livez" | "readyz"] => Some(Route::Health),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["openapi", "v2"] => Some(Route::OpenApiV2),
        ["openapi", "v3"] => Some(Route::OpenApiV3Index),
        ["openapi", "v3", "api", "v1"] => Some(Route::OpenApiV3 {
            group: String::new(),
            version: "v1".into(),
        }),
        ["openapi", "v3", "apis", group, version] => {
            served(group, version).then(|| Route::OpenApiV3 {
                group: group.to_string(),
                version: version.to_string(),
            })
        }
        ["apis", group] => resources::groups()
            .contains(group)
            .then(|| Route::Group(group.to_string())),
        ["api", "v1", rest @ ..] => in_group_version("", "v1", rest),
        ["apis", group, version, rest @ ..] if served(group, version) => {
            in_group_version(group, version, rest)
        }
        _ => None,
    }
}

fn served(group: &str, version: &str) -> bool {
    !group.is_empty() && !resources::in_group_version(group, version).is_empty()
}

fn in_group_version(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let (watch_prefix, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    if rest.is_empty() {
        return (!watch_prefix).then(|| Route::Resources {
            group: group.to_string(),
            version: version.to_string(),
        });
    }
    // `namespaces/<ns>/<plural>/…` when <plural> is a namespaced kind of this group; otherwise
    // `namespaces/<name>[/status]` is the Namespace object itself (core group only).
    let (namespace, def, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] => match resources::find(group, version, plural) {
            Some(def) if def.namespaced => (Some(ns.to_string()), def, tail),
            Some(_) => return None,
            None => (
                None,
                resources::find(group, version, "namespaces")?,
                &rest[1..],
            ),
        },
        [plural, tail @ ..] => (None, resources::find(group, version, plural)?, tail),
        [] => return None,
    };
    let (name, status, token) = match tail {
        [] => (None, false, false),
        [name] => (Some(name.to_string()), false, false),
        [name, "status"] if def.has_status => (Some(name.to_string()), true, false),
        [name, "token"] if def.has_token => (Some(name.to_string()), false, true),
        _ => return None,
    };
    // A namespaced object always needs its namespace; only its collection may span them all.
    if def.namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    if watch_prefix && (status || token) {
        return None;
    }
    Some(Route::Resource(ResourcePath {
        def,
        namespace,
        name,
        status,
        token,
        watch_prefix,
    }))
}

/// The decoded query string.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k, true), percent_decode(v, true))
                })
                .collect(),
        )
    }

    /// The first value of `key`; `Some("")` when present without a value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter: `true`/`1` (as kubectl and kube send them).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }

    /// A non-empty parameter.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }
}

/// Decodes `%XX` escapes (and `+` as space in query strings); malformed escapes stay as they are.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (plural, namespace, name, status, watch prefix)
    type Parsed = (&'static str, Option<String>, Option<String>, bool, bool);

    fn res(path: &str) -> Option<Parsed> {
        match route(path)? {
            Route::Resource(r) => {
                Some((r.def.plural, r.namespace, r.name, r.status, r.watch_prefix))
            }
            _ => None,
        }
    }

    #[test]
    fn namespaced_collections_objects_and_status() {
        assert_eq!(
            res("/api/v1/namespaces/default/services"),
            Some(("services", Some("default".into()), None, false, false))
        );
        assert_eq!(
            res("/api/v1/namespaces/default/services/web/status"),
            Some((
                "services",
                Some("default".into()),
                Some("web".into()),
                true,
                false
            ))
        );
        assert_eq!(
            res("/apis/discovery.k8s.io/v1/namespaces/x/endpointslices/web-abc"),
            Some((
                "endpointslices",
                Some("x".into()),
                Some("web-abc".into()),
                false,
                false
            ))
        );
        assert_eq!(
            res("/api/v1/services"),
            Some(("services", None, None, false, false))
        );
    }

    #[test]
    fn namespaces_themselves_and_cluster_scoped_kinds() {
        assert_eq!(
            res("/api/v1/namespaces/default"),
            Some(("namespaces", None, Some("default".into()), false, false))
        );
        assert_eq!(
            res("/api/v1/namespaces/default/status"),
            Some(("namespaces", None, Some("default".into()), true, false))
        );
        assert_eq!(
            res("/api/v1/nodes/n1/status"),
            Some(("nodes", None, Some("n1".into()), true, false))
        );
        assert_eq!(res("/api/v1/namespaces/default/nodes"), None);
    }

    #[test]
    fn legacy_watch_paths() {
        assert_eq!(
            res("/api/v1/watch/namespaces/default/services/web"),
            Some((
                "services",
                Some("default".into()),
                Some("web".into()),
                false,
                true
            ))
        );
        assert_eq!(
            res("/api/v1/watch/nodes"),
            Some(("nodes", None, None, false, true))
        );
    }

    #[test]
    fn unknown_paths_are_not_served() {
        for p in [
            "/",
            "/api/v2",
            "/api/v1/pods",
            "/api/v1/services/web",
            "/api/v1/namespaces/default/configmaps/a/status",
            "/api/v1/namespaces/default/services/a/proxy",
            "/apis/apps/v1",
            "/apis/discovery.k8s.io/v1beta1/endpointslices",
            "/apis/discovery.k8s.io/v1/services",
        ] {
            assert_eq!(route(p), None, "{p}");
        }
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(route("/api"), Some(Route::CoreVersions));
        assert_eq!(
            route("/api/v1"),
            Some(Route::Resources {
                group: "".into(),
                version: "v1".into()
            })
        );
        assert_eq!(
            route("/apis/coordination.k8s.io"),
            Some(Route::Group("coordination.k8s.io".into()))
        );
        assert_eq!(
            route("/openapi/v3/apis/events.k8s.io/v1"),
            Some(Route::OpenApiV3 {
                group: "events.k8s.io".into(),
                version: "v1".into()
            })
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&watch=1&x&bad=%zz%4",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a,b)"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.non_empty("x"), None);
        assert_eq!(q.get("bad"), Some("%zz%4"));
    }
}

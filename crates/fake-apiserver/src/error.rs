//! [pure] Request failures and their `metav1.Status` bodies, with the codes and reasons a real API
//! server uses (clients such as kube's watcher act on `code` and `reason`). Pure.

use super::resources::ResourceDef;
use serde_json::{json, Value};

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Everything a request can fail with. The message texts follow the real server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {why}")]
    Conflict {
        resource: String,
        name: String,
        why: String,
    },
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: u64, oldest: u64 },
    #[error("{0}")]
    BadRequest(String),
    /// 422: the object is well-formed JSON but not a valid object of its kind.
    #[error("{kind} \"{name}\" is invalid: {field}: {why}")]
    Invalid {
        kind: String,
        name: String,
        field: String,
        why: String,
    },
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {0}"
    )]
    UnsupportedMediaType(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// 401: a bearer token the server did not issue (or whose ServiceAccount is gone).
    #[error("Unauthorized")]
    Unauthorized,
    /// 500, injected by a fault mode ([`crate::Faults`]): what an overloaded or failing
    /// kube-apiserver (etcd timeouts) answers.
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 403: RBAC does not allow it; `message` is worded as kube-apiserver's
    /// ([`crate::auth::Attributes::forbidden`]).
    #[error("{message}")]
    Forbidden {
        message: String,
        group: String,
        /// The resource (plural), as the real server puts it in `details.kind`.
        kind: String,
        name: String,
    },
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Expired { .. } => 410,
            ApiError::BadRequest(_) => 400,
            ApiError::Invalid { .. } => 422,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::MethodNotAllowed => 405,
            ApiError::TooLarge(_) => 413,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::Internal(_) => 500,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Expired { .. } => "Expired",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => {
                // "services" or "endpointslices.discovery.k8s.io" → kind "services", group.
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                let mut d = json!({"name": name, "kind": kind});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::Forbidden {
                group, kind, name, ..
            } => {
                let mut d = json!({"kind": kind});
                if !name.is_empty() {
                    d["name"] = json!(name);
                }
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::Invalid {
                kind, name, field, ..
            } => Some(json!({
                "name": name,
                "kind": kind,
                "causes": [{"reason": "FieldValueInvalid", "message": self.to_string(), "field": field}],
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

/// A `metav1.Status` reporting success (what a collection delete returns).
pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

pub fn invalid(def: &ResourceDef, name: &str, field: &str, why: impl Into<String>) -> ApiError {
    ApiError::Invalid {
        kind: def.kind.to_string(),
        name: name.to_string(),
        field: field.to_string(),
        why: why.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_status_names_the_resource_and_group() {
        let e = ApiError::NotFound {
            resource: "endpointslices.discovery.k8s.io".into(),
            name: "a".into(),
        };
        assert_eq!(
            e.status(),
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "endpointslices.discovery.k8s.io \"a\" not found",
                "reason": "NotFound", "code": 404,
                "details": {"name": "a", "kind": "endpointslices", "group": "discovery.k8s.io"},
            })
        );
    }

    #[test]
    fn expired_reads_like_the_real_server() {
        let e = ApiError::Expired {
            requested: 5,
            oldest: 17,
        };
        assert_eq!(
            (e.code(), e.reason(), e.to_string().as_str()),
            (410, "Expired", "too old resource version: 5 (17)")
        );
    }
}

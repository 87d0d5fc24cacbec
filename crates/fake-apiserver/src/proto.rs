//! [pure] Just enough of Kubernetes' protobuf encoding to read what kubectl's typed clients send.
//! Pure.
//!
//! `kubectl create service|configmap|namespace|serviceaccount|token|clusterrole|…` build the
//! object in kubectl and POST it as `application/vnd.kubernetes.protobuf`, with no fallback to
//! JSON. The body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `raw`
//! field holds the object. Only the fields below are decoded (the field numbers are those of
//! `k8s.io/api/{core,authentication,rbac}/v1/generated.proto` and
//! `k8s.io/apimachinery/.../meta/v1/generated.proto`); others are skipped, and zero values are
//! left out, as Go's JSON `omitempty` would. Timestamps are not decoded: the server sets them.

use super::error::ApiError;
use serde_json::{json, Map, Value};

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    /// `map<string, string>`
    StrMap,
    /// `intstr.IntOrString { type = 1; intVal = 2; strVal = 3 }`
    IntOrString,
    Msg(&'static [Field]),
}

struct Field {
    num: u64,
    name: &'static str,
    ty: Ty,
    repeated: bool,
}

const fn f(num: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        repeated: false,
    }
}

const fn rep(num: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        repeated: true,
    }
}

const TYPE_META: &[Field] = &[f(1, "apiVersion", Ty::Str), f(2, "kind", Ty::Str)];
const UNKNOWN: &[Field] = &[f(1, "typeMeta", Ty::Msg(TYPE_META))];

const OBJECT_META: &[Field] = &[
    f(1, "name", Ty::Str),
    f(2, "generateName", Ty::Str),
    f(3, "namespace", Ty::Str),
    f(6, "resourceVersion", Ty::Str),
    f(11, "labels", Ty::StrMap),
    f(12, "annotations", Ty::StrMap),
    rep(14, "finalizers", Ty::Str),
];

const SERVICE_PORT: &[Field] = &[
    f(1, "name", Ty::Str),
    f(2, "protocol", Ty::Str),
    f(3, "port", Ty::Int),
    f(4, "targetPort", Ty::IntOrString),
    f(5, "nodePort", Ty::Int),
    f(6, "appProtocol", Ty::Str),
];

const SERVICE_SPEC: &[Field] = &[
    rep(1, "ports", Ty::Msg(SERVICE_PORT)),
    f(2, "selector", Ty::StrMap),
    f(3, "clusterIP", Ty::Str),
    f(4, "type", Ty::Str),
    rep(5, "externalIPs", Ty::Str),
    f(7, "sessionAffinity", Ty::Str),
    f(8, "loadBalancerIP", Ty::Str),
    rep(9, "loadBalancerSourceRanges", Ty::Str),
    f(10, "externalName", Ty::Str),
    f(11, "externalTrafficPolicy", Ty::Str),
    f(12, "healthCheckNodePort", Ty::Int),
    f(13, "publishNotReadyAddresses", Ty::Bool),
    f(17, "ipFamilyPolicy", Ty::Str),
    rep(18, "clusterIPs", Ty::Str),
    rep(19, "ipFamilies", Ty::Str),
    f(20, "allocateLoadBalancerNodePorts", Ty::Bool),
    f(21, "loadBalancerClass", Ty::Str),
    f(22, "internalTrafficPolicy", Ty::Str),
];

const SERVICE: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(SERVICE_SPEC)),
];

const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "data", Ty::StrMap),
    f(4, "immutable", Ty::Bool),
];

const NAMESPACE_SPEC: &[Field] = &[rep(1, "finalizers", Ty::Str)];
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(NAMESPACE_SPEC)),
];

const TOKEN_REQUEST_SPEC: &[Field] = &[
    rep(1, "audiences", Ty::Str),
    f(4, "expirationSeconds", Ty::Int),
];
const TOKEN_REQUEST: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(TOKEN_REQUEST_SPEC)),
];

const SERVICE_ACCOUNT: &[Field] = &[f(1, "metadata", Ty::Msg(OBJECT_META))];

const POLICY_RULE: &[Field] = &[
    rep(1, "verbs", Ty::Str),
    rep(2, "apiGroups", Ty::Str),
    rep(3, "resources", Ty::Str),
    rep(4, "resourceNames", Ty::Str),
    rep(5, "nonResourceURLs", Ty::Str),
];
/// Role and ClusterRole (aggregation rules are not decoded).
const ROLE: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    rep(2, "rules", Ty::Msg(POLICY_RULE)),
];
const SUBJECT: &[Field] = &[
    f(1, "kind", Ty::Str),
    f(2, "apiGroup", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "namespace", Ty::Str),
];
const ROLE_REF: &[Field] = &[
    f(1, "apiGroup", Ty::Str),
    f(2, "kind", Ty::Str),
    f(3, "name", Ty::Str),
];
/// RoleBinding and ClusterRoleBinding.
const BINDING: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    rep(2, "subjects", Ty::Msg(SUBJECT)),
    f(3, "roleRef", Ty::Msg(ROLE_REF)),
];

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("the protobuf body could not be decoded: {why}"))
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` holding a Service, ConfigMap, Namespace,
/// ServiceAccount, TokenRequest, Role, ClusterRole, RoleBinding or ClusterRoleBinding.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(b"k8s\x00")
        .ok_or_else(|| bad("missing the k8s\\0 prefix"))?;
    let unknown = message(envelope, UNKNOWN)?;
    let raw = raw_field(envelope, 2)?.unwrap_or_default();
    let api_version = unknown
        .pointer("/typeMeta/apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = unknown
        .pointer("/typeMeta/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let schema = match (api_version, kind) {
        ("v1", "Service") => SERVICE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => BINDING,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "application/json (protobuf is understood only for v1 Service, ConfigMap, Namespace and ServiceAccount, TokenRequest and RBAC objects, not {api_version} {kind})"
            )))
        }
    };
    let mut obj = message(&raw, schema)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(bad("varint longer than 10 bytes"))
}

/// One field of a message: (field number, wire value).
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if key & 7 == 1 { 8 } else { 4 };
                if pos > buf.len() {
                    return Err(bad("truncated fixed-width field"));
                }
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?)
                    .map_err(|_| bad("length does not fit"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| bad("length past the end of the message"))?;
                let b = &buf[pos..end];
                pos = end;
                Wire::Bytes(b)
            }
            t => return Err(bad(format!("unsupported wire type {t}"))),
        };
        out.push((key >> 3, wire));
    }
    Ok(out)
}

fn raw_field(buf: &[u8], num: u64) -> Result<Option<Vec<u8>>, ApiError> {
    Ok(fields(buf)?.into_iter().find_map(|(n, w)| match w {
        Wire::Bytes(b) if n == num => Some(b.to_vec()),
        _ => None,
    }))
}

fn text(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("a string field is not UTF-8"))
}

fn message(buf: &[u8], schema: &[Field]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for (num, wire) in fields(buf)? {
        let Some(field) = schema.iter().find(|f| f.num == num) else {
            continue;
        };
        let value = match (field.ty, wire) {
            (Ty::Str, Wire::Bytes(b)) => json!(text(b)?),
            // int32/int64 as two's complement varints.
            (Ty::Int, Wire::Varint(v)) => json!(v as i64),
            (Ty::Bool, Wire::Varint(v)) => json!(v != 0),
            (Ty::Msg(s), Wire::Bytes(b)) => message(b, s)?,
            (Ty::IntOrString, Wire::Bytes(b)) => {
                let v = message(
                    b,
                    &[
                        f(1, "type", Ty::Int),
                        f(2, "intVal", Ty::Int),
                        f(3, "strVal", Ty::Str),
                    ],
                )?;
                if v.get("type").and_then(Value::as_i64) == Some(1) {
                    v.get("strVal").cloned().unwrap_or(json!(""))
                } else {
                    v.get("intVal").cloned().unwrap_or(json!(0))
                }
            }
            (Ty::StrMap, Wire::Bytes(b)) => {
                let entry = message(b, &[f(1, "key", Ty::Str), f(2, "value", Ty::Str)])?;
                let key = entry.get("key").and_then(Value::as_str).unwrap_or("");
                let value = entry.get("value").cloned().unwrap_or(json!(""));
                let map = out.entry(field.name).or_insert_with(|| json!({}));
                if let Some(m) = map.as_object_mut() {
                    m.insert(key.to_string(), value);
                }
                continue;
            }
            _ => return Err(bad(format!("field {} has the wrong wire type", field.name))),
        };
        if field.repeated {
            let list = out.entry(field.name).or_insert_with(|| json!([]));
            if let Some(l) = list.as_array_mut() {
                l.push(value);
            }
        } else if !matches!(&value, Value::String(s) if s.is_empty())
            && value != json!(0)
            && value != json!(false)
        {
            out.insert(field.name.to_string(), value);
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(num: u64, wire: u8) -> u8 {
        (num << 3) as u8 | wire
    }

    fn bytes_field(num: u64, b: &[u8]) -> Vec<u8> {
        let mut v = vec![key(num, 2), b.len() as u8];
        v.extend_from_slice(b);
        v
    }

    /// What `kubectl create service loadbalancer web --tcp=80:8080` sends (hand-encoded).
    fn service_body() -> Vec<u8> {
        let label = [bytes_field(1, b"app"), bytes_field(2, b"web")].concat();
        let meta = [
            bytes_field(1, b"web"),
            bytes_field(3, b""),
            bytes_field(11, &label),
        ]
        .concat();
        let target = [vec![key(1, 0), 0, key(2, 0), 0x90, 0x3f]].concat();
        let port = [
            bytes_field(1, b"80-8080"),
            bytes_field(2, b"TCP"),
            vec![key(3, 0), 80],
            bytes_field(4, &target),
            vec![key(5, 0), 0],
        ]
        .concat();
        let spec = [
            bytes_field(1, &port),
            bytes_field(2, &label),
            bytes_field(3, b""),
            bytes_field(4, b"LoadBalancer"),
        ]
        .concat();
        let svc = [bytes_field(1, &meta), bytes_field(2, &spec)].concat();
        let tm = [bytes_field(1, b"v1"), bytes_field(2, b"Service")].concat();
        let mut raw_field = vec![key(2, 2)];
        // Two-byte length varint for the object.
        raw_field.extend_from_slice(&[(svc.len() as u8) | 0x80, (svc.len() >> 7) as u8]);
        raw_field.extend_from_slice(&svc);
        [b"k8s\x00".to_vec(), bytes_field(1, &tm), raw_field].concat()
    }

    #[test]
    fn a_kubectl_service_decodes_to_its_json_form() {
        let v = decode(&service_body()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "web"},
                    "type": "LoadBalancer",
                },
            })
        );
    }

    #[test]
    fn truncated_or_foreign_bodies_are_rejected_not_panicked_on() {
        let body = service_body();
        for cut in 0..body.len() {
            let _ = decode(&body[..cut]);
        }
        assert!(matches!(decode(b"{}"), Err(ApiError::BadRequest(_))));
        let node = [
            b"k8s\x00".to_vec(),
            bytes_field(
                1,
                &[bytes_field(1, b"v1"), bytes_field(2, b"Node")].concat(),
            ),
        ]
        .concat();
        assert!(matches!(
            decode(&node),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}

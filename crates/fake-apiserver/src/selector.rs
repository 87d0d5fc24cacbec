//! [pure] Label and field selectors (`?labelSelector=`, `?fieldSelector=`). Pure.
//!
//! Label selectors take the full set-based grammar (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
//! `k in (a,b)`, `k notin (a,b)`). Field selectors take `path=v`, `path==v` and `path!=v` for
//! any dotted path into the object; a real server accepts only a few paths per kind
//! (`metadata.name`, `metadata.namespace`, …) and rejects the others, which this one does not.

use super::error::ApiError;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LabelReq {
    key: String,
    op: LabelOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldReq {
    path: Vec<String>,
    value: String,
    equal: bool,
}

impl Selector {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, ApiError> {
        let labels = match labels {
            Some(s) => split_top_level(s)
                .into_iter()
                .map(parse_label_req)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(s) => s
                .split(',')
                .filter(|r| !r.trim().is_empty())
                .map(parse_field_req)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Selector { labels, fields })
    }

    /// Adds `metadata.name=<name>` (a watch on one object).
    pub fn with_name(mut self, name: &str) -> Selector {
        self.fields.push(FieldReq {
            path: vec!["metadata".into(), "name".into()],
            value: name.into(),
            equal: true,
        });
        self
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.labels.iter().all(|r| {
            let v = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match (&r.op, v) {
                (LabelOp::Exists, v) => v.is_some(),
                (LabelOp::NotExists, v) => v.is_none(),
                (LabelOp::Eq(want), Some(v)) => v == want,
                (LabelOp::In(set), Some(v)) => set.iter().any(|s| s == v),
                (LabelOp::Eq(_) | LabelOp::In(_), None) => false,
                (LabelOp::NotEq(no), v) => v != Some(no.as_str()),
                (LabelOp::NotIn(set), v) => !v.is_some_and(|v| set.iter().any(|s| s == v)),
            }
        }) && self.fields.iter().all(|r| {
            let mut at = Some(obj);
            for p in &r.path {
                at = at.and_then(|v| v.get(p));
            }
            let actual = match at {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (actual == r.value) == r.equal
        })
    }
}

/// Splits on commas outside parentheses: `a in (x,y),b` → [`a in (x,y)`, `b`].
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|r| !r.trim().is_empty()).collect()
}

fn bad(req: &str, why: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "unable to parse requirement: {why} in label selector requirement {req:?}"
    ))
}

fn parse_label_req(raw: &str) -> Result<LabelReq, ApiError> {
    let req = raw.trim();
    let (key, op) = if let Some(key) = req.strip_prefix('!') {
        (key.trim(), LabelOp::NotExists)
    } else if let Some(open) = req.find('(') {
        let inner = req[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| bad(req, "missing closing ')'"))?;
        let values: Vec<String> = inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        for v in &values {
            check_value(req, v)?;
        }
        let head = req[..open].trim_end();
        let (key, op) = if let Some(k) = head.strip_suffix("notin") {
            (k, LabelOp::NotIn(values))
        } else if let Some(k) = head.strip_suffix("in") {
            (k, LabelOp::In(values))
        } else {
            return Err(bad(req, "expected 'in' or 'notin' before '('"));
        };
        if !key.ends_with(char::is_whitespace) {
            return Err(bad(req, "expected a space before the set operator"));
        }
        (key.trim(), op)
    } else if let Some((k, v)) = req.split_once("!=") {
        (k.trim(), LabelOp::NotEq(v.trim().to_string()))
    } else if let Some((k, v)) = req.split_once("==") {
        (k.trim(), LabelOp::Eq(v.trim().to_string()))
    } else if let Some((k, v)) = req.split_once('=') {
        (k.trim(), LabelOp::Eq(v.trim().to_string()))
    } else {
        (req, LabelOp::Exists)
    };
    check_key(req, key)?;
    if let LabelOp::Eq(v) | LabelOp::NotEq(v) = &op {
        check_value(req, v)?;
    }
    Ok(LabelReq {
        key: key.to_string(),
        op,
    })
}

fn check_key(req: &str, key: &str) -> Result<(), ApiError> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(bad(req, &format!("invalid label key {key:?}")))
    }
}

fn check_value(req: &str, v: &str) -> Result<(), ApiError> {
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(bad(req, &format!("invalid label value {v:?}")))
    }
}

fn parse_field_req(raw: &str) -> Result<FieldReq, ApiError> {
    let req = raw.trim();
    let (path, value, equal) = if let Some((k, v)) = req.split_once("!=") {
        (k, v, false)
    } else if let Some((k, v)) = req.split_once("==") {
        (k, v, true)
    } else if let Some((k, v)) = req.split_once('=') {
        (k, v, true)
    } else {
        return Err(ApiError::BadRequest(format!(
            "invalid field selector {req:?}: expected path=value or path!=value"
        )));
    };
    let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(ApiError::BadRequest(format!(
            "invalid field selector {req:?}: empty path element"
        )));
    }
    Ok(FieldReq {
        path,
        value: value.trim().to_string(),
        equal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "labels": labels}})
    }

    fn matches(sel: &str, labels: Value) -> bool {
        Selector::parse(Some(sel), None)
            .map(|s| s.matches(&obj(labels)))
            .unwrap_or_else(|e| panic!("{sel}: {e}"))
    }

    #[test]
    fn equality_inequality_and_existence() {
        let l = json!({"app": "web", "tier": "front"});
        assert!(matches("app=web", l.clone()));
        assert!(matches("app==web,tier=front", l.clone()));
        assert!(!matches("app=db", l.clone()));
        assert!(matches("app!=db", l.clone()));
        assert!(matches("missing!=x", l.clone()));
        assert!(matches("app", l.clone()));
        assert!(!matches("!app", l.clone()));
        assert!(matches("!missing", l.clone()));
        assert!(matches("", l));
    }

    #[test]
    fn set_based_requirements() {
        let l = json!({"env": "prod"});
        assert!(matches("env in (dev, prod)", l.clone()));
        assert!(!matches("env notin (dev,prod)", l.clone()));
        assert!(matches("tier notin (a)", l.clone()));
        assert!(!matches("tier in (a)", l.clone()));
        assert!(matches("env in (prod),env", l));
    }

    #[test]
    fn malformed_selectors_are_bad_requests() {
        for s in ["a in (x", "a foo (x)", "a=b c", "=x", "ain (x)", "k=v!"] {
            let e = Selector::parse(Some(s), None).err();
            assert!(matches!(e, Some(ApiError::BadRequest(_))), "{s}: {e:?}");
        }
        assert!(Selector::parse(None, Some("metadata.name")).is_err());
    }

    #[test]
    fn field_selectors_compare_dotted_paths() {
        let o = obj(json!({}));
        let f = |s: &str| Selector::parse(None, Some(s)).map(|s| s.matches(&o));
        assert_eq!(f("metadata.name=web"), Ok(true));
        assert_eq!(f("metadata.name==db"), Ok(false));
        assert_eq!(f("metadata.namespace!=kube-system"), Ok(true));
        assert_eq!(f("metadata.name=web,metadata.namespace=default"), Ok(true));
        assert_eq!(f("spec.type="), Ok(true));
    }
}

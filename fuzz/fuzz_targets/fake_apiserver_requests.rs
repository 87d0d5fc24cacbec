//! Fuzz target: what the in-repo API server parses of a client's request, through its request
//! parsers (`fake_apiserver::fuzzing`): the path (`route`), the query string (`Query::parse`),
//! label and field selectors (`Selector::parse`, then `matches` against an object), a patch
//! body of each kind (`PatchKind::from_content_type`, `parse_body`, `apply` to an object) and a
//! protobuf body (`decode`). These are pure; the HTTP edge around them is hyper's.
//!
//! Input: parts separated by 0xFF — path, query, label selector, field selector, content type,
//! patch body, the object patched and matched (JSON), protobuf body. Missing parts are empty.
//!
//! Asserted (besides "no panic"):
//! - a selector that parses matches deterministically (twice the same answer);
//! - a patch that applies yields an object that serialises (JSON in, JSON out), and applying a
//!   merge patch that is the object itself gives the object back (RFC 7386 idempotence);
//! - every error is a status a client can read: a code from 400 to 599 and a message.

#![no_main]

use fake_apiserver::fuzzing::{apply, decode, parse_body, route, ApiError, PatchKind, Query, Selector};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn readable(e: &ApiError) {
    assert!((400..600).contains(&e.code()), "{e:?}");
    assert!(!e.to_string().is_empty(), "{e:?}");
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let mut next = || parts.next().unwrap_or_default();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (path, query, labels, fields) = (text(next()), text(next()), text(next()), text(next()));
    let (content_type, patch, object, proto) = (text(next()), next(), next(), next());

    let _ = route(&path);
    let _ = Query::parse(Some(&query));
    let object: Value = serde_json::from_slice(object).unwrap_or_else(|_| {
        serde_json::json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"type": "LoadBalancer"}})
    });
    let some = |s: &str| (!s.is_empty()).then_some(s.to_owned());
    match Selector::parse(some(&labels).as_deref(), some(&fields).as_deref()) {
        Ok(sel) => assert_eq!(sel.matches(&object), sel.matches(&object)),
        Err(e) => readable(&e),
    }
    match PatchKind::from_content_type(some(&content_type).as_deref()) {
        Ok(kind) => match parse_body(kind, patch).and_then(|p| apply(kind, &object, &p)) {
            Ok(patched) => {
                assert!(serde_json::to_vec(&patched).is_ok());
            }
            Err(e) => readable(&e),
        },
        Err(e) => readable(&e),
    }
    if object.is_object() {
        if let Ok(same) = apply(PatchKind::Merge, &object, &object) {
            // RFC 7386: merging an object into itself changes nothing — except that nulls in
            // the patch delete, so only objects without null values are compared.
            if !object.to_string().contains("null") {
                assert_eq!(same, object);
            }
        }
    }
    if let Err(e) = decode(proto) {
        readable(&e);
    }
});

//! `events.k8s.io/v1` Events seen through core `v1`, as kube-apiserver serves one store under
//! both APIs: what kube's `Recorder` writes (vipd's Events) is what `kubectl get events` and
//! `kubectl describe service` show. Here the core object is kept beside the events.k8s.io one,
//! rewritten on every write of it and removed with it.

use serde_json::{json, Value};

/// The core `v1` Event of an `events.k8s.io/v1` one (the field mapping of kube-apiserver's
/// conversion: `regarding` → `involvedObject`, `note` → `message`, `reportingController` →
/// `reportingComponent` and `source.component`, `series` → `count` and `lastTimestamp`).
pub fn core_event(ev: &Value) -> Value {
    let mut meta = ev["metadata"].clone();
    if let Some(m) = meta.as_object_mut() {
        // The store writes its own resourceVersion; the rest of the identity is shared.
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    let event_time = ev["eventTime"].clone();
    let first = ev
        .get("deprecatedFirstTimestamp")
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or_else(|| event_time.clone());
    let last = ev["series"]
        .get("lastObservedTime")
        .cloned()
        .or_else(|| {
            ev.get("deprecatedLastTimestamp")
                .filter(|v| !v.is_null())
                .cloned()
        })
        .unwrap_or_else(|| event_time.clone());
    let count = ev["series"]
        .get("count")
        .and_then(Value::as_i64)
        .or_else(|| ev.get("deprecatedCount").and_then(Value::as_i64))
        .unwrap_or(1);
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": meta,
        "involvedObject": ev["regarding"],
        "related": ev["related"],
        "reason": ev["reason"],
        "message": ev["note"],
        "type": ev["type"],
        "action": ev["action"],
        "source": {"component": ev["reportingController"], "host": ev["reportingInstance"]},
        "reportingComponent": ev["reportingController"],
        "reportingInstance": ev["reportingInstance"],
        "eventTime": event_time,
        "firstTimestamp": first,
        "lastTimestamp": last,
        "count": count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_map_as_kube_apiserver_maps_them() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "shop", "resourceVersion": "7", "uid": "u1"},
            "eventTime": "2026-12-07T10:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-12-07T10:05:00.000000Z"},
            "reportingController": "vipd", "reportingInstance": "node0",
            "action": "Announce", "reason": "Announced", "type": "Normal",
            "note": "192.0.2.10 announced by BGP from node node0",
            "regarding": {"apiVersion": "v1", "kind": "Service", "namespace": "shop", "name": "web"},
        });
        assert_eq!(
            core_event(&ev),
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "web.1", "namespace": "shop", "uid": "u1"},
                "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": "shop", "name": "web"},
                "related": null,
                "reason": "Announced",
                "message": "192.0.2.10 announced by BGP from node node0",
                "type": "Normal",
                "action": "Announce",
                "source": {"component": "vipd", "host": "node0"},
                "reportingComponent": "vipd",
                "reportingInstance": "node0",
                "eventTime": "2026-12-07T10:00:00.000000Z",
                "firstTimestamp": "2026-12-07T10:00:00.000000Z",
                "lastTimestamp": "2026-12-07T10:05:00.000000Z",
                "count": 3,
            })
        );
    }
}

//! [I/O] Every write vipd makes to a Service or its status, as a merge patch (only the keys we
//! own change, never another controller's write), that also works under an RBAC which grants
//! `update` but not `patch` — kube-vip's own ClusterRole, so that swapping the image of an
//! existing kube-vip DaemonSet works.
//!
//! On a 403 to the PATCH, the same merge patch is applied to a fresh GET and PUT back with that
//! object's resourceVersion; a 409 (somebody wrote in between) reads again, a few times. Once a
//! PATCH was refused, later writes of that kind go straight to get + update: the permission
//! belongs to this process's credentials, which every writer here shares, so it is kept once
//! per process, not per writer. A merge patch that pins `metadata.resourceVersion` (IPAM) or
//! `metadata.uid` (written for one Service, not one created again under its name) keeps that
//! precondition on the PUT: the merged object carries it, and a conflict on it is not retried.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{debug, warn};

/// What a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The Service object (annotations, labels, `spec.loadBalancerIP`): `services`.
    Service,
    /// Its status subresource: `services/status`.
    Status,
}

impl Target {
    fn resource(self) -> &'static str {
        match self {
            Target::Service => "services",
            Target::Status => "services/status",
        }
    }

    fn refused(self) -> &'static AtomicBool {
        static SERVICE: AtomicBool = AtomicBool::new(false);
        static STATUS: AtomicBool = AtomicBool::new(false);
        match self {
            Target::Service => &SERVICE,
            Target::Status => &STATUS,
        }
    }
}

/// How often a get + update that met a conflict reads again before giving up (the caller's
/// own retry takes over after that).
const CONFLICT_RETRIES: usize = 4;

/// Applies the merge patch `patch` to Service `name` (or its status).
pub async fn merge(
    api: &Api<Service>,
    name: &str,
    target: Target,
    patch: &Value,
) -> kube::Result<()> {
    let refused = target.refused();
    if !refused.load(Ordering::Relaxed) {
        let pp = PatchParams::default();
        let result = match target {
            Target::Service => api.patch(name, &pp, &Patch::Merge(patch)).await,
            Target::Status => api.patch_status(name, &pp, &Patch::Merge(patch)).await,
        };
        match result {
            Err(kube::Error::Api(e)) if e.code == 403 => {
                if !refused.swap(true, Ordering::Relaxed) {
                    warn!(
                        resource = target.resource(),
                        error = %e.message,
                        "RBAC does not allow patch on {}; writing by get + update instead (as under kube-vip's ClusterRole). `vipd manifest rbac` grants patch",
                        target.resource()
                    );
                }
            }
            other => return other.map(|_| ()),
        }
    }
    update(api, name, target, patch).await
}

/// Get, merge, update; a conflict reads again unless the patch pinned what conflicted.
async fn update(api: &Api<Service>, name: &str, target: Target, patch: &Value) -> kube::Result<()> {
    let pinned_rv = patch.pointer("/metadata/resourceVersion").is_some();
    let mut attempt = 0;
    loop {
        let current = api.get(name).await?;
        let current_uid = current.metadata.uid.clone();
        let Some(next) = merged(&current, patch) else {
            return Ok(());
        };
        let pp = PostParams::default();
        let result = match target {
            Target::Service => api.replace(name, &pp, &next).await,
            Target::Status => api.replace_status(name, &pp, &next).await,
        };
        let pinned_uid = patch
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .is_some_and(|uid| current_uid.as_deref() != Some(uid));
        match result {
            Err(kube::Error::Api(e))
                if e.code == 409 && !pinned_rv && !pinned_uid && attempt < CONFLICT_RETRIES =>
            {
                attempt += 1;
                debug!(
                    service = name,
                    resource = target.resource(),
                    attempt,
                    "update conflicted; reading again"
                );
            }
            other => return other.map(|_| ()),
        }
    }
}

/// `current` with `patch` merged in (RFC 7386); `None` when that changes nothing (no write).
pub fn merged(current: &Service, patch: &Value) -> Option<Service> {
    let before = serde_json::to_value(current).ok()?;
    let mut after = before.clone();
    json_patch::merge(&mut after, patch);
    if after == before {
        return None;
    }
    serde_json::from_value(after).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "7",
                         "annotations": {"other": "x", "kube-vip.io/vipHost": "node0"}},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
        }))
        .unwrap()
    }

    #[test]
    fn a_merge_changes_only_the_patched_keys_and_keeps_the_version_read() {
        let next = merged(
            &service(),
            &json!({"metadata": {"annotations": {"kube-vip.io/vipHost": "node1"}}}),
        )
        .unwrap();
        let annotations = next.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations["kube-vip.io/vipHost"], "node1");
        assert_eq!(annotations["other"], "x");
        assert_eq!(next.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(next.status, service().status);
    }

    #[test]
    fn status_ingress_is_replaced_or_removed_as_a_whole() {
        let two = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}, {"ip": "2001:db8::2"}]}}});
        let next = merged(&service(), &two).unwrap();
        let ips: Vec<_> = next
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect();
        assert_eq!(ips, ["192.0.2.2", "2001:db8::2"]);
        let cleared = merged(
            &service(),
            &json!({"status": {"loadBalancer": {"ingress": null}}}),
        )
        .unwrap();
        assert_eq!(
            cleared
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|lb| lb.ingress),
            None
        );
    }

    #[test]
    fn pinned_preconditions_ride_along_and_no_change_is_no_write() {
        let next = merged(
            &service(),
            &json!({"metadata": {"resourceVersion": "5", "uid": "u0", "annotations": {"a": "b"}}}),
        )
        .unwrap();
        assert_eq!(next.metadata.resource_version.as_deref(), Some("5"));
        assert_eq!(next.metadata.uid.as_deref(), Some("u0"));
        assert!(merged(
            &service(),
            &json!({"metadata": {"annotations": {"kube-vip.io/vipHost": "node0"}}})
        )
        .is_none());
    }
}

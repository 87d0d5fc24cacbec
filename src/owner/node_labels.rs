//! [I/O] `enable_node_labeling`: the label `service-provided.kube-vip.io/<service>.<namespace>`
//! on this node's Node for each Service it serves, valued with the Service's addresses (IPv6
//! as 32 hex digits, as kube-vip writes them), and gone when it no longer serves it. Cilium's
//! egress-gateway setups select nodes by it. Only labels under that prefix are vipd's: they are
//! this node's own, so any left from an earlier run are removed too.

use crate::decide::ServiceKey;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;
use std::collections::BTreeMap;
use std::net::IpAddr;
use tracing::{info, warn};

/// kube-vip's label prefix.
pub const PREFIX: &str = "service-provided.kube-vip.io/";

/// [pure] The labels this node should carry for the Services it serves.
pub fn wanted(served: &BTreeMap<ServiceKey, Vec<IpAddr>>) -> BTreeMap<String, String> {
    served
        .iter()
        .filter(|(_, vips)| !vips.is_empty())
        .map(|(key, vips)| {
            let value: Vec<String> = vips.iter().map(label_value).collect();
            // kube-vip joins with ',', which no label value may hold; '_' may.
            (
                format!("{PREFIX}{}.{}", key.name, key.namespace),
                value.join("_"),
            )
        })
        .collect()
}

/// kube-vip's `SanitizeIPForLabel`: IPv4 as written, IPv6 as its 16 bytes in hex.
fn label_value(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// [pure] The merge patch of `metadata.labels` from `current` to `wanted` under [`PREFIX`]
/// (`null` removes), or `None` when they agree.
pub fn label_patch(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut patch = serde_json::Map::new();
    for (k, v) in wanted {
        if current.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone().into());
        }
    }
    for k in current.keys().filter(|k| k.starts_with(PREFIX)) {
        if !wanted.contains_key(k) {
            patch.insert(k.clone(), serde_json::Value::Null);
        }
    }
    (!patch.is_empty()).then_some(patch)
}

/// Keeps this node's labels in step with what it serves.
#[derive(Default)]
pub struct NodeLabels {
    /// The patch last asked, with the Node's resourceVersion then: not asked again until the
    /// watch shows a newer Node.
    asked: Option<(serde_json::Map<String, serde_json::Value>, Option<String>)>,
    /// The Node's labels as last seen, for the shutdown's removal.
    seen: BTreeMap<String, String>,
    /// The write last started: shutdown waits for it, since its labels may not have come back
    /// through the watch yet (and would otherwise land after the removal).
    in_flight: Option<tokio::task::JoinHandle<()>>,
}

/// How long shutdown waits to remove the labels (the API server may be gone).
const SHUTDOWN_WRITE: std::time::Duration = std::time::Duration::from_secs(3);

impl NodeLabels {
    /// Asks for the labels of what `served` holds on `node` (this node's Node as watched).
    pub fn update(
        &mut self,
        client: &kube::Client,
        node: Option<&Node>,
        served: &BTreeMap<ServiceKey, Vec<IpAddr>>,
    ) {
        let Some(node) = node else { return };
        self.seen = node.metadata.labels.clone().unwrap_or_default();
        let Some(patch) = label_patch(&self.seen, &wanted(served)) else {
            self.asked = None;
            return;
        };
        let asked = (patch, node.metadata.resource_version.clone());
        if self.asked.as_ref() == Some(&asked) {
            return;
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        self.in_flight = Some(tokio::spawn(write(client.clone(), name, asked.0.clone())));
        self.asked = Some(asked);
    }

    /// Shutdown: this node serves nothing any more; its labels go (waited for, briefly).
    pub async fn clear(&mut self, client: &kube::Client, node: &str) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WRITE;
        if let Some(pending) = self.in_flight.take() {
            let _ = tokio::time::timeout_at(deadline, pending).await;
        }
        if let Some(patch) = label_patch(&self.held(), &BTreeMap::new()) {
            let done =
                tokio::time::timeout_at(deadline, write(client.clone(), node.to_owned(), patch));
            if done.await.is_err() {
                warn!(node, "shutdown: the node's service-provided.kube-vip.io labels could not be removed in time");
            }
        }
    }
}

impl NodeLabels {
    /// The labels this node may carry: those seen, and those last asked for that the watch
    /// has not shown yet.
    fn held(&self) -> BTreeMap<String, String> {
        let mut held = self.seen.clone();
        if let Some((asked, _)) = &self.asked {
            for (k, v) in asked {
                if let Some(v) = v.as_str() {
                    held.insert(k.clone(), v.to_owned());
                }
            }
        }
        held
    }
}

async fn write(
    client: kube::Client,
    node: String,
    labels: serde_json::Map<String, serde_json::Value>,
) {
    let api: Api<Node> = Api::all(client);
    let body = serde_json::json!({"metadata": {"labels": labels}});
    match api
        .patch(&node, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => info!(node, labels = %body["metadata"]["labels"], "node labels written"),
        Err(e) => warn!(node, error = %e, "cannot write the service-provided.kube-vip.io labels"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    #[test]
    fn each_served_service_is_a_label_valued_as_kube_vip_values_it() {
        let served = BTreeMap::from([
            (key("web"), vec!["192.0.2.10".parse().unwrap()]),
            (
                key("dual"),
                vec![
                    "192.0.2.11".parse().unwrap(),
                    "2001:db8::11".parse().unwrap(),
                ],
            ),
            (key("idle"), vec![]),
        ]);
        assert_eq!(
            wanted(&served),
            BTreeMap::from([
                (
                    "service-provided.kube-vip.io/dual.shop".to_string(),
                    "192.0.2.11_20010db8000000000000000000000011".to_string()
                ),
                (
                    "service-provided.kube-vip.io/web.shop".to_string(),
                    "192.0.2.10".to_string()
                ),
            ])
        );
    }

    #[test]
    fn the_patch_adds_changes_and_removes_only_our_labels() {
        let current = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), "n1".to_string()),
            (
                "service-provided.kube-vip.io/old.shop".to_string(),
                "192.0.2.1".to_string(),
            ),
            (
                "service-provided.kube-vip.io/web.shop".to_string(),
                "192.0.2.9".to_string(),
            ),
        ]);
        let wanted = BTreeMap::from([(
            "service-provided.kube-vip.io/web.shop".to_string(),
            "192.0.2.10".to_string(),
        )]);
        let patch = label_patch(&current, &wanted).unwrap();
        assert_eq!(
            serde_json::Value::Object(patch),
            serde_json::json!({
                "service-provided.kube-vip.io/web.shop": "192.0.2.10",
                "service-provided.kube-vip.io/old.shop": null,
            })
        );
        let done = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), "n1".to_string()),
            (
                "service-provided.kube-vip.io/web.shop".to_string(),
                "192.0.2.10".to_string(),
            ),
        ]);
        assert_eq!(label_patch(&done, &wanted), None);
    }

    #[test]
    fn shutdown_removes_labels_asked_for_that_the_watch_has_not_shown_yet() {
        let asked: serde_json::Map<_, _> = serde_json::json!({
            "service-provided.kube-vip.io/web.shop": "192.0.2.10",
            "service-provided.kube-vip.io/old.shop": null,
        })
        .as_object()
        .cloned()
        .unwrap();
        let labels = NodeLabels {
            asked: Some((asked, Some("7".into()))),
            seen: BTreeMap::from([
                ("kubernetes.io/hostname".into(), "node0".into()),
                (
                    "service-provided.kube-vip.io/old.shop".into(),
                    "192.0.2.9".into(),
                ),
            ]),
            in_flight: None,
        };
        let patch = label_patch(&labels.held(), &BTreeMap::new()).unwrap();
        assert_eq!(
            serde_json::Value::Object(patch),
            serde_json::json!({
                "service-provided.kube-vip.io/web.shop": null,
                "service-provided.kube-vip.io/old.shop": null,
            })
        );
    }
}

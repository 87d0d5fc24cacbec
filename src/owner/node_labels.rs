//! [I/O] `enable_node_labeling`: the label `service-provided.kube-vip.io/<service>.<namespace>`
//! on this node's Node for each Service it serves, valued with the Service's addresses (IPv6
//! as 32 hex digits, as kube-vip writes them), and gone when it no longer serves it. Cilium's
//! egress-gateway setups select nodes by it. With `cp_enable`, `kube-vip.io/has-ip` names the
//! control-plane VIP on the node(s) holding it, as kube-vip's leader writes it. Only labels
//! under that prefix (and that one key) are vipd's: they are this node's own, so any left from
//! an earlier run are removed too.

use crate::decide::ServiceKey;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;
use std::collections::BTreeMap;
use std::net::IpAddr;
use tracing::{info, warn};

/// kube-vip's label prefix.
pub const PREFIX: &str = "service-provided.kube-vip.io/";

/// kube-vip's label on the node holding the control-plane VIP.
pub const HAS_IP: &str = "kube-vip.io/has-ip";

/// Which labels are vipd's to write and remove.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owned {
    /// `enable_node_labeling`: those under [`PREFIX`].
    pub services: bool,
    /// `cp_enable`: [`HAS_IP`].
    pub control_plane: bool,
}

impl Owned {
    fn owns(&self, key: &str) -> bool {
        (self.services && key.starts_with(PREFIX)) || (self.control_plane && key == HAS_IP)
    }
}

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

/// [pure] [`HAS_IP`] valued with the control-plane VIPs held here, if any.
pub fn has_ip(held: &[IpAddr]) -> Option<(String, String)> {
    let value: Vec<String> = held.iter().map(label_value).collect();
    (!value.is_empty()).then(|| (HAS_IP.to_owned(), value.join("_")))
}

/// kube-vip's `SanitizeIPForLabel`: IPv4 as written, IPv6 as its 16 bytes in hex.
fn label_value(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// [pure] The merge patch of `metadata.labels` from `current` to `wanted` among the labels
/// `owned` (`null` removes), or `None` when they agree.
pub fn label_patch(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
    owned: Owned,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut patch = serde_json::Map::new();
    for (k, v) in wanted {
        if current.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone().into());
        }
    }
    for k in current.keys().filter(|k| owned.owns(k)) {
        if !wanted.contains_key(k) {
            patch.insert(k.clone(), serde_json::Value::Null);
        }
    }
    (!patch.is_empty()).then_some(patch)
}

/// Keeps this node's labels in step with what it serves.
#[derive(Default)]
pub struct NodeLabels {
    owned: Owned,
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
    pub fn new(owned: Owned) -> NodeLabels {
        NodeLabels {
            owned,
            ..NodeLabels::default()
        }
    }

    /// Asks for the labels of what `served` holds on `node` (this node's Node as watched), and
    /// of the control-plane VIPs held here (`cp_held`).
    pub fn update(
        &mut self,
        client: &kube::Client,
        node: Option<&Node>,
        served: &BTreeMap<ServiceKey, Vec<IpAddr>>,
        cp_held: &[IpAddr],
    ) {
        let Some(node) = node else { return };
        self.seen = node.metadata.labels.clone().unwrap_or_default();
        let mut labels = if self.owned.services {
            wanted(served)
        } else {
            BTreeMap::new()
        };
        if self.owned.control_plane {
            labels.extend(has_ip(cp_held));
        }
        let Some(patch) = label_patch(&self.seen, &labels, self.owned) else {
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
        if let Some(patch) = label_patch(&self.held(), &BTreeMap::new(), self.owned) {
            let done =
                tokio::time::timeout_at(deadline, write(client.clone(), node.to_owned(), patch));
            if done.await.is_err() {
                warn!(
                    node,
                    "shutdown: the node's kube-vip.io labels could not be removed in time"
                );
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
        Err(e) => warn!(node, error = %e, "cannot write the node's kube-vip.io labels"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: Owned = Owned {
        services: true,
        control_plane: false,
    };

    #[test]
    fn has_ip_names_the_control_plane_vips_held_and_is_removed_when_none_is() {
        let v4: IpAddr = "192.0.2.100".parse().unwrap();
        let v6: IpAddr = "2001:db8::100".parse().unwrap();
        assert_eq!(
            has_ip(&[v4, v6]),
            Some((
                HAS_IP.to_owned(),
                "192.0.2.100_20010db8000000000000000000000100".to_owned()
            ))
        );
        assert_eq!(has_ip(&[]), None);
        let cp = Owned {
            services: false,
            control_plane: true,
        };
        let current = BTreeMap::from([
            (HAS_IP.to_owned(), "192.0.2.100".to_owned()),
            (format!("{PREFIX}web.shop"), "192.0.2.10".to_owned()),
        ]);
        // Without enable_node_labeling the Service labels are not vipd's to touch.
        assert_eq!(
            label_patch(&current, &BTreeMap::new(), cp).map(serde_json::Value::Object),
            Some(serde_json::json!({ HAS_IP: null }))
        );
        assert_eq!(
            label_patch(&current, &BTreeMap::from([has_ip(&[v4]).unwrap()]), cp),
            None
        );
    }

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
        let patch = label_patch(&current, &wanted, SERVICES).unwrap();
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
        assert_eq!(label_patch(&done, &wanted, SERVICES), None);
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
            owned: SERVICES,
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
        let patch = label_patch(&labels.held(), &BTreeMap::new(), SERVICES).unwrap();
        assert_eq!(
            serde_json::Value::Object(patch),
            serde_json::json!({
                "service-provided.kube-vip.io/web.shop": null,
                "service-provided.kube-vip.io/old.shop": null,
            })
        );
    }
}

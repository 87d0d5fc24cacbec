//! [I/O] `kube-vip.io/vipHost=<node>` on each Service this node holds alone (ARP mode, and in
//! BGP mode an elected Service: `svc_election`, DHCP, UPnP), as kube-vip writes it (≥ v1.0.3 in
//! BGP mode too). A merge patch of that one key, by get + update where RBAC grants no patch.

use super::common::Common;
use crate::decide::{Desired, ServiceKey};
use crate::kube::write::{self, Target};
use crate::model::annotation::VIP_HOST;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use std::collections::BTreeMap;
use tracing::warn;

/// What has been asked, so a write is not repeated while the Service is unchanged.
#[derive(Default)]
pub struct VipHosts {
    /// Per Service, its resourceVersion when `vipHost` was last asked.
    asked: BTreeMap<ServiceKey, Option<String>>,
}

impl VipHosts {
    /// Writes `vipHost` on each Service that `alone` says this node holds alone, is served
    /// here (`c.served()`) and does not say so yet.
    pub fn write(
        &mut self,
        c: &Common,
        desired: &Desired,
        services: &BTreeMap<ServiceKey, &Service>,
        alone: impl Fn(&ServiceKey) -> bool,
    ) {
        let mut asked = BTreeMap::new();
        for (key, d) in &desired.services {
            let Some(svc) = services.get(key) else {
                continue;
            };
            let says_here = d.intent.vip_host.as_deref() == Some(c.node.as_str());
            if !alone(key) || !c.served().contains_key(key) || says_here {
                continue;
            }
            let version = svc.metadata.resource_version.clone();
            if self.asked.get(key) != Some(&version) {
                write_vip_host(c, key.clone());
            }
            asked.insert(key.clone(), version);
        }
        self.asked = asked;
    }
}

/// `kube-vip.io/vipHost=<node>` on the Service (only that key changes).
fn write_vip_host(c: &Common, key: ServiceKey) {
    let api: Api<Service> = Api::namespaced(c.client.clone(), &key.namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {VIP_HOST: c.node}}});
    tokio::spawn(async move {
        if let Err(e) = write::merge(&api, &key.name, Target::Service, &patch).await {
            warn!(service = %key, error = %e, "cannot write the {VIP_HOST} annotation");
        }
    });
}

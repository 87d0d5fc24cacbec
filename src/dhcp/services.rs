//! [I/O] DHCP VIPs in services mode: one [`DhcpVip`] per `0.0.0.0` Service this node serves,
//! started, kept and stopped as the decisions say ([`plan::want`]); the leases are folded into
//! the decision ([`plan::fold_leases`]) so the owner loop announces and reports them like any
//! VIP. The MAC (`kube-vip.io/hwaddr`) and the leased address (`kube-vip.io/requestedIP`) are
//! written to the Service, so the next node (or a restarted agent) asks with the same MAC for
//! the same address.
//!
//! Which node serves a Service is decided before this runs: the nodes that pass its gates
//! stand for its per-Service Lease, and the owner loop marks it as served elsewhere on every
//! node but the leader ([`crate::election::serve::gate`]): one lease must not be held by
//! several MACs.

use super::client::Lease;
use super::edge::{DhcpSpec, DhcpVip, Stop};
use super::macvlan::{delete_unowned, format_mac, new_local_mac, owner_alias};
use super::plan::{self, Want, HWADDR, REQUESTED_IP};
use crate::decide::{Desired, ServiceKey};
use crate::kube::status::{EventSink, ServiceEvent};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

struct Running {
    vip: DhcpVip,
    /// The Service's UID, the macvlan's owner.
    uid: String,
    /// The address last written to `kube-vip.io/requestedIP`.
    written: Option<Ipv4Addr>,
    /// Forwards lease changes to [`DhcpServices::changed`].
    _watch: crate::kube::view::AbortOnDrop,
}

/// The DHCP VIPs of this node.
pub struct DhcpServices {
    client: Client,
    /// The agent's Service interface (`vip_interface`), the default macvlan parent.
    parent: String,
    running: BTreeMap<ServiceKey, Running>,
    /// Woken when any lease changes, so the owner loop re-decides.
    changed: Arc<Notify>,
    rng: fastrand::Rng,
    /// Per Service, the start failure already sent as an Event: retried at every reconcile,
    /// reported once while it lasts.
    failed: BTreeMap<ServiceKey, String>,
    /// Whether the macvlans an earlier vipd left have been looked for (once, at the first
    /// reconcile: later, every macvlan of this agent is deleted when its client stops).
    swept: bool,
}

impl DhcpServices {
    pub fn new(client: Client, parent: &str) -> DhcpServices {
        DhcpServices {
            client,
            parent: parent.to_owned(),
            running: BTreeMap::new(),
            changed: Arc::new(Notify::new()),
            rng: fastrand::Rng::new(),
            failed: BTreeMap::new(),
            swept: false,
        }
    }

    /// Notified when a lease was bound, renewed to another address, or lost.
    pub fn notifier(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// The addresses held on macvlans: announced, but not put on the VIP interface.
    pub fn leased(&self) -> BTreeSet<IpAddr> {
        self.leases().values().map(|ip| IpAddr::V4(*ip)).collect()
    }

    /// Per Service, its leased address and the macvlan it is on.
    pub fn leased_on(&self) -> BTreeMap<ServiceKey, (IpAddr, String)> {
        self.running
            .iter()
            .filter_map(|(k, r)| {
                let ip = r.vip.lease().borrow().as_ref()?.address;
                Some((k.clone(), (IpAddr::V4(ip), r.vip.ifname().to_owned())))
            })
            .collect()
    }

    fn leases(&self) -> BTreeMap<ServiceKey, Ipv4Addr> {
        self.running
            .iter()
            .filter_map(|(k, r)| Some((k.clone(), r.vip.lease().borrow().as_ref()?.address)))
            .collect()
    }

    /// Starts and stops clients as `desired` says, writes the annotations, and folds the leases
    /// into `desired`.
    pub async fn reconcile(
        &mut self,
        services: &[Arc<Service>],
        desired: &mut Desired,
        events: &EventSink,
    ) {
        let by_key: BTreeMap<ServiceKey, &Service> = services
            .iter()
            .filter_map(|s| {
                let key = ServiceKey {
                    namespace: s.metadata.namespace.clone()?,
                    name: s.metadata.name.clone()?,
                };
                Some((key, s.as_ref()))
            })
            .collect();
        // Stop what is no longer served here.
        let keys: Vec<ServiceKey> = self.running.keys().cloned().collect();
        for key in keys {
            let how = match plan::want(desired.services.get(&key)) {
                Want::Lease => continue,
                Want::Elsewhere => Stop::Keep,
                Want::Nothing => Stop::Release,
            };
            if let Some(r) = self.running.remove(&key) {
                info!(service = %key, ?how, macvlan = r.vip.ifname(), "DHCP VIP stops on this node");
                if let Err(e) = r.vip.stop(how).await {
                    warn!(service = %key, "{e}");
                }
            }
        }
        // Start what should be served here.
        let mut failed = BTreeMap::new();
        for (key, d) in &desired.services {
            if self.running.contains_key(key) || plan::want(Some(d)) != Want::Lease {
                continue;
            }
            let Some(svc) = by_key.get(key) else { continue };
            if let Err(note) = self.start(key, svc).await {
                if self.failed.get(key) != Some(&note) {
                    warn!(service = %key, "{note}");
                    events.send(ServiceEvent {
                        service: key.clone(),
                        warning: true,
                        reason: "DHCPFailed".into(),
                        note: note.clone(),
                    });
                }
                failed.insert(key.clone(), note);
            }
        }
        self.failed = failed;
        if !self.swept {
            // Left by a vipd that did not stop cleanly: the Service may be gone, or led by
            // another node now (its MAC must not be on two ports).
            let keep = self.running.values().map(|r| r.uid.clone()).collect();
            match delete_unowned(&keep).await {
                Ok(_) => self.swept = true,
                Err(e) => warn!("cannot look for macvlans an earlier vipd left: {e}"),
            }
        }
        // The leased address into requestedIP.
        for (key, r) in &mut self.running {
            let now = r.vip.lease().borrow().as_ref().map(|l| l.address);
            if now.is_some() && now != r.written {
                let ip = now.map(|ip| ip.to_string()).unwrap_or_default();
                match annotate(&self.client, key, REQUESTED_IP, &ip).await {
                    Ok(()) => r.written = now,
                    Err(e) => warn!(service = %key, "cannot write {REQUESTED_IP}={ip}: {e}"),
                }
            }
        }
        plan::fold_leases(desired, &self.leases());
    }

    async fn start(&mut self, key: &ServiceKey, svc: &Service) -> Result<(), String> {
        let id = plan::identity(svc);
        let parent = id.parent.clone().unwrap_or_else(|| self.parent.clone());
        if parent.is_empty() || parent == "lo" {
            // The default vip_interface: a macvlan needs an Ethernet link on the DHCP server's LAN.
            return Err(format!(
                "DHCP for {key} needs the LAN interface: set vip_interface or the annotation \
                 {} (lo cannot carry a macvlan)",
                plan::SERVICE_INTERFACE
            ));
        }
        let mac = match id.mac {
            Some(mac) => mac,
            None => {
                // Written before the first DISCOVER: a node that takes over must ask with it.
                let mac = new_local_mac(&mut self.rng);
                annotate(&self.client, key, HWADDR, &format_mac(&mac))
                    .await
                    .map_err(|e| format!("cannot write {HWADDR}: {e}"))?;
                mac
            }
        };
        let spec = DhcpSpec {
            parent,
            ifname: id.ifname,
            mac,
            hostname: id.hostname,
            requested: id.requested,
            alias: if id.uid.is_empty() {
                String::new()
            } else {
                owner_alias(&id.uid, &key.to_string())
            },
        };
        info!(service = %key, macvlan = %spec.ifname, parent = %spec.parent, mac = %format_mac(&mac),
              requested = ?spec.requested, "DHCP VIP starts on this node");
        let vip = DhcpVip::start(spec, self.rng.u64(..))
            .await
            .map_err(|e| format!("DHCP for {key}: {e}"))?;
        let watch = forward_changes(vip.lease(), self.changed.clone());
        self.running.insert(
            key.clone(),
            Running {
                vip,
                uid: id.uid,
                written: id.requested,
                _watch: watch,
            },
        );
        Ok(())
    }

    /// Shutdown: RELEASE every lease and delete the macvlans (design §1: nothing is left).
    pub async fn shutdown(&mut self) {
        for (key, r) in std::mem::take(&mut self.running) {
            if let Err(e) = r.vip.stop(Stop::Release).await {
                warn!(service = %key, "shutdown: {e}");
            }
        }
    }
}

fn forward_changes(
    mut lease: watch::Receiver<Option<Lease>>,
    changed: Arc<Notify>,
) -> crate::kube::view::AbortOnDrop {
    crate::kube::view::AbortOnDrop(tokio::spawn(async move {
        let mut last = lease.borrow().as_ref().map(|l| l.address);
        while lease.changed().await.is_ok() {
            let now = lease.borrow().as_ref().map(|l| l.address);
            if now != last {
                last = now;
                changed.notify_one();
            }
        }
    }))
}

/// One annotation on the Service, by merge patch (only that key changes).
async fn annotate(
    client: &Client,
    key: &ServiceKey,
    name: &str,
    value: &str,
) -> Result<(), kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), &key.namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {name: value}}});
    api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

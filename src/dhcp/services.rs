//! [I/O] DHCP VIPs in services mode: one [`DhcpVip`] per `0.0.0.0` Service this node serves,
//! started, kept and stopped as the decisions say ([`plan::want`]); the leases are folded into
//! the decision ([`plan::fold_leases`]) so the owner loop announces and reports them like any
//! VIP. The MAC (`kube-vip.io/hwaddr`) and the leased address (`kube-vip.io/requestedIP`) are
//! written to the Service, so the next node (or a restarted agent) asks with the same MAC for
//! the same address.
//!
//! Which node serves a Service is decided before this runs: the nodes that pass its gates
//! stand for its per-Service Lease, and the owner loop marks it as served elsewhere on every
//! node but the leader ([`crate::plan::gate::gate`]): one lease must not be held by
//! several MACs.

use super::client::Lease;
use super::edge::{DhcpSpec, DhcpVip, Stop};
use super::macvlan::delete_unowned;
use super::naming::{format_mac, mac_for_uid, owner_alias};
use super::plan;
use crate::decide::{Desired, ServiceKey, Skip};
use crate::kube::status::{EventSink, ServiceEvent};
use crate::kube::write::{self, Target};
use crate::model::annotation::{HWADDR, REQUESTED_IP, SERVICE_INTERFACE};
use crate::model::ServiceIntent;
use crate::report::EventReason;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How long a start failure is remembered: reported once, and (ARP mode) the node stands down.
pub const FAILURE_HOLD: std::time::Duration = std::time::Duration::from_secs(60);

struct Running {
    vip: DhcpVip,
    /// The Service's UID, the macvlan's owner.
    uid: String,
    /// `kube-vip.io/hwaddr` to write (a MAC made here), until written.
    hwaddr: Option<String>,
    /// Forwards lease changes to [`DhcpServices::changed`].
    _watch: crate::kube::view::AbortOnDrop,
}

/// The DHCP VIPs of this node.
pub struct DhcpServices {
    /// See [`DhcpServices::new`].
    hold_addresses: bool,
    /// `svc_namespace`: the only namespace whose macvlans the start-up sweep may judge.
    namespace: Option<String>,
    /// Annotation writes in flight or done: never awaited in the owner loop, which must keep
    /// serving its fence timer while the API server is slow or away.
    writes: Writes,
    /// The agent's Service interface (`vip_interface`), the default macvlan parent.
    parent: String,
    running: BTreeMap<ServiceKey, Running>,
    /// Woken when any lease changes, so the owner loop re-decides.
    changed: Arc<Notify>,
    /// Per Service, the last start failure and when: reported once per distinct failure (or
    /// again after [`FAILURE_HOLD`]); ARP mode stands down for that long ([`Self::failing`]).
    failed: BTreeMap<ServiceKey, (String, std::time::Instant)>,
    /// Whether the macvlans an earlier vipd left have been looked for (once, at the first
    /// reconcile: later, every macvlan of this agent is deleted when its client stops).
    swept: bool,
}

impl DhcpServices {
    /// `hold_addresses`: each client puts its lease on its macvlan at once (BGP mode); else the
    /// caller does, after probing (ARP mode, [`DhcpServices::leased_on`]).
    pub fn new(
        client: Client,
        parent: &str,
        namespace: Option<&str>,
        hold_addresses: bool,
    ) -> DhcpServices {
        let changed = Arc::new(Notify::new());
        DhcpServices {
            hold_addresses,
            writes: Writes::new(client, changed.clone()),
            namespace: namespace.map(str::to_owned),
            parent: parent.to_owned(),
            running: BTreeMap::new(),
            changed,
            failed: BTreeMap::new(),
            swept: false,
        }
    }

    /// Notified when a lease was bound, renewed to another address, or lost, and when a client
    /// newly failed to start.
    pub fn notifier(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// The addresses held on macvlans: announced, but not put on the VIP interface.
    pub fn leased(&self) -> BTreeSet<IpAddr> {
        self.leases().values().map(|ip| IpAddr::V4(*ip)).collect()
    }

    /// Why the DHCP client of `key` could not start here lately (within [`FAILURE_HOLD`]).
    pub fn failing(&self, key: &ServiceKey) -> Option<&str> {
        let (note, at) = self.failed.get(key)?;
        (at.elapsed() < FAILURE_HOLD).then_some(note.as_str())
    }

    /// Another host answers for `key`'s leased `address`: DECLINE it and ask for another; the
    /// Service stops asking for it (`requestedIP` emptied), so no node asks for it again.
    pub fn decline(&mut self, key: &ServiceKey, address: Ipv4Addr) {
        if let Some(r) = self.running.get(key) {
            r.vip.decline(address);
            self.writes.ensure(key, &r.uid, REQUESTED_IP, "");
        }
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
            .filter_map(|s| Some((ServiceKey::of(s)?, s.as_ref())))
            .collect();
        let running: BTreeSet<ServiceKey> = self.running.keys().cloned().collect();
        let now = std::time::Instant::now();
        self.failed
            .retain(|_, (_, at)| now.duration_since(*at) < FAILURE_HOLD);
        for step in plan::steps(&running, desired) {
            match step {
                plan::Step::Stop { service, release } => {
                    let how = if release { Stop::Release } else { Stop::Keep };
                    if let Some(r) = self.running.remove(&service) {
                        self.writes.forget(&service);
                        info!(service = %service, ?how, macvlan = r.vip.ifname(), "DHCP VIP stops on this node");
                        if let Err(e) = r.vip.stop(how).await {
                            warn!(service = %service, "{e}");
                        }
                    }
                }
                plan::Step::Start(key) => {
                    let Some(intent) = desired.services.get(&key).map(|d| d.intent.clone()) else {
                        continue;
                    };
                    match self.start(&key, &intent).await {
                        Ok(()) => {
                            self.failed.remove(&key);
                        }
                        Err(note) => self.failed_to_start(&key, note, now, events),
                    }
                }
            }
        }
        if !self.swept {
            self.sweep(&by_key, desired).await;
        }
        // The MAC made here and the leased address onto the Service, in the background.
        self.writes.collect();
        for (key, r) in &self.running {
            if let Some(mac) = &r.hwaddr {
                self.writes.ensure(key, &r.uid, HWADDR, mac);
            }
            if let Some(lease) = r.vip.lease().borrow().as_ref() {
                self.writes
                    .ensure(key, &r.uid, REQUESTED_IP, &lease.address.to_string());
            }
        }
        plan::fold_leases(desired, &self.leases());
    }

    /// A start failure: reported once per distinct failure (or again after [`FAILURE_HOLD`]).
    fn failed_to_start(
        &mut self,
        key: &ServiceKey,
        note: String,
        now: std::time::Instant,
        events: &EventSink,
    ) {
        if self.failed.get(key).is_some_and(|(n, _)| *n == note) {
            return;
        }
        warn!(service = %key, "{note}");
        events.send(ServiceEvent {
            service: key.clone(),
            reason: EventReason::DhcpFailed,
            note: note.clone(),
        });
        self.failed.insert(key.clone(), (note, now));
        // A result the owner loop plans on (ARP mode stands down): wake it once per new
        // failure, never once per retry.
        self.changed.notify_one();
    }

    async fn start(&mut self, key: &ServiceKey, intent: &ServiceIntent) -> Result<(), String> {
        let id = plan::identity(intent);
        let parent = id.parent.clone().unwrap_or_else(|| self.parent.clone());
        if parent.is_empty() || parent == "lo" {
            // The default vip_interface: a macvlan needs an Ethernet link on the DHCP server's LAN.
            return Err(format!(
                "DHCP for {key} needs the LAN interface: set vip_interface or the annotation \
                 {} (lo cannot carry a macvlan)",
                SERVICE_INTERFACE
            ));
        }
        // Without `hwaddr`, the MAC follows from the Service's UID: a node that takes over asks
        // with the same one even if writing it back has not succeeded yet.
        let (mac, hwaddr) = match id.mac {
            Some(mac) => (mac, None),
            None if !id.uid.is_empty() => {
                let mac = mac_for_uid(&id.uid);
                (mac, Some(format_mac(&mac)))
            }
            None => return Err(format!("{key} has no UID to derive its macvlan's MAC from")),
        };
        if let Some(ip) = id.requested {
            self.writes.assume(key, REQUESTED_IP, &ip.to_string());
        }
        let spec = DhcpSpec {
            parent,
            ifname: id.ifname,
            mac,
            hostname: id.hostname,
            requested: id.requested,
            hold_address: self.hold_addresses,
            alias: if id.uid.is_empty() {
                String::new()
            } else {
                owner_alias(&id.uid, &key.to_string())
            },
        };
        info!(service = %key, macvlan = %spec.ifname, parent = %spec.parent, mac = %format_mac(&mac),
              requested = ?spec.requested, "DHCP VIP starts on this node");
        let vip = DhcpVip::start(spec, fastrand::u64(..))
            .await
            .map_err(|e| format!("DHCP for {key}: {e}"))?;
        let watch = forward_changes(vip.lease(), self.changed.clone());
        self.running.insert(
            key.clone(),
            Running {
                vip,
                uid: id.uid,
                hwaddr,
                _watch: watch,
            },
        );
        Ok(())
    }

    /// Shutdown: delete the macvlans, nothing left on the node, but keep the leases: the
    /// Services still exist, and whoever serves them next (this agent restarted, another node)
    /// asks with the same MAC and gets the same address back by INIT-REBOOT. A RELEASE would
    /// let the server hand the address to someone else meanwhile, so a rolling upgrade of vipd
    /// could change a Service's address. Leases are released when their Service goes.
    pub async fn shutdown(&mut self) {
        for (key, r) in std::mem::take(&mut self.running) {
            if let Err(e) = r.vip.stop(Stop::Keep).await {
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

impl DhcpServices {
    /// Once, at the first reconcile: deletes the macvlans an earlier vipd left (it did not stop
    /// cleanly) for Services this agent handles but does not lease for here: deleted
    /// meanwhile, no longer DHCP, or led by another node now (the Service's MAC must be on one
    /// port only). Macvlans of Services in namespaces this agent does not watch, or of another
    /// class, are another agent's and stay. A leftover this node leads again is rebuilt with
    /// the same MAC at once (INIT-REBOOT): after a crash its address went from the LAN anyway
    /// (ARP mode removes vipd's addresses at start; BGP mode's routes went with the session).
    async fn sweep(&mut self, by_key: &BTreeMap<ServiceKey, &Service>, desired: &Desired) {
        let running: BTreeSet<&str> = self.running.values().map(|r| r.uid.as_str()).collect();
        let mut known: BTreeMap<&str, bool> = BTreeMap::new();
        for (key, svc) in by_key {
            let Some(uid) = svc.metadata.uid.as_deref() else {
                continue;
            };
            // Another class is another agent's; a Service no agent serves (not a LoadBalancer,
            // ignored) keeps no macvlan.
            let theirs = desired.services.get(key).is_some_and(|d| {
                matches!(
                    d.skip,
                    Some(Skip::ClassNotOurs { .. } | Skip::ClassMissing { .. })
                )
            });
            known.insert(uid, theirs);
        }
        let watched = self.namespace.clone();
        let keep = |uid: &str, namespace: &str| {
            running.contains(uid)
                || known.get(uid).copied().unwrap_or(false)
                || watched.as_deref().is_some_and(|w| w != namespace)
        };
        match delete_unowned(keep).await {
            Ok(_) => self.swept = true,
            Err(e) => warn!("cannot look for macvlans an earlier vipd left: {e}"),
        }
    }
}

/// One annotation of one Service.
type Slot = (ServiceKey, &'static str);
/// A write in flight: the value and the task patching it.
type Write = (String, JoinHandle<Result<(), kube::Error>>);

/// Annotation writes on Services, each in its own task, one at a time per (Service,
/// annotation) so they land in order; the newest value is written once the one in flight ended,
/// and a failed one is retried. A write that ends wakes the owner loop (`changed`).
struct Writes {
    client: Client,
    changed: Arc<Notify>,
    /// Written (or found on the Service already).
    done: BTreeMap<Slot, String>,
    pending: BTreeMap<Slot, Write>,
}

impl Writes {
    fn new(client: Client, changed: Arc<Notify>) -> Writes {
        Writes {
            client,
            changed,
            done: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The Service says `value` already.
    fn assume(&mut self, key: &ServiceKey, name: &'static str, value: &str) {
        self.done.insert((key.clone(), name), value.to_owned());
    }

    /// Writes `value` unless it is written; while another write of it is in flight, at the
    /// next call after that one ended.
    /// `uid` makes the write land on this Service only, not on one created again under its
    /// name (the API server refuses a patch whose UID differs).
    fn ensure(&mut self, key: &ServiceKey, uid: &str, name: &'static str, value: &str) {
        let slot = (key.clone(), name);
        if self.done.get(&slot).is_some_and(|v| v == value) || self.pending.contains_key(&slot) {
            return;
        }
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut patch = serde_json::json!({"metadata": {"annotations": {name: value}}});
        if !uid.is_empty() {
            patch["metadata"]["uid"] = serde_json::json!(uid);
        }
        let service = key.name.clone();
        let changed = self.changed.clone();
        let task = tokio::spawn(async move {
            let result = write::merge(&api, &service, Target::Service, &patch).await;
            changed.notify_one();
            result
        });
        self.pending.insert(slot, (value.to_owned(), task));
    }

    /// The Service is no longer leased here: what was written says nothing of a next one (a
    /// write in flight still lands; its value was right for this lease).
    fn forget(&mut self, key: &ServiceKey) {
        self.done.retain(|(k, _), _| k != key);
        self.pending.retain(|(k, _), _| k != key);
    }

    /// Takes in the writes that ended.
    fn collect(&mut self) {
        let ended: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, (_, t))| t.is_finished())
            .map(|(slot, _)| slot.clone())
            .collect();
        for slot in ended {
            let Some((value, task)) = self.pending.remove(&slot) else {
                continue;
            };
            match task.now_or_never() {
                Some(Ok(Ok(()))) => {
                    self.done.insert(slot, value);
                }
                Some(Ok(Err(e))) => {
                    warn!(service = %slot.0, "cannot write {}={value}: {e}; retrying", slot.1);
                }
                _ => {}
            }
        }
    }
}

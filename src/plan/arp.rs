//! [pure] ARP/NDP mode's plan: which Lease elects each Service and whether this node stands,
//! which VIPs it holds on which interface, and the order of the steps that get there.
//!
//! Three calls, in the order the owner loop makes them, each on what is known then:
//! 1. [`stand`]: per Service, its Lease, the interface of each VIP (from one snapshot of the
//!    node's interfaces) and, for a DHCP Service, its macvlan's parent. A node stands only when
//!    it can place every VIP it may serve: a leader that cannot put a VIP anywhere would leave
//!    it dark while holding the Lease.
//! 2. [`gate`] then [`before_dhcp`]: only the leader of a DHCP Service's Lease holds its lease;
//!    elsewhere the leased address stops being announced *before* the client stops (no
//!    RELEASE: the next leader asks with the same MAC and keeps the address).
//! 3. [`hold`], with the leases bound now: the VIPs to hold, and the steps, ordered so that
//!    **addresses go before any Lease is released or handed on** — the next leader never
//!    overlaps with this node.
//!
//! The control-plane VIP (`cp_enable`) is one more elected VIP: its own Lease
//! (`plndr-cp-lock`), stood for only while this node's API server passes its health check and
//! the VIP's interface is up, held on `vip_interface` (else the interface whose subnet holds it).

use super::gate::{self, LeaseStep};
use crate::config::{ArpSettings, ElectionScope};
use crate::decide::{Desired, ServiceKey, Skip};
use crate::dhcp::plan::{self as dhcp_plan, Want};
use crate::election::LeaseKey;
use crate::model::annotation::{SERVICE_INTERFACE, SERVICE_VLAN};
use crate::model::ServiceIntent;
use crate::model::Vlan;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The node's interfaces, read once before planning.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// Per VIP, the interface whose subnet holds it (ARP's `auto` interface), where one does.
    pub subnet_of: BTreeMap<IpAddr, String>,
    /// Why the interfaces could not be read, if they could not.
    pub read_error: Option<String>,
    /// The interfaces that exist here, of those a DHCP macvlan may sit on.
    pub existing: BTreeSet<String>,
    /// The control-plane VIP's interfaces that are down, each with why.
    pub down: BTreeMap<String, String>,
}

/// The control-plane VIP, as ARP mode plans it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    pub lease: LeaseKey,
    /// One IPv4 and/or one IPv6 address.
    pub vips: Vec<IpAddr>,
    /// This node's API server fails its health check: why.
    pub unhealthy: Option<String>,
}

/// Why this node does not stand for the control-plane Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStanding {
    /// Its API server fails its health check.
    Unhealthy(String),
    /// The VIP's interface is down.
    LinkDown(String),
    /// No interface for a VIP (the Warning names the setting that fixes it).
    Unplaced(String),
}

/// The control-plane VIP's part of [`Standing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneStanding {
    pub lease: LeaseKey,
    /// Each VIP with its interface (those that could be placed).
    pub placed: Vec<(IpAddr, String)>,
    /// `None`: this node stands.
    pub not_standing: Option<NotStanding>,
}

/// Who stands for what, from [`stand`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// The Lease each of vipd's Services (with VIPs) is elected by.
    pub lease_of: BTreeMap<ServiceKey, LeaseKey>,
    /// Every Lease in use, and whether this node stands for it (with one Lease for all, every
    /// node stands; a node that stands for none of a Lease's Services does not).
    pub eligible: BTreeMap<LeaseKey, bool>,
    /// The Services this node can serve, each VIP with its interface.
    pub placed: BTreeMap<ServiceKey, Vec<(IpAddr, String)>>,
    /// The DHCP Services this node can lease for, with their Lease.
    pub dhcp: BTreeMap<ServiceKey, LeaseKey>,
    /// The DHCP Services it cannot lease for, and why.
    pub no_parent: BTreeMap<ServiceKey, Skip>,
    /// The VIPs (or DHCP macvlan parents) this node has no interface for: per Service, the
    /// Warning to raise (once while it lasts), naming the setting that fixes it.
    pub unplaced: Vec<(ServiceKey, String)>,
    /// The control-plane VIP, with `cp_enable`.
    pub control_plane: Option<ControlPlaneStanding>,
}

/// A VIP this node claims now, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub ifname: String,
    /// The Service whose DHCP lease this is (the address lives on its macvlan).
    pub dhcp: Option<ServiceKey>,
}

/// One thing to do, in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Stop announcing the VIP and take its address off.
    Release(IpAddr),
    /// Stand for a Lease, or stop standing.
    Lease(LeaseStep),
    /// Probe, then claim the VIP on the interface. `dhcp`: the Service whose leased address it
    /// is (on its macvlan).
    Claim {
        vip: IpAddr,
        ifname: String,
        dhcp: Option<ServiceKey>,
    },
}

/// What the VIPs held serve: per VIP, its interface and the Services that want it (none: the
/// control-plane VIP).
pub type Wanted = BTreeMap<IpAddr, (String, BTreeSet<ServiceKey>)>;

/// Per Service with VIPs: its Lease, where each VIP it may serve goes, and whether this node
/// stands. `failing`: DHCP Services whose client could not start here lately (the node stands
/// down so that one that can lease takes the Lease).
pub fn stand(
    desired: &Desired,
    arp: &ArpSettings,
    node: &str,
    links: &Links,
    failing: &BTreeMap<ServiceKey, String>,
    control_plane: Option<&ControlPlane>,
) -> Standing {
    let mut out = Standing::default();
    for (key, d) in &desired.services {
        if d.vips.is_empty() {
            continue;
        }
        let lease = gate::lease_key(key, d.intent.lease_name.as_deref(), &arp.election);
        let mut ifaces = Vec::new();
        for vip in &d.announced {
            match interface_for(&d.intent, *vip, arp, links) {
                Ok(ifname) => ifaces.push((*vip, ifname)),
                Err(why) => out.unplaced.push((key.clone(), why)),
            }
        }
        // A DHCP Service also needs its macvlan's parent here; static VIPs beside it are stood
        // for without (a missing parent must not darken them).
        let dhcp = dhcp_plan::want(Some(d)) == Want::Lease;
        let parent = if dhcp {
            lease_here(key, &d.intent, arp, node, links, failing)
        } else {
            Err(Skip::NoInterface {
                note: String::new(),
            })
        };
        if let (true, Err(skip)) = (dhcp, &parent) {
            if let Skip::NoInterface { note } = skip {
                out.unplaced.push((key.clone(), note.clone()));
            }
            out.no_parent.insert(key.clone(), skip.clone());
        }
        let statics_placed = ifaces.len() == d.announced.len();
        let can_serve = statics_placed && (!d.announced.is_empty() || parent.is_ok());
        // One Lease for all: every node stands (kube-vip's behaviour) — except one excluded
        // from load balancers (`vipd_honour_exclude_label`), which would lead and serve nothing.
        let excluded = d
            .not_announced
            .iter()
            .any(|(_, why)| matches!(why, Skip::NodeExcluded { .. }));
        let stands =
            !excluded && (matches!(arp.election, ElectionScope::Global { .. }) || can_serve);
        *out.eligible.entry(lease.clone()).or_default() |= stands;
        if can_serve {
            out.placed.insert(key.clone(), ifaces);
            if parent.is_ok() {
                out.dhcp.insert(key.clone(), lease.clone());
            }
        }
        out.lease_of.insert(key.clone(), lease);
    }
    if let Some(cp) = control_plane {
        let cp = stand_control_plane(cp, arp, links);
        *out.eligible.entry(cp.lease.clone()).or_default() |= cp.not_standing.is_none();
        out.control_plane = Some(cp);
    }
    out
}

/// Whether this node stands for the control-plane Lease, and where each VIP goes. Health
/// first: a node whose API server is down never holds the address of the API servers.
fn stand_control_plane(
    cp: &ControlPlane,
    arp: &ArpSettings,
    links: &Links,
) -> ControlPlaneStanding {
    let mut placed = Vec::new();
    let mut unplaced = None;
    for vip in &cp.vips {
        match control_plane_interface(*vip, arp, links) {
            Ok(ifname) => placed.push((*vip, ifname)),
            Err(why) => unplaced = unplaced.or(Some(why)),
        }
    }
    let down = placed
        .iter()
        .find_map(|(_, ifname)| links.down.get(ifname).cloned());
    let not_standing = match (&cp.unhealthy, down, unplaced) {
        (Some(why), _, _) => Some(NotStanding::Unhealthy(why.clone())),
        (None, Some(why), _) => Some(NotStanding::LinkDown(why)),
        (None, None, Some(why)) => Some(NotStanding::Unplaced(why)),
        (None, None, None) => None,
    };
    ControlPlaneStanding {
        lease: cp.lease.clone(),
        placed,
        not_standing,
    }
}

/// The control-plane VIP's interface: `vip_interface`, else the one whose subnet holds it.
/// (`vip_servicesinterface` and the Service annotation are the Services'.)
pub fn control_plane_interface(
    vip: IpAddr,
    arp: &ArpSettings,
    links: &Links,
) -> Result<String, String> {
    if let Some(i) = &arp.interface {
        return Ok(i.clone());
    }
    if let Some(e) = &links.read_error {
        return Err(format!("cannot read the local interfaces: {e}"));
    }
    links.subnet_of.get(&vip).cloned().ok_or_else(|| {
        format!("no interface has a subnet holding the control-plane VIP {vip}: set vip_interface")
    })
}

/// Marks the DHCP Services this node does not lease for: not led here
/// ([`Skip::NotElected`]), or no parent for their macvlan here (why, as if served elsewhere).
pub fn gate(desired: &mut Desired, standing: &Standing, led: &BTreeSet<LeaseKey>, node: &str) {
    gate::gate(desired, &standing.dhcp, led, false);
    for (key, d) in desired.services.iter_mut() {
        if dhcp_plan::want(Some(d)) == Want::Lease && !standing.dhcp.contains_key(key) {
            let skip = standing
                .no_parent
                .get(key)
                .cloned()
                .unwrap_or_else(|| Skip::NoInterface {
                    note: format!(
                        "node {node} cannot serve the Service's other VIPs, so it does not lease for it"
                    ),
                });
            for (vip, why) in &mut d.not_announced {
                if vip.is_unspecified() {
                    *why = skip.clone();
                }
            }
            if d.announced.is_empty() {
                d.skip = Some(skip);
            }
        }
    }
}

/// The leased addresses to stop announcing before the DHCP clients are reconciled: those of
/// Services this node no longer leases for (after [`gate`]). Their client then stops without
/// RELEASE and its macvlan goes, with the address no longer answered for.
pub fn before_dhcp(
    claims: &BTreeMap<IpAddr, Claimed>,
    desired: &Desired,
    standing: &Standing,
) -> Vec<Step> {
    claims
        .iter()
        .filter(|(_, c)| {
            c.dhcp.as_ref().is_some_and(|k| {
                dhcp_plan::want(desired.services.get(k)) != Want::Lease
                    || !standing.dhcp.contains_key(k)
            })
        })
        .map(|(ip, _)| Step::Release(*ip))
        .collect()
}

/// The VIPs to hold (those of Services whose Lease this node leads and that it can serve, each
/// DHCP lease on its macvlan, `leased`, and the control-plane VIP while its Lease is led here
/// and this node still stands: it goes the moment the API server or the link fails) and the steps from `claims` and `elections` (the
/// Leases stood for now, with their eligibility): releases first, then the Leases no Service uses any more, then
/// standing, then the new claims.
pub fn hold(
    standing: &Standing,
    leading: &BTreeSet<LeaseKey>,
    leased: &BTreeMap<ServiceKey, (IpAddr, String)>,
    claims: &BTreeMap<IpAddr, Claimed>,
    elections: &BTreeMap<LeaseKey, bool>,
) -> (Wanted, Vec<Step>) {
    let mut wanted: Wanted = BTreeMap::new();
    for (key, lease) in &standing.lease_of {
        if !leading.contains(lease) {
            continue;
        }
        let on_macvlan = leased.get(key).cloned();
        let placed = standing.placed.get(key).into_iter().flatten().cloned();
        for (vip, ifname) in placed.chain(on_macvlan) {
            wanted
                .entry(vip)
                .or_insert_with(|| (ifname, BTreeSet::new()))
                .1
                .insert(key.clone());
        }
    }
    if let Some(cp) = &standing.control_plane {
        if leading.contains(&cp.lease) && cp.not_standing.is_none() {
            for (vip, ifname) in &cp.placed {
                wanted
                    .entry(*vip)
                    .or_insert_with(|| (ifname.clone(), BTreeSet::new()));
            }
        }
    }
    let mut steps = Vec::new();
    // Drop first: a VIP no longer wanted here, or wanted on another interface (claimed again
    // there below).
    let mut kept = BTreeSet::new();
    for (ip, c) in claims {
        if wanted
            .get(ip)
            .is_some_and(|(ifname, _)| *ifname == c.ifname)
        {
            kept.insert(*ip);
        } else {
            steps.push(Step::Release(*ip));
        }
    }
    steps.extend(
        gate::lease_steps(&standing.eligible, elections)
            .into_iter()
            .map(Step::Lease),
    );
    for (vip, (ifname, _)) in &wanted {
        if kept.contains(vip) {
            continue;
        }
        let dhcp = leased
            .iter()
            .find(|(_, (ip, _))| ip == vip)
            .map(|(k, _)| k.clone());
        steps.push(Step::Claim {
            vip: *vip,
            ifname: ifname.clone(),
            dhcp,
        });
    }
    (wanted, steps)
}

/// The interface DHCP macvlans sit on unless the Service names one.
pub fn default_parent(arp: &ArpSettings) -> Option<String> {
    let named = |i: &Option<String>| i.clone().filter(|i| i != "auto");
    named(&arp.services_interface).or_else(|| named(&arp.interface))
}

/// The parent of a DHCP Service's macvlan: `kube-vip.io/serviceInterface`, else
/// `vip_servicesinterface`, else `vip_interface`. There is no address yet to find a subnet by.
pub fn dhcp_parent(intent: &ServiceIntent, arp: &ArpSettings) -> Result<String, String> {
    intent
        .vlan
        .as_ref()
        .map(Vlan::name)
        .or_else(|| intent.interface.clone())
        .or_else(|| default_parent(arp))
        .ok_or_else(|| {
            format!(
                "a 0.0.0.0 (DHCP) Service needs the interface its macvlan sits on: set \
                 vip_servicesinterface, vip_interface or the {SERVICE_INTERFACE} annotation"
            )
        })
}

/// Whether this node can hold `key`'s DHCP lease: its macvlan's parent exists here, and no
/// start failed here lately.
fn lease_here(
    key: &ServiceKey,
    intent: &ServiceIntent,
    arp: &ArpSettings,
    node: &str,
    links: &Links,
    failing: &BTreeMap<ServiceKey, String>,
) -> Result<String, Skip> {
    let parent = dhcp_parent(intent, arp).map_err(|note| Skip::NoInterface { note })?;
    if !links.existing.contains(&parent) {
        return Err(Skip::NoInterface {
            note: format!(
                "interface {parent} (the DHCP macvlan's parent) does not exist on node {node}"
            ),
        });
    }
    match failing.get(key) {
        Some(note) => Err(Skip::DhcpFailed {
            note: format!("DHCP cannot start on node {node}: {note}; it stands again later"),
        }),
        None => Ok(parent),
    }
}

/// The VIP's interface: the Service's annotation, `vip_servicesinterface`, `vip_interface`,
/// else the interface whose subnet holds the VIP.
fn interface_for(
    intent: &ServiceIntent,
    vip: IpAddr,
    arp: &ArpSettings,
    links: &Links,
) -> Result<String, String> {
    // kube-vip's order: the VLAN, the interface annotation, `vip_servicesinterface`,
    // `vip_interface`; `auto` in the annotation or in `vip_servicesinterface` means the subnet
    // match, at once. A VLAN must exist (vipd creates it before planning, see [`vlans`]).
    if let Some(vlan) = &intent.vlan {
        let name = vlan.name();
        return if links.existing.contains(&name) {
            Ok(name)
        } else {
            Err(format!(
                "the VLAN interface {name} ({SERVICE_VLAN}) is missing here: its parent {} does not exist, or it could not be created (the log says why)",
                vlan.parent
            ))
        };
    }
    let named = if intent.interface_auto {
        None
    } else {
        match (
            intent.interface.as_deref(),
            arp.services_interface.as_deref(),
        ) {
            (Some(i), _) => Some(i),
            (None, Some("auto")) => None,
            (None, Some(i)) => Some(i),
            (None, None) => arp.interface.as_deref().filter(|i| *i != "auto"),
        }
    };
    if let Some(i) = named {
        return Ok(i.to_owned());
    }
    if let Some(e) = &links.read_error {
        return Err(format!("cannot read the local interfaces: {e}"));
    }
    links.subnet_of.get(&vip).cloned().ok_or_else(|| {
        format!("no interface has a subnet holding {vip}: set vip_servicesinterface or the {SERVICE_INTERFACE} annotation")
    })
}

/// Which interfaces a snapshot must say exist: the parents of the DHCP Services' macvlans and
/// the VLANs of Services.
pub fn parents_to_check(desired: &Desired, arp: &ArpSettings) -> BTreeSet<String> {
    let parents = desired
        .services
        .values()
        .filter(|d| dhcp_plan::want(Some(d)) == Want::Lease)
        .filter_map(|d| dhcp_parent(&d.intent, arp).ok());
    parents
        .chain(vlans(desired).iter().map(Vlan::name))
        .collect()
}

/// The VLAN sub-interfaces this node's Services need (`kube-vip.io/serviceVLAN`): those of
/// every Service of vipd's with a VIP, whether or not this node leads it or it has endpoints
/// now, so a node that takes a Lease over finds its interface in place. Any other VLAN vipd
/// made goes.
pub fn vlans(desired: &Desired) -> BTreeSet<Vlan> {
    let ours = |d: &&crate::decide::ServiceDecision| {
        !matches!(
            d.skip,
            Some(
                Skip::NotLoadBalancer { .. }
                    | Skip::Ignored
                    | Skip::ClassNotOurs { .. }
                    | Skip::ClassMissing { .. }
            )
        )
    };
    desired
        .services
        .values()
        .filter(|d| !d.vips.is_empty())
        .filter(ours)
        .filter_map(|d| d.intent.vlan.clone())
        .collect()
}

#[cfg(test)]
#[path = "arp_tests.rs"]
mod tests;

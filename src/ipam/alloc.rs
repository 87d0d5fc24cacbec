//! [pure] Which Service gets which address: [`plan`].
//!
//! Rules, in the order they apply:
//! 1. Which Services are vipd's, and which already have addresses, is what `decide` says (type,
//!    `kube-vip.io/ignore`, the `loadBalancerClass` rules; annotation `kube-vip.io/loadbalancerIPs`,
//!    else `spec.loadBalancerIP`). Other Services are neither allocated nor counted.
//! 2. Services are taken oldest first (`creationTimestamp`, then namespace/name), so the plan
//!    does not depend on the order they arrive in.
//! 3. Every address a Service of vipd's asks for is in use, inside a pool or not; `0.0.0.0`
//!    and `::` (DHCP) are not addresses and never count. A Service asking for an address an
//!    older one holds, when the two may not share, gets [`IpamProblem::AddressInUse`].
//! 4. A Service without an address gets one per family it wants (below), from the pools of
//!    its namespace first, then the global ones; in each, with sharing allowed, the first
//!    in-use address it may share, else the first free one, lowest first (highest with
//!    `search-order: desc`).
//! 5. Two Services may share an address only if it is IPv4, `allow-share` holds for both
//!    namespaces, both list ports and no port/protocol pair is in both.
//! 6. Like kube-vip-cloud-provider, an IPv4 address ending in `.0` or `.255` is never handed
//!    out (routers and clients treat them as network or broadcast), nor is `0.0.0.0` / `::`.
//!
//! Families: `ipFamilyPolicy` RequireDualStack wants both families or nothing,
//! PreferDualStack both if it can and one at least, anything else one. The first family is
//! `ipFamilies[0]`; without `ipFamilies`, IPv4 (IPv6 when only IPv6 pools serve the namespace).

use super::pools::{Family, Pools, Scope, SearchOrder};
use super::{Allocation, IpamPlan, IpamProblem};
use crate::decide::{self, ClusterView, DecideConfig, NodeCtx, ServiceKey, Skip};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// What the allocator wants written, given every Service and the ConfigMap's `data` (`None`:
/// the ConfigMap does not exist).
///
/// The Services must be the complete view (the reflector `InitDone`, the watch healthy): a
/// Service missing here is an address that looks free, and would be handed out twice.
pub fn plan(
    services: &[Arc<Service>],
    config: Option<&BTreeMap<String, String>>,
    cfg: &DecideConfig,
) -> IpamPlan {
    let pools = config.map(Pools::parse);
    let entries = entries(services, cfg);
    let mut state = State {
        pools: pools.as_ref(),
        entries: &entries,
        in_use: BTreeMap::new(),
        cursors: BTreeMap::new(),
    };
    let mut out = IpamPlan {
        config_problems: pools
            .as_ref()
            .map(|p| p.problems().cloned().collect())
            .unwrap_or_default(),
        ..IpamPlan::default()
    };

    // Rule 3: what is in use, before anything is handed out.
    for (i, entry) in entries.iter().enumerate() {
        let Claim::Holds(addresses) = &entry.claim else {
            continue;
        };
        for address in addresses {
            if let Some(holder) = state.conflict(i, address) {
                out.problems.entry(entry.key.clone()).or_default().push(
                    IpamProblem::AddressInUse {
                        address: *address,
                        holder: entries[holder].key.clone(),
                    },
                );
            }
            state.in_use.entry(*address).or_default().push(i);
        }
    }

    // Rule 4: addresses for the Services without.
    for (i, entry) in entries.iter().enumerate() {
        if !matches!(entry.claim, Claim::Pending) {
            continue;
        }
        let mut problems = Vec::new();
        if let Some(allocation) = state.allocate(i, &mut problems) {
            out.allocations.push(allocation);
        }
        if !problems.is_empty() {
            out.problems
                .entry(entry.key.clone())
                .or_default()
                .extend(problems);
        }
    }
    out
}

/// One Service of vipd's.
struct Entry<'a> {
    key: ServiceKey,
    svc: &'a Service,
    /// (port, protocol) pairs of `spec.ports`, protocol defaulting to TCP.
    ports: BTreeSet<(i32, String)>,
    claim: Claim,
}

enum Claim {
    /// No address asked for: the allocator's to fill.
    Pending,
    /// The addresses asked for (DHCP placeholders left out; possibly none, when every entry
    /// was unusable — `decide` reports those).
    Holds(Vec<IpAddr>),
}

/// The Services of vipd's, oldest first (rule 2).
fn entries<'a>(services: &'a [Arc<Service>], cfg: &DecideConfig) -> Vec<Entry<'a>> {
    // `decide` with no endpoints and a node without labels: only its reading of ownership and
    // addresses is used here, which depends on neither.
    let view = ClusterView {
        services,
        endpoint_slices: &[],
    };
    let decided = decide::desired(&view, &NodeCtx::from_node("", None), cfg).services;
    let mut by_key: BTreeMap<ServiceKey, &Service> = BTreeMap::new();
    for svc in services {
        if let Some(key) = ServiceKey::of(svc) {
            by_key.insert(key, svc);
        }
    }
    let mut out: Vec<Entry<'a>> = Vec::new();
    for (key, decision) in decided {
        let Some(svc) = by_key.get(&key).copied() else {
            continue;
        };
        let claim = match decision.skip {
            Some(
                Skip::NotLoadBalancer { .. }
                | Skip::Ignored
                | Skip::ClassNotOurs { .. }
                | Skip::ClassMissing { .. },
            ) => continue,
            // decide's reason exactly when neither the annotation nor spec.loadBalancerIP is set.
            Some(Skip::NoAddress) => Claim::Pending,
            _ => Claim::Holds(
                decision
                    .vips
                    .into_iter()
                    .filter(|ip| !ip.is_unspecified())
                    .collect(),
            ),
        };
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p.port,
                    p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                )
            })
            .collect();
        out.push(Entry {
            key,
            svc,
            ports,
            claim,
        });
    }
    out.sort_by(|a, b| (created(a.svc), &a.key).cmp(&(created(b.svc), &b.key)));
    out
}

fn created(svc: &Service) -> Option<&Time> {
    svc.metadata.creation_timestamp.as_ref()
}

struct State<'p, 'e, 'a> {
    pools: Option<&'p Pools>,
    entries: &'e [Entry<'a>],
    /// Address → the entries holding it, in order.
    in_use: BTreeMap<IpAddr, Vec<usize>>,
    /// Per (scope, family): where the last free-address search of this plan stopped. Addresses
    /// are only ever added to `in_use` within a plan, so nothing before it can have come free.
    cursors: BTreeMap<(String, Family), IpAddr>,
}

impl State<'_, '_, '_> {
    /// The first holder of `address` that entry `i` may not share it with.
    fn conflict(&self, i: usize, address: &IpAddr) -> Option<usize> {
        self.in_use
            .get(address)?
            .iter()
            .copied()
            .find(|&h| !self.may_share(i, h, address))
    }

    /// Rule 5.
    fn may_share(&self, a: usize, b: usize, address: &IpAddr) -> bool {
        let (a, b) = (&self.entries[a], &self.entries[b]);
        address.is_ipv4()
            && self
                .pools
                .is_some_and(|p| p.allow_share(&a.key.namespace) && p.allow_share(&b.key.namespace))
            && !a.ports.is_empty()
            && !b.ports.is_empty()
            && a.ports.is_disjoint(&b.ports)
    }

    fn allocate(&mut self, i: usize, problems: &mut Vec<IpamProblem>) -> Option<Allocation> {
        let entry = &self.entries[i];
        let Some(pools) = self.pools else {
            problems.push(IpamProblem::NoConfigMap);
            return None;
        };
        let namespace = &entry.key.namespace;
        problems.extend(
            pools
                .problems_for(namespace)
                .cloned()
                .map(IpamProblem::Pool),
        );

        let (stack, families) = families(entry.svc, pools, namespace);
        let mut picked = Vec::new();
        let mut failed = 0;
        for family in families {
            match self.pick(i, pools, family) {
                Ok(address) => picked.push(address),
                Err(problem) => {
                    failed += 1;
                    problems.push(problem);
                }
            }
        }
        let complete = match stack {
            Stack::RequireDual => failed == 0,
            Stack::Single | Stack::PreferDual => !picked.is_empty(),
        };
        if !complete {
            return None;
        }
        for address in &picked {
            self.in_use.entry(*address).or_default().push(i);
        }
        Some(Allocation {
            service: entry.key.clone(),
            resource_version: entry.svc.metadata.resource_version.clone(),
            addresses: picked,
            interface: pools.interface(namespace).map(str::to_owned),
        })
    }

    /// One address of `family` for entry `i` (rule 4).
    fn pick(&mut self, i: usize, pools: &Pools, family: Family) -> Result<IpAddr, IpamProblem> {
        let namespace = &self.entries[i].key.namespace;
        let scopes: Vec<&Scope> = pools
            .scopes_for(namespace)
            .filter(|s| !s.set(family).is_empty())
            .collect();
        if scopes.is_empty() {
            return Err(IpamProblem::NoPool {
                namespace: namespace.clone(),
                family,
            });
        }
        let share = family == Family::V4
            && pools.allow_share(namespace)
            && !self.entries[i].ports.is_empty();
        for scope in &scopes {
            if share {
                if let Some(address) = self.shareable(i, scope, pools.order) {
                    return Ok(address);
                }
            }
            if let Some(address) = self.free(scope, family, pools.order) {
                return Ok(address);
            }
        }
        Err(IpamProblem::Exhausted {
            family,
            keys: scopes
                .iter()
                .flat_map(|s| s.set(family).keys().iter().cloned())
                .collect(),
        })
    }

    /// The first in-use IPv4 address of `scope` entry `i` may share with all its holders.
    fn shareable(&self, i: usize, scope: &Scope, order: SearchOrder) -> Option<IpAddr> {
        let ok = |(address, holders): (&IpAddr, &Vec<usize>)| {
            (allocatable(address) && holders.iter().all(|&h| self.may_share(i, h, address)))
                .then_some(*address)
        };
        let ranges = scope.v4.ranges();
        match order {
            SearchOrder::Ascending => ranges
                .flat_map(|(lo, hi)| self.in_use.range(lo..=hi))
                .find_map(ok),
            SearchOrder::Descending => ranges
                .rev()
                .flat_map(|(lo, hi)| self.in_use.range(lo..=hi).rev())
                .find_map(ok),
        }
    }

    /// The first free allocatable address of `scope`'s `family` pool.
    fn free(&mut self, scope: &Scope, family: Family, order: SearchOrder) -> Option<IpAddr> {
        let cursor = (scope.name.clone(), family);
        let found = scope
            .set(family)
            .iter_from(order, self.cursors.get(&cursor))
            .find(|a| allocatable(a) && !self.in_use.contains_key(a));
        if let Some(address) = found {
            self.cursors.insert(cursor, address);
        }
        found
    }
}

/// Rule 6.
fn allocatable(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => !matches!(a.octets()[3], 0 | 255),
        IpAddr::V6(a) => !a.is_unspecified(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    Single,
    PreferDual,
    RequireDual,
}

/// The families a Service wants, first family first.
fn families(svc: &Service, pools: &Pools, namespace: &str) -> (Stack, Vec<Family>) {
    let spec = svc.spec.as_ref();
    let stack = match spec.and_then(|s| s.ip_family_policy.as_deref()) {
        Some("RequireDualStack") => Stack::RequireDual,
        Some("PreferDualStack") => Stack::PreferDual,
        _ => Stack::Single,
    };
    let first = match spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .map(String::as_str)
    {
        Some("IPv6") => Family::V6,
        Some(_) => Family::V4,
        // The API server always fills ipFamilies; without it, what kube-vip-cloud-provider
        // does: IPv4, unless only IPv6 pools serve the namespace.
        None => {
            let has = |f: Family| pools.scopes_for(namespace).any(|s| !s.set(f).is_empty());
            if stack == Stack::Single && !has(Family::V4) && has(Family::V6) {
                Family::V6
            } else {
                Family::V4
            }
        }
    };
    match stack {
        Stack::Single => (stack, vec![first]),
        Stack::PreferDual | Stack::RequireDual => (stack, vec![first, first.other()]),
    }
}

//! [pure] Address allocation from the kube-vip-cloud-provider ConfigMap, without a second
//! controller (issue 7). [`plan`] takes every Service and the ConfigMap's `data` and returns an
//! [`IpamPlan`]: the addresses to write on each LoadBalancer Service of vipd's that has none,
//! and typed problems for the Warning Events.
//!
//! - [`pools`]: the ConfigMap keys as address pools, malformed entries as [`PoolError`]s.
//! - `alloc`: which Service gets which address.
//! - [`task`] [I/O]: the allocator itself — elected through the Lease `vipd-ipam` by the
//!   crate's own fenced elector, it watches the Services and the ConfigMap and writes the plan.
//!
//! Nothing is remembered between plans: what is in use is read from the Services every time,
//! so a restart or a new leader never hands out an address twice. The same Services and
//! ConfigMap always give the same plan, whatever order the Services come in.
//!
//! Owns address allocation. May import [`crate::config`], [`crate::decide`],
//! [`crate::election`], [`crate::model`], [`crate::report`] and, in [`task`],
//! [`crate::kube`] and [`crate::observe`].

mod alloc;
pub mod pools;
pub mod task;
#[cfg(test)]
mod tests;

use crate::decide::ServiceKey;
use crate::model::annotation::{LOADBALANCER_IPS, SERVICE_INTERFACE};
use crate::model::label::{IMPLEMENTATION, IMPLEMENTATION_VALUE};
pub use alloc::plan;
pub use pools::{Family, PoolError, Pools};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// What the allocator wants written, and what it could not do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpamPlan {
    /// One per Service that gets addresses now, in allocation order.
    pub allocations: Vec<Allocation>,
    /// Per Service, what the I/O side raises as Warning Events (and logs). Only Services of
    /// vipd's appear; a Service without problems has no entry.
    pub problems: BTreeMap<ServiceKey, Vec<IpamProblem>>,
    /// Every unusable ConfigMap entry once, for the log line (the Services that read the key
    /// also carry it in `problems` when they need an address).
    pub config_problems: Vec<PoolError>,
}

/// The addresses for one Service. The I/O side writes, in one patch ([`Allocation::merge_patch`]):
/// annotation `kube-vip.io/loadbalancerIPs` = every address, `spec.loadBalancerIP` = the first
/// (for older agents), label `implementation: kube-vip`, and `kube-vip.io/serviceInterface`
/// when `interface` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub service: ServiceKey,
    /// The Service's `metadata.resourceVersion` the plan was made from: the patch carries it, so
    /// it fails with a conflict if the Service changed meanwhile (then the next plan decides).
    pub resource_version: Option<String>,
    /// One per family, the Service's first family first. Never empty.
    pub addresses: Vec<IpAddr>,
    pub interface: Option<String>,
}

impl Allocation {
    /// The annotation value: the addresses, comma-separated.
    pub fn annotation_value(&self) -> String {
        let list: Vec<String> = self.addresses.iter().map(IpAddr::to_string).collect();
        list.join(",")
    }

    /// The JSON merge patch (RFC 7386) that writes this allocation.
    pub fn merge_patch(&self) -> serde_json::Value {
        let mut annotations = serde_json::Map::new();
        annotations.insert(LOADBALANCER_IPS.to_owned(), self.annotation_value().into());
        if let Some(interface) = &self.interface {
            annotations.insert(SERVICE_INTERFACE.to_owned(), interface.clone().into());
        }
        let mut metadata = serde_json::Map::new();
        if let Some(rv) = &self.resource_version {
            metadata.insert("resourceVersion".to_owned(), rv.clone().into());
        }
        metadata.insert(
            "labels".to_owned(),
            serde_json::json!({ IMPLEMENTATION: IMPLEMENTATION_VALUE }),
        );
        metadata.insert("annotations".to_owned(), annotations.into());
        serde_json::json!({
            "metadata": metadata,
            "spec": { "loadBalancerIP": self.addresses.first().map(IpAddr::to_string) },
        })
    }
}

/// Why a Service got no address (or not every family), or why its own address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamProblem {
    /// The IPAM ConfigMap does not exist: only annotated Services have addresses.
    #[error(
        "the IPAM ConfigMap does not exist: no address is allocated; create it with cidr-global or cidr-<namespace>, or set annotation {LOADBALANCER_IPS}"
    )]
    NoConfigMap,
    /// Neither the namespace's keys nor the global ones hold addresses of this family.
    #[error(
        "no {family} pool serves namespace {namespace} (keys cidr-{namespace}, range-{namespace}, cidr-global, range-global)"
    )]
    NoPool { namespace: String, family: Family },
    /// Every allocatable address of the pools serving the namespace is taken.
    #[error(
        "every {family} address of {} is in use; no address is allocated",
        Keys(keys)
    )]
    Exhausted { family: Family, keys: Vec<String> },
    /// A ConfigMap entry this Service's namespace reads cannot be used as written.
    #[error(transparent)]
    Pool(PoolError),
    /// The Service asks (by annotation or `spec.loadBalancerIP`) for an address another
    /// Service, earlier in allocation order, already holds, and the two may not share it.
    #[error(
        "{address} is already used by Service {holder} and the two may not share it (sharing needs allow-share, IPv4 and ports that do not overlap)"
    )]
    AddressInUse { address: IpAddr, holder: ServiceKey },
}

impl IpamProblem {
    /// The CamelCase reason of the Warning Event.
    pub fn reason(&self) -> &'static str {
        match self {
            IpamProblem::NoConfigMap => "IPAMConfigMapMissing",
            IpamProblem::NoPool { .. } => "IPAMNoPool",
            IpamProblem::Exhausted { .. } => "IPAMPoolExhausted",
            IpamProblem::Pool(_) => "IPAMInvalidConfigMapEntry",
            IpamProblem::AddressInUse { .. } => "LoadBalancerIPInUse",
        }
    }
}

/// `cidr-a, range-global` (for messages).
struct Keys<'a>(&'a [String]);

impl fmt::Display for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

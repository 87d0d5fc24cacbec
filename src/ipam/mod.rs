//! [pure] Address allocation from the kube-vip-cloud-provider ConfigMap, without a second
//! controller (issue 7).
//!
//! - [`pools`]: the ConfigMap keys as address pools, malformed entries as [`PoolError`]s.

pub mod pools;
#[cfg(test)]
mod tests;

pub use pools::{Family, PoolError, Pools};

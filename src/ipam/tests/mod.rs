//! Tables for [`Pools::parse`](super::Pools::parse) and [`plan`](super::plan). Services are
//! written as the JSON a user applies; every case stands alone and compares whole results.
//!
//! - `pools`: each ConfigMap key, malformed entries.
//! - `alloc`: the guide's seed examples, allocation order, sharing, families, static addresses.
//! - `properties`: random histories of create, delete, type change, ConfigMap edit, restart.

use super::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

mod pools;

/// ConfigMap data from key/value pairs.
fn cm(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("fixture is an IP address")
}

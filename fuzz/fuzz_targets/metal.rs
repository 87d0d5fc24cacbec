//! Fuzz target: the legacy Equinix Metal provider's inputs: the CCM's `cloud-sa.json`
//! (`vipd_providers::equinix::cloud_config::CloudConfig::from_parts`, with and without the
//! environment's API key) and every JSON body the Metal API client deserializes
//! (`model::{DeviceList, Device, NeighborList, BgpConfig, Meta}`, error bodies through
//! `model::error_message`), then what is derived from them (`private_ipv4`, `peer_set`,
//! `device_id_from_provider_id`).
//!
//! Input: the bytes are both the `cloud-sa.json` text (when UTF-8) and an API response body.
//!
//! Asserted (besides "no panic"):
//! - the API key never shows, checked differentially: the file is read again with the key
//!   (`METAL_API_KEY`, or the file's own `apiKey`) set to two different secrets of the same
//!   shape, and the two outcomes must be identical in `Display` (errors) and `Debug` (the
//!   config, `MetalEnv`); a config's `Debug` is also unchanged by swapping its key;
//! - a valid config has a URL-safe project id and an http(s) base URL without a trailing `/`;
//! - the MD5 passwords of BGP neighbours never show in `Debug` (swapping them changes nothing),
//!   neither in the neighbour list nor in the peers made from it;
//! - peers from neighbours have distinct addresses and a local AS; peer routes go via the
//!   private gateway only to IPv4 peers off the private subnet;
//! - an error body that is not JSON is shown cut to 200 characters (plus '…').

#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use vipd_providers::equinix::cloud_config::{CloudConfig, CloudConfigError, MetalEnv};
use vipd_providers::equinix::model::{
    self, BgpConfig, Device, DeviceList, Family, Meta, NeighborList, PrivateNet,
};
use vipd_providers::{Password, PeerAddress};

const KEY_A: &str = "zQxMetalApiKeyAAzQx";
const KEY_B: &str = "zQxMetalApiKeyBBzQx";

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        cloud_sa(text);
    }
    api_bodies(data);
});

fn cloud_sa(text: &str) {
    // The file alone.
    match CloudConfig::from_parts(Some(text), MetalEnv::default()) {
        Ok(c) => check_config(&c),
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    // The key from the environment (which beats the file).
    let env = |key: &'static str| {
        MetalEnv::from_lookup(move |name| (name == "METAL_API_KEY").then(|| key.to_owned()))
    };
    let (env_a, env_b) = (env(KEY_A), env(KEY_B));
    assert_eq!(format!("{env_a:?}"), format!("{env_b:?}"), "MetalEnv's Debug shows the key");
    same_but_the_key(
        CloudConfig::from_parts(Some(text), env_a),
        CloudConfig::from_parts(Some(text), env_b),
        KEY_A,
    );

    // The key from the file: the same document with its `apiKey` (matched as from_parts
    // matches it: the first field named so, ignoring case) set to either secret.
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let Some(field) = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("apiKey"))
        .filter(|(_, v)| v.is_string())
        .map(|(k, _)| k.clone())
    else {
        return;
    };
    let with_key = |key: &str| {
        let mut m = map.clone();
        m.insert(field.clone(), Value::String(key.to_owned()));
        Value::Object(m).to_string()
    };
    same_but_the_key(
        CloudConfig::from_parts(Some(with_key(KEY_A).as_str()), MetalEnv::default()),
        CloudConfig::from_parts(Some(with_key(KEY_B).as_str()), MetalEnv::default()),
        KEY_A,
    );
}

fn same_but_the_key(
    a: Result<CloudConfig, CloudConfigError>,
    b: Result<CloudConfig, CloudConfigError>,
    key_a: &str,
) {
    match (a, b) {
        (Ok(ca), Ok(cb)) => {
            assert_eq!(format!("{ca:?}"), format!("{cb:?}"), "CloudConfig's Debug shows the key");
            assert_eq!(ca.api_key.expose_secret(), key_a);
            check_config(&ca);
        }
        (Err(ea), Err(eb)) => {
            assert_eq!(ea.to_string(), eb.to_string(), "a cloud-sa.json error shows the key")
        }
        (a, b) => panic!("the API key's value decided the outcome: {a:?} / {b:?}"),
    }
}

fn check_config(c: &CloudConfig) {
    let mut other = c.clone();
    other.api_key = Arc::new(SecretString::from(KEY_B.to_owned()));
    assert_eq!(format!("{c:?}"), format!("{other:?}"), "CloudConfig's Debug shows the key");
    assert!(
        !c.project_id.is_empty()
            && c.project_id.len() <= 64
            && c.project_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "project id {:?} is not URL-safe",
        c.project_id
    );
    assert!(
        (c.base_url.starts_with("https://") || c.base_url.starts_with("http://"))
            && !c.base_url.ends_with('/'),
        "base URL {:?}",
        c.base_url
    );
}

fn api_bodies(body: &[u8]) {
    if let Ok(list) = serde_json::from_slice::<DeviceList>(body) {
        let _ = list.meta.has_next();
        list.devices.iter().for_each(check_device);
    }
    if let Ok(device) = serde_json::from_slice::<Device>(body) {
        check_device(&device);
    }
    if let Ok(config) = serde_json::from_slice::<BgpConfig>(body) {
        let _ = config.state();
    }
    if let Ok(meta) = serde_json::from_slice::<Meta>(body) {
        let _ = meta.has_next();
    }
    if let Ok(neighbors) = serde_json::from_slice::<NeighborList>(body) {
        check_neighbors(&neighbors);
    }
    check_error_message(body);
}

fn check_device(d: &Device) {
    if let Some(p) = model::private_ipv4(d) {
        assert!(
            d.ip_addresses.iter().any(|a| a.address_family == 4
                && !a.public
                && a.address.parse::<Ipv4Addr>().ok() == Some(p.address)),
            "private address {} is not a private IPv4 entry",
            p.address
        );
        if let Some(subnet) = p.subnet {
            assert_eq!(subnet.addr(), p.address);
        }
    }
    if let Some(id) = model::device_id_from_provider_id(&d.id) {
        assert!(!id.is_empty() && !id.contains("://") && !id.contains('/'));
    }
}

fn check_neighbors(n: &NeighborList) {
    let mut swapped = n.clone();
    for nb in &mut swapped.bgp_neighbors {
        if nb.md5_password.is_some() {
            nb.md5_password = Some(Password::new(KEY_B.to_owned()));
        }
    }
    assert_eq!(format!("{n:?}"), format!("{swapped:?}"), "a neighbour's Debug shows its MD5 key");

    let private = PrivateNet {
        address: Ipv4Addr::new(10, 66, 29, 1),
        gateway: Some(Ipv4Addr::new(10, 66, 29, 0)),
        subnet: ipnet::Ipv4Net::new(Ipv4Addr::new(10, 66, 29, 1), 31).ok(),
    };
    let families: [&[Family]; 3] = [
        &[Family::Ipv4],
        &[Family::Ipv6],
        &[Family::Ipv4, Family::Ipv6],
    ];
    for families in families {
        for private in [None, Some(&private)] {
            let a = model::peer_set(&n.bgp_neighbors, families, private);
            let b = model::peer_set(&swapped.bgp_neighbors, families, private);
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "a peer's Debug shows its MD5 key");
            match a {
                Ok(set) => {
                    let addresses: BTreeSet<&PeerAddress> =
                        set.peers.iter().map(|p| &p.address).collect();
                    assert_eq!(addresses.len(), set.peers.len(), "one address, two sessions");
                    assert!(set.peers.iter().all(|p| p.local_as.is_some()));
                    match private {
                        None => assert!(set.routes.is_empty()),
                        Some(net) => {
                            for r in &set.routes {
                                let IpAddr::V4(dest) = r.destination else {
                                    panic!("a route to an IPv6 peer: {r:?}");
                                };
                                assert!(addresses.contains(&PeerAddress::Ip(r.destination)));
                                assert_eq!(net.gateway.map(IpAddr::V4), Some(r.gateway));
                                assert!(!net.subnet.is_some_and(|s| s.contains(&dest)));
                            }
                        }
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
}

fn check_error_message(body: &[u8]) {
    let message = model::error_message(body);
    // A body that cannot be JSON (its first non-blank byte opens neither an object nor an
    // array) is shown as text, shortened.
    let first = body
        .iter()
        .find(|b| !matches!(**b, b' ' | b'\t' | b'\n' | b'\r'))
        .copied();
    if !matches!(first, Some(b'{' | b'[')) {
        assert!(!message.is_empty());
        assert!(message.chars().count() <= 201, "{} characters", message.chars().count());
    }
}

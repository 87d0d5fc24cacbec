//! [pure] The Metal API's JSON (only the fields vipd reads; unknown fields are ignored) and its
//! translation into peers and peer routes.

use crate::feed::{PeerRoute, PeerSet};
use crate::peer::{Password, PeerAddress, PeerSpec};
use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// An address family of BGP sessions and neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// As `POST /devices/{id}/bgp/sessions` spells it.
    pub fn api_name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// As `bgp_neighbors[].address_family` spells it.
    pub fn number(self) -> u8 {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// `{"href": "…"}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Href {
    #[serde(default)]
    pub href: Option<String>,
}

/// Pagination of list responses.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Meta {
    #[serde(default)]
    pub next: Option<Href>,
    #[serde(default)]
    pub current_page: Option<u32>,
    #[serde(default)]
    pub last_page: Option<u32>,
    #[serde(default)]
    pub total: Option<u64>,
}

impl Meta {
    /// Whether another page follows: `meta.next` is present, or `current_page < last_page`.
    pub fn has_next(&self) -> bool {
        let by_href = self.next.as_ref().is_some_and(|n| n.href.is_some());
        let by_count = matches!((self.current_page, self.last_page), (Some(c), Some(l)) if c < l);
        by_href || by_count
    }
}

/// `GET /projects/{pid}/devices`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceList {
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub meta: Meta,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub ip_addresses: Vec<IpAssignment>,
}

/// One entry of a device's `ip_addresses`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct IpAssignment {
    pub address_family: u8,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub management: bool,
    pub address: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub cidr: Option<u8>,
    #[serde(default)]
    pub parent_block: Option<ParentBlock>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ParentBlock {
    pub network: String,
    pub cidr: u8,
}

/// `GET /devices/{id}/bgp/neighbors`.
#[derive(Debug, Clone, Deserialize)]
pub struct NeighborList {
    #[serde(default)]
    pub bgp_neighbors: Vec<BgpNeighbor>,
}

/// One neighbour entry: the routers of one address family.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct BgpNeighbor {
    pub address_family: u8,
    pub customer_as: u32,
    pub customer_ip: String,
    #[serde(default)]
    pub md5_enabled: bool,
    /// `null`, `""` or the key; kept secret from the moment it is parsed.
    #[serde(default, deserialize_with = "secret_password")]
    pub md5_password: Option<Password>,
    #[serde(default)]
    pub multihop: bool,
    pub peer_as: u32,
    #[serde(default)]
    pub peer_ips: Vec<String>,
}

fn secret_password<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Password>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|p| !p.is_empty())
        .map(Password::new))
}

/// `GET /projects/{pid}/bgp-config`: always 200, `{}` when BGP was never enabled.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct BgpConfig {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub asn: Option<u32>,
    #[serde(default)]
    pub deployment_type: Option<String>,
}

/// The project's BGP, as far as vipd cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectBgp {
    Enabled,
    /// Asked for, not yet provisioned.
    Requested,
    Disabled,
    NeverEnabled,
}

impl BgpConfig {
    /// Judged by `id` and `status`, not by the HTTP status (which is always 200).
    pub fn state(&self) -> ProjectBgp {
        if self.id.as_deref().is_none_or(str::is_empty) {
            return ProjectBgp::NeverEnabled;
        }
        match self.status.as_deref() {
            Some("disabled") => ProjectBgp::Disabled,
            Some("requested") => ProjectBgp::Requested,
            _ => ProjectBgp::Enabled,
        }
    }
}

/// The body of `POST /devices/{id}/bgp/sessions`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NewSession {
    pub address_family: &'static str,
    pub default_route: bool,
}

/// 4xx/5xx bodies: `{"errors": […]}` or `{"error": "…"}`.
#[derive(Debug, Clone, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The human message of an error body; non-JSON bodies are shown as (shortened) text.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        let mut msgs = parsed.errors;
        msgs.extend(parsed.error);
        if !msgs.is_empty() {
            return msgs.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// The device id in a Node's `spec.providerID`: `equinixmetal://<uuid>`, legacy
/// `packet://<uuid>`, or a bare UUID.
pub fn device_id_from_provider_id(provider_id: &str) -> Option<String> {
    let id = provider_id.trim();
    let id = id
        .strip_prefix("equinixmetal://")
        .or_else(|| id.strip_prefix("packet://"))
        .unwrap_or(id);
    let id = id.trim_start_matches('/');
    (!id.contains("://") && crate::equinix::cloud_config::is_api_id(id)).then(|| id.to_owned())
}

/// The device's private management IPv4: its address, gateway and subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivateNet {
    pub address: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    /// The directly connected subnet (the assignment's own, e.g. a /31).
    pub subnet: Option<Ipv4Net>,
}

/// The entry with `public == false && address_family == 4` (management first).
pub fn private_ipv4(device: &Device) -> Option<PrivateNet> {
    let mut candidates: Vec<&IpAssignment> = device
        .ip_addresses
        .iter()
        .filter(|a| a.address_family == 4 && !a.public)
        .collect();
    candidates.sort_by_key(|a| !a.management);
    candidates.into_iter().find_map(|a| {
        let address: Ipv4Addr = a.address.parse().ok()?;
        Some(PrivateNet {
            address,
            gateway: a.gateway.as_deref().and_then(|g| g.parse().ok()),
            subnet: a.cidr.and_then(|c| Ipv4Net::new(address, c).ok()),
        })
    })
}

/// A neighbour field the API sent that is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bgp_neighbors[{index}].{field}: {value:?} is not {expected}")]
pub struct NeighborError {
    pub index: usize,
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// The peers of `neighbors` for the given families, and routes to reach them through the
/// private gateway: one peer per `peer_ips` entry (sorted by address), `peer_as` as remote AS,
/// `customer_as` as local AS, `customer_ip` as source and router id (the routers answer only
/// the private address; cloud-provider-equinix-metal#178), the MD5 key, `multihop`.
pub fn peer_set(
    neighbors: &[BgpNeighbor],
    families: &[Family],
    private: Option<&PrivateNet>,
) -> Result<PeerSet, NeighborError> {
    let mut peers: Vec<PeerSpec> = Vec::new();
    for (index, n) in neighbors.iter().enumerate() {
        if !families.iter().any(|f| f.number() == n.address_family) {
            continue;
        }
        let bad = |field, value: &str, expected| NeighborError {
            index,
            field,
            value: value.to_owned(),
            expected,
        };
        let customer_ip: IpAddr = n
            .customer_ip
            .parse()
            .map_err(|_| bad("customer_ip", &n.customer_ip, "an IP address"))?;
        let mut ips = n
            .peer_ips
            .iter()
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| bad("peer_ips", s, "an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        ips.sort();
        for ip in ips {
            if peers.iter().any(|p| p.address == PeerAddress::Ip(ip)) {
                continue;
            }
            let mut spec = PeerSpec::new(ip, n.peer_as);
            spec.local_as = Some(n.customer_as);
            spec.password = n.md5_password.clone();
            spec.multihop = n.multihop;
            spec.source = (customer_ip.is_ipv4() == ip.is_ipv4()).then_some(customer_ip);
            spec.router_id = match customer_ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            };
            peers.push(spec);
        }
    }
    let routes = private.map(|p| peer_routes(&peers, p)).unwrap_or_default();
    Ok(PeerSet { peers, routes })
}

/// Host routes via the private gateway to every IPv4 peer that is not on the private subnet
/// (what users were told to add by hand: kube-vip#256).
pub fn peer_routes(peers: &[PeerSpec], private: &PrivateNet) -> Vec<PeerRoute> {
    let Some(gateway) = private.gateway else {
        return Vec::new();
    };
    peers
        .iter()
        .filter_map(|p| match p.address {
            PeerAddress::Ip(IpAddr::V4(v4)) => Some(v4),
            _ => None,
        })
        .filter(|v4| *v4 != gateway && !private.subnet.is_some_and(|s| s.contains(v4)))
        .map(|v4| PeerRoute {
            destination: IpAddr::V4(v4),
            gateway: IpAddr::V4(gateway),
            source: Some(IpAddr::V4(private.address)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// equinix-metal.md §3.2, verbatim.
    const DEVICES: &str = r#"{"devices":[{"id":"3b1c…","hostname":"worker-1","state":"active","metro":{"code":"sv","name":"Silicon Valley"},
  "ip_addresses":[
   {"address_family":4,"public":true,"management":true,"address":"147.75.197.69","gateway":"147.75.197.68",
    "network":"147.75.197.68","netmask":"255.255.255.254","cidr":31},
   {"address_family":4,"public":false,"management":true,"address":"10.66.29.1","gateway":"10.66.29.0",
    "network":"10.66.29.0","netmask":"255.255.255.254","cidr":31,
    "parent_block":{"network":"10.66.29.0","netmask":"255.255.255.128","cidr":25,"href":"/ips/9a0e…"}}],
  "href":"/metal/v1/devices/3b1c…"}],
 "meta":{"first":{"href":"…?page=1"},"last":{"href":"…?page=1"},"self":{"href":"…?page=1"},
  "total":1,"current_page":1,"last_page":1}}"#;

    const NEIGHBORS: &str = r#"{"bgp_neighbors":[{"address_family":4,"customer_as":65000,"customer_ip":"10.66.29.1","md5_enabled":false,
  "md5_password":"","multihop":true,"peer_as":65530,"peer_ips":["169.254.255.1","169.254.255.2"],
  "routes_in":[{"route":"198.51.100.17/32","exact":true}],"routes_out":[]}]}"#;

    #[test]
    fn the_documented_device_list_parses_and_gives_the_private_gateway() {
        let list: DeviceList = serde_json::from_str(DEVICES).unwrap();
        assert!(!list.meta.has_next());
        let d = &list.devices[0];
        assert_eq!(d.hostname, "worker-1");
        let p = private_ipv4(d).unwrap();
        assert_eq!(p.address, Ipv4Addr::new(10, 66, 29, 1));
        assert_eq!(p.gateway, Some(Ipv4Addr::new(10, 66, 29, 0)));
        assert_eq!(p.subnet, Some("10.66.29.1/31".parse().unwrap()));
    }

    #[test]
    fn the_documented_neighbours_become_peers_with_routes_via_the_private_gateway() {
        let list: NeighborList = serde_json::from_str(NEIGHBORS).unwrap();
        let devices: DeviceList = serde_json::from_str(DEVICES).unwrap();
        let private = private_ipv4(&devices.devices[0]).unwrap();
        let set = peer_set(&list.bgp_neighbors, &[Family::Ipv4], Some(&private)).unwrap();
        let want = |addr: &str| {
            let mut p = PeerSpec::new(addr.parse().unwrap(), 65530);
            p.local_as = Some(65000);
            p.multihop = true;
            p.source = Some("10.66.29.1".parse().unwrap());
            p.router_id = Some("10.66.29.1".parse().unwrap());
            p
        };
        assert_eq!(
            set.peers,
            vec![want("169.254.255.1"), want("169.254.255.2")]
        );
        let route = |addr: &str| PeerRoute {
            destination: addr.parse().unwrap(),
            gateway: "10.66.29.0".parse().unwrap(),
            source: Some("10.66.29.1".parse().unwrap()),
        };
        assert_eq!(
            set.routes,
            vec![route("169.254.255.1"), route("169.254.255.2")]
        );
        // IPv6 only: the IPv4 neighbour is not used.
        assert!(peer_set(&list.bgp_neighbors, &[Family::Ipv6], None)
            .unwrap()
            .peers
            .is_empty());
    }

    #[test]
    fn a_legacy_site_peer_on_the_private_subnet_needs_no_route() {
        let n: NeighborList = serde_json::from_str(r#"{"bgp_neighbors":[{"address_family":4,"customer_as":65000,
            "customer_ip":"10.66.29.1","md5_enabled":true,"md5_password":"s3cretPW","multihop":false,
            "peer_as":65530,"peer_ips":["10.66.29.0"]}]}"#).unwrap();
        let private = PrivateNet {
            address: Ipv4Addr::new(10, 66, 29, 1),
            gateway: Some(Ipv4Addr::new(10, 66, 29, 0)),
            subnet: Some("10.66.29.1/31".parse().unwrap()),
        };
        let set = peer_set(&n.bgp_neighbors, &[Family::Ipv4], Some(&private)).unwrap();
        assert!(set.routes.is_empty());
        assert_eq!(
            set.peers[0].password.as_ref().map(|p| p.expose()),
            Some("s3cretPW")
        );
        assert!(
            !format!("{n:?}").contains("s3cretPW"),
            "Debug must hide the MD5 key"
        );
    }

    #[test]
    fn a_null_password_and_bad_addresses() {
        let n: NeighborList = serde_json::from_str(r#"{"bgp_neighbors":[{"address_family":4,"customer_as":65000,
            "customer_ip":"10.0.0.1","md5_password":null,"peer_as":65530,"peer_ips":["10.0.0.300"]}]}"#).unwrap();
        assert_eq!(n.bgp_neighbors[0].md5_password, None);
        let e = peer_set(&n.bgp_neighbors, &[Family::Ipv4], None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bgp_neighbors[0].peer_ips: \"10.0.0.300\" is not an IP address"
        );
    }

    #[test]
    fn bgp_config_is_judged_by_id_and_status() {
        let parse = |s: &str| serde_json::from_str::<BgpConfig>(s).unwrap().state();
        assert_eq!(parse("{}"), ProjectBgp::NeverEnabled);
        assert_eq!(
            parse(
                r#"{"id":"c27a…","status":"enabled","deployment_type":"local","asn":65000,"md5":null,"max_prefix":10,
 "route_object":null,"ranges":[],"sessions":[],"project":{"href":"/metal/v1/projects/8d4e…"}}"#
            ),
            ProjectBgp::Enabled
        );
        assert_eq!(
            parse(r#"{"id":"c","status":"disabled"}"#),
            ProjectBgp::Disabled
        );
        assert_eq!(
            parse(r#"{"id":"c","status":"requested"}"#),
            ProjectBgp::Requested
        );
    }

    #[test]
    fn error_bodies_of_every_shape() {
        assert_eq!(
            error_message(br#"{"errors":["Invalid authentication token"]}"#),
            "Invalid authentication token"
        );
        assert_eq!(error_message(br#"{"errors":["a","b"]}"#), "a; b");
        assert_eq!(error_message(br#"{"error":"Not found"}"#), "Not found");
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(b""), "(empty body)");
        assert_eq!(
            error_message("x".repeat(300).as_bytes()).chars().count(),
            201
        );
    }

    #[test]
    fn pagination_by_next_or_by_page_counts() {
        let m: Meta = serde_json::from_str(r#"{"next":{"href":"/x?page=2"}}"#).unwrap();
        assert!(m.has_next());
        let m: Meta =
            serde_json::from_str(r#"{"current_page":1,"last_page":2,"next":null}"#).unwrap();
        assert!(m.has_next());
        let m: Meta = serde_json::from_str(r#"{"current_page":2,"last_page":2}"#).unwrap();
        assert!(!m.has_next());
    }

    #[test]
    fn provider_ids_of_every_form() {
        let id = "3b1c5e6a-0000-4000-8000-000000000001";
        assert_eq!(
            device_id_from_provider_id(&format!("equinixmetal://{id}")).as_deref(),
            Some(id)
        );
        assert_eq!(
            device_id_from_provider_id(&format!("packet://{id}")).as_deref(),
            Some(id)
        );
        assert_eq!(device_id_from_provider_id(id).as_deref(), Some(id));
        assert_eq!(device_id_from_provider_id("aws:///us-east-1a/i-0abc"), None);
        assert_eq!(device_id_from_provider_id(""), None);
    }
}

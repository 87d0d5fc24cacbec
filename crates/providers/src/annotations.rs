//! [pure] BGP peers from a Node's annotations, as the Equinix Metal CCM (or any operator using
//! the same key shape under its own prefix) writes them.
//!
//! Three generations are read, newest first; the first one with any key present decides:
//! 1. indexed (CCM ≥ 3.3): `PREFIX/bgp-peers-N-{node-asn,peer-asn,peer-ip,src-ip,bgp-pass,
//!    peer-multi-hop}`; every index is a complete peer with its own values (kube-vip reads only
//!    index 0's), ordered by index;
//! 2. lists (CCM 3.0–3.2): `PREFIX/{node-asn,peer-asn,peer-ip,src-ip,bgp-pass}`, `peer-ip` a
//!    comma list;
//! 3. packet-ccm: `PREFIX/{node.asn,peer.asns,peer.ips}` comma lists, no source or password;
//!    under `packet.com/` too when the prefix is `metal.equinix.com`.
//!
//! `peer-ip` may hold a comma list in every generation. `peer-multi-hop` may also be un-indexed
//! (`PREFIX/peer-multi-hop`, applying to every index). Passwords are standard base64; an error
//! names the key and never the value. Missing or empty required keys are not errors but
//! [`AnnotationPeers::Waiting`]: the CCM may not have written them yet, and the agent keeps
//! watching.

use crate::peer::{Password, PeerSpec};
use crate::static_peers::parse_bool;
use base64::Engine as _;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// The prefix whose nodes may still carry packet-ccm's `packet.com/` keys.
const EQUINIX_PREFIX: &str = "metal.equinix.com";
const PACKET_PREFIX: &str = "packet.com";

/// Which generation of keys the peers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// `PREFIX/bgp-peers-N-…` (CCM ≥ 3.3).
    Indexed,
    /// `PREFIX/peer-ip` etc. (CCM 3.0–3.2).
    Lists,
    /// `PREFIX/peer.ips` etc. (packet-ccm 1.x–2.0).
    Dotted,
}

/// A required key that is not there (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The full annotation key.
    pub key: String,
    /// Present but empty, rather than absent.
    pub empty: bool,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.empty {
            write!(f, "node annotation {} is empty", self.key)
        } else {
            write!(f, "node annotation {} is missing", self.key)
        }
    }
}

/// The outcome of reading the annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnotationPeers {
    /// Not (completely) written yet; keep watching.
    Waiting(Waiting),
    /// At least one complete peer. `source` and `router_id` come from `src-ip` (the caller lets
    /// `bgp_routerid` override the router id); `multihop` is as annotated (see
    /// [`apply_connected_multihop`]).
    Found {
        peers: Vec<PeerSpec>,
        generation: Generation,
    },
}

/// A value that is present but wrong. Names the key, and the value unless it is a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("node annotation {key}: {value:?} is not {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("node annotation {key}: {problem} (the value is not shown)")]
    BadPassword { key: String, problem: String },
    #[error("the annotation prefix is empty; give the part before '/', e.g. metal.equinix.com")]
    EmptyPrefix,
}

/// Reads this node's peers from its annotations under `prefix` (e.g. `metal.equinix.com`; any
/// prefix works). Call it again on every change of the Node.
pub fn peers_from_annotations(
    prefix: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<AnnotationPeers, AnnotationError> {
    let prefix = prefix.trim().trim_end_matches('/');
    if prefix.is_empty() {
        return Err(AnnotationError::EmptyPrefix);
    }
    let r = Reader {
        prefix,
        annotations,
    };
    if r.has_indexed() {
        return r.indexed();
    }
    if r.has_lists() {
        return r.lists();
    }
    // A node moved from packet-ccm to the Equinix CCM may still carry only packet.com keys.
    let fallback = (prefix == EQUINIX_PREFIX).then_some(PACKET_PREFIX);
    for p in std::iter::once(prefix).chain(fallback) {
        if DOTTED
            .iter()
            .any(|f| annotations.contains_key(&format!("{p}/{f}")))
        {
            return dotted(p, annotations);
        }
    }
    Ok(AnnotationPeers::Waiting(Waiting {
        key: format!("{prefix}/bgp-peers-0-peer-ip"),
        empty: false,
    }))
}

/// Whether a session to `peer` needs eBGP multihop: it is on none of the `connected` prefixes
/// (the addresses with prefix length of the node's interfaces).
pub fn needs_multihop(peer: IpAddr, connected: &[IpNet]) -> bool {
    !connected.iter().any(|net| net.contains(&peer))
}

/// Turns multihop on for every peer that is not on a connected subnet. The CCM never writes
/// `peer-multi-hop`, yet the Equinix routers (`169.254.255.1/2`) are two hops away.
pub fn apply_connected_multihop(peers: &mut [PeerSpec], connected: &[IpNet]) {
    for p in peers {
        if let crate::peer::PeerAddress::Ip(ip) = p.address {
            if needs_multihop(ip, connected) {
                p.multihop = true;
            }
        }
    }
}

const INDEXED_FIELDS: [&str; 6] = [
    "node-asn",
    "peer-asn",
    "peer-ip",
    "src-ip",
    "bgp-pass",
    "peer-multi-hop",
];
const LIST_FIELDS: [&str; 5] = ["node-asn", "peer-asn", "peer-ip", "src-ip", "bgp-pass"];
const DOTTED: [&str; 3] = ["node.asn", "peer.asns", "peer.ips"];

struct Reader<'a> {
    prefix: &'a str,
    annotations: &'a BTreeMap<String, String>,
}

/// The fields of one peer group (an index, or the whole list generation).
struct Group {
    node_asn: u32,
    peer_asn: u32,
    peer_ips: Vec<IpAddr>,
    src_ip: Option<IpAddr>,
    password: Option<Password>,
    multihop: bool,
}

impl<'a> Reader<'a> {
    fn key(&self, field: &str) -> String {
        format!("{}/{field}", self.prefix)
    }

    fn has_indexed(&self) -> bool {
        let start = format!("{}/bgp-peers-", self.prefix);
        self.annotations
            .range(start.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&start))
    }

    fn has_lists(&self) -> bool {
        LIST_FIELDS
            .iter()
            .any(|f| self.annotations.contains_key(&self.key(f)))
    }

    /// Present and non-empty, or Waiting.
    fn required(&self, key: &str) -> Result<&'a str, Waiting> {
        match self.annotations.get(key).map(|v| v.trim()) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(Waiting {
                key: key.to_owned(),
                empty: true,
            }),
            None => Err(Waiting {
                key: key.to_owned(),
                empty: false,
            }),
        }
    }

    fn optional(&self, key: &str) -> Option<&'a str> {
        self.annotations
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn indexed(&self) -> Result<AnnotationPeers, AnnotationError> {
        let start = format!("{}/bgp-peers-", self.prefix);
        let mut indices = BTreeSet::new();
        for key in self.annotations.keys() {
            let Some(rest) = key.strip_prefix(&start) else {
                continue;
            };
            let Some(field) = INDEXED_FIELDS
                .iter()
                .find(|f| rest.ends_with(&format!("-{f}")))
            else {
                continue; // a field we do not know: someone else's key
            };
            let index = &rest[..rest.len() - field.len() - 1];
            let n: usize = index.parse().map_err(|_| AnnotationError::BadValue {
                key: key.clone(),
                value: index.to_owned(),
                expected: "a peer index (the N of bgp-peers-N-…)",
            })?;
            indices.insert(n);
        }
        if indices.is_empty() {
            // Only keys of fields we do not know.
            return Ok(AnnotationPeers::Waiting(Waiting {
                key: format!("{start}0-peer-ip"),
                empty: false,
            }));
        }
        let mut peers = Vec::new();
        for n in indices {
            let k = |f: &str| format!("{start}{n}-{f}");
            let group = match self.group(
                &k("peer-ip"),
                &k("node-asn"),
                &k("peer-asn"),
                &k("src-ip"),
                &k("bgp-pass"),
                &[k("peer-multi-hop"), self.key("peer-multi-hop")],
            )? {
                Ok(g) => g,
                Err(waiting) => return Ok(AnnotationPeers::Waiting(waiting)),
            };
            push_group(&mut peers, group);
        }
        Ok(AnnotationPeers::Found {
            peers,
            generation: Generation::Indexed,
        })
    }

    fn lists(&self) -> Result<AnnotationPeers, AnnotationError> {
        let group = match self.group(
            &self.key("peer-ip"),
            &self.key("node-asn"),
            &self.key("peer-asn"),
            &self.key("src-ip"),
            &self.key("bgp-pass"),
            &[self.key("peer-multi-hop")],
        )? {
            Ok(g) => g,
            Err(waiting) => return Ok(AnnotationPeers::Waiting(waiting)),
        };
        let mut peers = Vec::new();
        push_group(&mut peers, group);
        Ok(AnnotationPeers::Found {
            peers,
            generation: Generation::Lists,
        })
    }

    /// One complete group, `Ok(Err(waiting))` if a required key is missing, `Err` on a bad value.
    fn group(
        &self,
        peer_ip: &str,
        node_asn: &str,
        peer_asn: &str,
        src_ip: &str,
        bgp_pass: &str,
        multihop: &[String],
    ) -> Result<Result<Group, Waiting>, AnnotationError> {
        let (ips, node, peer) = match (
            self.required(peer_ip),
            self.required(node_asn),
            self.required(peer_asn),
        ) {
            (Ok(i), Ok(n), Ok(p)) => (i, n, p),
            (Err(w), _, _) | (_, Err(w), _) | (_, _, Err(w)) => return Ok(Err(w)),
        };
        let peer_ips = parse_ip_list(peer_ip, ips)?;
        if peer_ips.is_empty() {
            // Only commas: as good as empty.
            return Ok(Err(Waiting {
                key: peer_ip.to_owned(),
                empty: true,
            }));
        }
        let node_asn = parse_asn(node_asn, node)?;
        let peer_asn = parse_asn(peer_asn, peer)?;
        let src_ip = self
            .optional(src_ip)
            .map(|v| parse_ip(src_ip, v))
            .transpose()?;
        let password = self
            .optional(bgp_pass)
            .map(|v| decode_password(bgp_pass, v))
            .transpose()?;
        let multihop = match multihop
            .iter()
            .find_map(|k| self.optional(k).map(|v| (k, v)))
        {
            Some((k, v)) => parse_bool(v).ok_or_else(|| AnnotationError::BadValue {
                key: k.clone(),
                value: v.to_owned(),
                expected: "a boolean (true/false)",
            })?,
            None => false,
        };
        Ok(Ok(Group {
            node_asn,
            peer_asn,
            peer_ips,
            src_ip,
            password,
            multihop,
        }))
    }
}

/// Adds one peer per address of `g`, skipping addresses already present (an address written at
/// two indices is one session: kube-vip#242).
fn push_group(peers: &mut Vec<PeerSpec>, g: Group) {
    for ip in g.peer_ips {
        if peers
            .iter()
            .any(|p| p.address == crate::peer::PeerAddress::Ip(ip))
        {
            continue;
        }
        let mut spec = PeerSpec::new(ip, g.peer_asn);
        spec.local_as = Some(g.node_asn);
        spec.password = g.password.clone();
        spec.multihop = g.multihop;
        // A source of the other family cannot be bound for this peer; the router id still can.
        spec.source = g.src_ip.filter(|s| s.is_ipv4() == ip.is_ipv4());
        spec.router_id = match g.src_ip {
            Some(IpAddr::V4(v4)) => Some(v4),
            _ => None,
        };
        peers.push(spec);
    }
}

/// packet-ccm's `node.asn`, `peer.asns`, `peer.ips` under `prefix`.
fn dotted(
    prefix: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<AnnotationPeers, AnnotationError> {
    let r = Reader {
        prefix,
        annotations,
    };
    let (ips_key, node_key, asns_key) = (r.key("peer.ips"), r.key("node.asn"), r.key("peer.asns"));
    let (ips, node, asns) = match (
        r.required(&ips_key),
        r.required(&node_key),
        r.required(&asns_key),
    ) {
        (Ok(i), Ok(n), Ok(a)) => (i, n, a),
        (Err(w), _, _) | (_, Err(w), _) | (_, _, Err(w)) => return Ok(AnnotationPeers::Waiting(w)),
    };
    let peer_ips = parse_ip_list(&ips_key, ips)?;
    if peer_ips.is_empty() {
        return Ok(AnnotationPeers::Waiting(Waiting {
            key: ips_key,
            empty: true,
        }));
    }
    let node_asn = parse_asn(&node_key, node)?;
    let asns = asns
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| parse_asn(&asns_key, a))
        .collect::<Result<Vec<u32>, _>>()?;
    // One AS for all peers, or one per peer in the same order.
    if asns.len() != 1 && asns.len() != peer_ips.len() {
        return Err(AnnotationError::BadValue {
            key: asns_key,
            value: asns
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            expected: "one AS, or one AS per address of peer.ips",
        });
    }
    let mut peers = Vec::new();
    for (i, ip) in peer_ips.into_iter().enumerate() {
        let peer_asn = asns[if asns.len() == 1 { 0 } else { i }];
        push_group(
            &mut peers,
            Group {
                node_asn,
                peer_asn,
                peer_ips: vec![ip],
                src_ip: None,
                password: None,
                multihop: false,
            },
        );
    }
    Ok(AnnotationPeers::Found {
        peers,
        generation: Generation::Dotted,
    })
}

fn parse_asn(key: &str, value: &str) -> Result<u32, AnnotationError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|a| *a != 0)
        .ok_or_else(|| AnnotationError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: "an AS number (1..4294967295)",
        })
}

fn parse_ip(key: &str, value: &str) -> Result<IpAddr, AnnotationError> {
    value.parse().map_err(|_| AnnotationError::BadValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected: "an IP address",
    })
}

fn parse_ip_list(key: &str, value: &str) -> Result<Vec<IpAddr>, AnnotationError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse().map_err(|_| AnnotationError::BadValue {
                key: key.to_owned(),
                value: v.to_owned(),
                expected: "an IP address (or a comma list of them)",
            })
        })
        .collect()
}

fn decode_password(key: &str, value: &str) -> Result<Password, AnnotationError> {
    let bad = |problem: &str| AnnotationError::BadPassword {
        key: key.to_owned(),
        problem: problem.to_owned(),
    };
    // The decoder's own message could quote a byte of the secret; say what is expected instead.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| bad("is not valid base64 (standard alphabet, with padding)"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| bad("decodes to bytes that are not UTF-8 text"))?;
    if text.len() > 80 {
        return Err(bad(&format!(
            "decodes to {} bytes; TCP-MD5 keys hold at most 80",
            text.len()
        )));
    }
    Ok(Password::new(text))
}

/// The router id an annotated peer set implies: the first peer's (`src-ip`), if any.
pub fn annotated_router_id(peers: &[PeerSpec]) -> Option<Ipv4Addr> {
    peers.iter().find_map(|p| p.router_id)
}

#[cfg(test)]
mod tests;

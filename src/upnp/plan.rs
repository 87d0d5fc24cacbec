//! [pure] Which port mappings should exist on the Internet gateway, and the steps from what is
//! installed to that.
//!
//! Every port of a Service annotated `kube-vip.io/forwardUPNP: "true"` becomes one mapping:
//! external port = Service port → VIP:port, same protocol, lease from
//! `kube-vip.io/upnp-lease-duration`. Mappings are re-added before their lease lapses (and
//! permanent ones re-asserted, since a rebooted router forgets them), and removed when the port,
//! the annotation or the Service goes away.

use crate::decide::ingress::IngressTarget;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// kube-vip's default lease, also used for an invalid or negative annotation.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3600);
/// Permanent mappings are re-asserted this often (kube-vip re-adds everything every 300 s).
pub const REASSERT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// A Service port's `protocol` (`TCP` when absent); SCTP cannot be mapped by IGD.
    pub fn from_service(protocol: Option<&str>) -> Option<Proto> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// A mapping on the gateway is identified by protocol and external port.
pub type Key = (Proto, u16);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub internal: SocketAddrV4,
    /// Zero: permanent.
    pub lease_secs: u32,
    /// `namespace/name` of the Service (the mapping's description on the gateway).
    pub service: String,
}

/// What one Service asks for, read from its spec and annotations by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpnpRequest {
    /// `namespace/name`.
    pub service: String,
    /// `kube-vip.io/forwardUPNP` is `"true"`.
    pub forward: bool,
    /// `kube-vip.io/upnp-lease-duration`, as written.
    pub lease_duration: Option<String>,
    /// The IPv4 VIP this node announces for the Service (IGD port mappings are IPv4 only).
    pub vip: Option<Ipv4Addr>,
    /// `(protocol, port)` of every Service port.
    pub ports: Vec<(Option<String>, i32)>,
}

/// Two Services want the same external port: the first (by name) keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub key: Key,
    pub kept: String,
    pub refused: String,
}

/// The mappings the requests ask for, and the conflicts among them.
pub fn desired(requests: &[UpnpRequest]) -> (BTreeMap<Key, Mapping>, Vec<Conflict>) {
    let mut sorted: Vec<&UpnpRequest> = requests.iter().collect();
    sorted.sort_by(|a, b| a.service.cmp(&b.service));
    let mut out = BTreeMap::new();
    let mut conflicts = Vec::new();
    for req in sorted {
        if !req.forward {
            continue;
        }
        let Some(vip) = req.vip else { continue };
        let lease_secs = lease_secs(req.lease_duration.as_deref());
        for (protocol, port) in &req.ports {
            let (Some(proto), Ok(port)) = (
                Proto::from_service(protocol.as_deref()),
                u16::try_from(*port),
            ) else {
                continue;
            };
            if port == 0 {
                continue;
            }
            let mapping = Mapping {
                internal: SocketAddrV4::new(vip, port),
                lease_secs,
                service: req.service.clone(),
            };
            match out.get(&(proto, port)) {
                Some(Mapping { service, .. }) if *service != req.service => {
                    conflicts.push(Conflict {
                        key: (proto, port),
                        kept: service.clone(),
                        refused: req.service.clone(),
                    });
                }
                _ => {
                    out.insert((proto, port), mapping);
                }
            }
        }
    }
    (out, conflicts)
}

/// `kube-vip.io/upnp-lease-duration` in seconds: a Go duration (`1h`, `90m`, `1h30m`, `45s`);
/// `0` is permanent; absent, invalid or negative is one hour (kube-vip's rule).
pub fn lease_secs(annotation: Option<&str>) -> u32 {
    let Some(text) = annotation.map(str::trim) else {
        return DEFAULT_LEASE.as_secs() as u32;
    };
    match parse_go_duration(text) {
        // Sub-second leases round up: 0 would silently make a mapping permanent.
        Some(d) if d.is_zero() => 0,
        Some(d) => u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX),
        None => DEFAULT_LEASE.as_secs() as u32,
    }
}

/// Go's `time.ParseDuration` for non-negative values: `0`, or number+unit groups with units
/// `ns us µs ms s m h` and optional fractions. `None` for anything else, including negatives.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (total.is_finite() && total < 1e12).then(|| Duration::from_secs_f64(total))
}

/// A mapping as installed on the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub mapping: Mapping,
    /// The lease the gateway accepted (0 after the permanent-lease fallback).
    pub granted_secs: u32,
    /// When to add it again.
    pub refresh_at: Instant,
}

/// When an installed mapping is re-added: at half its lease (well before it lapses, with time
/// for retries), and permanent ones every [`REASSERT`].
pub fn refresh_at(now: Instant, granted_secs: u32) -> Instant {
    let every = if granted_secs == 0 {
        REASSERT
    } else {
        (Duration::from_secs(u64::from(granted_secs)) / 2).clamp(Duration::from_secs(1), REASSERT)
    };
    now + every
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Remove(Key),
    /// Add (or re-add, which refreshes the lease) this mapping.
    Add(Key, Mapping),
}

/// Removals first (a port moving to another VIP is deleted, then added), then additions of what
/// is missing, changed or due for refresh.
pub fn steps(
    desired: &BTreeMap<Key, Mapping>,
    installed: &BTreeMap<Key, Installed>,
    now: Instant,
) -> Vec<Step> {
    let mut out = Vec::new();
    for (key, inst) in installed {
        match desired.get(key) {
            Some(want) if want.internal == inst.mapping.internal => {}
            _ => out.push(Step::Remove(*key)),
        }
    }
    for (key, want) in desired {
        let due = match installed.get(key) {
            None => true,
            Some(inst) => inst.mapping != *want || now >= inst.refresh_at,
        };
        if due {
            out.push(Step::Add(*key, want.clone()));
        }
    }
    out
}

/// The ingress a Service's status gets with UPnP: its VIPs, then the gateway's external address
/// when one of its ports is mapped (kube-vip lists the gateway's address too, so clients outside
/// the NAT find the Service).
pub fn with_external(target: IngressTarget, external: Option<IpAddr>) -> IngressTarget {
    let Some(ext) = external else { return target };
    let add = |mut v: Vec<IpAddr>| {
        if !v.contains(&ext) {
            v.push(ext);
        }
        v
    };
    match target {
        IngressTarget::Set(v) => IngressTarget::Set(add(v)),
        IngressTarget::SetIfEmpty(v) => IngressTarget::SetIfEmpty(add(v)),
        other => other,
    }
}

/// The earliest refresh among installed mappings.
pub fn next_refresh(installed: &BTreeMap<Key, Installed>) -> Option<Instant> {
    installed.values().map(|i| i.refresh_at).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);

    fn req(
        service: &str,
        forward: Option<&str>,
        lease: Option<&str>,
        ports: &[(&str, i32)],
    ) -> UpnpRequest {
        UpnpRequest {
            service: service.into(),
            forward: forward == Some("true"),
            lease_duration: lease.map(str::to_owned),
            vip: Some(VIP),
            ports: ports
                .iter()
                .map(|(p, n)| (Some(p.to_string()), *n))
                .collect(),
        }
    }

    fn mapping(port: u16, lease_secs: u32, service: &str) -> Mapping {
        Mapping {
            internal: SocketAddrV4::new(VIP, port),
            lease_secs,
            service: service.into(),
        }
    }

    #[test]
    fn every_port_of_an_annotated_service_is_mapped_and_nothing_else() {
        let (want, conflicts) = desired(&[
            req(
                "default/web",
                Some("true"),
                None,
                &[("TCP", 80), ("UDP", 53), ("SCTP", 9)],
            ),
            req("default/off", Some("false"), None, &[("TCP", 81)]),
            req("default/none", None, None, &[("TCP", 82)]),
        ]);
        assert!(conflicts.is_empty());
        assert_eq!(
            want,
            BTreeMap::from([
                ((Proto::Tcp, 80), mapping(80, 3600, "default/web")),
                ((Proto::Udp, 53), mapping(53, 3600, "default/web")),
            ])
        );
    }

    #[test]
    fn a_service_without_a_vip_here_maps_nothing() {
        let mut r = req("default/web", Some("true"), None, &[("TCP", 80)]);
        r.vip = None;
        assert!(desired(&[r]).0.is_empty());
    }

    #[test]
    fn missing_protocol_is_tcp_and_bad_ports_are_skipped() {
        let mut r = req(
            "default/web",
            Some("true"),
            None,
            &[("TCP", 0), ("TCP", 70000)],
        );
        r.ports.push((None, 8080));
        let (want, _) = desired(&[r]);
        assert_eq!(
            want.keys().copied().collect::<Vec<_>>(),
            vec![(Proto::Tcp, 8080)]
        );
    }

    #[test]
    fn the_first_service_by_name_keeps_a_contested_port() {
        let (want, conflicts) = desired(&[
            req("default/b", Some("true"), None, &[("TCP", 80)]),
            req("default/a", Some("true"), None, &[("TCP", 80)]),
        ]);
        assert_eq!(want[&(Proto::Tcp, 80)].service, "default/a");
        assert_eq!(
            conflicts,
            vec![Conflict {
                key: (Proto::Tcp, 80),
                kept: "default/a".into(),
                refused: "default/b".into()
            }]
        );
    }

    #[test]
    fn lease_annotation_follows_kube_vip() {
        assert_eq!(lease_secs(None), 3600);
        assert_eq!(lease_secs(Some("0")), 0);
        assert_eq!(lease_secs(Some("30m")), 1800);
        assert_eq!(lease_secs(Some("1h30m")), 5400);
        assert_eq!(lease_secs(Some("1.5h")), 5400);
        assert_eq!(lease_secs(Some("45s")), 45);
        assert_eq!(
            lease_secs(Some("500ms")),
            1,
            "sub-second rounds up, never permanent"
        );
        for bad in ["", "-1h", "1x", "h", "3600", "1h-5m", "abc"] {
            assert_eq!(lease_secs(Some(bad)), 3600, "{bad:?}");
        }
    }

    #[test]
    fn steps_add_missing_remove_gone_and_move_changed() {
        let now = Instant::now();
        let later = now + Duration::from_secs(100);
        let inst = |m: Mapping| Installed {
            granted_secs: m.lease_secs,
            mapping: m,
            refresh_at: later,
        };
        let want = BTreeMap::from([
            ((Proto::Tcp, 80), mapping(80, 3600, "default/web")),
            ((Proto::Tcp, 443), mapping(443, 3600, "default/web")),
        ]);
        let mut moved = mapping(443, 3600, "default/web");
        moved.internal = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 51), 443);
        let installed = BTreeMap::from([
            ((Proto::Tcp, 80), inst(mapping(80, 3600, "default/web"))),
            ((Proto::Tcp, 443), inst(moved)),
            ((Proto::Udp, 53), inst(mapping(53, 3600, "default/web"))),
        ]);
        assert_eq!(
            steps(&want, &installed, now),
            vec![
                Step::Remove((Proto::Tcp, 443)),
                Step::Remove((Proto::Udp, 53)),
                Step::Add((Proto::Tcp, 443), mapping(443, 3600, "default/web")),
            ]
        );
        // Nothing installed, nothing wanted: nothing to do.
        assert!(steps(&BTreeMap::new(), &BTreeMap::new(), now).is_empty());
    }

    #[test]
    fn mappings_are_re_added_when_due_or_when_their_lease_changes() {
        let now = Instant::now();
        let want = BTreeMap::from([((Proto::Tcp, 80), mapping(80, 3600, "default/web"))]);
        let installed = BTreeMap::from([(
            (Proto::Tcp, 80),
            Installed {
                mapping: mapping(80, 3600, "default/web"),
                granted_secs: 3600,
                refresh_at: refresh_at(now, 3600),
            },
        )]);
        assert!(steps(&want, &installed, now + Duration::from_secs(299)).is_empty());
        assert_eq!(
            steps(&want, &installed, now + Duration::from_secs(300)).len(),
            1
        );
        let shorter = BTreeMap::from([((Proto::Tcp, 80), mapping(80, 60, "default/web"))]);
        assert_eq!(
            steps(&shorter, &installed, now),
            vec![Step::Add((Proto::Tcp, 80), mapping(80, 60, "default/web"))]
        );
    }

    #[test]
    fn the_gateway_address_follows_the_vips_in_the_ingress() {
        let vip: IpAddr = "10.96.0.50".parse().unwrap();
        let ext: IpAddr = "198.18.1.1".parse().unwrap();
        assert_eq!(
            with_external(IngressTarget::Set(vec![vip]), Some(ext)),
            IngressTarget::Set(vec![vip, ext])
        );
        assert_eq!(
            with_external(IngressTarget::SetIfEmpty(vec![vip, ext]), Some(ext)),
            IngressTarget::SetIfEmpty(vec![vip, ext])
        );
        assert_eq!(
            with_external(IngressTarget::Clear, Some(ext)),
            IngressTarget::Clear
        );
        assert_eq!(
            with_external(IngressTarget::Leave, Some(ext)),
            IngressTarget::Leave
        );
        assert_eq!(
            with_external(IngressTarget::Set(vec![vip]), None),
            IngressTarget::Set(vec![vip])
        );
    }

    #[test]
    fn refresh_comes_at_half_the_lease_capped_and_permanent_ones_are_reasserted() {
        let now = Instant::now();
        assert_eq!(refresh_at(now, 60), now + Duration::from_secs(30));
        assert_eq!(refresh_at(now, 3600), now + REASSERT);
        assert_eq!(refresh_at(now, 0), now + REASSERT);
        assert_eq!(refresh_at(now, 1), now + Duration::from_secs(1));
    }
}

//! [pure] Which Services are vipd's (type, `kube-vip.io/ignore`, `loadBalancerClass`) and which
//! addresses a Service asks for.

use super::reasons::{AddressField, Problem, Skip};
use super::DecideConfig;
use crate::model::annotation::{IGNORE, LOADBALANCER_IPS};
use k8s_openapi::api::core::v1::Service;
use std::net::IpAddr;

/// Whether the Service is one vipd serves at all (compat §1 steps 1–2), checked in kube-vip's
/// order: type, ignore, class. `Err` = leave the Service alone; no address is read and no
/// Problem is raised, so vipd never posts Events on Services of other controllers.
pub(super) fn ours(svc: &Service, cfg: &DecideConfig) -> Result<(), Skip> {
    let spec = svc.spec.as_ref();
    let service_type = spec.and_then(|s| s.type_.as_deref());
    if service_type != Some("LoadBalancer") {
        // An absent spec or type is what the API defaults to ClusterIP; not ours.
        return Err(Skip::NotLoadBalancer {
            service_type: service_type.map(str::to_owned),
        });
    }
    if annotation(svc, IGNORE) == Some("true") {
        return Err(Skip::Ignored);
    }
    class_filter(spec.and_then(|s| s.load_balancer_class.as_deref()), cfg)
}

/// kube-vip's two class filters (`lbClassFilterLegacy` / `lbClassFilter` in
/// pkg/services/watch_services.go), chosen by `lb_class_legacy_handling`.
fn class_filter(class: Option<&str>, cfg: &DecideConfig) -> Result<(), Skip> {
    let ours = &cfg.lb_class_name;
    match class {
        Some(c) if c != ours => Err(Skip::ClassNotOurs {
            class: c.to_owned(),
            ours: ours.clone(),
        }),
        Some(_) => Ok(()),
        // Legacy: a Service without a class is served unless `lb_class_only`.
        None if cfg.lb_class_legacy_handling && !cfg.lb_class_only => Ok(()),
        // Non-legacy: "no class" matches only an empty class name (`lb_class_only` is not read).
        None if !cfg.lb_class_legacy_handling && ours.is_empty() => Ok(()),
        None => Err(Skip::ClassMissing { ours: ours.clone() }),
    }
}

/// A warning when `kube-vip.io/ignore` looks meant as true but is not exactly `"true"`.
///
/// kube-vip compares the exact string (`svc.Annotations[...] == "true"`), so `"True"` or `"1"`
/// leaves the Service served there. vipd does the same — treating them as true would withdraw
/// a Service that worked under kube-vip the moment vipd replaces it — and says so.
pub(super) fn ignore_near_miss(svc: &Service) -> Option<Problem> {
    let value = annotation(svc, IGNORE)?;
    let lower = value.trim().to_ascii_lowercase();
    let meant_true = matches!(lower.as_str(), "true" | "t" | "1" | "yes" | "y" | "on");
    (value != "true" && meant_true).then(|| Problem::IgnoreNotTrue {
        value: value.to_owned(),
    })
}

/// The addresses a Service asks for.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Requested {
    /// Where they were read from; `None` = neither source is set.
    pub field: Option<AddressField>,
    /// Parsed, canonical (IPv4-mapped IPv6 as IPv4), deduplicated, in the order given.
    /// The DHCP placeholders `0.0.0.0` / `::` are kept here; the caller skips them.
    pub vips: Vec<IpAddr>,
    pub problems: Vec<Problem>,
}

/// Annotation `kube-vip.io/loadbalancerIPs` if it has any non-empty entry; else, with
/// `status_is_source`, the IP entries of `status.loadBalancer.ingress` (unless
/// `spec.loadBalancerIP` names another address of the same family: the spec wins, as in
/// kube-vip's `FetchServiceAddresses`); else `spec.loadBalancerIP`.
///
/// The status is a source only when vipd writes none (`disable_service_updates`): vipd writes
/// it from what it announces, so reading it back would let an announcement keep itself alive
/// after the annotation or spec that asked for it is removed (with kube-vip's "status never
/// cleared" defect, compat §9, a VIP announced forever). With status updates off, what is
/// there is another controller's, and kube-vip users who run one rely on it being read.
pub(super) fn requested(svc: &Service, status_is_source: bool) -> Requested {
    let annotated =
        annotation(svc, LOADBALANCER_IPS).filter(|v| v.split(',').any(|e| !e.trim().is_empty()));
    let spec_ip = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|v| !v.trim().is_empty());
    let status = if status_is_source {
        super::ingress::current_ingress(svc)
    } else {
        Vec::new()
    };
    let spec_differs = spec_ip
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
        .is_some_and(|spec| {
            status
                .iter()
                .any(|s| s.is_ipv4() == spec.is_ipv4() && *s != spec)
        });
    let status_text = status
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(",");
    // Set but naming nothing: said, then read as absent (as kube-vip reads it).
    let mut empty = Vec::new();
    if let Some(v) = annotation(svc, LOADBALANCER_IPS).filter(|_| annotated.is_none()) {
        empty.push(Problem::NoAddressGiven {
            field: AddressField::Annotation,
            value: v.to_owned(),
        });
    }
    if let Some(v) = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|v| !v.is_empty() && v.trim().is_empty())
    {
        empty.push(Problem::NoAddressGiven {
            field: AddressField::Spec,
            value: v.to_owned(),
        });
    }
    let (field, raw) = match (annotated, spec_ip) {
        (Some(a), _) => (AddressField::Annotation, a),
        (None, _) if !status.is_empty() && !spec_differs => {
            (AddressField::Status, status_text.as_str())
        }
        (None, Some(s)) => (AddressField::Spec, s),
        (None, None) => {
            return Requested {
                problems: empty,
                ..Requested::default()
            }
        }
    };
    let mut out = Requested {
        field: Some(field),
        problems: empty,
        ..Requested::default()
    };
    // spec.loadBalancerIP holds one address; splitting it on ',' too is harmless and gives a
    // clearer message for "a,b" than "not an IP".
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match parse_entry(field, entry) {
            Ok(ip) if !out.vips.contains(&ip) => {
                let link_local = match ip {
                    IpAddr::V4(v4) => v4.is_link_local(),
                    IpAddr::V6(v6) => v6.is_unicast_link_local(),
                };
                if link_local {
                    out.problems
                        .push(Problem::LinkLocalAddress { field, value: ip });
                }
                out.vips.push(ip);
            }
            Ok(_) => {} // a repeated address asks for nothing more
            Err(p) => out.problems.push(p),
        }
    }
    out
}

fn parse_entry(field: AddressField, entry: &str) -> Result<IpAddr, Problem> {
    let Ok(ip) = entry.parse::<IpAddr>() else {
        return Err(if looks_like_hostname(entry) {
            Problem::UnsupportedHostname {
                field,
                value: entry.to_owned(),
            }
        } else {
            Problem::InvalidAddress {
                field,
                value: entry.to_owned(),
            }
        });
    };
    // Go's net.ParseIP treats "::ffff:a.b.c.d" as the IPv4 address a.b.c.d; so does kube-vip,
    // and announcing it as an IPv6 /128 would reach nobody.
    let ip = ip.to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_loopback() || ip.is_multicast() || broadcast {
        return Err(Problem::UnusableAddress { field, value: ip });
    }
    Ok(ip)
}

/// RFC 1123 host name shape (labels of letters, digits and '-', dot-separated, at least one
/// letter so "1.2.3" stays "not an IP address").
fn looks_like_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `true` for the DHCP placeholders `0.0.0.0` and `::` (compat §7).
pub(super) fn is_dhcp(ip: &IpAddr) -> bool {
    ip.is_unspecified()
}

pub(super) fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

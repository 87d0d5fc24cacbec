//! [pure] The control-plane VIP's settings (`cp_enable`): the VIP (`vip_address`/`address`), the
//! API server's `port`, and the health check that gates the announcement
//! (`control_plane_health_check_*`, kube-vip's names and defaults; vipd checks by default, at
//! `https://127.0.0.1:<port>/livez`, where kube-vip checks only when given an address).

use super::{err, flag, non_empty, ConfigError, RawSettings};
use crate::election::LeaseKey;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneSettings {
    /// The VIP(s): IPv4, IPv6 or one of each.
    pub vips: Vec<IpAddr>,
    /// The API server's port (`port`, 6443).
    pub port: u16,
    /// Where the VIP's address goes (`vip_interface`, else `lo`): the node must accept the
    /// API server's traffic to it.
    pub interface: String,
    /// `None` with `vipd_cp_health_check=false`: announced always, as kube-vip without
    /// `control_plane_health_check_address`.
    pub health: Option<ControlPlaneHealth>,
    /// The Lease that elects the holder: `cp_namespace` (kube-system) / `vip_leasename`
    /// (plndr-cp-lock).
    pub lease: LeaseKey,
    /// One elected node holds the VIP: always in ARP mode (two holders of one address on a
    /// LAN is never right, whatever `vip_leaderelection` says), in BGP mode with
    /// `vip_leaderelection`. Otherwise every node whose API server is healthy announces it.
    pub elected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneHealth {
    pub url: String,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub tls: TlsCheck,
}

/// How the health check's TLS is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsCheck {
    /// Against this CA (`control_plane_health_check_ca_path`).
    Ca(PathBuf),
    /// Against the system's roots: an https URL the operator wrote, without a CA (kube-vip's
    /// behaviour).
    SystemRoots,
    /// Not verified: vipd's default loopback URL (kube-apiserver's certificate seldom names
    /// 127.0.0.1; the check sends nothing secret).
    Skip,
}

/// `Some` with `cp_enable`. `vips` are `vip_address`'s, already parsed.
pub fn control_plane_settings(
    raw: &RawSettings,
    vips: &[IpAddr],
    arp: bool,
) -> Result<Option<ControlPlaneSettings>, ConfigError> {
    if !flag(&raw.cp_enable, "cp_enable (--controlplane)")? {
        return Ok(None);
    }
    if vips.is_empty() {
        return Err(err(
            "cp_enable (--controlplane)",
            "true",
            "needs the control-plane VIP: set vip_address (or address, --address)",
        ));
    }
    if vips.iter().filter(|v| v.is_ipv4()).count() > 1
        || vips.iter().filter(|v| v.is_ipv6()).count() > 1
    {
        return Err(err(
            "vip_address (--address)",
            &vips.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            "holds more than one address of a family: the control-plane VIP is one IPv4 and/or one IPv6 address",
        ));
    }
    let port = match non_empty(&raw.port) {
        None => 6443,
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| err("port (--port)", v, "is not a TCP port (1-65535)"))?,
    };
    let interface = non_empty(&raw.vip_interface).unwrap_or("lo").to_owned();
    let lease = LeaseKey {
        namespace: non_empty(&raw.cp_namespace)
            .unwrap_or("kube-system")
            .to_owned(),
        name: non_empty(&raw.vip_leasename)
            .unwrap_or("plndr-cp-lock")
            .to_owned(),
    };
    for (setting, value) in [
        ("cp_namespace (--namespace)", &lease.namespace),
        ("vip_leasename (--leaseName)", &lease.name),
    ] {
        if !is_dns_subdomain(value) {
            return Err(err(
                setting,
                value,
                "is not a Kubernetes object name (lower-case letters, digits, '-' and '.', at most 253)",
            ));
        }
    }
    let elected = arp
        || flag(
            &raw.vip_leaderelection,
            "vip_leaderelection (--leaderElection)",
        )?;
    let checked = match non_empty(&raw.vipd_cp_health_check) {
        None => true,
        Some(_) => flag(
            &raw.vipd_cp_health_check,
            "vipd_cp_health_check (--cp-health-check)",
        )?,
    };
    let given_url = non_empty(&raw.control_plane_health_check_address);
    if !checked && given_url.is_none() {
        return Ok(Some(ControlPlaneSettings {
            vips: vips.to_vec(),
            port,
            interface,
            health: None,
            lease,
            elected,
        }));
    }
    let seconds = |v: &Option<String>, setting: &str, default: u64| -> Result<u64, ConfigError> {
        match non_empty(v) {
            None => Ok(default),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=3600).contains(n))
                .ok_or_else(|| {
                    err(
                        setting,
                        s,
                        "is not a whole number of seconds from 1 to 3600",
                    )
                }),
        }
    };
    let period = seconds(
        &raw.control_plane_health_check_period_seconds,
        "control_plane_health_check_period_seconds (--controlPlaneHealthCheckPeriodSeconds)",
        5,
    )?;
    let timeout = seconds(
        &raw.control_plane_health_check_timeout_seconds,
        "control_plane_health_check_timeout_seconds (--controlPlaneHealthCheckTimeoutSeconds)",
        3,
    )?;
    let threshold = match non_empty(&raw.control_plane_health_check_failure_threshold) {
        None => 3,
        Some(s) => s.parse::<u32>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
            err(
                "control_plane_health_check_failure_threshold (--controlPlaneHealthCheckFailureThreshold)",
                s,
                "is not a count of failures from 1 to 100",
            )
        })?,
    };
    let ca = non_empty(&raw.control_plane_health_check_ca_path).map(PathBuf::from);
    let (url, tls) = match given_url {
        Some(url) => {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err(err(
                    "control_plane_health_check_address (--controlPlaneHealthCheckAddress)",
                    url,
                    "is not an http:// or https:// URL (such as https://127.0.0.1:6443/livez)",
                ));
            }
            (
                url.to_owned(),
                ca.map(TlsCheck::Ca).unwrap_or(TlsCheck::SystemRoots),
            )
        }
        None => {
            // The loopback of the VIP's family: an IPv6-only control plane has no 127.0.0.1.
            let host = if vips.iter().any(IpAddr::is_ipv4) {
                "127.0.0.1"
            } else {
                "[::1]"
            };
            (
                format!("https://{host}:{port}/livez"),
                ca.map(TlsCheck::Ca).unwrap_or(TlsCheck::Skip),
            )
        }
    };
    Ok(Some(ControlPlaneSettings {
        vips: vips.to_vec(),
        port,
        interface,
        health: Some(ControlPlaneHealth {
            url,
            period: Duration::from_secs(period),
            timeout: Duration::from_secs(timeout),
            failure_threshold: threshold,
            tls,
        }),
        lease,
        elected,
    }))
}

/// A DNS-1123 subdomain, as Kubernetes names (and namespaces, which are labels, a subset)
/// must be: the API server would refuse the Lease otherwise, on every retry.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

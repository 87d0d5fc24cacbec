//! [pure] Turns raw settings (kube-vip's environment variables and flags, as strings) into a
//! checked [`Config`]. Every error names the setting, the value and what is wrong with it, and
//! never shows a password.
//!
//! By concern: [`bgp`] (the speaker, its peers, the Metal provider), [`services`] (services
//! mode, ARP, IPAM, elections), [`values`] (VIP lists, log levels, listen addresses); this file
//! holds the raw settings, the whole [`Config`] and [`validate`].
//!
//! Owns the checked settings. May import only pure vocabulary ([`crate::bgp::types`],
//! [`crate::election`]'s timing); nothing here touches the network or the cluster.

mod bgp;
mod control_plane;
pub mod kube_vip;
mod services;
#[cfg(test)]
mod tests;
mod values;

use bgp::bgp_settings;
pub use bgp::{BgpSettings, MetalSettings, RouterIdSource, DEFAULT_UNREADY_AFTER};
use control_plane::control_plane_settings;
pub use control_plane::{ControlPlaneHealth, ControlPlaneSettings, TlsCheck};
use services::{control_plane_only, node_name, services_settings};
pub use services::{ArpSettings, ElectionScope, IpamSettings, IpamStandalone, ServicesSettings};
use values::log_filter;
pub use values::{listen_address, parse_vip_list};

use std::net::IpAddr;
use std::path::PathBuf;
use vipd_providers::static_peers::parse_bool;

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {value:?} {reason}")]
pub struct ConfigError {
    /// Env var and flag, e.g. `bgp_as (--localAS)`.
    pub setting: String,
    /// The value as given (`*****` for secrets).
    pub value: String,
    pub reason: String,
}

pub(super) fn err(setting: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Every setting as given, before checking. `None` = not set.
#[derive(Debug, Default, Clone)]
pub struct RawSettings {
    pub svc_enable: Option<String>,
    pub vip_arp: Option<String>,
    pub bgp_enable: Option<String>,
    pub bgp_as: Option<String>,
    pub bgp_routerid: Option<String>,
    pub bgp_routerinterface: Option<String>,
    pub bgp_peers: Option<String>,
    pub bgp_peeraddress: Option<String>,
    pub bgp_peeras: Option<String>,
    pub bgp_peerpass: Option<String>,
    pub bgp_multihop: Option<String>,
    pub bgp_sourceip: Option<String>,
    pub bgp_sourceif: Option<String>,
    pub bgp_hold_time: Option<String>,
    pub bgp_keepalive_interval: Option<String>,
    pub bgp_passive: Option<String>,
    pub bgp_listen_port: Option<String>,
    pub bgp_unready_after: Option<String>,
    /// vipd's own: graceful restart's restart time (0: none) and LLGR's stale time.
    pub bgp_restart_time: Option<String>,
    pub bgp_llgr_stale_time: Option<String>,
    /// vipd's own: BFD for peers that set none (`enable;rxMs;txMs;multiplier`).
    pub bfd: Option<String>,
    /// vipd's own: seconds a leaving node's routes stay (marked) before they are withdrawn.
    pub bgp_drain_time: Option<String>,
    pub mpbgp_nexthop: Option<String>,
    pub mpbgp_ipv4: Option<String>,
    pub mpbgp_ipv6: Option<String>,
    pub vip_address: Option<String>,
    pub vip_file: Option<String>,
    /// `cp_enable`: `vip_address` is the control-plane VIP.
    pub cp_enable: Option<String>,
    /// kube-vip's `port`: the API server's (6443).
    pub port: Option<String>,
    pub control_plane_health_check_address: Option<String>,
    pub control_plane_health_check_period_seconds: Option<String>,
    pub control_plane_health_check_timeout_seconds: Option<String>,
    pub control_plane_health_check_failure_threshold: Option<String>,
    pub control_plane_health_check_ca_path: Option<String>,
    /// vipd's own: `false` announces the control-plane VIP without a health check.
    pub vipd_cp_health_check: Option<String>,
    /// The control-plane Lease's namespace (`cp_namespace`, kube-system) and name
    /// (`vip_leasename`, plndr-cp-lock).
    pub cp_namespace: Option<String>,
    pub vip_leasename: Option<String>,
    /// `vip_leaderelection`: in BGP mode, only the control-plane Lease's holder announces.
    pub vip_leaderelection: Option<String>,
    /// `kubernetes_addr`: the API server this agent talks to (host:port), instead of the
    /// kubeconfig's.
    pub kubernetes_addr: Option<String>,
    pub vip_loglevel: Option<String>,
    pub svc_namespace: Option<String>,
    pub vip_nodename: Option<String>,
    /// The host name, read by the caller (this module does no I/O): the node name by default.
    pub hostname: Option<String>,
    pub k8s_config_file: Option<String>,
    pub lb_class_only: Option<String>,
    pub lb_class_name: Option<String>,
    pub lb_class_legacy_handling: Option<String>,
    pub bgp_attach_ip_to_interface: Option<String>,
    pub vip_interface: Option<String>,
    pub disable_service_updates: Option<String>,
    /// vipd's own: honour `node.kubernetes.io/exclude-from-external-load-balancers`.
    pub vipd_honour_exclude_label: Option<String>,
    /// vipd's own: clear the ingress of a Service no endpoint serves.
    pub vipd_clear_ingress_without_endpoints: Option<String>,
    pub enable_node_labeling: Option<String>,
    /// kube-vip's `annotation`: peers from this node's annotations under this prefix.
    pub annotation: Option<String>,
    pub vip_packet: Option<String>,
    pub provider_config: Option<String>,
    pub metal_peer_routes: Option<String>,
    pub prometheus_server: Option<String>,
    /// kube-vip's `health_check_port`: `/healthz` on `[::]:<port>` too (every address); 0 = off.
    pub health_check_port: Option<String>,
    pub lb_ipam: Option<String>,
    pub lb_ipam_configmap: Option<String>,
    pub lb_ipam_namespace: Option<String>,
    /// `POD_NAMESPACE` (the manifest sets it): where the Leases of this agent live.
    pub pod_namespace: Option<String>,
    /// The ServiceAccount's namespace file (`/var/run/secrets/kubernetes.io/serviceaccount/
    /// namespace`), read by the caller: where kube-vip puts its Leases.
    pub sa_namespace: Option<String>,
    pub svc_election: Option<String>,
    pub svc_leasename: Option<String>,
    pub vip_leaseduration: Option<String>,
    pub vip_renewdeadline: Option<String>,
    pub vip_retryperiod: Option<String>,
    /// `vip_arpRate` (milliseconds).
    pub vip_arp_rate: Option<String>,
    pub vip_servicesinterface: Option<String>,
    /// `vip_subnet`: ARP mode's address masks.
    pub vip_subnet: Option<String>,
    /// Routing-table mode: `vip_routingtable` and its table, route type and protocol;
    /// `vip_cleanroutingtable` (vipd always removes its stale routes: checked, then unused).
    pub vip_routingtable: Option<String>,
    pub vip_routingtableid: Option<String>,
    pub vip_routingtabletype: Option<String>,
    pub vip_routingprotocol: Option<String>,
    pub vip_cleanroutingtable: Option<String>,
    /// `enable_upnp` (or the guide's `enableUPNP`, which kube-vip ignores).
    pub enable_upnp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bgp: BgpSettings,
    /// `Some` in services mode; the static VIPs are then not announced.
    pub services: Option<ServicesSettings>,
    /// This node's name: `vip_nodename`, else the host name lowercased. Needed by services mode
    /// and the node-annotation peers.
    pub node_name: Option<String>,
    /// `k8s_config_file`; `None` = the usual kubeconfig search, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// `kubernetes_addr`, and the control plane's port (see [`crate::kube::client`]).
    pub kube_server: ServerOverride,
    /// `vip_leaderelection=true` without `cp_enable`: asks for nothing here (named at start).
    pub leader_election_without_control_plane: bool,
    /// `vip_subnet` asks for masks outside ARP mode, where vipd puts host addresses only.
    pub vip_subnet_outside_arp: bool,
    /// `Some` with `vip_packet` / `--metal`: peers from the Equinix Metal API.
    pub metal: Option<MetalSettings>,
    /// `prometheus_server`: where /healthz and /readyz are served; `None` = off.
    pub http: Option<std::net::SocketAddr>,
    /// `health_check_port`: the same endpoint on this port of every address (kube-vip's
    /// `/healthz` port, for livenessProbes written against kube-vip); `None` = off.
    pub health: Option<std::net::SocketAddr>,
    /// `cp_enable`: the control-plane VIP (`vip_address`), health-gated.
    pub control_plane: Option<ControlPlaneSettings>,
    /// Static VIPs from `vip_address` (without `cp_enable`).
    pub vips: Vec<IpAddr>,
    /// More static VIPs, one per line; re-read on SIGHUP.
    pub vip_file: Option<PathBuf>,
    /// A `tracing` filter directive.
    pub log_filter: String,
}

/// Where the API server is, if not where the kubeconfig says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOverride {
    /// `kubernetes_addr`: host:port (https) or a URL.
    pub address: Option<String>,
    /// `cp_enable`'s `port`: with the host's admin.conf, `kubernetes:<port>`.
    pub control_plane_port: Option<u16>,
}

pub fn validate(raw: &RawSettings) -> Result<Config, ConfigError> {
    let arp = flag(&raw.vip_arp, "vip_arp (--arp)")?;
    let bgp_on = flag(&raw.bgp_enable, "bgp_enable (--bgp)")?;
    if arp && bgp_on {
        return Err(err(
            "vip_arp (--arp)",
            "true",
            "and bgp_enable are both set: kube-vip runs exactly one mode; choose one",
        ));
    }
    let table = flag(&raw.vip_routingtable, "vip_routingtable (--table)")?;
    if table && (arp || bgp_on) {
        return Err(err(
            "vip_routingtable (--table)",
            "true",
            if arp {
                "and vip_arp are both set: kube-vip runs exactly one mode; choose one"
            } else {
                "and bgp_enable are both set: kube-vip runs exactly one mode; choose one"
            },
        ));
    }
    let svc_on = flag(&raw.svc_enable, "svc_enable (--services)")?;
    let cp_on = flag(&raw.cp_enable, "cp_enable (--controlplane)")?;
    if arp && !svc_on && !cp_on {
        return Err(err(
            "vip_arp (--arp)",
            "true",
            "announces the VIPs of LoadBalancer Services or the control plane: set svc_enable=true (--services), cp_enable=true (--controlplane), or both",
        ));
    }
    if !arp && !bgp_on && !table {
        return Err(err(
            "bgp_enable (--bgp)",
            raw.bgp_enable.as_deref().unwrap_or(""),
            "is not set: no mode is enabled. Set bgp_enable=true (--bgp), vip_arp=true (--arp) or vip_routingtable=true (--table)",
        ));
    }
    // Checked in every mode, though only services mode reads it: a typo is never taken as false.
    flag(
        &raw.bgp_attach_ip_to_interface,
        "bgp_attach_ip_to_interface (--bgpAttachIPToInterface)",
    )?;
    let bgp = bgp_settings(raw, bgp_on)?;
    let vips = match &raw.vip_address {
        Some(v) => parse_vip_list(v, "vip_address (--address)")?,
        None => Vec::new(),
    };
    let control_plane = control_plane_settings(raw, &vips, arp)?;
    // With cp_enable, vip_address is the control-plane VIP, not a static one.
    let vips = if control_plane.is_some() {
        Vec::new()
    } else {
        vips
    };
    // An elected control-plane VIP needs the owner loop's Leases: services mode runs for it
    // alone, watching no Service.
    let services = if svc_on {
        Some(services_settings(raw)?)
    } else if control_plane.as_ref().is_some_and(|cp| cp.elected) {
        Some(control_plane_only(raw)?)
    } else {
        None
    };
    if table && services.is_none() {
        return Err(err(
            "vip_routingtable (--table)",
            "true",
            "routes the VIPs of LoadBalancer Services or an elected control-plane VIP: set svc_enable=true (--services), or cp_enable=true with vip_leaderelection=true",
        ));
    }
    let metal = if flag(&raw.vip_packet, "vip_packet (--metal)")? {
        Some(MetalSettings {
            provider_config: non_empty(&raw.provider_config).map(PathBuf::from),
            peer_routes: flag(
                &raw.metal_peer_routes,
                "metal_peer_routes (--metal-peer-routes)",
            )?,
        })
    } else {
        None
    };
    let node_name = match (&services, bgp.annotations.is_some() || metal.is_some()) {
        (Some(s), _) => Some(s.node_name.clone()),
        (None, true) => Some(node_name(raw)?),
        (None, false) => None,
    };
    Ok(Config {
        bgp,
        services,
        node_name,
        kubeconfig: non_empty(&raw.k8s_config_file).map(PathBuf::from),
        vip_subnet_outside_arp: {
            let masks = services::vip_masks(raw)?;
            if !arp
                && (masks.v4 == crate::model::Mask::Auto || masks.v6 == crate::model::Mask::Auto)
            {
                return Err(err(
                    "vip_subnet (--vipSubnet)",
                    raw.vip_subnet.as_deref().unwrap_or(""),
                    "asks for auto, which only ARP mode (vip_arp=true) can use, as in kube-vip",
                ));
            }
            !arp && !masks.is_host()
        },
        leader_election_without_control_plane: control_plane.is_none()
            && flag(
                &raw.vip_leaderelection,
                "vip_leaderelection (--leaderElection)",
            )?,
        kube_server: ServerOverride {
            address: non_empty(&raw.kubernetes_addr).map(str::to_owned),
            control_plane_port: control_plane.as_ref().map(|cp| cp.port),
        },
        metal,
        http: match non_empty(&raw.prometheus_server) {
            None => None,
            Some(v) => Some(listen_address(v).ok_or_else(|| {
                err(
                    "prometheus_server (--prometheusHTTPServer)",
                    v,
                    "is not an address with a port (:2112, 0.0.0.0:2112, [::1]:2112)",
                )
            })?),
        },
        health: match non_empty(&raw.health_check_port) {
            None | Some("0") => None,
            // Every address of both families, as Go's ":<port>"; above 1024, as kube-vip
            // requires.
            Some(v) => match v.parse::<u16>() {
                Ok(port) if port > 1024 => Some(std::net::SocketAddr::new(
                    std::net::Ipv6Addr::UNSPECIFIED.into(),
                    port,
                )),
                _ => {
                    return Err(err(
                        "health_check_port (--healthCheckPort)",
                        v,
                        "is not a port above 1024 (kube-vip's rule; 0 turns it off)",
                    ))
                }
            },
        },
        control_plane,
        vips,
        vip_file: raw
            .vip_file
            .as_ref()
            .filter(|f| !f.is_empty())
            .map(PathBuf::from),
        log_filter: log_filter(raw.vip_loglevel.as_deref())?,
    })
}

/// The trimmed value, unless unset or blank.
pub(super) fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A boolean the way kube-vip reads it (Go's `strconv.ParseBool`); unset or empty is false.
pub(super) fn flag(v: &Option<String>, setting: &str) -> Result<bool, ConfigError> {
    match v.as_deref() {
        None | Some("") => Ok(false),
        Some(s) => parse_bool(s).ok_or_else(|| err(setting, s, "is not a boolean (true or false)")),
    }
}

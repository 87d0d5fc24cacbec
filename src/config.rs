//! [pure] Turns raw settings (kube-vip's environment variables and flags, as strings) into a
//! checked [`Config`]. Every error names the setting, the value and what is wrong with it, and
//! never shows a password.

use crate::bgp::types::HoldTime;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use vipd_providers::static_peers::{parse_bool, parse_mpbgp_nexthop};
use vipd_providers::{parse_bgp_peers, MpBgpSpec, Password, PeerAddress, PeerSpec};

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

fn err(setting: &str, value: &str, reason: impl Into<String>) -> ConfigError {
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
    pub mpbgp_nexthop: Option<String>,
    pub mpbgp_ipv4: Option<String>,
    pub mpbgp_ipv6: Option<String>,
    pub vip_address: Option<String>,
    pub vip_file: Option<String>,
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
    /// kube-vip's `annotation`: peers from this node's annotations under this prefix.
    pub annotation: Option<String>,
    pub vip_packet: Option<String>,
    pub provider_config: Option<String>,
    pub metal_peer_routes: Option<String>,
    pub prometheus_server: Option<String>,
    pub lb_ipam: Option<String>,
    pub lb_ipam_configmap: Option<String>,
    pub lb_ipam_namespace: Option<String>,
    /// `POD_NAMESPACE` (the manifest sets it): where the IPAM Lease lives.
    pub pod_namespace: Option<String>,
    pub svc_election: Option<String>,
    pub svc_leasename: Option<String>,
    pub vip_leaseduration: Option<String>,
    pub vip_renewdeadline: Option<String>,
    pub vip_retryperiod: Option<String>,
    /// `vip_arpRate` (milliseconds).
    pub vip_arp_rate: Option<String>,
    pub vip_servicesinterface: Option<String>,
    /// `enable_upnp` (or the guide's `enableUPNP`, which kube-vip ignores).
    pub enable_upnp: Option<String>,
}

/// Where the BGP identifier comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterIdSource {
    Fixed(Ipv4Addr),
    /// The first IPv4 address of this interface (`bgp_routerinterface`).
    Interface(String),
    /// The host's lowest non-loopback IPv4 address, as BIRD and FRR pick it.
    Lowest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpSettings {
    pub local_as: u32,
    pub router_id: RouterIdSource,
    pub hold_time: HoldTime,
    pub keepalive: Option<Duration>,
    pub peers: Vec<PeerSpec>,
    pub source_ip: Option<IpAddr>,
    pub source_if: Option<String>,
    pub passive: bool,
    pub listen_port: u16,
    pub mpbgp: MpBgpSpec,
    /// `annotation`: also take peers from this node's annotations under this prefix (e.g.
    /// `metal.equinix.com`), following them as they change.
    pub annotations: Option<String>,
    /// `vipd_bgp_unready_after`: `/readyz` fails while a session has been down this long
    /// (`None`: never), so a probe sees an agent whose peers are gone.
    pub unready_after: Option<Duration>,
}

/// The legacy Equinix Metal API provider (`vip_packet` / `--metal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetalSettings {
    /// `provider_config`: the CCM's `cloud-sa.json`; env `METAL_API_KEY` / `METAL_PROJECT_ID`
    /// override it.
    pub provider_config: Option<PathBuf>,
    /// `metal_peer_routes`: install host routes to the peers via the private gateway.
    pub peer_routes: bool,
}

/// Services mode (`svc_enable`): what to watch and how to treat the Services found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesSettings {
    /// Watch Services of this namespace only (`svc_namespace`); `None` = all namespaces.
    pub namespace: Option<String>,
    /// This node's name (`vip_nodename`, else the host name lowercased, as kube-vip does).
    pub node_name: String,
    pub lb_class_only: bool,
    pub lb_class_name: String,
    pub lb_class_legacy_handling: bool,
    /// `bgp_attach_ip_to_interface`: also put each announced VIP on `interface`.
    pub attach_to_interface: bool,
    /// `vip_interface`; `lo` when unset.
    pub interface: String,
    /// `disable_service_updates`: never write `status.loadBalancer`.
    pub status_updates: bool,
    /// `lb_ipam`: allocate addresses from the kube-vip-cloud-provider ConfigMap.
    pub ipam: Option<IpamSettings>,
    /// `enable_upnp`: map the ports of `kube-vip.io/forwardUPNP` Services on the gateway.
    pub upnp: bool,
    /// `vip_arp`: announce by ARP/NDP from an elected node instead of BGP.
    pub arp: Option<ArpSettings>,
    /// `vip_leaseduration`, `vip_renewdeadline`, `vip_retryperiod`: every Lease election of
    /// services mode (ARP mode's, and BGP mode's per-Service Leases of DHCP and UPnP Services).
    pub election_timing: crate::election::Timing,
}

/// Where the pools are and how the allocator is elected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamSettings {
    /// The ConfigMap (`lb_ipam_configmap`, default `kubevip`)…
    pub configmap: String,
    /// …in this namespace (`lb_ipam_namespace`, default `kube-system`).
    pub namespace: String,
    /// Namespace of the Lease `vipd-ipam` (the agent's own, `POD_NAMESPACE`, else kube-system).
    pub lease_namespace: String,
}

/// `vipd ipam`: the allocator alone, as its flags say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamStandalone {
    pub kubeconfig: Option<PathBuf>,
    /// The holder identity in the Lease; the host name when `None`.
    pub identity: Option<String>,
    pub ipam: IpamSettings,
    pub lb_class_only: bool,
    pub lb_class_name: String,
}

/// ARP/NDP mode (`vip_arp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpSettings {
    /// `svc_election`: one Lease per Service; else one Lease for all.
    pub election: ElectionScope,
    /// `vip_arpRate`: announcements repeat this often once the first ones are out.
    pub rate: Duration,
    /// `vip_servicesinterface`: the VIP's interface unless the Service names one.
    pub services_interface: Option<String>,
    /// `vip_interface`: next in line; `None` (or `auto`): the interface whose subnet holds the VIP.
    pub interface: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionScope {
    /// Lease `kubevip-<service>` in the Service's namespace (or `kube-vip.io/leaseName`).
    PerService,
    /// One Lease for every Service (`svc_leasename`, default `plndr-svcs-lock`).
    Global { namespace: String, name: String },
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
    /// `Some` with `vip_packet` / `--metal`: peers from the Equinix Metal API.
    pub metal: Option<MetalSettings>,
    /// `prometheus_server`: where /healthz and /readyz are served; `None` = off.
    pub http: Option<std::net::SocketAddr>,
    /// Static VIPs from `vip_address`.
    pub vips: Vec<IpAddr>,
    /// More static VIPs, one per line; re-read on SIGHUP.
    pub vip_file: Option<PathBuf>,
    /// A `tracing` filter directive.
    pub log_filter: String,
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
    if arp && !flag(&raw.svc_enable, "svc_enable (--services)")? {
        return Err(err(
            "vip_arp (--arp)",
            "true",
            "announces the VIPs of LoadBalancer Services: set svc_enable=true (or --services) too",
        ));
    }
    if !arp && !bgp_on {
        return Err(err(
            "bgp_enable (--bgp)",
            raw.bgp_enable.as_deref().unwrap_or(""),
            "is not set: no mode is enabled. Set bgp_enable=true (--bgp) or vip_arp=true (--arp)",
        ));
    }
    let bgp = bgp_settings(raw, bgp_on)?;
    let vips = match &raw.vip_address {
        Some(v) => parse_vip_list(v, "vip_address (--address)")?,
        None => Vec::new(),
    };
    let services = if flag(&raw.svc_enable, "svc_enable (--services)")? {
        Some(services_settings(raw)?)
    } else {
        None
    };
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
        vips,
        vip_file: raw
            .vip_file
            .as_ref()
            .filter(|f| !f.is_empty())
            .map(PathBuf::from),
        log_filter: log_filter(raw.vip_loglevel.as_deref())?,
    })
}

fn bgp_settings(raw: &RawSettings, bgp_on: bool) -> Result<BgpSettings, ConfigError> {
    let local_as = match &raw.bgp_as {
        Some(v) => match v.parse::<u32>() {
            Ok(0) | Err(_) => {
                return Err(err(
                    "bgp_as (--localAS)",
                    v,
                    "is not an AS number (1..4294967295)",
                ))
            }
            Ok(a) => a,
        },
        None => 65000,
    };
    let router_id = match (&raw.bgp_routerid, &raw.bgp_routerinterface) {
        (Some(id), _) if !id.is_empty() => {
            let ip: Ipv4Addr = id
                .parse()
                .map_err(|_| err("bgp_routerid (--bgpRouterID)", id, "is not an IPv4 address"))?;
            if ip.is_unspecified() || ip.is_broadcast() {
                return Err(err(
                    "bgp_routerid (--bgpRouterID)",
                    id,
                    "is not a usable BGP identifier",
                ));
            }
            RouterIdSource::Fixed(ip)
        }
        (_, Some(ifname)) if !ifname.is_empty() => RouterIdSource::Interface(ifname.clone()),
        _ => RouterIdSource::Lowest,
    };
    let hold_time = match &raw.bgp_hold_time {
        Some(v) => v
            .parse::<u16>()
            .ok()
            .and_then(HoldTime::new)
            .ok_or_else(|| {
                err(
                    "bgp_hold_time (--bgpHoldTimer)",
                    v,
                    "is not a hold time in seconds (0, or 3..65535)",
                )
            })?,
        None => HoldTime::new(30).unwrap_or_else(|| unreachable!("30 is a valid hold time")),
    };
    let keepalive = match &raw.bgp_keepalive_interval {
        Some(v) => match v.parse::<u64>() {
            Ok(s) if s >= 1 => Some(Duration::from_secs(s)),
            _ => {
                return Err(err(
                    "bgp_keepalive_interval (--bgpKeepAliveInterval)",
                    v,
                    "is not a number of seconds (at least 1)",
                ))
            }
        },
        None => Some(Duration::from_secs(10)),
    };
    let unready_after = match &raw.bgp_unready_after {
        Some(v) => match v.parse::<u64>() {
            Ok(0) => None,
            Ok(s) => Some(Duration::from_secs(s)),
            Err(_) => {
                return Err(err(
                    "vipd_bgp_unready_after (--bgp-unready-after)",
                    v,
                    "is not a number of seconds (0 turns the check off)",
                ))
            }
        },
        None => Some(DEFAULT_UNREADY_AFTER),
    };
    let mut peers = match &raw.bgp_peers {
        Some(v) => parse_bgp_peers(v).map_err(|e| ConfigError {
            setting: "bgp_peers (--bgppeers)".into(),
            value: e.shown.clone(),
            reason: format!("entry {}: {} {}", e.entry, e.field, e.problem),
        })?,
        None => Vec::new(),
    };
    if let Some(addr) = raw.bgp_peeraddress.as_deref().filter(|a| !a.is_empty()) {
        peers.push(single_peer(raw, addr)?);
    }
    if let Some(p) = peers
        .iter()
        .find(|p| matches!(p.address, PeerAddress::Unnumbered(_)))
    {
        return Err(err(
            "bgp_peers (--bgppeers)",
            &p.address.to_string(),
            "is an unnumbered peer, which vipd does not support yet; give the neighbour's address",
        ));
    }
    let annotations = non_empty(&raw.annotation).map(str::to_owned);
    // Peers may come from the node's annotations or the Equinix Metal API instead.
    let discovered = annotations.is_some() || flag(&raw.vip_packet, "vip_packet (--metal)")?;
    // In ARP mode no BGP runs: the BGP settings are checked for syntax only.
    if peers.is_empty() && !discovered && bgp_on {
        return Err(err(
            "bgp_peers (--bgppeers)",
            raw.bgp_peers.as_deref().unwrap_or(""),
            "holds no peer, and neither bgp_peeraddress, annotation nor vip_packet is set: BGP needs at least one peer",
        ));
    }
    let source_ip = match raw.bgp_sourceip.as_deref().filter(|s| !s.is_empty()) {
        Some(v) => Some(
            v.parse::<IpAddr>()
                .map_err(|_| err("bgp_sourceip (--sourceIP)", v, "is not an IP address"))?,
        ),
        None => None,
    };
    let source_if = raw.bgp_sourceif.clone().filter(|s| !s.is_empty());
    if let (Some(ip), Some(ifname)) = (&source_ip, &source_if) {
        return Err(err(
            "bgp_sourceif (--sourceIF)",
            ifname,
            format!("is set together with bgp_sourceip {ip}; set one of them"),
        ));
    }
    let listen_port = match &raw.bgp_listen_port {
        Some(v) => v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            err(
                "bgp_listen_port (--bgp-listen-port)",
                v,
                "is not a TCP port (1..65535)",
            )
        })?,
        None => 179,
    };
    let mut mpbgp = MpBgpSpec::default();
    if let Some(v) = &raw.mpbgp_nexthop {
        mpbgp.next_hop = parse_mpbgp_nexthop(v).map_err(|r| err("mpbgp_nexthop", v, r))?;
    }
    if let Some(v) = raw.mpbgp_ipv4.as_deref().filter(|v| !v.is_empty()) {
        mpbgp.ipv4 = Some(
            v.parse()
                .map_err(|_| err("mpbgp_ipv4", v, "is not an IPv4 address"))?,
        );
    }
    if let Some(v) = raw.mpbgp_ipv6.as_deref().filter(|v| !v.is_empty()) {
        mpbgp.ipv6 = Some(
            v.parse()
                .map_err(|_| err("mpbgp_ipv6", v, "is not an IPv6 address"))?,
        );
    }
    Ok(BgpSettings {
        local_as,
        router_id,
        hold_time,
        keepalive,
        peers,
        source_ip,
        source_if,
        passive: flag(&raw.bgp_passive, "bgp_passive (--bgp-passive)")?,
        listen_port,
        mpbgp,
        annotations,
        unready_after,
    })
}

/// Long enough for a router reboot and the connect-retry backoff's top (30 s) to pass.
pub const DEFAULT_UNREADY_AFTER: Duration = Duration::from_secs(120);

fn services_settings(raw: &RawSettings) -> Result<ServicesSettings, ConfigError> {
    Ok(ServicesSettings {
        namespace: non_empty(&raw.svc_namespace).map(str::to_owned),
        node_name: node_name(raw)?,
        lb_class_only: flag(&raw.lb_class_only, "lb_class_only (--lbClassOnly)")?,
        // kube-vip honours an explicitly empty class name, so only unset takes the default.
        lb_class_name: raw
            .lb_class_name
            .clone()
            .unwrap_or_else(|| "kube-vip.io/kube-vip-class".to_owned()),
        lb_class_legacy_handling: match raw.lb_class_legacy_handling.as_deref() {
            None | Some("") => true,
            Some(_) => flag(
                &raw.lb_class_legacy_handling,
                "lb_class_legacy_handling (--lbClassNameLegacyHandling)",
            )?,
        },
        attach_to_interface: flag(
            &raw.bgp_attach_ip_to_interface,
            "bgp_attach_ip_to_interface (--bgpAttachIPToInterface)",
        )?,
        interface: non_empty(&raw.vip_interface).unwrap_or("lo").to_owned(),
        upnp: flag(&raw.enable_upnp, "enable_upnp (enableUPNP)")?,
        status_updates: !flag(
            &raw.disable_service_updates,
            "disable_service_updates (--disableServiceUpdates)",
        )?,
        ipam: if flag(&raw.lb_ipam, "lb_ipam (--ipam)")? {
            Some(IpamSettings {
                configmap: non_empty(&raw.lb_ipam_configmap)
                    .unwrap_or("kubevip")
                    .to_owned(),
                namespace: non_empty(&raw.lb_ipam_namespace)
                    .unwrap_or("kube-system")
                    .to_owned(),
                lease_namespace: non_empty(&raw.pod_namespace)
                    .unwrap_or("kube-system")
                    .to_owned(),
            })
        } else {
            None
        },
        arp: if flag(&raw.vip_arp, "vip_arp (--arp)")? {
            Some(arp_settings(raw)?)
        } else {
            None
        },
        election_timing: election_timing(raw)?,
    })
}

fn election_timing(raw: &RawSettings) -> Result<crate::election::Timing, ConfigError> {
    let seconds = |v: &Option<String>, setting: &str, default: u64| match non_empty(v) {
        None => Ok(Duration::from_secs(default)),
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f > 0.0 && *f < 86_400.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| err(setting, s, "is not a number of seconds above 0")),
    };
    let timing = crate::election::Timing {
        lease_duration: seconds(
            &raw.vip_leaseduration,
            "vip_leaseduration (--leaseDuration)",
            15,
        )?,
        renew_deadline: seconds(
            &raw.vip_renewdeadline,
            "vip_renewdeadline (--leaseRenewDuration)",
            10,
        )?,
        retry: seconds(&raw.vip_retryperiod, "vip_retryperiod (--leaseRetry)", 2)?,
    };
    // The fence needs room: a leader drops the VIP at the renew deadline, before anyone may
    // take the Lease at its duration; and it must try to renew more than once before then.
    if timing.renew_deadline >= timing.lease_duration {
        return Err(err(
            "vip_renewdeadline (--leaseRenewDuration)",
            raw.vip_renewdeadline.as_deref().unwrap_or("10"),
            "must be below vip_leaseduration: a leader must stop before its Lease can be taken",
        ));
    }
    if timing.retry >= timing.renew_deadline {
        return Err(err(
            "vip_retryperiod (--leaseRetry)",
            raw.vip_retryperiod.as_deref().unwrap_or("2"),
            "must be below vip_renewdeadline",
        ));
    }
    Ok(timing)
}

fn arp_settings(raw: &RawSettings) -> Result<ArpSettings, ConfigError> {
    let rate = match non_empty(&raw.vip_arp_rate) {
        None => 3000,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| err("vip_arpRate", v, "is not a number of milliseconds"))?,
    };
    let election = if flag(&raw.svc_election, "svc_election (--servicesElection)")? {
        ElectionScope::PerService
    } else {
        let spec = non_empty(&raw.svc_leasename).unwrap_or("plndr-svcs-lock");
        let pod_ns = non_empty(&raw.pod_namespace).unwrap_or("kube-system");
        let (namespace, name) = match spec.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => (ns, name),
            Some(_) => {
                return Err(err(
                    "svc_leasename (--servicesLeaseName)",
                    spec,
                    "is not a Lease name or namespace/name",
                ))
            }
            None => (pod_ns, spec),
        };
        ElectionScope::Global {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    };
    Ok(ArpSettings {
        election,
        // kube-vip: a rate below 500 ms falls back to 3000.
        rate: Duration::from_millis(if rate < 500 { 3000 } else { rate }),
        services_interface: non_empty(&raw.vip_servicesinterface).map(str::to_owned),
        interface: non_empty(&raw.vip_interface)
            .filter(|i| *i != "auto")
            .map(str::to_owned),
    })
}

/// `vip_nodename`, else the host name lowercased (as kube-vip does).
fn node_name(raw: &RawSettings) -> Result<String, ConfigError> {
    let node_name = match (&raw.vip_nodename, &raw.hostname) {
        (Some(n), _) if !n.trim().is_empty() => n.trim().to_owned(),
        (_, Some(h)) if !h.trim().is_empty() => h.trim().to_lowercase(),
        _ => {
            return Err(err(
                "vip_nodename (--nodeName)",
                raw.vip_nodename.as_deref().unwrap_or(""),
                "is not set and the host name is unknown: set it to this node's name \
                 (the manifest sets it from spec.nodeName)",
            ))
        }
    };
    if let Some(bad) = node_name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(err(
            "vip_nodename (--nodeName)",
            &node_name,
            format!("is not a Kubernetes node name (it has {bad:?})"),
        ));
    }
    Ok(node_name)
}

/// The trimmed value, unless unset or blank.
fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The peer of `bgp_peeraddress`, `bgp_peeras`, `bgp_peerpass` and `bgp_multihop`.
fn single_peer(raw: &RawSettings, addr: &str) -> Result<PeerSpec, ConfigError> {
    let bare = addr.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = bare
        .parse()
        .map_err(|_| err("bgp_peeraddress", addr, "is not an IP address"))?;
    let remote_as = match &raw.bgp_peeras {
        Some(v) => match v.parse::<u32>() {
            Ok(a) if a != 0 => a,
            _ => return Err(err("bgp_peeras", v, "is not an AS number (1..4294967295)")),
        },
        None => 65000,
    };
    let mut spec = PeerSpec::new(ip, remote_as);
    if let Some(pw) = raw.bgp_peerpass.as_deref().filter(|p| !p.is_empty()) {
        if pw.len() > 80 {
            return Err(err(
                "bgp_peerpass",
                "*****",
                format!("is {} bytes long; TCP-MD5 keys hold at most 80", pw.len()),
            ));
        }
        spec.password = Some(Password::new(pw.to_owned()));
    }
    spec.multihop = flag(&raw.bgp_multihop, "bgp_multihop")?;
    Ok(spec)
}

/// A boolean the way kube-vip reads it (Go's `strconv.ParseBool`); unset or empty is false.
fn flag(v: &Option<String>, setting: &str) -> Result<bool, ConfigError> {
    match v.as_deref() {
        None | Some("") => Ok(false),
        Some(s) => parse_bool(s).ok_or_else(|| err(setting, s, "is not a boolean (true or false)")),
    }
}

/// A list of VIPs, comma or newline separated (`#` starts a comment). Addresses that cannot be
/// a unicast host route are refused by name.
pub fn parse_vip_list(text: &str, source: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let mut out = Vec::new();
    let multiline = text.contains('\n');
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for item in line.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            // Built only on error: a 100,000-line VIP file must not format 100,000 strings.
            let at = || {
                if multiline {
                    format!("{source} line {}", n + 1)
                } else {
                    source.to_owned()
                }
            };
            let ip: IpAddr = item
                .parse()
                .map_err(|_| err(&at(), item, "is not an IP address"))?;
            if ip.is_unspecified() {
                return Err(err(
                    &at(),
                    item,
                    "asks for a DHCP address, which only services mode offers",
                ));
            }
            let bad = match ip {
                IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast() || v4.is_loopback(),
                IpAddr::V6(v6) => v6.is_multicast() || v6.is_loopback(),
            };
            if bad {
                return Err(err(
                    &at(),
                    item,
                    "is not a unicast address that can be announced",
                ));
            }
            out.push(ip);
        }
    }
    Ok(out)
}

/// kube-vip's `vip_loglevel` (logrus numbers 0–6, or names) as a `tracing` filter.
fn log_filter(v: Option<&str>) -> Result<String, ConfigError> {
    let level = match v.map(str::trim) {
        None | Some("") => "info",
        Some("0" | "1" | "2" | "panic" | "fatal" | "error") => "error",
        Some("3" | "warn" | "warning") => "warn",
        Some("4" | "info") => "info",
        Some("5" | "debug") => "debug",
        Some("6" | "trace") => "trace",
        Some(other) => {
            return Err(err(
                "vip_loglevel (--log)",
                other,
                "is not a log level (0-6, or error, warn, info, debug, trace)",
            ))
        }
    };
    Ok(level.to_owned())
}

/// `:2112` / `0.0.0.0:2112` / `[::1]:2112` as a socket address (empty host = all IPv4).
pub fn listen_address(spec: &str) -> Option<SocketAddr> {
    let (host, port) = spec.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.is_empty() { "0.0.0.0" } else { host };
    Some(SocketAddr::new(ip.parse().ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawSettings {
        let mut r = RawSettings {
            bgp_enable: Some("true".into()),
            bgp_peers: Some("10.99.0.2:65530".into()),
            ..RawSettings::default()
        };
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "bgp_as" => r.bgp_as = v,
                "bgp_routerid" => r.bgp_routerid = v,
                "bgp_peers" => r.bgp_peers = v,
                "bgp_peeraddress" => r.bgp_peeraddress = v,
                "bgp_peerpass" => r.bgp_peerpass = v,
                "bgp_multihop" => r.bgp_multihop = v,
                "bgp_sourceip" => r.bgp_sourceip = v,
                "bgp_sourceif" => r.bgp_sourceif = v,
                "bgp_hold_time" => r.bgp_hold_time = v,
                "bgp_enable" => r.bgp_enable = v,
                "svc_enable" => r.svc_enable = v,
                "vip_nodename" => r.vip_nodename = v,
                "hostname" => r.hostname = v,
                "lb_class_name" => r.lb_class_name = v,
                "lb_class_legacy_handling" => r.lb_class_legacy_handling = v,
                "vip_address" => r.vip_address = v,
                "vip_loglevel" => r.vip_loglevel = v,
                "vip_arp" => r.vip_arp = v,
                "svc_election" => r.svc_election = v,
                "svc_leasename" => r.svc_leasename = v,
                "vip_leaseduration" => r.vip_leaseduration = v,
                "vip_renewdeadline" => r.vip_renewdeadline = v,
                "vip_retryperiod" => r.vip_retryperiod = v,
                "vip_arp_rate" => r.vip_arp_rate = v,
                "vip_interface" => r.vip_interface = v,
                "pod_namespace" => r.pod_namespace = v,
                "enable_upnp" => r.enable_upnp = v,
                other => panic!("test knows no {other}"),
            }
        }
        r
    }

    #[test]
    fn upnp_is_off_unless_enabled() {
        let with = |more: &[(&str, &str)]| {
            let mut pairs = vec![("svc_enable", "true"), ("vip_nodename", "n1")];
            pairs.extend_from_slice(more);
            validate(&raw(&pairs))
        };
        let upnp = |more: &[(&str, &str)]| with(more).unwrap().services.unwrap().upnp;
        assert!(!upnp(&[]));
        assert!(upnp(&[("enable_upnp", "true")]));
        assert!(with(&[("enable_upnp", "maybe")]).is_err());
    }

    #[test]
    fn defaults_follow_kube_vip() {
        let c = validate(&raw(&[])).unwrap();
        assert_eq!(c.bgp.local_as, 65000);
        assert_eq!(c.bgp.hold_time.secs(), 30);
        assert_eq!(c.bgp.keepalive, Some(Duration::from_secs(10)));
        assert_eq!(c.bgp.router_id, RouterIdSource::Lowest);
        assert_eq!(c.log_filter, "info");
    }

    #[test]
    fn single_peer_is_appended_after_the_list() {
        let c = validate(&raw(&[
            ("bgp_peeraddress", "10.99.0.3"),
            ("bgp_peerpass", "s3cret"),
            ("bgp_multihop", "true"),
        ]))
        .unwrap();
        assert_eq!(c.bgp.peers.len(), 2);
        assert_eq!(c.bgp.peers[1].remote_as, 65000);
        assert!(c.bgp.peers[1].multihop);
        assert_eq!(
            c.bgp.peers[1].password.as_ref().map(|p| p.expose()),
            Some("s3cret")
        );
    }

    #[test]
    fn errors_name_the_setting_and_value() {
        let e = validate(&raw(&[("bgp_as", "65k")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bgp_as (--localAS): \"65k\" is not an AS number (1..4294967295)"
        );
        let e = validate(&raw(&[("bgp_hold_time", "2")])).unwrap_err();
        assert!(e.setting.starts_with("bgp_hold_time"));
        let e = validate(&raw(&[("bgp_routerid", "1.2.3")])).unwrap_err();
        assert_eq!(e.value, "1.2.3");
        let e = validate(&raw(&[
            ("bgp_multihop", "yes please"),
            ("bgp_peeraddress", "10.0.0.1"),
        ]))
        .unwrap_err();
        assert_eq!(e.setting, "bgp_multihop");
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let e = validate(&raw(&[("bgp_peers", "10.0.0.1:65000:hunter2:nope")])).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let long = "p".repeat(81);
        let e = validate(&raw(&[
            ("bgp_peeraddress", "10.0.0.1"),
            ("bgp_peerpass", &long),
        ]))
        .unwrap_err();
        assert!(!e.to_string().contains(&long));
    }

    #[test]
    fn source_ip_and_interface_together_are_refused() {
        let e = validate(&raw(&[
            ("bgp_sourceip", "10.0.0.1"),
            ("bgp_sourceif", "eth0"),
        ]))
        .unwrap_err();
        assert!(e.reason.contains("set one of them"));
    }

    #[test]
    fn services_mode_takes_kube_vip_defaults_and_names_the_node() {
        let c = validate(&raw(&[("svc_enable", "true"), ("hostname", "Worker-1")])).unwrap();
        let s = c.services.unwrap();
        assert_eq!(
            s.node_name, "worker-1",
            "host name lowercased, as kube-vip does"
        );
        assert_eq!(s.lb_class_name, "kube-vip.io/kube-vip-class");
        assert!(s.lb_class_legacy_handling && !s.lb_class_only && s.status_updates);
        assert_eq!((s.interface.as_str(), s.attach_to_interface), ("lo", false));
        let c = validate(&raw(&[
            ("svc_enable", "true"),
            ("vip_nodename", "node-a"),
            ("hostname", "other"),
            ("lb_class_name", ""),
        ]))
        .unwrap();
        let s = c.services.unwrap();
        assert_eq!(s.node_name, "node-a");
        assert_eq!(
            s.lb_class_name, "",
            "an explicitly empty class name is kept"
        );
        let e = validate(&raw(&[("svc_enable", "true"), ("vip_nodename", "Node_A")])).unwrap_err();
        assert_eq!(e.setting, "vip_nodename (--nodeName)");
        assert!(e.reason.contains("not a Kubernetes node name"), "{e}");
        let e = validate(&raw(&[
            ("svc_enable", "true"),
            ("hostname", "n1"),
            ("lb_class_legacy_handling", "maybe"),
        ]))
        .unwrap_err();
        assert_eq!(e.value, "maybe");
    }

    #[test]
    fn bgp_off_is_explained() {
        assert!(validate(&raw(&[("bgp_enable", "false")]))
            .unwrap_err()
            .reason
            .contains("no mode"));
        let mut r = raw(&[]);
        r.bgp_peers = None;
        assert!(validate(&r)
            .unwrap_err()
            .reason
            .contains("at least one peer"));
    }

    #[test]
    fn vip_lists_take_commas_lines_and_comments() {
        assert_eq!(
            parse_vip_list("198.18.0.10, fd00:98::10", "vip_address").unwrap(),
            vec![
                "198.18.0.10".parse::<IpAddr>().unwrap(),
                "fd00:98::10".parse().unwrap()
            ]
        );
        let file = "# VIPs\n198.18.0.10\n\n198.18.0.11 # web\n";
        assert_eq!(parse_vip_list(file, "vip_file").unwrap().len(), 2);
        let e = parse_vip_list("198.18.0.10\n198.18.0.300\n", "vip_file /x").unwrap_err();
        assert_eq!(e.setting, "vip_file /x line 2");
        assert!(parse_vip_list("224.0.0.1", "v")
            .unwrap_err()
            .reason
            .contains("unicast"));
        assert!(parse_vip_list("0.0.0.0", "v")
            .unwrap_err()
            .reason
            .contains("DHCP"));
    }

    #[test]
    fn log_levels_accept_logrus_numbers_and_names() {
        assert_eq!(
            validate(&raw(&[("vip_loglevel", "5")])).unwrap().log_filter,
            "debug"
        );
        assert_eq!(
            validate(&raw(&[("vip_loglevel", "warn")]))
                .unwrap()
                .log_filter,
            "warn"
        );
        assert!(validate(&raw(&[("vip_loglevel", "loud")])).is_err());
    }

    fn arp(pairs: &[(&str, &str)]) -> Result<ArpSettings, ConfigError> {
        let mut all = vec![
            ("bgp_enable", "false"),
            ("bgp_peers", ""),
            ("vip_arp", "true"),
            ("svc_enable", "true"),
            ("vip_nodename", "n1"),
        ];
        all.extend_from_slice(pairs);
        validate(&raw(&all)).map(|c| c.services.unwrap().arp.unwrap())
    }

    fn arp_timing(pairs: &[(&str, &str)]) -> crate::election::Timing {
        let mut all = vec![
            ("bgp_enable", "false"),
            ("bgp_peers", ""),
            ("vip_arp", "true"),
            ("svc_enable", "true"),
            ("vip_nodename", "n1"),
        ];
        all.extend_from_slice(pairs);
        validate(&raw(&all))
            .unwrap()
            .services
            .unwrap()
            .election_timing
    }

    #[test]
    fn bgp_services_mode_reads_the_election_timing_too() {
        // DHCP and UPnP Services are served by the elected node of a per-Service Lease.
        let c = validate(&raw(&[
            ("svc_enable", "true"),
            ("vip_nodename", "n1"),
            ("vip_leaseduration", "3"),
            ("vip_renewdeadline", "2"),
            ("vip_retryperiod", "0.5"),
        ]))
        .unwrap();
        assert_eq!(
            c.services.unwrap().election_timing,
            crate::election::Timing {
                lease_duration: Duration::from_secs(3),
                renew_deadline: Duration::from_secs(2),
                retry: Duration::from_millis(500),
            }
        );
        let e = validate(&raw(&[
            ("svc_enable", "true"),
            ("vip_nodename", "n1"),
            ("vip_renewdeadline", "20"),
        ]))
        .unwrap_err();
        assert_eq!(e.setting, "vip_renewdeadline (--leaseRenewDuration)");
    }

    #[test]
    fn arp_mode_takes_kube_vips_defaults_and_needs_no_bgp_peer() {
        let a = arp(&[]).unwrap();
        assert_eq!(
            a.election,
            ElectionScope::Global {
                namespace: "kube-system".into(),
                name: "plndr-svcs-lock".into()
            }
        );
        assert_eq!(
            arp_timing(&[]),
            crate::election::Timing {
                lease_duration: Duration::from_secs(15),
                renew_deadline: Duration::from_secs(10),
                retry: Duration::from_secs(2),
            }
        );
        assert_eq!(a.rate, Duration::from_millis(3000));
        assert_eq!((a.interface, a.services_interface), (None, None));
    }

    #[test]
    fn arp_mode_reads_election_timing_rate_and_lease_name() {
        let a = arp(&[
            ("svc_election", "true"),
            ("vip_leaseduration", "3"),
            ("vip_renewdeadline", "2"),
            ("vip_retryperiod", "0.5"),
            ("vip_arp_rate", "1000"),
            ("vip_interface", "auto"),
        ])
        .unwrap();
        assert_eq!(a.election, ElectionScope::PerService);
        assert_eq!(
            arp_timing(&[("vip_retryperiod", "0.5")]).retry,
            Duration::from_millis(500)
        );
        assert_eq!(a.rate, Duration::from_millis(1000));
        assert_eq!(a.interface, None);
        let b = arp(&[
            ("svc_leasename", "infra/lock"),
            ("vip_arp_rate", "100"),
            ("pod_namespace", "vipd"),
        ])
        .unwrap();
        assert_eq!(
            b.election,
            ElectionScope::Global {
                namespace: "infra".into(),
                name: "lock".into()
            }
        );
        assert_eq!(
            b.rate,
            Duration::from_millis(3000),
            "below 500 ms falls back to 3000, as kube-vip"
        );
        let c = arp(&[("svc_leasename", "lock"), ("pod_namespace", "vipd")]).unwrap();
        assert_eq!(
            c.election,
            ElectionScope::Global {
                namespace: "vipd".into(),
                name: "lock".into()
            }
        );
    }

    #[test]
    fn arp_mode_refuses_timings_that_leave_no_room_for_the_fence() {
        let e = arp(&[("vip_leaseduration", "10"), ("vip_renewdeadline", "10")]).unwrap_err();
        assert_eq!(e.setting, "vip_renewdeadline (--leaseRenewDuration)");
        let e = arp(&[("vip_renewdeadline", "2"), ("vip_retryperiod", "2")]).unwrap_err();
        assert_eq!(e.setting, "vip_retryperiod (--leaseRetry)");
        let e = arp(&[("vip_leaseduration", "-1")]).unwrap_err();
        assert_eq!(e.setting, "vip_leaseduration (--leaseDuration)");
    }

    #[test]
    fn arp_mode_needs_services_and_excludes_bgp() {
        let e = validate(&raw(&[
            ("vip_arp", "true"),
            ("svc_enable", "true"),
            ("vip_nodename", "n1"),
        ]))
        .unwrap_err();
        assert!(e.reason.contains("exactly one mode"), "{e}");
        let e = validate(&raw(&[("vip_arp", "true"), ("bgp_enable", "false")])).unwrap_err();
        assert!(e.reason.contains("svc_enable"), "{e}");
    }
}

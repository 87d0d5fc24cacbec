//! [pure] Services-mode settings: classes, the VIP interface, status writes, IPAM, UPnP, ARP
//! mode and the Lease elections.

use super::{err, flag, non_empty, ConfigError, RawSettings};
use crate::model::{Mask, VipMasks};
use crate::table::route::{RouteKind, TableSpec};
use std::path::PathBuf;
use std::time::Duration;

/// Services mode (`svc_enable`): what to watch and how to treat the Services found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesSettings {
    /// `svc_enable`: Services are watched and served. `false` when services mode runs only
    /// for the control-plane VIP's election (`cp_enable` with `vip_arp`, or with
    /// `vip_leaderelection`): no Service or EndpointSlice is watched, none is served.
    pub watch_services: bool,
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
    /// `vip_servicesinterface`, unless `auto`: BGP mode's DHCP macvlans sit on it, before
    /// `vip_interface` (ARP mode reads it in [`ArpSettings`]).
    pub services_interface: Option<String>,
    /// `disable_service_updates`: never write `status.loadBalancer`.
    pub status_updates: bool,
    /// `vipd_honour_exclude_label` (vipd's; default false, as kube-vip, which never reads the
    /// label): a node labelled `node.kubernetes.io/exclude-from-external-load-balancers` serves
    /// nothing and stands for no Lease.
    pub honour_exclude_label: bool,
    /// `svc_election`: one announcer per Service, elected by its Lease (`kubevip-<name>` or
    /// `kube-vip.io/leaseName`). ARP mode reads it into [`ArpSettings::election`]; in BGP mode
    /// only the elected node announces a Service (kube-vip's meaning), instead of every node.
    pub per_service_election: bool,
    /// `vipd_clear_ingress_without_endpoints` (vipd's; default false, as kube-vip, which keeps
    /// the address in the status): clear `status.loadBalancer.ingress` of a Service that no
    /// endpoint serves anywhere.
    pub clear_ingress_without_endpoints: bool,
    /// `enable_node_labeling`: label this node `service-provided.kube-vip.io/<svc>.<ns>` for
    /// each Service it serves, as kube-vip does.
    pub node_labeling: bool,
    /// `lb_ipam`: allocate addresses from the kube-vip-cloud-provider ConfigMap.
    pub ipam: Option<IpamSettings>,
    /// `enable_upnp`: map the ports of `kube-vip.io/forwardUPNP` Services on the gateway.
    pub upnp: bool,
    /// `vip_arp`: announce by ARP/NDP from an elected node instead of BGP.
    pub arp: Option<ArpSettings>,
    /// `vip_routingtable`: put each served VIP as a route in a kernel table instead of BGP.
    pub routing_table: Option<TableSpec>,
    /// `vip_leaseduration`, `vip_renewdeadline`, `vip_retryperiod`: every Lease election of
    /// services mode (ARP mode's, and BGP mode's per-Service Leases of DHCP and UPnP Services).
    pub election_timing: crate::election::Timing,
}

/// The agent's own namespace, where its Leases live: `POD_NAMESPACE` (vipd's manifest sets it),
/// else the ServiceAccount's namespace file (as kube-vip reads it: an image swapped into a
/// kube-vip DaemonSet keeps kube-vip's Lease), else `kube-system`.
fn own_namespace(raw: &RawSettings) -> &str {
    non_empty(&raw.pod_namespace)
        .or_else(|| non_empty(&raw.sa_namespace))
        .unwrap_or("kube-system")
}

impl ServicesSettings {
    /// What `decide` reads of these settings; `announce_ipv4`/`announce_ipv6`: whether some
    /// peer (or the link, in ARP mode) can carry that family.
    pub fn decide_config(
        &self,
        announce_ipv4: bool,
        announce_ipv6: bool,
    ) -> crate::decide::DecideConfig {
        crate::decide::DecideConfig {
            lb_class_only: self.lb_class_only,
            lb_class_name: self.lb_class_name.clone(),
            lb_class_legacy_handling: self.lb_class_legacy_handling,
            announce_ipv4,
            announce_ipv6,
            honour_exclude_label: self.honour_exclude_label,
            status_is_source: !self.status_updates,
            vlans: self.arp.is_some(),
        }
    }
}

/// Where the pools are and how the allocator is elected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamSettings {
    /// The ConfigMap (`lb_ipam_configmap`, default `kubevip`)…
    pub configmap: String,
    /// …in this namespace (`lb_ipam_namespace`, default `kube-system`).
    pub namespace: String,
    /// Namespace of the Lease `vipd-ipam`: the agent's own (`POD_NAMESPACE`, else the
    /// ServiceAccount's, else kube-system).
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
    /// `vip_subnet`: the prefix length of the addresses put on interfaces.
    pub masks: VipMasks,
}

/// `vip_subnet`: `24`, `24,64`, `/24`, `auto`, `auto,auto`, `,64`.
pub(super) fn vip_masks(raw: &RawSettings) -> Result<VipMasks, ConfigError> {
    const SETTING: &str = "vip_subnet (--vipSubnet)";
    let Some(v) = non_empty(&raw.vip_subnet) else {
        return Ok(VipMasks::default());
    };
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.len() > 2 {
        return Err(err(
            SETTING,
            v,
            "has more than two parts: it is the IPv4 length, then optionally the IPv6 one (24,64), each a number or auto",
        ));
    }
    let one = |part: Option<&&str>, max: u8| -> Result<Mask, ConfigError> {
        match part.map(|p| p.trim_start_matches('/')) {
            None | Some("") => Ok(Mask::Fixed(max)),
            Some(p) if p.eq_ignore_ascii_case("auto") => Ok(Mask::Auto),
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .map(Mask::Fixed)
                .ok_or_else(|| {
                    err(
                        SETTING,
                        v,
                        format!("has {p:?} where a prefix length 1-{max} or auto belongs"),
                    )
                }),
        }
    };
    Ok(VipMasks {
        v4: one(parts.first(), 32)?,
        v6: one(parts.get(1), 128)?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionScope {
    /// Lease `kubevip-<service>` in the Service's namespace (or `kube-vip.io/leaseName`).
    PerService,
    /// One Lease for every Service (`svc_leasename`, default `plndr-svcs-lock`).
    Global { namespace: String, name: String },
}

pub(super) fn services_settings(raw: &RawSettings) -> Result<ServicesSettings, ConfigError> {
    Ok(ServicesSettings {
        watch_services: true,
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
        // Routing-table mode routes VIPs without an address on the interface (kube-vip's way);
        // the setting is still checked.
        attach_to_interface: flag(
            &raw.bgp_attach_ip_to_interface,
            "bgp_attach_ip_to_interface (--bgpAttachIPToInterface)",
        )? && !flag(&raw.vip_routingtable, "vip_routingtable (--table)")?,
        interface: non_empty(&raw.vip_interface).unwrap_or("lo").to_owned(),
        services_interface: non_empty(&raw.vip_servicesinterface)
            .filter(|i| *i != "auto")
            .map(str::to_owned),
        upnp: flag(&raw.enable_upnp, "enable_upnp (enableUPNP)")?,
        status_updates: !flag(
            &raw.disable_service_updates,
            "disable_service_updates (--disableServiceUpdates)",
        )?,
        honour_exclude_label: flag(
            &raw.vipd_honour_exclude_label,
            "vipd_honour_exclude_label (--honour-exclude-label)",
        )?,
        per_service_election: flag(&raw.svc_election, "svc_election (--servicesElection)")?,
        node_labeling: flag(
            &raw.enable_node_labeling,
            "enable_node_labeling (--enableNodeLabeling)",
        )?,
        clear_ingress_without_endpoints: flag(
            &raw.vipd_clear_ingress_without_endpoints,
            "vipd_clear_ingress_without_endpoints (--clear-ingress-without-endpoints)",
        )?,
        ipam: if flag(&raw.lb_ipam, "lb_ipam (--ipam)")? {
            Some(IpamSettings {
                configmap: non_empty(&raw.lb_ipam_configmap)
                    .unwrap_or("kubevip")
                    .to_owned(),
                namespace: non_empty(&raw.lb_ipam_namespace)
                    .unwrap_or("kube-system")
                    .to_owned(),
                lease_namespace: own_namespace(raw).to_owned(),
            })
        } else {
            None
        },
        arp: if flag(&raw.vip_arp, "vip_arp (--arp)")? {
            Some(arp_settings(raw)?)
        } else {
            None
        },
        routing_table: if flag(&raw.vip_routingtable, "vip_routingtable (--table)")? {
            Some(table_spec(raw)?)
        } else {
            None
        },
        election_timing: election_timing(raw)?,
    })
}

/// `vip_routingtableid`, `vip_routingtabletype`, `vip_routingprotocol` (kube-vip's defaults:
/// 198, 1, 248), and `vip_cleanroutingtable` checked as a boolean.
pub(super) fn table_spec(raw: &RawSettings) -> Result<TableSpec, ConfigError> {
    flag(
        &raw.vip_cleanroutingtable,
        "vip_cleanroutingtable (--cleanRoutingTable)",
    )?;
    let d = TableSpec::default();
    let table = match non_empty(&raw.vip_routingtableid) {
        None => d.table,
        Some(v) => v.parse::<u32>().ok().filter(|t| *t != 0 && *t != 255).ok_or_else(|| {
            err(
                "vip_routingtableid (--tableID)",
                v,
                "is not a routing table vipd can use: 1-4294967295, except 255 (the kernel's local table)",
            )
        })?,
    };
    let kind = match non_empty(&raw.vip_routingtabletype) {
        None | Some("1") => RouteKind::Unicast,
        Some("2") => RouteKind::Local,
        Some(v) => {
            return Err(err(
                "vip_routingtabletype (--tableType)",
                v,
                "is not a route type a VIP can have: 1 (unicast, the default) or 2 (local)",
            ))
        }
    };
    let protocol = match non_empty(&raw.vip_routingprotocol) {
        None => d.protocol,
        Some(v) => v.parse::<u8>().ok().filter(|p| *p >= 5).ok_or_else(|| {
            err(
                "vip_routingprotocol (--routingProtocol)",
                v,
                "is not a routing protocol number vipd can mark its routes with: 5-255 (0-4 are the kernel's own: `ip route add` makes boot, 3)",
            )
        })?,
    };
    Ok(TableSpec {
        table,
        kind,
        protocol,
    })
}

/// Services mode for the control-plane VIP alone (`cp_enable` without `svc_enable`): the
/// node, the Lease timings and ARP's settings; no Service is watched, allocated, mapped,
/// labelled or written.
pub(super) fn control_plane_only(raw: &RawSettings) -> Result<ServicesSettings, ConfigError> {
    Ok(ServicesSettings {
        watch_services: false,
        ipam: None,
        upnp: false,
        status_updates: false,
        node_labeling: false,
        ..services_settings(raw)?
    })
}

pub(super) fn election_timing(raw: &RawSettings) -> Result<crate::election::Timing, ConfigError> {
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

pub(super) fn arp_settings(raw: &RawSettings) -> Result<ArpSettings, ConfigError> {
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
        let pod_ns = own_namespace(raw);
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
        masks: vip_masks(raw)?,
    })
}

/// `vip_nodename`, else the host name lowercased (as kube-vip does).
pub(super) fn node_name(raw: &RawSettings) -> Result<String, ConfigError> {
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

//! [pure] The manager settings `vipd manifest` passes on into the container's environment as
//! given, so that every flag `vipd manager` takes, the manifest takes too.

use clap::Args;

/// The rest of `vipd manager`'s settings: the manifest writes each one given into the
/// container's environment as it is (booleans as `true` when given bare), so that every flag
/// the agent takes is one the manifest takes (a test holds the two flag sets together). Each
/// falls back to its environment variable, as the other manifest flags do, except
/// `--serviceNamespace` (kube-vip's manifest reads `svc_namespace` as `--namespace`) and
/// `--nodeName`.
#[derive(Debug, Clone, Default, Args)]
pub struct PassOn {
    /// Watch Services of this namespace only.
    #[arg(long = "serviceNamespace", value_name = "NAMESPACE")]
    pub svc_namespace: Option<String>,
    /// Accepted as kube-vip's is; the DaemonSet and the static Pod take each node's name from
    /// spec.nodeName.
    #[arg(long = "nodeName", value_name = "NAME")]
    pub vip_nodename: Option<String>,
    /// Also serve Services without a class unless lbClassOnly.
    #[arg(long = "lbClassNameLegacyHandling", env = "lb_class_legacy_handling", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true")]
    pub lb_class_legacy_handling: Option<String>,
    /// vipd_honour_exclude_label.
    #[arg(long = "honour-exclude-label", env = "vipd_honour_exclude_label", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true")]
    pub vipd_honour_exclude_label: Option<String>,
    /// vipd_clear_ingress_without_endpoints.
    #[arg(long = "clear-ingress-without-endpoints", env = "vipd_clear_ingress_without_endpoints", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true")]
    pub vipd_clear_ingress_without_endpoints: Option<String>,
    /// Map the ports of forwardUPNP Services on the UPnP gateway.
    #[arg(long = "enableUPNP", env = "enable_upnp", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true")]
    pub enable_upnp: Option<String>,
    /// The one Lease of ARP mode (`name` or `namespace/name`).
    #[arg(
        long = "servicesLeaseName",
        env = "svc_leasename",
        value_name = "LEASE"
    )]
    pub svc_leasename: Option<String>,
    /// Seconds a Lease stays valid without renew.
    #[arg(
        long = "leaseDuration",
        env = "vip_leaseduration",
        value_name = "SECONDS"
    )]
    pub vip_leaseduration: Option<String>,
    /// Seconds a leader may go without renewing.
    #[arg(
        long = "leaseRenewDuration",
        env = "vip_renewdeadline",
        value_name = "SECONDS"
    )]
    pub vip_renewdeadline: Option<String>,
    /// Seconds between Lease reads and renews.
    #[arg(long = "leaseRetry", env = "vip_retryperiod", value_name = "SECONDS")]
    pub vip_retryperiod: Option<String>,
    /// Milliseconds between repeated ARP/NDP announcements.
    #[arg(long = "arpRate", env = "vip_arpRate", value_name = "MS")]
    pub vip_arp_rate: Option<String>,
    /// Interface for Service VIPs.
    #[arg(
        long = "serviceInterface",
        env = "vip_servicesinterface",
        value_name = "INTERFACE"
    )]
    pub vip_servicesinterface: Option<String>,
    /// ARP mode: the prefix length of VIP addresses, `v4[,v6]` (numbers or auto).
    #[arg(long = "vipSubnet", env = "vip_subnet", value_name = "LENGTHS")]
    pub vip_subnet: Option<String>,
    /// Routing-table mode: each served VIP a route in a kernel table (instead of --bgp/--arp).
    #[arg(long = "table", env = "vip_routingtable", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true")]
    pub vip_routingtable: Option<String>,
    /// Routing-table mode: the table.
    #[arg(long = "tableID", env = "vip_routingtableid", value_name = "ID")]
    pub vip_routingtableid: Option<String>,
    /// Routing-table mode: the route type (1 unicast, 2 local).
    #[arg(long = "tableType", env = "vip_routingtabletype", value_name = "TYPE")]
    pub vip_routingtabletype: Option<String>,
    /// Routing-table mode: the protocol number marking vipd's routes.
    #[arg(
        long = "routingProtocol",
        env = "vip_routingprotocol",
        value_name = "NUMBER"
    )]
    pub vip_routingprotocol: Option<String>,
    /// Routing-table mode: accepted as kube-vip's (vipd always removes its stale routes).
    #[arg(long = "cleanRoutingTable", env = "vip_cleanroutingtable", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true")]
    pub vip_cleanroutingtable: Option<String>,
    /// Take the router id from this interface's IPv4 address.
    #[arg(
        long = "bgpRouterInterface",
        env = "bgp_routerinterface",
        value_name = "INTERFACE"
    )]
    pub bgp_routerinterface: Option<String>,
    /// BGP hold time, seconds.
    #[arg(long = "bgpHoldTimer", env = "bgp_hold_time", value_name = "SECONDS")]
    pub bgp_hold_time: Option<String>,
    /// BGP keepalive interval, seconds.
    #[arg(
        long = "bgpKeepAliveInterval",
        env = "bgp_keepalive_interval",
        value_name = "SECONDS"
    )]
    pub bgp_keepalive_interval: Option<String>,
    /// Listen for the peers instead of connecting.
    #[arg(long = "bgp-passive", env = "bgp_passive", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true")]
    pub bgp_passive: Option<String>,
    /// Port of passive mode.
    #[arg(long = "bgp-listen-port", env = "bgp_listen_port", value_name = "PORT")]
    pub bgp_listen_port: Option<String>,
    /// Seconds a session may stay down before /readyz fails.
    #[arg(
        long = "bgp-unready-after",
        env = "vipd_bgp_unready_after",
        value_name = "SECONDS"
    )]
    pub vipd_bgp_unready_after: Option<String>,
    /// Seconds peers keep the routes while vipd restarts (0: no graceful restart).
    #[arg(
        long = "bgp-restart-time",
        env = "vipd_bgp_restart_time",
        value_name = "SECONDS"
    )]
    pub vipd_bgp_restart_time: Option<String>,
    /// Seconds peers then keep them as least preferred (RFC 9494; 0: not offered).
    #[arg(
        long = "bgp-llgr-stale-time",
        env = "vipd_bgp_llgr_stale_time",
        value_name = "SECONDS"
    )]
    pub vipd_bgp_llgr_stale_time: Option<String>,
    /// BFD for peers whose entry sets none: enable;rxMs;txMs;multiplier.
    #[arg(long = "bfd", env = "vipd_bfd", value_name = "BFD")]
    pub vipd_bfd: Option<String>,
    /// Seconds a cordoned or leaving node keeps its routes, marked, before withdrawing them.
    #[arg(
        long = "bgp-drain-time",
        env = "vipd_bgp_drain_time",
        value_name = "SECONDS"
    )]
    pub vipd_bgp_drain_time: Option<String>,
    /// Next hop for VIPs of the other family than the session.
    #[arg(long = "mpbgpNexthop", env = "mpbgp_nexthop", value_name = "MODE")]
    pub mpbgp_nexthop: Option<String>,
    /// The IPv4 next hop for IPv4 VIPs over IPv6 sessions (mpbgp_nexthop=fixed).
    #[arg(long = "mpbgpIPv4", env = "mpbgp_ipv4", value_name = "ADDRESS")]
    pub mpbgp_ipv4: Option<String>,
    /// The IPv6 next hop for IPv6 VIPs over IPv4 sessions (mpbgp_nexthop=fixed).
    #[arg(long = "mpbgpIPv6", env = "mpbgp_ipv6", value_name = "ADDRESS")]
    pub mpbgp_ipv6: Option<String>,
    /// Also serve /healthz on this port.
    #[arg(
        long = "healthCheckPort",
        env = "health_check_port",
        value_name = "PORT"
    )]
    pub health_check_port: Option<String>,
    /// The IPAM ConfigMap.
    #[arg(long = "ipamConfigMap", env = "lb_ipam_configmap", value_name = "NAME")]
    pub lb_ipam_configmap: Option<String>,
    /// Its namespace.
    #[arg(
        long = "ipamNamespace",
        env = "lb_ipam_namespace",
        value_name = "NAMESPACE"
    )]
    pub lb_ipam_namespace: Option<String>,
    /// Static VIPs (services mode off).
    #[arg(long = "address", env = "vip_address", value_name = "ADDRESSES")]
    pub vip_address: Option<String>,
    /// More static VIPs, one per line, in the container.
    #[arg(long = "vip-file", env = "vip_file", value_name = "PATH")]
    pub vip_file: Option<String>,
    /// Log format: text or json.
    #[arg(long = "log-format", env = "vipd_log_format", value_name = "FORMAT")]
    pub vipd_log_format: Option<String>,
    /// The control-plane VIP (--address), held by BGP or ARP while the local API server is healthy.
    #[arg(long = "controlplane", env = "cp_enable", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true")]
    pub cp_enable: Option<String>,
    /// The API server's port.
    #[arg(long = "port", env = "port", value_name = "PORT")]
    pub port: Option<String>,
    /// The control-plane VIP's health check URL.
    #[arg(
        long = "controlPlaneHealthCheckAddress",
        env = "control_plane_health_check_address",
        value_name = "URL"
    )]
    pub control_plane_health_check_address: Option<String>,
    /// Seconds between health checks.
    #[arg(
        long = "controlPlaneHealthCheckPeriodSeconds",
        env = "control_plane_health_check_period_seconds",
        value_name = "SECONDS"
    )]
    pub control_plane_health_check_period_seconds: Option<String>,
    /// Seconds a health check may take.
    #[arg(
        long = "controlPlaneHealthCheckTimeoutSeconds",
        env = "control_plane_health_check_timeout_seconds",
        value_name = "SECONDS"
    )]
    pub control_plane_health_check_timeout_seconds: Option<String>,
    /// Failed checks in a row that withdraw the VIP.
    #[arg(
        long = "controlPlaneHealthCheckFailureThreshold",
        env = "control_plane_health_check_failure_threshold",
        value_name = "COUNT"
    )]
    pub control_plane_health_check_failure_threshold: Option<String>,
    /// CA certificate(s) in the container for the health check's TLS.
    #[arg(
        long = "controlPlaneHealthCheckCAPath",
        env = "control_plane_health_check_ca_path",
        value_name = "PATH"
    )]
    pub control_plane_health_check_ca_path: Option<String>,
    /// false: announce the control-plane VIP without a health check.
    #[arg(long = "cp-health-check", env = "vipd_cp_health_check", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true")]
    pub vipd_cp_health_check: Option<String>,
    /// Name of the control-plane Lease.
    #[arg(long = "leaseName", env = "vip_leasename", value_name = "LEASE")]
    pub vip_leasename: Option<String>,
    /// The API server the agent talks to (host:port) instead of its kubeconfig's.
    #[arg(
        long = "kubernetes-addr",
        env = "kubernetes_addr",
        value_name = "HOST:PORT"
    )]
    pub kubernetes_addr: Option<String>,
}

impl PassOn {
    /// (environment variable, value) of each setting given, in the agent's names.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        let all: [(&'static str, &Option<String>); 46] = [
            ("svc_namespace", &self.svc_namespace),
            ("lb_class_legacy_handling", &self.lb_class_legacy_handling),
            ("vipd_honour_exclude_label", &self.vipd_honour_exclude_label),
            (
                "vipd_clear_ingress_without_endpoints",
                &self.vipd_clear_ingress_without_endpoints,
            ),
            ("enable_upnp", &self.enable_upnp),
            ("svc_leasename", &self.svc_leasename),
            ("vip_leaseduration", &self.vip_leaseduration),
            ("vip_renewdeadline", &self.vip_renewdeadline),
            ("vip_retryperiod", &self.vip_retryperiod),
            ("vip_arpRate", &self.vip_arp_rate),
            ("vip_servicesinterface", &self.vip_servicesinterface),
            ("vip_subnet", &self.vip_subnet),
            ("vip_routingtable", &self.vip_routingtable),
            ("vip_routingtableid", &self.vip_routingtableid),
            ("vip_routingtabletype", &self.vip_routingtabletype),
            ("vip_routingprotocol", &self.vip_routingprotocol),
            ("vip_cleanroutingtable", &self.vip_cleanroutingtable),
            ("bgp_routerinterface", &self.bgp_routerinterface),
            ("bgp_hold_time", &self.bgp_hold_time),
            ("bgp_keepalive_interval", &self.bgp_keepalive_interval),
            ("bgp_passive", &self.bgp_passive),
            ("bgp_listen_port", &self.bgp_listen_port),
            ("vipd_bgp_unready_after", &self.vipd_bgp_unready_after),
            ("vipd_bgp_restart_time", &self.vipd_bgp_restart_time),
            ("vipd_bgp_llgr_stale_time", &self.vipd_bgp_llgr_stale_time),
            ("vipd_bfd", &self.vipd_bfd),
            ("vipd_bgp_drain_time", &self.vipd_bgp_drain_time),
            ("mpbgp_nexthop", &self.mpbgp_nexthop),
            ("mpbgp_ipv4", &self.mpbgp_ipv4),
            ("mpbgp_ipv6", &self.mpbgp_ipv6),
            ("health_check_port", &self.health_check_port),
            ("lb_ipam_configmap", &self.lb_ipam_configmap),
            ("lb_ipam_namespace", &self.lb_ipam_namespace),
            ("vip_address", &self.vip_address),
            ("vip_file", &self.vip_file),
            ("vipd_log_format", &self.vipd_log_format),
            ("cp_enable", &self.cp_enable),
            ("port", &self.port),
            (
                "control_plane_health_check_address",
                &self.control_plane_health_check_address,
            ),
            (
                "control_plane_health_check_period_seconds",
                &self.control_plane_health_check_period_seconds,
            ),
            (
                "control_plane_health_check_timeout_seconds",
                &self.control_plane_health_check_timeout_seconds,
            ),
            (
                "control_plane_health_check_failure_threshold",
                &self.control_plane_health_check_failure_threshold,
            ),
            (
                "control_plane_health_check_ca_path",
                &self.control_plane_health_check_ca_path,
            ),
            ("vipd_cp_health_check", &self.vipd_cp_health_check),
            ("vip_leasename", &self.vip_leasename),
            ("kubernetes_addr", &self.kubernetes_addr),
        ];
        all.into_iter()
            .filter_map(|(k, v)| Some((k, v.as_deref().filter(|v| !v.is_empty())?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_of_the_agent_is_a_flag_of_the_manifest() {
        let cli = crate::cli::Cli::command();
        let manager = cli.find_subcommand("manager").expect("manager");
        let manifest = cli.find_subcommand("manifest").expect("manifest");
        for kind in ["daemonset", "pod", "rbac"] {
            let sub = manifest.find_subcommand(kind).expect(kind);
            for arg in manager.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                assert!(
                    sub.get_arguments().any(|a| a.get_long() == Some(long)),
                    "vipd manager --{long} is not a flag of vipd manifest {kind}"
                );
            }
        }
    }
}

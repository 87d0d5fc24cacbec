//! [I/O] Command line: kube-vip's flag and environment variable names, so an existing kube-vip
//! DaemonSet runs vipd unchanged. A flag wins over its environment variable. Values are taken
//! as text here and checked in [`crate::config`], which names the setting in every error.

use crate::config::{ConfigError, IpamSettings, IpamStandalone, RawSettings};
pub use crate::manifest::{ManifestArgs, ManifestFlags, ManifestKind};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Where Kubernetes mounts the ServiceAccount's namespace in a Pod (kube-vip reads its Lease
/// namespace from it).
const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[derive(Debug, Parser)]
#[command(
    name = "vipd",
    version,
    about = "Routable addresses for Kubernetes LoadBalancer Services on bare metal",
    long_about = "vipd announces virtual IPs from every node by an embedded BGP speaker. \
                  It reads kube-vip's environment variables and flags."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (kube-vip's `manager`).
    Manager(Box<ManagerArgs>),
    /// Show Services get VIPs end to end with no cluster and no root: an in-process API server,
    /// BGP router and vipd agent; prints created → announced → status written, with timings.
    Demo(DemoArgs),
    /// Print Kubernetes YAML to install vipd: `vipd manifest daemonset … | kubectl apply -f -`.
    Manifest(ManifestArgs),
    /// Ask the agent on this node what it announces: per peer its state, uptime, last error and
    /// prefixes sent; per VIP the peers it is announced to, or why it is withheld.
    Status(StatusArgs),
    /// Run only the address allocator (what `manager --ipam` runs beside the agent), e.g. as a
    /// Deployment: Services without an address get one from the kubevip ConfigMap's pools.
    Ipam(IpamArgs),
    /// Read a kube-vip DaemonSet or static Pod (`kubectl get ds kube-vip-ds -n kube-system -o
    /// yaml`) and say, per setting, what vipd does with it; then print the equivalent vipd
    /// manifest (the report as YAML comments, so the output can go to `kubectl apply -f -`).
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The kube-vip manifest; `-` or none: standard input.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent's HTTP address (its `prometheus_server`); an empty or 0.0.0.0 host means this
    /// machine.
    #[arg(long = "server", env = "prometheus_server", default_value = ":2112")]
    pub server: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
}

#[derive(Debug, Args)]
pub struct IpamArgs {
    /// The IPAM ConfigMap.
    #[arg(
        long = "ipamConfigMap",
        env = "lb_ipam_configmap",
        default_value = "kubevip"
    )]
    pub configmap: String,
    /// Its namespace.
    #[arg(
        long = "ipamNamespace",
        env = "lb_ipam_namespace",
        default_value = "kube-system"
    )]
    pub namespace: String,
    /// Namespace of the Lease vipd-ipam.
    #[arg(
        long = "leaseNamespace",
        env = "POD_NAMESPACE",
        default_value = "kube-system"
    )]
    pub lease_namespace: String,
    /// Identity in the Lease [default: the host name].
    #[arg(long = "identity", env = "POD_NAME")]
    pub identity: Option<String>,
    /// Kubeconfig file [default: $KUBECONFIG, /etc/kubernetes/admin.conf if it exists,
    /// ~/.kube/config, then in-cluster].
    #[arg(long = "k8sConfigPath", env = "k8s_config_file")]
    pub k8s_config_file: Option<String>,
    /// Only Services whose loadBalancerClass is lb_class_name.
    #[arg(long = "lbClassOnly", env = "lb_class_only", default_value = "false")]
    pub lb_class_only: String,
    /// The loadBalancerClass vipd serves.
    #[arg(
        long = "lbClassName",
        env = "lb_class_name",
        default_value = "kube-vip.io/kube-vip-class"
    )]
    pub lb_class_name: String,
    /// Log level: kube-vip's slog numbers (-4 debug, 0 info, 4 warn, 8 error) or
    /// error/warn/info/debug/trace.
    #[arg(
        long = "log",
        env = "vip_loglevel",
        default_value = "info",
        allow_negative_numbers = true
    )]
    pub log: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep running (Ctrl-C to stop) after the walk-through, with a kubeconfig for kubectl.
    #[arg(long)]
    pub keep: bool,
}

/// Booleans take `--bgp`, `--bgp=true` or the env value (`true`, `1`, `t`, `false`, …).
#[derive(Debug, Args)]
pub struct ManagerArgs {
    /// Services mode: announce the VIPs of `type: LoadBalancer` Services (else the static VIPs).
    #[arg(long = "services", env = "svc_enable", num_args = 0..=1, default_missing_value = "true")]
    pub svc_enable: Option<String>,
    /// Watch Services of this namespace only [default: all namespaces].
    #[arg(long = "serviceNamespace", env = "svc_namespace")]
    pub svc_namespace: Option<String>,
    /// This node's name [default: the host name, lowercased].
    #[arg(long = "nodeName", env = "vip_nodename")]
    pub vip_nodename: Option<String>,
    /// Kubeconfig file [default: $KUBECONFIG, /etc/kubernetes/admin.conf if it exists,
    /// ~/.kube/config, then in-cluster].
    #[arg(long = "k8sConfigPath", env = "k8s_config_file")]
    pub k8s_config_file: Option<String>,
    /// Only Services whose loadBalancerClass is lb_class_name.
    #[arg(long = "lbClassOnly", env = "lb_class_only", num_args = 0..=1, default_missing_value = "true")]
    pub lb_class_only: Option<String>,
    /// The loadBalancerClass vipd serves [default: kube-vip.io/kube-vip-class].
    #[arg(long = "lbClassName", env = "lb_class_name")]
    pub lb_class_name: Option<String>,
    /// Also serve Services without a class unless lbClassOnly [default: true].
    #[arg(long = "lbClassNameLegacyHandling", env = "lb_class_legacy_handling", num_args = 0..=1, default_missing_value = "true")]
    pub lb_class_legacy_handling: Option<String>,
    /// Also put each announced VIP on vip_interface (by netlink); removed on withdraw.
    #[arg(long = "bgpAttachIPToInterface", env = "bgp_attach_ip_to_interface", num_args = 0..=1, default_missing_value = "true")]
    pub bgp_attach_ip_to_interface: Option<String>,
    /// Interface for VIP addresses [default: lo; ARP mode: the interface whose subnet holds
    /// the VIP].
    #[arg(long = "interface", env = "vip_interface")]
    pub vip_interface: Option<String>,
    /// Never write status.loadBalancer of Services.
    #[arg(long = "disableServiceUpdates", env = "disable_service_updates", num_args = 0..=1, default_missing_value = "true")]
    pub disable_service_updates: Option<String>,
    /// Serve nothing from a node labelled node.kubernetes.io/exclude-from-external-load-balancers
    /// (kubeadm labels every control-plane node so; kube-vip ignores the label) [default: false].
    #[arg(long = "honour-exclude-label", env = "vipd_honour_exclude_label", num_args = 0..=1, default_missing_value = "true")]
    pub vipd_honour_exclude_label: Option<String>,
    /// Clear status.loadBalancer.ingress of a Service that no endpoint serves anywhere
    /// (kube-vip keeps the address there) [default: false].
    #[arg(long = "clear-ingress-without-endpoints", env = "vipd_clear_ingress_without_endpoints", num_args = 0..=1, default_missing_value = "true")]
    pub vipd_clear_ingress_without_endpoints: Option<String>,
    /// Label this node service-provided.kube-vip.io/<service>.<namespace>=<addresses> for each
    /// Service it serves (removed when it stops serving it, and at shutdown).
    #[arg(long = "enableNodeLabeling", env = "enable_node_labeling", num_args = 0..=1, default_missing_value = "true")]
    pub enable_node_labeling: Option<String>,
    /// Map the ports of Services annotated kube-vip.io/forwardUPNP on the UPnP gateway (the env
    /// spelling enableUPNP is read too).
    #[arg(long = "enableUPNP", env = "enable_upnp", num_args = 0..=1, default_missing_value = "true")]
    pub enable_upnp: Option<String>,
    /// ARP/NDP mode (needs --services): one elected node per VIP adds it to its interface and
    /// announces it by gratuitous ARP / unsolicited Neighbour Advertisement. Not with --bgp.
    #[arg(long = "arp", env = "vip_arp", num_args = 0..=1, default_missing_value = "true")]
    pub vip_arp: Option<String>,
    /// ARP mode: one Lease per Service (kubevip-<service>, or the kube-vip.io/leaseName
    /// annotation) instead of one for all.
    #[arg(long = "servicesElection", env = "svc_election", num_args = 0..=1, default_missing_value = "true")]
    pub svc_election: Option<String>,
    /// ARP mode without servicesElection: the one Lease, name or namespace/name
    /// [default: plndr-svcs-lock in POD_NAMESPACE, else the ServiceAccount's namespace, else
    /// kube-system].
    #[arg(long = "servicesLeaseName", env = "svc_leasename")]
    pub svc_leasename: Option<String>,
    /// Lease duration in seconds (fractions allowed) [default: 15].
    #[arg(long = "leaseDuration", env = "vip_leaseduration")]
    pub vip_leaseduration: Option<String>,
    /// A leader that has not renewed for this many seconds drops its VIPs; below
    /// leaseDuration [default: 10].
    #[arg(long = "leaseRenewDuration", env = "vip_renewdeadline")]
    pub vip_renewdeadline: Option<String>,
    /// Seconds between Lease reads and renews; below leaseRenewDuration [default: 2].
    #[arg(long = "leaseRetry", env = "vip_retryperiod")]
    pub vip_retryperiod: Option<String>,
    /// ARP mode: milliseconds between repeated announcements (below 500: 3000) [default: 3000].
    #[arg(long = "arpRate", env = "vip_arpRate")]
    pub vip_arp_rate: Option<String>,
    /// ARP mode: interface for Service VIPs unless the Service's kube-vip.io/serviceInterface
    /// names one [default: vip_interface, else the interface whose subnet holds the VIP].
    #[arg(long = "serviceInterface", env = "vip_servicesinterface")]
    pub vip_servicesinterface: Option<String>,
    /// Routing-table mode (needs --services, or --controlplane with --leaderElection): each
    /// VIP this node serves becomes a route in a kernel routing table, for a routing daemon on
    /// the host (BIRD, FRR) to announce. Not with --bgp or --arp.
    #[arg(long = "table", env = "vip_routingtable", num_args = 0..=1, default_missing_value = "true")]
    pub vip_routingtable: Option<String>,
    /// Routing-table mode: the table (1-4294967295, not 255) [default: 198].
    #[arg(long = "tableID", env = "vip_routingtableid")]
    pub vip_routingtableid: Option<String>,
    /// Routing-table mode: the route type, 1 (unicast) or 2 (local) [default: 1].
    #[arg(long = "tableType", env = "vip_routingtabletype")]
    pub vip_routingtabletype: Option<String>,
    /// Routing-table mode: the routing protocol number that marks vipd's routes (5-255); every
    /// route of the table with it is vipd's [default: 248].
    #[arg(long = "routingProtocol", env = "vip_routingprotocol")]
    pub vip_routingprotocol: Option<String>,
    /// Routing-table mode: remove stale routes of vipd's protocol at start. vipd always does,
    /// once it knows what it serves; accepted for kube-vip's manifests.
    #[arg(long = "cleanRoutingTable", env = "vip_cleanroutingtable", num_args = 0..=1, default_missing_value = "true")]
    pub vip_cleanroutingtable: Option<String>,
    /// ARP mode: the prefix length of the VIP addresses put on interfaces, `v4[,v6]`, each a
    /// number or `auto` (the length of the interface's own subnet holding the VIP)
    /// [default: 32,128].
    #[arg(long = "vipSubnet", env = "vip_subnet")]
    pub vip_subnet: Option<String>,
    /// Announce VIPs by BGP.
    #[arg(long = "bgp", env = "bgp_enable", num_args = 0..=1, default_missing_value = "true")]
    pub bgp_enable: Option<String>,
    /// Local AS number [default: 65000].
    #[arg(long = "localAS", env = "bgp_as")]
    pub bgp_as: Option<String>,
    /// BGP router id (IPv4); else bgp_routerinterface's address; else the lowest local IPv4.
    #[arg(long = "bgpRouterID", env = "bgp_routerid")]
    pub bgp_routerid: Option<String>,
    /// Interface whose IPv4 address is the router id.
    #[arg(long = "bgpRouterInterface", env = "bgp_routerinterface")]
    pub bgp_routerinterface: Option<String>,
    /// Peers: addr:AS:password:multihop:port:mpbgp:bfd, comma separated, IPv6 in brackets.
    #[arg(long = "bgppeers", env = "bgp_peers", hide_env_values = true)]
    pub bgp_peers: Option<String>,
    /// One more peer's address, appended to bgp_peers.
    #[arg(long = "peerAddress", env = "bgp_peeraddress")]
    pub bgp_peeraddress: Option<String>,
    /// That peer's AS [default: 65000].
    #[arg(long = "peerAS", env = "bgp_peeras")]
    pub bgp_peeras: Option<String>,
    /// That peer's TCP-MD5 password.
    #[arg(long = "peerPass", env = "bgp_peerpass", hide_env_values = true)]
    pub bgp_peerpass: Option<String>,
    /// That peer is more than one hop away.
    #[arg(long = "multihop", env = "bgp_multihop", num_args = 0..=1, default_missing_value = "true")]
    pub bgp_multihop: Option<String>,
    /// Local address for every session.
    #[arg(long = "sourceIP", env = "bgp_sourceip")]
    pub bgp_sourceip: Option<String>,
    /// Local interface for every session.
    #[arg(long = "sourceIF", env = "bgp_sourceif")]
    pub bgp_sourceif: Option<String>,
    /// Hold time in seconds [default: 30].
    #[arg(long = "bgpHoldTimer", env = "bgp_hold_time")]
    pub bgp_hold_time: Option<String>,
    /// Keepalive interval in seconds [default: 10; never more than a third of the hold time].
    #[arg(long = "bgpKeepAliveInterval", env = "bgp_keepalive_interval")]
    pub bgp_keepalive_interval: Option<String>,
    /// Do not connect: listen and accept only the configured peers.
    #[arg(long = "bgp-passive", env = "bgp_passive", num_args = 0..=1, default_missing_value = "true")]
    pub bgp_passive: Option<String>,
    /// Port to listen on in passive mode [default: 179].
    #[arg(long = "bgp-listen-port", env = "bgp_listen_port")]
    pub bgp_listen_port: Option<String>,
    /// /readyz fails while a BGP session has been down this many seconds [default: 120; 0: never].
    #[arg(long = "bgp-unready-after", env = "vipd_bgp_unready_after")]
    pub bgp_unready_after: Option<String>,
    /// Graceful restart (RFC 4724): seconds peers keep vipd's routes while it restarts; a stop
    /// on a node that stays is a restart [default: 120; at most 4095; 0: none, every stop is a
    /// Cease].
    #[arg(long = "bgp-restart-time", env = "vipd_bgp_restart_time")]
    pub bgp_restart_time: Option<String>,
    /// Long-lived graceful restart (RFC 9494): seconds peers then keep them as least preferred
    /// [default: 0: not offered].
    #[arg(long = "bgp-llgr-stale-time", env = "vipd_bgp_llgr_stale_time")]
    pub bgp_llgr_stale_time: Option<String>,
    /// BFD for every peer whose bgp_peers entry sets none: enable;rxMs;txMs;multiplier, as the
    /// seventh field of bgp_peers (e.g. true;300;300;3) [default: off].
    #[arg(long = "bfd", env = "vipd_bfd")]
    pub bfd: Option<String>,
    /// Seconds a cordoned or leaving node keeps its routes, marked for graceful shutdown,
    /// before it withdraws them [default: 0: until vipd stops].
    #[arg(long = "bgp-drain-time", env = "vipd_bgp_drain_time")]
    pub bgp_drain_time: Option<String>,
    /// Next hop for VIPs of the other family: fixed, auto_sourceip or auto_sourceif.
    #[arg(long = "mpbgpNexthop", env = "mpbgp_nexthop")]
    pub mpbgp_nexthop: Option<String>,
    /// IPv4 next hop with mpbgp_nexthop=fixed.
    #[arg(long = "mpbgpIPv4", env = "mpbgp_ipv4")]
    pub mpbgp_ipv4: Option<String>,
    /// IPv6 next hop with mpbgp_nexthop=fixed.
    #[arg(long = "mpbgpIPv6", env = "mpbgp_ipv6")]
    pub mpbgp_ipv6: Option<String>,
    /// Also take BGP peers from this node's annotations under this prefix (e.g.
    /// metal.equinix.com), following them as they change.
    #[arg(long = "annotations", env = "annotation")]
    pub annotation: Option<String>,
    /// Take BGP peers from the Equinix Metal API (legacy: Metal ended on 2026-06-30).
    #[arg(long = "metal", env = "vip_packet", num_args = 0..=1, default_missing_value = "true")]
    pub vip_packet: Option<String>,
    /// The CCM's cloud-sa.json (apiKey, projectID); METAL_API_KEY / METAL_PROJECT_ID override it.
    #[arg(long = "provider-config", env = "provider_config")]
    pub provider_config: Option<String>,
    /// Install host routes to the Metal peers via the private gateway (removed on exit).
    #[arg(long = "metal-peer-routes", env = "metal_peer_routes", num_args = 0..=1, default_missing_value = "true")]
    pub metal_peer_routes: Option<String>,
    /// Address of /healthz and /readyz ("" turns it off).
    #[arg(
        long = "prometheusHTTPServer",
        env = "prometheus_server",
        default_value = ":2112"
    )]
    pub prometheus_server: String,
    /// Also serve /healthz (and the rest) on this port of every address, as kube-vip's
    /// health_check_port [default: 0, off].
    #[arg(long = "healthCheckPort", env = "health_check_port")]
    pub health_check_port: Option<String>,
    /// Services mode: also allocate addresses from the kube-vip-cloud-provider ConfigMap (one
    /// agent, elected by the Lease vipd-ipam, allocates).
    #[arg(long = "ipam", env = "lb_ipam", num_args = 0..=1, default_missing_value = "true")]
    pub lb_ipam: Option<String>,
    /// The IPAM ConfigMap [default: kubevip].
    #[arg(long = "ipamConfigMap", env = "lb_ipam_configmap")]
    pub lb_ipam_configmap: Option<String>,
    /// Its namespace [default: kube-system].
    #[arg(long = "ipamNamespace", env = "lb_ipam_namespace")]
    pub lb_ipam_namespace: Option<String>,
    /// Static VIPs, comma separated (env `vip_address`, or kube-vip's `address`).
    #[arg(long = "address", env = "vip_address")]
    pub vip_address: Option<String>,
    /// A file of more static VIPs, one per line; re-read on SIGHUP.
    #[arg(long = "vip-file", env = "vip_file")]
    pub vip_file: Option<String>,
    /// The control-plane VIP: --address is the API servers' address, held only by nodes whose
    /// own API server passes its health check: by BGP every such node (or the Lease's holder
    /// with --leaderElection), by ARP the Lease's holder; beside Services with --services.
    #[arg(long = "controlplane", env = "cp_enable", num_args = 0..=1, default_missing_value = "true")]
    pub cp_enable: Option<String>,
    /// The API server's port [default: 6443].
    #[arg(long = "port", env = "port")]
    pub port: Option<String>,
    /// The control-plane VIP's health check URL [default: https://127.0.0.1:<port>/livez, not
    /// verified unless --controlPlaneHealthCheckCAPath].
    #[arg(
        long = "controlPlaneHealthCheckAddress",
        env = "control_plane_health_check_address"
    )]
    pub control_plane_health_check_address: Option<String>,
    /// Seconds between health checks [default: 5].
    #[arg(
        long = "controlPlaneHealthCheckPeriodSeconds",
        env = "control_plane_health_check_period_seconds"
    )]
    pub control_plane_health_check_period_seconds: Option<String>,
    /// Seconds a health check may take [default: 3].
    #[arg(
        long = "controlPlaneHealthCheckTimeoutSeconds",
        env = "control_plane_health_check_timeout_seconds"
    )]
    pub control_plane_health_check_timeout_seconds: Option<String>,
    /// Failed checks in a row that withdraw the VIP [default: 3].
    #[arg(
        long = "controlPlaneHealthCheckFailureThreshold",
        env = "control_plane_health_check_failure_threshold"
    )]
    pub control_plane_health_check_failure_threshold: Option<String>,
    /// CA certificate(s), PEM, that the health check's TLS is verified against.
    #[arg(
        long = "controlPlaneHealthCheckCAPath",
        env = "control_plane_health_check_ca_path"
    )]
    pub control_plane_health_check_ca_path: Option<String>,
    /// false: announce the control-plane VIP without checking the API server (kube-vip's
    /// behaviour without --controlPlaneHealthCheckAddress) [default: true].
    #[arg(long = "cp-health-check", env = "vipd_cp_health_check", num_args = 0..=1, default_missing_value = "true")]
    pub vipd_cp_health_check: Option<String>,
    /// Namespace of the control-plane Lease [default: kube-system].
    #[arg(short = 'n', long = "namespace", env = "cp_namespace")]
    pub cp_namespace: Option<String>,
    /// Name of the control-plane Lease [default: plndr-cp-lock].
    #[arg(long = "leaseName", env = "vip_leasename")]
    pub vip_leasename: Option<String>,
    /// BGP mode: only the holder of the control-plane Lease announces the control-plane VIP
    /// (else every healthy node does). ARP mode always elects.
    #[arg(long = "leaderElection", env = "vip_leaderelection", num_args = 0..=1, default_missing_value = "true")]
    pub vip_leaderelection: Option<String>,
    /// The API server to talk to (host:port) instead of the kubeconfig's: a control-plane
    /// node's own, before the VIP is up [default with --controlplane and
    /// /etc/kubernetes/admin.conf: kubernetes:<port>, 127.0.0.1 by the Pod's hostAliases].
    #[arg(long = "kubernetes-addr", env = "kubernetes_addr")]
    pub kubernetes_addr: Option<String>,
    /// Log level: kube-vip's slog numbers (-4 debug, 0 info, 4 warn, 8 error) or
    /// error/warn/info/debug/trace. RUST_LOG wins.
    #[arg(long = "log", env = "vip_loglevel", allow_negative_numbers = true)]
    pub vip_loglevel: Option<String>,
    /// Log format: text or json.
    #[arg(long = "log-format", env = "vipd_log_format", default_value = "text")]
    pub log_format: String,
}

impl IpamArgs {
    /// The settings of `vipd ipam`, checked; a bad value names its variable and flag.
    pub fn settings(&self) -> Result<IpamStandalone, ConfigError> {
        // kube-vip-cloud-provider's variables, read where vipd's own are not set: a
        // Deployment of kube-vip-cloud-provider with the image swapped keeps working.
        let kvcp = |value: &str, default: &str, ours: &str, theirs: &str| -> String {
            let ours_set = std::env::var_os(ours).is_some();
            match std::env::var(theirs) {
                Ok(v) if value == default && !ours_set && !v.is_empty() => v,
                _ => value.to_owned(),
            }
        };
        let lb_class_only = kvcp(
            &self.lb_class_only,
            "false",
            "lb_class_only",
            "KUBEVIP_ENABLE_LOADBALANCERCLASS",
        );
        let lb_class_only =
            vipd_providers::static_peers::parse_bool(&lb_class_only).ok_or_else(|| {
                ConfigError {
                    setting: "lb_class_only (--lbClassOnly, KUBEVIP_ENABLE_LOADBALANCERCLASS)"
                        .into(),
                    value: lb_class_only.clone(),
                    reason: "is not a boolean (true or false)".into(),
                }
            })?;
        Ok(IpamStandalone {
            kubeconfig: self.k8s_config_file.as_deref().map(PathBuf::from),
            identity: self.identity.clone(),
            ipam: IpamSettings {
                configmap: kvcp(
                    &self.configmap,
                    "kubevip",
                    "lb_ipam_configmap",
                    "KUBEVIP_CONFIG_MAP",
                ),
                namespace: kvcp(
                    &self.namespace,
                    "kube-system",
                    "lb_ipam_namespace",
                    "KUBEVIP_NAMESPACE",
                ),
                lease_namespace: self.lease_namespace.clone(),
            },
            lb_class_only,
            lb_class_name: kvcp(
                &self.lb_class_name,
                "kube-vip.io/kube-vip-class",
                "lb_class_name",
                "KUBEVIP_CUSTOM_LOADBALANCERCLASS_NAME",
            ),
        })
    }
}

impl ManagerArgs {
    pub fn raw_settings(&self) -> RawSettings {
        RawSettings {
            svc_enable: self.svc_enable.clone(),
            vip_arp: self.vip_arp.clone(),
            bgp_enable: self.bgp_enable.clone(),
            bgp_as: self.bgp_as.clone(),
            bgp_routerid: self.bgp_routerid.clone(),
            bgp_routerinterface: self.bgp_routerinterface.clone(),
            bgp_peers: self.bgp_peers.clone(),
            bgp_peeraddress: self.bgp_peeraddress.clone(),
            bgp_peeras: self.bgp_peeras.clone(),
            bgp_peerpass: self.bgp_peerpass.clone(),
            bgp_multihop: self.bgp_multihop.clone(),
            bgp_sourceip: self.bgp_sourceip.clone(),
            bgp_sourceif: self.bgp_sourceif.clone(),
            bgp_hold_time: self.bgp_hold_time.clone(),
            bgp_keepalive_interval: self.bgp_keepalive_interval.clone(),
            bgp_passive: self.bgp_passive.clone(),
            bgp_listen_port: self.bgp_listen_port.clone(),
            bgp_unready_after: self.bgp_unready_after.clone(),
            bgp_restart_time: self.bgp_restart_time.clone(),
            bgp_llgr_stale_time: self.bgp_llgr_stale_time.clone(),
            bfd: self.bfd.clone(),
            bgp_drain_time: self.bgp_drain_time.clone(),
            mpbgp_nexthop: self.mpbgp_nexthop.clone(),
            mpbgp_ipv4: self.mpbgp_ipv4.clone(),
            mpbgp_ipv6: self.mpbgp_ipv6.clone(),
            // kube-vip reads `address` where `vip_address` is not set.
            vip_address: self
                .vip_address
                .clone()
                .or_else(|| std::env::var("address").ok()),
            vip_file: self.vip_file.clone(),
            cp_enable: self.cp_enable.clone(),
            port: self.port.clone(),
            control_plane_health_check_address: self.control_plane_health_check_address.clone(),
            control_plane_health_check_period_seconds: self
                .control_plane_health_check_period_seconds
                .clone(),
            control_plane_health_check_timeout_seconds: self
                .control_plane_health_check_timeout_seconds
                .clone(),
            control_plane_health_check_failure_threshold: self
                .control_plane_health_check_failure_threshold
                .clone(),
            control_plane_health_check_ca_path: self.control_plane_health_check_ca_path.clone(),
            vipd_cp_health_check: self.vipd_cp_health_check.clone(),
            cp_namespace: self.cp_namespace.clone(),
            vip_leasename: self.vip_leasename.clone(),
            vip_leaderelection: self.vip_leaderelection.clone(),
            kubernetes_addr: self.kubernetes_addr.clone(),
            vip_loglevel: self.vip_loglevel.clone(),
            svc_namespace: self.svc_namespace.clone(),
            vip_nodename: self.vip_nodename.clone(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned()),
            k8s_config_file: self.k8s_config_file.clone(),
            lb_class_only: self.lb_class_only.clone(),
            lb_class_name: self.lb_class_name.clone(),
            lb_class_legacy_handling: self.lb_class_legacy_handling.clone(),
            bgp_attach_ip_to_interface: self.bgp_attach_ip_to_interface.clone(),
            vip_interface: self.vip_interface.clone(),
            disable_service_updates: self.disable_service_updates.clone(),
            vipd_honour_exclude_label: self.vipd_honour_exclude_label.clone(),
            enable_node_labeling: self.enable_node_labeling.clone(),
            vipd_clear_ingress_without_endpoints: self.vipd_clear_ingress_without_endpoints.clone(),
            annotation: self.annotation.clone(),
            vip_packet: self.vip_packet.clone(),
            provider_config: self.provider_config.clone(),
            metal_peer_routes: self.metal_peer_routes.clone(),
            prometheus_server: Some(self.prometheus_server.clone()),
            health_check_port: self.health_check_port.clone(),
            lb_ipam: self.lb_ipam.clone(),
            lb_ipam_configmap: self.lb_ipam_configmap.clone(),
            lb_ipam_namespace: self.lb_ipam_namespace.clone(),
            pod_namespace: std::env::var("POD_NAMESPACE").ok(),
            sa_namespace: std::fs::read_to_string(SA_NAMESPACE_FILE)
                .ok()
                .map(|n| n.trim().to_owned()),
            svc_election: self.svc_election.clone(),
            svc_leasename: self.svc_leasename.clone(),
            vip_leaseduration: self.vip_leaseduration.clone(),
            vip_renewdeadline: self.vip_renewdeadline.clone(),
            vip_retryperiod: self.vip_retryperiod.clone(),
            vip_arp_rate: self.vip_arp_rate.clone(),
            vip_servicesinterface: self.vip_servicesinterface.clone(),
            vip_routingtable: self.vip_routingtable.clone(),
            vip_subnet: self.vip_subnet.clone(),
            vip_routingtableid: self.vip_routingtableid.clone(),
            vip_routingtabletype: self.vip_routingtabletype.clone(),
            vip_routingprotocol: self.vip_routingprotocol.clone(),
            vip_cleanroutingtable: self.vip_cleanroutingtable.clone(),
            // The services guide documents `enableUPNP`; kube-vip only reads `enable_upnp`.
            enable_upnp: self
                .enable_upnp
                .clone()
                .or_else(|| std::env::var("enableUPNP").ok()),
        }
    }
}

/// `argv` without kube-vip's flags that vipd does not define, for `manager` and `manifest …`
/// (kube-vip's DaemonSet and manifest commands pass them; refusing them would crash-loop a
/// DaemonSet whose image was swapped), and those that ask for something, to be warned about.
/// Other subcommands' arguments are untouched.
pub fn set_aside_kube_vip_flags(
    argv: Vec<String>,
) -> (Vec<String>, Vec<crate::config::kube_vip::Ignored>) {
    use clap::CommandFactory;
    set_aside_kube_vip_flags_of(&Cli::command(), argv)
}

/// As [`set_aside_kube_vip_flags`], with vipd's command line already built (the fuzz target
/// parses thousands of command lines a second).
pub fn set_aside_kube_vip_flags_of(
    cli: &clap::Command,
    argv: Vec<String>,
) -> (Vec<String>, Vec<crate::config::kube_vip::Ignored>) {
    let mut cmd = cli;
    let mut at = 1;
    let mut path = Vec::new();
    while let Some(sub) = argv.get(at).and_then(|a| cmd.find_subcommand(a.as_str())) {
        path.push(sub.get_name().to_owned());
        cmd = sub;
        at += 1;
    }
    if !matches!(
        path.first().map(String::as_str),
        Some("manager" | "manifest")
    ) {
        return (argv, Vec::new());
    }
    let own: Vec<String> = cmd
        .get_arguments()
        .flat_map(|a| {
            let short = a.get_short().map(|c| c.to_string());
            a.get_long().map(str::to_owned).into_iter().chain(short)
        })
        .chain([
            "help".to_owned(),
            "version".to_owned(),
            "h".to_owned(),
            "V".to_owned(),
        ])
        .collect();
    let (rest, ignored) =
        crate::config::kube_vip::strip_flags(&argv[at..], |f| own.iter().any(|o| o == f));
    let mut out = argv[..at].to_vec();
    out.extend(rest);
    (out, ignored)
}

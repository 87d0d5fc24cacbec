//! [pure] `vipd manifest daemonset | pod | rbac`: the Kubernetes objects that install vipd,
//! built from `k8s-openapi` types and printed as multi-document YAML.
//!
//! The flags are kube-vip's and fill the environment variables the agent reads (same names), so
//! `vipd manifest daemonset --services --bgp --annotations metal.equinix.com --inCluster |
//! kubectl apply -f -` installs a working vipd. Deliberate differences from kube-vip's output:
//! - `daemonset` prints the RBAC documents before the DaemonSet (kube-vip's prints only the
//!   DaemonSet and needs its rbac.yaml applied first), so that one line is a whole install.
//! - Objects are named `vipd` (kube-vip: `kube-vip-ds`, `system:kube-vip-role`, …).
//! - The ClusterRole grants only what the chosen modes use: Leases only with an election,
//!   IPAM or ARP mode, Service writes only with IPAM or ARP mode, ConfigMaps only with IPAM,
//!   `nodes` patch only with `--enableNodeLabeling`, no `endpoints`, `pods` or `servicecidrs`.
//!   `rbac --role` / `--rolebinding` print a namespaced Role / RoleBinding as kube-vip's do.
//! - Every flag of `vipd manager` is a flag here too ([`PassOn`]); kube-vip flags vipd does not
//!   implement are accepted, named on stderr and left out.
//! - The DaemonSet always uses its ServiceAccount; `--inCluster` is accepted and changes nothing
//!   (kube-vip without it mounts the host's admin.conf). The static Pod always uses the host's
//!   kubeconfig instead, since the kubelet refuses static Pods that name a ServiceAccount.
//! - The container has a read-only root filesystem, no privilege escalation, probes on
//!   `/healthz` and `/readyz`, the `metrics` port and resource requests; kube-vip's has none.
//! - Only settings that are set are written (kube-vip writes `bgp_routerid`, `bgp_peer*` and
//!   `port` even when empty); `bgp_as` is always written with BGP.
//! - A DaemonSet or Pod the agent would refuse to start (a bad AS, both `--sourceIF` and
//!   `--sourceIP`, BGP without peers, a mode this build lacks) is refused here, with the agent's
//!   own message.

use crate::config::{ConfigError, RawSettings};
mod pass_on;
pub use pass_on::PassOn;

use clap::{Args, Subcommand};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    HostAlias, HostPathVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, ServiceAccount,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use std::collections::BTreeMap;

/// A boolean the way kube-vip reads one (Go's `strconv.ParseBool`).
fn go_bool(v: &str) -> Result<bool, String> {
    vipd_providers::static_peers::parse_bool(v)
        .ok_or_else(|| format!("{v:?} is not a boolean (true or false)"))
}

/// `vipd manifest`: which objects to print.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub kind: ManifestKind,
}

#[derive(Debug, Subcommand)]
pub enum ManifestKind {
    /// ServiceAccount, ClusterRole and binding, then the DaemonSet: one `kubectl apply -f -`
    /// installs vipd on every node.
    Daemonset(Box<ManifestFlags>),
    /// A static Pod for /etc/kubernetes/manifests on a control-plane node; it reaches the API
    /// with the host's kubeconfig, as static Pods cannot use a ServiceAccount or a Secret.
    Pod(Box<ManifestFlags>),
    /// Only the ServiceAccount, ClusterRole and ClusterRoleBinding (`--role`: a Role and a
    /// RoleBinding in the namespace; `--rolebinding`: the ClusterRole bound in the namespace).
    Rbac(Box<ManifestFlags>),
}

/// kube-vip's `manifest` flags, each with the environment variable it fills in the DaemonSet
/// (and falls back to, as kube-vip's do). Booleans take `--bgp` or `--bgp=true`.
#[derive(Debug, Clone, Args)]
pub struct ManifestFlags {
    /// Image of the vipd container.
    #[arg(long, default_value = concat!("ghcr.io/vipd/vipd:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Namespace of the ServiceAccount, DaemonSet and Pod.
    #[arg(
        long,
        short = 'n',
        env = "svc_namespace",
        default_value = "kube-system"
    )]
    pub namespace: String,
    /// Accepted for kube-vip's command line; vipd's DaemonSet always uses its ServiceAccount.
    #[arg(long = "inCluster", visible_alias = "in-cluster", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub in_cluster: bool,
    /// Run on control-plane nodes only (tolerate their taints, require their role label).
    #[arg(long, num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub taint: bool,
    /// Services mode.
    #[arg(long = "services", env = "svc_enable", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub services: bool,
    /// Elect one node per Service (adds Lease permissions).
    #[arg(long = "servicesElection", env = "svc_election", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub services_election: bool,
    /// Leader election (adds Lease permissions).
    #[arg(long = "leaderElection", env = "vip_leaderelection", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub leader_election: bool,
    /// Allocate Service VIPs from the `kubevip` ConfigMap (adds ConfigMap and Lease permissions).
    #[arg(long = "ipam", env = "lb_ipam", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub ipam: bool,
    /// ARP mode.
    #[arg(long = "arp", env = "vip_arp", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub arp: bool,
    /// Announce VIPs by BGP.
    #[arg(long = "bgp", env = "bgp_enable", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub bgp: bool,
    /// Interface for VIP addresses.
    #[arg(long = "interface", env = "vip_interface")]
    pub interface: Option<String>,
    /// Also put each announced VIP on the interface.
    #[arg(long = "bgpAttachIPToInterface", env = "bgp_attach_ip_to_interface", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub bgp_attach_ip_to_interface: bool,
    /// Local AS number [default in the agent: 65000].
    #[arg(long = "localAS", env = "bgp_as")]
    pub local_as: Option<String>,
    /// BGP router id (IPv4).
    #[arg(long = "bgpRouterID", env = "bgp_routerid")]
    pub router_id: Option<String>,
    /// Peers: addr:AS:password:multihop:port:mpbgp:bfd, comma separated, IPv6 in brackets.
    #[arg(long = "bgppeers", env = "bgp_peers", hide_env_values = true)]
    pub bgp_peers: Option<String>,
    /// One more peer's address.
    #[arg(long = "peerAddress", env = "bgp_peeraddress")]
    pub peer_address: Option<String>,
    /// That peer's AS.
    #[arg(long = "peerAS", env = "bgp_peeras")]
    pub peer_as: Option<String>,
    /// That peer's TCP-MD5 password (written into the DaemonSet as plain env, as kube-vip does).
    #[arg(long = "peerPass", env = "bgp_peerpass", hide_env_values = true)]
    pub peer_pass: Option<String>,
    /// That peer is more than one hop away.
    #[arg(long = "multihop", env = "bgp_multihop", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub multihop: bool,
    /// Local interface for every session.
    #[arg(long = "sourceIF", env = "bgp_sourceif")]
    pub source_if: Option<String>,
    /// Local address for every session.
    #[arg(long = "sourceIP", env = "bgp_sourceip")]
    pub source_ip: Option<String>,
    /// Take BGP peers from each node's annotations under this prefix (e.g. metal.equinix.com).
    #[arg(long = "annotations", env = "annotation")]
    pub annotations: Option<String>,
    /// Take BGP peers from the Equinix Metal API; mounts Secret `metal-cloud-config` at
    /// /etc/cloud-sa.
    #[arg(long = "metal", env = "vip_packet", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub metal: bool,
    /// The CCM's cloud-sa.json inside the container; implies --metal (as kube-vip's did)
    /// [default with --metal: /etc/cloud-sa/cloud-sa.json].
    #[arg(long = "provider-config", env = "provider_config")]
    pub provider_config: Option<String>,
    /// Install host routes to the Metal peers via the private gateway.
    #[arg(long = "metal-peer-routes", env = "metal_peer_routes", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub metal_peer_routes: bool,
    /// Only Services whose loadBalancerClass is lb_class_name.
    #[arg(long = "lbClassOnly", env = "lb_class_only", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub lb_class_only: bool,
    /// The loadBalancerClass vipd serves.
    #[arg(long = "lbClassName", env = "lb_class_name")]
    pub lb_class_name: Option<String>,
    /// Never write status.loadBalancer of Services.
    #[arg(long = "disableServiceUpdates", env = "disable_service_updates", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub disable_service_updates: bool,
    /// Label the node serving a Service service-provided.kube-vip.io/<service>.<namespace>
    /// (the ClusterRole then grants patch on nodes).
    #[arg(long = "enableNodeLabeling", env = "enable_node_labeling", num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub enable_node_labeling: bool,
    /// Address of /metrics, /healthz and /readyz; its port is the probes' and `metrics` port.
    #[arg(
        long = "prometheusHTTPServer",
        env = "prometheus_server",
        default_value = ":2112"
    )]
    pub prometheus_server: String,
    /// Log level: kube-vip's slog numbers (-4 debug, 0 info, 4 warn, 8 error) or names.
    #[arg(long = "log", env = "vip_loglevel", allow_negative_numbers = true)]
    pub log: Option<String>,
    /// `pod` only: the host's kubeconfig, mounted read-only at the same path.
    #[arg(
        long = "k8sConfigPath",
        env = "k8s_config_file",
        default_value = "/etc/kubernetes/admin.conf"
    )]
    pub k8s_config_path: String,
    /// `rbac`: a namespaced Role and RoleBinding instead of the ClusterRole and its binding.
    #[arg(long, num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub role: bool,
    /// `rbac`: bind the ClusterRole in the namespace only (a RoleBinding).
    #[arg(long, num_args = 0..=1, value_name = "BOOL", default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = go_bool)]
    pub rolebinding: bool,
    #[command(flatten)]
    pub pass_on: PassOn,
    /// More environment of the container, as given (`vipd migrate` carries a kube-vip
    /// DaemonSet's Secret references and foreign variables over); never from the command line.
    #[arg(skip)]
    pub extra_env: Vec<EnvVar>,
}

/// Name of every object vipd's manifests create.
pub const NAME: &str = "vipd";
/// The Equinix CCM's Secret and where its `cloud-sa.json` is mounted.
pub const METAL_SECRET: &str = "metal-cloud-config";
pub const METAL_MOUNT: &str = "/etc/cloud-sa";
pub const METAL_PROVIDER_CONFIG: &str = "/etc/cloud-sa/cloud-sa.json";

/// Why no manifest was printed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the agent would refuse this setting: {0}")]
    Setting(#[from] ConfigError),
    #[error(
        "prometheus_server (--prometheusHTTPServer): {0:?} has no port; \
         the probes and the metrics port need one (e.g. :2112)"
    )]
    MetricsPort(String),
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

/// The YAML documents for `args`, separated by `---`.
pub fn render(args: &ManifestArgs) -> Result<String, Error> {
    let mut docs = Vec::new();
    match &args.kind {
        ManifestKind::Rbac(f) => rbac(f, &mut docs)?,
        ManifestKind::Daemonset(f) => {
            let ds = daemonset(f)?;
            rbac(f, &mut docs)?;
            docs.push(yaml(&ds)?);
        }
        ManifestKind::Pod(f) => docs.push(yaml(&pod(f)?)?),
    }
    Ok(docs.join("---\n"))
}

fn yaml<T: Serialize>(doc: &T) -> Result<String, Error> {
    serde_saphyr::to_string(doc).map_err(|e| Error::Yaml(e.to_string()))
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
        (
            "app.kubernetes.io/version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ])
}

fn meta(namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(NAME.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..Default::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..Default::default()
    }
}

/// What the agent reads and writes, for the modes `f` turns on.
pub fn cluster_rules(f: &ManifestFlags) -> Vec<PolicyRule> {
    let mut rules = Vec::new();
    if f.ipam || f.arp {
        // The allocator writes the VIP it picks into the Service; an ARP-mode leader writes
        // the annotation kube-vip.io/vipHost.
        rules.push(rule(
            "",
            &["services"],
            &["get", "list", "watch", "patch", "update"],
        ));
    } else if f.services {
        // DHCP VIPs (`0.0.0.0`) write kube-vip.io/hwaddr and requestedIP into the Service.
        rules.push(rule("", &["services"], &["get", "list", "watch", "patch"]));
    } else {
        rules.push(rule("", &["services"], &["get", "list", "watch"]));
    }
    // status.loadBalancer.ingress by merge patch; update for kube-vip's fallback path.
    rules.push(rule("", &["services/status"], &["patch", "update"]));
    rules.push(rule(
        "discovery.k8s.io",
        &["endpointslices"],
        &["get", "list", "watch"],
    ));
    // Node readiness, the exclude-from-external-load-balancers label, peer annotations; with
    // node labelling, the node's own service-provided.kube-vip.io labels.
    if f.enable_node_labeling {
        rules.push(rule("", &["nodes"], &["get", "list", "watch", "patch"]));
    } else {
        rules.push(rule("", &["nodes"], &["get", "list", "watch"]));
    }
    // Events on Services: events.k8s.io/v1, and core/v1 for older recorders; patch for series.
    rules.push(rule("", &["events"], &["create", "patch"]));
    rules.push(rule("events.k8s.io", &["events"], &["create", "patch"]));
    if f.services || f.services_election || f.leader_election || f.ipam || f.arp {
        // Every election (the IPAM allocator, ARP mode, services mode's DHCP and UPnP Services)
        // reads, creates and replaces its Lease (get, create, update); patch stays granted as
        // kube-vip's RBAC grants it, so a switched cluster's Role still fits.
        rules.push(rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update", "patch"],
        ));
    }
    if f.ipam {
        // The `kubevip` ConfigMap of ranges and CIDRs.
        rules.push(rule("", &["configmaps"], &["get", "list", "watch"]));
    }
    rules
}

fn rbac(f: &ManifestFlags, docs: &mut Vec<String>) -> Result<(), Error> {
    let account = ServiceAccount {
        metadata: meta(Some(&f.namespace)),
        ..Default::default()
    };
    docs.push(yaml(&account)?);
    let subjects = Some(vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: NAME.to_owned(),
        namespace: Some(f.namespace.clone()),
        ..Default::default()
    }]);
    let role_ref = |kind: &str| RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: kind.to_owned(),
        name: NAME.to_owned(),
    };
    // kube-vip's --role: a Role and its RoleBinding in the namespace (implies --rolebinding);
    // --rolebinding alone: the ClusterRole, bound in the namespace only.
    if f.role {
        let role = Role {
            metadata: meta(Some(&f.namespace)),
            rules: Some(cluster_rules(f)),
        };
        docs.push(yaml(&role)?);
    } else {
        let role = ClusterRole {
            metadata: meta(None),
            rules: Some(cluster_rules(f)),
            ..Default::default()
        };
        docs.push(yaml(&role)?);
    }
    if f.role || f.rolebinding {
        let binding = RoleBinding {
            metadata: meta(Some(&f.namespace)),
            role_ref: role_ref(if f.role { "Role" } else { "ClusterRole" }),
            subjects,
        };
        docs.push(yaml(&binding)?);
    } else {
        let binding = ClusterRoleBinding {
            metadata: meta(None),
            role_ref: role_ref("ClusterRole"),
            subjects,
        };
        docs.push(yaml(&binding)?);
    }
    Ok(())
}

/// What the manifest cannot do as asked, for stderr.
pub fn warnings(f: &ManifestFlags) -> Vec<String> {
    let mut out = Vec::new();
    if f.role || f.rolebinding {
        out.push(format!(
            "--role/--rolebinding grant only inside namespace {}: the agent also reads its Node \
             and (without --serviceNamespace {0}) Services of every namespace, which only a \
             ClusterRoleBinding grants",
            f.namespace
        ));
    }
    if f.pass_on.vip_nodename.is_some() {
        out.push(
            "--nodeName is not written: the DaemonSet and the static Pod take each node's name \
             from spec.nodeName"
                .to_owned(),
        );
    }
    out
}

/// Where the container's kubeconfig comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    ServiceAccount,
    HostKubeconfig,
}

fn daemonset(f: &ManifestFlags) -> Result<DaemonSet, Error> {
    let mut spec = pod_spec(f, Access::ServiceAccount)?;
    if f.taint {
        // As kube-vip's --taint: tolerate everything a control-plane node is tainted with and
        // run only on nodes labelled as control plane (either role label).
        spec.tolerations = Some(
            ["NoSchedule", "NoExecute"]
                .into_iter()
                .map(|effect| Toleration {
                    effect: Some(effect.to_owned()),
                    operator: Some("Exists".to_owned()),
                    ..Default::default()
                })
                .collect(),
        );
        let term = |key: &str| NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.to_owned(),
                operator: "Exists".to_owned(),
                values: None,
            }]),
            ..Default::default()
        };
        spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![
                        term("node-role.kubernetes.io/master"),
                        term("node-role.kubernetes.io/control-plane"),
                    ],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let selector = BTreeMap::from([("app.kubernetes.io/name".to_owned(), NAME.to_owned())]);
    Ok(DaemonSet {
        metadata: meta(Some(&f.namespace)),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(spec),
            },
            ..Default::default()
        }),
        status: None,
    })
}

fn pod(f: &ManifestFlags) -> Result<Pod, Error> {
    Ok(Pod {
        metadata: meta(Some(&f.namespace)),
        spec: Some(pod_spec(f, Access::HostKubeconfig)?),
        status: None,
    })
}

fn pod_spec(f: &ManifestFlags, access: Access) -> Result<PodSpec, Error> {
    let metal = metal(f);
    let mut env = env(f);
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    // The control-plane VIP by BGP alone reads nothing from the API: such a static Pod mounts no
    // kubeconfig, so it runs from the first moment of `kubeadm init` (before admin.conf has any
    // rights), with no credential on it at all.
    let host_kubeconfig = access == Access::HostKubeconfig && needs_api(f);
    if host_kubeconfig {
        env.push(value("k8s_config_file", &f.k8s_config_path));
        volumes.push(Volume {
            name: "kubeconfig".to_owned(),
            host_path: Some(HostPathVolumeSource {
                path: f.k8s_config_path.clone(),
                type_: Some("File".to_owned()),
            }),
            ..Default::default()
        });
        mounts.push(read_only_mount("kubeconfig", &f.k8s_config_path));
    }
    if metal {
        let source = match access {
            Access::ServiceAccount => Volume {
                name: "cloud-sa-volume".to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(METAL_SECRET.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            // A static Pod cannot mount a Secret: the same files from the host.
            Access::HostKubeconfig => Volume {
                name: "cloud-sa-volume".to_owned(),
                host_path: Some(HostPathVolumeSource {
                    path: METAL_MOUNT.to_owned(),
                    type_: Some("Directory".to_owned()),
                }),
                ..Default::default()
            },
        };
        volumes.push(source);
        mounts.push(read_only_mount("cloud-sa-volume", METAL_MOUNT));
    }
    check(&env)?;
    // Carried over as given, after the check (a Secret reference has no value to check); a
    // name the flags already set is not written twice.
    for extra in &f.extra_env {
        if !env.iter().any(|e| e.name == extra.name) {
            env.push(extra.clone());
        }
    }
    let (probe_host, port) = metrics_port(&f.prometheus_server)?;
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            host: probe_host.clone(),
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = Container {
        name: NAME.to_owned(),
        image: Some(f.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec!["manager".to_owned()]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: i32::from(port),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        liveness_probe: Some(probe("/healthz")),
        readiness_probe: Some(probe("/readyz")),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".to_owned())),
                ("memory".to_owned(), Quantity("32Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("128Mi".to_owned()),
            )])),
            ..Default::default()
        }),
        // Addresses and routes by netlink need NET_ADMIN; SO_BINDTODEVICE (bgp_sourceif) and
        // ARP/NDP frames need NET_RAW. Nothing else.
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(strings(&["NET_ADMIN", "NET_RAW"])),
                drop: Some(strings(&["ALL"])),
            }),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            // The container runtime's default syscall filter: vipd needs no unusual syscall
            // (netlink, raw sockets and TCP-MD5 setsockopt are all allowed by it).
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    };
    Ok(PodSpec {
        host_network: Some(true),
        service_account_name: (access == Access::ServiceAccount).then(|| NAME.to_owned()),
        // kube-vip's static Pod: a kubeconfig naming `kubernetes` reaches the local API server.
        host_aliases: host_kubeconfig.then(|| {
            vec![HostAlias {
                ip: "127.0.0.1".to_owned(),
                hostnames: Some(vec!["kubernetes".to_owned()]),
            }]
        }),
        containers: vec![container],
        volumes: (!volumes.is_empty()).then_some(volumes),
        ..Default::default()
    })
}

/// Whether the agent talks to the API server: Services, the peers from node annotations, IPAM,
/// and an elected control-plane VIP (ARP mode, or `--leaderElection`). The control-plane VIP
/// announced by every healthy node and static VIPs by BGP (with peers from the settings or the
/// Metal API) do not.
fn needs_api(f: &ManifestFlags) -> bool {
    f.services
        || f.ipam
        || f.annotations.as_deref().is_some_and(|a| !a.is_empty())
        || (control_plane(f) && (f.arp || f.leader_election))
}

/// `--controlplane` as given (a boolean flag passed on as written).
fn control_plane(f: &ManifestFlags) -> bool {
    f.pass_on
        .cp_enable
        .as_deref()
        .and_then(vipd_providers::static_peers::parse_bool)
        .unwrap_or(false)
}

/// `--provider-config` implies `--metal`, as it did for kube-vip before v0.9.
fn metal(f: &ManifestFlags) -> bool {
    f.metal || f.provider_config.as_deref().is_some_and(|p| !p.is_empty())
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The agent's settings, in kube-vip's names and (mostly) its order.
fn env(f: &ManifestFlags) -> Vec<EnvVar> {
    let mut env = Vec::new();
    let text = |env: &mut Vec<EnvVar>, name: &str, v: &Option<String>| {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            env.push(value(name, v));
        }
    };
    let yes = |env: &mut Vec<EnvVar>, name: &str, on: bool| {
        if on {
            env.push(value(name, "true"));
        }
    };
    // kube-vip always writes vip_arp.
    env.push(value("vip_arp", if f.arp { "true" } else { "false" }));
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..Default::default()
        }),
    };
    env.push(field("vip_nodename", "spec.nodeName"));
    // Where the agent's Leases live (the ServiceAccount's namespace file says the same in a
    // Pod; the env is explicit).
    env.push(field("POD_NAMESPACE", "metadata.namespace"));
    text(&mut env, "vip_interface", &f.interface);
    yes(&mut env, "svc_enable", f.services);
    yes(&mut env, "svc_election", f.services_election);
    yes(&mut env, "lb_class_only", f.lb_class_only);
    text(&mut env, "lb_class_name", &f.lb_class_name);
    yes(&mut env, "vip_leaderelection", f.leader_election);
    text(&mut env, "annotation", &f.annotations);
    if f.bgp {
        env.push(value("bgp_enable", "true"));
        yes(
            &mut env,
            "bgp_attach_ip_to_interface",
            f.bgp_attach_ip_to_interface,
        );
        text(&mut env, "bgp_routerid", &f.router_id);
        let local_as = f.local_as.as_deref().filter(|a| !a.is_empty());
        env.push(value("bgp_as", local_as.unwrap_or("65000")));
        text(&mut env, "bgp_peeraddress", &f.peer_address);
        text(&mut env, "bgp_peerpass", &f.peer_pass);
        text(&mut env, "bgp_peeras", &f.peer_as);
        yes(&mut env, "bgp_multihop", f.multihop);
        text(&mut env, "bgp_sourceif", &f.source_if);
        text(&mut env, "bgp_sourceip", &f.source_ip);
        text(&mut env, "bgp_peers", &f.bgp_peers);
    }
    if metal(f) {
        env.push(value("vip_packet", "true"));
        let config = f.provider_config.as_deref().filter(|p| !p.is_empty());
        env.push(value(
            "provider_config",
            config.unwrap_or(METAL_PROVIDER_CONFIG),
        ));
        yes(&mut env, "metal_peer_routes", f.metal_peer_routes);
    }
    yes(&mut env, "lb_ipam", f.ipam);
    env.push(value("prometheus_server", &f.prometheus_server));
    yes(
        &mut env,
        "disable_service_updates",
        f.disable_service_updates,
    );
    yes(&mut env, "enable_node_labeling", f.enable_node_labeling);
    text(&mut env, "vip_loglevel", &f.log);
    for (name, v) in f.pass_on.env() {
        env.push(value(name, v));
    }
    // kube-vip's generator: the control-plane Lease lives in the manifest's namespace, unless
    // one is carried over (`vipd migrate`).
    if control_plane(f) && !f.extra_env.iter().any(|e| e.name == "cp_namespace") {
        env.push(value("cp_namespace", &f.namespace));
    }
    env
}

/// Runs the agent's own checks on the environment the container will get, so a manifest that
/// would crash-loop is refused here with the same message.
fn check(env: &[EnvVar]) -> Result<(), Error> {
    let get = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    let raw = RawSettings {
        svc_enable: get("svc_enable"),
        vip_arp: get("vip_arp"),
        bgp_enable: get("bgp_enable"),
        bgp_as: get("bgp_as"),
        bgp_routerid: get("bgp_routerid"),
        bgp_peers: get("bgp_peers"),
        bgp_peeraddress: get("bgp_peeraddress"),
        bgp_peeras: get("bgp_peeras"),
        bgp_peerpass: get("bgp_peerpass"),
        bgp_multihop: get("bgp_multihop"),
        bgp_sourceip: get("bgp_sourceip"),
        bgp_sourceif: get("bgp_sourceif"),
        vip_loglevel: get("vip_loglevel"),
        // Filled from spec.nodeName when the Pod starts; any valid name stands in for it.
        vip_nodename: Some("node".to_owned()),
        lb_class_only: get("lb_class_only"),
        lb_class_name: get("lb_class_name"),
        bgp_attach_ip_to_interface: get("bgp_attach_ip_to_interface"),
        vip_interface: get("vip_interface"),
        disable_service_updates: get("disable_service_updates"),
        annotation: get("annotation"),
        vip_packet: get("vip_packet"),
        provider_config: get("provider_config"),
        metal_peer_routes: get("metal_peer_routes"),
        k8s_config_file: get("k8s_config_file"),
        svc_namespace: get("svc_namespace"),
        lb_class_legacy_handling: get("lb_class_legacy_handling"),
        vipd_honour_exclude_label: get("vipd_honour_exclude_label"),
        vipd_clear_ingress_without_endpoints: get("vipd_clear_ingress_without_endpoints"),
        enable_node_labeling: get("enable_node_labeling"),
        enable_upnp: get("enable_upnp"),
        svc_election: get("svc_election"),
        svc_leasename: get("svc_leasename"),
        vip_leaseduration: get("vip_leaseduration"),
        vip_renewdeadline: get("vip_renewdeadline"),
        vip_retryperiod: get("vip_retryperiod"),
        vip_arp_rate: get("vip_arpRate"),
        vip_servicesinterface: get("vip_servicesinterface"),
        vip_routingtable: get("vip_routingtable"),
        vip_subnet: get("vip_subnet"),
        vip_routingtableid: get("vip_routingtableid"),
        vip_routingtabletype: get("vip_routingtabletype"),
        vip_routingprotocol: get("vip_routingprotocol"),
        vip_cleanroutingtable: get("vip_cleanroutingtable"),
        bgp_routerinterface: get("bgp_routerinterface"),
        bgp_hold_time: get("bgp_hold_time"),
        bgp_keepalive_interval: get("bgp_keepalive_interval"),
        bgp_passive: get("bgp_passive"),
        bgp_listen_port: get("bgp_listen_port"),
        bgp_unready_after: get("vipd_bgp_unready_after"),
        bgp_restart_time: get("vipd_bgp_restart_time"),
        bgp_llgr_stale_time: get("vipd_bgp_llgr_stale_time"),
        bfd: get("vipd_bfd"),
        bgp_drain_time: get("vipd_bgp_drain_time"),
        mpbgp_nexthop: get("mpbgp_nexthop"),
        mpbgp_ipv4: get("mpbgp_ipv4"),
        mpbgp_ipv6: get("mpbgp_ipv6"),
        health_check_port: get("health_check_port"),
        lb_ipam: get("lb_ipam"),
        lb_ipam_configmap: get("lb_ipam_configmap"),
        lb_ipam_namespace: get("lb_ipam_namespace"),
        vip_address: get("vip_address"),
        vip_file: get("vip_file"),
        cp_enable: get("cp_enable"),
        port: get("port"),
        control_plane_health_check_address: get("control_plane_health_check_address"),
        control_plane_health_check_period_seconds: get("control_plane_health_check_period_seconds"),
        control_plane_health_check_timeout_seconds: get(
            "control_plane_health_check_timeout_seconds",
        ),
        control_plane_health_check_failure_threshold: get(
            "control_plane_health_check_failure_threshold",
        ),
        control_plane_health_check_ca_path: get("control_plane_health_check_ca_path"),
        vipd_cp_health_check: get("vipd_cp_health_check"),
        cp_namespace: get("cp_namespace"),
        vip_leasename: get("vip_leasename"),
        vip_leaderelection: get("vip_leaderelection"),
        kubernetes_addr: get("kubernetes_addr"),
        prometheus_server: get("prometheus_server"),
        ..Default::default()
    };
    crate::config::validate(&raw)?;
    Ok(())
}

/// The port of `prometheus_server` (`:2112`, `0.0.0.0:2112`, `[::1]:2112`), and the host the
/// kubelet must probe when the server listens on one address only.
pub fn metrics_port(addr: &str) -> Result<(Option<String>, u16), Error> {
    let bad = || Error::MetricsPort(addr.to_owned());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host {
        "" | "0.0.0.0" | "::" => None,
        h => Some(h.to_owned()),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_port_comes_from_prometheus_server() {
        assert_eq!(metrics_port(":2112").unwrap(), (None, 2112));
        assert_eq!(metrics_port("0.0.0.0:9000").unwrap(), (None, 9000));
        assert_eq!(metrics_port("[::]:9000").unwrap(), (None, 9000));
        assert_eq!(
            metrics_port("127.0.0.1:2112").unwrap(),
            (Some("127.0.0.1".to_owned()), 2112)
        );
        assert_eq!(
            metrics_port("[::1]:2112").unwrap(),
            (Some("::1".to_owned()), 2112)
        );
        for bad in ["", "2112", ":0", ":http", "host:"] {
            assert!(metrics_port(bad).is_err(), "{bad}");
        }
    }
}

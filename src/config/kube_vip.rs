//! [pure] kube-vip's settings that vipd does not read (kube-vip v1.2.3, `config_envvar.go` and
//! the root flags of `cmd/kube-vip.go`), so that none is ever silently ignored: an environment
//! variable or flag set to something that asks for behaviour is named in one warning at start
//! (`vipd manager`) or on stderr (`vipd manifest`, which leaves it out of the YAML). A kube-vip
//! flag is accepted and set aside rather than refused: `unexpected argument` would crash-loop a
//! kube-vip DaemonSet whose image was swapped.
//!
//! Every kube-vip setting vipd reads is in `cli.rs` under kube-vip's name; this table holds
//! the rest, each with the values that ask for nothing (kube-vip's defaults, and what kube-vip's
//! own manifest generator writes anyway, such as `port=6443` or `dns_mode=first`).

/// One kube-vip setting vipd does not read.
#[derive(Debug)]
pub struct Foreign {
    pub env: Option<&'static str>,
    /// The long flag, without `--`.
    pub flag: Option<&'static str>,
    pub short: Option<char>,
    /// The flag takes a value (`--flag value`); else it is a boolean (`--flag`, `--flag=false`).
    pub takes_value: bool,
    /// Values that ask for nothing (compared without case), besides empty and, for booleans,
    /// `false`/`0`.
    pub idle: &'static [&'static str],
    /// What kube-vip does with it, for the warning.
    pub does: &'static str,
}

const fn bool_(env: &'static str, flag: &'static str, does: &'static str) -> Foreign {
    Foreign {
        env: Some(env),
        flag: if flag.is_empty() { None } else { Some(flag) },
        short: None,
        takes_value: false,
        idle: &[],
        does,
    }
}

const fn value(
    env: &'static str,
    flag: &'static str,
    idle: &'static [&'static str],
    does: &'static str,
) -> Foreign {
    Foreign {
        env: if env.is_empty() { None } else { Some(env) },
        flag: if flag.is_empty() { None } else { Some(flag) },
        short: None,
        takes_value: true,
        idle,
        does,
    }
}

const CP: &str = "a control-plane VIP setting vipd does not read (vipd takes the VIP from --address, elects its holder on the Lease cp_namespace/vip_leasename through the Kubernetes API, and gates it on the local API server's health)";
const EGRESS: &str = "egress SNAT of Service pods (not in vipd)";
const IPVS: &str = "IPVS load balancing of the control-plane VIP (not in vipd)";
const ZEBRA: &str = "announces through FRR's zebra (vipd has its own BGP speaker)";

/// kube-vip's settings vipd does not read.
pub static FOREIGN: &[Foreign] = &[
    // The control-plane VIP (issue 16).
    bool_("cp_detect", "autodetectcp", CP),
    value("vip_leaseannotations", "", &["{}"], CP),
    value("", "vip", &[], CP),
    bool_("vip_singlenode", "", CP),
    bool_("vip_startleader", "", CP),
    value("", "leaderElectionType", &["kubernetes"], CP),
    value("", "etcdCACert", &[], CP),
    value("", "etcdCert", &[], CP),
    value("", "etcdKey", &[], CP),
    value("", "etcdEndpoints", &[], CP),
    bool_("lb_enable", "enableLoadBalancer", IPVS),
    value("lb_port", "lbPort", &["6443"], IPVS),
    value("lb_fwdmethod", "lbForwardingMethod", &["local"], IPVS),
    value("backend_health_check_interval", "", &["0"], IPVS),
    // Other modes.
    bool_("vip_wireguard", "wireguard", "WireGuard mode (not in vipd)"),
    bool_("zebra_enable", "zebra", ZEBRA),
    value("zebra_url", "zebraUrl", &["unix:/var/run/frr/zserv.api"], ZEBRA),
    value("zebra_version", "zebraVersion", &["6"], ZEBRA),
    value("zebra_software_name", "zebraSoftwareName", &["frr8.3"], ZEBRA),
    // Egress.
    value("egress_podcidr", "", &[], EGRESS),
    value("egress_servicecidr", "", &[], EGRESS),
    // Only how egress SNAT is done (nftables by default, iptables with false): the egress
    // annotations that ask for SNAT are what is warned about, per Service.
    Foreign {
        idle: &["true"],
        ..bool_("egress_withnftables", "egressWithNftables", EGRESS)
    },
    bool_("egress_enableinternalsnat", "", EGRESS),
    bool_("egress_clean", "", EGRESS),
    bool_("EGRESS_CLEAN", "", EGRESS),
    value("instance_name", "instanceName", &[], EGRESS),
    value("INSTANCE_NAME", "", &[], EGRESS),
    value("iptables_backend", "", &[], "chooses the iptables backend of egress and the port filter (not in vipd)"),
    // Services-mode features vipd lacks.
    bool_("enable_service_security", "onlyAllowTrafficServicePorts", "drops traffic to a VIP except on its Service's ports (not in vipd)"),
    bool_("per_service_election_on_demand", "perServiceElectionOnDemand", "elects Services annotated kube-vip.io/forcePerServiceElection on their own Lease (not in vipd)"),
    value("dns_mode", "dnsMode", &["first"], "resolves host names in loadbalancerIPs in this family (vipd resolves none: a Warning per Service)"),
    value("dhcp_mode", "dhcpMode", &["ipv4"], "asks for DHCPv6 leases too (vipd: DHCPv4 only)"),
    value("dhcp_backoff_attempts", "dhcpBackoffAttempts", &["3"], "caps DHCP retries (vipd retries with its own backoff, without a cap)"),
    bool_("vip_ddns", "ddns", "registers DHCP leases' host names by dynamic DNS (not in vipd)"),
    bool_("vip_interfaceloglobal", "loInterfaceGlobalScope", "gives VIPs on lo global scope (not in vipd)"),
    bool_("vip_allow_interface_not_up", "allowInterfaceNotUp", "starts with the VIP interface down (not in vipd)"),
    bool_("vip_loseleadership", "loseLeadership", "gives up leadership when the interface goes down (not in vipd)"),
    value("vip_loseleadership_timeout_seconds", "loseLeadershiptTimeoutSeconds", &["30"], "how long the interface may be down before leadership is given up (not in vipd)"),
    bool_("vip_preserve_on_leadership_loss", "preserveVipOnLeadershipLoss", "keeps the VIP address after losing the Lease (vipd always removes it)"),
    // kube-vip ≤ v0.8's Equinix Metal flags; vipd reads the API key and project from
    // --provider-config (cloud-sa.json) or PACKET_AUTH_TOKEN.
    value("", "metalKey", &[], "the Equinix Metal API key (vipd: PACKET_AUTH_TOKEN or --provider-config)"),
    value("", "metalProject", &[], "the Equinix Metal project by name (vipd: --provider-config's projectID)"),
    value("", "metalProjectID", &[], "the Equinix Metal project (vipd: the variable vip_packetprojectid or --provider-config's projectID)"),
    value("vip_packetproject", "", &[], "the Equinix Metal project by name (vipd: --provider-config's projectID)"),
    value("mirror_dest_interface", "mirrorDestInterface", &[], "mirrors the service interface's traffic (not in vipd)"),
    value("config_file", "config-file", &[], "reads settings from this file (vipd reads only the environment and flags: set them there)"),
    // Harmless: vipd does the same or better on its own.
    bool_("vip_skipdad", "", "adds IPv6 VIPs without duplicate address detection (vipd always does)"),
    bool_("enable_endpoints", "enableEndpoints", "reads v1 Endpoints instead of EndpointSlices (vipd reads EndpointSlices, the same endpoints)"),
    value("debounce_time", "debounceTime", &["0s", "0"], "debounces Service events (vipd debounces on its own)"),
    value("vip_configmap", "configMap", &["plndr"], "the ConfigMap of kube-vip's `service` subcommand (not in vipd)"),
];

/// A kube-vip setting set to something vipd does not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// `vip_wireguard` or `--wireguard`.
    pub name: String,
    pub does: &'static str,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.does)
    }
}

impl Foreign {
    /// Whether `value` asks for anything.
    fn asks(&self, value: &str) -> bool {
        let v = value.trim();
        let idle = v.is_empty()
            || (!self.takes_value && (v.eq_ignore_ascii_case("false") || v == "0"))
            || self.idle.iter().any(|i| i.eq_ignore_ascii_case(v));
        !idle
    }
}

/// The kube-vip environment variables in `vars` that vipd does not read and that ask for
/// something, in table order.
pub fn ignored_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Ignored> {
    let vars: Vec<(&str, &str)> = vars.into_iter().collect();
    FOREIGN
        .iter()
        .filter_map(|f| {
            let env = f.env?;
            let (_, value) = vars.iter().find(|(k, _)| *k == env)?;
            f.asks(value).then(|| Ignored {
                name: env.to_owned(),
                does: f.does,
            })
        })
        .collect()
}

/// `args` (after the subcommand) without kube-vip's flags that the subcommand does not define
/// (`own`: its long flag names, and its short ones as one-letter names), and those of them that
/// ask for something. `--flag=value`,
/// `--flag value` (flags taking a value) and `--flag` (booleans) are understood, as kube-vip's
/// pflag parses them; after `--` nothing is touched.
pub fn strip_flags(args: &[String], own: impl Fn(&str) -> bool) -> (Vec<String>, Vec<Ignored>) {
    let mut kept = Vec::with_capacity(args.len());
    let mut ignored = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            kept.push(arg.clone());
            kept.extend(rest.by_ref().cloned());
            break;
        }
        let (name, inline) = match arg.strip_prefix("--") {
            Some(long) => match long.split_once('=') {
                Some((n, v)) => (Some(n), Some(v)),
                None => (Some(long), None),
            },
            None => (None, None),
        };
        // `-n value`, `-n=value`, `-nvalue`: a short flag of a foreign setting.
        let short = arg
            .strip_prefix('-')
            .filter(|s| !s.starts_with('-'))
            .and_then(|s| {
                let c = s.chars().next()?;
                if own(&c.to_string()) {
                    return None;
                }
                let f = FOREIGN.iter().find(|f| f.short == Some(c))?;
                let rest = &s[c.len_utf8()..];
                Some((f, (!rest.is_empty()).then(|| rest.trim_start_matches('='))))
            });
        let (found, inline) = match (name, short) {
            (Some(n), _) if !own(n) => (FOREIGN.iter().find(|f| f.flag == Some(n)), inline),
            (None, Some((f, v))) => (Some(f), v),
            _ => (None, inline),
        };
        let Some(f) = found else {
            kept.push(arg.clone());
            continue;
        };
        let value = match inline {
            Some(v) => v.to_owned(),
            None if f.takes_value => rest.next().cloned().unwrap_or_default(),
            None => "true".to_owned(),
        };
        if f.asks(&value) {
            ignored.push(Ignored {
                name: match (f.flag, f.short) {
                    (Some(long), _) => format!("--{long}"),
                    (None, Some(c)) => format!("-{c}"),
                    (None, None) => String::new(),
                },
                does: f.does,
            });
        }
    }
    (kept, ignored)
}

/// What the parsed settings ask for that vipd does not do yet: `vip_leaderelection` without
/// `cp_enable` (vipd elects only the control-plane VIP by it).
pub fn ignored_in(cfg: &super::Config) -> Vec<Ignored> {
    let mut ignored = Vec::new();
    if cfg.vip_subnet_outside_arp {
        ignored.push(Ignored {
            name: "vip_subnet (--vipSubnet)".into(),
            does: "gives the VIP addresses of ARP mode this mask (vipd reads it in ARP mode only: BGP and routing-table mode route /32 and /128)",
        });
    }
    if cfg.leader_election_without_control_plane {
        ignored.push(Ignored {
            name: "vip_leaderelection (--leaderElection)".into(),
            does: "elects the control-plane VIP's holder, and nothing without cp_enable (in BGP services mode kube-vip also keeps a Service's routes when its endpoints leave; vipd withdraws them)",
        });
    }
    ignored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn kube_vips_flags_are_set_aside_with_their_values_and_named_when_they_ask() {
        let (kept, ignored) = strip_flags(
            &args(
                "--services --bgp --port 6443 --vip 10.0.0.5 --leaderElection --wireguard=false \
                 --namespace kube-system --localAS 65000 --egressWithNftables=false -- --table",
            ),
            |_| false,
        );
        // --port, --leaderElection and --namespace are vipd's own now (the control-plane VIP).
        assert_eq!(
            kept,
            args(
                "--services --bgp --port 6443 --leaderElection --namespace kube-system \
                 --localAS 65000 -- --table"
            )
        );
        let names: Vec<&str> = ignored.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["--vip"]);
        assert_eq!(ignored[0].to_string(), format!("--vip ({CP})"));
        // A flag the subcommand defines itself is its own (`vipd manifest --namespace`).
        let (kept, ignored) =
            strip_flags(&args("--namespace lb --wireguard"), |f| f == "namespace");
        assert_eq!(kept, args("--namespace lb"));
        assert_eq!(ignored.len(), 1);
    }

    #[test]
    fn environment_at_kube_vips_defaults_asks_for_nothing() {
        // What `kube-vip manifest daemonset --services --bgp` writes besides what vipd reads.
        let quiet = [
            ("port", "6443"),
            ("vip_address", ""),
            ("dns_mode", "first"),
            ("dhcp_mode", "ipv4"),
            ("vip_leaderelection", "false"),
            ("cp_detect", "false"),
            ("zebra_enable", "false"),
            ("egress_withnftables", "FALSE"),
        ];
        assert_eq!(ignored_env(quiet), []);
        let loud = [
            ("vip_wireguard", "true"),
            ("svc_enable", "true"),
            ("egress_podcidr", "10.244.0.0/16"),
            ("vip_leaderelection", "true"),
        ];
        let names: Vec<String> = ignored_env(loud).into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["vip_wireguard", "egress_podcidr"]);
    }

    #[test]
    fn no_foreign_setting_is_one_vipd_manager_reads() {
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        let manager = cli.find_subcommand("manager").expect("manager");
        for arg in manager.get_arguments() {
            let env = arg.get_env().and_then(|e| e.to_str());
            let long = arg.get_long();
            for f in FOREIGN {
                assert!(
                    env.is_none() || f.env != env,
                    "{env:?} is read by vipd manager"
                );
                assert!(
                    long.is_none() || f.flag != long,
                    "--{long:?} is vipd manager's"
                );
            }
        }
    }
}

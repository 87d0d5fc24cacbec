//! [I/O] `vipd migrate`: reads a kube-vip DaemonSet or static Pod (as `kubectl get ds
//! kube-vip-ds -n kube-system -o yaml` prints it, or as `kube-vip manifest` wrote it) and says,
//! per setting, what vipd does with it — the same, differently (how), not supported, or nothing
//! (kube-vip's default) — then prints the equivalent vipd manifest, every report line a YAML
//! comment so the whole output can go to `kubectl apply -f -`.
//!
//! Nothing is lost: a setting read from a Secret or from the Pod (`valueFrom`), and a variable
//! that is no kube-vip setting (`HTTP_PROXY`), are carried over into the new container as they
//! are; everything else becomes a `vipd manifest` flag, checked as the agent checks it. [I/O]
//! only as `vipd manifest` is: its flags fall back to the process environment when parsed.

use crate::config::kube_vip::{strip_flags, FOREIGN};
use k8s_openapi::api::core::v1::{Container, EnvVar};
use serde_json::Value;

/// What vipd does with one kube-vip setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// vipd reads it with kube-vip's meaning.
    Same,
    /// vipd reads it, with this difference.
    Differs(&'static str),
    /// vipd does not implement what it asks for (kube-vip's behaviour, for the reader).
    Unsupported(&'static str),
    /// At kube-vip's default, or a setting that asks nothing of vipd: left out.
    Nothing(&'static str),
    /// Copied into the new container as it is (a Secret or Pod reference, or a foreign
    /// variable).
    CarriedOver(&'static str),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Same => f.write_str("same"),
            Verdict::Differs(how) => write!(f, "differs: {how}"),
            Verdict::Unsupported(does) => write!(f, "not supported: {does}"),
            Verdict::Nothing(why) => write!(f, "left out: {why}"),
            Verdict::CarriedOver(why) => write!(f, "carried over: {why}"),
        }
    }
}

/// One setting of the kube-vip container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The variable, or `--flag`.
    pub setting: String,
    /// As shown: the value, `(from Secret s/k)`, `(hidden)` for a password.
    pub value: String,
    pub verdict: Verdict,
}

/// Which manifest to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    DaemonSet,
    /// A static Pod on a control-plane node.
    Pod,
}

/// The reading of a kube-vip workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// `DaemonSet kube-system/kube-vip-ds, image ghcr.io/kube-vip/kube-vip:v1.2.3`.
    pub source: String,
    pub kind: Kind,
    pub rows: Vec<Row>,
    /// The `vipd manifest daemonset|pod` flags, in order.
    pub args: Vec<String>,
    /// Variables carried over as they are.
    pub extra_env: Vec<EnvVar>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the input is not YAML or JSON: {0}")]
    NotYaml(String),
    #[error("no DaemonSet or Pod with a kube-vip container in the input (kinds found: {0})")]
    NoKubeVip(String),
    #[error("the vipd manifest for these settings is refused: {0}")]
    Manifest(String),
}

/// How vipd reads `value` of setting `name` differently from kube-vip, if it does.
fn differs(name: &str, value: &str) -> Option<&'static str> {
    match name {
        // addr:AS:password:multihop:port:mpbgp:bfd — the seventh field asks for BFD.
        "bgp_peers"
            if value
                .split(',')
                .any(|p| p.split(':').nth(6).is_some_and(|b| b.starts_with("true"))) =>
        {
            Some("BFD runs single hop (UDP 3784, TTL 255) unless the peer is multihop (4784), and a restart of vipd sends AdminDown first so that the peer keeps the routes (RFC 5882 §3.2)")
        }
        "cp_enable" if value == "true" => Some(
            "announced only while this node's API server answers https://127.0.0.1:<port>/livez (kube-vip checks only with control_plane_health_check_address; vipd_cp_health_check=false turns it off)",
        ),
        _ => None,
    }
}

/// Whether a variable's value is a secret (shown as `(hidden)`): peer lists carry passwords.
fn secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "bgp_peers"
        || ["pass", "token", "secret", "key"]
            .iter()
            .any(|s| n.contains(s))
}

/// Variables vipd reads that are no flag of its manifest: carried over, with the same meaning.
const READ_AS_IS: &[&str] = &[
    "PACKET_AUTH_TOKEN",
    "METAL_API_KEY",
    "METAL_PROJECT_ID",
    "PACKET_PROJECT_ID",
    "vip_packetprojectid",
];

/// Reads `yaml` (one document, several, or a `List`).
pub fn plan(yaml: &str) -> Result<Migration, MigrateError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| MigrateError::NotYaml(e.to_string()))?;
    let mut objects = Vec::new();
    for d in docs {
        match d["kind"].as_str() {
            Some("List") | Some("DaemonSetList") | Some("PodList") => {
                objects.extend(d["items"].as_array().cloned().unwrap_or_default());
            }
            _ => objects.push(d),
        }
    }
    let kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or("?").to_owned())
        .collect();
    for obj in &objects {
        let (kind, spec) = match obj["kind"].as_str() {
            Some("DaemonSet") => (Kind::DaemonSet, &obj["spec"]["template"]["spec"]),
            Some("Pod") => (Kind::Pod, &obj["spec"]),
            _ => continue,
        };
        let containers: Vec<Container> =
            serde_json::from_value(spec["containers"].clone()).unwrap_or_default();
        let Some(c) = kube_vip_container(&containers) else {
            continue;
        };
        return Ok(read(obj, kind, spec, c));
    }
    Err(MigrateError::NoKubeVip(kinds.join(", ")))
}

/// The container running kube-vip: its image or name says so, else the only one.
fn kube_vip_container(containers: &[Container]) -> Option<&Container> {
    containers
        .iter()
        .find(|c| {
            c.image.as_deref().is_some_and(|i| i.contains("kube-vip"))
                || c.name.contains("kube-vip")
        })
        .or(match containers {
            [only] => Some(only),
            _ => None,
        })
}

fn read(obj: &Value, kind: Kind, spec: &Value, c: &Container) -> Migration {
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or("?");
    let namespace = meta["namespace"].as_str().unwrap_or("default");
    let source = format!(
        "{} {namespace}/{name}, image {}",
        if kind == Kind::DaemonSet {
            "DaemonSet"
        } else {
            "Pod"
        },
        c.image.as_deref().unwrap_or("?")
    );
    let mut m = Migration {
        source,
        kind,
        rows: Vec::new(),
        args: vec!["--namespace".into(), namespace.into()],
        extra_env: Vec::new(),
    };
    if kind == Kind::DaemonSet && control_plane_only(spec) {
        m.args.push("--taint".into());
    }
    let env = c.env.clone().unwrap_or_default();
    let value_of = |n: &str| {
        env.iter()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
            .unwrap_or_default()
    };
    let cp = value_of("cp_enable") == "true";
    let services = value_of("svc_enable") == "true";
    for e in &env {
        read_env(&mut m, e, services && !cp);
    }
    read_args(&mut m, c);
    m
}

/// `--taint`: kube-vip's DaemonSet pinned to control-plane nodes (tolerations for every
/// NoSchedule taint, or a control-plane node selector/affinity).
fn control_plane_only(spec: &Value) -> bool {
    let text = spec["affinity"].to_string() + &spec["nodeSelector"].to_string();
    text.contains("node-role.kubernetes.io/control-plane")
        || text.contains("node-role.kubernetes.io/master")
}

/// The manifest flag that writes variable `env` (bool: it takes `--flag=value`).
fn manifest_flag(env: &str) -> Option<String> {
    use clap::CommandFactory;
    if env == "svc_namespace" {
        // kube-vip's manifest reads svc_namespace as --namespace; the agent's meaning is this.
        return Some("serviceNamespace".into());
    }
    let cli = crate::cli::Cli::command();
    let daemonset = cli
        .find_subcommand("manifest")?
        .find_subcommand("daemonset")?;
    let flag = daemonset
        .get_arguments()
        .find(|a| a.get_env().and_then(|e| e.to_str()) == Some(env))
        .and_then(|a| a.get_long().map(str::to_owned));
    flag
}

fn shown(e: &EnvVar) -> String {
    match (&e.value, &e.value_from) {
        (_, Some(from)) => {
            if let Some(s) = &from.secret_key_ref {
                format!("(from Secret {}/{})", s.name, s.key)
            } else if let Some(f) = &from.field_ref {
                format!("(from {})", f.field_path)
            } else if let Some(c) = &from.config_map_key_ref {
                format!("(from ConfigMap {}/{})", c.name, c.key)
            } else {
                "(from the Pod)".into()
            }
        }
        (Some(v), None) if secret(&e.name) && !v.is_empty() => "(hidden)".into(),
        (Some(v), None) => v.clone(),
        (None, None) => String::new(),
    }
}

/// `services`: services mode without the control-plane VIP (`vip_address` means nothing then).
fn read_env(m: &mut Migration, e: &EnvVar, services: bool) {
    let name = e.name.as_str();
    let value = e.value.clone().unwrap_or_default();
    let mut row = |verdict| {
        m.rows.push(Row {
            setting: name.to_owned(),
            value: shown(e),
            verdict,
        })
    };
    if name == "vip_nodename" {
        if e.value_from.is_some() {
            row(Verdict::Same);
        } else {
            row(Verdict::Nothing(
                "vipd's manifest sets it from spec.nodeName on every node",
            ));
        }
        return;
    }
    if e.value_from.is_some() {
        row(Verdict::CarriedOver("a reference, kept as it is"));
        m.extra_env.push(e.clone());
        return;
    }
    if READ_AS_IS.contains(&name) {
        row(Verdict::Same);
        m.extra_env.push(e.clone());
        return;
    }
    // The control-plane Lease's namespace: vipd's manifest writes its own namespace there (as
    // kube-vip's generator does) unless the value is carried over, as here.
    if name == "cp_namespace" {
        row(if value.is_empty() {
            Verdict::Nothing("empty")
        } else {
            m.extra_env.push(e.clone());
            Verdict::Same
        });
        return;
    }
    if matches!(name, "vip_address" | "address") {
        let verdict = if services {
            Verdict::Nothing("static VIPs are not read in services mode, by kube-vip neither")
        } else if value.is_empty() {
            Verdict::Nothing("empty")
        } else {
            m.args.push(format!("--address={value}"));
            Verdict::Same
        };
        row(verdict);
        return;
    }
    if let Some(f) = FOREIGN.iter().find(|f| f.env == Some(name)) {
        let asks = crate::config::kube_vip::ignored_env([(name, value.as_str())]);
        row(if asks.is_empty() {
            Verdict::Nothing("kube-vip's default: asks for nothing")
        } else {
            Verdict::Unsupported(f.does)
        });
        return;
    }
    match manifest_flag(name) {
        Some(_) if value.is_empty() => row(Verdict::Nothing("empty")),
        Some(flag) => {
            m.args.push(format!("--{flag}={value}"));
            row(differs(name, &value).map_or(Verdict::Same, Verdict::Differs));
        }
        None => {
            row(Verdict::CarriedOver(
                "not a setting vipd knows; kept as it is",
            ));
            m.extra_env.push(e.clone());
        }
    }
}

/// The container's arguments after `manager`: vipd's own flags pass on, kube-vip's others are
/// reported.
fn read_args(m: &mut Migration, c: &Container) {
    use clap::CommandFactory;
    let args: Vec<String> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .skip_while(|a| a.as_str() != "manager")
        .skip(1)
        .cloned()
        .collect();
    let cli = crate::cli::Cli::command();
    let own: Vec<String> = cli
        .find_subcommand("manager")
        .map(|s| {
            s.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let (kept, ignored) = strip_flags(&args, |f| own.iter().any(|o| o == f));
    for i in ignored {
        m.rows.push(Row {
            setting: i.name.clone(),
            value: String::new(),
            verdict: Verdict::Unsupported(i.does),
        });
    }
    for a in kept.iter().filter(|a| a.starts_with("--")) {
        m.rows.push(Row {
            setting: a.split('=').next().unwrap_or(a).to_owned(),
            value: String::new(),
            verdict: Verdict::Same,
        });
    }
    m.args.extend(kept);
}

/// The report as YAML comments, then the vipd manifest.
pub fn render(m: &Migration) -> Result<String, MigrateError> {
    let width = m
        .rows
        .iter()
        .map(|r| r.setting.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let vwidth = m
        .rows
        .iter()
        .map(|r| r.value.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 40);
    let mut out = format!("# vipd migrate: {}\n#\n", m.source);
    out.push_str(&format!(
        "# {:width$}  {:vwidth$}  VIPD\n",
        "SETTING", "VALUE"
    ));
    for r in &m.rows {
        out.push_str(&format!(
            "# {:width$}  {:vwidth$}  {}\n",
            r.setting, r.value, r.verdict
        ));
    }
    let same = m
        .rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Same))
        .count();
    let unsupported = m
        .rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Unsupported(_)))
        .count();
    out.push_str(&format!(
        "#\n# {} settings: {same} the same, {unsupported} not supported, the rest left out or carried over.\n",
        m.rows.len()
    ));
    let sub = match m.kind {
        Kind::DaemonSet => "daemonset",
        Kind::Pod => "pod",
    };
    let shown_args: Vec<String> = m
        .args
        .iter()
        .map(|a| {
            let hidden = ["--bgppeers=", "--peerPass="]
                .iter()
                .any(|p| a.starts_with(p));
            if hidden {
                format!("{}(hidden)", &a[..a.find('=').map_or(a.len(), |i| i + 1)])
            } else {
                a.clone()
            }
        })
        .collect();
    out.push_str(&format!(
        "# The same as: vipd manifest {sub} {}\n",
        shown_args.join(" ")
    ));
    if m.kind == Kind::DaemonSet {
        out.push_str(
            "# Apply it after deleting the kube-vip DaemonSet (never both: two speakers on one \
             node collide), or keep\n# kube-vip's DaemonSet and swap its image for vipd's: \
             vipd runs under kube-vip's RBAC.\n",
        );
    }
    let mut argv = vec!["vipd".to_owned(), "manifest".to_owned(), sub.to_owned()];
    argv.extend(m.args.iter().cloned());
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(&argv)
        .map_err(|e| MigrateError::Manifest(e.to_string()))?;
    let crate::cli::Command::Manifest(mut args) = cli.command else {
        unreachable!("the arguments start with `manifest`")
    };
    let (crate::cli::ManifestKind::Daemonset(f)
    | crate::cli::ManifestKind::Pod(f)
    | crate::cli::ManifestKind::Rbac(f)) = &mut args.kind;
    f.extra_env = m.extra_env.clone();
    let yaml = crate::manifest::render(&args).map_err(|e| MigrateError::Manifest(e.to_string()))?;
    out.push_str(&yaml);
    Ok(out)
}

//! The real `vipd manager` binary in the node namespace, configured the kube-vip way (environment
//! variables only, from a cleared environment) with its static VIPs in a file it re-reads on
//! SIGHUP. Impure.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tempfile::TempDir;

use super::daemon::Daemon;
use super::netns::{Topology, NODE_LO, NODE_V4};
use super::path_str;
use super::router::{RouterConfig, VIPD_AS};

pub struct Vipd {
    // Field order is drop order: the process stops before its directory goes away.
    daemon: Daemon,
    vip_file: PathBuf,
    _dir: TempDir,
}

impl Vipd {
    /// vipd peering with every neighbor of the router's `cfg` (same password, port, multihop and
    /// hold time), announcing `vips`. Not started.
    pub fn new(topo: &Topology, cfg: &RouterConfig, vips: &[&str]) -> Vipd {
        let dir = tempfile::tempdir().expect("temp dir for vipd");
        let vip_file = dir.path().join("vips");
        let mut env = vec![
            ("bgp_enable", "true".to_string()),
            ("bgp_as", VIPD_AS.to_string()),
            ("bgp_routerid", NODE_V4.to_string()),
            ("bgp_peers", bgp_peers(cfg)),
            ("bgp_hold_time", cfg.hold_time.to_string()),
            ("vip_file", path_str(&vip_file)),
            ("vip_loglevel", "debug".to_string()),
        ];
        if cfg.multihop {
            env.push(("bgp_sourceip", NODE_LO.to_string()));
        }
        let env = shutdown_on_sigterm(env.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        let argv = vec![crate::vipd_bin(), "manager".to_string()];
        let daemon =
            Daemon::new("vipd", &topo.node, argv, dir.path().join("vipd.log")).with_clean_env(env);
        let vipd = Vipd {
            daemon,
            vip_file,
            _dir: dir,
        };
        vipd.write_vips(vips);
        vipd
    }

    /// vipd in services mode on node `i` of a [`Topology::with_nodes`] topology, named
    /// `node<i>`, peering with the tor over its link and reading the API server through
    /// `kubeconfig`. `extra`: more settings. Not started.
    pub fn services(
        topo: &Topology,
        i: usize,
        kubeconfig: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Vipd {
        let mut env: Vec<(String, String)> = [
            ("bgp_enable", "true".to_string()),
            ("bgp_as", VIPD_AS.to_string()),
            ("bgp_routerid", Topology::node_v4(i)),
            (
                "bgp_peers",
                format!(
                    "{}:{}::false",
                    Topology::tor_v4(i),
                    super::router::ROUTER_AS
                ),
            ),
            ("bgp_hold_time", "9".to_string()),
            ("svc_enable", "true".to_string()),
            ("vip_nodename", format!("node{i}")),
            ("k8s_config_file", path_str(kubeconfig)),
            ("RUST_LOG", "vipd=debug,info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Vipd::with_env(topo, i, env)
    }

    /// `vipd manager` on node `i` with the environment `env` (and [`shutdown_on_sigterm`]).
    /// Not started.
    pub fn with_env(topo: &Topology, i: usize, env: Vec<(String, String)>) -> Vipd {
        let env = shutdown_on_sigterm(env);
        let dir = tempfile::tempdir().expect("temp dir for vipd");
        let argv = vec![crate::vipd_bin(), "manager".to_string()];
        let daemon = Daemon::new(
            &format!("vipd on node{i}"),
            &topo.nodes[i],
            argv,
            dir.path().join("vipd.log"),
        )
        .with_clean_env(env);
        Vipd {
            daemon,
            vip_file: dir.path().join("unused"),
            _dir: dir,
        }
    }

    /// vipd in ARP mode (services, no BGP) on node `i` of a [`Topology::with_nodes`] topology,
    /// named `node<i>`, reading the API server through `kubeconfig`. `extra`: more settings
    /// (later ones win). Not started.
    pub fn arp(
        topo: &Topology,
        i: usize,
        kubeconfig: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Vipd {
        Vipd::services_without_bgp(topo, i, kubeconfig, &[("vip_arp", "true")], extra)
    }

    /// vipd in routing-table mode (services, no BGP) on node `i`, named `node<i>`, its routes
    /// through the node's link to the tor (`veth-tor`) in kube-vip's default table (198) with
    /// protocol 248. `extra`: more settings (later ones win). Not started.
    pub fn table(
        topo: &Topology,
        i: usize,
        kubeconfig: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Vipd {
        let mode = [("vip_routingtable", "true"), ("vip_interface", "veth-tor")];
        Vipd::services_without_bgp(topo, i, kubeconfig, &mode, extra)
    }

    /// Services mode in `mode` (a mode other than BGP) on node `i`, then `extra`.
    fn services_without_bgp(
        topo: &Topology,
        i: usize,
        kubeconfig: &std::path::Path,
        mode: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Vipd {
        let node = format!("node{i}");
        let kubeconfig = path_str(kubeconfig);
        let base = [
            ("svc_enable", "true"),
            ("vip_nodename", node.as_str()),
            ("k8s_config_file", kubeconfig.as_str()),
            ("RUST_LOG", "vipd=debug,info"),
        ];
        let env = mode
            .iter()
            .chain(base.iter())
            .chain(extra.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Vipd::with_env(topo, i, env)
    }

    pub fn start(&mut self) {
        self.daemon.start();
    }

    /// Sets (or overrides) one setting for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.daemon.add_env(key, value);
    }

    /// Rewrites the VIP file; takes effect on [`Vipd::reload`].
    pub fn write_vips(&self, vips: &[&str]) {
        std::fs::write(&self.vip_file, vips.join("\n") + "\n").expect("write the VIP file");
    }

    /// SIGHUP: vipd re-reads its VIP file.
    pub fn reload(&mut self) {
        assert!(self.daemon.signal("HUP"), "vipd is not running");
    }

    /// SIGKILL: a crash, with no Cease and no cleanup. True if it was running.
    pub fn kill(&mut self) -> bool {
        let sent = self.daemon.signal("KILL");
        self.daemon.wait_exit(Duration::from_secs(5));
        sent
    }

    /// Sends `sig` (`USR1`, …); whether vipd was running.
    pub fn signal(&mut self, sig: &str) -> bool {
        self.daemon.signal(sig)
    }

    /// SIGTERM without waiting: the caller times what follows.
    pub fn terminate(&mut self) {
        assert!(self.daemon.signal("TERM"), "vipd is not running");
    }

    /// SIGTERM, then whether it exited with status 0 within 10 s.
    pub fn terminate_cleanly(&mut self) -> bool {
        self.terminate();
        self.wait_exit(Duration::from_secs(10))
            .is_some_and(|e| e.success())
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.daemon.wait_exit(timeout)
    }

    pub fn pid(&mut self) -> Option<u32> {
        self.daemon.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub fn log_tail(&self) -> String {
        self.daemon.log_tail(40)
    }

    /// The last 40 lines of the log without the Lease renewals (two a second at test timing).
    pub fn log_tail_quiet(&self) -> String {
        let log = self.daemon.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("Lease written"))
            .collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Graceful restart off (`vipd_bgp_restart_time=0`) unless `env` sets it: the acceptance tests
/// check what a shutdown does to the routers (every route withdrawn at SIGTERM), and BIRD and
/// FRR are graceful-restart helpers, which would keep the routes of a restarting vipd for two
/// minutes. tests/graceful_restart.rs runs the default (a SIGTERM on a node that stays is a
/// restart) against them.
pub fn shutdown_on_sigterm(mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    if !env.iter().any(|(k, _)| k == "vipd_bgp_restart_time") {
        env.push(("vipd_bgp_restart_time".into(), "0".into()));
    }
    env
}

/// kube-vip's `bgp_peers`: `address:AS:password:multihop:port`, IPv6 addresses in brackets.
fn bgp_peers(cfg: &RouterConfig) -> String {
    cfg.neighbors
        .iter()
        .map(|n| {
            let address = match n.local {
                std::net::IpAddr::V4(a) => a.to_string(),
                std::net::IpAddr::V6(a) => format!("[{a}]"),
            };
            // kube-vip's seventh field: BFD on, 300 ms × 3 (after an empty MP-BGP field).
            let bfd = if cfg.bfd.is_some() {
                "::true;300;300;3"
            } else {
                ""
            };
            format!(
                "{address}:{as}:{password}:{multihop}:{port}{bfd}",
                as = super::router::ROUTER_AS,
                password = cfg.password.as_deref().unwrap_or(""),
                multihop = cfg.multihop,
                port = cfg.port,
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

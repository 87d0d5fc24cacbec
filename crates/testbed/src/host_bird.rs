//! BIRD 2 on a node, as a host that runs its own routing daemon next to vipd in routing-table
//! mode: its `kernel` protocol learns the routes vipd puts in a kernel table, and it announces
//! them over BGP to the ToR's BIRD (as `VIPD_AS`, the AS the ToR expects on the node's link).
//! Impure.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use super::daemon::Daemon;
use super::netns::Topology;
use super::router::{ROUTER_AS, VIPD_AS};
use super::{ns_stdout, ns_succeeds, path_str, tool};

pub struct HostBird {
    daemon: Daemon,
    ns: String,
    socket: PathBuf,
    config: String,
    _dir: TempDir,
}

impl HostBird {
    /// BIRD on node `i`, learning the alien routes of kernel table `table` (any protocol but
    /// its own) and exporting them to the tor with itself as next hop. Started.
    pub fn start(topo: &Topology, i: usize, table: u32) -> HostBird {
        let dir = tempfile::tempdir().expect("temp dir for the host's bird");
        let (node, tor) = (Topology::node_v4(i), Topology::tor_v4(i));
        let config = format!(
            "router id {node};\n\
             protocol device {{ scan time 1; }}\n\
             protocol kernel vips {{\n  kernel table {table};\n  learn;\n  scan time 1;\n  \
             ipv4 {{ import all; export none; }};\n}}\n\
             protocol bgp tor {{\n  local {node} as {VIPD_AS};\n  neighbor {tor} as {ROUTER_AS};\n  \
             ipv4 {{ import none; export all; next hop self; }};\n}}\n"
        );
        let (argv, socket) = super::bird::bird_argv(dir.path(), &config);
        let ns = topo.nodes[i].clone();
        let mut daemon = Daemon::new(
            &format!("bird on node{i}"),
            &ns,
            argv,
            dir.path().join("bird.log"),
        );
        daemon.start();
        let (birdc, sock) = (tool("birdc"), path_str(&socket));
        let context = format!("---- the host's bird.conf ----\n{config}");
        let ns2 = ns.clone();
        daemon.wait_ready(
            Duration::from_secs(10),
            "the host's birdc answers",
            || {
                ns_succeeds(
                    &ns2,
                    &[birdc.as_str(), "-s", sock.as_str(), "show", "status"],
                )
            },
            &context,
        );
        HostBird {
            daemon,
            ns,
            socket,
            config,
            _dir: dir,
        }
    }

    fn birdc(&self, args: &[&str]) -> String {
        let (birdc, socket) = (tool("birdc"), path_str(&self.socket));
        let mut argv = vec![birdc.as_str(), "-s", socket.as_str()];
        argv.extend_from_slice(args);
        ns_stdout(&self.ns, &argv)
    }

    /// `show route` of the kernel protocol: what BIRD learnt from the table.
    pub fn learnt(&self) -> String {
        self.birdc(&["show", "route", "protocol", "vips"])
    }

    /// Its config, protocols and log tail, for failure messages.
    pub fn explain(&self) -> String {
        format!(
            "---- host bird.conf ----\n{}\n---- host bird protocols ----\n{}\n---- host bird routes ----\n{}\n---- exported to the tor ----\n{}\n---- host bird log ----\n{}",
            self.config,
            self.birdc(&["show", "protocols", "all", "tor"]),
            self.birdc(&["show", "route"]),
            self.birdc(&["show", "route", "export", "tor"]),
            self.daemon.log_tail(30)
        )
    }
}

//! Two network namespaces per test, "node" (where vipd runs) and "tor" (the router), joined by a
//! veth pair. Impure: creates and deletes namespaces.
//!
//! ```text
//!   node [veth-tor 10.99.0.1/24 fd00:99::1/64] <==veth==> [veth-node 10.99.0.2/24 fd00:99::2/64] tor
//!        lo 10.99.255.1/32                                  lo 10.99.255.2/32
//! ```
//! Static routes join the loopbacks (for multihop). Nothing is created in the root namespace: the
//! veth is created inside `node` with its peer moved straight into `tor`.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{ns_stdout, run_ok, tool};

pub const NODE_V4: &str = "10.99.0.1";
pub const TOR_V4: &str = "10.99.0.2";
pub const NODE_V6: &str = "fd00:99::1";
pub const TOR_V6: &str = "fd00:99::2";
pub const NODE_LO: &str = "10.99.255.1";
pub const TOR_LO: &str = "10.99.255.2";

/// Tests of one binary run in parallel threads of one process: pid + counter keeps names unique.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

pub struct Topology {
    pub node: String,
    pub tor: String,
    /// Namespaces this value created (and so may delete), in creation order.
    created: Vec<String>,
}

impl Topology {
    pub fn setup() -> Topology {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("vt{}-{id}", std::process::id());
        let mut topo = Topology {
            node: format!("{prefix}-node"),
            tor: format!("{prefix}-tor"),
            created: Vec::new(),
        };
        // `topo` exists before the first command, so a failing step still cleans up on unwind.
        for ns in [topo.node.clone(), topo.tor.clone()] {
            run_ok("ip", &["netns", "add", ns.as_str()]);
            topo.created.push(ns);
        }
        configure(&topo.node, &topo.tor);
        topo
    }

    /// Sum of `TcpExtTCPMD5Failure` in both namespaces. A wrong TCP-MD5 key is silent in every
    /// daemon's log; the kernel drops the segments and only counts them here.
    pub fn md5_failures(&self) -> u64 {
        [&self.node, &self.tor]
            .into_iter()
            .map(|ns| counter(&ns_stdout(ns, &["nstat", "-asz"]), "TcpExtTCPMD5Failure"))
            .sum()
    }

    /// True if anything in the tor namespace listens on TCP `port`.
    pub fn tor_listens_on(&self, port: u16) -> bool {
        let filter = format!("sport = :{port}");
        !ns_stdout(&self.tor, &["ss", "-Hltn", filter.as_str()])
            .trim()
            .is_empty()
    }
}

/// Links, addresses and routes of the diagram above, inside namespaces `n` (node) and `t` (tor).
fn configure(n: &str, t: &str) {
    let steps: &[&[&str]] = &[
        &["-n", n, "link", "set", "lo", "up"],
        &["-n", t, "link", "set", "lo", "up"],
        &[
            "-n",
            n,
            "link",
            "add",
            "veth-tor",
            "type",
            "veth",
            "peer",
            "name",
            "veth-node",
            "netns",
            t,
        ],
        &["-n", n, "link", "set", "veth-tor", "up"],
        &["-n", t, "link", "set", "veth-node", "up"],
        &["-n", n, "addr", "add", "10.99.0.1/24", "dev", "veth-tor"],
        &["-n", t, "addr", "add", "10.99.0.2/24", "dev", "veth-node"],
        // nodad: usable at once instead of after duplicate address detection (~1-2 s).
        &[
            "-n",
            n,
            "addr",
            "add",
            "fd00:99::1/64",
            "dev",
            "veth-tor",
            "nodad",
        ],
        &[
            "-n",
            t,
            "addr",
            "add",
            "fd00:99::2/64",
            "dev",
            "veth-node",
            "nodad",
        ],
        &["-n", n, "addr", "add", "10.99.255.1/32", "dev", "lo"],
        &["-n", t, "addr", "add", "10.99.255.2/32", "dev", "lo"],
        &[
            "-n",
            n,
            "route",
            "add",
            "10.99.255.2/32",
            "via",
            "10.99.0.2",
        ],
        &[
            "-n",
            t,
            "route",
            "add",
            "10.99.255.1/32",
            "via",
            "10.99.0.1",
        ],
    ];
    for step in steps {
        run_ok("ip", step);
    }
}

/// Value of one counter in `nstat -asz` output ("TcpExtTCPMD5Failure   3   0.0"); 0 if absent.
fn counter(nstat_output: &str, name: &str) -> u64 {
    for line in nstat_output.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() == Some(name) {
            return fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    0
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.created {
            // Daemon handles have stopped their processes by now; anything left in a namespace
            // this test created was started by this test, so killing it by pid is safe.
            let pids = Command::new(tool("ip"))
                .args(["netns", "pids", ns.as_str()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = Command::new(tool("kill"))
                    .args(["-s", "KILL", pid])
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = Command::new(tool("ip"))
                .args(["netns", "del", ns.as_str()])
                .output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::counter;

    #[test]
    fn counter_reads_the_absolute_value_from_nstat_output() {
        let out = "#kernel\nTcpExtTCPMD5NotFound            0                  0.0\n\
                   TcpExtTCPMD5Failure             3                  0.0\n";
        assert_eq!(counter(out, "TcpExtTCPMD5Failure"), 3);
        assert_eq!(counter(out, "TcpExtTCPMD5Unexpected"), 0);
    }
}

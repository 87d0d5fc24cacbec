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
    /// The first node (`nodes[0]`).
    pub node: String,
    /// Every node; node `i` reaches the tor over its own veth, 10.99.`i`.1 <-> 10.99.`i`.2.
    pub nodes: Vec<String>,
    pub tor: String,
    /// Namespaces this value created (and so may delete), in creation order.
    created: Vec<String>,
}

impl Topology {
    pub fn setup() -> Topology {
        Topology::with_nodes(1)
    }

    /// `n` node namespaces, each with its own link to the tor: node `i` is 10.99.`i`.1/24
    /// (and fd00:99:`i`::1/64), the tor's side 10.99.`i`.2. Node 0 also has the loopbacks and
    /// static routes of the diagram above.
    pub fn with_nodes(n: usize) -> Topology {
        assert!((1..=200).contains(&n), "1..=200 nodes");
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("vt{}-{id}", std::process::id());
        let nodes: Vec<String> = (0..n)
            .map(|i| {
                if i == 0 {
                    format!("{prefix}-node")
                } else {
                    format!("{prefix}-n{i}")
                }
            })
            .collect();
        let mut topo = Topology {
            node: nodes[0].clone(),
            nodes: nodes.clone(),
            tor: format!("{prefix}-tor"),
            created: Vec::new(),
        };
        // `topo` exists before the first command, so a failing step still cleans up on unwind.
        for ns in nodes.iter().chain([&topo.tor]) {
            run_ok("ip", &["netns", "add", ns.as_str()]);
            topo.created.push(ns.clone());
        }
        configure(&topo.node, &topo.tor);
        for (i, ns) in nodes.iter().enumerate().skip(1) {
            configure_extra_node(i, ns, &topo.tor);
        }
        topo
    }

    /// Node `i`'s IPv4 address on its link to the tor.
    pub fn node_v4(i: usize) -> String {
        format!("10.99.{i}.1")
    }

    /// The tor's IPv4 address on its link to node `i`.
    pub fn tor_v4(i: usize) -> String {
        format!("10.99.{i}.2")
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

    /// Sets the first node's link to the tor down or up at both ends, so both kernels (and a
    /// router that watches its interfaces) see it go: nothing crosses, neither a NOTIFICATION
    /// nor a RST. Up again, the IPv4 addresses and their subnet routes are back; the IPv6
    /// addresses (the kernel flushes them on down) and the loopback routes via the link are not,
    /// so this is for direct IPv4 sessions only.
    pub fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        for (ns, dev) in [(&self.node, "veth-tor"), (&self.tor, "veth-node")] {
            run_ok("ip", &["-n", ns.as_str(), "link", "set", dev, state]);
        }
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

/// Node `i` (> 0): its own veth pair to the tor, named by index on the tor's side.
fn configure_extra_node(i: usize, n: &str, t: &str) {
    let (node_if, tor_if) = ("veth-tor".to_string(), format!("veth-n{i}"));
    let (node_ip, tor_ip) = (
        format!("{}/24", Topology::node_v4(i)),
        format!("{}/24", Topology::tor_v4(i)),
    );
    let (node_ip6, tor_ip6) = (format!("fd00:99:{i}::1/64"), format!("fd00:99:{i}::2/64"));
    let steps: Vec<Vec<&str>> = vec![
        vec!["-n", n, "link", "set", "lo", "up"],
        vec![
            "-n", n, "link", "add", &node_if, "type", "veth", "peer", "name", &tor_if, "netns", t,
        ],
        vec!["-n", n, "link", "set", &node_if, "up"],
        vec!["-n", t, "link", "set", &tor_if, "up"],
        vec!["-n", n, "addr", "add", &node_ip, "dev", &node_if],
        vec!["-n", t, "addr", "add", &tor_ip, "dev", &tor_if],
        vec!["-n", n, "addr", "add", &node_ip6, "dev", &node_if, "nodad"],
        vec!["-n", t, "addr", "add", &tor_ip6, "dev", &tor_if, "nodad"],
    ];
    for step in &steps {
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

/// Kills what still runs in `ns` and deletes it. Only for namespaces the calling test created:
/// everything in them was started by that test.
pub fn remove(ns: &str) {
    let pids = Command::new(tool("ip"))
        .args(["netns", "pids", ns])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for pid in pids.split_whitespace() {
        let _ = Command::new(tool("kill"))
            .args(["-s", "KILL", pid])
            .stderr(Stdio::null())
            .status();
    }
    let _ = Command::new(tool("ip")).args(["netns", "del", ns]).output();
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.created {
            // Daemon handles have stopped their processes by now; anything left in a namespace
            // this test created was started by this test, so killing it by pid is safe.
            remove(ns);
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

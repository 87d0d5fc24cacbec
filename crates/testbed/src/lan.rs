//! The LAN of the ARP/NDP tests: a bridge in its own namespace joining the nodes' `lan0`
//! (10.97.0.10+i, fd00:97::10+i) and a client namespace (10.97.0.2), where tcpdump, arping and
//! `ip neigh` see what a host on the segment sees.

use super::netns::Topology;
use super::{ns_stdout, run_ok, tool};

/// The bridge and client namespaces (and the nodes' `lan0` links into the bridge).
pub struct Lan {
    pub sw: String,
    pub client: String,
    squatter: String,
    created: Vec<String>,
}

impl Lan {
    pub fn new(topo: &Topology) -> Lan {
        let prefix = topo.tor.trim_end_matches("-tor");
        let mut lan = Lan {
            sw: format!("{prefix}-sw"),
            client: format!("{prefix}-cl"),
            squatter: format!("{prefix}-sq"),
            created: Vec::new(),
        };
        for ns in [lan.sw.clone(), lan.client.clone()] {
            run_ok("ip", &["netns", "add", &ns]);
            lan.created.push(ns);
        }
        run_ok(
            "ip",
            &["-n", &lan.sw, "link", "add", "br0", "type", "bridge"],
        );
        run_ok("ip", &["-n", &lan.sw, "link", "set", "br0", "up"]);
        for (i, ns) in topo.nodes.iter().enumerate() {
            lan.plug(
                ns,
                &format!("p{i}"),
                &format!("10.97.0.{}", 10 + i),
                &format!("fd00:97::{}", 10 + i),
            );
        }
        let client = lan.client.clone();
        lan.plug(&client, "pc", "10.97.0.2", "fd00:97::2");
        lan
    }

    /// A namespace on the bridge with `lan0` at `v4`/24 and `v6`/64.
    pub fn plug(&self, ns: &str, port: &str, v4: &str, v6: &str) {
        run_ok("ip", &["-n", ns, "link", "set", "lo", "up"]);
        run_ok(
            "ip",
            &[
                "-n", ns, "link", "add", "lan0", "type", "veth", "peer", "name", port, "netns",
                &self.sw,
            ],
        );
        run_ok(
            "ip",
            &["-n", &self.sw, "link", "set", port, "master", "br0"],
        );
        run_ok("ip", &["-n", &self.sw, "link", "set", port, "up"]);
        run_ok("ip", &["-n", ns, "link", "set", "lan0", "up"]);
        run_ok(
            "ip",
            &["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", "lan0"],
        );
        run_ok(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                "lan0",
                "nodad",
            ],
        );
    }

    pub fn add_squatter(&mut self, vip: &str) -> String {
        let sq = self.squatter.clone();
        run_ok("ip", &["netns", "add", &sq]);
        self.created.push(sq.clone());
        self.plug(&sq, "psq", "10.97.0.3", "fd00:97::3");
        run_ok(
            "ip",
            &[
                "-n",
                &sq,
                "addr",
                "add",
                &format!("{vip}/32"),
                "dev",
                "lan0",
            ],
        );
        mac(&sq)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = std::process::Command::new(tool("ip"))
                .args(["netns", "del", ns])
                .status();
        }
    }
}

pub fn mac(ns: &str) -> String {
    let out = ns_stdout(ns, &["ip", "-br", "link", "show", "lan0"]);
    out.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_lowercase()
}

/// The MAC the client's neighbour table holds for `vip` (any state with an address).
pub fn client_neigh(lan: &Lan, vip: &str) -> Option<String> {
    let out = ns_stdout(&lan.client, &["ip", "neigh", "show", vip, "dev", "lan0"]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_lowercase)
}

pub fn vip_on(ns: &str, vip: &str) -> bool {
    ns_stdout(ns, &["ip", "-br", "addr", "show", "dev", "lan0"]).contains(&format!("{vip}/"))
}

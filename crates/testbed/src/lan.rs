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

/// What a [`Watch`] saw: the client's questions, the frames claiming the VIP, and every pair
/// of MACs claiming it at once ([`crate::claims::overlaps`]).
#[derive(Debug)]
pub struct Watched {
    pub rounds: Vec<f64>,
    pub claims: Vec<crate::claims::Claim>,
    pub overlaps: Vec<String>,
}

impl Watched {
    /// Client rounds that got an answer.
    pub fn answered(&self) -> usize {
        self.rounds
            .windows(2)
            .filter(|p| self.claims.iter().any(|c| c.at >= p[0] && c.at < p[1]))
            .count()
    }

    /// The MACs that claimed the VIP at some point.
    pub fn macs(&self) -> std::collections::BTreeSet<&str> {
        self.claims.iter().map(|c| c.mac.as_str()).collect()
    }
}

/// tcpdump in the client namespace recording every ARP (IPv4 VIP) or ICMPv6 (IPv6 VIP) frame,
/// and the client asking for the VIP about every 200 ms (a broadcast ARP request, or a
/// Neighbour Solicitation to the solicited-node group): every node holding the address on a
/// live link answers every question, so two holders answer the same question within
/// milliseconds.
pub struct Watch {
    capture: crate::daemon::Daemon,
    log: std::path::PathBuf,
    vip: String,
    client_mac: String,
    stop: std::sync::mpsc::Sender<()>,
    asker: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// `dir`: where the capture is written (kept by the caller).
    pub fn start(lan: &Lan, dir: &std::path::Path, vip: &str) -> Watch {
        let v4 = !vip.contains(':');
        let log = dir.join(format!("tcpdump-{}.log", vip.replace(':', "_")));
        let filter = if v4 { "arp" } else { "icmp6" };
        let mut capture = crate::daemon::Daemon::new(
            "tcpdump in the client",
            &lan.client,
            [
                "tcpdump",
                "-i",
                "lan0",
                "-tt",
                "-nn",
                "-e",
                "-l",
                "-U",
                "--immediate-mode",
                filter,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            log.clone(),
        );
        capture.start();
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let client_ns = lan.client.clone();
        let vip_owned = vip.to_string();
        let asker = std::thread::spawn(move || {
            // iputils arping takes whole seconds only: `timeout` ends each round at 200 ms.
            let args: Vec<&str> = if v4 {
                vec![
                    "timeout", "0.2", "arping", "-b", "-c", "1", "-w", "1", "-I", "lan0",
                    &vip_owned,
                ]
            } else {
                vec![
                    "ndisc6", "-q", "-m", "-r", "1", "-w", "180", &vip_owned, "lan0",
                ]
            };
            while stop_rx
                .recv_timeout(std::time::Duration::from_millis(10))
                .is_err()
            {
                let _ = crate::ns_succeeds(&client_ns, &args);
            }
        });
        Watch {
            capture,
            log,
            vip: vip.to_string(),
            client_mac: mac(&lan.client),
            stop,
            asker: Some(asker),
        }
    }

    /// Stops asking and capturing, and judges the capture (`keep`: also copy it there).
    pub fn finish(mut self, keep: Option<&std::ffi::OsStr>) -> Watched {
        let _ = self.stop.send(());
        if let Some(a) = self.asker.take() {
            let _ = a.join();
        }
        // The capture drains.
        std::thread::sleep(std::time::Duration::from_millis(300));
        self.capture.stop();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(keep) = keep {
            let _ = std::fs::write(keep, &text);
        }
        let (rounds, claims) = crate::claims::parse_capture(&text, &self.vip, &self.client_mac);
        let overlaps = crate::claims::overlaps(&rounds, &claims);
        Watched {
            rounds,
            claims,
            overlaps,
        }
    }
}

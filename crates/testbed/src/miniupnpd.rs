//! miniupnpd (nftables backend) as the Internet gateway, after the testbed's `upnp.sh` (phase
//! `stun`): reserved addresses only, and a STUN server on the "internet" side so miniupnpd
//! learns an external address and enables forwarding. Impure: namespaces, nftables, daemons.
//!
//! ```text
//!   lan [eth-gw 10.96.0.2/24; VIPs]  <=veth=> [lan0 10.96.0.1/24]
//!                                              gw (miniupnpd) [wan0 198.18.1.1/24] <=veth=> [eth-gw 198.18.1.2, .3] wan (stund)
//!   obs [eth-gw 10.96.1.2/24]        <=veth=> [lan1 10.96.1.1/24]
//! ```
//! `obs` is a second LAN host where `upnpc -l` looks at the gateway's mappings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::daemon::Daemon;
use super::{ns_stdout, ns_succeeds, path_str, run_ok, tool};

pub const NEEDS: &[(&str, &str)] = &[
    ("miniupnpd", "apt-get install miniupnpd-nftables"),
    ("upnpc", "apt-get install miniupnpc"),
    ("nft", "apt-get install nftables"),
    ("stund", "apt-get install stun-server"),
];
pub const LAN_IP: &str = "10.96.0.2";
pub const GW_WAN_IP: &str = "198.18.1.1";
const HTTP_PORT: u16 = 2189;

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// upnp.sh's ruleset: the table and chains miniupnpd fills (Debian's nft_init.sh is broken).
const NFT_RULESET: &str = "table inet filter {
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        jump miniupnpd
    }
    chain miniupnpd { }
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd
    }
    chain prerouting_miniupnpd { }
    chain postrouting_miniupnpd { }
}
";

pub struct UpnpBed {
    pub lan: String,
    pub gw: String,
    pub wan: String,
    pub obs: String,
    pub dir: tempfile::TempDir,
    pub miniupnpd: Daemon,
    stund: Daemon,
    created: Vec<String>,
}

impl UpnpBed {
    pub fn setup() -> UpnpBed {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("vu{}-{id}", std::process::id());
        let [lan, gw, wan, obs] = ["lan", "gw", "wan", "obs"].map(|n| format!("{prefix}-{n}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("miniupnpd.conf");
        let mut bed = UpnpBed {
            miniupnpd: Daemon::new(
                "miniupnpd",
                &gw,
                vec![
                    tool("miniupnpd"),
                    "-d".into(),
                    "-f".into(),
                    path_str(&conf),
                    "-P".into(),
                    path_str(&dir.path().join("miniupnpd.pid")),
                ],
                dir.path().join("miniupnpd.log"),
            ),
            stund: Daemon::new(
                "stund",
                &wan,
                vec![
                    tool("stund"),
                    "-h".into(),
                    "198.18.1.2".into(),
                    "-a".into(),
                    "198.18.1.3".into(),
                ],
                dir.path().join("stund.log"),
            ),
            lan: lan.clone(),
            gw: gw.clone(),
            wan: wan.clone(),
            obs: obs.clone(),
            dir,
            created: Vec::new(),
        };
        for ns in [&lan, &gw, &wan, &obs] {
            run_ok("ip", &["netns", "add", ns.as_str()]);
            bed.created.push(ns.clone());
        }
        let steps: Vec<Vec<&str>> = vec![
            vec![
                "-n", &lan, "link", "add", "eth-gw", "type", "veth", "peer", "name", "lan0",
                "netns", &gw,
            ],
            vec![
                "-n", &obs, "link", "add", "eth-gw", "type", "veth", "peer", "name", "lan1",
                "netns", &gw,
            ],
            vec![
                "-n", &gw, "link", "add", "wan0", "type", "veth", "peer", "name", "eth-gw",
                "netns", &wan,
            ],
            vec!["-n", &lan, "addr", "add", "10.96.0.2/24", "dev", "eth-gw"],
            vec!["-n", &obs, "addr", "add", "10.96.1.2/24", "dev", "eth-gw"],
            vec!["-n", &gw, "addr", "add", "10.96.0.1/24", "dev", "lan0"],
            vec!["-n", &gw, "addr", "add", "10.96.1.1/24", "dev", "lan1"],
            vec!["-n", &gw, "addr", "add", "198.18.1.1/24", "dev", "wan0"],
            vec!["-n", &wan, "addr", "add", "198.18.1.2/24", "dev", "eth-gw"],
            vec!["-n", &wan, "addr", "add", "198.18.1.3/24", "dev", "eth-gw"],
        ];
        for step in &steps {
            run_ok("ip", step);
        }
        for (ns, links) in [
            (&lan, &["lo", "eth-gw"][..]),
            (&obs, &["lo", "eth-gw"][..]),
            (&gw, &["lo", "lan0", "lan1", "wan0"][..]),
            (&wan, &["lo", "eth-gw"][..]),
        ] {
            for link in links {
                run_ok("ip", &["-n", ns, "link", "set", link, "up"]);
            }
        }
        for (ns, via) in [(&lan, "10.96.0.1"), (&obs, "10.96.1.1")] {
            run_ok("ip", &["-n", ns, "route", "add", "default", "via", via]);
            // SSDP's M-SEARCH leaves by the route to the multicast group (upnp.sh does the same).
            run_ok(
                "ip",
                &[
                    "-n",
                    ns,
                    "route",
                    "add",
                    "239.255.255.250/32",
                    "dev",
                    "eth-gw",
                ],
            );
        }
        run_ok(
            "ip",
            &[
                "netns",
                "exec",
                &gw,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        );
        let nft = bed.dir.path().join("miniupnpd.nft");
        std::fs::write(&nft, NFT_RULESET).expect("write nft ruleset");
        run_ok("ip", &["netns", "exec", &gw, "nft", "-f", &path_str(&nft)]);
        let config = format!(
            "ext_ifname=wan0\nlistening_ip=lan0\nlistening_ip=lan1\nhttp_port={HTTP_PORT}\n\
             enable_upnp=yes\nenable_natpmp=no\nsecure_mode=no\nsystem_uptime=yes\n\
             notify_interval=30\nclean_ruleset_interval=600\n\
             uuid=3f2a1b4c-5d6e-4f70-8192-a3b4c5d6e7f8\nfriendly_name=vipd-test-igd\n\
             lease_file={}\nupnp_table_name=filter\nupnp_nat_table_name=filter\n\
             upnp_forward_chain=miniupnpd\nupnp_nat_chain=prerouting_miniupnpd\n\
             upnp_nat_postrouting_chain=postrouting_miniupnpd\n\
             ext_perform_stun=yes\next_stun_host=198.18.1.2\next_stun_port=3478\n\
             allow 1024-65535 10.96.0.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            path_str(&bed.lease_file())
        );
        std::fs::write(&conf, config).expect("write miniupnpd.conf");
        bed.stund.start();
        let wan_ns = wan.clone();
        bed.stund.wait_ready(
            Duration::from_secs(5),
            "stund on udp 198.18.1.2:3478",
            || {
                ns_succeeds(
                    &wan_ns,
                    &["sh", "-c", "ss -Hlun 'sport = :3478' | grep -q 3478"],
                )
            },
            "",
        );
        bed.miniupnpd.start();
        bed.wait_serving(0);
        bed
    }

    /// Waits until the `after`+1-th start of miniupnpd has learned its address by STUN and
    /// serves HTTP (the log keeps every start, so earlier ones do not count).
    fn wait_serving(&mut self, after: usize) {
        let gw_ns = self.gw.clone();
        let log = self.miniupnpd.log_path().to_path_buf();
        self.miniupnpd.wait_ready(
            Duration::from_secs(10),
            "miniupnpd learned its address by STUN and serves HTTP",
            || {
                std::fs::read_to_string(&log)
                    .is_ok_and(|l| l.matches("Port forwarding is now enabled").count() > after)
                    && ns_succeeds(
                        &gw_ns,
                        &[
                            "sh",
                            "-c",
                            &format!("ss -Hltn 'sport = :{HTTP_PORT}' | grep -q LISTEN"),
                        ],
                    )
            },
            "",
        );
    }

    /// The gateway goes down as a rebooting home router does: miniupnpd is killed and its
    /// mappings (lease file and nftables rules) are lost. [`UpnpBed::gateway_back`] ends it.
    pub fn gateway_lost(&mut self) {
        self.miniupnpd.kill();
        let _ = std::fs::remove_file(self.lease_file());
        for chain in ["miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"] {
            run_ok(
                "ip",
                &[
                    "netns", "exec", &self.gw, "nft", "flush", "chain", "inet", "filter", chain,
                ],
            );
        }
    }

    /// The rebooted gateway serves again, with no mapping at all.
    pub fn gateway_back(&mut self) {
        let starts = self
            .miniupnpd
            .log()
            .matches("Port forwarding is now enabled")
            .count();
        self.miniupnpd.start();
        self.wait_serving(starts);
    }

    pub fn lease_file(&self) -> std::path::PathBuf {
        self.dir.path().join("upnp.leases")
    }

    /// miniupnpd's lease file: `PROTO:eport:iaddr:iport:expiry:description` per mapping.
    pub fn leases(&self) -> Vec<String> {
        std::fs::read_to_string(self.lease_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The expiry (epoch seconds) miniupnpd holds for `proto:eport`.
    pub fn lease_expiry(&self, proto: &str, eport: u16) -> Option<u64> {
        let prefix = format!("{proto}:{eport}:");
        self.leases()
            .iter()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.split(':').nth(4)?.parse().ok())
    }

    /// `upnpc -m eth-gw -i -l` run in `obs`, another LAN host (`-i`: miniupnpc calls an IGD
    /// with a reserved external address "not connected?" and would otherwise do nothing).
    pub fn upnpc_list(&self) -> String {
        ns_stdout(&self.obs, &["upnpc", "-m", "eth-gw", "-i", "-l"])
    }

    /// The mapping lines of `upnpc -l` (` 0 TCP 32380->10.96.0.50:32380 'desc' '' 19`).
    pub fn upnpc_mappings(&self) -> Vec<String> {
        self.upnpc_list()
            .lines()
            .filter(|l| matches!(l.split_whitespace().nth(1), Some("TCP" | "UDP")))
            .map(|l| l.trim().to_string())
            .collect()
    }
}

impl Drop for UpnpBed {
    fn drop(&mut self) {
        self.miniupnpd.stop();
        self.stund.stop();
        for ns in &self.created {
            super::netns::remove(ns);
        }
    }
}

//! dnsmasq (DHCP only) in its own namespace, serving a segment whose other end has no address:
//! the testbed's `dhcp.sh`, for vipd's DHCP client. Impure: creates namespaces, runs dnsmasq.
//!
//! ```text
//!   lan [eth0, no address; vipd's macvlans on it] <==veth==> [lan0 10.98.0.1/24] srv (dnsmasq)
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::daemon::Daemon;
use super::{ns_succeeds, path_str, run_ok, tool};

pub const NEEDS: &[(&str, &str)] = &[("dnsmasq", "apt-get install dnsmasq-base")];
pub const SERVER: &str = "10.98.0.1";
/// The parent interface of the macvlans, in `lan`.
pub const PARENT: &str = "eth0";

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

pub struct DhcpBed {
    pub lan: String,
    pub srv: String,
    pub dir: tempfile::TempDir,
    pub dnsmasq: Daemon,
    created: Vec<String>,
}

/// One lease file line: `<expiry epoch> <mac> <ip> <hostname> <client id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseLine {
    pub expiry: u64,
    pub mac: String,
    pub ip: String,
    pub hostname: String,
    pub client_id: String,
}

impl DhcpBed {
    /// Namespaces, veth and dnsmasq serving 10.98.0.100–150 with a `lease` (dnsmasq's minimum is
    /// 2 minutes) and `extra` config lines (e.g. `dhcp-option=option:T1,6`).
    pub fn setup(lease: &str, extra: &[&str]) -> DhcpBed {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("vd{}-{id}", std::process::id());
        let (lan, srv) = (format!("{prefix}-lan"), format!("{prefix}-srv"));
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("dnsmasq.log");
        let conf = dir.path().join("dnsmasq.conf");
        let mut bed = DhcpBed {
            dnsmasq: daemon(&srv, &conf, log),
            lan: lan.clone(),
            srv: srv.clone(),
            dir,
            created: Vec::new(),
        };
        for ns in [&lan, &srv] {
            run_ok("ip", &["netns", "add", ns.as_str()]);
            bed.created.push(ns.clone());
        }
        let steps: &[&[&str]] = &[
            &["-n", &lan, "link", "set", "lo", "up"],
            &["-n", &srv, "link", "set", "lo", "up"],
            &[
                "-n", &lan, "link", "add", PARENT, "type", "veth", "peer", "name", "lan0", "netns",
                &srv,
            ],
            &["-n", &lan, "link", "set", PARENT, "up"],
            &["-n", &srv, "link", "set", "lan0", "up"],
            &["-n", &srv, "addr", "add", "10.98.0.1/24", "dev", "lan0"],
        ];
        for step in steps {
            run_ok("ip", step);
        }
        write_config(
            &conf,
            "lan0",
            "10.98.0.100,10.98.0.150,255.255.255.0",
            lease,
            &bed.lease_file(),
            extra,
        );
        bed.start_dnsmasq();
        bed
    }

    pub fn lease_file(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.leases")
    }

    /// Starts (or restarts) dnsmasq and waits until it listens on udp/67.
    pub fn start_dnsmasq(&mut self) {
        self.dnsmasq.start();
        let srv = self.srv.clone();
        self.dnsmasq.wait_ready(
            Duration::from_secs(10),
            "dnsmasq bound to udp/67",
            || ns_succeeds(&srv, &["sh", "-c", "ss -Hlun 'sport = :67' | grep -q :67"]),
            "",
        );
    }

    pub fn leases(&self) -> Vec<LeaseLine> {
        leases(&self.lease_file())
    }

    pub fn lease_for(&self, mac: &str) -> Option<LeaseLine> {
        self.leases()
            .into_iter()
            .find(|l| l.mac.eq_ignore_ascii_case(mac))
    }

    /// `ip -4 -o addr show dev IF` in lan: the addresses (with prefix) on a macvlan.
    pub fn addresses_on(&self, ifname: &str) -> Vec<String> {
        super::ns_stdout(
            &self.lan,
            &["ip", "-4", "-o", "addr", "show", "dev", ifname],
        )
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
    }

    pub fn link_exists(&self, ifname: &str) -> bool {
        ns_succeeds(&self.lan, &["ip", "link", "show", "dev", ifname])
    }

    /// dnsmasq's log lines with `what` (e.g. "DHCPREQUEST").
    pub fn log_lines(&self, what: &str) -> Vec<String> {
        self.dnsmasq
            .log()
            .lines()
            .filter(|l| l.contains(what))
            .map(str::to_string)
            .collect()
    }
}

/// How many DHCPDISCOVER exchanges dnsmasq's `log` (written with `log-dhcp`) shows: distinct
/// transaction ids, since a client retransmits a DISCOVER with the same xid (RFC 2131 §4.4.1)
/// whenever dnsmasq's ping check before a first offer outlasts its retransmission timer.
pub fn discover_exchanges(log: &str) -> usize {
    let mut xids: Vec<&str> = log
        .lines()
        .filter_map(|l| {
            let mut words = l
                .split_whitespace()
                .skip_while(|w| !w.starts_with("dnsmasq-dhcp"));
            words.next()?;
            let xid = words.next()?;
            words.next()?.starts_with("DHCPDISCOVER(").then_some(xid)
        })
        .collect();
    xids.sort_unstable();
    xids.dedup();
    xids.len()
}

/// dnsmasq's lease file, parsed.
pub fn leases(path: &std::path::Path) -> Vec<LeaseLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 5 {
                return None;
            }
            Some(LeaseLine {
                expiry: f[0].parse().ok()?,
                mac: f[1].to_string(),
                ip: f[2].to_string(),
                hostname: f[3].to_string(),
                client_id: f[4].to_string(),
            })
        })
        .collect()
}

/// dnsmasq (DHCP only, no DNS) serving `range` (`start,end,mask`) on `interface` with `lease`,
/// staying root so it can write `lease_file` in a root-owned temp dir, plus `extra` lines.
pub fn write_config(
    conf: &std::path::Path,
    interface: &str,
    range: &str,
    lease: &str,
    lease_file: &std::path::Path,
    extra: &[&str],
) {
    let mut text = format!(
        "port=0\ninterface={interface}\nbind-interfaces\nno-resolv\nno-hosts\n\
         dhcp-range={range},{lease}\ndhcp-authoritative\n\
         dhcp-leasefile={}\npid-file={}.pid\nlog-dhcp\nuser=root\n",
        path_str(lease_file),
        path_str(lease_file),
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(conf, &text).expect("write dnsmasq.conf");
}

/// Starts `daemon` (dnsmasq in `ns`) and waits until it listens on udp/67.
pub fn start(daemon: &mut Daemon, ns: &str) {
    daemon.start();
    daemon.wait_ready(
        std::time::Duration::from_secs(10),
        "dnsmasq bound to udp/67",
        || {
            !super::ns_stdout(ns, &["ss", "-Hlun", "sport = :67"])
                .trim()
                .is_empty()
        },
        "",
    );
}

/// dnsmasq in the foreground in `ns` with config `conf`, logging to `log`. Not started.
pub fn daemon(ns: &str, conf: &std::path::Path, log: PathBuf) -> Daemon {
    Daemon::new(
        "dnsmasq",
        ns,
        vec![
            tool("dnsmasq"),
            format!("--conf-file={}", path_str(conf)),
            "--keep-in-foreground".into(),
            "--log-facility=-".into(),
        ],
        log,
    )
}

impl Drop for DhcpBed {
    fn drop(&mut self) {
        self.dnsmasq.stop();
        for ns in &self.created {
            // Everything left in a namespace this bed created was started by this test.
            super::netns::remove(ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::discover_exchanges;

    #[test]
    fn a_retransmitted_discover_is_one_exchange_and_a_new_xid_another() {
        let log = "\
dnsmasq-dhcp[7]: 1916316560 available DHCP range: 10.97.0.100 -- 10.97.0.150
dnsmasq-dhcp[7]: 1916316560 DHCPDISCOVER(br0) 7e:a9:db:ec:6c:05
dnsmasq-dhcp[7]: 1916316560 DHCPDISCOVER(br0) 7e:a9:db:ec:6c:05
dnsmasq-dhcp[7]: 1916316560 DHCPOFFER(br0) 10.97.0.150 7e:a9:db:ec:6c:05
dnsmasq-dhcp[7]: 1916316560 DHCPREQUEST(br0) 10.97.0.150 7e:a9:db:ec:6c:05
dnsmasq-dhcp[7]: 2308057322 DHCPREQUEST(br0) 10.97.0.150 7e:a9:db:ec:6c:05
";
        assert_eq!(discover_exchanges(log), 1);
        let more = format!("{log}dnsmasq-dhcp[7]: 42 DHCPDISCOVER(br0) 7e:a9:db:ec:6c:06\n");
        assert_eq!(discover_exchanges(&more), 2);
        assert_eq!(discover_exchanges(""), 0);
    }
}

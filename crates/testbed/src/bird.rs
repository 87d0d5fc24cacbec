//! BIRD 2 as the router: `bird -f` with its own config and control socket in a temp dir, queried
//! with `birdc -s SOCKET`. Impure.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use super::daemon::Daemon;
use super::netns::{Topology, NODE_LO, NODE_V4};
use super::router::{
    as_numbers, Family, RouteInfo, Router, RouterConfig, ROUTER_AS, ROUTER_ID, VIPD_AS,
};
use super::{global_address, ns_stdout, ns_succeeds, path_str, tool};

pub struct Bird {
    // Field order is drop order: the daemon stops before its directory goes away.
    daemon: Daemon,
    cfg: RouterConfig,
    ns: String,
    socket: PathBuf,
    config: String,
    /// Kept for the daemon's life: its config, sockets and log live there.
    _dir: TempDir,
}

impl Bird {
    /// `birdc -s SOCKET args...`; BIRD's reply whatever birdc's exit status.
    fn birdc(&self, args: &[&str]) -> String {
        let (birdc, socket) = (tool("birdc"), path_str(&self.socket));
        let mut argv = vec![birdc.as_str(), "-s", socket.as_str()];
        argv.extend_from_slice(args);
        ns_stdout(&self.ns, &argv)
    }

    /// Whether the session of neighbor `i` (in `RouterConfig` order) is Established.
    pub fn protocol_established(&self, i: usize) -> bool {
        let name = Bird::protocol(i);
        self.birdc(&["show", "protocols"]).lines().any(|l| {
            l.split_whitespace().next() == Some(name.as_str()) && l.contains("Established")
        })
    }

    /// `birdc enable|disable` the session of neighbor `i`: disabling sends the peer a Cease.
    pub fn set_protocol_enabled(&self, i: usize, enabled: bool) {
        let verb = if enabled { "enable" } else { "disable" };
        self.birdc(&[verb, &Bird::protocol(i)]);
    }

    /// `birdc show route <prefix> all`: every path with all its attributes, as BIRD prints them
    /// (`BGP.community: (65535,0)`, `BGP.local_pref: 100`, …).
    /// The state (`Up`, `Down`, `Init`, `AdminDown`) of BIRD's BFD session with `peer`, from
    /// `show bfd sessions`:
    /// ```text
    /// IP address                Interface  State      Since         Interval  Timeout
    /// 10.99.0.1                 veth-tor   Up         20:04:51.456    0.300    0.900
    /// ```
    pub fn bfd_state(&self, peer: &str) -> Option<String> {
        self.birdc(&["show", "bfd", "sessions"])
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.first() == Some(&peer))
            .and_then(|w| w.get(2).map(|s| (*s).to_owned()))
    }

    pub fn route_all(&self, prefix: &str) -> String {
        self.birdc(&["show", "route", prefix, "all"])
    }

    /// The next hop of every path BIRD holds for `prefix` (one per announcing node, ECMP).
    pub fn next_hops(&self, prefix: &str) -> Vec<std::net::IpAddr> {
        let mut hops: Vec<_> = self
            .birdc(&["show", "route", prefix, "all"])
            .lines()
            .filter_map(|l| l.trim().strip_prefix("BGP.next_hop:"))
            .filter_map(|v| global_address(v.split_whitespace()))
            .collect();
        hops.sort();
        hops
    }

    /// Every BGP prefix of `master4` with the next hop of each path, from `show route all`:
    /// a prefix line, then each path's attributes (`BGP.next_hop: …`), a path of the same
    /// prefix starting with blanks.
    pub fn table(&self) -> std::collections::BTreeMap<String, Vec<std::net::IpAddr>> {
        parse_table(&self.birdc(&[
            "show", "route", "table", "master4", "where", "source", "=", "RTS_BGP", "all",
        ]))
    }

    /// Every BGP route of `table` ("master4") with the Unix time (µs resolution) BIRD imported
    /// it, from BIRD's own stamps: `198.18.0.10/32  unicast [vipd0 1795921087.040336] * ...`.
    pub fn import_times(&self, table: &str) -> Vec<(String, f64)> {
        self.birdc(&[
            "show", "route", "table", table, "where", "source", "=", "RTS_BGP",
        ])
        .lines()
        .filter_map(|l| {
            let prefix = l.split_whitespace().next()?;
            let stamp = l.split('[').nth(1)?.split_whitespace().nth(1)?;
            let stamp = stamp.trim_end_matches(']').parse().ok()?;
            prefix.contains('/').then(|| (prefix.to_string(), stamp))
        })
        .collect()
    }

    /// BGP protocol name of neighbor `i` in our config.
    fn protocol(i: usize) -> String {
        format!("vipd{i}")
    }
}

impl super::router::BfdPeer for Bird {
    fn bfd_up(&self, peer: &str) -> bool {
        self.bfd_state(peer).as_deref() == Some("Up")
    }
}

impl Router for Bird {
    const NAME: &'static str = "bird";
    const NEEDS: &'static [(&'static str, &'static str)] = &[
        ("bird", "apt-get install bird2"),
        ("birdc", "apt-get install bird2"),
    ];

    fn new(topo: &Topology, cfg: RouterConfig) -> Bird {
        let dir = tempfile::tempdir().expect("temp dir for bird");
        let config = bird_config(&cfg);
        let (argv, socket) = bird_argv(dir.path(), &config);
        let daemon = Daemon::new("bird", &topo.tor, argv, dir.path().join("bird.log"));
        Bird {
            daemon,
            cfg,
            ns: topo.tor.clone(),
            socket,
            config,
            _dir: dir,
        }
    }

    fn start(&mut self) {
        // A socket left by a KILLed run would make birdc fail confusingly.
        let _ = std::fs::remove_file(&self.socket);
        self.daemon.start();
        let (ns, birdc, socket) = (self.ns.clone(), tool("birdc"), path_str(&self.socket));
        let context = format!("---- bird.conf ----\n{}", self.config);
        self.daemon.wait_ready(
            Duration::from_secs(10),
            "birdc answers on the control socket",
            || {
                ns_succeeds(
                    &ns,
                    &[birdc.as_str(), "-s", socket.as_str(), "show", "status"],
                )
            },
            &context,
        );
    }

    fn stop(&mut self) {
        self.daemon.stop();
    }

    fn kill(&mut self) {
        // The control socket it leaves is removed by `start`; the pid file is only flock()ed,
        // and the lock died with the process.
        self.daemon.kill();
    }

    fn session_established(&self) -> bool {
        // "vipd0      BGP        ---        up     17:56:09.981  Established"
        let out = self.birdc(&["show", "protocols"]);
        (0..self.cfg.neighbors.len()).all(|i| {
            let name = Bird::protocol(i);
            out.lines().any(|l| {
                l.split_whitespace().next() == Some(name.as_str()) && l.contains("Established")
            })
        })
    }

    fn route(&self, prefix: &str) -> Option<RouteInfo> {
        parse_route(&self.birdc(&["show", "route", prefix, "all"]))
    }

    fn route_count(&self, family: Family) -> usize {
        let table = match family {
            Family::Ipv4 => "master4",
            Family::Ipv6 => "master6",
        };
        // Only BGP routes: the multihop config also has a static route in master4.
        parse_count(&self.birdc(&[
            "show", "route", "table", table, "where", "source", "=", "RTS_BGP", "count",
        ]))
    }

    fn log_tail(&self) -> String {
        self.daemon.log_tail(40)
    }
}

/// `bird -f` with `config` written to `dir`, its control socket and pid file there; the argv
/// and the socket's path.
pub(crate) fn bird_argv(dir: &std::path::Path, config: &str) -> (Vec<String>, PathBuf) {
    let conf = dir.join("bird.conf");
    std::fs::write(&conf, config).expect("write bird.conf");
    let socket = dir.join("bird.ctl");
    let argv = vec![
        tool("bird"),
        "-f".to_string(), // foreground: the pid we hold is BIRD's
        "-c".to_string(),
        path_str(&conf),
        "-s".to_string(),
        path_str(&socket),
        "-P".to_string(),
        path_str(&dir.join("bird.pid")),
    ];
    (argv, socket)
}

fn bird_config(cfg: &RouterConfig) -> String {
    // Log to stderr (the daemon's log file); "states, events" shows session changes and the
    // NOTIFICATIONs received, e.g. "vipd0: Received: Administrative shutdown".
    let mut c = format!(
        "log stderr all;\n\
         debug protocols {{ states, events }};\n\
         timeformat route \"%s.%6f\";\n\
         router id {ROUTER_ID};\n\
         protocol device {{ }}\n"
    );
    if cfg.kernel_ecmp {
        c.push_str("protocol kernel {\n  ipv4 { export all; };\n  merge paths on;\n}\n");
    }
    if cfg.bfd.is_some() {
        // BGP's `bfd on` asks this protocol for the sessions; BIRD's defaults differ from
        // vipd's (10 ms rx, 100 ms tx, × 5), so they are set to 300 ms × 3 here.
        c.push_str(
            "protocol bfd {\n  interface \"*\" { min rx interval 300 ms; min tx interval 300 ms; multiplier 3; };\n  multihop { min rx interval 300 ms; min tx interval 300 ms; multiplier 3; };\n}\n",
        );
    }
    if cfg.multihop {
        // BIRD resolves a multihop next hop (vipd's loopback) through its own table, not the
        // kernel's: without this IGP route the VIP is kept as unreachable.
        c.push_str(&format!(
            "protocol static vipd_igp {{ ipv4; route {NODE_LO}/32 via {NODE_V4}; }}\n"
        ));
    }
    let port = if cfg.port == 179 {
        String::new()
    } else {
        // `local ... port N` is BIRD's listening port (verified: it then listens on N only).
        format!(" port {}", cfg.port)
    };
    for (i, n) in cfg.neighbors.iter().enumerate() {
        let mut session = String::new();
        if cfg.multihop {
            session.push_str("  multihop 2;\n");
        }
        if let Some(password) = &cfg.password {
            session.push_str(&format!("  password \"{password}\";\n"));
        }
        if cfg.passive {
            session.push_str("  passive on;\n");
        } else {
            session.push_str("  connect delay time 1;\n  connect retry time 2;\n");
        }
        // BIRD holds a session down for 60-300 s after an error (a hold timer, a link going
        // down) before it takes a connection again; the tests measure vipd, not that damping.
        session.push_str("  error wait time 1, 2;\n");
        match cfg.bfd {
            Some(super::router::BfdMode::Down) => session.push_str("  bfd on;\n"),
            Some(super::router::BfdMode::Graceful) => session.push_str("  bfd graceful;\n"),
            None => {}
        }
        c.push_str(&format!(
            "protocol bgp {name} {{\n  local {local}{port} as {ROUTER_AS};\n  neighbor {vipd} as {VIPD_AS};\n\
             {session}  hold time {hold}; keepalive time {keepalive};\n  {family} {{ import {import}; export none; }};\n}}\n",
            name = Bird::protocol(i),
            local = n.local,
            vipd = n.vipd,
            hold = cfg.hold_time,
            keepalive = cfg.keepalive(),
            family = n.family().word(),
            import = if cfg.kernel_ecmp {
                "filter { if (65535, 0) ~ bgp_community then bgp_local_pref = 0; accept; }"
            } else {
                "all"
            },
        ));
    }
    c
}

/// Parses `birdc show route PREFIX all`: the first route after the "Table" line is the best one;
/// its attributes are the tab-indented lines below it. `None` for "Network not found".
/// ```text
/// Table master6:
/// fd00:98::10/128      unicast [vipd1 20:03:07.629] * (100) [AS65000i]
///         via fd00:99::1 on veth-node
///         Type: BGP univ
///         BGP.origin: IGP
///         BGP.as_path: 65000
///         BGP.next_hop: fd00:99::1 fe80::4437:ddff:fe80:a858
///         BGP.local_pref: 100
/// ```
pub fn parse_route(out: &str) -> Option<RouteInfo> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("Table "));
    lines.next()?;
    let header = lines.next()?;
    if header.is_empty() || header.starts_with(char::is_whitespace) {
        return None;
    }
    let (mut next_hop, mut as_path, mut origin) = (None, None, None);
    // Further routes for the same network start with spaces, not a tab: they end the block.
    for line in lines.take_while(|l| l.starts_with('\t')) {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("BGP.next_hop:") {
            next_hop = global_address(v.split_whitespace());
        } else if let Some(v) = line.strip_prefix("BGP.as_path:") {
            as_path = Some(as_numbers(v));
        } else if let Some(v) = line.strip_prefix("BGP.origin:") {
            origin = Some(v.trim().to_uppercase());
        }
    }
    Some(RouteInfo {
        next_hop: next_hop?,
        as_path: as_path?,
        origin: origin?,
    })
}

/// Parses `show route ... count`: "1 of 2 routes for 2 networks in table master4", where the
/// first number is the routes that passed the filter.
/// See [`Bird::table`].
pub fn parse_table(out: &str) -> std::collections::BTreeMap<String, Vec<std::net::IpAddr>> {
    let mut table: std::collections::BTreeMap<String, Vec<std::net::IpAddr>> = Default::default();
    let mut current: Option<String> = None;
    for line in out.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if !line.starts_with(char::is_whitespace) && first.contains('/') {
            current = Some(first.to_owned());
            table.entry(first.to_owned()).or_default();
        } else if let (Some(p), Some(v)) = (&current, line.trim().strip_prefix("BGP.next_hop:")) {
            if let Some(hop) = global_address(v.split_whitespace()) {
                table.entry(p.clone()).or_default().push(hop);
            }
        }
    }
    for hops in table.values_mut() {
        hops.sort();
    }
    table
}

impl super::router::Tables for Bird {
    fn table4(&self) -> std::collections::BTreeMap<String, Vec<std::net::IpAddr>> {
        self.table()
    }
}

pub fn parse_count(out: &str) -> usize {
    out.lines()
        .find(|l| l.contains(" routes for "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from BIRD 2.0.12 in a namespace (peer sending global + link-local next hop).
    const SHOW_ROUTE_V6: &str = "BIRD 2.0.12 ready.\nTable master6:\n\
        fd00:98::10/128      unicast [vipd1 18:00:12.483] * (100) [AS65000i]\n\
        \tvia fd00:99::1 on veth-node\n\
        \tType: BGP univ\n\
        \tBGP.origin: IGP\n\
        \tBGP.as_path: 65000\n\
        \tBGP.next_hop: fd00:99::1 fe80::4437:ddff:fe80:a858\n\
        \tBGP.local_pref: 100\n";

    // Captured from BIRD 2.0.12 in the chaos run: one prefix from three nodes (ECMP), one from
    // a single node.
    const SHOW_TABLE: &str = "BIRD 2.0.12 ready.\nTable master4:\n\
        198.19.0.132/32      unicast [vipd0 1796655584.454599] * (100) [AS65000i]\n\
        \tvia 10.99.0.1 on veth-node\n\
        \tType: BGP univ\n\
        \tBGP.origin: IGP\n\
        \tBGP.as_path: 65000\n\
        \tBGP.next_hop: 10.99.0.1\n\
        \tBGP.local_pref: 100\n\
        \x20                    unicast [vipd1 1796655557.146106] (100) [AS65000i]\n\
        \tvia 10.99.1.1 on veth-n1\n\
        \tBGP.next_hop: 10.99.1.1\n\
        \x20                    unicast [vipd2 1796655572.615116] (100) [AS65000i]\n\
        \tvia 10.99.2.1 on veth-n2\n\
        \tBGP.next_hop: 10.99.2.1\n\
        198.19.0.24/32       unicast [vipd2 1796655584.454599] * (100) [AS65000i]\n\
        \tvia 10.99.2.1 on veth-n2\n\
        \tBGP.next_hop: 10.99.2.1\n";

    #[test]
    fn the_table_parser_reads_every_path_of_every_prefix() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let table = parse_table(SHOW_TABLE);
        assert_eq!(
            table,
            std::collections::BTreeMap::from([
                (
                    "198.19.0.132/32".to_owned(),
                    vec![ip("10.99.0.1"), ip("10.99.1.1"), ip("10.99.2.1")]
                ),
                ("198.19.0.24/32".to_owned(), vec![ip("10.99.2.1")]),
            ])
        );
    }

    #[test]
    fn bird_route_parser_reads_next_hop_as_path_and_origin() {
        assert_eq!(
            parse_route(SHOW_ROUTE_V6),
            Some(RouteInfo {
                next_hop: "fd00:99::1".parse().unwrap(),
                as_path: vec![65000],
                origin: "IGP".to_string(),
            })
        );
    }

    #[test]
    fn bird_route_parser_returns_none_for_an_unknown_network() {
        assert_eq!(parse_route("BIRD 2.0.12 ready.\nNetwork not found\n"), None);
    }

    #[test]
    fn bird_count_parser_reads_the_filtered_route_count() {
        let out = "BIRD 2.0.12 ready.\n1 of 2 routes for 2 networks in table master4\n";
        assert_eq!(parse_count(out), 1);
        assert_eq!(parse_count(""), 0);
    }
}

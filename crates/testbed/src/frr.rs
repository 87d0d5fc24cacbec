//! FRR 8.4 as the router: zebra + bgpd run directly (no watchfrr, no systemd, no /etc/frr), with
//! config, pid files, vty sockets and the zserv socket in a temp dir; queried with
//! `vtysh --vty_socket DIR -c '... json'`. Impure.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::daemon::Daemon;
use super::netns::Topology;
use super::router::{Family, RouteInfo, Router, RouterConfig, ROUTER_AS, ROUTER_ID, VIPD_AS};
use super::{global_address, ns_stdout, ns_succeeds, path_str, tool};

pub struct Frr {
    // Field order is drop order: bgpd stops before bfdd and zebra, all before the directory
    // goes away.
    bgpd: Daemon,
    /// With [`RouterConfig::bfd`]: bgpd asks it (through zebra) for the BFD sessions.
    bfdd: Option<Daemon>,
    zebra: Daemon,
    cfg: RouterConfig,
    ns: String,
    /// Directory for vty sockets, pid files and zserv.api (`--vty_socket`, `-i`, `-z`).
    vty: PathBuf,
    config: String,
    /// Kept for the daemon's life: its config, sockets and log live there.
    _dir: TempDir,
}

impl Frr {
    fn vtysh(&self, command: &str) -> String {
        let (vtysh, vty) = (tool("vtysh"), path_str(&self.vty));
        ns_stdout(
            &self.ns,
            &[vtysh.as_str(), "--vty_socket", vty.as_str(), "-c", command],
        )
    }

    fn vtysh_json(&self, command: &str) -> Value {
        serde_json::from_str(&self.vtysh(command)).unwrap_or(Value::Null)
    }

    /// `show bfd peers json`: one object per session, with `peer`, `status` (`up`, `down`,
    /// `init`, `shutdown`), `diagnostic`, `remote-diagnostic`, the intervals.
    pub fn bfd_peers(&self) -> Vec<Value> {
        match self.vtysh_json("show bfd peers json") {
            Value::Array(a) => a,
            _ => Vec::new(),
        }
    }

    /// The BFD status (`up`, `down`, …) of the session with `peer`, if bfdd has one.
    pub fn bfd_status(&self, peer: &str) -> Option<String> {
        self.bfd_peers()
            .into_iter()
            .find(|p| p["peer"].as_str() == Some(peer))
            .and_then(|p| p["status"].as_str().map(str::to_owned))
    }

    /// bfdd's log lines (FRR's daemons share one log file).
    pub fn log(&self) -> String {
        self.bgpd.log_tail(400)
    }

    /// The next hop of every path bgpd holds for `prefix` (one per announcing neighbor), sorted.
    pub fn next_hops(&self, prefix: &str) -> Vec<std::net::IpAddr> {
        let family = Family::of(prefix).word();
        let route = self.vtysh_json(&format!("show bgp {family} unicast {prefix} json"));
        path_hops(&route["paths"])
    }
}

/// The first next hop of each path in a JSON array of bgpd's paths, sorted.
fn path_hops(paths: &Value) -> Vec<std::net::IpAddr> {
    let mut hops: Vec<std::net::IpAddr> = paths
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nexthops"][0]["ip"].as_str()?.parse().ok())
        .collect();
    hops.sort();
    hops
}

impl super::router::Tables for Frr {
    /// `show bgp ipv4 unicast json`: `{"routes": {"198.18.0.10/32": [path, …], …}}`, each path
    /// with `nexthops[0].ip`.
    fn table4(&self) -> std::collections::BTreeMap<String, Vec<std::net::IpAddr>> {
        let table = self.vtysh_json("show bgp ipv4 unicast json");
        let mut out = std::collections::BTreeMap::new();
        for (prefix, paths) in table["routes"].as_object().into_iter().flatten() {
            out.insert(prefix.clone(), path_hops(paths));
        }
        out
    }
}

impl super::router::BfdPeer for Frr {
    fn bfd_up(&self, peer: &str) -> bool {
        self.bfd_status(peer).as_deref() == Some("up")
    }
}

impl Router for Frr {
    const NAME: &'static str = "frr";
    const NEEDS: &'static [(&'static str, &'static str)] = &[
        ("bgpd", "apt-get install frr"),
        ("zebra", "apt-get install frr"),
        ("vtysh", "apt-get install frr"),
        ("bfdd", "apt-get install frr"),
    ];

    fn new(topo: &Topology, cfg: RouterConfig) -> Frr {
        let dir = tempfile::tempdir().expect("temp dir for frr");
        let vty = dir.path().join("vty");
        let config = bgpd_config(&cfg);
        let (bgpd_conf, zebra_conf) = (dir.path().join("bgpd.conf"), dir.path().join("zebra.conf"));
        std::fs::write(&bgpd_conf, &config).expect("write bgpd.conf");
        std::fs::write(&zebra_conf, "hostname tor\nlog stdout informational\n")
            .expect("write zebra.conf");
        let v = |name: &str| path_str(&vty.join(name));
        // -u root -g frrvty: FRR insists the run-as user is in the vty group; root is not in
        // frrvty, but this pair passes the check without editing /etc/group (zebra has no -S).
        // -P 0: no TCP vty port.
        let common = |conf: &PathBuf, pid: &str| -> Vec<String> {
            [
                "-f",
                &path_str(conf),
                "-P",
                "0",
                "-i",
                &v(pid),
                "--vty_socket",
                &path_str(&vty),
                "-z",
                &v("zserv.api"),
                "-u",
                "root",
                "-g",
                "frrvty",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let mut zebra_argv = vec![tool("zebra")];
        zebra_argv.extend(common(&zebra_conf, "zebra.pid"));
        // bgpd -p: the BGP listening port (bgpd listens on that port only).
        let mut bgpd_argv = vec![tool("bgpd"), "-p".to_string(), cfg.port.to_string()];
        bgpd_argv.extend(common(&bgpd_conf, "bgpd.pid"));
        let log = dir.path().join("frr.log");
        let bfdd = cfg.bfd.map(|_| {
            let conf = dir.path().join("bfdd.conf");
            std::fs::write(
                &conf,
                "hostname tor\nlog stdout debugging\ndebug bfd peer\n",
            )
            .expect("write bfdd.conf");
            // --bfdctl: bfdd removes and recreates its control socket at start; the default
            // path would be shared by every test bed.
            let mut argv = vec![tool("bfdd"), "--bfdctl".to_string(), v("bfdd.sock")];
            argv.extend(common(&conf, "bfdd.pid"));
            Daemon::new("bfdd", &topo.tor, argv, log.clone())
        });
        Frr {
            bgpd: Daemon::new("bgpd", &topo.tor, bgpd_argv, log.clone()),
            bfdd,
            zebra: Daemon::new("zebra", &topo.tor, zebra_argv, log),
            cfg,
            ns: topo.tor.clone(),
            vty,
            config,
            _dir: dir,
        }
    }

    fn start(&mut self) {
        // Fresh socket directory: no stale vty sockets or pid files from the previous run.
        let _ = std::fs::remove_dir_all(&self.vty);
        std::fs::create_dir(&self.vty).expect("create FRR vty dir");
        let context = format!("---- bgpd.conf ----\n{}", self.config);
        self.zebra.start();
        let zserv = self.vty.join("zserv.api");
        self.zebra.wait_ready(
            Duration::from_secs(10),
            "zebra creates zserv.api",
            || zserv.exists(),
            &context,
        );
        if let Some(bfdd) = &mut self.bfdd {
            bfdd.start();
            let sock = self.vty.join("bfdd.sock");
            bfdd.wait_ready(
                Duration::from_secs(10),
                "bfdd creates its control socket",
                || sock.exists(),
                &context,
            );
        }
        self.bgpd.start();
        let (ns, vtysh, vty) = (self.ns.clone(), tool("vtysh"), path_str(&self.vty));
        self.bgpd.wait_ready(
            Duration::from_secs(10),
            "vtysh reaches bgpd",
            || {
                ns_succeeds(
                    &ns,
                    &[
                        vtysh.as_str(),
                        "--vty_socket",
                        vty.as_str(),
                        "-c",
                        "show bgp summary",
                    ],
                )
            },
            &context,
        );
    }

    fn stop(&mut self) {
        self.bgpd.stop();
        if let Some(bfdd) = &mut self.bfdd {
            bfdd.stop();
        }
        self.zebra.stop();
    }

    fn kill(&mut self) {
        // bgpd first, so it cannot react to zebra's death. The pid files, vty sockets and
        // zserv.api they leave are removed by `start`, which recreates the directory.
        self.bgpd.kill();
        if let Some(bfdd) = &mut self.bfdd {
            bfdd.kill();
        }
        self.zebra.kill();
    }

    fn session_established(&self) -> bool {
        // {"10.99.0.1": {"bgpState": "Established", ...}, "fd00:99::1": {...}}
        let neighbors = self.vtysh_json("show bgp neighbors json");
        self.cfg.neighbors.iter().all(|n| {
            neighbors[n.vipd.to_string().as_str()]["bgpState"].as_str() == Some("Established")
        })
    }

    fn route(&self, prefix: &str) -> Option<RouteInfo> {
        let family = Family::of(prefix).word();
        parse_route(&self.vtysh(&format!("show bgp {family} unicast {prefix} json")))
    }

    fn route_count(&self, family: Family) -> usize {
        // {"routes": {"198.18.0.10/32": [...], ...}, ...}
        let table = self.vtysh_json(&format!("show bgp {} unicast json", family.word()));
        table["routes"].as_object().map_or(0, |routes| routes.len())
    }

    fn log_tail(&self) -> String {
        self.bgpd.log_tail(40)
    }
}

fn bgpd_config(cfg: &RouterConfig) -> String {
    let mut c = format!(
        "frr defaults traditional\n\
         hostname tor\n\
         log stdout debugging\n\
         debug bgp neighbor-events\n\
         !\n\
         router bgp {ROUTER_AS}\n \
         bgp router-id {ROUTER_ID}\n \
         bgp log-neighbor-changes\n \
         ! FRR 8.4 drops eBGP routes without a policy (RFC 8212) unless this is off\n \
         no bgp ebgp-requires-policy\n"
    );
    for n in &cfg.neighbors {
        let nb = format!(" neighbor {}", n.vipd);
        c.push_str(&format!("{nb} remote-as {VIPD_AS}\n"));
        c.push_str(&format!(
            "{nb} timers {} {}\n",
            cfg.keepalive(),
            cfg.hold_time
        ));
        if cfg.passive {
            c.push_str(&format!("{nb} passive\n"));
        } else {
            c.push_str(&format!("{nb} timers connect 2\n"));
        }
        if let Some(password) = &cfg.password {
            c.push_str(&format!("{nb} password {password}\n"));
        }
        if cfg.bfd.is_some() {
            // FRR's defaults are vipd's: 300 ms × 3.
            c.push_str(&format!("{nb} bfd\n"));
        }
        if cfg.multihop {
            c.push_str(&format!(
                "{nb} ebgp-multihop 2\n{nb} update-source {}\n",
                n.local
            ));
        }
    }
    // IPv4 unicast is on for every neighbor by default; IPv6 sessions carry IPv6 unicast only.
    let v6: Vec<_> = cfg
        .neighbors
        .iter()
        .filter(|n| n.family() == Family::Ipv6)
        .collect();
    if !v6.is_empty() {
        c.push_str(" address-family ipv4 unicast\n");
        for n in &v6 {
            c.push_str(&format!("  no neighbor {} activate\n", n.vipd));
        }
        c.push_str(" exit-address-family\n address-family ipv6 unicast\n");
        for n in &v6 {
            c.push_str(&format!("  neighbor {} activate\n", n.vipd));
        }
        c.push_str(" exit-address-family\n");
    }
    c.push_str("!\n");
    c
}

/// Parses `show bgp ipv4|ipv6 unicast PREFIX json`: the best path's global next hop, AS path
/// segments and origin. `{}` (no such prefix) or anything unparsable gives `None`.
pub fn parse_route(json: &str) -> Option<RouteInfo> {
    let v: Value = serde_json::from_str(json).ok()?;
    let paths = v.get("paths")?.as_array()?;
    let best = paths
        .iter()
        .find(|p| p["bestpath"]["overall"].as_bool() == Some(true))
        .or_else(|| paths.first())?;
    let next_hop = global_address(
        best["nexthops"]
            .as_array()?
            .iter()
            .filter_map(|n| n["ip"].as_str()),
    )?;
    let as_path = best["aspath"]["segments"]
        .as_array()?
        .iter()
        .filter_map(|segment| segment["list"].as_array())
        .flatten()
        .filter_map(|asn| asn.as_u64().and_then(|a| u32::try_from(a).ok()))
        .collect();
    Some(RouteInfo {
        next_hop,
        as_path,
        origin: best["origin"].as_str()?.to_uppercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from FRR 8.4.4 `show bgp ipv6 unicast fd00:98::10/128 json`.
    const SHOW_BGP_V6: &str = r#"{
      "prefix":"fd00:98::10/128",
      "paths":[{
        "aspath":{"string":"65000","segments":[{"type":"as-sequence","list":[65000]}],"length":1},
        "origin":"IGP","valid":true,
        "bestpath":{"overall":true,"selectionReason":"First path received"},
        "nexthops":[
          {"ip":"fd00:99::1","afi":"ipv6","scope":"global","metric":0,"accessible":true},
          {"ip":"fe80::4437:ddff:fe80:a858","afi":"ipv6","scope":"link-local","accessible":true,"used":true}
        ],
        "peer":{"peerId":"fd00:99::1","routerId":"10.99.0.1","type":"external"}
      }]
    }"#;

    #[test]
    fn frr_route_parser_reads_global_next_hop_as_path_and_origin() {
        assert_eq!(
            parse_route(SHOW_BGP_V6),
            Some(RouteInfo {
                next_hop: "fd00:99::1".parse().unwrap(),
                as_path: vec![65000],
                origin: "IGP".to_string(),
            })
        );
    }

    #[test]
    fn frr_route_parser_returns_none_for_an_unknown_prefix() {
        assert_eq!(parse_route("{\n}\n"), None);
        assert_eq!(parse_route(""), None);
    }
}

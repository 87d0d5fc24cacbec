//! GoBGP 3 as the router: `gobgpd -f CONFIG` with its gRPC API on 127.0.0.1:50051 inside the tor
//! namespace (each test has its own namespace, so the port never clashes), queried with
//! `gobgp -p 50051 ... -j`. Impure.

use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::daemon::Daemon;
use super::netns::Topology;
use super::router::{Family, RouteInfo, Router, RouterConfig, ROUTER_AS, ROUTER_ID, VIPD_AS};
use super::{global_address, ns_stdout, ns_succeeds, path_str, tool};

const API_PORT: &str = "50051";

pub struct GoBgp {
    // Field order is drop order: the daemon stops before its directory goes away.
    daemon: Daemon,
    cfg: RouterConfig,
    ns: String,
    config: String,
    /// Kept for the daemon's life: its config, sockets and log live there.
    _dir: TempDir,
}

impl GoBgp {
    fn gobgp(&self, args: &[&str]) -> String {
        let gobgp = tool("gobgp");
        let mut argv = vec![gobgp.as_str(), "-p", API_PORT];
        argv.extend_from_slice(args);
        ns_stdout(&self.ns, &argv)
    }
}

impl Router for GoBgp {
    const NAME: &'static str = "gobgp";
    const NEEDS: &'static [(&'static str, &'static str)] = &[
        ("gobgpd", "apt-get install gobgpd"),
        ("gobgp", "apt-get install gobgpd"),
    ];

    fn new(topo: &Topology, cfg: RouterConfig) -> GoBgp {
        let dir = tempfile::tempdir().expect("temp dir for gobgpd");
        let config = gobgpd_config(&cfg);
        let conf = dir.path().join("gobgpd.toml");
        std::fs::write(&conf, &config).expect("write gobgpd.toml");
        let argv = vec![
            tool("gobgpd"),
            "-f".to_string(),
            path_str(&conf),
            "-p".to_string(), // plain log lines instead of JSON
            "--api-hosts".to_string(),
            format!("127.0.0.1:{API_PORT}"),
            "--pprof-disable".to_string(),
        ];
        let daemon = Daemon::new("gobgpd", &topo.tor, argv, dir.path().join("gobgpd.log"));
        GoBgp {
            daemon,
            cfg,
            ns: topo.tor.clone(),
            config,
            _dir: dir,
        }
    }

    fn start(&mut self) {
        self.daemon.start();
        let (ns, gobgp) = (self.ns.clone(), tool("gobgp"));
        let context = format!("---- gobgpd.toml ----\n{}", self.config);
        self.daemon.wait_ready(
            Duration::from_secs(10),
            "the gRPC API answers `gobgp global`",
            || ns_succeeds(&ns, &[gobgp.as_str(), "-p", API_PORT, "global"]),
            &context,
        );
    }

    fn stop(&mut self) {
        self.daemon.stop();
    }

    fn kill(&mut self) {
        // Nothing left behind: its API and BGP listeners close with the process.
        self.daemon.kill();
    }

    fn session_established(&self) -> bool {
        // [{"state": {"neighbor_address": "10.99.0.1", "session_state": 6, ...}, ...}, ...]
        let neighbors: Value =
            serde_json::from_str(&self.gobgp(&["neighbor", "-j"])).unwrap_or(Value::Null);
        let Some(list) = neighbors.as_array() else {
            return false;
        };
        self.cfg.neighbors.iter().all(|n| {
            let address = n.vipd.to_string();
            list.iter().any(|nb| {
                nb["state"]["neighbor_address"].as_str() == Some(address.as_str())
                    && established(&nb["state"]["session_state"])
            })
        })
    }

    fn route(&self, prefix: &str) -> Option<RouteInfo> {
        let family = Family::of(prefix).word();
        parse_route(
            &self.gobgp(&["global", "rib", "-a", family, prefix, "-j"]),
            prefix,
        )
    }

    fn route_count(&self, family: Family) -> usize {
        parse_count(&self.gobgp(&["global", "rib", "summary", "-a", family.word()]))
    }

    fn log_tail(&self) -> String {
        self.daemon.log_tail(40)
    }
}

/// GoBGP's API enum (6 = ESTABLISHED); older clients print the name.
fn established(state: &Value) -> bool {
    state.as_u64() == Some(6)
        || state
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("established"))
}

fn gobgpd_config(cfg: &RouterConfig) -> String {
    let mut c = format!(
        "[global.config]\n  as = {ROUTER_AS}\n  router-id = \"{ROUTER_ID}\"\n  port = {}\n",
        cfg.port
    );
    for n in &cfg.neighbors {
        c.push_str(&format!(
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {VIPD_AS}\n",
            n.vipd
        ));
        if let Some(password) = &cfg.password {
            c.push_str(&format!("    auth-password = \"{password}\"\n"));
        }
        c.push_str(&format!(
            "  [neighbors.timers.config]\n    hold-time = {}\n    keepalive-interval = {}\n    connect-retry = 1\n",
            cfg.hold_time,
            cfg.keepalive()
        ));
        c.push_str("  [neighbors.transport.config]\n");
        if cfg.passive {
            c.push_str("    passive-mode = true\n");
        }
        if cfg.multihop {
            c.push_str(&format!("    local-address = \"{}\"\n", n.local));
            c.push_str(
                "  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 2\n",
            );
        }
        c.push_str(&format!(
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{}-unicast\"\n",
            n.family().word()
        ));
    }
    c
}

/// Parses `gobgp global rib -a FAMILY PREFIX -j`:
/// `{"198.18.0.10/32": [{"best": true, "attrs": [{"type": 1, "value": 0}, {"type": 2,
/// "as_paths": [{"segment_type": 2, "asns": [65000]}]}, {"type": 3, "nexthop": "10.99.0.1"}]}]}`.
/// IPv6 next hops are in the MP_REACH attribute (type 14). `{}` gives `None`.
pub fn parse_route(json: &str, prefix: &str) -> Option<RouteInfo> {
    let v: Value = serde_json::from_str(json).ok()?;
    let paths = v.get(prefix)?.as_array()?;
    let best = paths
        .iter()
        .find(|p| p["best"].as_bool() == Some(true))
        .or_else(|| paths.first())?;
    let attrs = best["attrs"].as_array()?;
    let attr = |code: u64| attrs.iter().find(|a| a["type"].as_u64() == Some(code));
    let origin = match attr(1)?["value"].as_u64()? {
        0 => "IGP",
        1 => "EGP",
        _ => "INCOMPLETE",
    };
    let as_path = attr(2)?["as_paths"]
        .as_array()?
        .iter()
        .filter_map(|segment| segment["asns"].as_array())
        .flatten()
        .filter_map(|asn| asn.as_u64().and_then(|a| u32::try_from(a).ok()))
        .collect();
    let next_hop_attr = attr(3).or_else(|| attr(14))?;
    // "nexthop" is one address; some versions add "linklocal_nexthop" or list several.
    let next_hop = match &next_hop_attr["nexthop"] {
        Value::String(s) => global_address([s.as_str()]),
        Value::Array(list) => global_address(list.iter().filter_map(Value::as_str)),
        _ => None,
    }?;
    Some(RouteInfo {
        next_hop,
        as_path,
        origin: origin.to_string(),
    })
}

/// Parses `gobgp global rib summary`: "Destination: 2, Path: 2".
pub fn parse_count(out: &str) -> usize {
    out.split([',', '\n'])
        .find_map(|part| part.trim().strip_prefix("Destination:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from gobgpd 3.10 in a namespace, vipd announcing over an IPv6 session.
    const RIB_V6: &str = r#"{"fd00:98::10/128":[{"nlri":{"prefix":"fd00:98::10/128"},"age":1795920723,"best":true,"attrs":[{"type":1,"value":0},{"type":2,"as_paths":[{"segment_type":2,"num":1,"asns":[65000]}]},{"type":14,"nexthop":"fd00:99::1","afi":2,"safi":1,"value":[{"prefix":"fd00:98::10/128"}]}],"stale":false,"source-id":"10.99.0.1","neighbor-ip":"fd00:99::1"}]}"#;

    #[test]
    fn gobgp_route_parser_reads_mp_reach_next_hop_as_path_and_origin() {
        assert_eq!(
            parse_route(RIB_V6, "fd00:98::10/128"),
            Some(RouteInfo {
                next_hop: "fd00:99::1".parse().unwrap(),
                as_path: vec![65000],
                origin: "IGP".to_string(),
            })
        );
        assert_eq!(parse_route("{}", "fd00:98::10/128"), None);
    }

    #[test]
    fn gobgp_count_parser_reads_destinations() {
        let out = "Table afi:AFI_IP safi:SAFI_UNICAST\nDestination: 2, Path: 3\n";
        assert_eq!(parse_count(out), 2);
        assert_eq!(parse_count(""), 0);
    }
}

//! `/metrics` as a real Prometheus (Debian's `prometheus`) sees it, and the alerting rules in
//! `examples/prometheus/` as `promtool` checks and unit-tests them. No root needed: vipd runs
//! with its static VIPs and an unreachable peer, which is all `/metrics` needs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vipd_testbed::{skip_unless_empty, tool, which};

fn needs(bins: &[&str]) -> bool {
    let missing = bins
        .iter()
        .filter(|b| which(b).is_none())
        .map(|b| format!("{b} (apt-get install prometheus)"))
        .collect();
    skip_unless_empty(missing)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET path` on 127.0.0.1:`port`: the body, or `None` while nothing answers.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
}

/// Kills the child when dropped (a failed assertion must not leave daemons behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first sample's value of an instant query, if any.
fn query(port: u16, promql: &str) -> Option<(serde_json::Value, String)> {
    let body = get(port, &format!("/api/v1/query?query={promql}"))?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let first = v["data"]["result"].get(0)?.clone();
    let value = first["value"][1].as_str()?.to_owned();
    Some((first["metric"].clone(), value))
}

#[test]
fn prometheus_scrapes_every_vipd_series_with_kube_vips_names() {
    if !needs(&["prometheus"]) {
        return;
    }
    let vipd_port = free_port();
    let prom_port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    // Both logs are kept so a failed scrape says why.
    let vipd_log = tempfile::NamedTempFile::new_in(dir.path()).expect("vipd log");
    let prom_log = tempfile::NamedTempFile::new_in(dir.path()).expect("prometheus log");
    let vipd = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .arg("manager")
        .env_clear()
        .envs([
            ("bgp_enable", "true"),
            ("bgp_routerid", "192.0.2.1"),
            ("bgp_peers", "127.0.0.1:65530::false"),
            ("vip_address", "198.51.100.1"),
            ("prometheus_server", &format!("127.0.0.1:{vipd_port}")),
        ])
        .stderr(Stdio::from(vipd_log.reopen().expect("vipd log")))
        .spawn()
        .expect("vipd starts");
    let _vipd = Killed(vipd);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            // A 2 s timeout: one slow answer on a loaded machine must not read as "down".
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: vipd\n    static_configs:\n      - targets: ['127.0.0.1:{vipd_port}']\n",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/prometheus/vipd-alerts.yaml")
                .display()
        ),
    )
    .expect("prometheus.yml");
    let prometheus = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(prom_log.reopen().expect("prometheus log")))
        .spawn()
        .expect("prometheus starts");
    let _prometheus = Killed(prometheus);

    // Scraped and parsed: `up` is 1 only when the whole exposition was understood.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut up = None;
    while Instant::now() < deadline {
        up = query(prom_port, "up{job=\"vipd\"}".replace('"', "%22").as_str());
        if up.as_ref().is_some_and(|(_, v)| v == "1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let up = up.map(|(_, v)| v);
    assert_eq!(
        up.as_deref(),
        Some("1"),
        "Prometheus scraped vipd's /metrics\n\
         --- targets (lastError) ---\n{}\n--- /metrics ---\n{}\n--- vipd ---\n{}\n--- prometheus ---\n{}",
        get(prom_port, "/api/v1/targets").unwrap_or_default(),
        get(vipd_port, "/metrics").unwrap_or_else(|| "(no answer)".into()),
        std::fs::read_to_string(vipd_log.path()).unwrap_or_default(),
        std::fs::read_to_string(prom_log.path()).unwrap_or_default(),
    );
    for (series, label) in [
        ("kube_vip_build_info", Some(("build", "vipd"))),
        ("process_resident_memory_bytes", None),
        ("process_cpu_seconds_total", None),
        (
            "kube_vip_manager_bgp_session_info",
            Some(("peer", "127.0.0.1:179")),
        ),
        ("vipd_bgp_session_up", Some(("peer", "127.0.0.1:179"))),
        ("vipd_vips_withheld", Some(("reason", "NoSession"))),
        ("vipd_reconcile_duration_seconds_count", None),
    ] {
        let found = query(prom_port, series);
        let (metric, _) = found.unwrap_or_else(|| panic!("Prometheus has no {series}"));
        if let Some((k, v)) = label {
            assert_eq!(metric[k], v, "{series}: {metric}");
        }
    }
    // The rules load in the real server too.
    let rules = get(prom_port, "/api/v1/rules").expect("rules");
    assert!(rules.contains("VipdBgpPeerDown"), "{rules}");
}

#[test]
fn the_alerting_rules_pass_promtools_check_and_unit_tests() {
    if !needs(&["promtool"]) {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus");
    for args in [
        ["check", "rules", "vipd-alerts.yaml"],
        ["test", "rules", "vipd-alerts.test.yaml"],
    ] {
        let out = Command::new(tool("promtool"))
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

//! The `vipd` binary as an operator meets it: bad settings, `--help`, and secrets.

use std::process::{Command, Output};

fn vipd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vipd"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("vipd runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const BASE: &[(&str, &str)] = &[
    ("bgp_enable", "true"),
    ("bgp_routerid", "192.0.2.1"),
    ("bgp_peers", "192.0.2.2:65530"),
    // Tests run side by side: each agent's endpoint on a port of its own.
    ("prometheus_server", "127.0.0.1:0"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<_> = BASE.to_vec();
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k, v));
    }
    env
}

/// Runs `vipd <args>` with `env` (on [`BASE`]) for `ms` milliseconds, stops it with SIGTERM and
/// returns whether it exited cleanly and its log.
fn run_briefly(args: &[&str], env: &[(&'static str, &'static str)], ms: u64) -> (bool, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .env_clear()
        .envs(with(env))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vipd starts");
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("vipd exits");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_as_exits_2_naming_variable_flag_and_value() {
    let o = vipd(&["manager"], &with(&[("bgp_as", "65k")]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).trim(),
        "vipd: bad setting: bgp_as (--localAS): \"65k\" is not an AS number (1..4294967295)"
    );
}

#[test]
fn a_flag_wins_over_its_environment_variable() {
    // The env value is fine; the flag's is not, so the flag must be the one read.
    let o = vipd(
        &["manager", "--localAS", "nope"],
        &with(&[("bgp_as", "65001")]),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("\"nope\""), "{}", stderr(&o));
}

#[test]
fn a_bad_peer_entry_names_its_position_and_field_but_not_its_password() {
    let o = vipd(
        &["manager"],
        &with(&[(
            "bgp_peers",
            "192.0.2.2:65530,192.0.2.3:65530:hunter2:sometimes",
        )]),
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("bgp_peers") && e.contains("entry 2") && e.contains("multihop"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn no_mode_enabled_is_explained() {
    let o = vipd(&["manager"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bgp_enable"), "{}", stderr(&o));
}

#[test]
fn help_shows_kube_vip_names_but_never_password_values() {
    let o = vipd(
        &["manager", "--help"],
        &[
            ("bgp_peerpass", "hunter2"),
            ("bgp_peers", "192.0.2.2:1:hunter3"),
        ],
    );
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for name in [
        "--localAS",
        "bgp_as",
        "bgp_peers",
        "--bgpRouterID",
        "vip_address",
        "bgp_hold_time",
    ] {
        assert!(help.contains(name), "--help lacks {name}");
    }
    assert!(
        !help.contains("hunter2") && !help.contains("hunter3"),
        "{help}"
    );
}

#[test]
fn debug_logs_never_show_a_password() {
    // A peer nobody answers: vipd logs at trace level while it tries, then is stopped.
    let (clean, log) = run_briefly(
        &["manager"],
        &[
            ("bgp_peers", "127.0.0.1:65530:hunter2:false:1"),
            ("vip_address", "198.51.100.1"),
            ("vip_loglevel", "trace"),
        ],
        1500,
    );
    assert!(log.contains("starting BGP session"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
    assert!(clean, "SIGTERM is a clean exit: {log}");
}

#[test]
fn demo_runs_end_to_end_and_exits_0() {
    let o = vipd(&["demo"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    // What a user reads in the walk-through: each step, seen from the router and the API.
    for step in [
        "BGP session established",
        "router learned 198.51.100.10/32",
        "status.loadBalancer.ingress = [198.51.100.10]",
        "router learned 198.51.100.11/32",
        "status.loadBalancer.ingress = [198.51.100.11]",
        "Warning event on default/broken: InvalidLoadBalancerIP",
        "router withdrew 198.51.100.10/32",
        "status.loadBalancer.ingress of default/web kept: [198.51.100.10]",
        "Cease/Administrative Shutdown (6/2): \"vipd shutting down\"; it holds 0 routes",
    ] {
        assert!(out.contains(step), "missing {step:?} in:\n{out}");
    }
}

/// kube-vip's docs say `vip_loglevel=-4` for debugging (slog's scale): vipd starts and logs at
/// debug, from the variable and from `--log -4` alike; 8 leaves only errors.
#[test]
fn kube_vips_slog_levels_start_the_agent_at_the_level_they_mean() {
    let run = |args: &[&str], level: &'static str| {
        let (clean, log) = run_briefly(
            args,
            &[
                ("bgp_peers", "127.0.0.1:65530::false"),
                ("vip_address", "198.51.100.1"),
                ("vip_loglevel", level),
            ],
            1000,
        );
        assert!(clean, "{args:?} {level}: {log}");
        log
    };
    let debug = run(&["manager"], "-4");
    assert!(debug.contains(" DEBUG "), "{debug}");
    let flag = run(&["manager", "--log", "-4"], "8");
    assert!(flag.contains(" DEBUG "), "the flag wins: {flag}");
    let errors_only = run(&["manager"], "8");
    assert!(!errors_only.contains(" INFO "), "{errors_only}");
}

/// kube-vip's `health_check_port`: `/healthz` answers there (a livenessProbe written for
/// kube-vip keeps passing); a value that is no port exits 2 naming it.
#[test]
fn health_check_port_serves_healthz_as_kube_vips_does() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let port: &'static str = Box::leak(port.into_boxed_str());
    let mut child = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .arg("manager")
        .env_clear()
        .envs(with(&[
            ("bgp_peers", "127.0.0.1:65530::false"),
            ("vip_address", "198.51.100.1"),
            ("prometheus_server", ""),
            ("health_check_port", port),
        ]))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("vipd starts");
    let get = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().ok()?)).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let mut answer = None;
    for _ in 0..50 {
        answer = get();
        if answer.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let answer = answer.expect("/healthz answers on health_check_port");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Not a port, or not above 1024 (kube-vip's rule): exit 2 naming it.
    for bad in ["http", "80", "1024"] {
        let o = vipd(&["manager"], &with(&[("health_check_port", bad)]));
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("health_check_port"), "{}", stderr(&o));
    }
}

/// kube-vip's flags and variables vipd does not implement are accepted and named in one
/// warning at start, never refused (a crash loop) and never silently dropped; those at
/// kube-vip's defaults (what its manifest writes anyway) say nothing.
#[test]
fn kube_vip_settings_vipd_lacks_are_warned_about_once_not_refused() {
    let (clean, log) = run_briefly(
        &[
            "manager",
            "--leaderElection",
            "--port",
            "6443",
            "--vip",
            "10.0.0.5",
            "-n",
            "kube-system",
        ],
        &[
            ("bgp_peers", "127.0.0.1:65530::false:179::true;300;;3"),
            ("vip_address", "198.51.100.1"),
            ("vip_wireguard", "true"),
            ("egress_podcidr", "10.244.0.0/16"),
            ("dns_mode", "first"),
            ("enable_node_labeling", "false"),
        ],
        1000,
    );
    assert!(clean, "{log}");
    let warning: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("kube-vip settings that vipd does not implement are ignored"))
        .collect();
    assert_eq!(warning.len(), 1, "{log}");
    for named in [
        "vip_wireguard",
        "egress_podcidr",
        "--vip",
        "--leaderElection",
    ] {
        assert!(warning[0].contains(named), "{named} in {}", warning[0]);
    }
    for quiet in [
        "--port",
        "--namespace",
        "dns_mode",
        "enable_node_labeling",
        "10.0.0.5",
    ] {
        assert!(!warning[0].contains(quiet), "{quiet} in {}", warning[0]);
    }

    let o = vipd(
        &[
            "manifest",
            "daemonset",
            "--services",
            "--bgp",
            "--annotations",
            "metal.equinix.com",
            "--controlplane",
            "--address",
            "10.0.0.5",
            "--vip",
            "10.0.0.6",
            "--onlyAllowTrafficServicePorts",
            "--enableNodeLabeling",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let yaml = String::from_utf8_lossy(&o.stdout);
    // The control-plane VIP is vipd's now (by BGP); kube-vip's old --vip is still set aside.
    assert!(
        yaml.contains("cp_enable") && yaml.contains("10.0.0.5") && !yaml.contains("10.0.0.6"),
        "{yaml}"
    );
    assert!(
        yaml.contains("enable_node_labeling"),
        "vipd labels nodes too: {yaml}"
    );
    for named in ["--vip", "--onlyAllowTrafficServicePorts"] {
        assert!(stderr(&o).contains(named), "{named}: {}", stderr(&o));
    }
}

/// `vipd manager` with `env` (on [`BASE`]), waited for at most `secs`: its output, or `None`
/// if it was still running (then killed).
fn exits_within(env: &[(&'static str, &str)], secs: u64) -> Option<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vipd"));
    cmd.arg("manager").env_clear().envs(BASE.iter().copied());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vipd starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// D10: a VIP file that cannot be used is a bad setting (exit 2) found before any session or
/// HTTP endpoint starts, with its cause said once; a FIFO or a device does not hang or flood
/// the start, and a 10 MB line is not echoed.
#[test]
fn a_vip_file_that_cannot_be_used_exits_2_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let long_line = dir.path().join("long");
    std::fs::write(&long_line, "x".repeat(10_000_000)).unwrap();
    let cases = [
        (missing.display().to_string(), "(os error 2)"),
        (fifo.display().to_string(), "is not a regular file (a FIFO)"),
        (
            "/dev/zero".to_owned(),
            "is not a regular file (a character device)",
        ),
        (long_line.display().to_string(), "is not an IP address"),
    ];
    for (path, says) in cases {
        let o = exits_within(
            &[
                ("vip_file", path.as_str()),
                ("prometheus_server", "127.0.0.1:0"),
            ],
            10,
        )
        .unwrap_or_else(|| panic!("{path}: still running after 10 s"));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{path}: {err}");
        assert!(err.starts_with("vipd: bad setting: vip_file "), "{err}");
        assert_eq!(err.matches(says).count(), 1, "{path}: {err}");
        assert!(err.len() < 1024, "{path}: {} bytes of error", err.len());
        for started in ["starting BGP session", "serving /healthz"] {
            assert!(!err.contains(started), "{path}: {err}");
        }
    }
}

/// D9: a VIP file rewritten in place (truncated, then written in two parts) while SIGHUPs
/// arrive mid-write is never read half-written: every re-read finds the same 50 VIPs.
#[test]
fn a_vip_file_rewritten_in_place_under_sighup_is_never_read_torn() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vips");
    let text: String = (1..=50).map(|i| format!("198.51.100.{i}\n")).collect();
    std::fs::write(&file, &text).unwrap();
    let path = file.display().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .arg("manager")
        .env_clear()
        .envs(BASE.iter().copied())
        .env("vip_file", &path)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vipd starts");
    let pid = child.id().to_string();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (head, tail) = text.split_at(text.len() / 2);
    for _ in 0..20 {
        let mut f = std::fs::File::create(&file).unwrap(); // truncates in place
        f.write_all(head.as_bytes()).unwrap();
        f.flush().unwrap();
        let _ = Command::new("kill").args(["-HUP", &pid]).status();
        std::thread::sleep(std::time::Duration::from_millis(15));
        f.write_all(tail.as_bytes()).unwrap();
        drop(f);
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let rereads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SIGHUP: VIP file re-read"))
        .collect();
    assert!(rereads.len() >= 10, "{log}");
    for l in &rereads {
        assert!(
            l.contains("added=0") && l.contains("removed=0") && l.contains("total=50"),
            "a torn read: {l}"
        );
    }
}

/// D11 and D12: settings that could never work are refused at start (exit 2), each message
/// naming the setting, the value and what is wrong, instead of being retried forever.
#[test]
fn settings_that_can_never_work_exit_2_with_a_message_that_says_why() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("bgp_peers", "0.0.0.0:65000")],
            "0.0.0.0 is not a unicast address",
        ),
        (
            &[("bgp_peers", "224.0.0.5:65000")],
            "224.0.0.5 is not a unicast address",
        ),
        (
            &[("bgp_peers", "fd00::2:65001:secret")],
            "fd00::2 is an IPv6 address: write it in brackets, [fd00::2]:AS",
        ),
        (
            &[("mpbgp_nexthop", "fixed")],
            "mpbgp_nexthop: \"fixed\" needs the next hop to fix",
        ),
        (
            &[("bgp_attach_ip_to_interface", "maybe")],
            "bgp_attach_ip_to_interface (--bgpAttachIPToInterface): \"maybe\" is not a boolean",
        ),
        (
            &[("vipd_log_format", "yaml")],
            "vipd_log_format (--log-format): \"yaml\" is not a log format (text or json)",
        ),
        (
            &[("bgp_sourceif", "nonexistent0")],
            "bgp_sourceif (--sourceIF): \"nonexistent0\" is not an interface of this host",
        ),
        (
            &[("bgp_sourceip", "192.0.2.77")],
            "bgp_sourceip (--sourceIP): \"192.0.2.77\" is not an address of this host",
        ),
        (
            &[
                ("bgp_routerid", ""),
                ("bgp_routerinterface", "nonexistent0"),
            ],
            "bgp_routerinterface: \"nonexistent0\" is not an interface of this host",
        ),
        (
            &[("prometheus_server", "192.0.2.77:2112")],
            "prometheus_server (--prometheusHTTPServer): \"192.0.2.77:2112\" cannot be listened on",
        ),
    ];
    for (env, says) in cases {
        let mut all: Vec<(&'static str, &str)> = vec![("prometheus_server", "127.0.0.1:0")];
        for (k, v) in env.iter() {
            let k: &'static str = Box::leak(k.to_string().into_boxed_str());
            all.retain(|(key, _)| *key != k);
            all.push((k, v));
        }
        let o = exits_within(&all, 10).unwrap_or_else(|| panic!("{env:?}: still running"));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(says), "{env:?}: {err}");
        assert!(
            !err.contains("secret"),
            "the password is never shown: {err}"
        );
        assert!(!err.contains("starting BGP session"), "{env:?}: {err}");
    }
}

//! [I/O] vipd's test bed, compiled once for every test binary: network namespaces
//! ([`netns`], [`lan`]), one services-mode bed against BIRD ([`bed`]), the real daemons vipd is tested against — BIRD 2, FRR, GoBGP
//! ([`router`], [`bird`], [`frr`], [`gobgp`]), dnsmasq ([`dnsmasq`]), miniupnpd
//! ([`miniupnpd`]) — the Equinix Metal stand-in ([`metal`]), a scripted BGP peer on loopback
//! ([`scripted_peer`]), the in-process API server with Nodes and Services ([`cluster`]), the
//! real `vipd` binary ([`vipd`]) and the fault scenarios run against every router
//! ([`scenarios`]). Creates namespaces and runs daemons, so most of it needs root and the
//! daemon packages: tests skip loudly without them ([`skip_unless!`]), and fail instead with
//! `VIPD_NO_SKIP=1` (CI).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Returns from the calling test, after printing a loud `SKIPPED` line, unless we are root and
/// every listed binary is installed. Each argument after `root` is a `&[(binary, install hint)]`:
/// `skip_unless!(root, R::NEEDS, VIPD_NEEDS);`
#[macro_export]
macro_rules! skip_unless {
    (root $(, $needs:expr)* $(,)?) => {
        let needs: Vec<(&str, &str)> = [$($needs),*].concat();
        if !$crate::prerequisites_met(&needs) {
            return;
        }
    };
}

pub mod bed;
pub mod bird;
pub mod chaos;
pub mod claims;
pub mod cluster;
pub mod daemon;
pub mod dnsmasq;
pub mod frr;
pub mod gobgp;
pub mod host_bird;
pub mod lan;
pub mod livez;
pub mod metal;
pub mod miniupnpd;
pub mod netns;
pub mod rbac;
pub mod router;
pub mod scenarios;
pub mod scripted_peer;
pub mod vipd;

/// What every test needs besides its router: iproute2 for namespaces, `nstat` for MD5 counters
/// and `ss` for listening sockets.
pub const VIPD_NEEDS: &[(&str, &str)] = &[
    ("ip", "apt-get install iproute2"),
    ("nstat", "apt-get install iproute2"),
    ("ss", "apt-get install iproute2"),
];

/// Polls `cond` every 50 ms until it holds and returns how long that took. Panics with `what`, the
/// elapsed time and `explain()` (log tails) when `timeout` passes first.
pub fn wait_until_or_explain(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) -> Duration {
    let start = Instant::now();
    loop {
        // Checked before the deadline test: a condition that turns true during the last poll counts.
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {:.1?} waiting until {what}\n{}",
                start.elapsed(),
                explain()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_until_or_explain`] for callers that have no logs to show.
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) -> Duration {
    wait_until_or_explain(timeout, what, cond, String::new)
}

/// Polls `cond` for the whole `duration` and panics as soon as it is false: for things that must
/// *not* happen, like a session coming up with the wrong MD5 password.
pub fn holds_for(
    duration: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let start = Instant::now();
    while start.elapsed() < duration {
        if !cond() {
            panic!(
                "expected that {what} for {duration:?}, but it stopped after {:.1?}\n{}",
                start.elapsed(),
                explain()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when the test can run; otherwise prints why not. `VIPD_NO_SKIP=1` (for CI, which must run
/// everything) turns a skip into a failure.
pub fn prerequisites_met(needs: &[(&str, &str)]) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (CAP_NET_ADMIN for network namespaces)".to_string());
    }
    for (bin, hint) in needs {
        if which(bin).is_none() {
            missing.push(format!("{bin} ({hint})"));
        }
    }
    skip_unless_empty(missing)
}

/// True when nothing is `missing`; otherwise says what is, loudly (or fails under
/// `VIPD_NO_SKIP=1`).
pub fn skip_unless_empty(missing: Vec<String>) -> bool {
    if missing.is_empty() {
        return true;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    let line = format!("SKIPPED {test}: needs {}", missing.join(", needs "));
    if std::env::var_os("VIPD_NO_SKIP").is_some_and(|v| v == "1") {
        panic!("{line} (VIPD_NO_SKIP=1)");
    }
    // Written to the stderr handle, not with eprintln!: libtest captures the print macros of
    // passing tests, and a skip must never look like a silent pass.
    let _ = writeln!(std::io::stderr(), "\n*** {line} ***");
    false
}

/// Effective uid 0, read from /proc so no libc call is needed.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uid_line = status.lines().find(|l| l.starts_with("Uid:"))?;
            // "Uid:\treal\teffective\tsaved\tfs"
            uid_line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Finds an executable in PATH or the sbin / FRR directories that a non-login PATH may lack.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/lib/frr"]
                .into_iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Absolute path of a tool (so `ip netns exec` finds it whatever the PATH), or the bare name.
pub fn tool(name: &str) -> String {
    which(name).map_or_else(|| name.to_string(), |p| path_str(&p))
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs `ip netns exec NS args...` and returns its stdout whatever the exit status (birdc exits 1
/// for "Network not found", which is an answer, not an error). Empty if it could not run.
pub fn ns_stdout(ns: &str, args: &[&str]) -> String {
    Command::new(tool("ip"))
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Runs `ip netns exec NS args...` quietly; true if it exited 0.
pub fn ns_succeeds(ns: &str, args: &[&str]) -> bool {
    Command::new(tool("ip"))
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a setup command that must work; panics with the command and its stderr otherwise.
pub fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(tool(program))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The first address in `candidates` that parses and is not IPv6 link-local (fe80::/10): the
/// global next hop a peer shows next to the link-local one for on-link IPv6 sessions.
pub fn global_address<'a>(candidates: impl IntoIterator<Item = &'a str>) -> Option<IpAddr> {
    candidates
        .into_iter()
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|a| match a {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80,
        })
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A process's resident set (KiB) and open descriptors, from /proc; `None` once it is gone.
/// The chaos runs sample it to show that an agent's memory and descriptors stay flat.
pub fn proc_usage(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

/// The `vipd` binary under test: `VIPD_BIN` if set (e.g. the release build), else the one
/// cargo built beside the running test binary (`target/<profile>/vipd`, the test being in
/// `target/<profile>/deps/`).
pub fn vipd_bin() -> String {
    if let Ok(bin) = std::env::var("VIPD_BIN") {
        return bin;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary sits in target/<profile>/deps");
    let bin = profile_dir.join("vipd");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with cargo, which builds it (or set VIPD_BIN)",
        bin.display()
    );
    bin.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_address_skips_the_ipv6_link_local_next_hop() {
        assert_eq!(
            global_address(["fe80::4437:ddff:fe80:a858", "fd00:99::1"]),
            Some("fd00:99::1".parse().unwrap())
        );
        assert_eq!(global_address(["garbage"]), None);
    }

    #[test]
    fn proc_usage_reads_this_process_and_nothing_for_a_missing_one() {
        let (rss, fds) = proc_usage(std::process::id()).expect("this process");
        assert!(rss > 0 && fds >= 3, "rss {rss} KiB, fds {fds}");
        assert_eq!(proc_usage(u32::MAX), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}

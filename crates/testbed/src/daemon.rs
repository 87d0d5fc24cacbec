//! A long-running process inside a network namespace, with its output in a log file. Impure.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{tail, tool};

/// `ip netns exec NS argv...`. `ip netns exec` exec()s the command, so the child's pid *is* the
/// daemon's pid, and as long as we have not reaped it that pid cannot belong to anyone else: the
/// only safe way to signal by pid. Stopped (TERM, then KILL after 5 s) on drop.
pub struct Daemon {
    label: String,
    ns: String,
    argv: Vec<String>,
    /// `Some`: start with a cleared environment (PATH kept) plus these variables.
    clean_env: Option<Vec<(String, String)>>,
    log: PathBuf,
    child: Option<Child>,
    exit: Option<ExitStatus>,
}

impl Daemon {
    pub fn new(label: &str, ns: &str, argv: Vec<String>, log: PathBuf) -> Daemon {
        Daemon {
            label: label.to_string(),
            ns: ns.to_string(),
            argv,
            clean_env: None,
            log,
            child: None,
            exit: None,
        }
    }

    /// Start with only PATH and these variables, so the developer's environment cannot leak
    /// settings (vipd reads kube-vip style env vars).
    pub fn with_clean_env(mut self, vars: Vec<(String, String)>) -> Daemon {
        self.clean_env = Some(vars);
        self
    }

    /// Adds (or, being applied last, overrides) one variable of the clean environment.
    pub fn add_env(&mut self, key: &str, value: &str) {
        self.clean_env
            .get_or_insert_with(Vec::new)
            .push((key.to_string(), value.to_string()));
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Spawns the process; output is appended to the log so a restart keeps the earlier run.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.label);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let _ = writeln!(
            log,
            "==== test harness: starting {} as `ip netns exec {} {}` ====",
            self.label,
            self.ns,
            self.argv.join(" ")
        );
        let stderr = log.try_clone().expect("duplicate the log file handle");
        let mut cmd = Command::new(tool("ip"));
        cmd.args(["netns", "exec", self.ns.as_str()])
            .args(&self.argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        if let Some(vars) = &self.clean_env {
            cmd.env_clear();
            if let Some(path) = std::env::var_os("PATH") {
                cmd.env("PATH", path);
            }
            for (key, value) in vars {
                cmd.env(key, value);
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.label));
        self.exit = None;
        self.child = Some(child);
    }

    /// Waits until `ready()` (e.g. the control socket answers). Panics with the log if the process
    /// exits first or `timeout` passes; `context` (e.g. the generated config) is appended.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut() -> bool,
        context: &str,
    ) {
        let start = Instant::now();
        loop {
            if ready() {
                return;
            }
            if !self.is_running() {
                panic!(
                    "{} exited ({:?}) before {what}\n---- {} ----\n{}\n{context}",
                    self.label,
                    self.exit,
                    self.log.display(),
                    self.log_tail(40)
                );
            }
            if start.elapsed() >= timeout {
                panic!(
                    "{} not ready after {:.1?}: {what}\n---- {} ----\n{}\n{context}",
                    self.label,
                    start.elapsed(),
                    self.log.display(),
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reaps the process if it has exited, remembering its status.
    fn poll_exit(&mut self) {
        let status = match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => None,
        };
        if let Some(status) = status {
            self.exit = Some(status);
            self.child = None;
        }
    }

    /// The process id while it runs (`ip netns exec` exec()s, so this is the daemon itself).
    pub fn pid(&mut self) -> Option<u32> {
        self.poll_exit();
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.poll_exit();
        self.child.is_some()
    }

    /// Sends `sig` (a name such as "TERM" or "HUP") if the process is still ours and unreaped.
    pub fn signal(&mut self, sig: &str) -> bool {
        self.poll_exit();
        let Some(child) = &self.child else {
            return false;
        };
        let pid = child.id().to_string();
        Command::new(tool("kill"))
            .args(["-s", sig, pid.as_str()])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits up to `timeout` for the process to exit and returns its status; `None` if it is
    /// still running (or was never started).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            self.poll_exit();
            if self.child.is_none() {
                return self.exit;
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash: no clean-up and no goodbye to peers, the kernel closes its sockets.
    /// Waits for the exit; panics if the process was not running (it died earlier: the log says
    /// why) or still runs 5 s after the signal.
    pub fn kill(&mut self) {
        assert!(
            self.signal("KILL"),
            "{} is not running, so it cannot be killed (exit {:?})\n---- {} ----\n{}",
            self.label,
            self.exit,
            self.log.display(),
            self.log_tail(40)
        );
        assert!(
            self.wait_exit(Duration::from_secs(5)).is_some(),
            "{} still runs 5 s after SIGKILL",
            self.label
        );
    }

    /// TERM, then KILL after 5 s; returns the exit status. A no-op when not running.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if !self.is_running() {
            return self.exit;
        }
        self.signal("TERM");
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                self.exit = child.wait().ok();
            }
        }
        self.exit
    }

    /// Everything the process wrote (stdout and stderr), lossily decoded.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

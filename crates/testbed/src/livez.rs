//! A stand-in for a control-plane node's kube-apiserver as the control-plane VIP's health check
//! sees it: `openssl s_server -WWW` in the node's namespace answering `GET /livez` with `200`
//! over TLS, with a certificate issued by a test CA ([`Pki`]) for 127.0.0.1 and ::1 — as
//! kubeadm's API server answers on every address of the node. Stopping it is "the local API
//! server died". Impure; needs Debian's `openssl`.

use crate::daemon::Daemon;
use crate::path_str;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a test using [`Livez`] needs.
pub const NEEDS: &[(&str, &str)] = &[("openssl", "openssl")];

/// A test CA and a server certificate it issued, in a temp dir.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A new CA (`cn`) and a certificate for `127.0.0.1` and `::1` it signed.
    pub fn new(cn: &str) -> Pki {
        Pki::for_addresses(cn, &[])
    }

    /// As [`Pki::new`], the certificate naming `more` addresses too (the control-plane VIP, as
    /// kubeadm's API server certificate does).
    pub fn for_addresses(cn: &str, more: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let subj = format!("/CN={cn}");
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", &subj,
        ]);
        openssl(d, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=kube-apiserver",
        ]);
        openssl(d, &csr);
        let mut san = String::from("subjectAltName=IP:127.0.0.1,IP:::1");
        for ip in more {
            san.push_str(&format!(",IP:{ip}"));
        }
        std::fs::write(d.join("san.ext"), san + "\n").expect("san.ext");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        Pki {
            ca: d.join("ca.crt"),
            cert: d.join("server.crt"),
            key: d.join("server.key"),
            _dir: dir,
        }
    }
}

/// `GET /livez` → `200` on `127.0.0.1:<port>` of a namespace, while running.
pub struct Livez {
    daemon: Daemon,
    ns: String,
    /// The port it accepts on (every address, or the loopback's).
    port: String,
    _dir: tempfile::TempDir,
}

impl Livez {
    /// Serves with `pki`'s certificate in namespace `ns` on its loopback. Not started.
    pub fn new(ns: &str, port: u16, pki: &Pki) -> Livez {
        Livez::listening(ns, &format!("127.0.0.1:{port}"), pki)
    }

    /// As [`Livez::new`], on every address of the namespace (the VIP's included): what a
    /// client reaching the API servers through the control-plane VIP talks to.
    pub fn on_every_address(ns: &str, port: u16, pki: &Pki) -> Livez {
        Livez::listening(ns, &port.to_string(), pki)
    }

    fn listening(ns: &str, accept: &str, pki: &Pki) -> Livez {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("livez"), "ok").expect("livez");
        // -WWW serves files of the working directory: /livez is the file `livez`.
        let script = format!(
            "cd '{}' && exec openssl s_server -quiet -WWW -accept {accept} -cert '{}' -key '{}'",
            path_str(dir.path()),
            path_str(&pki.cert),
            path_str(&pki.key),
        );
        let daemon = Daemon::new(
            &format!("livez in {ns}"),
            ns,
            vec!["sh".into(), "-c".into(), script],
            dir.path().join("s_server.log"),
        );
        let port = accept.rsplit(':').next().unwrap_or(accept).to_owned();
        Livez {
            daemon,
            ns: ns.to_owned(),
            port,
            _dir: dir,
        }
    }

    /// Starts it and waits until it listens: an agent started next must not find it refusing
    /// (a slow start on a loaded machine would read as an unhealthy API server).
    pub fn start(&mut self) {
        self.daemon.start();
        let (ns, port) = (self.ns.clone(), format!(":{}", self.port));
        self.daemon.wait_ready(
            std::time::Duration::from_secs(10),
            "openssl s_server listens",
            || {
                crate::ns_stdout(&ns, &["ss", "-Hltn"]).lines().any(|l| {
                    l.split_whitespace()
                        .nth(3)
                        .is_some_and(|a| a.ends_with(&port))
                })
            },
            "",
        );
    }

    /// The API server dies.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    pub fn log_tail(&self) -> String {
        self.daemon.log_tail(20)
    }
}

//! [I/O] The health check of this node's API server: `GET` on the configured URL, passed only
//! by `200 OK` within the timeout (kube-vip's rule), every period. TLS is verified against
//! `control_plane_health_check_ca_path` when given, against the system's roots for a URL the
//! operator wrote, and not at all for vipd's default loopback URL (the API server's certificate
//! rarely names 127.0.0.1, and asking a local process whether it is alive sends nothing secret).

use super::health::Check;
use crate::config::{ControlPlaneHealth, TlsCheck};
use std::time::Duration;

/// A health-check client, built once.
pub struct Probe {
    http: reqwest::Client,
    url: String,
}

/// Why the client could not be built (a CA file that cannot be read or holds no certificate).
#[derive(Debug, thiserror::Error)]
#[error("control_plane_health_check_ca_path {path}: {why}")]
pub struct ProbeError {
    pub path: String,
    pub why: String,
}

impl Probe {
    pub fn new(settings: &ControlPlaneHealth) -> Result<Probe, ProbeError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err means another thread installed one first: equally fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let builder = reqwest::Client::builder()
            .user_agent(concat!("vipd/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A redirect is not health: kube-apiserver's /livez answers itself.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        let builder = match &settings.tls {
            TlsCheck::SystemRoots => builder,
            TlsCheck::Skip => builder.tls_danger_accept_invalid_certs(true),
            TlsCheck::Ca(path) => {
                let fail = |why: String| ProbeError {
                    path: path.display().to_string(),
                    why,
                };
                let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| fail(format!("not PEM certificates: {e}")))?;
                if certs.is_empty() {
                    return Err(fail("holds no certificate".into()));
                }
                builder.tls_certs_only(certs)
            }
        };
        let http = builder.build().map_err(|e| ProbeError {
            path: String::new(),
            why: format!("the HTTP client cannot be built: {e}"),
        })?;
        Ok(Probe {
            http,
            url: settings.url.clone(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One check.
    pub async fn check(&self) -> Check {
        match self.http.get(&self.url).send().await {
            Ok(resp) if resp.status() == reqwest::StatusCode::OK => Check::Passed,
            Ok(resp) => Check::Failed(format!("answered {}", resp.status())),
            Err(e) => Check::Failed(describe(&e)),
        }
    }
}

/// reqwest's error with its causes, which carry the useful part ("connection refused",
/// "invalid peer certificate: UnknownIssuer").
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer within the timeout".into();
    }
    vipd_providers::error_chain(e)
}

/// Sleeps between checks; a check that takes long shortens the next wait, so the period holds.
pub async fn pace(started: tokio::time::Instant, period: Duration) {
    tokio::time::sleep_until(started + period).await;
}

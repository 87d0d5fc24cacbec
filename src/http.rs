//! [I/O] The agent's HTTP endpoint (`prometheus_server`, default `:2112`): `/healthz` (the
//! process serves) and `/readyz` (peers known and, in services mode, the first complete list of
//! Services seen; otherwise 503 with the reason). The manifest's probes point here.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tracing::{info, warn};

/// What keeps the agent from being ready, by component. Empty = ready.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Mutex<BTreeMap<&'static str, String>>>);

impl Readiness {
    pub fn not_ready(&self, component: &'static str, why: impl Into<String>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(component, why.into());
        }
    }

    pub fn ready(&self, component: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(component);
        }
    }

    /// `None` when ready, else one line per reason.
    pub fn reasons(&self) -> Option<String> {
        let m = self.0.lock().ok()?;
        (!m.is_empty()).then(|| m.iter().map(|(c, why)| format!("{c}: {why}\n")).collect())
    }
}

/// `:2112` / `0.0.0.0:2112` / `[::1]:2112` as a socket address (empty host = all IPv4).
pub fn listen_address(spec: &str) -> Option<SocketAddr> {
    let (host, port) = spec.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.is_empty() { "0.0.0.0" } else { host };
    Some(SocketAddr::new(ip.parse().ok()?, port))
}

/// Serves until the task is dropped. A port that cannot be bound is logged, not fatal: the agent
/// announcing matters more than its probes.
pub async fn serve(addr: SocketAddr, readiness: Readiness) {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, "cannot serve /healthz and /readyz: {e}");
            return;
        }
    };
    info!(%addr, "serving /healthz and /readyz");
    while let Ok((stream, _)) = listener.accept().await {
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let readiness = readiness.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(req.uri().path(), &readiness)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(path: &str, readiness: &Readiness) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" | "/livez" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => match readiness.reasons() {
            None => (StatusCode::OK, "ok\n".to_owned()),
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lists_every_reason_until_each_is_cleared() {
        let r = Readiness::default();
        assert_eq!(r.reasons(), None);
        r.not_ready("peers", "node annotations: key x missing");
        r.not_ready("services", "waiting for the first list");
        assert_eq!(
            r.reasons().unwrap(),
            "peers: node annotations: key x missing\nservices: waiting for the first list\n"
        );
        r.ready("peers");
        r.ready("services");
        assert_eq!(r.reasons(), None);
        assert_eq!(answer("/readyz", &r).status(), StatusCode::OK);
        r.not_ready("peers", "x");
        assert_eq!(
            answer("/readyz", &r).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(answer("/healthz", &r).status(), StatusCode::OK);
    }

    #[test]
    fn listen_addresses_follow_kube_vip() {
        assert_eq!(
            listen_address(":2112"),
            Some("0.0.0.0:2112".parse().unwrap())
        );
        assert_eq!(listen_address("[::1]:9"), Some("[::1]:9".parse().unwrap()));
        assert_eq!(listen_address("2112"), None);
    }
}

//! [I/O] The agent's HTTP endpoint (`prometheus_server`, default `:2112`): `/healthz` (the
//! process serves) and `/readyz` (peers known and, in services mode, the first complete list of
//! Services seen; otherwise 503 with the reason) for the manifest's probes; `/metrics`
//! (OpenMetrics) and `/status` (JSON, what `vipd status` prints).

use crate::config::listen_address;
use crate::observe::{Observer, Readiness};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tracing::info;

/// Binds the endpoint's address (`[::]` falls back to `0.0.0.0` where IPv6 is off). Done before
/// anything starts: an address that cannot be bound stops the agent, since a DaemonSet whose
/// probes cannot connect is restarted anyway, and quietly running without `/healthz` hides it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    match TcpListener::bind(addr).await {
        // Every address, but IPv6 is off on this host: every IPv4 address.
        Err(_) if addr.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) => {
            let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, addr.port()));
            TcpListener::bind(v4).await.map(|l| (l, v4))
        }
        other => other.map(|l| (l, addr)),
    }
}

/// Serves on a listener from [`bind`] for the life of the agent.
pub async fn serve(
    (listener, addr): (TcpListener, SocketAddr),
    readiness: Readiness,
    observer: Observer,
) {
    info!(%addr, "serving /healthz, /readyz, /metrics and /status");
    while let Ok((stream, _)) = listener.accept().await {
        let readiness = readiness.clone();
        let observer = observer.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = match req.uri().path() {
                    "/metrics" => with_type(
                        observer.metrics_text(),
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                    "/status" => with_type(
                        serde_json::to_string_pretty(&observer.report())
                            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
                        "application/json",
                    ),
                    path => answer(path, &readiness),
                };
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("--server {0:?} is not host:port")]
    Address(String),
    #[error("cannot ask the agent at {url}: {reason} (is vipd running with prometheus_server {server:?}?)")]
    Unreachable {
        url: String,
        server: String,
        reason: String,
    },
    #[error("the agent at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("the agent at {url} sent a status vipd cannot read: {reason}")]
    Body { url: String, reason: String },
}

/// `GET /status` from the agent at `server` (kube-vip's `prometheus_server` form).
pub async fn fetch_status(server: &str) -> Result<crate::report::AgentReport, StatusError> {
    use http_body_util::BodyExt;
    let mut addr = listen_address(server).ok_or_else(|| StatusError::Address(server.into()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{addr}/status");
    let unreachable = |reason: String| StatusError::Unreachable {
        url: url.clone(),
        server: server.to_owned(),
        reason,
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| StatusError::Address(server.into()))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| unreachable("no answer within 5 s".into()))?
        // hyper's client errors say "client error (Connect)"; the cause says what happened.
        .map_err(|e| unreachable(vipd_providers::error_chain(&e)))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(StatusError::Status {
            url,
            status,
            body: String::from_utf8_lossy(&body).trim().to_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| StatusError::Body {
        url,
        reason: e.to_string(),
    })
}

fn with_type(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
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
        // Go's ":2112" and "0.0.0.0:2112" listen on every address of both families.
        for every in [":2112", "0.0.0.0:2112", "[::]:2112"] {
            assert_eq!(listen_address(every), Some("[::]:2112".parse().unwrap()));
        }
        assert_eq!(
            listen_address("127.0.0.1:2112"),
            Some("127.0.0.1:2112".parse().unwrap())
        );
        assert_eq!(listen_address("[::1]:9"), Some("[::1]:9".parse().unwrap()));
        assert_eq!(listen_address("2112"), None);
    }
}

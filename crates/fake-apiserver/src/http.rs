//! [I/O] The HTTP/1.1 edge: accepts connections, reads each request, routes it to discovery or the
//! REST verbs, and writes JSON (or a chunked watch stream) back. [I/O]

use super::api::{self, Call, Outcome};
use super::auth;
use super::discovery;
use super::error::ApiError;
use super::routes::{self, Query, Route};
use super::store::Store;
use super::table::{self, Include};
use super::watch;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Requests larger than this are refused (413); the real server's limit is 3 MiB.
const MAX_BODY: usize = 3 * 1024 * 1024;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every request handler shares.
pub(super) struct Ctx {
    pub store: Store,
    /// The listening address, for `/api`'s serverAddressByClientCIDRs.
    pub addr: SocketAddr,
    pub bookmark_interval: Duration,
    /// Every 401 and 403 answered, as `METHOD path: message` (for tests that count them).
    pub refused: std::sync::Mutex<Vec<String>>,
    /// Injected faults (chaos tests).
    pub faults: std::sync::Mutex<crate::Faults>,
}

/// Serves `listener` until `shutdown` changes (or its sender is dropped), then drops every
/// open connection and watch at once.
pub(super) async fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ctx = ctx.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req| handle(ctx.clone(), req));
                        if let Err(e) = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await
                        {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "fake API server: accept failed; retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let faults = ctx.faults.lock().map(|f| *f).unwrap_or_default();
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if faults.errors_per_mille > 0 && fastrand::u32(0..1000) < faults.errors_per_mille {
        debug!(path = req.uri().path(), "fake API server: injected 500");
        return Ok(error(&ApiError::Internal(
            "injected fault: etcdserver: request timed out".into(),
        )));
    }
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE);
    let accept = header(ACCEPT);
    let authorization = header(AUTHORIZATION);
    let resp = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => respond(
            &ctx,
            &Asked {
                method: &method,
                path: &path,
                query: &query,
                authorization: authorization.as_deref(),
                content_type: content_type.as_deref(),
                accept: accept.as_deref(),
                body: &body.to_bytes(),
            },
        ),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            error(&ApiError::TooLarge(MAX_BODY))
        }
        Err(e) => error(&ApiError::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    };
    debug!(
        method,
        path,
        status = resp.status().as_u16(),
        "fake API server request"
    );
    Ok(resp)
}

/// One request, body read.
struct Asked<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a Query,
    authorization: Option<&'a str>,
    content_type: Option<&'a str>,
    accept: Option<&'a str>,
    body: &'a [u8],
}

fn respond(ctx: &Ctx, req: &Asked) -> Response<Body> {
    let result = ctx
        .store
        .read(|db| auth::authenticate(db, req.authorization))
        .ok_or(ApiError::Unauthorized)
        .and_then(|who| {
            let route = routes::route(req.path).ok_or(ApiError::NoRoute)?;
            if let Route::Resource(rp) = &route {
                let attrs = auth::Attributes::of(req.method, rp, req.query.flag("watch"));
                ctx.store.read(|db| auth::authorize(db, &who, &attrs))?;
            }
            Ok(route)
        });
    match result {
        Ok(route) => respond_to(ctx, req, route),
        Err(e) => {
            if let Ok(mut refused) = ctx.refused.lock() {
                refused.push(format!("{} {}: {e}", req.method, req.path));
            }
            error(&e)
        }
    }
}

fn respond_to(ctx: &Ctx, req: &Asked, route: Route) -> Response<Body> {
    let Asked {
        method,
        query,
        content_type,
        accept,
        body,
        ..
    } = *req;
    let rp = match route {
        Route::Resource(rp) => rp,
        _ if method != "GET" => return error(&ApiError::MethodNotAllowed),
        Route::Version => return json(200, &discovery::version()),
        Route::Health => return bytes(200, "text/plain", Bytes::from_static(b"ok")),
        Route::CoreVersions => return json(200, &discovery::core_versions(&ctx.addr.to_string())),
        Route::Groups => return json(200, &discovery::groups()),
        Route::Group(g) => return json(200, &discovery::group_doc(&g)),
        Route::Resources { group, version } => {
            return match discovery::resource_list(&group, &version) {
                Some(doc) => json(200, &doc),
                None => error(&ApiError::NoRoute),
            }
        }
        Route::OpenApiV2 => {
            return bytes(
                200,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                Bytes::from_static(discovery::openapi_v2()),
            )
        }
        // Deliberately absent: see the discovery module docs.
        Route::OpenApiV3Index | Route::OpenApiV3 { .. } => return error(&ApiError::NoRoute),
    };
    let call = Call {
        method,
        path: &rp,
        query,
        content_type,
        body,
        now: SystemTime::now(),
        table: table::wanted(accept).then(|| Include::parse(query.get("includeObject"))),
    };
    let outcome = if call.is_read() {
        ctx.store.read(|db| api::read(db, &call))
    } else {
        ctx.store.write(|db| api::write(db, &call))
    };
    match outcome {
        Ok(Outcome::Json(code, v)) => json(code, &v),
        Ok(Outcome::Watch(spec)) => {
            let chunks = watch::stream(ctx.store.clone(), spec, ctx.bookmark_interval)
                .map(|b| Ok::<_, Infallible>(Frame::data(b)));
            let mut r = Response::new(StreamBody::new(chunks).boxed_unsync());
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => error(&e),
    }
}

fn bytes(code: u16, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(code: u16, v: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    bytes(code, "application/json", Bytes::from(body))
}

fn error(e: &ApiError) -> Response<Body> {
    json(e.code(), &e.status())
}

//! [I/O] The Equinix Metal API calls a BGP speaker needs (`equinix-metal.md` §3.1), over reqwest.
//!
//! 5xx, 429, timeouts and connection failures are retried with capped exponential backoff and
//! jitter (backon), waiting at least until `X-RateLimit-Reset` (or `Retry-After`) when the API
//! sends one; every other 4xx is permanent and names the call. The token travels only in a
//! sensitive `X-Auth-Token` header: it is scrubbed from every message the API sends back and
//! never reaches `Debug`, `Display`, an error or a log.

use crate::equinix::cloud_config::{is_api_id, CloudConfig};
use crate::equinix::model::{
    error_message, BgpConfig, BgpNeighbor, Device, DeviceList, Family, NeighborError, NeighborList,
    NewSession, ProjectBgp,
};
use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// More pages than this is a broken `meta`, not a big project (1000 devices per page).
const MAX_PAGES: u32 = 100;

/// How transient failures are retried within one call.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// The longest rate-limit reset vipd waits for within one call; beyond it the call fails
    /// and the next refresh tries again.
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retries: 5,
            max_rate_limit_wait: Duration::from_secs(300),
        }
    }
}

/// HTTP settings of the client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole request, headers to last body byte.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

/// Why a Metal API call failed. Never contains the API token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetalError {
    #[error("{call}: 401 Unauthorized ({message}): the API token was rejected; check apiKey in cloud-sa.json or METAL_API_KEY")]
    Unauthorized { call: String, message: String },
    #[error("{call}: 403 Forbidden ({message}): the API token has no access here; use a user or project API key of project {project}")]
    Forbidden {
        call: String,
        message: String,
        project: String,
    },
    #[error(
        "{call}: 404 Not Found ({message}): check projectID (METAL_PROJECT_ID) and the device"
    )]
    NotFound { call: String, message: String },
    /// A redirect is never followed: the API key would go with it (reqwest keeps custom
    /// headers such as `X-Auth-Token` across origins).
    #[error("{call}: the API answered {status} redirecting to {location}; vipd does not follow redirects, so the API key is only ever sent to base-url: set base-url to the API's own address")]
    Redirected {
        call: String,
        status: u16,
        location: String,
    },
    #[error("{call}: {status} ({message})")]
    Rejected {
        call: String,
        status: u16,
        message: String,
    },
    #[error("{call}: 429 Too Many Requests ({message})")]
    RateLimited {
        call: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{call}: server error {status} ({message})")]
    Server {
        call: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{call}: {detail}")]
    Transport {
        call: String,
        detail: String,
        timeout: bool,
    },
    #[error("{call}: the response is not the expected JSON: {detail}")]
    Decode { call: String, detail: String },
    #[error("BGP is not enabled on Equinix Metal project {project} (GET /projects/{project}/bgp-config {found}). Enable local BGP for the project (console: Project Settings > BGP; CLI: `metal project bgp-enable --project-id {project} --deployment-type local --asn 65000`), or let the Equinix Metal CCM enable it; vipd never enables it itself")]
    ProjectBgpNotEnabled {
        project: String,
        /// What the API said, e.g. `returned {}`.
        found: &'static str,
    },
    #[error("no device with hostname {names} in Equinix Metal project {project}; name the Node after the device's hostname, or give the device id (spec.providerID equinixmetal://<id>)")]
    DeviceNotFound { project: String, names: String },
    #[error("device {device} has no BGP neighbour for {families}: its BGP session may still be provisioning")]
    NoNeighbours { device: String, families: String },
    #[error("GET /devices/{device}/bgp/neighbors: {source}")]
    BadNeighbor {
        device: String,
        #[source]
        source: NeighborError,
    },
    #[error("{what} {id:?} cannot be used in an API path")]
    BadId { what: &'static str, id: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl MetalError {
    /// Whether retrying the same call may succeed (5xx, 429, timeouts, connection failures).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MetalError::RateLimited { .. }
                | MetalError::Server { .. }
                | MetalError::Transport { .. }
        )
    }

    /// How long the API asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MetalError::RateLimited { retry_after, .. }
            | MetalError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The result of asking for a BGP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutcome {
    Created,
    /// 422 "already has session": as good as created.
    AlreadyExists,
}

/// A client for one project. Cheap to clone.
#[derive(Clone)]
pub struct MetalClient {
    http: reqwest::Client,
    base_url: String,
    project_id: String,
    token: Arc<SecretString>,
    retry: RetryPolicy,
}

impl fmt::Debug for MetalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetalClient")
            .field("base_url", &self.base_url)
            .field("project_id", &self.project_id)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

/// A successful response's body.
struct Reply {
    body: Vec<u8>,
}

impl MetalClient {
    /// A client for `cfg`'s project. Installs rustls' `ring` provider as the process default if
    /// none is installed yet, so reqwest and kube share one provider (see Cargo.toml).
    pub fn new(cfg: &CloudConfig, opts: ClientOptions) -> Result<MetalClient, MetalError> {
        if !is_api_id(&cfg.project_id) {
            return Err(MetalError::BadId {
                what: "project id",
                id: cfg.project_id.clone(),
            });
        }
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err means another thread installed one first: equally fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("vipd/", env!("CARGO_PKG_VERSION")))
            .timeout(opts.request_timeout)
            .connect_timeout(opts.connect_timeout)
            // Never carry X-Auth-Token to wherever a 3xx points (another host included).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MetalError::Client(e.to_string()))?;
        Ok(MetalClient {
            http,
            base_url: cfg.base_url.trim_end_matches('/').to_owned(),
            project_id: cfg.project_id.clone(),
            token: cfg.api_key.clone(),
            retry: opts.retry,
        })
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// `GET /projects/{pid}/bgp-config`.
    pub async fn bgp_config(&self) -> Result<BgpConfig, MetalError> {
        let path = format!("/projects/{}/bgp-config", self.project_id);
        self.get_json(&path, &[]).await
    }

    /// Fails with [`MetalError::ProjectBgpNotEnabled`] unless the project's BGP is enabled.
    pub async fn check_project_bgp(&self) -> Result<(), MetalError> {
        let found = match self.bgp_config().await?.state() {
            ProjectBgp::Enabled => return Ok(()),
            ProjectBgp::NeverEnabled => "returned {}",
            ProjectBgp::Disabled => "says status disabled",
            ProjectBgp::Requested => "says status requested: not yet provisioned",
        };
        Err(MetalError::ProjectBgpNotEnabled {
            project: self.project_id.clone(),
            found,
        })
    }

    /// The project's device whose hostname is `names[0]`, else `names[1]`, … (compared exactly,
    /// ignoring ASCII case; the API's filter also matches partially). Follows every page.
    pub async fn find_device(&self, names: &[String]) -> Result<Device, MetalError> {
        let path = format!("/projects/{}/devices", self.project_id);
        let mut tried: Vec<&str> = Vec::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if tried.iter().any(|t| t.eq_ignore_ascii_case(name)) {
                continue;
            }
            tried.push(name);
            let mut page = 1u32;
            loop {
                let query = [
                    ("hostname", name.to_owned()),
                    ("per_page", "1000".to_owned()),
                    ("page", page.to_string()),
                ];
                let list: DeviceList = self.get_json(&path, &query).await?;
                if let Some(d) = list
                    .devices
                    .into_iter()
                    .find(|d| d.hostname.eq_ignore_ascii_case(name))
                {
                    return Ok(d);
                }
                if !list.meta.has_next() || page >= MAX_PAGES {
                    break;
                }
                page += 1;
            }
        }
        Err(MetalError::DeviceNotFound {
            project: self.project_id.clone(),
            names: tried
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }

    /// `GET /devices/{id}` with its addresses.
    pub async fn device(&self, id: &str) -> Result<Device, MetalError> {
        check_id("device id", id)?;
        let query = [(
            "include",
            "ip_addresses.parent_block,parent_block".to_owned(),
        )];
        self.get_json(&format!("/devices/{id}"), &query).await
    }

    /// `POST /devices/{id}/bgp/sessions`; an existing session (422 "already has session") is
    /// success.
    pub async fn ensure_session(
        &self,
        device_id: &str,
        family: Family,
    ) -> Result<SessionOutcome, MetalError> {
        check_id("device id", device_id)?;
        let body = serde_json::to_vec(&NewSession {
            address_family: family.api_name(),
            default_route: false,
        })
        .map_err(|e| MetalError::Client(e.to_string()))?;
        let path = format!("/devices/{device_id}/bgp/sessions");
        match self.call(Method::POST, &path, &[], Some(&body)).await {
            Ok(_) => Ok(SessionOutcome::Created),
            Err(MetalError::Rejected {
                status: 422,
                message,
                ..
            }) if message.to_ascii_lowercase().contains("already has session") => {
                Ok(SessionOutcome::AlreadyExists)
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /devices/{id}/bgp/neighbors`.
    pub async fn neighbors(&self, device_id: &str) -> Result<Vec<BgpNeighbor>, MetalError> {
        check_id("device id", device_id)?;
        let list: NeighborList = self
            .get_json(&format!("/devices/{device_id}/bgp/neighbors"), &[])
            .await?;
        Ok(list.bgp_neighbors)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, MetalError> {
        let reply = self.call(Method::GET, path, query, None).await?;
        serde_json::from_slice(&reply.body).map_err(|e| MetalError::Decode {
            call: describe(&Method::GET, path, query),
            detail: self.scrub(e.to_string()),
        })
    }

    /// One call with retries of transient failures.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, MetalError> {
        let p = &self.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(p.min_delay)
            .with_max_delay(p.max_delay)
            .with_max_times(p.max_retries)
            .with_jitter();
        let max_wait = p.max_rate_limit_wait;
        (|| self.once(&method, path, query, body))
            .retry(backoff)
            .when(MetalError::is_transient)
            // Never earlier than the API asked; give up if it asked for too long.
            .adjust(move |e: &MetalError, d| match (d, e.retry_after()) {
                (Some(_), Some(w)) if w > max_wait => None,
                (Some(d), Some(w)) => Some(d.max(w)),
                (d, _) => d,
            })
            .notify(|e, d| tracing::warn!(error = %e, retry_in = ?d, "Equinix Metal API call failed; retrying"))
            .await
    }

    async fn once(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, MetalError> {
        let call = describe(method, path, query);
        let mut token = HeaderValue::from_str(self.token.expose_secret()).map_err(|_| {
            MetalError::Client("the API token contains characters not allowed in a header".into())
        })?;
        token.set_sensitive(true);
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url))
            .header("X-Auth-Token", token);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let transport = |e: reqwest::Error| MetalError::Transport {
            call: call.clone(),
            timeout: e.is_timeout(),
            detail: self.scrub(crate::error_chain(&e)),
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = wait_hint(resp.headers(), SystemTime::now());
        let resp_location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = resp.bytes().await.map_err(transport)?.to_vec();
        if status.is_success() {
            return Ok(Reply { body });
        }
        if status.is_redirection() {
            let location = resp_location.unwrap_or_else(|| "(no Location)".into());
            return Err(MetalError::Redirected {
                call,
                status: status.as_u16(),
                location: self.scrub(location),
            });
        }
        let message = self.scrub(error_message(&body));
        Err(match status {
            StatusCode::UNAUTHORIZED => MetalError::Unauthorized { call, message },
            StatusCode::FORBIDDEN => MetalError::Forbidden {
                call,
                message,
                project: self.project_id.clone(),
            },
            StatusCode::NOT_FOUND => MetalError::NotFound { call, message },
            StatusCode::TOO_MANY_REQUESTS => MetalError::RateLimited {
                call,
                message,
                retry_after,
            },
            s if s.is_server_error() => MetalError::Server {
                call,
                status: s.as_u16(),
                message,
                retry_after,
            },
            s => MetalError::Rejected {
                call,
                status: s.as_u16(),
                message,
            },
        })
    }

    /// Removes the token from text that came from elsewhere (error bodies, transport errors).
    fn scrub(&self, text: String) -> String {
        let token = self.token.expose_secret();
        if token.is_empty() || !text.contains(token) {
            text
        } else {
            text.replace(token, "[REDACTED]")
        }
    }
}

fn check_id(what: &'static str, id: &str) -> Result<(), MetalError> {
    if is_api_id(id) {
        Ok(())
    } else {
        Err(MetalError::BadId {
            what,
            id: id.to_owned(),
        })
    }
}

/// `GET /projects/…/devices?hostname=x&page=2`, for messages.
fn describe(method: &Method, path: &str, query: &[(&str, String)]) -> String {
    let shown: Vec<String> = query
        .iter()
        .filter(|(k, _)| *k != "per_page" && *k != "include")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if shown.is_empty() {
        format!("{method} {path}")
    } else {
        format!("{method} {path}?{}", shown.join("&"))
    }
}

/// How long the API wants us to wait: `X-RateLimit-Reset` (unix seconds; small values are read
/// as seconds from now), else `Retry-After` (seconds).
fn wait_hint(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let number =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    if let Some(reset) = number("x-ratelimit-reset") {
        // Anything before 2001 is not a timestamp but a delta.
        if reset < 1_000_000_000 {
            return Some(Duration::from_secs(reset));
        }
        let at = UNIX_EPOCH + Duration::from_secs(reset);
        return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
    }
    number(RETRY_AFTER.as_str()).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_header_is_a_unix_time_or_a_delta_and_retry_after_is_a_fallback() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert("X-RateLimit-Reset", HeaderValue::from_static("1700000007"));
        assert_eq!(wait_hint(&h, now), Some(Duration::from_secs(7)));
        h.insert("X-RateLimit-Reset", HeaderValue::from_static("1699999999"));
        assert_eq!(wait_hint(&h, now), Some(Duration::ZERO));
        h.insert("X-RateLimit-Reset", HeaderValue::from_static("30"));
        assert_eq!(wait_hint(&h, now), Some(Duration::from_secs(30)));
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("4"));
        assert_eq!(wait_hint(&h, now), Some(Duration::from_secs(4)));
        assert_eq!(wait_hint(&HeaderMap::new(), now), None);
    }

    #[test]
    fn calls_are_described_without_paging_noise() {
        let q = [
            ("hostname", "worker-1".to_owned()),
            ("per_page", "1000".to_owned()),
            ("page", "2".to_owned()),
        ];
        assert_eq!(
            describe(&Method::GET, "/projects/p/devices", &q),
            "GET /projects/p/devices?hostname=worker-1&page=2"
        );
        assert_eq!(describe(&Method::POST, "/x", &[]), "POST /x");
    }
}

//! The Equinix Metal API provider against a local HTTP server serving the documented JSON
//! (`equinix-metal.md` §3): pagination, sessions with the 422 case, neighbours, `bgp-config {}`,
//! error bodies, a 429 with a reset header, 5xx and a timeout, and the refresh task's feed.

use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vipd_providers::equinix::{
    spawn_metal_source, ClientOptions, CloudConfig, Family, MetalClient, MetalDiscovery, MetalEnv,
    MetalError, MetalSourceOptions, RetryPolicy, SessionOutcome,
};
use vipd_providers::{Password, PeerAddress, PeerRoute, PeerSnapshot, PeerSpec};

const PID: &str = "8d4e2a1c-0000-4000-8000-000000000000";
const DEV: &str = "3b1c5e6a-0000-4000-8000-000000000001";
const TOKEN: &str = "tok-SEKRIT-9f8e7d6c";

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server: one request per connection, answered by a handler that sees the request
// and how many times this method+path was hit before.

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Request {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
    fn line(&self) -> String {
        let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if q.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, q.join("&"))
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

fn json(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

type Handler = dyn Fn(&Request, usize) -> Response + Send + Sync;

struct Mock {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Mock {
    async fn start(handler: impl Fn(&Request, usize) -> Response + Send + Sync + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let task_log = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, handler) = (task_log.clone(), handler.clone());
                tokio::spawn(async move {
                    let _ = serve_one(stream, log, handler).await;
                });
            }
        });
        Mock { addr, log }
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Request::line).collect()
    }

    fn base_url(&self) -> String {
        format!("http://{}/metal/v1", self.addr)
    }
}

async fn serve_one(
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<Request>>>,
    handler: Arc<Handler>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect();
    let req = Request {
        method,
        path: path.to_owned(),
        query,
        headers,
        body,
    };
    let hit = {
        let mut log = log.lock().unwrap();
        let hit = log.iter().filter(|r| r.is(&req.method, &req.path)).count();
        log.push(req.clone());
        hit
    };
    let resp = handler(&req, hit);
    tokio::time::sleep(resp.delay).await;
    let mut out = format!(
        "HTTP/1.1 {} Mock\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&resp.body);
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The documented Metal API.

fn path(p: &str) -> String {
    format!("/metal/v1{p}")
}

fn device_json(id: &str, hostname: &str) -> String {
    format!(
        r#"{{"id":"{id}","hostname":"{hostname}","state":"active","metro":{{"code":"sv","name":"Silicon Valley"}},
  "ip_addresses":[
   {{"address_family":4,"public":true,"management":true,"address":"147.75.197.69","gateway":"147.75.197.68",
    "network":"147.75.197.68","netmask":"255.255.255.254","cidr":31}},
   {{"address_family":4,"public":false,"management":true,"address":"10.66.29.1","gateway":"10.66.29.0",
    "network":"10.66.29.0","netmask":"255.255.255.254","cidr":31,
    "parent_block":{{"network":"10.66.29.0","netmask":"255.255.255.128","cidr":25,"href":"/ips/9a0e…"}}}}],
  "href":"/metal/v1/devices/{id}"}}"#
    )
}

const BGP_CONFIG: &str = r#"{"id":"c27a0000-0000-4000-8000-000000000002","status":"enabled","deployment_type":"local","asn":65000,"md5":null,"max_prefix":10,
 "route_object":null,"ranges":[],"sessions":[],"project":{"href":"/metal/v1/projects/8d4e…"},
 "created_at":"2024-04-30T08:00:00Z","requested_at":"2024-04-30T08:00:00Z","href":"/metal/v1/projects/8d4e…/bgp-config"}"#;

const NEIGHBORS: &str = r#"{"bgp_neighbors":[
 {"address_family":4,"customer_as":65000,"customer_ip":"10.66.29.1","md5_enabled":true,
  "md5_password":"Md5Secret77","multihop":true,"peer_as":65530,"peer_ips":["169.254.255.2","169.254.255.1"],
  "routes_in":[{"route":"198.51.100.17/32","exact":true}],"routes_out":[]},
 {"address_family":6,"customer_as":65000,"customer_ip":"2604:1380:4641:c500::3","md5_enabled":true,
  "md5_password":"Md5Secret77","multihop":true,"peer_as":65530,"peer_ips":["fc00::e","fc00::f"],
  "routes_in":[],"routes_out":[]}]}"#;

const SESSION_201: &str = r#"{"id":"5f0d0000-0000-4000-8000-000000000003","status":"unknown","address_family":"ipv4","default_route":false,"learned_routes":[],
 "device":{"href":"/metal/v1/devices/3b1c…"},"href":"/metal/v1/bgp/sessions/5f0d…",
 "created_at":"2024-05-02T10:11:12Z","updated_at":"2024-05-02T10:11:12Z"}"#;

/// The API as documented, for a project whose device `worker-1` is on page 2 of the listing,
/// with an IPv4 session still to create and an IPv6 one that exists.
fn metal_api(req: &Request) -> Response {
    if req.headers.get("x-auth-token").map(String::as_str) != Some(TOKEN) {
        return json(401, r#"{"errors":["Invalid authentication token"]}"#);
    }
    let devices = path(&format!("/projects/{PID}/devices"));
    let sessions = path(&format!("/devices/{DEV}/bgp/sessions"));
    if req.is("GET", &path(&format!("/projects/{PID}/bgp-config"))) {
        json(200, BGP_CONFIG)
    } else if req.is("GET", &devices) {
        let host = req.query.get("hostname").cloned().unwrap_or_default();
        let page = req.query.get("page").map(String::as_str).unwrap_or("1");
        // The API's hostname filter matches partially; the device sorts onto page 2.
        let (list, meta) = match (host.as_str(), page) {
            ("worker-1", "1") => (
                format!(
                    "{},{}",
                    device_json("aaaa0000-0000-4000-8000-00000000000a", "worker-10"),
                    device_json("bbbb0000-0000-4000-8000-00000000000b", "worker-11")
                ),
                format!(
                    r#"{{"first":{{"href":"{devices}?page=1"}},"next":{{"href":"{devices}?page=2"}},"last":{{"href":"{devices}?page=2"}},"total":3,"current_page":1,"last_page":2}}"#
                ),
            ),
            ("worker-1", "2") => (
                device_json(DEV, "worker-1"),
                r#"{"total":3,"current_page":2,"last_page":2,"next":null}"#.to_owned(),
            ),
            _ => (
                String::new(),
                r#"{"total":0,"current_page":1,"last_page":1}"#.to_owned(),
            ),
        };
        json(200, &format!(r#"{{"devices":[{list}],"meta":{meta}}}"#))
    } else if req.is("GET", &path(&format!("/devices/{DEV}"))) {
        json(200, &device_json(DEV, "worker-1"))
    } else if req.is("POST", &sessions) {
        if req.body.contains("\"ipv6\"") {
            json(
                422,
                &format!(r#"{{"errors":["Device {DEV} already has session for ipv6"]}}"#),
            )
        } else {
            json(201, SESSION_201)
        }
    } else if req.is("GET", &path(&format!("/devices/{DEV}/bgp/neighbors"))) {
        json(200, NEIGHBORS)
    } else {
        json(404, r#"{"error":"Not found"}"#)
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retries: 3,
        max_rate_limit_wait: Duration::from_secs(10),
    }
}

fn cloud_config(mock: &Mock, token: &str) -> CloudConfig {
    let file = format!(
        r#"{{"apiKey":"{token}","projectId":"{PID}","base-url":"{}/"}}"#,
        mock.base_url()
    );
    CloudConfig::from_parts(Some(&file), MetalEnv::default()).unwrap()
}

fn client_with(mock: &Mock, token: &str, request_timeout: Duration) -> MetalClient {
    let opts = ClientOptions {
        request_timeout,
        connect_timeout: Duration::from_secs(1),
        retry: fast_retry(),
    };
    MetalClient::new(&cloud_config(mock, token), opts).unwrap()
}

fn client(mock: &Mock) -> MetalClient {
    client_with(mock, TOKEN, Duration::from_secs(5))
}

fn options(families: Vec<Family>) -> MetalSourceOptions {
    let mut o = MetalSourceOptions::new(vec!["worker-1".into()]);
    o.families = families;
    o
}

fn assert_no_token(text: &str) {
    assert!(!text.contains(TOKEN), "the API token leaked: {text}");
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn discovery_pages_to_the_device_ensures_sessions_and_reads_neighbours_into_peers() {
    let mock = Mock::start(|r, _| metal_api(r)).await;
    let mut d = MetalDiscovery::new(client(&mock), options(vec![Family::Ipv4, Family::Ipv6]));
    let set = d.refresh().await.unwrap();

    assert_eq!(set.peers.len(), 4);
    for (p, addr) in set.peers.iter().zip(["169.254.255.1", "169.254.255.2"]) {
        assert_eq!(p.address, PeerAddress::Ip(ip(addr)));
        assert_eq!(p.port, 179);
        assert_eq!(p.remote_as, 65530);
        assert_eq!(p.local_as, Some(65000));
        assert_eq!(p.password, Some(Password::new("Md5Secret77".into())));
        assert!(p.multihop);
        assert_eq!(p.source, Some(ip("10.66.29.1")));
        assert_eq!(p.router_id, Some("10.66.29.1".parse().unwrap()));
        assert_eq!(p.bfd, None);
    }
    for (p, addr) in set.peers[2..].iter().zip(["fc00::e", "fc00::f"]) {
        let mut want = PeerSpec::new(ip(addr), 65530);
        want.local_as = Some(65000);
        want.password = Some(Password::new("Md5Secret77".into()));
        want.multihop = true;
        want.source = Some(ip("2604:1380:4641:c500::3"));
        assert_eq!(*p, want);
    }
    let route = |to: &str| PeerRoute {
        destination: ip(to),
        gateway: ip("10.66.29.0"),
        source: Some(ip("10.66.29.1")),
    };
    assert_eq!(
        set.routes,
        vec![route("169.254.255.1"), route("169.254.255.2")]
    );
    assert_eq!(d.device().map(|d| d.id.as_str()), Some(DEV));

    let devices = path(&format!("/projects/{PID}/devices"));
    assert_eq!(
        mock.lines(),
        vec![
            format!("GET {}", path(&format!("/projects/{PID}/bgp-config"))),
            format!("GET {devices}?hostname=worker-1&page=1&per_page=1000"),
            format!("GET {devices}?hostname=worker-1&page=2&per_page=1000"),
            format!("POST {}", path(&format!("/devices/{DEV}/bgp/sessions"))),
            format!("POST {}", path(&format!("/devices/{DEV}/bgp/sessions"))),
            format!("GET {}", path(&format!("/devices/{DEV}/bgp/neighbors"))),
        ]
    );
    let reqs = mock.requests();
    assert!(reqs
        .iter()
        .all(|r| r.headers.get("x-auth-token").map(String::as_str) == Some(TOKEN)));
    assert!(reqs
        .iter()
        .all(|r| r.headers.get("accept").map(String::as_str) == Some("application/json")));
    let posts: Vec<&Request> = reqs.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(
        posts[0].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"address_family": "ipv4", "default_route": false})
    );
    assert!(posts[1].body.contains("\"ipv6\""));

    // A refresh only re-reads the neighbours: device and sessions are known.
    let again = d.refresh().await.unwrap();
    assert_eq!(again, set);
    assert_eq!(mock.requests().len(), 7);
    assert!(mock.lines()[6].ends_with("/bgp/neighbors"));
}

#[tokio::test]
async fn the_session_calls_tell_created_from_already_there() {
    let mock = Mock::start(|r, _| metal_api(r)).await;
    let c = client(&mock);
    assert_eq!(
        c.ensure_session(DEV, Family::Ipv4).await.unwrap(),
        SessionOutcome::Created
    );
    assert_eq!(
        c.ensure_session(DEV, Family::Ipv6).await.unwrap(),
        SessionOutcome::AlreadyExists
    );
}

#[tokio::test]
async fn another_422_is_a_permanent_error_naming_the_call() {
    let mock = Mock::start(|r, _| {
        if r.method == "POST" {
            json(422, r#"{"errors":["BGP is not enabled for this project"]}"#)
        } else {
            metal_api(r)
        }
    })
    .await;
    let e = client(&mock)
        .ensure_session(DEV, Family::Ipv4)
        .await
        .unwrap_err();
    assert!(!e.is_transient());
    assert_eq!(
        e.to_string(),
        format!("POST /devices/{DEV}/bgp/sessions: 422 (BGP is not enabled for this project)")
    );
    assert_eq!(mock.requests().len(), 1, "4xx is never retried");
}

#[tokio::test]
async fn the_os_hostname_is_tried_after_the_node_name() {
    let mock = Mock::start(|r, _| metal_api(r)).await;
    let mut o = options(vec![Family::Ipv4]);
    o.hostnames = vec!["k8s-node-a".into(), "worker-1".into()];
    let mut d = MetalDiscovery::new(client(&mock), o);
    assert_eq!(d.refresh().await.unwrap().peers.len(), 2);
    let hosts: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.query.get("hostname").cloned())
        .collect();
    assert_eq!(hosts, vec!["k8s-node-a", "worker-1", "worker-1"]);
}

#[tokio::test]
async fn no_device_of_either_name_is_a_clear_error() {
    let mock = Mock::start(|r, _| metal_api(r)).await;
    let mut o = options(vec![Family::Ipv4]);
    o.hostnames = vec!["k8s-node-a".into(), "K8S-NODE-A".into(), "host-b".into()];
    let e = MetalDiscovery::new(client(&mock), o)
        .refresh()
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("no device with hostname \"k8s-node-a\" or \"host-b\" in Equinix Metal project {PID}; name the Node after the device's hostname, or give the device id (spec.providerID equinixmetal://<id>)")
    );
}

#[tokio::test]
async fn a_provider_id_skips_the_hostname_search() {
    let mock = Mock::start(|r, _| metal_api(r)).await;
    let mut o = options(vec![Family::Ipv4]);
    o.device_id =
        vipd_providers::equinix::device_id_from_provider_id(&format!("equinixmetal://{DEV}"));
    let mut d = MetalDiscovery::new(client(&mock), o);
    assert_eq!(d.refresh().await.unwrap().routes.len(), 2);
    let reqs = mock.requests();
    assert_eq!(reqs[1].path, path(&format!("/devices/{DEV}")));
    assert_eq!(
        reqs[1].query.get("include").map(String::as_str),
        Some("ip_addresses.parent_block,parent_block")
    );
}

#[tokio::test]
async fn project_bgp_never_enabled_says_so_and_how_to_fix_it() {
    let mock = Mock::start(|r, _| {
        if r.path.ends_with("/bgp-config") {
            json(200, "{}")
        } else {
            metal_api(r)
        }
    })
    .await;
    let e = MetalDiscovery::new(client(&mock), options(vec![Family::Ipv4]))
        .refresh()
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        MetalError::ProjectBgpNotEnabled {
            found: "returned {}",
            ..
        }
    ));
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "BGP is not enabled on Equinix Metal project {PID} (GET /projects/{PID}/bgp-config returned {{}})"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "metal project bgp-enable --project-id {PID} --deployment-type local"
    )));
    assert_eq!(mock.requests().len(), 1, "nothing else is asked");
}

#[tokio::test]
async fn a_rejected_token_is_permanent_names_the_call_and_is_never_shown() {
    let mock = Mock::start(|r, _| metal_api(r)).await;
    let wrong = "tok-WRONG-5a4b3c";
    let c = client_with(&mock, wrong, Duration::from_secs(5));
    let e = c.bgp_config().await.unwrap_err();
    assert_eq!(
        e,
        MetalError::Unauthorized {
            call: format!("GET /projects/{PID}/bgp-config"),
            message: "Invalid authentication token".into()
        }
    );
    assert!(e
        .to_string()
        .contains("check apiKey in cloud-sa.json or METAL_API_KEY"));
    assert_eq!(mock.requests().len(), 1, "401 is never retried");
    for text in [e.to_string(), format!("{e:?}"), format!("{c:?}")] {
        assert!(!text.contains(wrong), "{text}");
    }
    let cfg = cloud_config(&mock, wrong);
    assert!(!format!("{cfg:?}").contains(wrong));
    assert_eq!(cfg.api_key.expose_secret(), wrong);
}

/// D3: a redirect from base-url to another host must not carry the API key there. The second
/// host records what it receives; it must receive nothing.
#[tokio::test]
async fn a_redirect_is_not_followed_so_the_api_key_never_reaches_another_host() {
    let other = Mock::start(|r, _| metal_api(r)).await;
    let target = format!("{}/projects/{PID}/bgp-config", other.base_url());
    let mock = Mock::start(move |_, _| Response {
        status: 302,
        headers: vec![("Location".into(), target.clone())],
        body: String::new(),
        delay: Duration::ZERO,
    })
    .await;
    let c = client(&mock);
    let e = c.bgp_config().await.unwrap_err();
    assert!(
        matches!(&e, MetalError::Redirected { status: 302, location, .. } if location.contains("/bgp-config")),
        "{e:?}"
    );
    assert!(e.to_string().contains("does not follow redirects"), "{e}");
    assert!(!e.is_transient(), "a redirect is configuration, not a blip");
    assert!(
        other.requests().is_empty(),
        "the other host was reached: {:?}",
        other.requests()
    );
    assert_eq!(mock.requests().len(), 1);
    assert_no_token(&e.to_string());
}

#[tokio::test]
async fn forbidden_and_not_found_are_permanent_and_scrub_a_token_echoed_by_the_api() {
    let mock = Mock::start(|r, _| {
        if r.path.ends_with("/bgp-config") {
            json(
                403,
                &format!(r#"{{"errors":["token {TOKEN} has no access to project {PID}"]}}"#),
            )
        } else if r.path.ends_with("/neighbors") {
            json(404, r#"{"error":"Not found"}"#)
        } else {
            metal_api(r)
        }
    })
    .await;
    let c = client(&mock);
    let forbidden = c.bgp_config().await.unwrap_err();
    assert!(matches!(forbidden, MetalError::Forbidden { .. }));
    assert!(forbidden.to_string().contains("[REDACTED] has no access"));
    let not_found = c.neighbors(DEV).await.unwrap_err();
    assert_eq!(
        not_found.to_string(),
        format!("GET /devices/{DEV}/bgp/neighbors: 404 Not Found (Not found): check projectID (METAL_PROJECT_ID) and the device")
    );
    assert_eq!(mock.requests().len(), 2);
    for e in [&forbidden, &not_found] {
        assert!(!e.is_transient());
        assert_no_token(&e.to_string());
        assert_no_token(&format!("{e:?}"));
    }
    assert_no_token(&format!("{c:?}"));
}

#[tokio::test]
async fn a_429_waits_until_the_rate_limit_reset_then_succeeds() {
    let mock = Mock::start(|r, hit| {
        if r.path.ends_with("/bgp-config") && hit == 0 {
            let reset = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 2;
            Response {
                headers: vec![
                    ("X-RateLimit-Limit".into(), "100".into()),
                    ("X-RateLimit-Remaining".into(), "0".into()),
                    ("X-RateLimit-Reset".into(), reset.to_string()),
                ],
                ..json(429, r#"{"errors":["Too many requests"]}"#)
            }
        } else {
            metal_api(r)
        }
    })
    .await;
    let started = Instant::now();
    client(&mock).check_project_bgp().await.unwrap();
    let waited = started.elapsed();
    // The reset is 1–2 s away (whole seconds); the backoff alone would be ≤ 40 ms.
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn a_rate_limit_reset_beyond_the_cap_fails_the_call_instead_of_hanging() {
    let mock = Mock::start(|_, _| Response {
        headers: vec![("Retry-After".into(), "3600".into())],
        ..json(429, r#"{"errors":["slow down"]}"#)
    })
    .await;
    let e = client(&mock).bgp_config().await.unwrap_err();
    assert!(
        matches!(e, MetalError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3600))
    );
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn a_500_is_retried_then_succeeds() {
    let mock = Mock::start(|r, hit| {
        if r.path.ends_with("/neighbors") && hit == 0 {
            json(500, "<html>internal error</html>")
        } else {
            metal_api(r)
        }
    })
    .await;
    let n = client(&mock).neighbors(DEV).await.unwrap();
    assert_eq!(n.len(), 2);
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_the_retries_with_the_status_and_message() {
    let mock = Mock::start(|_, _| json(503, r#"{"error":"maintenance"}"#)).await;
    let e = client(&mock).bgp_config().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("GET /projects/{PID}/bgp-config: server error 503 (maintenance)")
    );
    assert!(e.is_transient());
    assert_eq!(mock.requests().len(), 1 + fast_retry().max_retries);
}

#[tokio::test]
async fn a_timeout_is_retried_then_succeeds() {
    let mock = Mock::start(|r, hit| {
        let mut resp = metal_api(r);
        if hit == 0 {
            resp.delay = Duration::from_secs(2);
        }
        resp
    })
    .await;
    let c = client_with(&mock, TOKEN, Duration::from_millis(300));
    assert_eq!(c.neighbors(DEV).await.unwrap().len(), 2);
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn an_unreachable_api_is_a_transient_transport_error() {
    let mock = Mock::start(|r, _| metal_api(r)).await;
    let mut cfg = cloud_config(&mock, TOKEN);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    cfg.base_url = format!("http://{}/metal/v1", closed.local_addr().unwrap());
    drop(closed);
    let opts = ClientOptions {
        retry: RetryPolicy {
            max_retries: 1,
            ..fast_retry()
        },
        ..ClientOptions::default()
    };
    let e = MetalClient::new(&cfg, opts)
        .unwrap()
        .bgp_config()
        .await
        .unwrap_err();
    assert!(
        matches!(e, MetalError::Transport { timeout: false, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());
    assert_no_token(&format!("{e} {e:?}"));
}

#[tokio::test]
async fn a_device_without_neighbours_is_explained() {
    let mock = Mock::start(|r, _| {
        if r.path.ends_with("/neighbors") {
            json(200, r#"{"bgp_neighbors":[]}"#)
        } else {
            metal_api(r)
        }
    })
    .await;
    let e = MetalDiscovery::new(client(&mock), options(vec![Family::Ipv4]))
        .refresh()
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "device {DEV} has no BGP neighbour for ipv4: its BGP session may still be provisioning"
        )
    );
}

#[tokio::test]
async fn the_refresh_task_goes_pending_ready_stale_and_stops_with_its_feed() {
    // Neighbours answer twice (different sets), then the API breaks down for good.
    let mock = Mock::start(|r, hit| {
        if r.path.ends_with("/neighbors") {
            match hit {
                0 => metal_api(r),
                1 => json(
                    200,
                    &NEIGHBORS.replace(r#""169.254.255.2","169.254.255.1""#, r#""169.254.255.1""#),
                ),
                _ => json(503, r#"{"errors":["upstream unavailable"]}"#),
            }
        } else {
            metal_api(r)
        }
    })
    .await;
    let mut o = options(vec![Family::Ipv4]);
    o.refresh_every = Duration::from_millis(100);
    o.retry_every = Duration::from_millis(50);
    let (mut feed, task) = spawn_metal_source(client(&mock), o);
    assert_eq!(feed.source(), "Equinix Metal API");
    assert!(matches!(feed.current(), PeerSnapshot::Pending { .. }));

    let wait = Duration::from_secs(5);
    let first = tokio::time::timeout(wait, feed.changed()).await.unwrap();
    let addrs = |s: &PeerSnapshot| -> Vec<String> {
        s.peers()
            .unwrap()
            .iter()
            .map(|p| p.address.to_string())
            .collect()
    };
    assert!(matches!(first, PeerSnapshot::Ready(_)));
    assert_eq!(addrs(&first), ["169.254.255.1", "169.254.255.2"]);

    let second = tokio::time::timeout(wait, feed.changed()).await.unwrap();
    assert!(matches!(second, PeerSnapshot::Ready(_)));
    assert_eq!(addrs(&second), ["169.254.255.1"]);

    let third = tokio::time::timeout(wait, feed.changed()).await.unwrap();
    let PeerSnapshot::Stale { last, why } = &third else {
        panic!("expected Stale, got {third:?}");
    };
    assert_eq!(
        Some(last),
        second.peer_set(),
        "the last good set stays in force"
    );
    assert!(why.contains("503 (upstream unavailable)"), "{why}");
    assert_no_token(&format!("{third:?}"));

    drop(feed);
    tokio::time::timeout(wait, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_task_that_never_gets_an_answer_stays_pending_with_the_reason() {
    let mock = Mock::start(|r, _| {
        if r.path.ends_with("/bgp-config") {
            json(200, "{}")
        } else {
            metal_api(r)
        }
    })
    .await;
    let (mut feed, task) = spawn_metal_source(client(&mock), options(vec![Family::Ipv4]));
    let snap = tokio::time::timeout(Duration::from_secs(5), feed.changed())
        .await
        .unwrap();
    assert!(!snap.is_ready());
    assert!(snap.problem().unwrap().starts_with("BGP is not enabled"));
    task.abort();
}

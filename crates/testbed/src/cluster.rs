//! The Kubernetes side of the services tests: the in-process API server (vipd's own, speaking
//! real HTTP) runs inside the tor namespace, where every node's agent reaches it over its link,
//! and the test drives it with the real `kube` client. Impure: enters a network namespace.

use std::future::Future;
use std::path::Path;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// vipd's in-process API server on an ephemeral port of every address of the current network
/// namespace (call inside [`in_netns`]).
pub async fn api_server() -> fake_apiserver::ApiServer {
    fake_apiserver::ApiServer::start("0.0.0.0:0".parse().unwrap())
        .await
        .expect("API server")
}

/// Whether a Warning Event with `reason` has a note containing `needle`.
pub async fn warned(client: &Client, reason: &str, needle: &str) -> bool {
    event_notes(client, reason)
        .await
        .iter()
        .any(|n| n.contains(needle))
}

/// Every Event's note and reason in every namespace, events.k8s.io and core v1 alike (none if
/// a list fails).
pub async fn all_event_notes(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(l) = Api::<k8s_openapi::api::events::v1::Event>::all(client.clone())
        .list(&Default::default())
        .await
    {
        for e in l.items {
            out.push(format!(
                "{} {} {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.regarding.and_then(|r| r.name).unwrap_or_default()
            ));
        }
    }
    if let Ok(l) = Api::<k8s_openapi::api::core::v1::Event>::all(client.clone())
        .list(&Default::default())
        .await
    {
        for e in l.items {
            out.push(format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            ));
        }
    }
    out
}

/// The notes of the Warning Events with `reason` in namespace `default` (none if the list
/// fails: callers poll).
pub async fn event_notes(client: &Client, reason: &str) -> Vec<String> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "default")
        .list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning")
                })
                .filter_map(|e| e.note)
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `body` on a thread inside network namespace `ns`, on a multi-threaded Tokio runtime
/// built there (its worker threads inherit the namespace, so every socket the API server and the
/// client open lives in `ns`). Blocking waits in `body` do not stall the server: it runs on the
/// workers. A panic in `body` fails the calling test.
pub fn in_netns<R: Send>(ns: &str, body: impl Future<Output = R> + Send) -> R {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            let path = format!("/var/run/netns/{ns}");
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(body)
        });
        match thread.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A kubeconfig pointing at `server` (e.g. `http://10.99.0.2:41234`), no auth (the cluster
/// admin): what an agent on a node uses to reach the API server in the tor namespace.
pub fn write_kubeconfig(path: &Path, server: &str) {
    write_kubeconfig_as(path, server, None);
}

/// As [`write_kubeconfig`], authenticating with a ServiceAccount's bearer `token` (see
/// `ApiServer::token`), so that RBAC decides what the agent may do.
pub fn write_kubeconfig_as(path: &Path, server: &str, token: Option<&str>) {
    let user = match token {
        Some(t) => format!("\n    token: {t}"),
        None => " {}".to_string(),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n\
         users:\n- name: test\n  user:{user}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
         current-context: test\n"
    );
    std::fs::write(path, text).expect("write kubeconfig");
}

/// Writes `dir/kubeconfig-node<i>` for the agent on node `i` of a [`Topology::with_nodes`]
/// topology: the API server on `port` in the tor namespace, reached over node `i`'s link.
pub fn node_kubeconfig(dir: &Path, i: usize, port: u16) -> std::path::PathBuf {
    node_kubeconfig_as(dir, i, port, None)
}

/// As [`node_kubeconfig`], with a ServiceAccount's bearer `token`.
pub fn node_kubeconfig_as(
    dir: &Path,
    i: usize,
    port: u16,
    token: Option<&str>,
) -> std::path::PathBuf {
    let path = dir.join(format!("kubeconfig-node{i}"));
    write_kubeconfig_as(
        &path,
        &format!("http://{}:{port}", super::netns::Topology::tor_v4(i)),
        token,
    );
    path
}

pub fn node(name: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))
    .expect("node")
}

/// A LoadBalancer Service asking for `vips` by kube-vip's annotation.
pub fn lb_service(name: &str, vips: &str, local: bool) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"kube-vip.io/loadbalancerIPs": vips}},
        "spec": {"type": "LoadBalancer",
                 "externalTrafficPolicy": if local { "Local" } else { "Cluster" },
                 "selector": {"app": name},
                 "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }))
    .expect("service")
}

/// One endpoint of a slice: pod address, node, and its conditions.
#[derive(Debug, Clone, Copy)]
pub struct Ep<'a> {
    pub ip: &'a str,
    pub node: &'a str,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl<'a> Ep<'a> {
    pub fn ready(ip: &'a str, node: &'a str) -> Ep<'a> {
        Ep {
            ip,
            node,
            ready: true,
            serving: true,
            terminating: false,
        }
    }

    /// A pod being replaced during a rollout that still serves.
    pub fn terminating_serving(ip: &'a str, node: &'a str) -> Ep<'a> {
        Ep {
            ip,
            node,
            ready: false,
            serving: true,
            terminating: true,
        }
    }
}

/// EndpointSlice `slice` of Service `service` with `endpoints`.
pub fn slice(service: &str, slice: &str, endpoints: &[Ep]) -> EndpointSlice {
    let eps: Vec<_> = endpoints
        .iter()
        .map(|e| {
            json!({"addresses": [e.ip], "nodeName": e.node,
                   "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating}})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }))
    .expect("endpoint slice")
}

pub async fn create_node(client: &Client, name: &str) {
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node(name))
        .await
        .unwrap_or_else(|e| panic!("create node {name}: {e}"));
}

pub async fn create_service(client: &Client, svc: &Service) {
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), svc)
        .await
        .unwrap_or_else(|e| panic!("create service: {e}"));
}

/// Creates the slice, or replaces its endpoints if it exists.
/// Creates `svc` and its EndpointSlice `<name>-1` with one ready endpoint `ep` on `node`.
pub async fn create_served(client: &Client, svc: &Service, node: &str, ep: &str) {
    create_service(client, svc).await;
    let name = svc.metadata.name.as_deref().expect("a named Service");
    put_slice(
        client,
        &slice(name, &format!("{name}-1"), &[Ep::ready(ep, node)]),
    )
    .await;
}

pub async fn put_slice(client: &Client, s: &EndpointSlice) {
    let api = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    let name = s.metadata.name.clone().expect("slice name");
    let patch = json!({"endpoints": serde_json::to_value(&s.endpoints).expect("endpoints")});
    if api.get_opt(&name).await.expect("get slice").is_some() {
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("patch slice {name}: {e}"));
    } else {
        api.create(&PostParams::default(), s)
            .await
            .unwrap_or_else(|e| panic!("create slice {name}: {e}"));
    }
}

/// The IPs in `status.loadBalancer.ingress` of Service `name` (empty if none).
pub async fn ingress(client: &Client, name: &str) -> Vec<String> {
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get service {name}: {e}"));
    svc.status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip)
        .collect()
}

/// Polls `$cond` (which may `.await`) every 50 ms until it holds; evaluates to the time it took.
/// Panics after `$timeout` with `$what` and, if given, `$explain` (log tails).
#[macro_export]
macro_rules! eventually {
    ($timeout:expr, $what:expr, $cond:expr) => {
        $crate::eventually!($timeout, $what, $cond, String::new())
    };
    ($timeout:expr, $what:expr, $cond:expr, $explain:expr) => {{
        let start = std::time::Instant::now();
        loop {
            if $cond {
                break start.elapsed();
            }
            if start.elapsed() > $timeout {
                panic!(
                    "timed out after {:.1?} waiting until {}\n{}",
                    start.elapsed(),
                    $what,
                    $explain
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}

/// Every address on `ifname` in namespace `ns` with its `IFA_PROTO` (iproute2 6.1 does not show
/// it), read by rtnetlink from a thread inside the namespace.
pub fn addresses_with_proto(ns: &str, ifname: &str) -> Vec<(std::net::IpAddr, Option<u8>)> {
    use futures::TryStreamExt;
    use netlink_packet_route::address::AddressAttribute;
    in_netns(ns, async {
        let (conn, handle, _) = rtnetlink::new_connection().expect("netlink socket");
        tokio::spawn(conn);
        let link = handle
            .link()
            .get()
            .match_name(ifname.to_owned())
            .execute()
            .try_next()
            .await
            .expect("link lookup")
            .expect("link exists");
        let msgs: Vec<_> = handle
            .address()
            .get()
            .set_link_index_filter(link.header.index)
            .execute()
            .try_collect()
            .await
            .expect("list addresses");
        msgs.iter()
            .filter_map(|m| {
                let ip = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })?;
                let proto = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Protocol(p) => Some(u8::from(*p)),
                    _ => None,
                });
                Some((ip, proto))
            })
            .collect()
    })
}

/// `GET path` on `addr` over plain HTTP/1.1: the status code and body ((0, "") if unreachable).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}

/// The value of annotation `key` on Service `default/<name>`, if the Service and the
/// annotation exist.
pub async fn annotation(client: &Client, name: &str, key: &str) -> Option<String> {
    Api::<Service>::namespaced(client.clone(), "default")
        .get(name)
        .await
        .ok()?
        .metadata
        .annotations?
        .get(key)
        .cloned()
}

/// The holder of Lease `namespace/name`, if it exists and names one.
pub async fn lease_holder(client: &Client, namespace: &str, name: &str) -> Option<String> {
    let lease =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// The labels of Node `name` (empty if it is not there).
pub async fn node_labels(
    client: &Client,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    Api::<Node>::all(client.clone())
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default()
}

/// The Equinix CCM's BGP annotations of one peer (index 0) as it writes them on a Node, with
/// the MD5 password `s3cret-md5` (base64, as the CCM encodes it).
pub fn metal_annotations(
    peer: &str,
    src: &str,
    multihop: bool,
) -> std::collections::BTreeMap<String, String> {
    [
        ("node-asn", "65000"),
        ("peer-asn", "65530"),
        ("peer-ip", peer),
        ("src-ip", src),
        ("bgp-pass", "czNjcmV0LW1kNQ=="),
        ("peer-multi-hop", if multihop { "true" } else { "false" }),
    ]
    .into_iter()
    .map(|(k, v)| (format!("metal.equinix.com/bgp-peers-0-{k}"), v.to_string()))
    .collect()
}

/// Creates Node `name` carrying `annotations`.
pub async fn create_annotated_node(
    client: &Client,
    name: &str,
    annotations: std::collections::BTreeMap<String, String>,
) {
    let mut n = node(name);
    n.metadata.annotations = Some(annotations);
    Api::<Node>::all(client.clone())
        .create(&Default::default(), &n)
        .await
        .expect("create the Node");
}

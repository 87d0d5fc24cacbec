//! The fake API server of `vipd demo` and the tests, driven over real HTTP through the real
//! `kube` client (and kubectl, when installed). Nothing here reads the store directly: the only
//! store calls are `compact()`, `stop()` and `start_with()` (and the fault mode, `set_faults`).

use fake_apiserver::{ApiServer, ServerOptions, Store};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::reflector::{self, Store as Cache};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::future::Future;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn svc(name: &str, labels: Value) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .unwrap_or_else(|e| panic!("test fixture: {e}"))
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `check` until it holds or WAIT passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(cache: &Cache<Service>) -> Vec<String> {
    let mut n: Vec<String> = cache.state().iter().map(|s| s.name_any()).collect();
    n.sort();
    n
}

/// A reflector over all Services; returns its cache and the watcher's raw results (errors
/// included), so tests can see a 410 go by.
fn reflect(
    client: Client,
    cfg: watcher::Config,
) -> (
    Cache<Service>,
    tokio::sync::mpsc::UnboundedReceiver<Result<(), String>>,
    tokio::task::JoinHandle<()>,
) {
    let (cache, writer) = reflector::store();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(Api::<Service>::all(client), cfg)
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let _ = tx.send(ev.map(|_| ()).map_err(|e| format!("{e:?}")));
        }
    });
    (cache, rx, task)
}

#[tokio::test]
async fn create_get_list_patch_delete_through_the_kube_client() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    let pp = PostParams::default();

    let web = svcs
        .create(&pp, &svc("web", json!({"app": "web", "tier": "front"})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = web.spec.clone().unwrap_or_default();
    assert!(spec
        .cluster_ip
        .as_deref()
        .is_some_and(|ip| ip.starts_with("10.96.")));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    assert_eq!(spec.allocate_load_balancer_node_ports, Some(true));
    let node_port = spec.ports.unwrap_or_default()[0].node_port.unwrap_or(0);
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    assert!(web.metadata.uid.is_some() && web.metadata.creation_timestamp.is_some());
    svcs.create(&pp, &svc("db", json!({"app": "db"})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dup = svcs.create(&pp, &svc("db", json!({}))).await;
    assert_eq!(
        dup.map_err(api_error).err(),
        Some((409, "AlreadyExists".into()))
    );

    let got = svcs.get("web").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.metadata.resource_version, web.metadata.resource_version);

    for (selector, want) in [
        ("app=web", vec!["web"]),
        ("app!=web", vec!["db"]),
        ("tier", vec!["web"]),
        ("!tier", vec!["db"]),
        ("app in (db,x)", vec!["db"]),
        ("app notin (db)", vec!["web"]),
    ] {
        let list = svcs
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap_or_else(|e| panic!("{selector}: {e}"));
        let got: Vec<String> = list.items.iter().map(|s| s.name_any()).collect();
        assert_eq!(got, want, "{selector}");
        assert!(list.metadata.resource_version.is_some());
    }
    let by_field = svcs
        .list(&ListParams::default().fields("metadata.name=db"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_field.items.len(), 1);

    let merged = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kube-vip.io/loadbalancerIPs": "198.18.0.10"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        merged.annotations().get("kube-vip.io/loadbalancerIPs"),
        Some(&"198.18.0.10".to_string())
    );
    assert_ne!(
        merged.metadata.resource_version,
        web.metadata.resource_version
    );

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/labels/extra", "value": "yes"},
        {"op": "replace", "path": "/spec/type", "value": "NodePort"},
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let patched = svcs
        .patch("web", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(patched.labels().get("extra"), Some(&"yes".to_string()));
    let spec = patched.spec.unwrap_or_default();
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(spec.allocate_load_balancer_node_ports, None);
    assert_eq!(
        spec.ports.unwrap_or_default()[0].node_port,
        Some(node_port),
        "the node port survives a type change that still needs it"
    );

    let deleted = svcs
        .delete("web", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(deleted.is_left());
    assert_eq!(
        svcs.get("web").await.map_err(api_error).err(),
        Some((404, "NotFound".into()))
    );
    let left = svcs
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(left.items.len(), 1);
}

#[tokio::test]
async fn status_subresource_writes_only_status_and_main_resource_never_status() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    svcs.create(&PostParams::default(), &svc("web", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Server-side apply on services/status, as vipd writes it.
    let applied = svcs
        .patch_status(
            "web",
            &PatchParams::apply("vipd").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Service",
                "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.10"}]}},
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ingress = |s: &Service| {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(ingress(&applied), ["198.18.0.10"]);

    // A merge patch on /status that also touches spec and labels changes only the status.
    let merged = svcs
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": {"sneaky": "yes"}},
                "spec": {"type": "ClusterIP"},
                "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.11"}]}},
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ingress(&merged), ["198.18.0.11"]);
    assert_eq!(
        merged.spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("LoadBalancer")
    );
    assert!(merged.labels().get("sneaky").is_none());

    // The main resource ignores status, for patches and for updates.
    let main = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"ok": "yes"}}, "status": {"loadBalancer": {}}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ingress(&main), ["198.18.0.11"]);
    assert_eq!(main.labels().get("ok"), Some(&"yes".to_string()));
    let mut replaced = main.clone();
    replaced.status = None;
    let replaced = svcs
        .replace("web", &PostParams::default(), &replaced)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ingress(&replaced), ["198.18.0.11"]);

    // A no-op write keeps the resourceVersion.
    let again = svcs
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.11"}]}}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        again.metadata.resource_version,
        replaced.metadata.resource_version
    );
}

#[tokio::test]
async fn an_update_from_a_stale_resource_version_conflicts() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    let old = svcs
        .create(&PostParams::default(), &svc("web", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}})),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut stale = old.clone();
    stale.labels_mut().insert("v".into(), "stale".into());
    let e = svcs.replace("web", &PostParams::default(), &stale).await;
    assert_eq!(e.map_err(api_error).err(), Some((409, "Conflict".into())));
    // The same write from the current version goes through.
    let mut fresh = svcs.get("web").await.unwrap_or_else(|e| panic!("{e}"));
    fresh.labels_mut().insert("v".into(), "3".into());
    let ok = svcs.replace("web", &PostParams::default(), &fresh).await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn a_watcher_with_a_reflector_sees_add_modify_delete() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = server.client();
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    svcs.create(&PostParams::default(), &svc("before", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (cache, _events, _task) = reflect(client, watcher::Config::default());
    timeout(WAIT, cache.wait_until_ready())
        .await
        .unwrap_or_else(|_| panic!("reflector never ready"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&cache), ["before"]);

    svcs.create(&PostParams::default(), &svc("web", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("ADDED web", || async { names(&cache) == ["before", "web"] }).await;
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"seen": "yes"}}})),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eventually("MODIFIED web", || async {
        cache
            .state()
            .iter()
            .any(|s| s.labels().get("seen").is_some())
    })
    .await;
    svcs.delete("before", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("DELETED before", || async { names(&cache) == ["web"] }).await;
}

#[tokio::test]
async fn streaming_lists_end_the_initial_events_with_a_bookmark() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = server.client();
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    svcs.create(&PostParams::default(), &svc("web", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (cache, _events, _task) = reflect(client, watcher::Config::default().streaming_lists());
    timeout(WAIT, cache.wait_until_ready())
        .await
        .unwrap_or_else(|_| panic!("reflector never ready: no initial-events-end bookmark?"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&cache), ["web"]);
    svcs.create(&PostParams::default(), &svc("db", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("ADDED db", || async { names(&cache) == ["db", "web"] }).await;
}

#[tokio::test]
async fn a_raw_watch_gets_bookmarks_and_selector_transitions() {
    let server = ApiServer::start_with_options(
        Store::new(),
        any_port(),
        ServerOptions {
            bookmark_interval: Duration::from_millis(200),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    svcs.create(&PostParams::default(), &svc("web", json!({"app": "web"})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Bookmarks are on in kube's defaults; say so anyway, it is what is tested.
    let wp = WatchParams {
        bookmarks: true,
        ..WatchParams::default()
    }
    .labels("app=web");
    let mut stream = svcs
        .watch(&wp, "0")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .boxed();
    assert!(matches!(next_event(&mut stream).await, WatchEvent::Added(s) if s.name_any() == "web"));
    // With nothing happening, bookmarks keep coming.
    for _ in 0..2 {
        assert!(
            matches!(next_event(&mut stream).await, WatchEvent::Bookmark(b) if !b.metadata.resource_version.is_empty())
        );
    }
    // Relabelled out of the selector: DELETED; back in: ADDED.
    for (label, want) in [("other", "DELETED"), ("web", "ADDED")] {
        svcs.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": label}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let got = loop {
            match next_event(&mut stream).await {
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Added(_) => break "ADDED",
                WatchEvent::Modified(_) => break "MODIFIED",
                WatchEvent::Deleted(_) => break "DELETED",
                WatchEvent::Error(e) => panic!("{e:?}"),
            }
        };
        assert_eq!(got, want, "relabelled app={label}");
    }
}

#[tokio::test]
async fn a_watch_ends_cleanly_at_its_timeout() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    let stream = svcs
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events: Vec<_> = timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
        .await
        .unwrap_or_else(|_| panic!("the watch outlived its timeoutSeconds"));
    assert!(events.iter().all(|e| e.is_ok()), "{events:?}");
}

#[tokio::test]
async fn after_compaction_an_old_version_is_gone_and_the_watcher_relists() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = server.addr();
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    svcs.create(&PostParams::default(), &svc("a", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let old_rv = svcs
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .metadata
        .resource_version
        .unwrap_or_default();

    // A watcher that has seen `a`; then the server goes away.
    let (cache, mut events, _task) = reflect(server.client(), watcher::Config::default());
    timeout(WAIT, cache.wait_until_ready())
        .await
        .unwrap_or_else(|_| panic!("reflector never ready"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&cache), ["a"]);
    let store = server.stop().await;

    // While the watcher is cut off, the data changes (through another port) and the history
    // is compacted, so the watcher's resourceVersion is gone.
    let side = ApiServer::start_with(store, any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let side_svcs: Api<Service> = Api::default_namespaced(side.client());
    side_svcs
        .create(&PostParams::default(), &svc("b", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    side_svcs
        .delete("a", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    side.store().compact();

    // A raw watch and an exact list from the old version get 410 Expired.
    let mut raw = side_svcs
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .boxed();
    match timeout(WAIT, raw.try_next()).await {
        Ok(Ok(Some(WatchEvent::Error(e)))) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}")
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    let ended = timeout(WAIT, raw.try_next()).await;
    assert!(matches!(ended, Ok(Ok(None))), "{ended:?}");
    let exact = side_svcs
        .list(
            &ListParams::default()
                .at(&old_rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await;
    assert_eq!(
        exact.map_err(api_error).err(),
        Some((410, "Expired".into()))
    );
    let store = side.stop().await;

    // Back on the watcher's address: it gets 410, re-lists, and converges to the truth.
    let server = ApiServer::start_with(store, addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the watcher to re-list", || async {
        names(&cache) == ["b"]
    })
    .await;
    let mut saw_410 = false;
    while let Ok(ev) = events.try_recv() {
        if let Err(e) = ev {
            saw_410 |= e.contains("410");
        }
    }
    assert!(saw_410, "the watcher never reported the 410");

    // And it keeps working afterwards.
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    svcs.create(&PostParams::default(), &svc("c", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("ADDED c", || async { names(&cache) == ["b", "c"] }).await;
}

#[tokio::test]
async fn a_watcher_survives_a_restart_on_the_same_address() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = server.addr();
    let (cache, _events, _task) = reflect(server.client(), watcher::Config::default());
    timeout(WAIT, cache.wait_until_ready())
        .await
        .unwrap_or_else(|_| panic!("reflector never ready"))
        .unwrap_or_else(|e| panic!("{e}"));
    let store = server.stop().await;
    // Stopped means stopped: nothing answers on the address.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let server = ApiServer::start_with(store, addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    svcs.create(&PostParams::default(), &svc("after", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "the watcher to see a change made after the restart",
        || async { names(&cache) == ["after"] },
    )
    .await;
}

#[tokio::test]
async fn endpoint_slices_nodes_and_recorder_events() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = server.client();
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"generateName": "web-", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "n1", "conditions": {"ready": true}}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let made = slices
        .create(&PostParams::default(), &slice)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(made.name_any().starts_with("web-"));
    let found = Api::<EndpointSlice>::all(client.clone())
        .list(&ListParams::default().labels("kubernetes.io/service-name"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.items.len(), 1);

    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}}))
        .unwrap_or_else(|e| panic!("{e}"));
    nodes
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ready
            .status
            .and_then(|s| s.conditions)
            .map(|c| c[0].status.clone()),
        Some("True".into())
    );

    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    let web = svcs
        .create(&PostParams::default(), &svc("web", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "vipd".into());
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Announced".into(),
        note: Some("198.18.0.10 announced".into()),
        action: "Announce".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&web, &());
    recorder
        .publish(&event, &reference)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The same event again is a series: kube patches the first one.
    recorder
        .publish(&event, &reference)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = Api::<K8sEvent>::default_namespaced(client)
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].reason.as_deref(), Some("Announced"));
    assert!(events.items[0].series.is_some());
}

#[tokio::test]
async fn errors_are_status_objects_with_the_real_codes() {
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = server.client();
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    svcs.create(&PostParams::default(), &svc("web", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let send = |method: &str, path: &str, ct: &str, body: &str| {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(body.as_bytes().to_vec())
            .unwrap_or_else(|e| panic!("{e}"));
        let client = client.clone();
        async move {
            match client.request::<Value>(req).await {
                Ok(v) => panic!("expected an error, got {v}"),
                Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
                Err(other) => panic!("{other:?}"),
            }
        }
    };
    let svc_path = "/api/v1/namespaces/default/services";
    let cases = [
        (
            "GET",
            "/api/v1/pods",
            "application/json",
            "",
            404,
            "NotFound",
        ),
        (
            "GET",
            "/apis/apps/v1",
            "application/json",
            "",
            404,
            "NotFound",
        ),
        (
            "POST",
            svc_path,
            "application/json",
            "{not json",
            400,
            "BadRequest",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/services/web",
            "text/plain",
            "{}",
            415,
            "UnsupportedMediaType",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services/web",
            "application/json",
            "{}",
            405,
            "MethodNotAllowed",
        ),
        (
            "GET",
            &format!("{svc_path}?labelSelector=a%20in%20(b"),
            "application/json",
            "",
            400,
            "BadRequest",
        ),
        (
            "POST",
            "/api/v1/namespaces/nowhere/services",
            "application/json",
            r#"{"metadata":{"name":"x"}}"#,
            404,
            "NotFound",
        ),
        (
            "POST",
            svc_path,
            "application/json",
            r#"{"metadata":{"name":"Bad_Name"}}"#,
            422,
            "Invalid",
        ),
    ];
    for (method, path, ct, body, code, reason) in cases {
        let (got_code, got_reason, message) = send(method, path, ct, body).await;
        assert_eq!(
            (got_code, got_reason.as_str()),
            (code, reason),
            "{method} {path}: {message}"
        );
    }
    let (_, _, message) = send("POST", svc_path, "application/json", "{not json").await;
    assert!(message.contains("not a valid Service"), "{message}");
}

type ServiceEvents = futures::stream::BoxStream<'static, kube::Result<WatchEvent<Service>>>;

async fn next_event(stream: &mut ServiceEvents) -> WatchEvent<Service> {
    timeout(WAIT, stream.try_next())
        .await
        .unwrap_or_else(|_| panic!("no watch event"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("watch ended"))
}

/// The next line `kubectl get svc -w` prints about `web`.
async fn next_web_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    loop {
        let line = timeout(WAIT, lines.recv())
            .await
            .unwrap_or_else(|_| panic!("kubectl get -w printed nothing"))
            .unwrap_or_else(|| panic!("kubectl get -w exited"));
        if line.starts_with("web ") {
            return line;
        }
    }
}

// ---- kubectl ----------------------------------------------------------------------------

/// Whether kubectl can run; if not, says so loudly (a skip must never look like a pass).
fn kubectl_or_skip(test: &str) -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let line = format!("SKIPPED {test}: needs kubectl");
        if std::env::var_os("VIPD_NO_SKIP").is_some_and(|v| v == "1") {
            panic!("{line} (VIPD_NO_SKIP=1)");
        }
        let _ = writeln!(std::io::stderr(), "\n*** {line} ***");
    }
    ok
}

/// kubectl against one server, with its own kubeconfig and discovery cache.
struct Kubectl {
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &ApiServer) -> Kubectl {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        server
            .write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap_or_else(|e| panic!("{e}"));
        Kubectl { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path());
        c
    }

    /// Runs kubectl off the runtime's threads; returns stdout, failing the test on an error.
    async fn run(&self, args: &[&str]) -> String {
        let mut cmd = self.command(args);
        let what = args.join(" ");
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("kubectl {what}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {what} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

const LB_YAML: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: web
spec:
  type: LoadBalancer
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_reads_annotates_watches_and_deletes() {
    if !kubectl_or_skip("kubectl_creates_reads_annotates_watches_and_deletes") {
        return;
    }
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kubectl = Kubectl::new(&server);
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    let manifest = kubectl.dir.path().join("svc.yaml");
    std::fs::write(&manifest, LB_YAML).unwrap_or_else(|e| panic!("{e}"));
    let manifest = manifest.to_string_lossy().into_owned();

    // Created with client-side validation on (no --validate=false).
    let out = kubectl.run(&["create", "-f", &manifest]).await;
    assert!(out.contains("service/web created"), "{out}");
    let yaml = kubectl.run(&["get", "svc", "web", "-o", "yaml"]).await;
    assert!(yaml.contains("name: web"), "{yaml}");
    assert!(yaml.contains("clusterIP: 10.96."), "{yaml}");

    kubectl
        .run(&[
            "annotate",
            "svc",
            "web",
            "kube-vip.io/loadbalancerIPs=198.18.0.10",
        ])
        .await;
    let web = svcs.get("web").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        web.annotations().get("kube-vip.io/loadbalancerIPs"),
        Some(&"198.18.0.10".to_string())
    );

    // `kubectl get svc -w` prints a line per change made through the client.
    let mut child = kubectl
        .command(&["get", "svc", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    next_web_line(&mut lines).await; // the initial listing
    for ip in ["198.18.0.11", "198.18.0.12"] {
        svcs.patch_status(
            "web",
            &PatchParams::apply("vipd").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service",
                "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let line = next_web_line(&mut lines).await;
        assert!(
            line.contains(ip),
            "kubectl get -w printed {line:?} for {ip}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();

    let out = kubectl.run(&["delete", "svc", "web"]).await;
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(
        svcs.get("web").await.map_err(api_error).err(),
        Some((404, "NotFound".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_service_loadbalancer_sends_protobuf_that_is_understood() {
    if !kubectl_or_skip("kubectl_create_service_loadbalancer_sends_protobuf_that_is_understood") {
        return;
    }
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kubectl = Kubectl::new(&server);
    kubectl
        .run(&["create", "service", "loadbalancer", "lb", "--tcp=80:8080"])
        .await;
    let svcs: Api<Service> = Api::default_namespaced(server.client());
    let lb = svcs.get("lb").await.unwrap_or_else(|e| panic!("{e}"));
    let spec = lb.spec.clone().unwrap_or_default();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    let port = spec.ports.unwrap_or_default().into_iter().next();
    assert_eq!(port.as_ref().map(|p| p.port), Some(80));
    assert_eq!(
        port.and_then(|p| p.target_port),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
    );
    assert_eq!(lb.labels().get("app"), Some(&"lb".to_string()));
    let listed = kubectl
        .run(&["get", "svc", "-l", "app=lb", "-o", "name"])
        .await;
    assert_eq!(listed.trim(), "service/lb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_token_and_rbac_decide_what_a_service_account_may_do() {
    if !kubectl_or_skip("kubectl_create_token_and_rbac_decide_what_a_service_account_may_do") {
        return;
    }
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let admin = Kubectl::new(&server);
    // Everything through kubectl's typed clients (protobuf bodies), as an operator would.
    admin
        .run(&["create", "serviceaccount", "kube-vip", "-n", "kube-system"])
        .await;
    admin
        .run(&[
            "create",
            "clusterrole",
            "svc-reader",
            "--verb=get,list,watch",
            "--resource=services",
        ])
        .await;
    admin
        .run(&[
            "create",
            "clusterrolebinding",
            "svc-reader",
            "--clusterrole=svc-reader",
            "--serviceaccount=kube-system:kube-vip",
        ])
        .await;
    admin
        .run(&["create", "service", "loadbalancer", "lb", "--tcp=80:8080"])
        .await;
    let token = admin
        .run(&["create", "token", "kube-vip", "-n", "kube-system"])
        .await;
    let token = token.trim();
    assert!(!token.is_empty());

    // kubectl sends no credentials over plain HTTP (clientcmd reads a user's token only for
    // TLS), so the token is used through kube's client, as vipd uses it.
    let client = token_client(&server, token).await;
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    let lb = svcs.get("lb").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lb.name_any(), "lb");
    assert_eq!(
        svcs.list(&Default::default())
            .await
            .map(|l| l.items.len())
            .ok(),
        Some(1)
    );
    let denied = svcs
        .patch(
            "lb",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .map_err(api_error)
        .err();
    assert_eq!(denied.as_ref().map(|(code, _)| *code), Some(403));
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    match nodes.list(&Default::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(
            e.message,
            "nodes is forbidden: User \"system:serviceaccount:kube-system:kube-vip\" cannot list \
             resource \"nodes\" in API group \"\" at the cluster scope"
        ),
        other => panic!("listing nodes: {other:?}"),
    }
    let forged: Api<Service> = Api::default_namespaced(token_client(&server, "forged").await);
    assert_eq!(
        forged.get("lb").await.map_err(api_error).err(),
        Some((401, "Unauthorized".into()))
    );
    let refused = server.refused();
    assert!(
        refused.iter().any(|r| r
            == "PATCH /api/v1/namespaces/default/services/lb: services \"lb\" is forbidden: User \
                \"system:serviceaccount:kube-system:kube-vip\" cannot patch resource \"services\" in \
                API group \"\" in the namespace \"default\""),
        "{refused:?}"
    );
    // The kubeconfig without credentials stays cluster-admin.
    admin.run(&["annotate", "svc", "lb", "a=b"]).await;
}

/// A kube client for `server` that sends `token`, built from a kubeconfig as vipd builds one.
async fn token_client(server: &ApiServer, token: &str) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&server.kubeconfig_with_token(token))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("{e}"))
}

/// What kube's `Recorder` writes (events.k8s.io) is what `kubectl get events` and `kubectl
/// describe` show (core v1), as on kube-apiserver, where both are views of one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_events_show_in_kubectl_get_events_and_describe() {
    if !kubectl_or_skip("recorded_events_show_in_kubectl_get_events_and_describe") {
        return;
    }
    let server = ApiServer::start(any_port())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = server.client();
    let web = Api::<Service>::default_namespaced(client.clone())
        .create(&PostParams::default(), &svc("web", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "vipd".into());
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "InvalidLoadBalancerIP".into(),
        note: Some("annotation kube-vip.io/loadbalancerIPs: \"oops\" is not an IP address".into()),
        action: "Announce".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&web, &());
    for _ in 0..2 {
        recorder
            .publish(&event, &reference)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let kubectl = Kubectl::new(&server);
    let listed: Value = serde_json::from_str(&kubectl.run(&["get", "events", "-o", "json"]).await)
        .unwrap_or_else(|e| panic!("{e}"));
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{listed}");
    let e = &items[0];
    assert_eq!(e["reason"], "InvalidLoadBalancerIP");
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["involvedObject"]["name"], "web");
    assert_eq!(e["count"], 2, "the series shows as a count");
    assert!(
        e["message"].as_str().unwrap_or("").contains("\"oops\""),
        "{e}"
    );
    let described = kubectl.run(&["describe", "service", "web"]).await;
    assert!(
        described.contains("InvalidLoadBalancerIP"),
        "describe shows the Event:\n{described}"
    );
}

/// The chaos tests' fault mode: every request fails with kube-apiserver's 500 `InternalError`
/// (or waits first) until the faults are cleared, and a compaction sends a watch resumed from
/// before it `410 Gone`.
#[tokio::test]
async fn injected_faults_answer_500_or_wait_until_cleared() {
    let api = ApiServer::start(any_port()).await.unwrap();
    let services: Api<Service> = Api::namespaced(api.client(), "default");
    services
        .create(&PostParams::default(), &svc("web", json!({})))
        .await
        .unwrap();
    api.set_faults(fake_apiserver::Faults {
        errors_per_mille: 1000,
        delay: Duration::ZERO,
    });
    let (code, reason) = api_error(services.get("web").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    api.set_faults(fake_apiserver::Faults {
        errors_per_mille: 0,
        delay: Duration::from_millis(300),
    });
    let t0 = std::time::Instant::now();
    services.get("web").await.expect("served, late");
    assert!(t0.elapsed() >= Duration::from_millis(300));
    api.set_faults(fake_apiserver::Faults::default());
    let listed = services.list(&Default::default()).await.unwrap();
    let rv = listed.metadata.resource_version.unwrap();
    services
        .create(&PostParams::default(), &svc("api", json!({})))
        .await
        .unwrap();
    api.compact();
    let from_before = WatchParams::default();
    let mut stream = services.watch(&from_before, &rv).await.unwrap().boxed();
    let first = stream.try_next().await;
    assert!(
        matches!(&first, Ok(Some(WatchEvent::Error(e))) if e.code == 410) || first.is_err(),
        "{first:?}"
    );
}

//! [I/O] `vipd demo`: Services get routable VIPs end to end, with no cluster and no root. Everything
//! runs in this process over loopback: vipd's own API server (real HTTP, the one the tests
//! use), a stand-in top-of-rack router (a passive vipd speaker, AS 65001, that reports what it
//! learns) and the vipd agent in services mode, talking to the API server through a kubeconfig
//! exactly as it would to a cluster. The demo creates Services and endpoints through the API and
//! prints each VIP's path: created → announced to the router → status written, with timings.

use crate::bgp::driver::PeerEvent;
use crate::bgp::speaker::{Speaker, SpeakerConfig, SpeakerError};
use crate::bgp::types::{Asn, HoldTime, RouterId};
use crate::config::{validate, ConfigError, RawSettings};
use crate::decide::ingress::current_ingress;
use crate::error::RunError;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;
use vipd_providers::{MpBgpSpec, PeerSpec};

use fake_apiserver::ApiServer;

const NODE: &str = "demo-node";
const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Speaker(#[from] SpeakerError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the in-process API server: {0}")]
    ApiServer(std::io::Error),
    #[error("the API request to {what} failed: {source}")]
    Api { what: String, source: kube::Error },
    #[error("no {0} within 15 s")]
    Timeout(String),
    #[error("the vipd agent stopped: {0}")]
    Agent(Box<RunError>),
    #[error("cannot write the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: std::io::Error,
    },
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Api { what, source }
}

/// Runs the walk-through; with `keep`, stays up (printing the router's table as it changes)
/// until Ctrl-C so a user can try `kubectl` against it.
pub async fn run(keep: bool) -> Result<(), DemoError> {
    let t0 = Instant::now();
    let at = || format!("{:>8.1} ms", t0.elapsed().as_secs_f64() * 1000.0);

    let api = ApiServer::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(DemoError::ApiServer)?;
    let dir = std::env::temp_dir().join(format!("vipd-demo-{}", std::process::id()));
    let kubeconfig = write_kubeconfig(&api, &dir)?;
    let client = api.client();
    println!(
        "{}  API server on {} (kubeconfig {})",
        at(),
        api.url(),
        kubeconfig.display()
    );

    let mut router = Speaker::start(router_config()).await?;
    let mut events = router.events();
    let listen = router.listening()[0];
    router
        .set_peers(vec![PeerSpec::new(IpAddr::from([127, 0, 0, 1]), 65000)])
        .await;
    println!("{}  demo router (AS 65001) listening on {listen}", at());

    Api::<Node>::all(client.clone())
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": NODE}})),
        )
        .await
        .map_err(api_err("create node"))?;
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(crate::agent::run(
        agent_config(listen, &kubeconfig)?,
        async {
            let _ = stopped.await;
        },
    ));
    println!(
        "{}  vipd agent started: services mode, node {NODE}, AS 65000",
        at()
    );
    let mut table = BTreeSet::new();
    wait_for(&mut events, &mut table, "BGP session", |e, _| {
        matches!(e, PeerEvent::Up { .. })
    })
    .await?;
    println!("{}  BGP session established", at());

    for (name, vip) in [("web", "198.51.100.10"), ("api", "198.51.100.11")] {
        println!();
        let created = Instant::now();
        create_service(&client, name, vip).await?;
        put_endpoints(&client, name, &["10.244.0.5"]).await?;
        println!("{}  Service default/{name} created: kube-vip.io/loadbalancerIPs={vip}, 1 ready endpoint", at());
        let prefix = host(vip);
        wait_for(
            &mut events,
            &mut table,
            &format!("route {prefix}"),
            |_, t| t.contains(&prefix),
        )
        .await?;
        println!(
            "{}  router learned {prefix} (next hop 127.0.0.1, AS path 65000)   +{}",
            at(),
            since(created)
        );
        wait_ingress(&client, name, &[vip]).await?;
        println!(
            "{}  status.loadBalancer.ingress = [{vip}]                          +{}",
            at(),
            since(created)
        );
    }

    println!();
    create_service(&client, "broken", "198.51.100.300").await?;
    println!(
        "{}  Service default/broken created with loadbalancerIPs=198.51.100.300",
        at()
    );
    let warning = wait_warning(&client, "broken").await?;
    println!("{}  Warning event on default/broken: {warning}", at());

    println!();
    let scaled = Instant::now();
    put_endpoints(&client, "web", &[]).await?;
    println!("{}  default/web scaled to zero endpoints", at());
    let web = host("198.51.100.10");
    wait_for(&mut events, &mut table, "withdrawal", |_, t| {
        !t.contains(&web)
    })
    .await?;
    println!(
        "{}  router withdrew {web}                                       +{}",
        at(),
        since(scaled)
    );
    // The address stays the Service's (as kube-vip keeps it): only the route goes.
    wait_ingress(&client, "web", &["198.51.100.10"]).await?;
    println!(
        "{}  status.loadBalancer.ingress of default/web kept: [198.51.100.10]",
        at()
    );

    if keep {
        keep_running(&kubeconfig, &mut events, &mut table).await;
    }

    println!();
    let _ = stop_agent.send(());
    let down = wait_for(&mut events, &mut table, "Cease", |e, _| {
        matches!(e, PeerEvent::Down { .. })
    })
    .await?;
    if let PeerEvent::Down { reason, .. } = down {
        println!(
            "{}  vipd shut down; the router saw: {reason}; it holds {} routes",
            at(),
            table.len()
        );
    }
    if let Ok(Err(e)) = agent.await {
        return Err(DemoError::Agent(Box::new(e)));
    }
    router.shutdown("demo over", Duration::from_secs(1)).await;
    api.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("demo complete: created → announced → status written, a Warning for bad input, withdraw on zero endpoints, Cease on shutdown");
    Ok(())
}

fn since(t: Instant) -> String {
    format!("{:.1} ms", t.elapsed().as_secs_f64() * 1000.0)
}

fn host(vip: &str) -> IpNet {
    IpNet::from(vip.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0])))
}

fn object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| unreachable!("the demo's own objects parse: {e}"))
}

fn write_kubeconfig(api: &ApiServer, dir: &std::path::Path) -> Result<PathBuf, DemoError> {
    let path = dir.join("kubeconfig");
    std::fs::create_dir_all(dir)
        .and_then(|()| api.write_kubeconfig(&path))
        .map_err(|source| DemoError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    Ok(path)
}

/// The agent's settings, given the way a DaemonSet gives them: kube-vip's variable names.
fn agent_config(
    router: SocketAddr,
    kubeconfig: &std::path::Path,
) -> Result<crate::config::Config, DemoError> {
    let set = |v: &str| Some(v.to_owned());
    Ok(validate(&RawSettings {
        bgp_enable: set("true"),
        bgp_as: set("65000"),
        bgp_routerid: set("192.0.2.1"),
        bgp_peers: Some(format!("{}:65001::false:{}", router.ip(), router.port())),
        bgp_hold_time: set("9"),
        svc_enable: set("true"),
        vip_nodename: set(NODE),
        k8s_config_file: Some(kubeconfig.display().to_string()),
        // The demo ends in a shutdown (the node goes away), not a restart: a Cease.
        bgp_restart_time: set("0"),
        ..RawSettings::default()
    })?)
}

fn router_config() -> SpeakerConfig {
    SpeakerConfig {
        local_as: Asn(65001),
        router_id: RouterId([192, 0, 2, 254].into()),
        hold_time: HoldTime::new(9).unwrap_or_else(|| unreachable!("9 s is a valid hold time")),
        keepalive: None,
        passive: true,
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        source_ip: None,
        source_if: None,
        mpbgp: MpBgpSpec::default(),
        backoff: Default::default(),
        graceful_restart: None,
        bfd: None,
    }
}

async fn create_service(client: &Client, name: &str, vip: &str) -> Result<(), DemoError> {
    let svc: Service = object(json!({
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"kube-vip.io/loadbalancerIPs": vip}},
        "spec": {"type": "LoadBalancer", "selector": {"app": name},
                 "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }));
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .map_err(api_err(format!("create service {name}")))?;
    Ok(())
}

/// The Service's EndpointSlice with these ready pod addresses on the demo node.
async fn put_endpoints(client: &Client, name: &str, pods: &[&str]) -> Result<(), DemoError> {
    let endpoints: Vec<_> = pods
        .iter()
        .map(|ip| json!({"addresses": [ip], "nodeName": NODE, "conditions": {"ready": true}}))
        .collect();
    let slice: EndpointSlice = object(json!({
        "metadata": {"name": format!("{name}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }));
    let api = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    api.patch(
        &format!("{name}-1"),
        &PatchParams::apply("vipd-demo").force(),
        &Patch::Apply(&slice),
    )
    .await
    .map_err(api_err(format!("apply endpointslice {name}-1")))?;
    Ok(())
}

async fn wait_ingress(client: &Client, name: &str, want: &[&str]) -> Result<(), DemoError> {
    let want: Vec<IpAddr> = want.iter().filter_map(|v| v.parse().ok()).collect();
    let api = Api::<Service>::namespaced(client.clone(), "default");
    let poll = async {
        loop {
            if let Ok(svc) = api.get(name).await {
                if current_ingress(&svc) == want {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .map_err(|_| DemoError::Timeout(format!("status.loadBalancer.ingress {want:?} on {name}")))
}

/// The note of the first Warning event about Service `name`.
async fn wait_warning(client: &Client, name: &str) -> Result<String, DemoError> {
    let api = Api::<Event>::namespaced(client.clone(), "default");
    let poll = async {
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                let found = list.items.into_iter().find(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                });
                if let Some(e) = found {
                    return format!(
                        "{}: {}",
                        e.reason.unwrap_or_default(),
                        e.note.unwrap_or_default()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .map_err(|_| DemoError::Timeout(format!("Warning event on {name}")))
}

async fn keep_running(
    kubeconfig: &std::path::Path,
    events: &mut Receiver<PeerEvent>,
    table: &mut BTreeSet<IpNet>,
) {
    println!(
        "\nRunning until Ctrl-C. Try, in another shell:\n  export KUBECONFIG={}\n  kubectl get svc -o wide\n  \
         kubectl create service loadbalancer demo --tcp=80:8080\n  \
         kubectl annotate svc demo kube-vip.io/loadbalancerIPs=198.51.100.20 kube-vip.io/allow-reconcile-without-endpoints=true\n  \
         kubectl get svc demo -o yaml\n  kubectl delete svc demo\nThe router's table follows:",
        kubeconfig.display()
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return,
            Some(e) = events.recv() => {
                apply(table, &e);
                if let PeerEvent::Learned { announced, withdrawn, .. } = e {
                    for p in announced { println!("  + {p}"); }
                    for p in withdrawn { println!("  - {p}"); }
                }
            }
        }
    }
}

fn apply(table: &mut BTreeSet<IpNet>, e: &PeerEvent) {
    match e {
        PeerEvent::Learned {
            announced,
            withdrawn,
            ..
        } => {
            table.extend(announced.iter().copied());
            for w in withdrawn {
                table.remove(w);
            }
        }
        PeerEvent::Down { .. } => table.clear(),
        PeerEvent::Up { .. } => {}
    }
}

/// Applies router events to `table` until `done` says so; returns the event that finished it.
async fn wait_for(
    events: &mut Receiver<PeerEvent>,
    table: &mut BTreeSet<IpNet>,
    what: &str,
    done: impl Fn(&PeerEvent, &BTreeSet<IpNet>) -> bool,
) -> Result<PeerEvent, DemoError> {
    let wait = async {
        while let Some(e) = events.recv().await {
            apply(table, &e);
            if done(&e, table) {
                return Some(e);
            }
        }
        None
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .ok()
        .flatten()
        .ok_or_else(|| DemoError::Timeout(what.to_owned()))
}

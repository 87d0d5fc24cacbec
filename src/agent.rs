//! [I/O] The agent: starts what the mode needs and runs the one owner loop ([`crate::owner`])
//! with the mode's executor — ARP (no speaker), BGP services mode (the speaker and its peers
//! first), routing-table mode (BGP mode's executor with a kernel table instead of a speaker),
//! or the static VIPs (`vip_address`, `vip_file`, re-read on SIGHUP). On shutdown the
//! loop stops in the order [`crate::plan::shutdown`] gives.

use crate::bgp::speaker::{PeerBoard, Speaker, SpeakerConfig};
use crate::bgp::types::{host_routes, Asn, RouterId};
use crate::config::{Config, ConfigError, RouterIdSource};
use crate::control_plane::ControlPlaneVip;
pub use crate::error::RunError;
use crate::netif::Interfaces;
use crate::observe::Observer;
use crate::observe::Readiness;
use crate::owner::static_vips::{load_vips, Detached, StaticVips};
use crate::peers::PeerSources;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Runs until `shutdown` completes, then withdraws everything by Cease and returns.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    if let Some(svc) = &cfg.services {
        if let Some(arp) = &svc.arp {
            return run_arp(&cfg, svc, arp, shutdown).await;
        }
        if let Some(spec) = svc.routing_table {
            return run_table(&cfg, svc, spec, shutdown).await;
        }
    }
    // A VIP file that cannot be used stops the start before any session or HTTP endpoint
    // comes up (a peer would see a connect and a Cease).
    let static_vips = match &cfg.services {
        None => load_vips(&cfg).await?,
        Some(_) => Vec::new(),
    };
    let ifs = Interfaces::read().map_err(|source| RunError::Io {
        what: "the local interface addresses".into(),
        source,
    })?;
    let router_id = resolve_router_id(&cfg.bgp.router_id, &ifs)?;
    check_sources(&cfg, &ifs)?;
    let client = match (&cfg.services, &cfg.bgp.annotations) {
        (None, None) => None,
        _ => {
            Some(crate::kube::client::client_to(cfg.kubeconfig.as_deref(), &cfg.kube_server).await?)
        }
    };
    let readiness = Readiness::default();
    let node = cfg.node_name.clone().unwrap_or_else(host_name);
    let mode = match (&cfg.services, &cfg.control_plane) {
        (Some(s), _) if !s.watch_services => "bgp-controlplane",
        (Some(_), _) => "bgp",
        (None, Some(_)) => "bgp-controlplane",
        (None, None) => "bgp-static",
    };
    // A CA file that cannot be read stops the start, before any session comes up.
    let control_plane = cfg
        .control_plane
        .as_ref()
        .map(ControlPlaneVip::start)
        .transpose()?;
    let observer = Observer::new(&node, mode, readiness.clone());
    serve_http(&cfg, &readiness, &observer).await?;
    let mut peers = PeerSources::new(
        cfg.bgp.peers.clone(),
        matches!(cfg.bgp.router_id, RouterIdSource::Fixed(_)),
        readiness.clone(),
    );
    if let (Some(prefix), Some(client), Some(node)) =
        (&cfg.bgp.annotations, &client, &cfg.node_name)
    {
        peers.watch_annotations(client.clone(), node, prefix);
    }
    if let (Some(metal), Some(node)) = (&cfg.metal, &cfg.node_name) {
        let (feed, task) = metal_source(metal, node).await?;
        peers.add_feed(feed, task);
        if metal.peer_routes {
            peers.install_routes()?;
        }
    }
    let mut speaker = Speaker::start(speaker_config(&cfg, router_id)).await?;
    observer.set_peers(speaker.board());
    if let Some(after) = cfg.bgp.unready_after {
        tokio::spawn(watch_stuck_sessions(
            speaker.board(),
            readiness.clone(),
            after,
        ));
    }
    info!(
        router_id = %router_id.0,
        local_as = cfg.bgp.local_as,
        peers = peers.current().len(),
        "vipd started"
    );
    // The static VIPs, read before anything starts: the speaker holds them before any session
    // starts, so the first UPDATEs carry the whole table and End-of-RIB never precedes it.
    if cfg.services.is_none() {
        speaker.set_routes(host_routes(&static_vips));
    }
    peers.apply(&mut speaker).await;
    match (&cfg.services, client) {
        (Some(svc), Some(client)) => {
            let bgp = crate::owner::bgp::Bgp::new(&cfg, svc, speaker, peers, control_plane);
            crate::owner::run(bgp, svc, client, readiness, observer, shutdown).await
        }
        _ => {
            let exec = StaticVips::new(&cfg, static_vips, speaker, peers, observer, control_plane);
            crate::owner::drive(exec, &mut Detached, shutdown).await
        }
    }
}

/// Routing-table mode: services mode with the VIPs as routes in a kernel table, for a routing
/// daemon on the host to announce; no speaker, no peers.
async fn run_table(
    cfg: &Config,
    svc: &crate::config::ServicesSettings,
    spec: crate::table::route::TableSpec,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // The interface and the table are checked (and an earlier vipd's routes adopted) before
    // anything else starts.
    let table = crate::table::kernel::KernelTable::open(&svc.interface, spec).await?;
    let (control_plane, client, readiness, observer) = start_without_bgp(cfg, svc, "table").await?;
    info!(
        node = %svc.node_name,
        interface = %svc.interface,
        table = spec.table,
        protocol = spec.protocol,
        "vipd started in routing-table mode"
    );
    if svc.interface == "lo" {
        warn!("routing-table mode routes through vip_interface=lo: the kernel turns IPv6 unicast routes through lo into unreachable routes; set vip_interface to the interface the VIPs are reached through");
    }
    let peers = PeerSources::new(Vec::new(), false, readiness.clone());
    let exec = crate::owner::bgp::Bgp::with_table(cfg, svc, table, peers, control_plane);
    crate::owner::run(exec, svc, client, readiness, observer, shutdown).await
}

/// What services mode without a speaker starts with: the control-plane VIP's check (a CA file
/// that cannot be read stops the start), the Kubernetes client, readiness, and the observer
/// behind /metrics and `vipd status` (mode `<mode>`, or `<mode>-controlplane` when no Service
/// is watched), served over HTTP.
async fn start_without_bgp(
    cfg: &Config,
    svc: &crate::config::ServicesSettings,
    mode: &str,
) -> Result<(Option<ControlPlaneVip>, kube::Client, Readiness, Observer), RunError> {
    let control_plane = cfg
        .control_plane
        .as_ref()
        .map(ControlPlaneVip::start)
        .transpose()?;
    let client =
        crate::kube::client::client_to(cfg.kubeconfig.as_deref(), &cfg.kube_server).await?;
    let readiness = Readiness::default();
    let mode = if svc.watch_services {
        mode.to_owned()
    } else {
        format!("{mode}-controlplane")
    };
    let observer = Observer::new(&svc.node_name, &mode, readiness.clone());
    serve_http(cfg, &readiness, &observer).await?;
    Ok((control_plane, client, readiness, observer))
}

/// ARP/NDP mode: services mode without a BGP speaker or peers.
async fn run_arp(
    cfg: &Config,
    svc: &crate::config::ServicesSettings,
    arp: &crate::config::ArpSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let (control_plane, client, readiness, observer) = start_without_bgp(cfg, svc, "arp").await?;
    info!(node = %svc.node_name, "vipd started in ARP/NDP mode");
    let arp = crate::owner::arp::Arp::new(svc, arp, control_plane);
    crate::owner::run(arp, svc, client, readiness, observer, shutdown).await
}

/// The Equinix Metal API provider: `cloud-sa.json` with the env overrides, the device found by
/// node name, then by the OS host name.
async fn metal_source(
    metal: &crate::config::MetalSettings,
    node: &str,
) -> Result<(vipd_providers::PeerFeed, tokio::task::JoinHandle<()>), RunError> {
    use vipd_providers::equinix::{
        spawn_metal_source, ClientOptions, CloudConfig, MetalClient, MetalEnv, MetalSourceOptions,
    };
    let file = match &metal.provider_config {
        Some(path) => {
            Some(
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| RunError::Io {
                        what: format!("provider_config {}", path.display()),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let env = MetalEnv::from_lookup(|k| std::env::var(k).ok());
    let cloud = CloudConfig::from_parts(file.as_deref(), env)
        .map_err(|e| RunError::Provider(e.to_string()))?;
    let client = MetalClient::new(&cloud, ClientOptions::default())
        .map_err(|e| RunError::Provider(e.to_string()))?;
    let mut names = vec![node.to_owned()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim().to_owned();
        if !host.is_empty() && host != node {
            names.push(host);
        }
    }
    Ok(spawn_metal_source(client, MetalSourceOptions::new(names)))
}

/// The OS host name, for metrics and status when no node name is set.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Keeps `/readyz` failing while a session has been down for `after` (see
/// [`crate::report::stuck_sessions`]); runs for the life of the agent.
async fn watch_stuck_sessions(board: PeerBoard, readiness: Readiness, after: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut was_stuck = false;
    loop {
        tick.tick().await;
        let stuck = crate::report::stuck_sessions(&board.snapshot(), Instant::now(), after);
        if stuck.is_empty() {
            if was_stuck {
                info!("every BGP session is back: ready again");
            }
            readiness.ready("bgp");
        } else {
            if !was_stuck {
                warn!("not ready: {}", stuck.join("; "));
            }
            readiness.not_ready("bgp", stuck.join("; "));
        }
        was_stuck = !stuck.is_empty();
    }
}

pub fn speaker_config(cfg: &Config, router_id: RouterId) -> SpeakerConfig {
    let b = &cfg.bgp;
    SpeakerConfig {
        local_as: Asn(b.local_as),
        router_id,
        hold_time: b.hold_time,
        keepalive: b.keepalive,
        passive: b.passive,
        listen: vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), b.listen_port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), b.listen_port),
        ],
        source_ip: b.source_ip,
        source_if: b.source_if.clone(),
        mpbgp: b.mpbgp.clone(),
        backoff: Default::default(),
        graceful_restart: b.graceful_restart,
        bfd: b.bfd,
    }
}

/// Whether a network interface of this name exists here (with or without addresses).
fn interface_exists(ifname: &str) -> bool {
    !ifname.contains('/') && std::path::Path::new("/sys/class/net").join(ifname).exists()
}

/// `bgp_sourceif` must name an interface of this host and `bgp_sourceip` one of its addresses:
/// otherwise every connect fails, retried forever, for a setting that cannot work.
fn check_sources(cfg: &Config, ifs: &Interfaces) -> Result<(), ConfigError> {
    if let Some(ifname) = &cfg.bgp.source_if {
        if !interface_exists(ifname) {
            return Err(ConfigError {
                setting: "bgp_sourceif (--sourceIF)".into(),
                value: ifname.clone(),
                reason: "is not an interface of this host".into(),
            });
        }
    }
    if let Some(ip) = cfg.bgp.source_ip {
        if ifs.holding(ip).is_none() {
            return Err(ConfigError {
                setting: "bgp_sourceip (--sourceIP)".into(),
                value: ip.to_string(),
                reason: "is not an address of this host: sessions could never be set up from it"
                    .into(),
            });
        }
    }
    Ok(())
}

pub fn resolve_router_id(src: &RouterIdSource, ifs: &Interfaces) -> Result<RouterId, ConfigError> {
    let found = match src {
        RouterIdSource::Fixed(ip) => Some(*ip),
        RouterIdSource::Interface(ifname) => ifs.first_v4(ifname),
        RouterIdSource::Lowest => ifs.lowest_v4(),
    };
    found.map(RouterId).ok_or_else(|| match src {
        RouterIdSource::Interface(ifname) => ConfigError {
            setting: "bgp_routerinterface".into(),
            value: ifname.clone(),
            reason: if interface_exists(ifname) {
                "has no IPv4 address to use as the router id".into()
            } else {
                "is not an interface of this host".into()
            },
        },
        _ => ConfigError {
            setting: "bgp_routerid (--bgpRouterID)".into(),
            value: String::new(),
            reason: "is not set and this host has no IPv4 address to take it from".into(),
        },
    })
}

/// The agent's HTTP endpoint on `prometheus_server`, and again on `health_check_port` (kube-vip
/// serves `/healthz` there; a livenessProbe written for kube-vip keeps working). Both are bound
/// before anything else starts; one that cannot be is a bad setting.
async fn serve_http(
    cfg: &Config,
    readiness: &Readiness,
    observer: &Observer,
) -> Result<(), RunError> {
    let listeners = [
        (cfg.http, "prometheus_server (--prometheusHTTPServer)"),
        (cfg.health, "health_check_port (--healthCheckPort)"),
    ];
    let mut bound = Vec::new();
    for (addr, setting) in listeners {
        let Some(addr) = addr else { continue };
        let listener = crate::http::bind(addr).await.map_err(|e| ConfigError {
            setting: setting.into(),
            value: addr.to_string(),
            reason: format!("cannot be listened on: {e}"),
        })?;
        bound.push(listener);
    }
    for listener in bound {
        tokio::spawn(crate::http::serve(
            listener,
            readiness.clone(),
            observer.clone(),
        ));
    }
    Ok(())
}

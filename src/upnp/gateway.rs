//! [I/O] Keeps the gateway's port mappings equal to [`plan::desired`](super::plan::desired),
//! with igd-next: SSDP discovery, AddPortMapping (with the permanent-lease fallback),
//! DeletePortMapping, GetExternalIPAddress.

use super::plan::{self, Installed, Key, Mapping, Proto, Step};
use backon::{BackoffBuilder, ExponentialBuilder};
use igd_next::aio::tokio::{search_gateway, Tokio};
use igd_next::aio::Gateway;
use igd_next::{
    AddPortError, GetExternalIpError, PortMappingProtocol, RemovePortError, RequestError,
    SearchError, SearchOptions,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum UpnpError {
    #[error("no UPnP Internet gateway answered an SSDP search from {bind}: {source}")]
    Search {
        bind: SocketAddr,
        source: SearchError,
    },
    #[error("gateway {gateway} {} {proto} {port} -> {internal} ({service}): {source}", add_failed(.source))]
    Add {
        gateway: SocketAddr,
        proto: Proto,
        port: u16,
        internal: SocketAddr,
        service: String,
        source: AddPortError,
    },
    #[error("gateway {gateway} refused to remove the mapping of {proto} {port}: {source}")]
    Remove {
        gateway: SocketAddr,
        proto: Proto,
        port: u16,
        source: RemovePortError,
    },
    #[error("gateway {gateway} did not give its external address: {source}")]
    ExternalIp {
        gateway: SocketAddr,
        source: GetExternalIpError,
    },
}

/// How an AddPortMapping failed: the gateway said no, or it was not reached at all (down,
/// rebooting), which is not a refusal and must not read as one.
fn add_failed(e: &AddPortError) -> &'static str {
    use igd_next::RequestError as R;
    match e {
        AddPortError::RequestError(R::IoError(_) | R::HyperError(_) | R::HyperClientError(_)) => {
            "could not be asked to map"
        }
        _ => "refused to map",
    }
}

/// Where to look for the gateway.
#[derive(Clone, Debug)]
pub struct SearchSettings {
    /// The SSDP socket's address: pick the Service interface's address so the M-SEARCH leaves
    /// on the right link (`0.0.0.0:0` follows the multicast route).
    pub bind: SocketAddr,
    /// How long one discovery waits for answers.
    pub timeout: Duration,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            timeout: Duration::from_secs(5),
        }
    }
}

/// What the forwarder reports: the gateway's external address (for the Services' status) and
/// the mappings in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpnpState {
    pub external_ip: Option<IpAddr>,
    pub installed: BTreeMap<Key, Mapping>,
    /// The last round's failures, each naming the gateway's answer; empty when all went well.
    pub errors: Vec<String>,
    /// The failures that concern one Service (`namespace/name` → error), for its Events.
    pub failed: BTreeMap<String, String>,
}

/// The mappings vipd made on one gateway.
pub struct Forwarder {
    search: SearchSettings,
    gateway: Option<Gateway<Tokio>>,
    installed: BTreeMap<Key, Installed>,
    external_ip: Option<IpAddr>,
}

impl Forwarder {
    pub fn new(search: SearchSettings) -> Forwarder {
        Forwarder {
            search,
            gateway: None,
            installed: BTreeMap::new(),
            external_ip: None,
        }
    }

    pub fn state(&self, errors: &[UpnpError]) -> UpnpState {
        UpnpState {
            external_ip: self.external_ip,
            installed: self
                .installed
                .iter()
                .map(|(k, i)| (*k, i.mapping.clone()))
                .collect(),
            errors: errors.iter().map(ToString::to_string).collect(),
            failed: errors
                .iter()
                .filter_map(|e| match e {
                    UpnpError::Add { service, .. } => Some((service.clone(), e.to_string())),
                    _ => None,
                })
                .collect(),
        }
    }

    pub fn next_refresh(&self) -> Option<Instant> {
        plan::next_refresh(&self.installed)
    }

    /// One round: find the gateway if needed, then remove, add and refresh mappings. Every
    /// failure is returned; the rest of the round still runs.
    pub async fn reconcile(&mut self, desired: &BTreeMap<Key, Mapping>) -> Vec<UpnpError> {
        let now = Instant::now();
        let todo = plan::steps(desired, &self.installed, now);
        if todo.is_empty() && self.external_ip.is_some() {
            return Vec::new();
        }
        let gateway = match self.gateway().await {
            Ok(g) => g,
            Err(e) => return vec![e],
        };
        let mut errors = Vec::new();
        if self.external_ip.is_none() {
            match gateway.get_external_ip().await {
                Ok(ip) => {
                    info!(gateway = %gateway.addr, %ip, "UPnP gateway external address");
                    self.external_ip = Some(ip);
                }
                Err(source) => errors.push(UpnpError::ExternalIp {
                    gateway: gateway.addr,
                    source,
                }),
            }
        }
        for step in todo {
            let result = match step {
                Step::Remove(key) => self.remove(&gateway, key).await,
                Step::Add(key, mapping) => self.add(&gateway, key, mapping, now).await,
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        errors
    }

    /// Deletes every mapping vipd made (shutdown, or UPnP turned off).
    pub async fn remove_all(&mut self) -> Vec<UpnpError> {
        self.reconcile(&BTreeMap::new()).await
    }

    async fn gateway(&mut self) -> Result<Gateway<Tokio>, UpnpError> {
        if let Some(g) = &self.gateway {
            return Ok(g.clone());
        }
        let mut options = SearchOptions::default();
        options.bind_addr = self.search.bind;
        options.timeout = Some(self.search.timeout);
        let gateway = search_gateway(options)
            .await
            .map_err(|source| UpnpError::Search {
                bind: self.search.bind,
                source,
            })?;
        info!(gateway = %gateway.addr, service = %gateway.service_type, "UPnP gateway found");
        self.gateway = Some(gateway.clone());
        Ok(gateway)
    }

    async fn add(
        &mut self,
        gateway: &Gateway<Tokio>,
        key: Key,
        mapping: Mapping,
        now: Instant,
    ) -> Result<(), UpnpError> {
        let (proto, port) = key;
        let internal = SocketAddr::V4(mapping.internal);
        let description = mapping.service.as_str();
        let mut granted = mapping.lease_secs;
        let mut result = gateway
            .add_port(protocol(proto), port, internal, granted, description)
            .await;
        if matches!(result, Err(AddPortError::OnlyPermanentLeasesSupported)) && granted != 0 {
            // IGDv1 gateways may only take permanent mappings; we re-assert and delete them.
            granted = 0;
            result = gateway
                .add_port(protocol(proto), port, internal, 0, description)
                .await;
        }
        match result {
            Ok(()) => {
                let fresh = !self.installed.contains_key(&key);
                if fresh {
                    info!(%proto, port, %internal, lease_secs = granted, service = %mapping.service, "UPnP mapping added");
                }
                self.installed.insert(
                    key,
                    Installed {
                        mapping,
                        granted_secs: granted,
                        refresh_at: plan::refresh_at(now, granted),
                    },
                );
                Ok(())
            }
            Err(source) => {
                self.forget_gateway_on_transport_error(add_transport(&source));
                Err(UpnpError::Add {
                    gateway: gateway.addr,
                    proto,
                    port,
                    internal,
                    service: mapping.service,
                    source,
                })
            }
        }
    }

    async fn remove(&mut self, gateway: &Gateway<Tokio>, key: Key) -> Result<(), UpnpError> {
        let (proto, port) = key;
        match gateway.remove_port(protocol(proto), port).await {
            // Already gone (lease lapsed, router rebooted): the goal is met.
            Ok(()) | Err(RemovePortError::NoSuchPortMapping) => {
                info!(%proto, port, "UPnP mapping removed");
                self.installed.remove(&key);
                Ok(())
            }
            Err(source) => {
                self.forget_gateway_on_transport_error(matches!(
                    source,
                    RemovePortError::RequestError(RequestError::IoError(_))
                ));
                Err(UpnpError::Remove {
                    gateway: gateway.addr,
                    proto,
                    port,
                    source,
                })
            }
        }
    }

    /// A gateway that cannot be reached may have moved (new DHCP address, replaced router):
    /// search again next round.
    fn forget_gateway_on_transport_error(&mut self, transport: bool) {
        if transport {
            self.gateway = None;
            self.external_ip = None;
        }
    }
}

fn add_transport(e: &AddPortError) -> bool {
    matches!(e, AddPortError::RequestError(RequestError::IoError(_)))
}

fn protocol(p: Proto) -> PortMappingProtocol {
    match p {
        Proto::Tcp => PortMappingProtocol::TCP,
        Proto::Udp => PortMappingProtocol::UDP,
    }
}

/// Runs the forwarder: a round at every change of `desired`, at every refresh time, and after
/// a failure with exponential backoff (1 s … 60 s, jittered). At `shutdown` every mapping is
/// deleted unless `keep_on_shutdown`.
pub async fn run(
    search: SearchSettings,
    mut desired: watch::Receiver<BTreeMap<Key, Mapping>>,
    state: watch::Sender<UpnpState>,
    keep_on_shutdown: bool,
    shutdown: impl Future<Output = ()>,
) {
    let mut forwarder = Forwarder::new(search);
    let new_backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(60))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut backoff = new_backoff();
    tokio::pin!(shutdown);
    loop {
        let want = desired.borrow_and_update().clone();
        let errors = forwarder.reconcile(&want).await;
        for e in &errors {
            warn!("UPnP: {e}");
        }
        state.send_replace(forwarder.state(&errors));
        let wake = if errors.is_empty() {
            backoff = new_backoff();
            forwarder.next_refresh()
        } else {
            let delay = backoff.next().unwrap_or(Duration::from_secs(60));
            Some(Instant::now() + delay)
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            changed = desired.changed() => if changed.is_err() { break },
            () = sleep => {}
        }
    }
    if !keep_on_shutdown {
        for e in forwarder.remove_all().await {
            warn!("UPnP shutdown: {e}");
        }
        state.send_replace(forwarder.state(&[]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_that_cannot_be_reached_did_not_refuse() {
        let unreachable = AddPortError::RequestError(igd_next::RequestError::IoError(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ));
        assert_eq!(add_failed(&unreachable), "could not be asked to map");
        assert_eq!(add_failed(&AddPortError::PortInUse), "refused to map");
        let coded = AddPortError::RequestError(igd_next::RequestError::ErrorCode(
            718,
            "ConflictInMappingEntry".into(),
        ));
        assert_eq!(add_failed(&coded), "refused to map");
    }
}

//! [I/O] The Equinix Metal API provider: what it has learned so far ([`MetalDiscovery`]) and the
//! periodic refresh task that publishes into a [`PeerFeed`] ([`spawn_metal_source`]).
//!
//! Discovery order (each step once, until it succeeds): the project's BGP is enabled; this
//! node's device (by id from `spec.providerID`, else by hostname); a BGP session per family in
//! use. Every refresh then reads the device's neighbours. A failure keeps the last good peers
//! (the feed turns Stale) and is retried sooner than a normal refresh.

use crate::equinix::client::{MetalClient, MetalError};
use crate::equinix::model::{peer_set, private_ipv4, Device, Family};
use crate::feed::{PeerFeed, PeerSet, PeerSnapshot};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::task::JoinHandle;

/// What to look for and how often.
#[derive(Debug, Clone)]
pub struct MetalSourceOptions {
    /// Hostnames to find the device by, in order: the Node name, then the OS hostname.
    pub hostnames: Vec<String>,
    /// The device id, when the Node has `spec.providerID` (see
    /// [`crate::equinix::device_id_from_provider_id`]); wins over `hostnames`.
    pub device_id: Option<String>,
    /// Families whose BGP session must exist and whose neighbours become peers.
    pub families: Vec<Family>,
    /// Time between refreshes after a success.
    pub refresh_every: Duration,
    /// Time before the next attempt after a failure (capped by `refresh_every`).
    pub retry_every: Duration,
}

impl MetalSourceOptions {
    /// IPv4 sessions, refresh every 5 minutes, retry after 15 s.
    pub fn new(hostnames: Vec<String>) -> Self {
        MetalSourceOptions {
            hostnames,
            device_id: None,
            families: vec![Family::Ipv4],
            refresh_every: Duration::from_secs(300),
            retry_every: Duration::from_secs(15),
        }
    }
}

/// Discovery state; [`refresh`](Self::refresh) does the next step(s) and reads the peers.
#[derive(Debug)]
pub struct MetalDiscovery {
    client: MetalClient,
    opts: MetalSourceOptions,
    project_bgp_ok: bool,
    device: Option<Device>,
    sessions: BTreeSet<Family>,
}

impl MetalDiscovery {
    pub fn new(client: MetalClient, opts: MetalSourceOptions) -> Self {
        MetalDiscovery {
            client,
            opts,
            project_bgp_ok: false,
            device: None,
            sessions: BTreeSet::new(),
        }
    }

    /// The device found, once found.
    pub fn device(&self) -> Option<&Device> {
        self.device.as_ref()
    }

    /// The current peers and the routes to reach them.
    pub async fn refresh(&mut self) -> Result<PeerSet, MetalError> {
        if !self.project_bgp_ok {
            self.client.check_project_bgp().await?;
            self.project_bgp_ok = true;
        }
        let device = match &self.device {
            Some(d) => d.clone(),
            None => {
                let d = match &self.opts.device_id {
                    Some(id) => self.client.device(id).await?,
                    None => self.client.find_device(&self.opts.hostnames).await?,
                };
                tracing::info!(device = %d.id, hostname = %d.hostname, "found this node's Equinix Metal device");
                self.device = Some(d.clone());
                d
            }
        };
        for family in &self.opts.families {
            if !self.sessions.contains(family) {
                let outcome = self.client.ensure_session(&device.id, *family).await?;
                tracing::info!(device = %device.id, %family, ?outcome, "Equinix Metal BGP session in place");
                self.sessions.insert(*family);
            }
        }
        let neighbors = match self.client.neighbors(&device.id).await {
            Ok(n) => n,
            Err(e @ MetalError::NotFound { .. }) => {
                // The device is gone (re-provisioned?): look it up again next time.
                self.device = None;
                self.sessions.clear();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let set = peer_set(
            &neighbors,
            &self.opts.families,
            private_ipv4(&device).as_ref(),
        )
        .map_err(|source| MetalError::BadNeighbor {
            device: device.id.clone(),
            source,
        })?;
        if set.peers.is_empty() {
            return Err(MetalError::NoNeighbours {
                device: device.id.clone(),
                families: self
                    .opts
                    .families
                    .iter()
                    .map(|f| f.api_name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(set)
    }
}

/// Starts the refresh task. The feed is Pending until the first answer; the task ends when the
/// feed (and its clones) are dropped, or when the handle is aborted.
pub fn spawn_metal_source(
    client: MetalClient,
    opts: MetalSourceOptions,
) -> (PeerFeed, JoinHandle<()>) {
    let (publisher, feed) = PeerFeed::channel(
        "Equinix Metal API",
        PeerSnapshot::Pending {
            why: "asking the Equinix Metal API for this node's BGP neighbours".into(),
        },
    );
    let refresh_every = opts.refresh_every;
    let retry_every = opts.retry_every.min(refresh_every);
    let mut discovery = MetalDiscovery::new(client, opts);
    let task = tokio::spawn(async move {
        loop {
            let outcome = tokio::select! {
                r = discovery.refresh() => r,
                _ = publisher.closed() => return,
            };
            let wait = match outcome {
                Ok(set) => {
                    if publisher.ready(set) {
                        tracing::info!(peers = ?publisher.current().peers(), "Equinix Metal peers updated");
                    }
                    refresh_every
                }
                Err(e) => {
                    if publisher.problem(e.to_string()) {
                        tracing::warn!(error = %e, retry_in = ?retry_every, "Equinix Metal API: no fresh peers; the last good ones stay in force");
                    }
                    retry_every
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = publisher.closed() => return,
            }
        }
    });
    (feed, task)
}

//! The legacy Equinix Metal API provider (Metal reached its end of sale in 2026; see
//! `equinix-metal.md`). Optional and never on the agent's start-up path: its refresh task
//! publishes into a [`crate::PeerFeed`] like every other provider.
//!
//! - [`cloud_config`] [pure]: `cloud-sa.json` and its environment overrides;
//! - [`model`] [pure]: the API's JSON and its translation into [`crate::PeerSpec`]s;
//! - [`client`] [I/O]: the HTTP calls, with retries (reqwest + backon);
//! - [`source`] [I/O]: discovery state and the periodic refresh task.

pub mod client;
pub mod cloud_config;
pub mod model;
pub mod source;

pub use client::{ClientOptions, MetalClient, MetalError, RetryPolicy, SessionOutcome};
pub use cloud_config::{CloudConfig, CloudConfigError, MetalEnv, DEFAULT_BASE_URL};
pub use model::{device_id_from_provider_id, Family};
pub use source::{spawn_metal_source, MetalDiscovery, MetalSourceOptions};

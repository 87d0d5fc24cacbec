//! [I/O] Why the agent stopped: the one error type of `vipd::run` and the owner loops it
//! starts, wrapping the I/O edges' errors (speaker, Kubernetes client, netlink). Here, below
//! the loops, so each can return it without importing the module that starts it.

use crate::bgp::speaker::SpeakerError;
use crate::config::ConfigError;

/// The agent could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Speaker(#[from] SpeakerError),
    #[error(transparent)]
    Kube(#[from] crate::kube::client::ClientError),
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
    #[error(transparent)]
    VipFile(#[from] crate::vip_file::VipFileError),
    #[error(transparent)]
    Vlan(#[from] crate::l2::vlan::VlanError),
    #[error(transparent)]
    ControlPlane(#[from] crate::control_plane::probe::ProbeError),
    #[error("peer provider: {0}")]
    Provider(String),
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl RunError {
    /// A setting that cannot work (a bad value, a VIP file that cannot be used): exit status 2,
    /// as for every bad setting, so that it is told apart from a fault at run time.
    pub fn is_setting(&self) -> bool {
        matches!(
            self,
            RunError::Config(_) | RunError::VipFile(_) | RunError::ControlPlane(_)
        )
    }
}

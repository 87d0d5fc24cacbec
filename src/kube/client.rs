//! [I/O] A `kube::Client` from `k8s_config_file`, else `$KUBECONFIG`, else the host's
//! `/etc/kubernetes/admin.conf` when it exists (kube-vip's static Pod mounts it and names no
//! kubeconfig), else `~/.kube/config`, then the in-cluster ServiceAccount.
//!
//! The server can be overridden (kube-vip's `kubernetes_addr`), and a control-plane agent
//! reading the host's admin.conf (or super-admin.conf) talks to `kubernetes:<port>` as kube-vip does: admin.conf
//! names the control-plane VIP, which this very agent brings up, so the Pod's `hostAliases`
//! map `kubernetes` to 127.0.0.1, the node's own API server (whose certificate names
//! `kubernetes`).

pub use crate::config::ServerOverride;
use std::path::{Path, PathBuf};

/// The kubeadm admin kubeconfig, as kube-vip's static Pod mounts it from the host.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("k8s_config_file {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration found ($KUBECONFIG, {ADMIN_CONF}, ~/.kube/config, in-cluster): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Build(#[from] kube::Error),
    #[error("kubernetes_addr {0:?} is not a host:port or URL of the API server")]
    Address(String),
}

/// kubeadm's kubeconfigs on a control-plane node, which name the control-plane VIP:
/// admin.conf, and super-admin.conf (kubeadm ≥ 1.29 during `init`).
const KUBEADM_CONFIGS: [&str; 2] = [ADMIN_CONF, "/etc/kubernetes/super-admin.conf"];

fn names_the_vip(p: &Path) -> bool {
    KUBEADM_CONFIGS.iter().any(|c| p == Path::new(c))
}

/// [pure] The server URL to use instead of the kubeconfig's, if any.
fn server_url(over: &ServerOverride, from: &Source) -> Option<String> {
    let address = match (&over.address, over.control_plane_port, from) {
        (Some(a), _, _) => a.clone(),
        (None, Some(port), Source::File(p)) if names_the_vip(p) => format!("kubernetes:{port}"),
        _ => return None,
    };
    Some(if address.contains("://") {
        address
    } else {
        format!("https://{address}")
    })
}

/// Where the configuration is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    File(PathBuf),
    /// kube's search: `$KUBECONFIG`, `~/.kube/config`, in-cluster.
    Infer,
}

/// [pure] The explicit file wins; then `$KUBECONFIG` (set: kube's search reads it); then
/// admin.conf if it exists; then kube's search.
fn source(explicit: Option<&Path>, kubeconfig_env: bool, admin_conf: bool) -> Source {
    match explicit {
        Some(path) => Source::File(path.to_owned()),
        None if !kubeconfig_env && admin_conf => Source::File(PathBuf::from(ADMIN_CONF)),
        None => Source::Infer,
    }
}

pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    client_to(kubeconfig, &ServerOverride::default()).await
}

/// As [`client`], to the server `over` names if it names one.
pub async fn client_to(
    kubeconfig: Option<&Path>,
    over: &ServerOverride,
) -> Result<kube::Client, ClientError> {
    let from = source(
        kubeconfig,
        std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()),
        Path::new(ADMIN_CONF).is_file(),
    );
    let url = server_url(over, &from);
    let mut config = match from {
        Source::File(path) => {
            let wrap = |source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(&path).map_err(wrap)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(wrap)?
        }
        Source::Infer => kube::Config::infer().await?,
    };
    if let Some(url) = url {
        tracing::info!(server = %url, "talking to this API server instead of the kubeconfig's");
        config.cluster_url = url.parse().map_err(|_| ClientError::Address(url.clone()))?;
    }
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_file_then_kubeconfig_then_admin_conf_then_the_usual_search() {
        let named = Path::new("/etc/vipd/kubeconfig");
        assert_eq!(
            source(Some(named), true, true),
            Source::File(named.to_owned())
        );
        assert_eq!(source(None, true, true), Source::Infer);
        assert_eq!(
            source(None, false, true),
            Source::File(PathBuf::from("/etc/kubernetes/admin.conf")),
            "kube-vip's static Pod: admin.conf mounted, no kubeconfig named"
        );
        assert_eq!(source(None, false, false), Source::Infer);
    }

    #[test]
    fn kubernetes_addr_wins_and_a_control_plane_agent_on_admin_conf_talks_to_kubernetes() {
        let admin = Source::File(PathBuf::from(ADMIN_CONF));
        let named = Source::File(PathBuf::from("/etc/vipd/kubeconfig"));
        let cp = ServerOverride {
            address: None,
            control_plane_port: Some(6443),
        };
        assert_eq!(
            server_url(&cp, &admin).as_deref(),
            Some("https://kubernetes:6443")
        );
        assert_eq!(
            server_url(&cp, &named),
            None,
            "a named kubeconfig is used as written"
        );
        assert_eq!(server_url(&cp, &Source::Infer), None);
        let addr = ServerOverride {
            address: Some("10.0.0.5:6443".into()),
            control_plane_port: Some(6443),
        };
        assert_eq!(
            server_url(&addr, &named).as_deref(),
            Some("https://10.0.0.5:6443")
        );
        let url = ServerOverride {
            address: Some("http://127.0.0.1:8080".into()),
            control_plane_port: None,
        };
        assert_eq!(
            server_url(&url, &Source::Infer).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(server_url(&ServerOverride::default(), &admin), None);
    }
}

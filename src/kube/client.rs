//! [I/O] A `kube::Client` from `k8s_config_file`, else `$KUBECONFIG`, else the host's
//! `/etc/kubernetes/admin.conf` when it exists (kube-vip's static Pod mounts it and names no
//! kubeconfig), else `~/.kube/config`, then the in-cluster ServiceAccount.

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
    let from = source(
        kubeconfig,
        std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()),
        Path::new(ADMIN_CONF).is_file(),
    );
    let config = match from {
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
}

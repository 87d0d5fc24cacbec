//! [pure] kube-vip's RBAC, as its users have it installed, for tests that run vipd under it
//! (an image swapped in place keeps kube-vip's ServiceAccount `kube-system/kube-vip`).
//!
//! - [`KUBE_VIP_WEBSITE`]: `https://kube-vip.io/manifests/rbac.yaml`, what kube-vip's install
//!   guide applies (kube-vip/website `content/manifests/rbac.yaml` at f5c870b, verbatim).
//! - [`KUBE_VIP_MANIFEST_RBAC`]: what `kube-vip manifest rbac` v1.2.3 prints. Reconstructed
//!   from its generator (`pkg/kubevip/config_generator.go` `GenerateSA`/`GenerateRole`/
//!   `GenerateRoleBinding`, printed through sigs.k8s.io/yaml) since no Go toolchain runs here;
//!   the same six rules as the website's, in another YAML style.
//!
//! Both grant `update` (never `patch`) on `services` and `services/status`, and nothing on
//! `events` or `configmaps`.

pub const KUBE_VIP_WEBSITE: &str = include_str!("../fixtures/kube-vip.io-manifests-rbac.yaml");
pub const KUBE_VIP_MANIFEST_RBAC: &str =
    include_str!("../fixtures/kube-vip-v1.2.3-manifest-rbac.yaml");

/// kube-vip's ServiceAccount: (namespace, name).
pub const KUBE_VIP_SA: (&str, &str) = ("kube-system", "kube-vip");

/// Whose RBAC an agent runs under in a test.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// kube-vip's (the kube-vip.io manifest): what an image swapped in place has.
    KubeVip,
    /// vipd's own, as `vipd manifest rbac <flags>` prints it for the mode.
    Vipd(&'a [&'a str]),
}

/// Installs `grant`'s ServiceAccount, role and binding on `api` and returns a bearer token of
/// that ServiceAccount for the agents' kubeconfigs.
pub fn grant(api: &fake_apiserver::ApiServer, grant: Grant) -> String {
    match grant {
        Grant::KubeVip => {
            installed(api.create_manifest(KUBE_VIP_WEBSITE));
            api.token(KUBE_VIP_SA.0, KUBE_VIP_SA.1)
        }
        Grant::Vipd(flags) => {
            let out = std::process::Command::new(crate::vipd_bin())
                .args(["manifest", "rbac"])
                .args(flags)
                .env_clear()
                .output()
                .expect("vipd manifest rbac");
            assert!(
                out.status.success(),
                "vipd manifest rbac {flags:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let yaml = String::from_utf8(out.stdout).expect("UTF-8");
            installed(api.create_manifest(&yaml));
            api.token("kube-system", "vipd")
        }
    }
}

/// Created now, or by an earlier agent of the same test (a second grant mints a token only).
fn installed(created: Result<Vec<String>, String>) {
    if let Err(e) = created {
        assert!(e.contains("already exists"), "RBAC: {e}");
    }
}

/// What `api` refused is what `grant` allows to be refused: nothing under vipd's own role;
/// under kube-vip's, only the first patch of a Service and of a status and the first Event of
/// each of `agents` agents (they then write by update and pause Events).
pub fn assert_refusals(
    api: &fake_apiserver::ApiServer,
    grant: Grant,
    agents: usize,
    explain: &str,
) {
    let refused = api.refused();
    if let Grant::Vipd(flags) = grant {
        assert!(
            refused.is_empty(),
            "vipd's own role (manifest rbac {flags:?}) refused: {refused:#?}\n{explain}"
        );
        return;
    }
    let mut counts = [0usize; 3];
    for r in &refused {
        let (method, rest) = r.split_once(' ').unwrap_or((r, ""));
        let path = rest.split(": ").next().unwrap_or("");
        let k = if method == "PATCH" && path.ends_with("/status") {
            0
        } else if method == "PATCH" && path.contains("/services/") {
            1
        } else if method == "POST" && path.ends_with("/events") {
            2
        } else {
            panic!("refused something kube-vip's ClusterRole should allow vipd: {r}\n{explain}");
        };
        counts[k] += 1;
    }
    for (n, what) in counts
        .iter()
        .zip(["status patches", "Service patches", "Events"])
    {
        assert!(
            *n <= agents,
            "{what} refused {n} times for {agents} agents: {refused:#?}\n{explain}"
        );
    }
}

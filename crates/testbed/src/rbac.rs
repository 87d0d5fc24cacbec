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

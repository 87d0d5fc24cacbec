//! `vipd migrate` on kube-vip's own install examples (kube-vip.io's DaemonSets, the services
//! guide's Equinix Metal DaemonSets, a static Pod, ARP with per-Service election; see the
//! headers in tests/fixtures/kube-vip/): every setting accounted for, no secret shown, nothing
//! lost, and the vipd manifest it prints passes the agent's own checks. Then the image-swap
//! path: `vipd manager` started with kube-vip's environment as the DaemonSet gives it keeps
//! running (no crash loop) and names what it does not do, once.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube-vip");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    assert!(out.len() >= 7, "{out:?}");
    out
}

fn migrate(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vipd"))
        .arg("migrate")
        .arg(path)
        .env_clear()
        .output()
        .expect("vipd runs")
}

/// The kube-vip container of a fixture.
fn container(path: &Path) -> Container {
    let text = std::fs::read_to_string(path).expect("fixture");
    let v: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    let spec = match v["kind"].as_str() {
        Some("DaemonSet") => {
            let ds: DaemonSet = serde_json::from_value(v).expect("DaemonSet");
            ds.spec.and_then(|s| s.template.spec).expect("pod spec")
        }
        _ => {
            let pod: Pod = serde_json::from_value(v).expect("Pod");
            pod.spec.expect("pod spec")
        }
    };
    spec.containers.into_iter().next().expect("a container")
}

fn env(c: &Container) -> Vec<EnvVar> {
    c.env.clone().unwrap_or_default()
}

#[test]
fn every_setting_of_kube_vips_examples_is_accounted_for_and_the_result_is_installable() {
    for path in fixtures() {
        let o = migrate(&path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {stderr}");
        let out = String::from_utf8(o.stdout).expect("UTF-8");
        let report: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
        // Each variable of the kube-vip container has its line, with a verdict.
        for e in env(&container(&path)) {
            let line = report
                .iter()
                .find(|l| l.split_whitespace().nth(1) == Some(e.name.as_str()))
                .unwrap_or_else(|| panic!("{name}: {} not accounted for:\n{out}", e.name));
            assert!(
                [
                    "same",
                    "differs:",
                    "not supported:",
                    "left out:",
                    "carried over:"
                ]
                .iter()
                .any(|v| line.contains(v)),
                "{name}: {line}"
            );
        }
        // No peer list or password in the report.
        assert!(
            !report.iter().any(|l| l.contains("192.168.0.10:65000")),
            "{name}"
        );
        // The manifest parses, and names vipd's image.
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&out).expect("YAML");
        let workload = docs
            .iter()
            .find(|d| matches!(d["kind"].as_str(), Some("DaemonSet" | "Pod")))
            .unwrap_or_else(|| panic!("{name}: no workload in\n{out}"));
        assert!(
            workload.to_string().contains("ghcr.io/vipd/vipd:"),
            "{name}"
        );
    }
}

#[test]
fn secrets_and_foreign_variables_are_carried_over_and_unsupported_ones_named() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube-vip/secret-peerpass-daemonset.yaml");
    let out = String::from_utf8(migrate(&path).stdout).expect("UTF-8");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&out).expect("YAML");
    let ds: DaemonSet = serde_json::from_value(
        docs.into_iter()
            .find(|d| d["kind"] == "DaemonSet")
            .expect("DaemonSet"),
    )
    .expect("typed");
    let c = &ds.spec.unwrap().template.spec.unwrap().containers[0];
    let env = env(c);
    let pass = env
        .iter()
        .find(|e| e.name == "bgp_peerpass")
        .expect("bgp_peerpass");
    let secret = pass
        .value_from
        .as_ref()
        .and_then(|f| f.secret_key_ref.as_ref())
        .expect("still a Secret reference");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("bgp-auth", "password")
    );
    assert!(
        env.iter()
            .any(|e| e.name == "HTTP_PROXY"
                && e.value.as_deref() == Some("http://proxy.example:3128"))
    );
    assert!(env
        .iter()
        .any(|e| e.name == "vip_loglevel" && e.value.as_deref() == Some("-4")));
    // The control-plane VIP (BGP mode) comes over, with what vipd does differently.
    assert!(
        env.iter()
            .any(|e| e.name == "cp_enable" && e.value.as_deref() == Some("true")),
        "{env:?}"
    );
    let report: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
    let cp = report
        .iter()
        .find(|l| l.contains(" cp_enable "))
        .expect("cp_enable");
    assert!(cp.contains("differs") && cp.contains("/livez"), "{cp}");
    assert!(
        env.iter().any(|e| e.name == "vip_address"),
        "the control-plane VIP: {env:?}"
    );
}

#[test]
fn a_kube_vip_manifest_vipd_cannot_read_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = dir.path().join("cm.yaml");
    std::fs::write(&f, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap();
    let o = migrate(&f);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("kinds found: ConfigMap"));
}

/// The image swapped in place: the DaemonSet's environment unchanged, vipd starts (against the
/// in-repo API server), keeps running and warns once about what it does not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vipd_manager_runs_with_kube_vips_generated_environment() {
    let api = fake_apiserver::ApiServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("API server");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    for fixture in [
        "website-bgp-daemonset.yaml",
        "website-arp-daemonset.yaml",
        "guide-equinix-annotations-daemonset.yaml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kube-vip")
            .join(fixture);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vipd"));
        cmd.arg("manager")
            .env_clear()
            .env("k8s_config_file", &kubeconfig)
            .env("vip_nodename", "node0")
            .env("prometheus_server", "127.0.0.1:0")
            // The guide's interface is not this host's: the control-plane VIP goes on lo here.
            .env("vip_interface", "lo")
            .stderr(Stdio::piped());
        for e in env(&container(&path)) {
            // What the kubelet would fill in from the Pod stays as set above.
            if let (Some(v), None) = (e.value.as_deref(), &e.value_from) {
                if !matches!(e.name.as_str(), "prometheus_server" | "vip_interface") {
                    cmd.env(&e.name, v);
                }
            }
        }
        let child = cmd.spawn().expect("vipd starts");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .expect("exits");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{fixture}: still running until SIGTERM\n{log}"
        );
        let warnings = log
            .lines()
            .filter(|l| l.contains("kube-vip settings that vipd does not implement"))
            .count();
        let asks_cp = container(&path)
            .env
            .unwrap_or_default()
            .iter()
            .any(|e| e.name == "cp_enable" && e.value.as_deref() == Some("true"));
        // Everything these manifests ask for is implemented now: no start-up warning; the
        // control-plane VIP waits for this host's API server (none here).
        assert_eq!(warnings, 0, "{fixture}\n{log}");
        assert_eq!(
            log.contains("not announcing the control-plane VIP"),
            asks_cp,
            "{fixture}\n{log}"
        );
    }
}

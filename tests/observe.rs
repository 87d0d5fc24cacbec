//! Seeing what the agent does without reading its log: `/metrics` parsed by the Prometheus
//! project's own OpenMetrics parser (Debian's python3-prometheus-client) follows a BGP session
//! down and up; `vipd status` run on the node shows BIRD's session and why a VIP is withheld.
//! The real agent binary in services mode against the in-process API server, BIRD as the ToR.
//! Root, BIRD and python3-prometheus-client needed; skipped loudly otherwise.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::bed::BirdBed;
use support::bird::Bird;
use support::cluster::{self, in_netns, slice, Ep};
use support::netns::Topology;
use support::router::Router;
use support::VIPD_NEEDS;

/// Debian's python3, which has the Debian module (a `python3` earlier in PATH may not).
const PYTHON: &str = "/usr/bin/python3";
const HTTP: &str = "127.0.0.1:2112";

/// Parses with `prometheus_client.openmetrics.parser` (strict: HELP/TYPE, `_total` on
/// counters, `# EOF`) and prints one JSON line per sample.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value}))
"#;

fn parser_present() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if ok {
        vec![]
    } else {
        vec!["python3-prometheus-client (apt-get install python3-prometheus-client)".into()]
    };
    support::skip_unless_empty(missing)
}

/// Samples by `name{k=v,...}` (labels sorted), or a panic naming the parser's complaint.
fn parse_openmetrics(text: &str) -> BTreeMap<String, f64> {
    let mut child = Command::new(PYTHON)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid OpenMetrics: {}\n---- exposition ----\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let labels: BTreeMap<String, String> =
                serde_json::from_value(v["labels"].clone()).unwrap();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                format!("{}{{{}}}", v["name"].as_str().unwrap(), labels.join(",")),
                v["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn scrape(ns: &str) -> BTreeMap<String, f64> {
    let (code, body) = in_netns(ns, cluster::http_get(HTTP, "/metrics"));
    assert_eq!(code, 200, "GET /metrics: {body}");
    parse_openmetrics(&body)
}

fn metric(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

#[test]
fn metrics_are_openmetrics_and_follow_a_session_down_and_up() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    if !parser_present() {
        return;
    }
    let bed = BirdBed::new(1);
    let (bird, node) = (&bed.bird, bed.node(0));
    let peer = format!("{}:179", Topology::tor_v4(0));
    let up = format!("vipd_bgp_session_up{{peer={peer}}}");
    let flaps = format!("vipd_bgp_session_flaps_total{{peer={peer}}}");
    let notes = format!("vipd_bgp_notifications_received_total{{peer={peer}}}");
    let established =
        format!("kube_vip_manager_bgp_session_info{{peer={peer},state=SESSION_STATE_ESTABLISHED}}");
    in_netns(&bed.topo.tor, async {
        let (api, _client) = bed.cluster(&[("web", "198.18.0.10", true)]).await;
        let agent = bed.agent(0, api.addr().port(), &[]);
        let explain = || bed.explain_with(&[&agent]);
        eventually!(
            Duration::from_secs(20),
            "BIRD has the VIP",
            !bird.next_hops("198.18.0.10/32").is_empty(),
            explain()
        );
        // Scrapes run on this thread's runtime; `scrape` enters the node namespace itself.
        // The owner loop publishes right after handing the route out; BIRD may be quicker.
        let mut m: BTreeMap<String, f64>;
        eventually!(
            Duration::from_secs(5),
            "the metrics show the VIP announced",
            {
                m = scrape(&node);
                metric(&m, "vipd_vips_announced{mode=bgp}") == 1.0
            },
            explain()
        );
        assert_eq!(metric(&m, &up), 1.0);
        assert_eq!(metric(&m, &established), 1.0);
        assert_eq!(
            metric(&m, &format!("vipd_bgp_prefixes_advertised{{peer={peer}}}")),
            1.0
        );
        assert!(metric(&m, &format!("vipd_bgp_updates_sent_total{{peer={peer}}}")) >= 1.0);
        assert_eq!(metric(&m, &flaps), 0.0);
        assert_eq!(
            metric(&m, "kube_vip_active_services{namespace=default}"),
            1.0
        );
        assert_eq!(metric(&m, "vipd_vips_announced{mode=bgp}"), 1.0);
        assert!(metric(&m, "vipd_reconcile_duration_seconds_count{}") >= 1.0);

        bird.set_protocol_enabled(0, false);
        eventually!(
            Duration::from_secs(10),
            "the metrics show the session down, one flap and BIRD's Cease",
            {
                let m = scrape(&node);
                metric(&m, &up) == 0.0
                    && metric(&m, &established) == 0.0
                    && metric(&m, &flaps) == 1.0
                    && metric(&m, &notes) == 1.0
                    && metric(&m, "vipd_vips_announced{mode=bgp}") == 0.0
            },
            explain()
        );
        bird.set_protocol_enabled(0, true);
        eventually!(
            Duration::from_secs(20),
            "the metrics show the session up again",
            {
                let m = scrape(&node);
                metric(&m, &up) == 1.0 && metric(&m, "vipd_vips_announced{mode=bgp}") == 1.0
            },
            explain()
        );
    });
}

/// `vipd status` on the node: BIRD's session Established, the VIP of a Service with endpoints
/// announced to it, the VIP of a Service without endpoints withheld with the reason.
#[test]
fn status_shows_the_peer_and_why_a_vip_is_withheld() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let bed = BirdBed::new(1);
    let (bird, node) = (&bed.bird, bed.node(0));
    let peer = format!("{}:179", Topology::tor_v4(0));
    let status = |format: &str| {
        support::ns_stdout(
            &node,
            &[
                env!("CARGO_BIN_EXE_vipd"),
                "status",
                "--server",
                HTTP,
                "-o",
                format,
            ],
        )
    };
    in_netns(&bed.topo.tor, async {
        let (api, _client) = bed
            .cluster(&[("web", "198.18.0.10", true), ("idle", "198.18.0.11", false)])
            .await;
        let agent = bed.agent(0, api.addr().port(), &[]);
        let explain = || bed.explain_with(&[&agent]);
        eventually!(
            Duration::from_secs(20),
            "BIRD has the VIP of web",
            !bird.next_hops("198.18.0.10/32").is_empty(),
            explain()
        );
        // The owner loop publishes right after handing the route out; BIRD may be quicker.
        let mut json: serde_json::Value;
        eventually!(
            Duration::from_secs(5),
            "status shows web announced",
            {
                json = serde_json::from_str(&status("json")).expect("JSON");
                json["services"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        s["service"] == "default/web" && s["vips"][0]["withheld"].is_null()
                    })
                })
            },
            explain()
        );
        let peers = json["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 1, "{json:#}");
        assert_eq!(peers[0]["peer"], peer);
        assert_eq!(peers[0]["state"], "Established");
        assert_eq!(peers[0]["prefixes_sent"], 1);
        let vip = |service: &str| {
            json["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["service"] == service)
                .unwrap_or_else(|| panic!("{service} missing: {json:#}"))["vips"][0]
                .clone()
        };
        assert_eq!(
            vip("default/web")["announced_to"],
            serde_json::json!([peer])
        );
        assert!(vip("default/web")["withheld"].is_null());
        assert_eq!(vip("default/idle")["vip"], "198.18.0.11");
        assert_eq!(vip("default/idle")["withheld"]["code"], "NoEndpoints");
        assert!(bird.next_hops("198.18.0.11/32").is_empty());

        let text = status("text");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&peer) && l.contains("Established")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("default/idle")
                && l.contains("198.18.0.11")
                && l.contains("withheld: no serving endpoint")),
            "{text}"
        );

        // With the session down, the announced VIP says so.
        bird.set_protocol_enabled(0, false);
        eventually!(
            Duration::from_secs(10),
            "status shows web withheld for want of a session",
            {
                let json: serde_json::Value =
                    serde_json::from_str(&status("json")).unwrap_or_default();
                json["services"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        s["service"] == "default/web"
                            && s["vips"][0]["withheld"]["code"] == "NoSession"
                    })
                })
            },
            explain()
        );
    });
}

/// A Service flapping (its only endpoint ready, then gone, 40 times) makes the agent want ~80
/// Events; at most the burst plus one per period reach the API, the rest are counted.
#[test]
fn a_flapping_service_cannot_flood_the_api_with_events() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let bed = BirdBed::new(1);
    let (bird, node) = (&bed.bird, bed.node(0));
    in_netns(&bed.topo.tor, async {
        let (api, client) = bed.cluster(&[("flappy", "198.18.0.20", false)]).await;
        let agent = bed.agent(0, api.addr().port(), &[]);
        let explain = || bed.explain_with(&[&agent]);
        let ready = slice("flappy", "flappy-1", &[Ep::ready("10.244.0.5", "node0")]);
        let gone = slice("flappy", "flappy-1", &[]);
        for _ in 0..40 {
            cluster::put_slice(&client, &ready).await;
            eventually!(
                Duration::from_secs(10),
                "announced",
                !bird.next_hops("198.18.0.20/32").is_empty(),
                explain()
            );
            cluster::put_slice(&client, &gone).await;
            eventually!(
                Duration::from_secs(10),
                "withdrawn",
                bird.next_hops("198.18.0.20/32").is_empty(),
                explain()
            );
        }
        // Occurrences the API was told of: an Event object, or one more in its series.
        let events: kube::Api<k8s_openapi::api::events::v1::Event> =
            kube::Api::namespaced(client.clone(), "default");
        let mut recorded: i32;
        eventually!(Duration::from_secs(5), "events are written", {
            recorded = events
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("flappy"))
                .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                .sum::<i32>();
            recorded >= 10
        });
        let suppressed = metric(&scrape_unparsed(&node), "vipd_events_suppressed_total");
        assert!(
            (10..=12).contains(&recorded),
            "{recorded} event occurrences reached the API for 80 flaps"
        );
        assert!(suppressed >= 60.0, "only {suppressed} suppressed");
    });
}

/// A 200 KB malformed annotation value (D4): the Warning Event still reaches the API, its note
/// cut to kube-apiserver's 1,024 bytes saying how much was left out, and no log line carries
/// the whole value.
#[test]
fn a_huge_bad_annotation_becomes_a_bounded_warning_event_and_log_line() {
    skip_unless!(root, Bird::NEEDS, VIPD_NEEDS);
    let bed = BirdBed::new(1);
    in_netns(&bed.topo.tor, async {
        let (api, client) = bed.cluster(&[]).await;
        let huge = format!("198.18.0.30,{}", "x".repeat(200_000));
        let svc = cluster::lb_service("huge", &huge, false);
        cluster::create_served(&client, &svc, "node0", "10.244.0.5").await;
        let agent = bed.agent(0, api.addr().port(), &[]);
        let explain = || bed.explain_with(&[&agent]);
        let events: kube::Api<k8s_openapi::api::events::v1::Event> =
            kube::Api::namespaced(client.clone(), "default");
        let mut note: Option<String>;
        eventually!(
            Duration::from_secs(20),
            "the Warning Event about the bad entry is written",
            {
                note = events
                    .list(&Default::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .filter(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("huge")
                            && e.type_.as_deref() == Some("Warning")
                    })
                    .find_map(|e| e.note);
                note.is_some()
            },
            explain()
        );
        let note = note.unwrap();
        assert!(note.len() <= 1024, "{} bytes", note.len());
        assert!(note.ends_with("more bytes)"), "{note}");
        // The valid entry is still served.
        eventually!(
            Duration::from_secs(20),
            "198.18.0.30 is announced",
            !bed.bird.next_hops("198.18.0.30/32").is_empty(),
            explain()
        );
        let longest = agent.log().lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 4096, "a log line of {longest} bytes");
    });
}

/// `/metrics` as `name value` pairs, for a test that needs no label matching.
fn scrape_unparsed(ns: &str) -> BTreeMap<String, f64> {
    let (_, body) = in_netns(ns, cluster::http_get(HTTP, "/metrics"));
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

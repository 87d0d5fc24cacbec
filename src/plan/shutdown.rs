//! [pure] How vipd stops, for every mode, owned here once.
//!
//! A **shutdown** undoes everything in order: nothing that makes a router or a neighbour send
//! traffic here outlives the address that answers it, and the Leases go last, so the next
//! holder of a VIP never overlaps with this node. A **restart** (BGP and static modes, with
//! graceful restart) only ends the sessions so that the routers keep the routes as stale, and
//! leaves the addresses, Leases, labels, DHCP leases and UPnP mappings for the next process,
//! which takes them up again: a rolling upgrade moves no traffic. [`stop`] tells the two apart.

use k8s_openapi::api::core::v1::Node;
use std::time::{Duration, Instant};

/// Which owner loop is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Services mode announcing by BGP.
    Bgp,
    /// Services mode answering ARP/NDP (no speaker).
    Arp,
    /// `vip_address` / `vip_file`: routes only; with `cp_enable`, the control-plane VIP's
    /// address on the VIP interface.
    Static,
}

/// One shutdown step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A Cease NOTIFICATION to every peer: each withdraws every route at once.
    CeaseSessions,
    /// End every session so that graceful-restart peers keep the routes as stale (RFC 4724);
    /// the others get a Cease.
    RestartSessions,
    /// A restart's other step: end the election and UPnP tasks without releasing a Lease or
    /// deleting a mapping (their stop channels closing as the process exits would), so the
    /// next process of this node, the same holder identity, takes them up.
    LeaveForNextProcess,
    /// The host routes to the peers vipd installed (Equinix Metal's `peer_routes`).
    RemovePeerRoutes,
    /// Stop answering ARP/NDP for the VIPs held, and take their addresses off.
    ReleaseClaims,
    /// The VIP addresses vipd put on the interface.
    RemoveAddresses,
    /// Stop the DHCP clients and delete their macvlans, without RELEASE: the next holder asks
    /// with the same MAC and keeps the address.
    StopDhcp,
    /// Delete the VLAN sub-interfaces vipd made for Services (ARP mode), once nothing is on
    /// them.
    RemoveVlans,
    /// Delete the UPnP port mappings this node made.
    UnmapPorts,
    /// Remove this node's `service-provided.kube-vip.io` labels (`enable_node_labeling`): it
    /// provides nothing any more.
    UnlabelNode,
    /// Give up every Lease held (the next leader starts at once, on clean ground).
    ReleaseLeases,
}

/// What kind of stop this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// vipd restarts on a node that stays (an upgrade, a new setting, a crash loop).
    Restart,
    /// The node, or vipd on it, goes away.
    Shutdown,
}

/// Whether this stop is a restart or a shutdown, and why, from the settings and this node's
/// Node object as last seen. SIGTERM alone cannot tell: the kubelet sends it for a DaemonSet
/// rolling update and for a graceful node shutdown alike. What the Node says when it goes away
/// is read instead: a shutdown when the Node is being deleted, is cordoned (`kubectl drain`,
/// `kubectl cordon`, the autoscaler's `ToBeDeletedByClusterAutoscaler` taint), is marked
/// out of service, excluded from load balancers (with `honour_exclude`,
/// `vipd_honour_exclude_label`), or reported by the kubelet as shutting down (its graceful node
/// shutdown), and when an operator drained vipd (`by_operator`, SIGUSR1). Anything else is a
/// restart, whose worst case (the node dies unnoticed right after) the routers end at the
/// restart time.
pub fn stop(
    graceful_restart: bool,
    by_operator: bool,
    honour_exclude: bool,
    node: Option<&Node>,
) -> (Stop, String) {
    if !graceful_restart {
        return (
            Stop::Shutdown,
            "graceful restart is off (vipd_bgp_restart_time=0)".into(),
        );
    }
    let leaving = node
        .and_then(|n| node_leaving(n, honour_exclude))
        .or_else(|| by_operator.then(|| BY_OPERATOR.to_owned()));
    match leaving {
        Some(why) => (Stop::Shutdown, why),
        None => (
            Stop::Restart,
            "the node stays: peers keep the routes until the next process sends them again".into(),
        ),
    }
}

/// Why the Node is going away or out of service, if it is: then its routes carry RFC 8326's
/// GRACEFUL_SHUTDOWN while it lasts, and a stop is a shutdown.
pub fn node_leaving(node: &Node, honour_exclude: bool) -> Option<String> {
    if node.metadata.deletion_timestamp.is_some() {
        return Some("the Node is being deleted".into());
    }
    let spec = node.spec.as_ref();
    if spec.and_then(|s| s.unschedulable) == Some(true) {
        return Some("the node is cordoned (spec.unschedulable: drained or in maintenance)".into());
    }
    for taint in spec.and_then(|s| s.taints.as_ref()).into_iter().flatten() {
        if matches!(
            taint.key.as_str(),
            "ToBeDeletedByClusterAutoscaler" | "node.kubernetes.io/out-of-service"
        ) {
            return Some(format!("the node has the taint {}", taint.key));
        }
    }
    let excluded = honour_exclude
        && node
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(crate::model::label::EXCLUDE_FROM_LB));
    if excluded {
        return Some(format!(
            "the node is labelled {}",
            crate::model::label::EXCLUDE_FROM_LB
        ));
    }
    let shutting_down = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.type_ == "Ready"
                && c.status != "True"
                && c.message
                    .as_deref()
                    .is_some_and(|m| m.contains("shutting down"))
        });
    shutting_down.then(|| "the kubelet reports the node is shutting down".into())
}

/// Why the node is leaving when an operator said so (SIGUSR1).
pub const BY_OPERATOR: &str = "an operator drained vipd (SIGUSR1; SIGUSR2 takes it back)";

/// Where a leaving node stands in its drain (RFC 8326: mark the routes, let the routers move
/// the traffic, then withdraw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drain {
    /// Not leaving: routes as usual.
    Serving,
    /// Leaving: routes announced with GRACEFUL_SHUTDOWN; withdrawn at `until` when a drain
    /// time is set.
    Marked { why: String, until: Option<Instant> },
    /// Leaving for the whole drain time: routes withdrawn.
    Withdrawn { why: String },
}

/// The drain of a node leaving (`why`) since `since`, with `drain_time` (`None`: the routes
/// stay, marked, until vipd stops), at `now`.
pub fn drain(
    leaving: Option<String>,
    since: Option<Instant>,
    drain_time: Option<Duration>,
    now: Instant,
) -> Drain {
    let Some(why) = leaving else {
        return Drain::Serving;
    };
    let until = since.zip(drain_time).map(|(s, d)| s + d);
    match until {
        Some(at) if now >= at => Drain::Withdrawn { why },
        _ => Drain::Marked { why, until },
    }
}

/// The steps of `mode` for a stop of kind `stop`, in order.
pub fn order(mode: Mode, stop: Stop) -> Vec<Step> {
    use Step::*;
    if stop == Stop::Restart && mode != Mode::Arp {
        // Everything else stays as it is for the next process; ARP/NDP has no graceful restart
        // (a neighbour that stops hearing us moves on), so ARP mode always shuts down.
        return vec![RestartSessions, LeaveForNextProcess];
    }
    match mode {
        Mode::Bgp => vec![
            CeaseSessions,
            RemovePeerRoutes,
            RemoveAddresses,
            StopDhcp,
            UnmapPorts,
            UnlabelNode,
            ReleaseLeases,
        ],
        Mode::Arp => vec![
            ReleaseClaims,
            StopDhcp,
            RemoveVlans,
            UnmapPorts,
            UnlabelNode,
            ReleaseLeases,
        ],
        Mode::Static => vec![CeaseSessions, RemovePeerRoutes, RemoveAddresses],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn before(steps: &[Step], a: Step, b: Step) -> bool {
        let at = |s| steps.iter().position(|x| *x == s);
        matches!((at(a), at(b)), (Some(i), Some(j)) if i < j)
    }

    #[test]
    fn bgp_mode_withdraws_every_route_before_any_address_lease_or_mapping_goes() {
        assert_eq!(
            order(Mode::Bgp, Stop::Shutdown),
            [
                Step::CeaseSessions,
                Step::RemovePeerRoutes,
                Step::RemoveAddresses,
                Step::StopDhcp,
                Step::UnmapPorts,
                Step::UnlabelNode,
                Step::ReleaseLeases,
            ]
        );
    }

    #[test]
    fn arp_mode_stops_answering_before_the_macvlans_go_and_releases_the_leases_last() {
        assert_eq!(
            order(Mode::Arp, Stop::Shutdown),
            [
                Step::ReleaseClaims,
                Step::StopDhcp,
                Step::RemoveVlans,
                Step::UnmapPorts,
                Step::UnlabelNode,
                Step::ReleaseLeases,
            ]
        );
    }

    #[test]
    fn static_mode_withdraws_its_routes_before_the_control_plane_vips_address_goes() {
        assert_eq!(
            order(Mode::Static, Stop::Shutdown),
            [
                Step::CeaseSessions,
                Step::RemovePeerRoutes,
                Step::RemoveAddresses
            ]
        );
    }

    #[test]
    fn in_every_mode_the_leases_go_last_and_nothing_announces_after_its_address_is_gone() {
        for mode in [Mode::Bgp, Mode::Arp, Mode::Static] {
            let steps = order(mode, Stop::Shutdown);
            if let Some(last) = steps.last() {
                assert!(
                    *last == Step::ReleaseLeases || !steps.contains(&Step::ReleaseLeases),
                    "{mode:?}"
                );
            }
            assert!(
                !steps.contains(&Step::RemoveAddresses)
                    || before(&steps, Step::CeaseSessions, Step::RemoveAddresses),
                "{mode:?}: routes withdrawn before the addresses go"
            );
            assert!(
                !steps.contains(&Step::StopDhcp)
                    || [Step::CeaseSessions, Step::ReleaseClaims]
                        .iter()
                        .any(|s| before(&steps, *s, Step::StopDhcp)),
                "{mode:?}: leased addresses no longer announced before their macvlans go"
            );
        }
    }

    #[test]
    fn a_restart_only_ends_the_sessions_gracefully_except_in_arp_mode() {
        let restart = [Step::RestartSessions, Step::LeaveForNextProcess];
        assert_eq!(order(Mode::Bgp, Stop::Restart), restart);
        assert_eq!(order(Mode::Static, Stop::Restart), restart);
        assert_eq!(
            order(Mode::Arp, Stop::Restart),
            order(Mode::Arp, Stop::Shutdown)
        );
    }

    fn node(json: serde_json::Value) -> Node {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_stop_is_a_restart_unless_the_node_goes_away_or_graceful_restart_is_off() {
        let plain = node(serde_json::json!({"metadata": {"name": "n1"}}));
        assert_eq!(stop(true, false, true, Some(&plain)).0, Stop::Restart);
        assert_eq!(stop(true, false, true, None).0, Stop::Restart);
        let (kind, why) = stop(false, false, true, Some(&plain));
        assert_eq!(kind, Stop::Shutdown);
        assert!(why.contains("vipd_bgp_restart_time=0"), "{why}");
        for (case, json, says) in [
            (
                "deleted",
                serde_json::json!({"metadata": {"name": "n1",
                    "deletionTimestamp": "2026-12-07T10:00:00Z"}}),
                "being deleted",
            ),
            (
                "cordoned",
                serde_json::json!({"metadata": {"name": "n1"},
                    "spec": {"unschedulable": true}}),
                "cordoned",
            ),
            (
                "autoscaler",
                serde_json::json!({"metadata": {"name": "n1"},
                    "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler",
                                         "effect": "NoSchedule"}]}}),
                "ToBeDeletedByClusterAutoscaler",
            ),
            (
                "out of service",
                serde_json::json!({"metadata": {"name": "n1"},
                    "spec": {"taints": [{"key": "node.kubernetes.io/out-of-service",
                                         "value": "nodeshutdown", "effect": "NoExecute"}]}}),
                "out-of-service",
            ),
            (
                "excluded",
                serde_json::json!({"metadata": {"name": "n1", "labels":
                    {"node.kubernetes.io/exclude-from-external-load-balancers": ""}}}),
                "exclude-from-external-load-balancers",
            ),
            (
                "kubelet shutdown",
                serde_json::json!({"metadata": {"name": "n1"},
                    "status": {"conditions": [{"type": "Ready", "status": "False",
                        "reason": "KubeletNotReady", "message": "node is shutting down"}]}}),
                "shutting down",
            ),
        ] {
            let (kind, why) = stop(true, false, true, Some(&node(json)));
            assert_eq!(kind, Stop::Shutdown, "{case}");
            assert!(why.contains(says), "{case}: {why}");
        }
        // Not ready for another reason (the kubelet lost the API server): still a restart.
        let unready = node(serde_json::json!({"metadata": {"name": "n1"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown",
                "message": "Kubelet stopped posting node status."}]}}));
        assert_eq!(stop(true, false, true, Some(&unready)).0, Stop::Restart);
        // The exclude label only counts where vipd honours it (vipd_honour_exclude_label).
        let excluded = node(serde_json::json!({"metadata": {"name": "n1", "labels":
            {"node.kubernetes.io/exclude-from-external-load-balancers": ""}}}));
        assert_eq!(stop(true, false, false, Some(&excluded)).0, Stop::Restart);
        // A taint vipd does not know about is no reason to shut down.
        let tainted = node(serde_json::json!({"metadata": {"name": "n1"},
            "spec": {"taints": [{"key": "dedicated", "value": "lb", "effect": "NoSchedule"}]}}));
        assert_eq!(stop(true, false, true, Some(&tainted)).0, Stop::Restart);
    }

    #[test]
    fn a_leaving_node_is_marked_then_withdrawn_after_the_drain_time() {
        let t = Instant::now();
        let why = || Some("cordoned".to_string());
        let d = Some(Duration::from_secs(30));
        assert_eq!(drain(None, None, d, t), Drain::Serving);
        assert_eq!(
            drain(why(), Some(t), d, t + Duration::from_secs(29)),
            Drain::Marked {
                why: "cordoned".into(),
                until: Some(t + Duration::from_secs(30))
            }
        );
        assert_eq!(
            drain(why(), Some(t), d, t + Duration::from_secs(30)),
            Drain::Withdrawn {
                why: "cordoned".into()
            }
        );
        // Without a drain time the routes stay marked until the stop.
        assert_eq!(
            drain(why(), Some(t), None, t + Duration::from_secs(86_400)),
            Drain::Marked {
                why: "cordoned".into(),
                until: None
            }
        );
    }

    #[test]
    fn an_operators_drain_makes_the_stop_a_shutdown() {
        let (kind, why) = stop(true, true, false, None);
        assert_eq!(kind, Stop::Shutdown);
        assert!(why.contains("SIGUSR1"), "{why}");
        assert_eq!(stop(true, false, false, None).0, Stop::Restart);
    }
}

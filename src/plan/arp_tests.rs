//! ARP mode's decision tables: exact step lists for what the network-namespace tests cover
//! (failover, DHCP single holder, ETP Local, Lease loss mid-claim, a Service going), without
//! root.

use super::*;
use crate::decide::{self, ClusterView, DecideConfig, NodeCtx};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const NODE: &str = "n1";

fn service(name: &str, ip: &str, etp: &str, annotations: serde_json::Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                "annotations": annotations},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": ip,
                "externalTrafficPolicy": etp,
                "ports": [{"port": 80, "protocol": "TCP"}]},
        }))
        .unwrap(),
    )
}

/// One ready endpoint of `service`, on `node`.
fn slice(service: &str, node: &str) -> Arc<EndpointSlice> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-1"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.9"], "nodeName": node,
                "conditions": {"ready": true, "serving": true}}],
        }))
        .unwrap(),
    )
}

fn decided(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Desired {
    decided_on(services, slices, &NodeCtx::from_node(NODE, None))
}

fn decided_on(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>], node: &NodeCtx) -> Desired {
    let view = ClusterView {
        services,
        endpoint_slices: slices,
    };
    let cfg = DecideConfig {
        lb_class_only: false,
        lb_class_name: "kube-vip.io/kube-vip-class".into(),
        lb_class_legacy_handling: true,
        announce_ipv4: true,
        announce_ipv6: true,
        honour_exclude_label: true,
        status_is_source: false,
        vlans: true,
    };
    decide::desired(&view, node, &cfg)
}

fn arp(election: ElectionScope, interface: Option<&str>) -> ArpSettings {
    ArpSettings {
        election,
        rate: Duration::from_secs(3),
        services_interface: None,
        interface: interface.map(Into::into),
        masks: Default::default(),
    }
}

fn key(name: &str) -> ServiceKey {
    ServiceKey {
        namespace: "default".into(),
        name: name.into(),
    }
}

fn lease(name: &str) -> LeaseKey {
    LeaseKey {
        namespace: "default".into(),
        name: name.into(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn intent(svc: &Service) -> ServiceIntent {
    ServiceIntent::read(svc).0
}

fn eth(name: &str) -> Links {
    Links {
        existing: BTreeSet::from([name.to_owned()]),
        ..Links::default()
    }
}

fn claimed(vip: &str, ifname: &str, dhcp: Option<&str>) -> BTreeMap<IpAddr, Claimed> {
    BTreeMap::from([(
        ip(vip),
        Claimed {
            ifname: ifname.into(),
            dhcp: dhcp.map(key),
        },
    )])
}

fn stand_for(name: &str, eligible: bool) -> Step {
    Step::Lease(LeaseStep::Stand {
        lease: lease(name),
        eligible,
    })
}

fn claim(vip: &str, ifname: &str, dhcp: Option<&str>) -> Step {
    Step::Claim {
        vip: ip(vip),
        ifname: ifname.into(),
        dhcp: dhcp.map(key),
    }
}

/// One Service, 10.0.0.10, under ETP Cluster with an endpoint elsewhere: every node may serve.
struct Web {
    desired: Desired,
}

fn web() -> Web {
    let services = vec![service("web", "10.0.0.10", "Cluster", json!({}))];
    let desired = decided(&services, &[slice("web", "other")]);
    Web { desired }
}

fn standing_of(w: &Web, arp: &ArpSettings, links: &Links) -> Standing {
    stand(&w.desired, arp, NODE, links, &BTreeMap::new(), None)
}

/// The steps for a node that stands for `kubevip-web`, holds 10.0.0.10 on eth0 and leads `led`.
fn holding_web(s: &Standing, led: &BTreeSet<LeaseKey>) -> Vec<Step> {
    let stood = BTreeMap::from([(lease("kubevip-web"), true)]);
    let held = claimed("10.0.0.10", "eth0", None);
    hold(s, led, &BTreeMap::new(), &held, &stood).1
}

#[test]
fn a_node_that_can_place_the_vip_stands_and_claims_it_once_it_leads() {
    let w = web();
    let s = standing_of(
        &w,
        &arp(ElectionScope::PerService, Some("eth0")),
        &eth("eth0"),
    );
    assert_eq!(s.lease_of[&key("web")], lease("kubevip-web"));
    assert_eq!(s.eligible, BTreeMap::from([(lease("kubevip-web"), true)]));
    assert!(s.unplaced.is_empty(), "{:?}", s.unplaced);

    // Not leading yet: stand, claim nothing.
    let none = BTreeSet::new();
    let (wanted, steps) = hold(
        &s,
        &none,
        &BTreeMap::new(),
        &BTreeMap::new(),
        &BTreeMap::new(),
    );
    assert!(wanted.is_empty());
    assert_eq!(steps, [stand_for("kubevip-web", true)]);

    // Elected: the VIP is claimed on its interface; standing again is no step.
    let led = BTreeSet::from([lease("kubevip-web")]);
    let stood = BTreeMap::from([(lease("kubevip-web"), true)]);
    let (wanted, steps) = hold(&s, &led, &BTreeMap::new(), &BTreeMap::new(), &stood);
    assert_eq!(
        wanted,
        BTreeMap::from([(
            ip("10.0.0.10"),
            ("eth0".into(), BTreeSet::from([key("web")]))
        )])
    );
    assert_eq!(steps, [claim("10.0.0.10", "eth0", None)]);

    // Held: nothing to do.
    let steps = holding_web(&s, &led);
    assert!(steps.is_empty(), "{steps:?}");
}

#[test]
fn a_lease_lost_mid_claim_releases_the_vip_and_keeps_standing() {
    let w = web();
    let s = standing_of(
        &w,
        &arp(ElectionScope::PerService, Some("eth0")),
        &eth("eth0"),
    );
    let steps = holding_web(&s, &BTreeSet::new());
    assert_eq!(steps, [Step::Release(ip("10.0.0.10"))]);
}

#[test]
fn a_service_that_goes_loses_its_address_before_its_lease_is_released() {
    let s = standing_of(
        &Web {
            desired: Desired::default(),
        },
        &arp(ElectionScope::PerService, Some("eth0")),
        &eth("eth0"),
    );
    let led = BTreeSet::from([lease("kubevip-web")]);
    let steps = holding_web(&s, &led);
    assert_eq!(
        steps,
        [
            Step::Release(ip("10.0.0.10")),
            Step::Lease(LeaseStep::Unstand(lease("kubevip-web"))),
        ]
    );
}

#[test]
fn etp_local_without_a_local_endpoint_releases_the_vip_then_stands_down() {
    let services = vec![service("web", "10.0.0.10", "Local", json!({}))];
    let w = Web {
        desired: decided(&services, &[slice("web", "other")]),
    };
    let s = standing_of(
        &w,
        &arp(ElectionScope::PerService, Some("eth0")),
        &eth("eth0"),
    );
    assert_eq!(s.eligible, BTreeMap::from([(lease("kubevip-web"), false)]));
    let led = BTreeSet::from([lease("kubevip-web")]);
    let steps = holding_web(&s, &led);
    assert_eq!(
        steps,
        [
            Step::Release(ip("10.0.0.10")),
            stand_for("kubevip-web", false)
        ]
    );

    // With an endpoint here, the node stands again and claims once elected.
    let services = vec![service("web", "10.0.0.10", "Local", json!({}))];
    let w = Web {
        desired: decided(&services, &[slice("web", NODE)]),
    };
    let s = standing_of(
        &w,
        &arp(ElectionScope::PerService, Some("eth0")),
        &eth("eth0"),
    );
    let stood = BTreeMap::from([(lease("kubevip-web"), false)]);
    let (_, steps) = hold(&s, &led, &BTreeMap::new(), &BTreeMap::new(), &stood);
    assert_eq!(
        steps,
        [
            stand_for("kubevip-web", true),
            claim("10.0.0.10", "eth0", None)
        ]
    );
}

#[test]
fn without_an_interface_for_the_vip_a_node_warns_and_does_not_stand_unless_one_lease_elects_all() {
    let w = web();
    let s = standing_of(&w, &arp(ElectionScope::PerService, None), &Links::default());
    assert_eq!(s.eligible, BTreeMap::from([(lease("kubevip-web"), false)]));
    assert_eq!(s.unplaced.len(), 1);
    let (k, note) = &s.unplaced[0];
    assert_eq!(k, &key("web"));
    assert!(
        note.contains("no interface has a subnet holding 10.0.0.10"),
        "{note}"
    );

    // The subnet that holds the VIP names its interface.
    let links = Links {
        subnet_of: BTreeMap::from([(ip("10.0.0.10"), "eth1".into())]),
        ..Links::default()
    };
    let s = standing_of(&w, &arp(ElectionScope::PerService, None), &links);
    assert_eq!(
        s.placed[&key("web")],
        [(ip("10.0.0.10"), "eth1".to_owned())]
    );

    // One Lease for all: every node stands (kube-vip's behaviour), the Service unplaced.
    let global = ElectionScope::Global {
        namespace: "kube-system".into(),
        name: "plndr-svcs-lock".into(),
    };
    let s = standing_of(&w, &arp(global, None), &Links::default());
    let all = LeaseKey {
        namespace: "kube-system".into(),
        name: "plndr-svcs-lock".into(),
    };
    assert_eq!(s.eligible, BTreeMap::from([(all.clone(), true)]));
    assert!(s.placed.is_empty());
    let (wanted, steps) = hold(
        &s,
        &BTreeSet::from([all]),
        &BTreeMap::new(),
        &BTreeMap::new(),
        &BTreeMap::new(),
    );
    assert!(wanted.is_empty());
    assert_eq!(steps.len(), 1, "{steps:?}");
}

#[test]
fn a_node_excluded_from_load_balancers_never_stands_not_even_for_the_one_lease_of_all() {
    let services = vec![service("web", "10.0.0.10", "Cluster", json!({}))];
    let excluded = NodeCtx {
        name: NODE.into(),
        labels: BTreeMap::from([(
            "node.kubernetes.io/exclude-from-external-load-balancers".into(),
            String::new(),
        )]),
        drained: None,
    };
    let w = Web {
        desired: decided_on(&services, &[slice("web", "other")], &excluded),
    };
    let global = ElectionScope::Global {
        namespace: "kube-system".into(),
        name: "plndr-svcs-lock".into(),
    };
    let all = LeaseKey {
        namespace: "kube-system".into(),
        name: "plndr-svcs-lock".into(),
    };
    for (election, key) in [
        (ElectionScope::PerService, lease("kubevip-web")),
        (global, all),
    ] {
        let s = standing_of(&w, &arp(election, Some("eth0")), &eth("eth0"));
        assert_eq!(s.eligible, BTreeMap::from([(key, false)]));
        assert!(s.placed.is_empty());
    }
}

#[test]
fn a_vip_whose_interface_changes_is_released_then_claimed_on_the_new_one() {
    let services = vec![service(
        "web",
        "10.0.0.10",
        "Cluster",
        json!({"kube-vip.io/serviceInterface": "eth1"}),
    )];
    let w = Web {
        desired: decided(&services, &[slice("web", "other")]),
    };
    let s = standing_of(
        &w,
        &arp(ElectionScope::PerService, Some("eth0")),
        &eth("eth0"),
    );
    let led = BTreeSet::from([lease("kubevip-web")]);
    let steps = holding_web(&s, &led);
    assert_eq!(
        steps,
        [
            Step::Release(ip("10.0.0.10")),
            claim("10.0.0.10", "eth1", None)
        ]
    );
}

/// A DHCP Service whose macvlan sits on eth1.
fn dhcp() -> Web {
    let services = vec![service(
        "dhcp",
        "0.0.0.0",
        "Cluster",
        json!({"kube-vip.io/serviceInterface": "eth1"}),
    )];
    let desired = decided(&services, &[slice("dhcp", "other")]);
    Web { desired }
}

#[test]
fn only_the_leader_holds_a_dhcp_lease_and_claims_it_on_its_macvlan() {
    let w = dhcp();
    let s = standing_of(&w, &arp(ElectionScope::PerService, None), &eth("eth1"));
    assert_eq!(
        s.dhcp,
        BTreeMap::from([(key("dhcp"), lease("kubevip-dhcp"))])
    );
    assert_eq!(s.eligible, BTreeMap::from([(lease("kubevip-dhcp"), true)]));

    // The leader: the client keeps leasing; its address is claimed on the macvlan.
    let led = BTreeSet::from([lease("kubevip-dhcp")]);
    let mut desired = w.desired.clone();
    gate(&mut desired, &s, &led, NODE);
    assert_eq!(
        dhcp_plan::want(desired.services.get(&key("dhcp"))),
        Want::Lease
    );
    let leased = BTreeMap::from([(key("dhcp"), (ip("192.168.9.50"), "vip-dhcp".to_owned()))]);
    let stood = BTreeMap::from([(lease("kubevip-dhcp"), true)]);
    let (_, steps) = hold(&s, &led, &leased, &BTreeMap::new(), &stood);
    assert_eq!(steps, [claim("192.168.9.50", "vip-dhcp", Some("dhcp"))]);

    // Any other node: the leased address stops being announced before the client stops, and
    // nothing of the Service is held.
    let mut desired = w.desired.clone();
    gate(&mut desired, &s, &BTreeSet::new(), NODE);
    assert_eq!(
        dhcp_plan::want(desired.services.get(&key("dhcp"))),
        Want::Elsewhere
    );
    let held = claimed("192.168.9.50", "vip-dhcp", Some("dhcp"));
    assert_eq!(
        before_dhcp(&held, &desired, &s),
        [Step::Release(ip("192.168.9.50"))]
    );
    let (wanted, steps) = hold(
        &s,
        &BTreeSet::new(),
        &BTreeMap::new(),
        &BTreeMap::new(),
        &stood,
    );
    assert!(wanted.is_empty());
    assert!(steps.is_empty(), "{steps:?}");
}

#[test]
fn a_node_without_the_macvlan_parent_or_whose_dhcp_failed_stands_down_and_says_why() {
    let w = dhcp();
    // eth1 does not exist here.
    let s = standing_of(&w, &arp(ElectionScope::PerService, None), &Links::default());
    assert_eq!(s.eligible, BTreeMap::from([(lease("kubevip-dhcp"), false)]));
    let Some(Skip::NoInterface { note }) = s.no_parent.get(&key("dhcp")) else {
        panic!("{:?}", s.no_parent);
    };
    assert_eq!(
        note,
        "interface eth1 (the DHCP macvlan's parent) does not exist on node n1"
    );
    assert_eq!(s.unplaced, [(key("dhcp"), note.clone())]);
    let mut desired = w.desired.clone();
    gate(&mut desired, &s, &BTreeSet::new(), NODE);
    assert_eq!(
        desired.services[&key("dhcp")].skip,
        Some(Skip::NoInterface { note: note.clone() })
    );

    // The client failed to start here lately: the node stands down so another can lease.
    let failing = BTreeMap::from([(key("dhcp"), "no such device".to_owned())]);
    let s = stand(
        &w.desired,
        &arp(ElectionScope::PerService, None),
        NODE,
        &eth("eth1"),
        &failing,
        None,
    );
    assert_eq!(s.eligible, BTreeMap::from([(lease("kubevip-dhcp"), false)]));
    assert_eq!(
        s.no_parent[&key("dhcp")],
        Skip::DhcpFailed {
            note: "DHCP cannot start on node n1: no such device; it stands again later".into()
        }
    );
    assert!(
        s.unplaced.is_empty(),
        "a failure is reported by the DHCP driver"
    );
}

#[test]
fn per_service_leases_are_named_after_the_service_unless_the_annotation_names_one() {
    let s = key("shop");
    let ps = ElectionScope::PerService;
    assert_eq!(gate::lease_key(&s, None, &ps), lease("kubevip-shop"));
    assert_eq!(gate::lease_key(&s, Some("shared"), &ps), lease("shared"));
    assert_eq!(
        gate::lease_key(&s, Some("infra/shared"), &ps),
        LeaseKey {
            namespace: "infra".into(),
            name: "shared".into()
        }
    );
    assert_eq!(gate::lease_key(&s, Some(" "), &ps), lease("kubevip-shop"));
    let global = ElectionScope::Global {
        namespace: "kube-system".into(),
        name: "plndr-svcs-lock".into(),
    };
    assert_eq!(
        gate::lease_key(&s, Some("x"), &global),
        LeaseKey {
            namespace: "kube-system".into(),
            name: "plndr-svcs-lock".into()
        }
    );
}

#[test]
fn a_dhcp_macvlan_sits_on_the_annotated_then_the_services_then_the_vip_interface() {
    let svc = |interface: Option<&str>| {
        let ann = match interface {
            Some(i) => json!({"kube-vip.io/serviceInterface": i}),
            None => json!({}),
        };
        intent(&service("web", "0.0.0.0", "Cluster", ann))
    };
    let both = ArpSettings {
        services_interface: Some("eth1".into()),
        ..arp(ElectionScope::PerService, Some("eth0"))
    };
    assert_eq!(dhcp_parent(&svc(Some("eth2")), &both), Ok("eth2".into()));
    assert_eq!(dhcp_parent(&svc(Some("auto")), &both), Ok("eth1".into()));
    assert_eq!(
        dhcp_parent(&svc(None), &arp(ElectionScope::PerService, Some("eth0"))),
        Ok("eth0".into())
    );
    // No address to find a subnet by: the error names the settings that fix it.
    let err = dhcp_parent(&svc(None), &arp(ElectionScope::PerService, Some("auto"))).unwrap_err();
    assert!(
        err.contains("vip_interface") && err.contains(SERVICE_INTERFACE),
        "{err}"
    );
}

#[test]
fn auto_means_the_subnet_match_before_any_interface_the_settings_name() {
    let links = Links {
        subnet_of: BTreeMap::from([(ip("10.0.0.10"), "eth3".into())]),
        ..Links::default()
    };
    let named = ArpSettings {
        services_interface: Some("eth1".into()),
        ..arp(ElectionScope::PerService, Some("eth0"))
    };
    let with = |ann: serde_json::Value| intent(&service("web", "10.0.0.10", "Cluster", ann));
    let vip = ip("10.0.0.10");
    // The annotation's `auto` wins over vip_servicesinterface and vip_interface (kube-vip).
    let auto = with(json!({"kube-vip.io/serviceInterface": "auto"}));
    assert_eq!(interface_for(&auto, vip, &named, &links), Ok("eth3".into()));
    // Without it: vip_servicesinterface, and its `auto` is the subnet match too.
    assert_eq!(
        interface_for(&with(json!({})), vip, &named, &links),
        Ok("eth1".into())
    );
    let services_auto = ArpSettings {
        services_interface: Some("auto".into()),
        ..named.clone()
    };
    assert_eq!(
        interface_for(&with(json!({})), vip, &services_auto, &links),
        Ok("eth3".into())
    );
    // A DHCP macvlan has no VIP to match: `auto` in vip_servicesinterface passes to vip_interface.
    let dhcp = intent(&service("web", "0.0.0.0", "Cluster", json!({})));
    assert_eq!(dhcp_parent(&dhcp, &services_auto), Ok("eth0".into()));
}

#[test]
fn lease_steps_stop_what_is_unused_first_and_only_change_what_changed() {
    let eligible = BTreeMap::from([(lease("a"), true), (lease("b"), false), (lease("c"), true)]);
    let stood = BTreeMap::from([
        (lease("a"), true),
        (lease("b"), true),
        (lease("gone"), true),
    ]);
    assert_eq!(
        gate::lease_steps(&eligible, &stood),
        [
            LeaseStep::Unstand(lease("gone")),
            LeaseStep::Stand {
                lease: lease("b"),
                eligible: false
            },
            LeaseStep::Stand {
                lease: lease("c"),
                eligible: true
            },
        ]
    );
}

fn control_plane(unhealthy: Option<&str>) -> ControlPlane {
    ControlPlane {
        lease: LeaseKey {
            namespace: "kube-system".into(),
            name: "plndr-cp-lock".into(),
        },
        vips: vec![ip("10.0.0.100")],
        unhealthy: unhealthy.map(Into::into),
    }
}

fn cp_lease() -> LeaseKey {
    control_plane(None).lease
}

/// No Service at all: the control-plane VIP alone (`cp_enable` without `svc_enable`).
fn stand_cp(cp: &ControlPlane, arp: &ArpSettings, links: &Links) -> Standing {
    stand(
        &Desired::default(),
        arp,
        NODE,
        links,
        &BTreeMap::new(),
        Some(cp),
    )
}

#[test]
fn the_control_plane_vip_is_stood_for_while_healthy_and_held_only_while_led() {
    let cp = control_plane(None);
    let settings = arp(ElectionScope::PerService, Some("eth0"));
    let s = stand_cp(&cp, &settings, &Links::default());
    assert_eq!(s.eligible, BTreeMap::from([(cp_lease(), true)]));
    // Not led yet: stand, claim nothing.
    let (wanted, steps) = hold(
        &s,
        &BTreeSet::new(),
        &BTreeMap::new(),
        &BTreeMap::new(),
        &BTreeMap::new(),
    );
    assert!(wanted.is_empty());
    assert_eq!(
        steps,
        [Step::Lease(LeaseStep::Stand {
            lease: cp_lease(),
            eligible: true
        })]
    );
    // Led: claim it on vip_interface, for no Service.
    let led = BTreeSet::from([cp_lease()]);
    let stood = BTreeMap::from([(cp_lease(), true)]);
    let (wanted, steps) = hold(&s, &led, &BTreeMap::new(), &BTreeMap::new(), &stood);
    assert_eq!(
        wanted,
        BTreeMap::from([(ip("10.0.0.100"), ("eth0".to_owned(), BTreeSet::new()))])
    );
    assert_eq!(steps, [claim("10.0.0.100", "eth0", None)]);
    // Held: nothing to do.
    let held = claimed("10.0.0.100", "eth0", None);
    let (_, steps) = hold(&s, &led, &BTreeMap::new(), &held, &stood);
    assert!(steps.is_empty(), "{steps:?}");
}

#[test]
fn a_failing_api_server_or_a_down_link_releases_the_address_before_the_lease() {
    let settings = arp(ElectionScope::PerService, Some("eth0"));
    let led = BTreeSet::from([cp_lease()]);
    let stood = BTreeMap::from([(cp_lease(), true)]);
    let held = claimed("10.0.0.100", "eth0", None);
    let unhealthy = control_plane(Some("connection refused"));
    let down = Links {
        down: BTreeMap::from([("eth0".to_owned(), "interface eth0 is down".to_owned())]),
        ..Links::default()
    };
    for (cp, links, why) in [
        (
            &unhealthy,
            &Links::default(),
            NotStanding::Unhealthy("connection refused".into()),
        ),
        (
            &control_plane(None),
            &down,
            NotStanding::LinkDown("interface eth0 is down".into()),
        ),
    ] {
        let s = stand_cp(cp, &settings, links);
        assert_eq!(s.control_plane.as_ref().unwrap().not_standing, Some(why));
        let (wanted, steps) = hold(&s, &led, &BTreeMap::new(), &held, &stood);
        assert!(wanted.is_empty(), "not held, though the Lease is still led");
        // The address goes first; then the election learns this node no longer stands (and
        // releases the Lease, so another node takes it without waiting for it to expire).
        assert_eq!(
            steps,
            [
                Step::Release(ip("10.0.0.100")),
                Step::Lease(LeaseStep::Stand {
                    lease: cp_lease(),
                    eligible: false
                }),
            ]
        );
    }
}

#[test]
fn the_control_plane_vip_goes_on_the_subnets_interface_without_vip_interface() {
    let cp = control_plane(None);
    let settings = arp(ElectionScope::PerService, None);
    let s = stand_cp(&cp, &settings, &Links::default());
    let standing = s.control_plane.unwrap();
    assert_eq!(
        standing.not_standing,
        Some(NotStanding::Unplaced(
            "no interface has a subnet holding the control-plane VIP 10.0.0.100: set vip_interface"
                .into()
        ))
    );
    assert_eq!(s.eligible, BTreeMap::from([(cp_lease(), false)]));
    let links = Links {
        subnet_of: BTreeMap::from([(ip("10.0.0.100"), "eth2".into())]),
        ..Links::default()
    };
    // vip_servicesinterface is the Services' alone.
    let services_only = ArpSettings {
        services_interface: Some("eth9".into()),
        ..settings
    };
    let s = stand_cp(&cp, &services_only, &links);
    let standing = s.control_plane.unwrap();
    assert_eq!(standing.not_standing, None);
    assert_eq!(standing.placed, [(ip("10.0.0.100"), "eth2".to_owned())]);
}

#[test]
fn services_and_the_control_plane_stand_for_their_own_leases_side_by_side() {
    let w = web();
    let cp = control_plane(None);
    let settings = arp(ElectionScope::PerService, Some("eth0"));
    let s = stand(
        &w.desired,
        &settings,
        NODE,
        &Links::default(),
        &BTreeMap::new(),
        Some(&cp),
    );
    assert_eq!(
        s.eligible,
        BTreeMap::from([(lease("kubevip-web"), true), (cp_lease(), true)])
    );
    // Only the Service's Lease is led: only its VIP is held.
    let led = BTreeSet::from([lease("kubevip-web")]);
    let (wanted, _) = hold(&s, &led, &BTreeMap::new(), &BTreeMap::new(), &s.eligible);
    assert_eq!(
        wanted.keys().copied().collect::<Vec<_>>(),
        [ip("10.0.0.10")]
    );
}

#[test]
fn a_service_vlan_comes_first_is_wanted_while_the_service_is_vipds_and_must_exist() {
    let vlan =
        json!({"kube-vip.io/serviceVLAN": "eth1.300", "kube-vip.io/serviceInterface": "eth2"});
    let services = vec![
        service("tagged", "10.0.0.10", "Cluster", vlan.clone()),
        // No endpoint anywhere: still vipd's Service, its VLAN stays.
        service(
            "idle",
            "10.0.0.11",
            "Cluster",
            json!({"kube-vip.io/serviceVLAN": "eth1.301"}),
        ),
        // Another class: not vipd's, no VLAN for it.
        Arc::new({
            let mut s = (*service(
                "other",
                "10.0.0.12",
                "Cluster",
                json!({"kube-vip.io/serviceVLAN": "eth1.302"}),
            ))
            .clone();
            s.spec.as_mut().unwrap().load_balancer_class = Some("someone-else".into());
            s
        }),
    ];
    let desired = decided(&services, &[slice("tagged", "other")]);
    let tag = |t: u16| crate::model::Vlan {
        parent: "eth1".into(),
        tag: t,
    };
    assert_eq!(vlans(&desired), BTreeSet::from([tag(300), tag(301)]));
    assert_eq!(
        parents_to_check(&desired, &arp(ElectionScope::PerService, Some("eth0"))),
        BTreeSet::from(["eth1.300".to_owned(), "eth1.301".to_owned()])
    );
    let cfg = arp(ElectionScope::PerService, Some("eth0"));
    // The VLAN wins over the interface annotation and the settings, once it exists.
    let s = stand(
        &desired,
        &cfg,
        NODE,
        &eth("eth1.300"),
        &BTreeMap::new(),
        None,
    );
    assert_eq!(
        s.placed[&key("tagged")],
        [(ip("10.0.0.10"), "eth1.300".to_owned())]
    );
    // Missing (its parent absent, or not created): not placed, and the Warning says why.
    let s = stand(&desired, &cfg, NODE, &eth("eth0"), &BTreeMap::new(), None);
    assert!(!s.placed.contains_key(&key("tagged")));
    let (_, note) = s
        .unplaced
        .iter()
        .find(|(k, _)| k == &key("tagged"))
        .expect("a note for the tagged Service");
    assert!(
        note.contains("eth1.300") && note.contains("kube-vip.io/serviceVLAN"),
        "{note}"
    );
    // A DHCP Service's macvlan sits on its VLAN.
    assert_eq!(
        dhcp_parent(&intent(&service("d", "0.0.0.0", "Cluster", vlan)), &cfg).as_deref(),
        Ok("eth1.300")
    );
}

//! Settings as kube-vip users write them, checked end to end through [`super::validate`].

use super::*;
use std::time::Duration;

fn raw(pairs: &[(&str, &str)]) -> RawSettings {
    let mut r = RawSettings {
        bgp_enable: Some("true".into()),
        bgp_peers: Some("10.99.0.2:65530".into()),
        ..RawSettings::default()
    };
    for (k, v) in pairs {
        let v = Some((*v).to_owned());
        match *k {
            "bgp_as" => r.bgp_as = v,
            "bgp_routerid" => r.bgp_routerid = v,
            "bgp_peers" => r.bgp_peers = v,
            "bgp_peeraddress" => r.bgp_peeraddress = v,
            "bgp_peerpass" => r.bgp_peerpass = v,
            "bgp_multihop" => r.bgp_multihop = v,
            "bgp_sourceip" => r.bgp_sourceip = v,
            "bgp_sourceif" => r.bgp_sourceif = v,
            "bgp_hold_time" => r.bgp_hold_time = v,
            "bgp_enable" => r.bgp_enable = v,
            "svc_enable" => r.svc_enable = v,
            "vipd_honour_exclude_label" => r.vipd_honour_exclude_label = v,
            "vip_nodename" => r.vip_nodename = v,
            "hostname" => r.hostname = v,
            "lb_class_name" => r.lb_class_name = v,
            "lb_class_legacy_handling" => r.lb_class_legacy_handling = v,
            "vip_address" => r.vip_address = v,
            "vip_loglevel" => r.vip_loglevel = v,
            "vip_arp" => r.vip_arp = v,
            "vip_routingtable" => r.vip_routingtable = v,
            "vip_subnet" => r.vip_subnet = v,
            "vip_routingtableid" => r.vip_routingtableid = v,
            "vip_routingtabletype" => r.vip_routingtabletype = v,
            "vip_routingprotocol" => r.vip_routingprotocol = v,
            "vip_cleanroutingtable" => r.vip_cleanroutingtable = v,
            "bgp_attach_ip_to_interface" => r.bgp_attach_ip_to_interface = v,
            "svc_election" => r.svc_election = v,
            "svc_leasename" => r.svc_leasename = v,
            "vip_leaseduration" => r.vip_leaseduration = v,
            "vip_renewdeadline" => r.vip_renewdeadline = v,
            "vip_retryperiod" => r.vip_retryperiod = v,
            "vip_arp_rate" => r.vip_arp_rate = v,
            "vip_interface" => r.vip_interface = v,
            "cp_enable" => r.cp_enable = v,
            "port" => r.port = v,
            "control_plane_health_check_address" => r.control_plane_health_check_address = v,
            "control_plane_health_check_period_seconds" => {
                r.control_plane_health_check_period_seconds = v
            }
            "control_plane_health_check_timeout_seconds" => {
                r.control_plane_health_check_timeout_seconds = v
            }
            "control_plane_health_check_failure_threshold" => {
                r.control_plane_health_check_failure_threshold = v
            }
            "control_plane_health_check_ca_path" => r.control_plane_health_check_ca_path = v,
            "vipd_cp_health_check" => r.vipd_cp_health_check = v,
            "cp_namespace" => r.cp_namespace = v,
            "vip_leasename" => r.vip_leasename = v,
            "vip_leaderelection" => r.vip_leaderelection = v,
            "kubernetes_addr" => r.kubernetes_addr = v,
            "pod_namespace" => r.pod_namespace = v,
            "sa_namespace" => r.sa_namespace = v,
            "lb_ipam" => r.lb_ipam = v,
            "enable_upnp" => r.enable_upnp = v,
            "vipd_bgp_restart_time" => r.bgp_restart_time = v,
            "vipd_bgp_llgr_stale_time" => r.bgp_llgr_stale_time = v,
            "vipd_bfd" => r.bfd = v,
            "vipd_bgp_drain_time" => r.bgp_drain_time = v,
            other => panic!("test knows no {other}"),
        }
    }
    r
}

#[test]
fn bfd_for_every_peer_and_the_drain_time_are_read_and_checked() {
    use vipd_providers::BfdSpec;
    let c = validate(&raw(&[
        ("vipd_bfd", "true;100;200;5"),
        ("vipd_bgp_drain_time", "30"),
    ]))
    .unwrap();
    assert_eq!(
        c.bgp.bfd,
        Some(BfdSpec {
            enabled: true,
            rx_ms: 100,
            tx_ms: 200,
            multiplier: 5
        })
    );
    assert_eq!(c.bgp.drain_time, Some(std::time::Duration::from_secs(30)));
    let c = validate(&raw(&[])).unwrap();
    assert_eq!((c.bgp.bfd, c.bgp.drain_time), (None, None));
    for (setting, value) in [
        ("vipd_bfd", "yes;300;300;3"),
        ("vipd_bfd", "true;300"),
        ("vipd_bfd", "true;300;0;3"),
        ("vipd_bgp_drain_time", "-1"),
        ("vipd_bgp_drain_time", "86401"),
    ] {
        let e = validate(&raw(&[(setting, value)])).unwrap_err();
        assert!(e.setting.starts_with(setting), "{e}");
        assert_eq!(e.value, value, "{e}");
    }
}

#[test]
fn graceful_restart_is_offered_for_120_s_unless_set_otherwise() {
    use crate::bgp::open::GracefulRestartOffer;
    let gr = |pairs: &[(&str, &str)]| validate(&raw(pairs)).map(|c| c.bgp.graceful_restart);
    assert_eq!(
        gr(&[]).unwrap(),
        Some(GracefulRestartOffer {
            restart_time: 120,
            long_lived_stale_time: 0
        })
    );
    assert_eq!(gr(&[("vipd_bgp_restart_time", "0")]).unwrap(), None);
    assert_eq!(
        gr(&[
            ("vipd_bgp_restart_time", "30"),
            ("vipd_bgp_llgr_stale_time", "86400")
        ])
        .unwrap(),
        Some(GracefulRestartOffer {
            restart_time: 30,
            long_lived_stale_time: 86400
        })
    );
    for (pairs, setting, value) in [
        (
            &[("vipd_bgp_restart_time", "4096")][..],
            "vipd_bgp_restart_time",
            "4096",
        ),
        (
            &[("vipd_bgp_restart_time", "2m")][..],
            "vipd_bgp_restart_time",
            "2m",
        ),
        (
            &[("vipd_bgp_llgr_stale_time", "16777216")][..],
            "vipd_bgp_llgr_stale_time",
            "16777216",
        ),
        (
            &[
                ("vipd_bgp_restart_time", "0"),
                ("vipd_bgp_llgr_stale_time", "60"),
            ][..],
            "vipd_bgp_llgr_stale_time",
            "60",
        ),
    ] {
        let e = gr(pairs).unwrap_err();
        assert!(e.setting.starts_with(setting), "{e}");
        assert_eq!(e.value, value, "{e}");
    }
}

#[test]
fn upnp_is_off_unless_enabled() {
    let with = |more: &[(&str, &str)]| {
        let mut pairs = vec![("svc_enable", "true"), ("vip_nodename", "n1")];
        pairs.extend_from_slice(more);
        validate(&raw(&pairs))
    };
    let upnp = |more: &[(&str, &str)]| with(more).unwrap().services.unwrap().upnp;
    assert!(!upnp(&[]));
    assert!(upnp(&[("enable_upnp", "true")]));
    assert!(with(&[("enable_upnp", "maybe")]).is_err());
}

#[test]
fn defaults_follow_kube_vip() {
    let c = validate(&raw(&[])).unwrap();
    assert_eq!(c.bgp.local_as, 65000);
    assert_eq!(c.bgp.hold_time.secs(), 30);
    assert_eq!(c.bgp.keepalive, Some(Duration::from_secs(10)));
    assert_eq!(c.bgp.router_id, RouterIdSource::Lowest);
    assert_eq!(c.log_filter, "info");
}

#[test]
fn single_peer_is_appended_after_the_list() {
    let c = validate(&raw(&[
        ("bgp_peeraddress", "10.99.0.3"),
        ("bgp_peerpass", "s3cret"),
        ("bgp_multihop", "true"),
    ]))
    .unwrap();
    assert_eq!(c.bgp.peers.len(), 2);
    assert_eq!(c.bgp.peers[1].remote_as, 65000);
    assert!(c.bgp.peers[1].multihop);
    assert_eq!(
        c.bgp.peers[1].password.as_ref().map(|p| p.expose()),
        Some("s3cret")
    );
}

#[test]
fn errors_name_the_setting_and_value() {
    let e = validate(&raw(&[("bgp_as", "65k")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bgp_as (--localAS): \"65k\" is not an AS number (1..4294967295)"
    );
    let e = validate(&raw(&[("bgp_hold_time", "2")])).unwrap_err();
    assert!(e.setting.starts_with("bgp_hold_time"));
    let e = validate(&raw(&[("bgp_routerid", "1.2.3")])).unwrap_err();
    assert_eq!(e.value, "1.2.3");
    let e = validate(&raw(&[
        ("bgp_multihop", "yes please"),
        ("bgp_peeraddress", "10.0.0.1"),
    ]))
    .unwrap_err();
    assert_eq!(e.setting, "bgp_multihop");
}

#[test]
fn secrets_never_appear_in_errors() {
    let e = validate(&raw(&[("bgp_peers", "10.0.0.1:65000:hunter2:nope")])).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let long = "p".repeat(81);
    let e = validate(&raw(&[
        ("bgp_peeraddress", "10.0.0.1"),
        ("bgp_peerpass", &long),
    ]))
    .unwrap_err();
    assert!(!e.to_string().contains(&long));
}

#[test]
fn source_ip_and_interface_together_are_refused() {
    let e = validate(&raw(&[
        ("bgp_sourceip", "10.0.0.1"),
        ("bgp_sourceif", "eth0"),
    ]))
    .unwrap_err();
    assert!(e.reason.contains("set one of them"));
}

#[test]
fn services_mode_takes_kube_vip_defaults_and_names_the_node() {
    let c = validate(&raw(&[("svc_enable", "true"), ("hostname", "Worker-1")])).unwrap();
    let s = c.services.unwrap();
    assert_eq!(
        s.node_name, "worker-1",
        "host name lowercased, as kube-vip does"
    );
    assert_eq!(s.lb_class_name, "kube-vip.io/kube-vip-class");
    assert!(s.lb_class_legacy_handling && !s.lb_class_only && s.status_updates);
    assert!(
        !s.honour_exclude_label,
        "kube-vip never reads the exclude-from-external-load-balancers label"
    );
    let honour = validate(&raw(&[
        ("svc_enable", "true"),
        ("vip_nodename", "node-a"),
        ("vipd_honour_exclude_label", "true"),
    ]))
    .unwrap();
    assert!(honour.services.unwrap().honour_exclude_label);
    assert_eq!((s.interface.as_str(), s.attach_to_interface), ("lo", false));
    let c = validate(&raw(&[
        ("svc_enable", "true"),
        ("vip_nodename", "node-a"),
        ("hostname", "other"),
        ("lb_class_name", ""),
    ]))
    .unwrap();
    let s = c.services.unwrap();
    assert_eq!(s.node_name, "node-a");
    assert_eq!(
        s.lb_class_name, "",
        "an explicitly empty class name is kept"
    );
    let e = validate(&raw(&[("svc_enable", "true"), ("vip_nodename", "Node_A")])).unwrap_err();
    assert_eq!(e.setting, "vip_nodename (--nodeName)");
    assert!(e.reason.contains("not a Kubernetes node name"), "{e}");
    let e = validate(&raw(&[
        ("svc_enable", "true"),
        ("hostname", "n1"),
        ("lb_class_legacy_handling", "maybe"),
    ]))
    .unwrap_err();
    assert_eq!(e.value, "maybe");
}

#[test]
fn bgp_off_is_explained() {
    assert!(validate(&raw(&[("bgp_enable", "false")]))
        .unwrap_err()
        .reason
        .contains("no mode"));
    let mut r = raw(&[]);
    r.bgp_peers = None;
    assert!(validate(&r)
        .unwrap_err()
        .reason
        .contains("at least one peer"));
}

#[test]
fn vip_lists_take_commas_lines_and_comments() {
    assert_eq!(
        parse_vip_list("198.18.0.10, fd00:98::10", "vip_address").unwrap(),
        vec![
            "198.18.0.10".parse::<IpAddr>().unwrap(),
            "fd00:98::10".parse().unwrap()
        ]
    );
    let file = "# VIPs\n198.18.0.10\n\n198.18.0.11 # web\n";
    assert_eq!(parse_vip_list(file, "vip_file").unwrap().len(), 2);
    let e = parse_vip_list("198.18.0.10\n198.18.0.300\n", "vip_file /x").unwrap_err();
    assert_eq!(e.setting, "vip_file /x line 2");
    assert!(parse_vip_list("224.0.0.1", "v")
        .unwrap_err()
        .reason
        .contains("unicast"));
    assert!(parse_vip_list("0.0.0.0", "v")
        .unwrap_err()
        .reason
        .contains("DHCP"));
}

#[test]
fn log_levels_are_read_on_kube_vips_slog_scale_and_by_name() {
    let level = |v: &str| validate(&raw(&[("vip_loglevel", v)])).map(|c| c.log_filter);
    // kube-vip's documented values, and where slog's thresholds put the numbers between.
    for (v, want) in [
        ("-4", "debug"),
        ("-8", "debug"),
        ("-3", "info"),
        ("0", "info"),
        ("1", "warn"),
        ("4", "warn"),
        ("5", "error"),
        ("8", "error"),
        ("12", "error"),
        (" -4 ", "debug"),
        ("warn", "warn"),
        ("trace", "trace"),
    ] {
        assert_eq!(level(v).as_deref(), Ok(want), "vip_loglevel={v}");
    }
    let e = level("loud").unwrap_err().to_string();
    assert!(e.contains("\"loud\"") && e.contains("-4 debug"), "{e}");
}

fn arp(pairs: &[(&str, &str)]) -> Result<ArpSettings, ConfigError> {
    let mut all = vec![
        ("bgp_enable", "false"),
        ("bgp_peers", ""),
        ("vip_arp", "true"),
        ("svc_enable", "true"),
        ("vip_nodename", "n1"),
    ];
    all.extend_from_slice(pairs);
    validate(&raw(&all)).map(|c| c.services.unwrap().arp.unwrap())
}

fn arp_timing(pairs: &[(&str, &str)]) -> crate::election::Timing {
    let mut all = vec![
        ("bgp_enable", "false"),
        ("bgp_peers", ""),
        ("vip_arp", "true"),
        ("svc_enable", "true"),
        ("vip_nodename", "n1"),
    ];
    all.extend_from_slice(pairs);
    validate(&raw(&all))
        .unwrap()
        .services
        .unwrap()
        .election_timing
}

#[test]
fn bgp_services_mode_reads_the_election_timing_too() {
    // DHCP and UPnP Services are served by the elected node of a per-Service Lease.
    let c = validate(&raw(&[
        ("svc_enable", "true"),
        ("vip_nodename", "n1"),
        ("vip_leaseduration", "3"),
        ("vip_renewdeadline", "2"),
        ("vip_retryperiod", "0.5"),
    ]))
    .unwrap();
    assert_eq!(
        c.services.unwrap().election_timing,
        crate::election::Timing {
            lease_duration: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry: Duration::from_millis(500),
        }
    );
    let e = validate(&raw(&[
        ("svc_enable", "true"),
        ("vip_nodename", "n1"),
        ("vip_renewdeadline", "20"),
    ]))
    .unwrap_err();
    assert_eq!(e.setting, "vip_renewdeadline (--leaseRenewDuration)");
}

#[test]
fn arp_mode_takes_kube_vips_defaults_and_needs_no_bgp_peer() {
    let a = arp(&[]).unwrap();
    assert_eq!(
        a.election,
        ElectionScope::Global {
            namespace: "kube-system".into(),
            name: "plndr-svcs-lock".into()
        }
    );
    assert_eq!(
        arp_timing(&[]),
        crate::election::Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    );
    assert_eq!(a.rate, Duration::from_millis(3000));
    assert_eq!((a.interface, a.services_interface), (None, None));
}

#[test]
fn arp_mode_reads_election_timing_rate_and_lease_name() {
    let a = arp(&[
        ("svc_election", "true"),
        ("vip_leaseduration", "3"),
        ("vip_renewdeadline", "2"),
        ("vip_retryperiod", "0.5"),
        ("vip_arp_rate", "1000"),
        ("vip_interface", "auto"),
    ])
    .unwrap();
    assert_eq!(a.election, ElectionScope::PerService);
    assert_eq!(
        arp_timing(&[("vip_retryperiod", "0.5")]).retry,
        Duration::from_millis(500)
    );
    assert_eq!(a.rate, Duration::from_millis(1000));
    assert_eq!(a.interface, None);
    let b = arp(&[
        ("svc_leasename", "infra/lock"),
        ("vip_arp_rate", "100"),
        ("pod_namespace", "vipd"),
    ])
    .unwrap();
    assert_eq!(
        b.election,
        ElectionScope::Global {
            namespace: "infra".into(),
            name: "lock".into()
        }
    );
    assert_eq!(
        b.rate,
        Duration::from_millis(3000),
        "below 500 ms falls back to 3000, as kube-vip"
    );
    let c = arp(&[("svc_leasename", "lock"), ("pod_namespace", "vipd")]).unwrap();
    assert_eq!(
        c.election,
        ElectionScope::Global {
            namespace: "vipd".into(),
            name: "lock".into()
        }
    );
}

#[test]
fn the_lease_namespace_is_pod_namespace_else_the_service_accounts_as_kube_vip_reads_it() {
    let global = |ns: &str| ElectionScope::Global {
        namespace: ns.into(),
        name: "plndr-svcs-lock".into(),
    };
    // A kube-vip DaemonSet in namespace `lb` with the image swapped: no POD_NAMESPACE, the
    // ServiceAccount's namespace file says `lb`, where kube-vip's Lease is.
    let swapped = arp(&[("sa_namespace", "lb")]).unwrap();
    assert_eq!(swapped.election, global("lb"));
    let both = arp(&[("sa_namespace", "lb"), ("pod_namespace", "vipd")]).unwrap();
    assert_eq!(both.election, global("vipd"));
    assert_eq!(
        arp(&[("sa_namespace", "")]).unwrap().election,
        global("kube-system")
    );
    let ipam = validate(&raw(&[
        ("svc_enable", "true"),
        ("vip_nodename", "n"),
        ("lb_ipam", "true"),
        ("sa_namespace", "lb"),
    ]))
    .unwrap();
    assert_eq!(ipam.services.unwrap().ipam.unwrap().lease_namespace, "lb");
}

#[test]
fn arp_mode_refuses_timings_that_leave_no_room_for_the_fence() {
    let e = arp(&[("vip_leaseduration", "10"), ("vip_renewdeadline", "10")]).unwrap_err();
    assert_eq!(e.setting, "vip_renewdeadline (--leaseRenewDuration)");
    let e = arp(&[("vip_renewdeadline", "2"), ("vip_retryperiod", "2")]).unwrap_err();
    assert_eq!(e.setting, "vip_retryperiod (--leaseRetry)");
    let e = arp(&[("vip_leaseduration", "-1")]).unwrap_err();
    assert_eq!(e.setting, "vip_leaseduration (--leaseDuration)");
}

#[test]
fn arp_mode_needs_services_and_excludes_bgp() {
    let e = validate(&raw(&[
        ("vip_arp", "true"),
        ("svc_enable", "true"),
        ("vip_nodename", "n1"),
    ]))
    .unwrap_err();
    assert!(e.reason.contains("exactly one mode"), "{e}");
    let e = validate(&raw(&[("vip_arp", "true"), ("bgp_enable", "false")])).unwrap_err();
    assert!(e.reason.contains("svc_enable"), "{e}");
}

#[test]
fn vip_subnet_gives_arp_mode_its_masks_as_kube_vip_reads_them() {
    use crate::model::{Mask, VipMasks};
    let arp = |subnet: &str| {
        validate(&raw(&[
            ("bgp_enable", "false"),
            ("vip_arp", "true"),
            ("svc_enable", "true"),
            ("vip_nodename", "n1"),
            ("vip_subnet", subnet),
        ]))
    };
    let masks = |subnet: &str| arp(subnet).unwrap().services.unwrap().arp.unwrap().masks;
    let m = |v4, v6| VipMasks { v4, v6 };
    assert_eq!(masks(""), VipMasks::default());
    assert_eq!(masks("24"), m(Mask::Fixed(24), Mask::Fixed(128)));
    assert_eq!(masks("/24, 64"), m(Mask::Fixed(24), Mask::Fixed(64)));
    assert_eq!(masks(",64"), m(Mask::Fixed(32), Mask::Fixed(64)));
    assert_eq!(masks("auto"), m(Mask::Auto, Mask::Fixed(128)));
    assert_eq!(masks("auto,auto"), m(Mask::Auto, Mask::Auto));
    assert_eq!(masks("32,128"), VipMasks::default());
    for (bad, says) in [
        ("33", "1-32"),
        ("0", "1-32"),
        ("24,129", "1-128"),
        ("24,64,8", "more than two parts"),
        ("big", "1-32 or auto"),
    ] {
        let e = arp(bad).unwrap_err();
        assert_eq!(e.setting, "vip_subnet (--vipSubnet)", "{bad}");
        assert_eq!(e.value, bad);
        assert!(e.reason.contains(says), "{bad}: {e}");
    }
    // Outside ARP mode: auto refused (as kube-vip), a length named at start, not refused.
    let bgp = |subnet: &str| {
        validate(&raw(&[
            ("vip_subnet", subnet),
            ("svc_enable", "true"),
            ("vip_nodename", "n1"),
        ]))
    };
    assert!(bgp("auto").unwrap_err().reason.contains("only ARP mode"));
    let c = bgp("24").unwrap();
    assert!(c.vip_subnet_outside_arp);
    let named: Vec<String> = kube_vip::ignored_in(&c)
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(named, ["vip_subnet (--vipSubnet)"]);
    assert!(!bgp("32").unwrap().vip_subnet_outside_arp);
}

#[test]
fn routing_table_mode_takes_kube_vips_defaults_and_settings() {
    use crate::table::route::{RouteKind, TableSpec};
    let table = |extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("bgp_enable", "false"),
            ("vip_routingtable", "true"),
            ("svc_enable", "true"),
            ("vip_nodename", "n1"),
            ("vip_interface", "eth0"),
        ];
        pairs.extend_from_slice(extra);
        validate(&raw(&pairs))
    };
    let c = table(&[("bgp_attach_ip_to_interface", "true")]).unwrap();
    let svc = c.services.unwrap();
    assert_eq!(svc.routing_table, Some(TableSpec::default()));
    assert_eq!(
        TableSpec::default(),
        TableSpec {
            table: 198,
            kind: RouteKind::Unicast,
            protocol: 248
        }
    );
    assert_eq!(svc.interface, "eth0");
    assert!(svc.arp.is_none());
    // kube-vip never puts a routing-table VIP on the interface.
    assert!(!svc.attach_to_interface);
    let c = table(&[
        ("vip_routingtableid", "100000"),
        ("vip_routingtabletype", "2"),
        ("vip_routingprotocol", "99"),
        ("vip_cleanroutingtable", "true"),
    ])
    .unwrap();
    assert_eq!(
        c.services.unwrap().routing_table,
        Some(TableSpec {
            table: 100_000,
            kind: RouteKind::Local,
            protocol: 99
        })
    );
}

#[test]
fn routing_table_settings_that_cannot_work_are_refused_by_name_and_value() {
    let table = |extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("bgp_enable", "false"),
            ("vip_routingtable", "true"),
            ("svc_enable", "true"),
            ("vip_nodename", "n1"),
        ];
        pairs.extend_from_slice(extra);
        validate(&raw(&pairs)).unwrap_err()
    };
    for (setting, value, says) in [
        ("vip_routingtableid", "0", "1-4294967295"),
        ("vip_routingtableid", "255", "local table"),
        ("vip_routingtableid", "main", "1-4294967295"),
        ("vip_routingtabletype", "6", "1 (unicast"),
        ("vip_routingprotocol", "3", "kernel's own"),
        ("vip_routingprotocol", "256", "5-255"),
        ("vip_cleanroutingtable", "sometimes", "boolean"),
    ] {
        let e = table(&[(setting, value)]);
        assert!(e.setting.starts_with(setting), "{setting}={value}: {e}");
        assert_eq!(e.value, value);
        assert!(e.reason.contains(says), "{setting}={value}: {e}");
    }
    // One mode at a time, and something to route.
    let e = table(&[("bgp_enable", "true")]);
    assert!(e.reason.contains("exactly one mode"), "{e}");
    let e = table(&[("vip_arp", "true")]);
    assert!(e.reason.contains("exactly one mode"), "{e}");
    let e = table(&[("svc_enable", "false")]);
    assert!(e.reason.contains("svc_enable=true"), "{e}");
    // Not set at all: the mode list names it.
    let e = validate(&raw(&[("bgp_enable", "false"), ("svc_enable", "true")])).unwrap_err();
    assert!(e.reason.contains("vip_routingtable=true"), "{e}");
}

#[test]
fn cp_enable_makes_vip_address_the_control_plane_vip_checked_at_the_local_livez_by_default() {
    let c = validate(&raw(&[
        ("cp_enable", "true"),
        ("vip_address", "192.0.2.100"),
    ]))
    .unwrap();
    assert!(c.vips.is_empty(), "no longer a static VIP");
    assert_eq!(
        c.control_plane,
        Some(ControlPlaneSettings {
            vips: vec!["192.0.2.100".parse().unwrap()],
            port: 6443,
            interface: "lo".into(),
            health: Some(ControlPlaneHealth {
                url: "https://127.0.0.1:6443/livez".into(),
                period: Duration::from_secs(5),
                timeout: Duration::from_secs(3),
                failure_threshold: 3,
                tls: TlsCheck::Skip,
            }),
            lease: crate::election::LeaseKey {
                namespace: "kube-system".into(),
                name: "plndr-cp-lock".into(),
            },
            elected: false,
        })
    );
    assert!(
        c.services.is_none(),
        "every healthy node announces: no Lease, no watch"
    );
    assert_eq!(c.kube_server.control_plane_port, Some(6443));
    // IPv6 only: the IPv6 loopback; kube-vip's settings as given.
    let c = validate(&raw(&[
        ("cp_enable", "true"),
        ("vip_address", "2001:db8::100"),
        ("port", "8443"),
        ("vip_interface", "eth0"),
        ("control_plane_health_check_period_seconds", "1"),
        ("control_plane_health_check_timeout_seconds", "1"),
        ("control_plane_health_check_failure_threshold", "2"),
        (
            "control_plane_health_check_ca_path",
            "/etc/kubernetes/pki/ca.crt",
        ),
    ]))
    .unwrap()
    .control_plane
    .unwrap();
    assert_eq!(c.interface, "eth0");
    let h = c.health.unwrap();
    assert_eq!(h.url, "https://[::1]:8443/livez");
    assert_eq!(
        (h.period, h.timeout, h.failure_threshold),
        (Duration::from_secs(1), Duration::from_secs(1), 2)
    );
    assert_eq!(h.tls, TlsCheck::Ca("/etc/kubernetes/pki/ca.crt".into()));
}

#[test]
fn a_control_plane_health_url_the_operator_writes_is_verified_against_the_systems_roots() {
    let c = validate(&raw(&[
        ("cp_enable", "true"),
        ("vip_address", "192.0.2.100"),
        (
            "control_plane_health_check_address",
            "https://10.0.0.5:6443/readyz",
        ),
    ]))
    .unwrap();
    let h = c.control_plane.unwrap().health.unwrap();
    assert_eq!(h.url, "https://10.0.0.5:6443/readyz");
    assert_eq!(h.tls, TlsCheck::SystemRoots);
    // Switched off: announced without a check, as kube-vip without an address.
    let c = validate(&raw(&[
        ("cp_enable", "true"),
        ("vip_address", "192.0.2.100"),
        ("vipd_cp_health_check", "false"),
    ]))
    .unwrap();
    assert_eq!(c.control_plane.unwrap().health, None);
}

#[test]
fn control_plane_settings_that_cannot_work_name_the_setting_and_value() {
    let bad = |pairs: &[(&str, &str)]| {
        let mut all = vec![("cp_enable", "true"), ("vip_address", "192.0.2.100")];
        all.extend_from_slice(pairs);
        validate(&raw(&all)).unwrap_err().to_string()
    };
    let e = validate(&raw(&[("cp_enable", "true")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cp_enable") && e.contains("vip_address"), "{e}");
    let e = bad(&[("port", "0")]);
    assert!(e.contains("port (--port)") && e.contains("\"0\""), "{e}");
    let e = bad(&[("control_plane_health_check_period_seconds", "5s")]);
    assert!(
        e.contains("control_plane_health_check_period_seconds") && e.contains("5s"),
        "{e}"
    );
    let e = bad(&[("control_plane_health_check_failure_threshold", "0")]);
    assert!(e.contains("failure_threshold"), "{e}");
    let e = bad(&[("control_plane_health_check_address", "127.0.0.1:6443/livez")]);
    assert!(e.contains("not an http:// or https:// URL"), "{e}");
    let e = bad(&[("vip_address", "192.0.2.100,192.0.2.101")]);
    assert!(e.contains("more than one address of a family"), "{e}");
    let e = bad(&[("vip_leasename", "Plndr_CP")]);
    assert!(
        e.contains("vip_leasename (--leaseName)") && e.contains("Plndr_CP"),
        "{e}"
    );
    let e = bad(&[("cp_namespace", "-x")]);
    assert!(e.contains("cp_namespace"), "{e}");
    let e = bad(&[("vip_leaderelection", "yes please")]);
    assert!(e.contains("vip_leaderelection"), "{e}");
}

#[test]
fn an_elected_control_plane_vip_runs_services_mode_watching_no_service() {
    // ARP mode: always elected, services mode for its Lease alone.
    let c = validate(&raw(&[
        ("bgp_enable", "false"),
        ("vip_arp", "true"),
        ("cp_enable", "true"),
        ("vip_address", "192.0.2.100"),
        ("vip_nodename", "cp1"),
        ("cp_namespace", "infra"),
        ("vip_leasename", "api-vip"),
    ]))
    .unwrap();
    let cp = c.control_plane.unwrap();
    assert!(cp.elected);
    assert_eq!(cp.lease.to_string(), "infra/api-vip");
    let svc = c.services.unwrap();
    assert!(!svc.watch_services && svc.arp.is_some());
    assert!(svc.ipam.is_none() && !svc.upnp && !svc.status_updates);
    // BGP mode with vip_leaderelection: the same, with the speaker.
    let c = validate(&raw(&[
        ("bgp_enable", "true"),
        ("bgp_as", "65000"),
        ("bgp_routerid", "10.0.0.1"),
        ("cp_enable", "true"),
        ("vip_leaderelection", "true"),
        ("vip_address", "192.0.2.100"),
        ("vip_nodename", "cp1"),
    ]))
    .unwrap();
    assert!(c.control_plane.unwrap().elected);
    assert!(!c.services.unwrap().watch_services);
    // Hybrid: Services watched as ever.
    let c = validate(&raw(&[
        ("bgp_enable", "false"),
        ("vip_arp", "true"),
        ("svc_enable", "true"),
        ("cp_enable", "true"),
        ("vip_address", "192.0.2.100"),
        ("vip_nodename", "cp1"),
        ("kubernetes_addr", "10.0.0.5:6443"),
    ]))
    .unwrap();
    assert!(c.services.unwrap().watch_services);
    assert_eq!(c.kube_server.address.as_deref(), Some("10.0.0.5:6443"));
    // ARP mode still needs something to announce.
    let e = validate(&raw(&[
        ("bgp_enable", "false"),
        ("vip_arp", "true"),
        ("vip_nodename", "cp1"),
    ]))
    .unwrap_err();
    assert!(e.reason.contains("cp_enable"), "{e}");
}

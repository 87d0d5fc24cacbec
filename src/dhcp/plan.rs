//! [pure] DHCP VIPs in services mode: which Services this node leases for, what it asks with
//! (from the Service's annotations), and how a lease joins the decision so the leased address
//! is announced, reported and written to the status like any VIP.

use super::naming::macvlan_name;
use crate::decide::{Desired, Problem, ServiceDecision, ServiceKey, Skip};
use crate::model::ServiceIntent;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// What a Service wants from this node's DHCP side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// It asks for a DHCPv4 address and this node passes its gates: hold the lease here.
    Lease,
    /// It asks for one, but another node serves it (no local endpoints, excluded node): stop
    /// here without RELEASE, so the next holder of the MAC renews the same lease.
    Elsewhere,
    /// It no longer asks (deleted, address changed, not vipd's): RELEASE.
    Nothing,
}

/// The 0.0.0.0 placeholder: DHCPv4. (`::`, DHCPv6, is not implemented; it stays skipped.)
fn asks_dhcp4(d: &ServiceDecision) -> bool {
    d.vips.contains(&IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The Service's want from its decision. `decide` reports the DHCP placeholder as skipped with
/// [`Skip::Dhcp`] and hides the Service-wide reason behind it; the Service-wide gates passed
/// exactly when nothing else was skipped for another reason.
pub fn want(d: Option<&ServiceDecision>) -> Want {
    let Some(d) = d else { return Want::Nothing };
    if !asks_dhcp4(d) {
        return Want::Nothing;
    }
    match &d.skip {
        None | Some(Skip::Dhcp { .. }) => {}
        Some(_) => return Want::Elsewhere,
    }
    // Beside static VIPs served here, the placeholder may have a reason of its own for not
    // being leased here (another node is elected, no macvlan parent on this node).
    let placeholder = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let elsewhere = d
        .not_announced
        .iter()
        .any(|(v, why)| *v == placeholder && !matches!(why, Skip::Dhcp { .. }));
    if elsewhere {
        Want::Elsewhere
    } else {
        Want::Lease
    }
}

/// Starting or stopping one Service's DHCP client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Stop the client and delete its macvlan; `release`: RELEASE the lease first (the Service
    /// no longer asks), else keep it for the next holder of the MAC, who renews it.
    Stop { service: ServiceKey, release: bool },
    /// Start the client (its macvlan, MAC and requested address from the Service).
    Start(ServiceKey),
}

/// From the clients running here to what `desired` wants: every stop first (a macvlan that
/// goes frees its name and MAC for one that starts), then the starts, each in key order.
pub fn steps(running: &BTreeSet<ServiceKey>, desired: &Desired) -> Vec<Step> {
    let stops = running.iter().filter_map(|key| {
        let release = match want(desired.services.get(key)) {
            Want::Lease => return None,
            Want::Elsewhere => false,
            Want::Nothing => true,
        };
        Some(Step::Stop {
            service: key.clone(),
            release,
        })
    });
    let starts = desired
        .services
        .iter()
        .filter(|(key, d)| !running.contains(*key) && want(Some(d)) == Want::Lease)
        .map(|(key, _)| Step::Start(key.clone()));
    stops.chain(starts).collect()
}

/// The client's identity for a Service, from its intent (its annotations and UID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The Service's UID: the macvlan's owner.
    pub uid: String,
    pub ifname: String,
    /// `None`: no usable `kube-vip.io/hwaddr`; the caller makes one and writes it back.
    pub mac: Option<[u8; 6]>,
    pub hostname: Option<String>,
    pub requested: Option<Ipv4Addr>,
    /// `kube-vip.io/serviceInterface`, if set: the parent instead of the agent's interface.
    pub parent: Option<String>,
}

pub fn identity(intent: &ServiceIntent) -> Identity {
    Identity {
        uid: intent.uid.clone(),
        ifname: macvlan_name(&intent.uid, intent.macvlan_name.as_deref()),
        mac: intent.hwaddr,
        hostname: intent.hostname.clone(),
        requested: intent.requested_ip,
        parent: intent.interface.clone(),
    }
}

/// Folds the current leases into `desired`: each leased Service announces its address in place
/// of the placeholder (routes, `announced`, so status and Events follow), and the "DHCP is not
/// supported" problems go, since DHCP is served.
pub fn fold_leases(desired: &mut Desired, leases: &BTreeMap<ServiceKey, Ipv4Addr>) {
    let placeholder = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    for (key, d) in desired.services.iter_mut() {
        d.problems.retain(
            |p| !matches!(p, Problem::DhcpNotSupported { value, .. } if *value == placeholder),
        );
        let Some(leased) = leases.get(key) else {
            continue;
        };
        if want(Some(d)) != Want::Lease {
            continue;
        }
        let ip = IpAddr::V4(*leased);
        // `decide`'s invariant: `vips` = `announced` + `not_announced`, in `vips` order. The
        // lease takes the placeholder's place (once, if a static VIP equals it).
        d.vips.retain(|v| *v != ip);
        if let Some(slot) = d.vips.iter_mut().find(|v| **v == placeholder) {
            *slot = ip;
        }
        d.not_announced
            .retain(|(vip, _)| *vip != placeholder && *vip != ip);
        let order: Vec<IpAddr> = d.vips.clone();
        if !d.announced.contains(&ip) {
            d.announced.push(ip);
        }
        d.announced
            .sort_by_key(|v| order.iter().position(|o| o == v).unwrap_or(usize::MAX));
        d.announced.dedup();
        d.skip = None;
        desired.routes.entry(ip).or_default().insert(key.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn decision(vips: &[&str], announced: &[&str], skip: Option<Skip>) -> ServiceDecision {
        let ip = |s: &&str| s.parse::<IpAddr>().unwrap();
        let announced: Vec<IpAddr> = announced.iter().map(ip).collect();
        ServiceDecision {
            vips: vips.iter().map(ip).collect(),
            not_announced: vips
                .iter()
                .map(ip)
                .filter(|v| !announced.contains(v))
                .map(|v| {
                    let reason = if v.is_unspecified() {
                        Skip::Dhcp { vip: v }
                    } else {
                        skip.clone().unwrap_or(Skip::NoEndpoints)
                    };
                    (v, reason)
                })
                .collect(),
            announced,
            skip,
            problems: vec![Problem::DhcpNotSupported {
                field: crate::decide::AddressField::Spec,
                value: "0.0.0.0".parse().unwrap(),
            }],
            intent: Default::default(),
        }
    }

    #[test]
    fn clients_stop_before_any_starts_and_only_a_service_that_no_longer_asks_is_released() {
        let dhcp = Some(Skip::Dhcp {
            vip: "0.0.0.0".parse().unwrap(),
        });
        let mut desired = Desired::default();
        // Leased here, running: kept.
        desired
            .services
            .insert(key("kept"), decision(&["0.0.0.0"], &[], dhcp.clone()));
        // Another node serves it now: stop, keep the lease for the next holder of the MAC.
        let elsewhere = Some(Skip::NotElected {
            lease: "default/kubevip-moved".into(),
        });
        desired
            .services
            .insert(key("moved"), decision(&["0.0.0.0"], &[], elsewhere));
        // A static address now: RELEASE.
        desired
            .services
            .insert(key("static"), decision(&["10.0.0.1"], &["10.0.0.1"], None));
        // New here.
        desired
            .services
            .insert(key("new"), decision(&["0.0.0.0"], &[], dhcp));
        // "gone" was deleted: not in `desired` at all, RELEASE.
        let running: BTreeSet<ServiceKey> = ["gone", "kept", "moved", "static"]
            .into_iter()
            .map(key)
            .collect();
        assert_eq!(
            steps(&running, &desired),
            [
                Step::Stop {
                    service: key("gone"),
                    release: true
                },
                Step::Stop {
                    service: key("moved"),
                    release: false
                },
                Step::Stop {
                    service: key("static"),
                    release: true
                },
                Step::Start(key("new")),
            ]
        );
    }

    #[test]
    fn want_follows_the_decision() {
        let dhcp = Skip::Dhcp {
            vip: "0.0.0.0".parse().unwrap(),
        };
        assert_eq!(
            want(Some(&decision(&["0.0.0.0"], &[], Some(dhcp)))),
            Want::Lease
        );
        // Beside a static VIP that is announced: the gates passed.
        assert_eq!(
            want(Some(&decision(
                &["192.0.2.1", "0.0.0.0"],
                &["192.0.2.1"],
                None
            ))),
            Want::Lease
        );
        let local = Skip::NoLocalEndpoints { node: "n1".into() };
        assert_eq!(
            want(Some(&decision(&["0.0.0.0"], &[], Some(local)))),
            Want::Elsewhere
        );
        assert_eq!(
            want(Some(&decision(&["192.0.2.1"], &["192.0.2.1"], None))),
            Want::Nothing
        );
        assert_eq!(want(None), Want::Nothing);
        // Beside a static VIP served here, the placeholder's own reason counts.
        let mut beside = decision(&["192.0.2.1", "0.0.0.0"], &["192.0.2.1"], None);
        beside.not_announced = vec![(
            "0.0.0.0".parse().unwrap(),
            Skip::NoInterface {
                note: "no parent".into(),
            },
        )];
        assert_eq!(want(Some(&beside)), Want::Elsewhere);
        let v6 = Skip::Dhcp {
            vip: "::".parse().unwrap(),
        };
        assert_eq!(
            want(Some(&decision(&["::"], &[], Some(v6)))),
            Want::Nothing,
            "DHCPv6 is not served"
        );
    }

    #[test]
    fn a_lease_beside_a_static_vip_keeps_the_order_of_vips() {
        let mut desired = Desired::default();
        desired.services.insert(
            key("web"),
            decision(&["0.0.0.0", "192.0.2.1"], &["192.0.2.1"], None),
        );
        let leased = Ipv4Addr::new(10, 98, 0, 132);
        fold_leases(&mut desired, &BTreeMap::from([(key("web"), leased)]));
        let web = &desired.services[&key("web")];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(web.vips, vec![ip("10.98.0.132"), ip("192.0.2.1")]);
        assert_eq!(
            web.announced, web.vips,
            "every VIP announced, in vips order"
        );
        assert!(web.not_announced.is_empty());
    }

    #[test]
    fn identity_reads_the_annotations() {
        use k8s_openapi::api::core::v1::Service;
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "1a2b3c4d-0000-0000-0000-000000000000",
                "annotations": {
                    "kube-vip.io/hwaddr": "02:56:49:50:44:01",
                    "kube-vip.io/requestedIP": "10.98.0.132,fd00::5",
                    "kube-vip.io/loadbalancerHostname": "web",
                }}
        }))
        .unwrap();
        assert_eq!(
            identity(&ServiceIntent::read(&svc).0),
            Identity {
                uid: "1a2b3c4d-0000-0000-0000-000000000000".into(),
                ifname: "vip-1a2b3c4d".into(),
                mac: Some([2, 0x56, 0x49, 0x50, 0x44, 1]),
                hostname: Some("web".into()),
                requested: Some("10.98.0.132".parse().unwrap()),
                parent: None,
            }
        );
        let bare: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "99999999-0",
                "annotations": {"kube-vip.io/hwaddr": "nonsense", "kube-vip.io/macvlanName": "mv-web",
                    "kube-vip.io/serviceInterface": "eth1", "kube-vip.io/requestedIP": "0.0.0.0"}}
        }))
        .unwrap();
        let id = identity(&ServiceIntent::read(&bare).0);
        assert_eq!((id.mac, id.requested), (None, None));
        assert_eq!(id.ifname, "mv-web");
        assert_eq!(id.parent.as_deref(), Some("eth1"));
    }

    #[test]
    fn a_lease_is_announced_in_place_of_the_placeholder() {
        let dhcp = Skip::Dhcp {
            vip: "0.0.0.0".parse().unwrap(),
        };
        let mut desired = Desired::default();
        desired
            .services
            .insert(key("web"), decision(&["0.0.0.0"], &[], Some(dhcp.clone())));
        desired
            .services
            .insert(key("waiting"), decision(&["0.0.0.0"], &[], Some(dhcp)));
        let local = Skip::NoLocalEndpoints { node: "n1".into() };
        desired.services.insert(
            key("elsewhere"),
            decision(&["0.0.0.0"], &[], Some(local.clone())),
        );
        let leases = BTreeMap::from([
            (key("web"), Ipv4Addr::new(10, 98, 0, 132)),
            (key("elsewhere"), Ipv4Addr::new(10, 98, 0, 133)),
        ]);
        fold_leases(&mut desired, &leases);
        let web = &desired.services[&key("web")];
        let leased: IpAddr = "10.98.0.132".parse().unwrap();
        assert_eq!(web.announced, vec![leased]);
        assert_eq!(
            web.vips,
            vec![leased],
            "the lease takes the placeholder's place"
        );
        assert_eq!(web.skip, None);
        assert!(web.not_announced.is_empty());
        assert!(
            web.problems.is_empty(),
            "DHCP is served: no DhcpNotSupported"
        );
        assert_eq!(desired.routes[&leased], [key("web")].into());
        // No lease yet: still skipped as DHCP, but no "not supported" problem.
        let waiting = &desired.services[&key("waiting")];
        assert!(waiting.announced.is_empty() && waiting.problems.is_empty());
        // A stale lease of a Service served elsewhere is not announced here.
        assert_eq!(desired.services[&key("elsewhere")].skip, Some(local));
        assert_eq!(desired.routes.len(), 1);
    }
}

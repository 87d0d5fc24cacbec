//! [pure] The kube-vip contract, each part written once: the `kube-vip.io/*` annotations a
//! Service carries (read and written by vipd exactly as kube-vip does), the labels vipd reads or
//! sets, and [`ServiceIntent`], a Service's annotations read once into types with their
//! problems, and the types of kube-vip's settings read by several layers (`vip_subnet`'s
//! masks). Everything that reads or writes one of them names it from here.

/// Service annotations.
pub mod annotation {
    /// VIPs, comma separated; read before `spec.loadBalancerIP` (written by IPAM too).
    pub const LOADBALANCER_IPS: &str = "kube-vip.io/loadbalancerIPs";
    /// `"true"` (exactly): leave the Service alone.
    pub const IGNORE: &str = "kube-vip.io/ignore";
    /// `"true"` (any case): announce with no endpoints (externalTrafficPolicy Cluster only).
    pub const ALLOW_NO_ENDPOINTS: &str = "kube-vip.io/allow-reconcile-without-endpoints";
    /// The Lease that elects the Service's node (ARP mode; DHCP and UPnP in BGP mode).
    pub const LEASE_NAME: &str = "kube-vip.io/leaseName";
    /// The interface the Service's VIP or DHCP macvlan goes on (written by IPAM from
    /// `interface-<ns>` / `interface-global`).
    pub const SERVICE_INTERFACE: &str = "kube-vip.io/serviceInterface";
    /// ARP mode: `parent.tag` (`eth1.300`): the VIP (or DHCP macvlan) goes on that VLAN
    /// sub-interface, created by vipd when missing.
    pub const SERVICE_VLAN: &str = "kube-vip.io/serviceVLAN";
    /// The node that holds the VIP in ARP mode (written by the leader).
    pub const VIP_HOST: &str = "kube-vip.io/vipHost";
    /// DHCP: the macvlan's MAC (written when vipd chose it).
    pub const HWADDR: &str = "kube-vip.io/hwaddr";
    /// DHCP: the leased address, asked for again after a restart or a takeover.
    pub const REQUESTED_IP: &str = "kube-vip.io/requestedIP";
    /// DHCP: the macvlan's name.
    pub const MACVLAN_NAME: &str = "kube-vip.io/macvlanName";
    /// DHCP: the host name sent in the DISCOVER/REQUEST.
    pub const LOADBALANCER_HOSTNAME: &str = "kube-vip.io/loadbalancerHostname";
    /// `"true"`: map the Service's ports on the UPnP gateway.
    pub const FORWARD_UPNP: &str = "kube-vip.io/forwardUPNP";
    /// Seconds a UPnP mapping is asked for.
    pub const UPNP_LEASE_DURATION: &str = "kube-vip.io/upnp-lease-duration";
}

/// Labels.
pub mod label {
    /// Node label (any value) that keeps a node out of every load balancer, as the Kubernetes
    /// service controller does.
    pub const EXCLUDE_FROM_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
    /// An EndpointSlice's Service.
    pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
    /// The label key kube-vip-cloud-provider sets on the Services it served…
    pub const IMPLEMENTATION: &str = "implementation";
    /// …with this value.
    pub const IMPLEMENTATION_VALUE: &str = "kube-vip";
}

/// What a Service asks of vipd through its annotations besides its addresses, read once, by
/// [`crate::decide`], with the problems in it; every later step reads this, never the raw
/// annotations. Values are trimmed; empty ones are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceIntent {
    /// The Service's UID (not an annotation): a DHCP macvlan's owner and MAC seed.
    pub uid: String,
    /// `kube-vip.io/leaseName`: `[namespace/]name` of the Lease that elects its node.
    pub lease_name: Option<String>,
    /// `kube-vip.io/serviceInterface`, unless `auto`: where its VIP or DHCP macvlan goes.
    pub interface: Option<String>,
    /// `kube-vip.io/serviceInterface: auto`: the interface whose subnet holds the VIP, before
    /// any interface the settings name (kube-vip's order).
    pub interface_auto: bool,
    /// `kube-vip.io/serviceVLAN`, when well formed: before any interface (kube-vip's order).
    pub vlan: Option<Vlan>,
    /// `kube-vip.io/vipHost`: the node that says it holds the VIP (ARP mode).
    pub vip_host: Option<String>,
    /// `kube-vip.io/forwardUPNP` is `"true"` (exactly, as kube-vip compares it).
    pub forward_upnp: bool,
    /// `kube-vip.io/upnp-lease-duration`, as written (kube-vip's rules apply when mapping).
    pub upnp_lease_duration: Option<String>,
    /// `kube-vip.io/hwaddr`, when it is a usable MAC (unicast, not all zeros).
    pub hwaddr: Option<[u8; 6]>,
    /// The first usable IPv4 address in `kube-vip.io/requestedIP` (`v4[,v6]`).
    pub requested_ip: Option<std::net::Ipv4Addr>,
    /// `kube-vip.io/macvlanName`, as written (checked when the macvlan is named).
    pub macvlan_name: Option<String>,
    /// `kube-vip.io/loadbalancerHostname`: the DHCP client's host name.
    pub hostname: Option<String>,
}

/// The prefix length of one family's VIP addresses on an interface (`vip_subnet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    Fixed(u8),
    /// `auto`: the length of the interface's own address whose subnet holds the VIP.
    Auto,
}

/// `vip_subnet` as kube-vip reads it for Services: `v4[,v6]`, each a length or `auto`; an
/// empty or missing part is the host length (/32, /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipMasks {
    pub v4: Mask,
    pub v6: Mask,
}

impl Default for VipMasks {
    fn default() -> Self {
        VipMasks {
            v4: Mask::Fixed(32),
            v6: Mask::Fixed(128),
        }
    }
}

impl VipMasks {
    pub fn of(&self, ip: std::net::IpAddr) -> Mask {
        if ip.is_ipv4() {
            self.v4
        } else {
            self.v6
        }
    }

    /// Whether it asks for anything but host addresses.
    pub fn is_host(&self) -> bool {
        *self == VipMasks::default()
    }
}

/// A VLAN sub-interface `parent.tag` (IEEE 802.1Q, tags 1–4094).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vlan {
    pub parent: String,
    pub tag: u16,
}

impl Vlan {
    /// `eth1.300` as kube-vip reads it: one dot, a parent name, a tag 1–4094; the whole name
    /// must fit an interface name (15 bytes).
    pub fn parse(text: &str) -> Option<Vlan> {
        let (parent, tag) = text.split_once('.')?;
        let tag: u16 = tag.parse().ok().filter(|t| (1..=4094).contains(t))?;
        let plain = |c: char| c.is_ascii_graphic() && c != '/' && c != '.' && c != ':';
        (!parent.is_empty() && parent.chars().all(plain) && text.len() <= 15).then(|| Vlan {
            parent: parent.to_owned(),
            tag,
        })
    }

    /// The interface's name, `parent.tag`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.parent, self.tag)
    }
}

/// An annotation whose value vipd cannot use: reported as a Warning, never fatal to the
/// Service (the value is treated as absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationProblem {
    pub annotation: &'static str,
    pub value: String,
    /// What was expected, and what vipd does instead.
    pub expected: &'static str,
}

impl ServiceIntent {
    pub fn read(
        svc: &k8s_openapi::api::core::v1::Service,
    ) -> (ServiceIntent, Vec<AnnotationProblem>) {
        use annotation::*;
        let ann = svc.metadata.annotations.as_ref();
        let raw = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
        let get = |k: &str| raw(k).map(str::trim).filter(|v| !v.is_empty());
        let mut problems = Vec::new();
        let mut bad = |annotation: &'static str, value: &str, expected: &'static str| {
            problems.push(AnnotationProblem {
                annotation,
                value: value.to_owned(),
                expected,
            })
        };
        let forward_upnp = raw(FORWARD_UPNP) == Some("true");
        if let Some(v) = get(FORWARD_UPNP).filter(|_| !forward_upnp) {
            if v != "false" {
                bad(
                    FORWARD_UPNP,
                    v,
                    "is not \"true\" or \"false\"; the Service's ports are not mapped",
                );
            }
        }
        // kube-vip compares without case (`strings.EqualFold`); anything else is false there too,
        // which a typo should not be without a word.
        if let Some(v) = get(ALLOW_NO_ENDPOINTS) {
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                bad(
                    ALLOW_NO_ENDPOINTS,
                    v,
                    "is not \"true\" or \"false\"; taken as false: the Service is announced only while an endpoint serves it",
                );
            }
        }
        let hwaddr = get(HWADDR).and_then(|v| {
            let mac = parse_mac(v);
            if mac.is_none() {
                bad(HWADDR, v, "is not a unicast MAC address (aa:bb:cc:dd:ee:ff); the MAC follows from the Service's UID");
            }
            mac
        });
        let requested_ip = get(REQUESTED_IP).and_then(|v| {
            let ip = v
                .split(',')
                .filter_map(|p| p.trim().parse::<std::net::Ipv4Addr>().ok())
                .find(|ip| !ip.is_unspecified());
            if ip.is_none() {
                bad(
                    REQUESTED_IP,
                    v,
                    "holds no IPv4 address; a new address is leased",
                );
            }
            ip
        });
        let intent = ServiceIntent {
            uid: svc.metadata.uid.clone().unwrap_or_default(),
            lease_name: get(LEASE_NAME).map(str::to_owned),
            interface: get(SERVICE_INTERFACE)
                .filter(|i| *i != "auto")
                .map(str::to_owned),
            interface_auto: get(SERVICE_INTERFACE) == Some("auto"),
            vlan: get(SERVICE_VLAN).and_then(|v| {
                let vlan = Vlan::parse(v);
                if vlan.is_none() {
                    bad(
                        SERVICE_VLAN,
                        v,
                        "is not parent.tag (eth1.300: an interface, a tag 1-4094, 15 characters in all); the Service's other interface settings apply",
                    );
                }
                vlan
            }),
            vip_host: get(VIP_HOST).map(str::to_owned),
            forward_upnp,
            upnp_lease_duration: raw(UPNP_LEASE_DURATION).map(str::to_owned),
            hwaddr,
            requested_ip,
            macvlan_name: get(MACVLAN_NAME).map(str::to_owned),
            hostname: get(LOADBALANCER_HOSTNAME).map(str::to_owned),
        };
        (intent, problems)
    }
}

/// When a kube-vip annotation vipd does not implement asks for something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AskedWhen {
    /// The value is `"true"` (any case).
    True,
    /// Any value but empty.
    Set,
    /// Any value but this one (what vipd does anyway).
    Not(&'static str),
}

/// kube-vip's Service annotations that vipd does not implement yet, when they ask for
/// something, and what kube-vip would do: each one set is a Warning (Event and log) on the
/// Service while it lasts, never silently ignored.
const UNSUPPORTED_ANNOTATIONS: &[(&str, AskedWhen, &str)] = &[
    (
        annotation::SERVICE_VLAN,
        AskedWhen::Set,
        "puts the VIP on a VLAN sub-interface of this tag, which vipd does in ARP mode only",
    ),
    (
        "kube-vip.io/ddns",
        AskedWhen::True,
        "registers the DHCP lease's host name by dynamic DNS",
    ),
    (
        "kube-vip.io/rp_filter",
        AskedWhen::Not("0"),
        "sets rp_filter on the DHCP macvlan (vipd sets 0)",
    ),
    (
        "kube-vip.io/forcePerServiceElection",
        AskedWhen::True,
        "elects this Service on a Lease of its own under the one Lease of all",
    ),
    (
        "kube-vip.io/flush-conntrack",
        AskedWhen::True,
        "flushes the VIP's conntrack entries on failover",
    ),
    (
        "kube-vip.io/egress",
        AskedWhen::True,
        "sends the Service's pods' egress traffic from the VIP (SNAT)",
    ),
    (
        "kube-vip.io/egress-ipv6",
        AskedWhen::True,
        "sends the Service's pods' IPv6 egress traffic from the VIP (SNAT)",
    ),
    (
        "kube-vip.io/egress-internal",
        AskedWhen::True,
        "applies egress SNAT to in-cluster traffic too",
    ),
    (
        "kube-vip.io/egress-destination-ports",
        AskedWhen::Set,
        "limits egress SNAT to these destination ports",
    ),
    (
        "kube-vip.io/egress-source-ports",
        AskedWhen::Set,
        "limits egress SNAT to these source ports",
    ),
    (
        "kube-vip.io/egress-allowed-networks",
        AskedWhen::Set,
        "limits egress SNAT to these networks",
    ),
    (
        "kube-vip.io/egress-denied-networks",
        AskedWhen::Set,
        "exempts these networks from egress SNAT",
    ),
    (
        "kube-vip.io/egress-no-internal-traffic",
        AskedWhen::True,
        "keeps in-cluster traffic out of egress SNAT",
    ),
    (
        "kube-vip.io/egress-detect-api-server",
        AskedWhen::True,
        "exempts the API server from egress SNAT",
    ),
];

/// A kube-vip annotation on a Service that asks for what vipd does not do yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedAnnotation {
    pub annotation: &'static str,
    pub value: String,
    /// What kube-vip does with it.
    pub kube_vip_does: &'static str,
}

/// The kube-vip annotations on `svc` that vipd does not implement and that ask for something.
pub fn unsupported_annotations(
    svc: &k8s_openapi::api::core::v1::Service,
) -> Vec<UnsupportedAnnotation> {
    let Some(ann) = svc.metadata.annotations.as_ref() else {
        return Vec::new();
    };
    UNSUPPORTED_ANNOTATIONS
        .iter()
        .filter_map(|(annotation, when, does)| {
            let value = ann.get(*annotation)?.trim();
            let asks = match when {
                AskedWhen::True => value.eq_ignore_ascii_case("true"),
                AskedWhen::Set => !value.is_empty(),
                AskedWhen::Not(same) => !value.is_empty() && value != *same,
            };
            asks.then(|| UnsupportedAnnotation {
                annotation,
                value: value.to_owned(),
                kube_vip_does: does,
            })
        })
        .collect()
}

/// A MAC as `aa:bb:cc:dd:ee:ff` (or with `-`): unicast and not all zeros, else `None`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    (mac[0] & 1 == 0 && mac != [0; 6]).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(annotations: serde_json::Value) -> k8s_openapi::api::core::v1::Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1",
                "annotations": annotations},
        }))
        .unwrap()
    }

    #[test]
    fn kube_vip_annotations_vipd_lacks_are_named_when_they_ask_for_something() {
        let s = svc(json!({
            "kube-vip.io/serviceVLAN": "100",
            "kube-vip.io/egress": "true",
            "kube-vip.io/egress-ipv6": "false",
            "kube-vip.io/rp_filter": "0",
            "kube-vip.io/flush-conntrack": "TRUE",
            "kube-vip.io/loadbalancerIPs": "10.0.0.1",
        }));
        let found = unsupported_annotations(&s);
        let named: Vec<(&str, &str)> = found
            .iter()
            .map(|u| (u.annotation, u.value.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("kube-vip.io/serviceVLAN", "100"),
                ("kube-vip.io/flush-conntrack", "TRUE"),
                ("kube-vip.io/egress", "true"),
            ]
        );
        let s = svc(json!({"kube-vip.io/rp_filter": "2"}));
        assert_eq!(unsupported_annotations(&s).len(), 1);
        assert!(unsupported_annotations(&svc(json!({}))).is_empty());
    }

    #[test]
    fn a_service_vlan_is_parent_dot_tag_as_kube_vip_reads_it() {
        let vlan = |v: &str| ServiceIntent::read(&svc(json!({"kube-vip.io/serviceVLAN": v})));
        let (i, problems) = vlan(" eth1.300 ");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            i.vlan,
            Some(Vlan {
                parent: "eth1".into(),
                tag: 300
            })
        );
        assert_eq!(i.vlan.unwrap().name(), "eth1.300");
        for bad in [
            "100",
            "eth1.0",
            "eth1.4095",
            "eth1.x",
            ".300",
            "eth1.2.3",
            "averylongname.300",
        ] {
            let (i, problems) = vlan(bad);
            assert_eq!(i.vlan, None, "{bad}");
            assert_eq!(problems.len(), 1, "{bad}");
            assert_eq!(problems[0].annotation, "kube-vip.io/serviceVLAN");
            assert_eq!(problems[0].value, bad);
        }
    }

    #[test]
    fn the_intent_is_read_once_trimmed_with_auto_meaning_no_interface() {
        let (i, problems) = ServiceIntent::read(&svc(json!({
            "kube-vip.io/leaseName": " infra/shared ",
            "kube-vip.io/serviceInterface": "auto",
            "kube-vip.io/forwardUPNP": "true",
            "kube-vip.io/hwaddr": "02:00:00:aa:bb:cc",
            "kube-vip.io/requestedIP": "10.0.0.5,2001:db8::5",
            "kube-vip.io/vipHost": "node1",
        })));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            i,
            ServiceIntent {
                uid: "u-1".into(),
                lease_name: Some("infra/shared".into()),
                interface: None,
                interface_auto: true,
                vlan: None,
                vip_host: Some("node1".into()),
                forward_upnp: true,
                upnp_lease_duration: None,
                hwaddr: Some([2, 0, 0, 0xaa, 0xbb, 0xcc]),
                requested_ip: Some("10.0.0.5".parse().unwrap()),
                macvlan_name: None,
                hostname: None,
            }
        );
    }

    #[test]
    fn unusable_values_are_problems_that_name_the_annotation_and_are_treated_as_absent() {
        let (i, problems) = ServiceIntent::read(&svc(json!({
            "kube-vip.io/forwardUPNP": "yes",
            "kube-vip.io/hwaddr": "01:00:5e:00:00:01",
            "kube-vip.io/requestedIP": "nonsense",
        })));
        assert!(!i.forward_upnp && i.hwaddr.is_none() && i.requested_ip.is_none());
        let named: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.annotation, p.value.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                (annotation::FORWARD_UPNP, "yes"),
                (annotation::HWADDR, "01:00:5e:00:00:01"),
                (annotation::REQUESTED_IP, "nonsense"),
            ]
        );
        // "false" is a valid way to say no.
        let (_, problems) = ServiceIntent::read(&svc(json!({"kube-vip.io/forwardUPNP": "false"})));
        assert!(problems.is_empty());
    }
}

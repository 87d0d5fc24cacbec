//! [pure] The typed reasons `decide` gives: [`Skip`] (why a Service, or one of its VIPs, is not
//! announced on this node — an expected state, logged at info) and [`Problem`] (bad input the
//! user must fix — the I/O side raises a Warning Event and a log line for each).
//!
//! Display texts are for operators: they name the field and the value, and say what vipd does.

use crate::model::annotation::{IGNORE, LOADBALANCER_IPS};
use crate::model::label::EXCLUDE_FROM_LB;
use crate::model::{AnnotationProblem, UnsupportedAnnotation};
use std::fmt;
use std::net::IpAddr;

/// Where a Service's addresses were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressField {
    /// Annotation `kube-vip.io/loadbalancerIPs`.
    Annotation,
    /// `spec.loadBalancerIP` (deprecated in Kubernetes, still what kube-vip-cloud-provider and
    /// `kubectl expose --load-balancer-ip` write).
    Spec,
    /// `status.loadBalancer.ingress`, written by another controller: read only with
    /// `disable_service_updates` (vipd never writes it then), as kube-vip reads it.
    Status,
}

impl fmt::Display for AddressField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressField::Annotation => write!(f, "annotation {LOADBALANCER_IPS}"),
            AddressField::Spec => f.write_str("spec.loadBalancerIP"),
            AddressField::Status => f.write_str("status.loadBalancer.ingress"),
        }
    }
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Why a Service (or one VIP of it) is not announced on this node.
///
/// Whole-Service reasons come first; [`Skip::Dhcp`] and [`Skip::NoPeerForFamily`] concern one
/// VIP and appear in `ServiceDecision::not_announced` next to that VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `spec.type` is not `LoadBalancer` (`None`: unset, which the API defaults to ClusterIP).
    NotLoadBalancer { service_type: Option<String> },
    /// Annotation `kube-vip.io/ignore: "true"`.
    Ignored,
    /// `spec.loadBalancerClass` names another implementation.
    ClassNotOurs { class: String, ours: String },
    /// No `spec.loadBalancerClass`, and vipd serves only its own class (`lb_class_only`, or
    /// `lb_class_legacy_handling=false` with a non-empty `lb_class_name`).
    ClassMissing { ours: String },
    /// Neither the annotation nor `spec.loadBalancerIP` holds an address yet (a cloud provider
    /// or IPAM controller has not assigned one).
    NoAddress,
    /// The addresses were given but none is a usable IP (each bad entry is a [`Problem`]).
    NoUsableAddress { field: AddressField },
    /// This node carries `node.kubernetes.io/exclude-from-external-load-balancers`.
    NodeExcluded { node: String },
    /// This node has been leaving (cordoned, being deleted, …) for `vipd_bgp_drain_time`: its
    /// routes are withdrawn after their time with RFC 8326's GRACEFUL_SHUTDOWN mark.
    NodeDrained { node: String, why: String },
    /// externalTrafficPolicy Cluster: no endpoint in any EndpointSlice of the Service serves.
    NoEndpoints,
    /// externalTrafficPolicy Local: no serving endpoint of the Service runs on this node, so
    /// kube-proxy here would drop the traffic.
    NoLocalEndpoints { node: String },
    /// `0.0.0.0` asks for an address by DHCP and none is leased here (yet); `::` (DHCPv6) is
    /// not supported.
    Dhcp { vip: IpAddr },
    /// No BGP peer carries this VIP's address family.
    NoPeerForFamily { vip: IpAddr },
    /// Served by one node only (a DHCP lease, in BGP mode), the elected node of this Lease
    /// (`namespace/name`), and that is not this node.
    NotElected { lease: String },
    /// This node has no interface for it (ARP mode: the VIP's, or a DHCP macvlan's parent);
    /// the note says which and how to name one.
    NoInterface { note: String },
    /// ARP mode: the DHCP client could not start on this node lately; it stood down so that
    /// another node can lease.
    DhcpFailed { note: String },
}

impl Skip {
    /// The reason as a stable CamelCase code, for `vipd status -o json` and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Skip::NotLoadBalancer { .. } => "NotLoadBalancer",
            Skip::Ignored => "Ignored",
            Skip::ClassNotOurs { .. } => "ClassNotOurs",
            Skip::ClassMissing { .. } => "ClassMissing",
            Skip::NoAddress => "NoAddress",
            Skip::NoUsableAddress { .. } => "NoUsableAddress",
            Skip::NodeExcluded { .. } => "NodeExcluded",
            Skip::NodeDrained { .. } => "NodeDrained",
            Skip::NoEndpoints => "NoEndpoints",
            Skip::NoLocalEndpoints { .. } => "NoLocalEndpoints",
            Skip::Dhcp { .. } => "Dhcp",
            Skip::NoPeerForFamily { .. } => "NoPeerForFamily",
            Skip::NotElected { .. } => "NotElected",
            Skip::NoInterface { .. } => "NoInterface",
            Skip::DhcpFailed { .. } => "DHCPFailed",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotLoadBalancer {
                service_type: Some(t),
            } => {
                write!(f, "type {t:?} is not LoadBalancer")
            }
            Skip::NotLoadBalancer { service_type: None } => {
                f.write_str("type is not set (ClusterIP), not LoadBalancer")
            }
            Skip::Ignored => write!(f, "annotation {IGNORE} is \"true\""),
            Skip::ClassNotOurs { class, ours } => {
                write!(f, "loadBalancerClass {class:?} is not vipd's ({ours})")
            }
            Skip::ClassMissing { ours } => write!(
                f,
                "no loadBalancerClass, and vipd serves only Services of class {ours:?}"
            ),
            Skip::NoAddress => write!(
                f,
                "no address yet in annotation {LOADBALANCER_IPS} or spec.loadBalancerIP"
            ),
            Skip::NoUsableAddress { field } => write!(f, "{field} holds no usable IP address"),
            Skip::NodeExcluded { node } => {
                write!(f, "node {node} has label {EXCLUDE_FROM_LB}")
            }
            Skip::NodeDrained { node, why } => write!(
                f,
                "node {node} is drained: {why} for longer than vipd_bgp_drain_time"
            ),
            Skip::NoEndpoints => f.write_str("no serving endpoint (externalTrafficPolicy Cluster)"),
            Skip::NoLocalEndpoints { node } => write!(
                f,
                "no serving endpoint on node {node} (externalTrafficPolicy Local)"
            ),
            // DHCPv4 is served by src/dhcp (the lease replaces this skip once bound); DHCPv6 not.
            Skip::Dhcp {
                vip: vip @ IpAddr::V4(_),
            } => write!(
                f,
                "{vip} asks for an address by DHCP; none is leased on this node yet"
            ),
            Skip::Dhcp { vip } => write!(
                f,
                "{vip} asks for an address by DHCP, which vipd does not support yet"
            ),
            Skip::NoPeerForFamily { vip } => {
                write!(f, "no BGP peer carries {} routes for {vip}", family(vip))
            }
            Skip::NotElected { lease } => {
                write!(f, "served by the holder of Lease {lease}, not this node")
            }
            Skip::NoInterface { note } | Skip::DhcpFailed { note } => f.write_str(note),
        }
    }
}

/// Bad input in one Service. It never affects another Service, and never withdraws a VIP the
/// Service asks for validly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// An entry that is neither an IP address nor a hostname.
    #[error("{field}: {value:?} is not an IP address")]
    InvalidAddress { field: AddressField, value: String },
    /// A hostname: kube-vip resolves these (`dns_mode`); vipd does not resolve names yet.
    #[error(
        "{field}: {value:?} is a hostname; vipd does not resolve hostnames yet, use an IP address"
    )]
    UnsupportedHostname { field: AddressField, value: String },
    /// Loopback, multicast or the IPv4 broadcast address: no router can deliver traffic for it
    /// to this node.
    #[error("{field}: {value} is not a unicast address a router can reach")]
    UnusableAddress { field: AddressField, value: IpAddr },
    /// The field is set but names no address (`",,,"`, blanks).
    #[error("{field}: {value:?} names no address")]
    NoAddressGiven { field: AddressField, value: String },
    /// Link-local (169.254.0.0/16, fe80::/10): announced as asked, but routers do not forward
    /// traffic for it beyond its link.
    #[error("{field}: {value} is link-local; it is announced, but routers do not forward traffic to it beyond one link")]
    LinkLocalAddress { field: AddressField, value: IpAddr },
    /// `0.0.0.0` / `::` (DHCP) is not supported yet.
    #[error("{field}: {value} asks for an address by DHCP, which vipd does not support yet")]
    DhcpNotSupported { field: AddressField, value: IpAddr },
    /// The VIP's address family has no BGP peer.
    #[error(
        "{vip} is {}, but no BGP peer carries {} routes; it is not announced",
        family(vip),
        family(vip)
    )]
    NoPeerForFamily { vip: IpAddr },
    /// `kube-vip.io/ignore` set to something other than `"true"`; kube-vip compares the exact
    /// string, so vipd does too and keeps serving the Service.
    #[error("annotation {IGNORE}: {value:?} is not \"true\"; the Service is not ignored")]
    IgnoreNotTrue { value: String },
    /// Another annotation whose value vipd cannot use ([`crate::model::ServiceIntent`]).
    #[error("annotation {}: {:?} {}", .0.annotation, .0.value, .0.expected)]
    InvalidAnnotation(AnnotationProblem),
    /// A kube-vip annotation vipd does not implement yet asks for something.
    #[error(
        "annotation {}: {:?} is not supported by vipd yet and is ignored (kube-vip {})",
        .0.annotation,
        .0.value,
        .0.kube_vip_does
    )]
    UnsupportedAnnotation(UnsupportedAnnotation),
}

impl Problem {
    /// The CamelCase reason of the Warning Event.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::InvalidAddress { .. } => "InvalidLoadBalancerIP",
            Problem::UnsupportedHostname { .. } => "UnsupportedLoadBalancerHostname",
            Problem::UnusableAddress { .. } => "UnusableLoadBalancerIP",
            Problem::NoAddressGiven { .. } => "EmptyLoadBalancerIP",
            Problem::LinkLocalAddress { .. } => "LinkLocalLoadBalancerIP",
            Problem::DhcpNotSupported { .. } => "DHCPNotSupported",
            Problem::NoPeerForFamily { .. } => "NoPeerForAddressFamily",
            Problem::IgnoreNotTrue { .. } => "InvalidIgnoreAnnotation",
            Problem::InvalidAnnotation(_) => "InvalidAnnotation",
            Problem::UnsupportedAnnotation(_) => "UnsupportedAnnotation",
        }
    }
}

//! [pure] The kube-vip contract's names, each written once: the `kube-vip.io/*` annotations a
//! Service carries (read and written by vipd exactly as kube-vip does), and the labels vipd
//! reads or sets. Everything that reads or writes one of them names it from here.

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

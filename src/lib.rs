//! vipd: routable addresses for Kubernetes `type: LoadBalancer` Services on bare metal.
pub mod bgp;

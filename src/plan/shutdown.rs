//! [pure] The order in which vipd stops serving, for every mode, owned here once: nothing that
//! makes a router or a neighbour send traffic here outlives the address that answers it, and
//! the Leases go last, so the next holder of a VIP never overlaps with this node.

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
    /// The host routes to the peers vipd installed (Equinix Metal's `peer_routes`).
    RemovePeerRoutes,
    /// Stop answering ARP/NDP for the VIPs held, and take their addresses off.
    ReleaseClaims,
    /// The VIP addresses vipd put on the interface.
    RemoveAddresses,
    /// Stop the DHCP clients and delete their macvlans, without RELEASE: the next holder asks
    /// with the same MAC and keeps the address.
    StopDhcp,
    /// Delete the UPnP port mappings this node made.
    UnmapPorts,
    /// Remove this node's `service-provided.kube-vip.io` labels (`enable_node_labeling`): it
    /// provides nothing any more.
    UnlabelNode,
    /// Give up every Lease held (the next leader starts at once, on clean ground).
    ReleaseLeases,
}

/// The shutdown steps of `mode`, in order.
pub fn order(mode: Mode) -> Vec<Step> {
    use Step::*;
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
            order(Mode::Bgp),
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
            order(Mode::Arp),
            [
                Step::ReleaseClaims,
                Step::StopDhcp,
                Step::UnmapPorts,
                Step::UnlabelNode,
                Step::ReleaseLeases,
            ]
        );
    }

    #[test]
    fn static_mode_withdraws_its_routes_before_the_control_plane_vips_address_goes() {
        assert_eq!(
            order(Mode::Static),
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
            let steps = order(mode);
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
}

//! [pure] BGP mode's addresses and routes: given the VIPs this node should announce and what is
//! held now, the steps to take, in the order that keeps the network safe.
//!
//! - **The address before the route.** A router must not send traffic here for an address this
//!   node does not answer for, so a VIP is announced only once its address is present (vipd's,
//!   or one that was already on the interface); a VIP whose address is being added now is
//!   announced by the next plan, made as soon as the executor reports the address in place.
//! - **The route before the address goes.** A VIP no longer wanted is withdrawn (the new route
//!   set leaves it out) before its address is removed.
//! - Only vipd's own addresses are ever removed; DHCP VIPs live on their macvlans and are never
//!   put on the VIP interface.
//!
//! Without `bgp_attach_ip_to_interface` vipd manages no address: the routes are the VIPs.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// What BGP mode holds now.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// The VIPs handed to the speaker.
    pub routed: &'a BTreeSet<IpAddr>,
    /// The VIP interface, when vipd puts addresses on it.
    pub interface: Option<Interface<'a>>,
}

/// The VIP interface as read just before planning.
#[derive(Debug, Clone, Copy)]
pub struct Interface<'a> {
    /// Every address on it.
    pub present: &'a BTreeSet<IpAddr>,
    /// Those vipd put there (marked as its own).
    pub ours: &'a BTreeSet<IpAddr>,
}

/// One thing to do, in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Put the VIP's address on the VIP interface.
    AddAddress(IpAddr),
    /// Hand the speaker exactly these VIPs (each session sends its peer only the difference).
    SetRoutes(BTreeSet<IpAddr>),
    /// Take vipd's address off the VIP interface.
    RemoveAddress(IpAddr),
}

/// The steps from `held` to announcing `wanted`. `on_macvlans`: wanted VIPs whose address is not
/// vipd's to put on the VIP interface — DHCP VIPs whose lease is bound on their macvlan, and,
/// where vipd puts only the control-plane VIP there (no `bgp_attach_ip_to_interface`), the
/// Services' and static VIPs.
pub fn plan(
    wanted: &BTreeSet<IpAddr>,
    on_macvlans: &BTreeSet<IpAddr>,
    held: Held<'_>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let Some(iface) = held.interface else {
        if wanted != held.routed {
            steps.push(Step::SetRoutes(wanted.clone()));
        }
        return steps;
    };
    // Leased addresses are on their macvlans already, never on the VIP interface.
    let on_interface: BTreeSet<IpAddr> = wanted.difference(on_macvlans).copied().collect();
    steps.extend(
        on_interface
            .difference(iface.present)
            .map(|ip| Step::AddAddress(*ip)),
    );
    let routes: BTreeSet<IpAddr> = wanted
        .iter()
        .filter(|ip| iface.present.contains(ip) || on_macvlans.contains(ip))
        .copied()
        .collect();
    if &routes != held.routed {
        steps.push(Step::SetRoutes(routes));
    }
    steps.extend(
        iface
            .ours
            .difference(&on_interface)
            .map(|ip| Step::RemoveAddress(*ip)),
    );
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ips: &[&str]) -> BTreeSet<IpAddr> {
        ips.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const A: &str = "198.18.0.10";
    const B: &str = "198.18.0.11";
    const D: &str = "10.98.0.132";

    /// Held state with the VIP interface managed.
    fn with_interface<'a>(
        routed: &'a BTreeSet<IpAddr>,
        present: &'a BTreeSet<IpAddr>,
        ours: &'a BTreeSet<IpAddr>,
    ) -> Held<'a> {
        Held {
            routed,
            interface: Some(Interface { present, ours }),
        }
    }

    #[test]
    fn without_addresses_the_routes_are_the_vips() {
        let none = set(&[]);
        let held = Held {
            routed: &none,
            interface: None,
        };
        assert_eq!(
            plan(&set(&[A, B]), &none, held),
            [Step::SetRoutes(set(&[A, B]))]
        );
        let routed = set(&[A, B]);
        let held = Held {
            routed: &routed,
            interface: None,
        };
        assert_eq!(plan(&set(&[A, B]), &none, held), [], "nothing changed");
    }

    #[test]
    fn a_new_vip_gets_its_address_first_and_its_route_only_once_the_address_is_there() {
        let (routed, none) = (set(&[A]), set(&[]));
        let (present, ours) = (set(&[A]), set(&[A]));
        let held = with_interface(&routed, &present, &ours);
        // B's address is being added: B is not announced yet.
        assert_eq!(plan(&set(&[A, B]), &none, held), [Step::AddAddress(ip(B))]);
        // The executor reports it added; the next plan announces it.
        let (present, ours) = (set(&[A, B]), set(&[A, B]));
        let held = with_interface(&routed, &present, &ours);
        assert_eq!(
            plan(&set(&[A, B]), &none, held),
            [Step::SetRoutes(set(&[A, B]))]
        );
    }

    #[test]
    fn a_vip_that_goes_is_withdrawn_before_its_address_is_removed() {
        let (routed, none) = (set(&[A, B]), set(&[]));
        let (present, ours) = (set(&[A, B]), set(&[A, B]));
        let held = with_interface(&routed, &present, &ours);
        assert_eq!(
            plan(&set(&[A]), &none, held),
            [Step::SetRoutes(set(&[A])), Step::RemoveAddress(ip(B))]
        );
    }

    #[test]
    fn an_address_that_could_not_be_added_is_tried_again_and_never_announced() {
        let (routed, none) = (set(&[]), set(&[]));
        let (present, ours) = (set(&[]), set(&[]));
        let held = with_interface(&routed, &present, &ours);
        // Plan after a failed add: the same add again, still no route.
        assert_eq!(plan(&set(&[A]), &none, held), [Step::AddAddress(ip(A))]);
    }

    #[test]
    fn a_foreign_address_already_present_is_announced_and_never_removed() {
        let (routed, none) = (set(&[]), set(&[]));
        // A is on the interface, put there by someone else (not marked as vipd's).
        let (present, ours) = (set(&[A]), set(&[]));
        let held = with_interface(&routed, &present, &ours);
        assert_eq!(plan(&set(&[A]), &none, held), [Step::SetRoutes(set(&[A]))]);
        // Wanted no more: withdrawn, and its address left alone.
        let routed = set(&[A]);
        let held = with_interface(&routed, &present, &ours);
        assert_eq!(plan(&set(&[]), &none, held), [Step::SetRoutes(set(&[]))]);
    }

    #[test]
    fn a_dhcp_vip_on_its_macvlan_is_announced_without_an_address_on_the_vip_interface() {
        let (routed, on_macvlans) = (set(&[]), set(&[D]));
        let (present, ours) = (set(&[]), set(&[]));
        let held = with_interface(&routed, &present, &ours);
        assert_eq!(
            plan(&set(&[D]), &on_macvlans, held),
            [Step::SetRoutes(set(&[D]))]
        );
    }

    #[test]
    fn a_vip_whose_lease_is_bound_loses_its_interface_address_and_stays_announced() {
        // D was on the interface (before its lease was bound); now the lease holds it.
        let (routed, on_macvlans) = (set(&[D]), set(&[D]));
        let (present, ours) = (set(&[D]), set(&[D]));
        let held = with_interface(&routed, &present, &ours);
        assert_eq!(
            plan(&set(&[D]), &on_macvlans, held),
            [Step::RemoveAddress(ip(D))]
        );
    }

    #[test]
    fn everything_going_at_once_is_one_withdrawal_then_every_removal() {
        let (routed, none) = (set(&[A, B]), set(&[]));
        let (present, ours) = (set(&[A, B]), set(&[A, B]));
        let held = with_interface(&routed, &present, &ours);
        assert_eq!(
            plan(&set(&[]), &none, held),
            [
                Step::SetRoutes(set(&[])),
                Step::RemoveAddress(ip(A)),
                Step::RemoveAddress(ip(B)),
            ]
        );
    }
}

//! [pure] The kernel route of one VIP in routing-table mode, and how vipd recognises its own:
//! a host route (/32, /128) in the configured table with the configured protocol number. The
//! protocol number is the mark: any route of that table with that protocol is vipd's, the one it
//! adopts after a restart and removes when unwanted; no other route is ever touched.

use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use std::net::IpAddr;

/// Where and how VIP routes go (`vip_routingtableid`, `vip_routingtabletype`,
/// `vip_routingprotocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    /// The routing table (1–2³²−1; not 0, not 255 `local`).
    pub table: u32,
    pub kind: RouteKind,
    /// The routing protocol number (5–255: 0–4 are the kernel's own, such as `boot` for
    /// `ip route add`).
    pub protocol: u8,
}

impl Default for TableSpec {
    /// kube-vip's defaults: table 198, unicast, protocol 248.
    fn default() -> Self {
        TableSpec {
            table: 198,
            kind: RouteKind::Unicast,
            protocol: 248,
        }
    }
}

/// The route types a VIP route can be (`vip_routingtabletype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `RTN_UNICAST` (1): the VIP is reached through the interface.
    Unicast,
    /// `RTN_LOCAL` (2): the VIP is this host's own.
    Local,
}

impl RouteKind {
    /// The RTN_* number.
    pub fn number(self) -> u8 {
        match self {
            RouteKind::Unicast => 1,
            RouteKind::Local => 2,
        }
    }
}

/// The route for `vip` through the interface with index `oif`: a host route in the table, of
/// the kind and protocol configured. Scope universe for unicast, host for local (as
/// `ip route add local` makes it).
pub fn message(vip: IpAddr, oif: u32, spec: &TableSpec) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let (family, len) = match vip {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    msg.header.address_family = family;
    msg.header.destination_prefix_length = len;
    msg.header.protocol = RouteProtocol::from(spec.protocol);
    let (kind, scope) = match spec.kind {
        RouteKind::Unicast => (RouteType::Unicast, RouteScope::Universe),
        RouteKind::Local => (RouteType::Local, RouteScope::Host),
    };
    msg.header.kind = kind;
    msg.header.scope = scope;
    // Tables above 255 do not fit the header: RTA_TABLE carries them (RT_TABLE_UNSPEC in the
    // header, as iproute2 does).
    if let Ok(t) = u8::try_from(spec.table) {
        msg.header.table = t;
    } else {
        msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    }
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(vip)));
    msg.attributes.push(RouteAttribute::Oif(oif));
    msg.attributes.push(RouteAttribute::Table(spec.table));
    msg
}

/// The VIP a route in the kernel is for, if the route is vipd's: a host route in `spec`'s
/// table with `spec`'s protocol (whatever its interface or kind: an earlier vipd may have had
/// other settings, and its routes are still vipd's to remove).
pub fn ours(msg: &RouteMessage, spec: &TableSpec) -> Option<IpAddr> {
    if u8::from(msg.header.protocol) != spec.protocol || table_of(msg) != spec.table {
        return None;
    }
    let dst = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })?;
    let host = match dst {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (msg.header.destination_prefix_length == host).then_some(dst)
}

/// Whether one of vipd's routes is the one [`message`] makes now: through interface `oif`, of
/// the configured kind.
pub fn as_made(msg: &RouteMessage, oif: u32, spec: &TableSpec) -> bool {
    let kind = match spec.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Local => RouteType::Local,
    };
    msg.header.kind == kind
        && msg
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == oif))
}

/// The table a route is in: RTA_TABLE when present (any table), else the header's.
fn table_of(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_vip_route_is_a_host_route_in_the_table_with_the_protocol_and_interface() {
        let msg = message(v4("192.0.2.10"), 7, &TableSpec::default());
        assert_eq!(msg.header.address_family, AddressFamily::Inet);
        assert_eq!(msg.header.destination_prefix_length, 32);
        assert_eq!(msg.header.table, 198);
        assert_eq!(u8::from(msg.header.protocol), 248);
        assert_eq!(msg.header.kind, RouteType::Unicast);
        assert_eq!(msg.header.scope, RouteScope::Universe);
        assert_eq!(
            msg.attributes,
            vec![
                RouteAttribute::Destination(RouteAddress::Inet("192.0.2.10".parse().unwrap())),
                RouteAttribute::Oif(7),
                RouteAttribute::Table(198),
            ]
        );
    }

    #[test]
    fn ipv6_local_routes_in_a_large_table() {
        let spec = TableSpec {
            table: 100_000,
            kind: RouteKind::Local,
            protocol: 99,
        };
        let msg = message(v4("2001:db8::5"), 3, &spec);
        assert_eq!(msg.header.address_family, AddressFamily::Inet6);
        assert_eq!(msg.header.destination_prefix_length, 128);
        assert_eq!(msg.header.table, RouteHeader::RT_TABLE_UNSPEC);
        assert_eq!(msg.header.kind, RouteType::Local);
        assert_eq!(msg.header.scope, RouteScope::Host);
        assert!(msg.attributes.contains(&RouteAttribute::Table(100_000)));
        assert_eq!(ours(&msg, &spec), Some(v4("2001:db8::5")));
    }

    #[test]
    fn only_host_routes_of_our_table_and_protocol_are_ours() {
        let spec = TableSpec::default();
        let mine = message(v4("192.0.2.10"), 7, &spec);
        assert_eq!(ours(&mine, &spec), Some(v4("192.0.2.10")));
        // Another interface or kind: still ours (an earlier vipd's settings), not as made now.
        let other_if = message(v4("192.0.2.11"), 9, &spec);
        assert_eq!(ours(&other_if, &spec), Some(v4("192.0.2.11")));
        assert!(as_made(&mine, 7, &spec));
        assert!(!as_made(&other_if, 7, &spec));
        let local = TableSpec {
            kind: RouteKind::Local,
            ..spec
        };
        assert!(!as_made(&mine, 7, &local));
        // Another protocol (ip route add: boot), another table, a prefix: not ours.
        let mut boot = mine.clone();
        boot.header.protocol = RouteProtocol::Boot;
        assert_eq!(ours(&boot, &spec), None);
        let elsewhere = message(v4("192.0.2.10"), 7, &TableSpec { table: 254, ..spec });
        assert_eq!(ours(&elsewhere, &spec), None);
        let mut prefix = mine.clone();
        prefix.header.destination_prefix_length = 24;
        assert_eq!(ours(&prefix, &spec), None);
        // What the kernel reports for a small table: the header only, no RTA_TABLE.
        let mut dumped = mine;
        dumped
            .attributes
            .retain(|a| !matches!(a, RouteAttribute::Table(_)));
        assert_eq!(ours(&dumped, &spec), Some(v4("192.0.2.10")));
    }
}

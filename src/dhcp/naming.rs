//! [pure] What a DHCP VIP's macvlan is called and which MAC it has: its name (kube-vip's, or
//! `kube-vip.io/macvlanName`), MACs parsed, printed and derived from the Service's UID, and the
//! link alias that names the Service owning it.

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const IFNAMSIZ_MAX: usize = 15;
/// `kube-vip.io/macvlanName` if it is a usable interface name, else `vip-<first 8 of the UID>`
/// (kube-vip's name, so a node upgraded from kube-vip finds the same link).
pub fn macvlan_name(uid: &str, annotation: Option<&str>) -> String {
    if let Some(name) = annotation.map(str::trim).filter(|n| valid_ifname(n)) {
        return name.to_owned();
    }
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    format!("vip-{short}")
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAMSIZ_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// `aa:bb:cc:dd:ee:ff` (also `-` separated), unicast only: a multicast MAC cannot own a lease.
pub use crate::model::parse_mac;

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The MAC of a Service's macvlan when `kube-vip.io/hwaddr` does not give one: from its UID
/// (FNV-1a, stable across nodes, versions and platforms), locally administered unicast (bit 1
/// of the first byte set, bit 0 clear), so it cannot collide with a vendor's address. Every
/// node derives the same MAC, so a takeover asks with it even before it is written back.
pub fn mac_for_uid(uid: &str) -> [u8; 6] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let bytes = hash.to_be_bytes();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&bytes[2..8]);
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

/// What the alias of a vipd macvlan starts with: `vipd dhcp <uid> <namespace>/<name>`.
const ALIAS_PREFIX: &str = "vipd dhcp ";

/// The alias naming the Service that owns a macvlan (`ip link` shows it), by which a restarted
/// vipd finds macvlans left for Services that are gone.
pub fn owner_alias(uid: &str, service: &str) -> String {
    format!("{ALIAS_PREFIX}{uid} {service}")
}

/// The owning Service's UID and namespace, if `alias` is a vipd macvlan's.
pub fn owner(alias: &str) -> Option<(&str, &str)> {
    let mut words = alias.strip_prefix(ALIAS_PREFIX)?.split_whitespace();
    let uid = words.next()?;
    let namespace = words.next()?.split_once('/')?.0;
    Some((uid, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alias_names_the_owner_and_only_vipds_aliases_are_read() {
        let alias = owner_alias("1a2b3c4d-0000", "default/web");
        assert_eq!(alias, "vipd dhcp 1a2b3c4d-0000 default/web");
        assert_eq!(owner(&alias), Some(("1a2b3c4d-0000", "default")));
        assert_eq!(owner("uplink to rack 4"), None);
        assert_eq!(owner("vipd dhcp "), None);
        assert_eq!(owner("vipd dhcp 1a2b"), None);
    }

    #[test]
    fn name_from_uid_or_annotation() {
        let uid = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809";
        assert_eq!(macvlan_name(uid, None), "vip-1a2b3c4d");
        assert_eq!(macvlan_name(uid, Some("web-dhcp")), "web-dhcp");
        // Unusable annotations fall back to the UID name.
        for bad in ["", "a/b", "has space", "sixteen-chars-xx", "..", "a:b"] {
            assert_eq!(macvlan_name(uid, Some(bad)), "vip-1a2b3c4d", "{bad:?}");
        }
    }

    #[test]
    fn macs_parse_and_print() {
        assert_eq!(
            parse_mac("02:42:AC:11:00:02"),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(
            parse_mac("02-42-ac-11-00-02"),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(
            format_mac(&[2, 0x42, 0xac, 0x11, 0, 2]),
            "02:42:ac:11:00:02"
        );
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "2:42:ac:11:00:02",
            "zz:42:ac:11:00:02",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn macs_from_uids_are_stable_distinct_and_locally_administered_unicast() {
        // Pinned (computed independently, in Python): a node running another version must
        // derive the same MAC.
        assert_eq!(
            format_mac(&mac_for_uid("1a2b3c4d-0000-0000-0000-000000000000")),
            "ae:8c:64:c2:ea:69"
        );
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let mac = mac_for_uid(&format!("6f1c2a7e-{i:04}-4b1d-9c3e-0242ac110002"));
            assert_eq!(mac[0] & 0x03, 0x02, "{mac:02x?}");
            assert_eq!(parse_mac(&format_mac(&mac)), Some(mac));
            seen.insert(mac);
        }
        assert_eq!(seen.len(), 1000, "distinct UIDs, distinct MACs");
    }
}

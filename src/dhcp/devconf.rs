//! [I/O] Per-interface IPv4 settings (`net.ipv4.conf.<interface>.*`) read and written by rtnetlink
//! (`IFLA_AF_SPEC` → `AF_INET` → `IFLA_INET_CONF`) instead of `/proc/sys`, which container
//! runtimes mount read-only: NET_ADMIN, which vipd's DaemonSet has, is all the kernel asks.
//!
//! The request is encoded here [pure]: netlink-packet-route's `DevConfRequest` leaves out every
//! setting whose value is 0, so it cannot set one to 0, and sending every setting would race
//! with anyone else changing another. Only the listed settings are sent.

use futures::TryStreamExt;
use netlink_packet_core::{DefaultNla, NLA_F_NESTED};
use netlink_packet_route::link::{AfSpecInet, AfSpecUnspec, LinkAttribute};
use rtnetlink::{Handle, LinkUnspec};

/// The settings vipd changes, by their `IPV4_DEVCONF_*` number (linux/ip.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    RpFilter = 8,
    ArpAnnounce = 18,
    ArpIgnore = 19,
    PromoteSecondaries = 20,
}

impl Setting {
    pub fn name(self) -> &'static str {
        match self {
            Setting::RpFilter => "rp_filter",
            Setting::ArpAnnounce => "arp_announce",
            Setting::ArpIgnore => "arp_ignore",
            Setting::PromoteSecondaries => "promote_secondaries",
        }
    }
}

const IFLA_INET_CONF: u16 = 1;

/// The value of `IFLA_INET_CONF` setting only `values`: one 8-byte attribute per setting
/// (length, type = the setting's number, u32 in host order, as the kernel reads it).
pub fn encode(values: &[(Setting, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 8);
    for (setting, value) in values {
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&(*setting as u16).to_ne_bytes());
        out.extend_from_slice(&value.to_ne_bytes());
    }
    out
}

/// Sets `values` on interface `index`.
pub async fn set(
    handle: &Handle,
    index: u32,
    values: &[(Setting, u32)],
) -> Result<(), rtnetlink::Error> {
    let conf = DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, encode(values));
    let msg = LinkUnspec::new_with_index(index)
        .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::Other(conf),
        ])]))
        .build();
    handle.link().set(msg).execute().await
}

/// The current value of `setting` on interface `index` (`None`: the kernel did not say).
pub async fn get(
    handle: &Handle,
    index: u32,
    setting: Setting,
) -> Result<Option<i32>, rtnetlink::Error> {
    let Some(msg) = handle
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await?
    else {
        return Ok(None);
    };
    let conf = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::AfSpecUnspec(specs) => specs.iter().find_map(|s| match s {
            AfSpecUnspec::Inet(inet) => inet.iter().find_map(|i| match i {
                AfSpecInet::DevConf(c) => Some(*c),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    });
    Ok(conf.map(|c| match setting {
        Setting::RpFilter => c.rp_filter,
        Setting::ArpAnnounce => c.arp_announce,
        Setting::ArpIgnore => c.arp_ignore,
        Setting::PromoteSecondaries => c.promote_secondaries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_settings_are_encoded_zero_included() {
        let bytes = encode(&[(Setting::RpFilter, 0), (Setting::ArpIgnore, 1)]);
        let mut want = Vec::new();
        for (kind, value) in [(8u16, 0u32), (19, 1)] {
            want.extend_from_slice(&8u16.to_ne_bytes());
            want.extend_from_slice(&kind.to_ne_bytes());
            want.extend_from_slice(&value.to_ne_bytes());
        }
        assert_eq!(bytes, want);
        assert_eq!(bytes.len(), 16);
    }
}

//! [I/O] The macvlan a DHCP VIP lives on: its creation and removal (its name, MAC and owner
//! alias are [`super::naming`]'s).
//!
//! One macvlan per Service gives each lease its own MAC, so the DHCP server sees one client per
//! Service, and a node that takes the Service over asks with the same MAC (kept in
//! `kube-vip.io/hwaddr`) and gets the same address.

use super::devconf;
use super::naming::{format_mac, owner};
use futures::TryStreamExt;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, MacVlanMode};
use rtnetlink::{Handle, LinkMacVlan, LinkUnspec};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum MacvlanError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("parent interface {0:?} of the DHCP macvlan does not exist")]
    NoParent(String),
    #[error(
        "interface {0:?} exists and is not a macvlan left by vipd or kube-vip: not touching it \
         (choose another kube-vip.io/macvlanName)"
    )]
    NotOurs(String),
    #[error("{action} macvlan {name}: {source}")]
    Request {
        action: &'static str,
        name: String,
        source: Box<rtnetlink::Error>,
    },
}

/// Creates macvlan `name` (bridge mode, up) on `parent` with `mac` and returns its index. A link
/// of that name left by an earlier vipd is reused if it has the MAC, else replaced. `alias`
/// ([`owner_alias`]), if not empty, is set on it.
pub async fn create(
    parent: &str,
    name: &str,
    mac: [u8; 6],
    alias: &str,
) -> Result<u32, MacvlanError> {
    let owner_uid = owner(alias).map(|(uid, _)| uid);
    let index = create_link(parent, name, mac, owner_uid).await?;
    if !alias.is_empty() {
        let handle = connect()?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).alias(alias).build())
            .execute()
            .await
            .map_err(|e| request_error("name the owner of", name, e))?;
    }
    Ok(index)
}

/// Deletes the macvlans vipd made ([`owner_alias`]) for which `keep(uid, namespace)` is false:
/// left by a vipd that stopped without cleaning up (a crash, a Service deleted meanwhile,
/// another node leading now). A macvlan carries the Service's MAC, which must be on one port of
/// the LAN only.
pub async fn delete_unowned(
    keep: impl Fn(&str, &str) -> bool,
) -> Result<Vec<String>, MacvlanError> {
    let handle = connect()?;
    let mut links = handle.link().get().execute();
    let mut stale = Vec::new();
    while let Some(msg) = links
        .try_next()
        .await
        .map_err(|e| request_error("list the links for", "vipd's", e))?
    {
        let name = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        let stale_here = msg.attributes.iter().any(|a| match a {
            LinkAttribute::IfAlias(alias) => owner(alias).is_some_and(|(u, ns)| !keep(u, ns)),
            _ => false,
        });
        if let (Some(name), true) = (name, stale_here) {
            {
                stale.push((msg.header.index, name));
            }
        }
    }
    let mut deleted = Vec::new();
    for (index, name) in stale {
        delete_index(&handle, &name, index).await?;
        info!(macvlan = %name, "deleted a macvlan left for a Service this node does not lease for");
        deleted.push(name);
    }
    Ok(deleted)
}

async fn create_link(
    parent: &str,
    name: &str,
    mac: [u8; 6],
    owner_uid: Option<&str>,
) -> Result<u32, MacvlanError> {
    let handle = connect()?;
    let parent_index = link_index(&handle, parent)
        .await
        .ok_or_else(|| MacvlanError::NoParent(parent.to_owned()))?;
    if let Some((index, existing)) = link(&handle, name).await {
        // Only a macvlan vipd (or kube-vip) made is reused or replaced: a name from
        // `kube-vip.io/macvlanName` must never take the node's own interface down.
        if !is_ours(&handle, index, owner_uid).await {
            return Err(MacvlanError::NotOurs(name.to_owned()));
        }
        if existing.as_deref() == Some(&mac[..]) {
            info!(macvlan = name, "reusing the macvlan an earlier vipd left");
            configure(&handle, parent, parent_index, name, index).await;
            return Ok(index);
        }
        warn!(
            macvlan = name,
            "replacing a macvlan of the same name with another MAC"
        );
        delete_index(&handle, name, index).await?;
    }
    handle
        .link()
        .add(
            LinkMacVlan::new(name, parent_index, MacVlanMode::Bridge)
                .address(mac.to_vec())
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|e| request_error("create", name, e))?;
    let (index, _) = link(&handle, name)
        .await
        .ok_or_else(|| MacvlanError::Request {
            action: "find the new",
            name: name.to_owned(),
            source: Box::new(rtnetlink::Error::RequestFailed),
        })?;
    configure(&handle, parent, parent_index, name, index).await;
    info!(macvlan = name, parent, mac = %format_mac(&mac), "macvlan created");
    Ok(index)
}

/// Deletes macvlan `name` (and with it its addresses) if it is the one `alias` names (see
/// [`create`]); absent is fine.
pub async fn delete(name: &str, alias: &str) -> Result<(), MacvlanError> {
    let handle = connect()?;
    if let Some((index, _)) = link(&handle, name).await {
        if !is_ours(&handle, index, owner(alias).map(|(uid, _)| uid)).await {
            warn!(
                macvlan = name,
                "not deleting: the link is no longer this Service's macvlan"
            );
            return Ok(());
        }
        delete_index(&handle, name, index).await?;
        info!(macvlan = name, "macvlan deleted");
    }
    Ok(())
}

/// The interface's MAC, if it exists.
pub async fn mac_of(name: &str) -> Result<Option<[u8; 6]>, MacvlanError> {
    let handle = connect()?;
    Ok(link(&handle, name)
        .await
        .and_then(|(_, mac)| mac)
        .and_then(|m| <[u8; 6]>::try_from(m.as_slice()).ok()))
}

fn connect() -> Result<Handle, MacvlanError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(MacvlanError::Socket)?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn delete_index(handle: &Handle, name: &str, index: u32) -> Result<(), MacvlanError> {
    handle
        .link()
        .del(index)
        .execute()
        .await
        .map_err(|e| request_error("delete", name, e))
}

async fn link_index(handle: &Handle, name: &str) -> Option<u32> {
    link(handle, name).await.map(|(i, _)| i)
}

/// Whether link `index` is a macvlan without alias (kube-vip sets none) or with vipd's, naming
/// `uid` as its owner when `uid` is given: another Service's macvlan is never reused, replaced
/// or deleted for this one.
async fn is_ours(handle: &Handle, index: u32, uid: Option<&str>) -> bool {
    let Ok(Some(msg)) = handle
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await
    else {
        return false;
    };
    let mut macvlan = false;
    let mut alias_ok = true;
    for a in &msg.attributes {
        match a {
            LinkAttribute::LinkInfo(infos) => {
                macvlan |= infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::MacVlan)));
            }
            LinkAttribute::IfAlias(alias) => {
                alias_ok = owner(alias).is_some_and(|(owner, _)| uid.is_none_or(|u| u == owner));
            }
            _ => {}
        }
    }
    macvlan && alias_ok
}

/// Index and MAC of link `name`.
async fn link(handle: &Handle, name: &str) -> Option<(u32, Option<Vec<u8>>)> {
    let msg = handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
        .ok()
        .flatten()?;
    let mac = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    });
    Some((msg.header.index, mac))
}

/// The macvlan's IPv4 settings, and its parent's, by netlink ([`devconf`]: `/proc/sys` is
/// read-only in a container).
///
/// - `rp_filter=0` on the macvlan: replies to DHCP and traffic to the lease arrive on it from
///   hosts routed via the parent, and before the lease the macvlan has no address, which fails
///   loose mode too. The kernel uses the larger of `all` and the interface's value: a nonzero
///   `all` is reported (it is the node's to change).
/// - The lease must be answered by the macvlan's MAC alone (the MAC the next holder has too).
///   By default Linux answers ARP for any local address on every interface (`arp_ignore=0`) and
///   names the packet's source in its own ARP requests (`arp_announce=0`): the parent would
///   answer for the lease with the node's MAC, and ask with the lease as sender when replying
///   to a client, which rewrites the client's entry for the lease to the node's MAC; the
///   macvlan would answer for the node's addresses with the Service's MAC (wrong once the
///   Service moves). So `arp_ignore=1` (answer only for addresses on the interface) and
///   `arp_announce=2` (ask with the interface's own address) on both: kube-proxy's "strict
///   ARP". On the macvlan `arp_announce=2` matters as much: the DHCP client's unicast RENEW
///   leaves by the macvlan with the node's address as source (the lease is deprecated, so never
///   a source), and with `arp_announce=0` the macvlan asked "who-has <server> tell <node
///   address>" from the Service's MAC; the gateway then sent all the node's traffic to that MAC,
///   and lost the node for half a minute when the macvlan went (a failover, a restart: found by
///   tests/chaos_lan.rs). The parent's values are node-wide settings: only raised, and logged
///   when changed.
async fn configure(handle: &Handle, parent: &str, parent_index: u32, name: &str, index: u32) {
    use devconf::Setting::{ArpAnnounce, ArpIgnore, RpFilter};
    let own = [(RpFilter, 0), (ArpIgnore, 1), (ArpAnnounce, 2)];
    if let Err(e) = devconf::set(handle, index, &own).await {
        warn!(
            macvlan = name,
            "cannot set rp_filter=0, arp_ignore=1, arp_announce=2 on the macvlan: {e}"
        );
    }
    let all = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter");
    if let Some(v) = all.ok().filter(|v| v.trim() != "0") {
        warn!(
            macvlan = name,
            "net.ipv4.conf.all.rp_filter={}: the kernel drops DHCP replies to the macvlan; set it to 0 on this node",
            v.trim()
        );
    }
    for (setting, value) in [(ArpIgnore, 1), (ArpAnnounce, 2)] {
        let key = setting.name();
        match devconf::get(handle, parent_index, setting).await {
            Ok(Some(was)) if was < value => {
                match devconf::set(handle, parent_index, &[(setting, value as u32)]).await {
                    Ok(()) => info!(
                        interface = parent,
                        "set {key}={value} (was {was}) so that only the macvlans answer ARP for DHCP VIPs"
                    ),
                    Err(e) => warn!(
                        interface = parent,
                        "cannot set {key}={value}: the node may answer ARP for DHCP VIPs with its own MAC: {e}"
                    ),
                }
            }
            Ok(_) => {}
            Err(e) => warn!(interface = parent, "cannot read {key}: {e}"),
        }
    }
}

fn request_error(action: &'static str, name: &str, e: rtnetlink::Error) -> MacvlanError {
    MacvlanError::Request {
        action,
        name: name.to_owned(),
        source: Box::new(e),
    }
}

//! [I/O] VIP addresses on an interface (`bgp_attach_ip_to_interface`), by rtnetlink.
//!
//! Every address vipd adds carries its own address protocol number ([`ADDRESS_PROTO`],
//! `IFA_PROTO`, shown by `ip address` as `proto 118`). That mark is how a restarted vipd finds
//! what it added before (nothing leaks), and why it never removes an address someone else
//! added: an address that already exists is left as it is and never becomes vipd's.

use crate::model::{Mask, VipMasks};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope, CacheInfo,
};
use rtnetlink::Handle;
use std::collections::BTreeSet;
use std::net::IpAddr;
use tracing::{debug, info, warn};

/// `IFA_PROTO` of vipd's addresses (0–3 belong to the kernel; 118 is ASCII `v`).
pub const ADDRESS_PROTO: u8 = 118;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("interface {0:?} (vip_interface) does not exist")]
    NoInterface(String),
    #[error("{what} exists and is not vipd's: left alone (the VIP is not routed there)")]
    Foreign { what: String },
    #[error(
        "vip_subnet=auto: no address of {ifname} has a subnet holding {ip}, so its mask is unknown"
    )]
    NoSubnet { ip: IpAddr, ifname: String },
    #[error("peer {0} cannot be routed through gateway {1} (another address family)")]
    Unroutable(IpAddr, IpAddr),
    #[error("{action} {ip} on {ifname}: {source}")]
    Request {
        action: &'static str,
        ip: String,
        ifname: String,
        // Boxed: a netlink error carries the whole request message.
        source: Box<rtnetlink::Error>,
    },
}

/// The VIP addresses vipd owns on one interface.
pub struct VipAddresses {
    handle: Handle,
    ifname: String,
    index: u32,
    /// The interface's hardware address (`None`: it has none, e.g. `lo`).
    mac: Option<[u8; 6]>,
    ours: BTreeSet<IpAddr>,
    /// The prefix length addresses get (`vip_subnet`; /32 and /128 unless set).
    masks: VipMasks,
}

impl VipAddresses {
    /// Opens netlink, finds `ifname` and adopts the addresses an earlier vipd left there.
    pub async fn open(ifname: &str) -> Result<VipAddresses, NetlinkError> {
        let (handle, link) = open_link(ifname).await?;
        let mac = link.attributes.iter().find_map(|a| match a {
            netlink_packet_route::link::LinkAttribute::Address(m) => m.as_slice().try_into().ok(),
            _ => None,
        });
        let mut addrs = VipAddresses {
            handle,
            ifname: ifname.to_owned(),
            index: link.header.index,
            mac,
            ours: BTreeSet::new(),
            masks: VipMasks::default(),
        };
        addrs.ours = addrs
            .list()
            .await?
            .into_iter()
            .filter(|(_, proto)| *proto == Some(ADDRESS_PROTO))
            .map(|(ip, _)| ip)
            .collect();
        if !addrs.ours.is_empty() {
            info!(
                interface = ifname,
                count = addrs.ours.len(),
                "found VIP addresses of an earlier vipd; keeping them until the first decision"
            );
        }
        Ok(addrs)
    }

    /// The interface's addresses as the kernel reports them.
    async fn messages(&self) -> Result<Vec<AddressMessage>, NetlinkError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .execute()
            .try_collect()
            .await
            .map_err(|source| self.error("list addresses", None, source))
    }

    /// Addresses on the interface with their `IFA_PROTO`.
    async fn list(&self) -> Result<Vec<(IpAddr, Option<u8>)>, NetlinkError> {
        let msgs = self.messages().await?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let ip = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })?;
                let proto = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Protocol(p) => Some(u8::from(*p)),
                    _ => None,
                });
                Some((ip, proto))
            })
            .collect())
    }

    /// Every address on the interface now, whoever added it (empty if it cannot be read).
    pub async fn present(&self) -> BTreeSet<IpAddr> {
        match self.list().await {
            Ok(list) => list.into_iter().map(|(ip, _)| ip).collect(),
            Err(e) => {
                warn!("{e}");
                self.ours.clone()
            }
        }
    }

    pub fn ours(&self) -> &BTreeSet<IpAddr> {
        &self.ours
    }

    /// Addresses get these prefix lengths from now on (ARP mode's `vip_subnet`).
    pub fn with_masks(mut self, masks: VipMasks) -> VipAddresses {
        self.masks = masks;
        self
    }

    /// The prefix length `ip` gets: the configured one, or with `auto` that of the interface's
    /// own address (not vipd's) whose subnet holds it.
    async fn prefix_for(&self, ip: IpAddr) -> Result<u8, NetlinkError> {
        match self.masks.of(ip) {
            Mask::Fixed(n) => Ok(n),
            Mask::Auto => {
                let msgs = self.messages().await?;
                msgs.iter()
                    .filter(|m| {
                        !m.attributes.iter().any(|a| {
                            matches!(a, AddressAttribute::Protocol(p) if u8::from(*p) == ADDRESS_PROTO)
                        })
                    })
                    .filter_map(|m| {
                        let own = m.attributes.iter().find_map(|a| match a {
                            AddressAttribute::Address(a) => Some(*a),
                            _ => None,
                        })?;
                        let net = IpNet::new(own, m.header.prefix_len).ok()?;
                        net.contains(&ip).then_some(m.header.prefix_len)
                    })
                    // The most specific subnet, should several hold it.
                    .max()
                    .ok_or_else(|| NetlinkError::NoSubnet {
                        ip,
                        ifname: self.ifname.clone(),
                    })
            }
        }
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn mac(&self) -> Option<[u8; 6]> {
        self.mac
    }

    /// Adds the wanted addresses vipd does not have yet. Errors are per address; the others
    /// still get added.
    pub async fn add_missing(&mut self, wanted: &BTreeSet<IpAddr>) -> Vec<NetlinkError> {
        let mut errors = Vec::new();
        for ip in wanted.difference(&self.ours.clone()) {
            match self.add(*ip).await {
                Ok(true) => {
                    self.ours.insert(*ip);
                }
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Removes vipd's addresses that are not wanted.
    pub async fn remove_unwanted(&mut self, wanted: &BTreeSet<IpAddr>) -> Vec<NetlinkError> {
        let mut errors = Vec::new();
        let unwanted: Vec<IpAddr> = self.ours.difference(wanted).copied().collect();
        for ip in unwanted {
            match self.remove(ip).await {
                Ok(()) => {
                    self.ours.remove(&ip);
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Adds one address and remembers it as vipd's. `Ok(false)`: it was there already and is
    /// not vipd's, so it stays someone else's.
    pub async fn put(&mut self, ip: IpAddr) -> Result<bool, NetlinkError> {
        let added = self.add(ip).await?;
        if added {
            self.ours.insert(ip);
        }
        Ok(added)
    }

    /// Removes one of vipd's addresses.
    pub async fn take(&mut self, ip: IpAddr) -> Result<(), NetlinkError> {
        self.remove(ip).await?;
        self.ours.remove(&ip);
        Ok(())
    }

    /// `Ok(false)`: the address exists already and is not vipd's; it is left alone.
    pub async fn add(&self, ip: IpAddr) -> Result<bool, NetlinkError> {
        let prefix = self.prefix_for(ip).await?;
        let mut req = self.handle.address().add(self.index, ip, prefix);
        let msg = req.message_mut();
        msg.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(
                ADDRESS_PROTO,
            )));
        // Preferred lifetime 0: the VIP is never picked as a source address for the host's own
        // connections; valid forever.
        let mut lifetimes = CacheInfo::default();
        lifetimes.ifa_preferred = 0;
        lifetimes.ifa_valid = u32::MAX;
        msg.attributes.push(AddressAttribute::CacheInfo(lifetimes));
        if ip.is_ipv6() {
            // No duplicate address detection: a tentative VIP would not answer for seconds.
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        if self.ifname == "lo" {
            msg.header.scope = AddressScope::Host;
        }
        match req.execute().await {
            Ok(()) => {
                info!(%ip, interface = %self.ifname, "VIP address added");
                Ok(true)
            }
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {
                debug!(%ip, interface = %self.ifname, "address exists already and is not vipd's: left alone");
                Ok(false)
            }
            Err(source) => Err(self.error("add", Some(ip), source)),
        }
    }

    /// Removes `ip` if it is on the interface and vipd's (`IFA_PROTO` 118); another's address
    /// is left alone.
    pub async fn remove(&self, ip: IpAddr) -> Result<(), NetlinkError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .set_address_filter(ip)
            .execute()
            .try_collect()
            .await
            .map_err(|source| self.error("find", Some(ip), source))?;
        for msg in msgs {
            let proto = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Protocol(p) => Some(u8::from(*p)),
                _ => None,
            });
            if proto != Some(ADDRESS_PROTO) {
                warn!(%ip, interface = %self.ifname, "the address is no longer vipd's (re-added by someone else?): left alone");
                continue;
            }
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|source| self.error("remove", Some(ip), source))?;
            info!(%ip, interface = %self.ifname, "VIP address removed");
        }
        Ok(())
    }

    fn error(
        &self,
        action: &'static str,
        ip: Option<IpAddr>,
        source: rtnetlink::Error,
    ) -> NetlinkError {
        NetlinkError::Request {
            action,
            ip: ip.map_or_else(|| "addresses".to_owned(), |ip| ip.to_string()),
            ifname: self.ifname.clone(),
            source: Box::new(source),
        }
    }
}

/// A netlink handle (its connection spawned) and interface `ifname`'s link message.
pub(crate) async fn open_link(
    ifname: &str,
) -> Result<(Handle, netlink_packet_route::link::LinkMessage), NetlinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
    tokio::spawn(conn);
    let link = handle
        .link()
        .get()
        .match_name(ifname.to_owned())
        .execute()
        .try_next()
        .await
        .ok()
        .flatten()
        .ok_or_else(|| NetlinkError::NoInterface(ifname.to_owned()))?;
    Ok((handle, link))
}

/// Routing protocol number of the peer routes vipd installs (`ip route … proto 118`), so they
/// are found again and never confused with anyone else's.
pub const ROUTE_PROTO: u8 = 118;

/// Host routes to BGP peers (`--metal-peer-routes`: the Equinix Metal routers are reached via
/// the private gateway). Installed before the session that needs them, removed when the peer
/// goes and on exit.
pub struct PeerRoutes {
    handle: Handle,
    installed: BTreeSet<vipd_providers::PeerRoute>,
}

impl PeerRoutes {
    pub fn open() -> Result<PeerRoutes, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(PeerRoutes {
            handle,
            installed: BTreeSet::new(),
        })
    }

    /// Installs the wanted routes vipd has not installed yet (replacing a route to the same
    /// destination). Errors are per route.
    pub async fn add_missing(
        &mut self,
        wanted: &BTreeSet<vipd_providers::PeerRoute>,
    ) -> Vec<NetlinkError> {
        let mut errors = Vec::new();
        for r in wanted.difference(&self.installed.clone()) {
            let Some(msg) = route_message(r) else {
                errors.push(NetlinkError::Unroutable(r.destination, r.gateway));
                continue;
            };
            match self.handle.route().add(msg).replace().execute().await {
                Ok(()) => {
                    info!(destination = %r.destination, gateway = %r.gateway, "peer route installed");
                    self.installed.insert(*r);
                }
                Err(source) => errors.push(route_error("add route to", r, source)),
            }
        }
        errors
    }

    /// Removes the routes vipd installed that are no longer wanted. A route whose removal
    /// fails stays on the list and is tried again next time.
    pub async fn remove_unwanted(
        &mut self,
        wanted: &BTreeSet<vipd_providers::PeerRoute>,
    ) -> Vec<NetlinkError> {
        let mut errors = Vec::new();
        let stale: Vec<_> = self.installed.difference(wanted).copied().collect();
        for r in stale {
            let Some(msg) = route_message(&r) else {
                self.installed.remove(&r);
                continue;
            };
            match self.handle.route().del(msg).execute().await {
                Ok(()) => {
                    info!(destination = %r.destination, "peer route removed");
                    self.installed.remove(&r);
                }
                Err(source) => errors.push(route_error("remove route to", &r, source)),
            }
        }
        errors
    }
}

fn route_message(
    r: &vipd_providers::PeerRoute,
) -> Option<netlink_packet_route::route::RouteMessage> {
    use netlink_packet_route::route::RouteProtocol;
    use rtnetlink::RouteMessageBuilder;
    let proto = RouteProtocol::from(ROUTE_PROTO);
    Some(match (r.destination, r.gateway, r.source) {
        (IpAddr::V4(d), IpAddr::V4(g), src) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(d, 32)
                .gateway(g)
                .protocol(proto);
            if let Some(IpAddr::V4(s)) = src {
                b = b.pref_source(s);
            }
            b.build()
        }
        (IpAddr::V6(d), IpAddr::V6(g), src) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(d, 128)
                .gateway(g)
                .protocol(proto);
            if let Some(IpAddr::V6(s)) = src {
                b = b.pref_source(s);
            }
            b.build()
        }
        // An IPv4 peer via an IPv6 gateway (RFC 5549 style); the reverse cannot be routed.
        (IpAddr::V4(d), IpAddr::V6(g), _) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(d, 32)
            .via(g)
            .protocol(proto)
            .build(),
        (IpAddr::V6(_), IpAddr::V4(_), _) => return None,
    })
}

fn route_error(
    action: &'static str,
    r: &vipd_providers::PeerRoute,
    source: rtnetlink::Error,
) -> NetlinkError {
    NetlinkError::Request {
        action,
        ip: r.destination.to_string(),
        ifname: format!("via {}", r.gateway),
        source: Box::new(source),
    }
}

/// Removes every address vipd marked (`IFA_PROTO` 118) on any interface: what an earlier vipd
/// in ARP mode left behind (a crash skips its cleanup). A node that is not elected must not
/// answer for a VIP. Returns how many were removed.
pub async fn remove_all_marked() -> Result<usize, NetlinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
    tokio::spawn(conn);
    let msgs: Vec<AddressMessage> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|source| NetlinkError::Request {
            action: "list",
            ip: "addresses".into(),
            ifname: "any interface".into(),
            source: Box::new(source),
        })?;
    let mut removed = 0;
    for msg in msgs {
        let marked = msg
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Protocol(p) if u8::from(*p) == ADDRESS_PROTO));
        if !marked {
            continue;
        }
        let ip = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        let index = msg.header.index;
        match handle.address().del(msg).execute().await {
            Ok(()) => {
                removed += 1;
                info!(ip = ?ip, index, "removed a VIP address an earlier vipd left");
            }
            Err(e) => {
                warn!(ip = ?ip, index, "cannot remove a VIP address an earlier vipd left: {e}")
            }
        }
    }
    Ok(removed)
}

//! [I/O] The VIP routes in one kernel routing table, by rtnetlink. At start the routes an
//! earlier vipd left (its protocol number in its table, [`super::route::ours`]) are adopted;
//! [`KernelTable::sync`] then keeps the table's vipd routes equal to the wanted set, route by
//! route, so one that fails is reported and tried again at the next sync while the others stand.

use super::route::{self, TableSpec};
use crate::netlink::NetlinkError;
use futures::TryStreamExt;
use netlink_packet_route::route::{RouteMessage, RouteScope, RouteType};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub struct KernelTable {
    handle: Handle,
    ifname: String,
    index: u32,
    spec: TableSpec,
    /// The VIPs that have a vipd route in the table now.
    installed: BTreeSet<IpAddr>,
    /// Of those, the ones whose route is not the one vipd would make now (another interface or
    /// type: an earlier vipd's settings); replaced when wanted.
    mismatched: BTreeSet<IpAddr>,
    /// When `installed` was last read from the kernel.
    listed_at: Instant,
}

/// How often [`KernelTable::sync`] reads the table again, so a vipd route someone else deleted
/// (`ip route flush`, an interface that went away and came back) is put back.
pub const RELIST: Duration = Duration::from_secs(10);

impl KernelTable {
    /// Opens netlink, finds `ifname` (the routes' interface) and adopts what an earlier vipd
    /// left in the table.
    pub async fn open(ifname: &str, spec: TableSpec) -> Result<KernelTable, NetlinkError> {
        let (handle, link) = crate::netlink::open_link(ifname).await?;
        let mut table = KernelTable {
            handle,
            ifname: ifname.to_owned(),
            index: link.header.index,
            spec,
            installed: BTreeSet::new(),
            mismatched: BTreeSet::new(),
            listed_at: Instant::now(),
        };
        (table.installed, table.mismatched) = table.listed().await?;
        if !table.installed.is_empty() {
            info!(
                table = spec.table,
                protocol = spec.protocol,
                routes = table.installed.len(),
                "adopted the VIP routes an earlier vipd left in the routing table"
            );
        }
        Ok(table)
    }

    /// The VIPs routed in the table now (as far as vipd's own requests tell).
    pub fn installed(&self) -> &BTreeSet<IpAddr> {
        &self.installed
    }

    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    /// Makes vipd's routes in the table exactly `wanted`: adds first, then removes. Errors are
    /// per route; a route that could not be added or removed is tried again next time.
    pub async fn sync(&mut self, wanted: &BTreeSet<IpAddr>) -> Vec<NetlinkError> {
        let mut errors = Vec::new();
        if self.listed_at.elapsed() >= RELIST {
            // The interface may have been made again (a new index) since the last read.
            if let Some(index) = crate::sys::interface_index(&self.ifname) {
                self.index = index;
            }
            match self.listed().await {
                Ok((now, mismatched)) => {
                    for gone in self.installed.difference(&now) {
                        warn!(vip = %gone, table = self.spec.table, "a VIP route vipd added is gone from the table (removed by someone else?): adding it again");
                    }
                    self.installed = now;
                    self.mismatched = mismatched;
                }
                Err(e) => errors.push(e),
            }
            self.listed_at = Instant::now();
        }
        let to_add: Vec<IpAddr> = wanted
            .iter()
            .filter(|v| !self.installed.contains(v) || self.mismatched.contains(v))
            .copied()
            .collect();
        for vip in to_add {
            let msg = route::message(vip, self.index, &self.spec);
            // A route of vipd's (an earlier vipd's, with other settings) is replaced; any other
            // route to the VIP in the table is someone else's and makes the add fail (EEXIST).
            let request = self.handle.route().add(msg);
            let result = if self.mismatched.contains(&vip) {
                request.replace().execute().await
            } else {
                request.execute().await
            };
            match result {
                Ok(()) => {
                    self.installed.insert(vip);
                    self.mismatched.remove(&vip);
                }
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {
                    errors.push(NetlinkError::Foreign {
                        what: format!("a route to {vip} in table {}", self.spec.table),
                    });
                }
                Err(e) => errors.push(self.error("add route to", vip, e)),
            }
        }
        let stale: Vec<IpAddr> = self.installed.difference(wanted).copied().collect();
        for vip in stale {
            match self.remove(vip).await {
                Ok(()) => {
                    self.installed.remove(&vip);
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Removes every vipd route from the table (a shutdown); how many went.
    pub async fn clear(&mut self) -> usize {
        let n = self.installed.len();
        for e in self.sync(&BTreeSet::new()).await {
            warn!("{e}");
        }
        n.saturating_sub(self.installed.len())
    }

    async fn remove(&self, vip: IpAddr) -> Result<(), NetlinkError> {
        // The route as the table holds it may have another interface (an earlier vipd's): the
        // delete names only what identifies it, destination, table and protocol.
        let mut msg = route::message(vip, self.index, &self.spec);
        msg.attributes
            .retain(|a| !matches!(a, netlink_packet_route::route::RouteAttribute::Oif(_)));
        // The kernel deletes only a route of the scope and type asked for, unless the request
        // leaves them open (RT_SCOPE_NOWHERE, RTN_UNSPEC), as `ip route del` does.
        msg.header.scope = RouteScope::NoWhere;
        msg.header.kind = RouteType::Unspec;
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            // Already gone (someone else removed it): that is what was wanted.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
            Err(e) => Err(self.error("remove route to", vip, e)),
        }
    }

    /// The VIPs of vipd's routes in the table, read from the kernel, and those of them whose
    /// route is not the one vipd would make now.
    pub async fn listed(&self) -> Result<(BTreeSet<IpAddr>, BTreeSet<IpAddr>), NetlinkError> {
        let mut found = BTreeSet::new();
        let mut mismatched = BTreeSet::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(|source| NetlinkError::Request {
                    action: "list",
                    ip: format!("routes of table {}", self.spec.table),
                    ifname: self.ifname.clone(),
                    source: Box::new(source),
                })?;
            for r in &routes {
                if let Some(vip) = route::ours(r, &self.spec) {
                    found.insert(vip);
                    if !route::as_made(r, self.index, &self.spec) {
                        mismatched.insert(vip);
                    }
                }
            }
        }
        Ok((found, mismatched))
    }

    fn error(&self, action: &'static str, vip: IpAddr, source: rtnetlink::Error) -> NetlinkError {
        NetlinkError::Request {
            action,
            ip: vip.to_string(),
            ifname: format!("{} (table {})", self.ifname, self.spec.table),
            source: Box::new(source),
        }
    }
}

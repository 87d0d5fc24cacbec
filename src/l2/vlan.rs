//! [I/O] VLAN sub-interfaces for Services (`kube-vip.io/serviceVLAN: eth1.300`): created on
//! the parent (802.1Q, up) when a Service needs one, marked as vipd's by their alias, and
//! deleted when no Service needs them any more, at shutdown, and at start for those an earlier
//! vipd left. A link of that name vipd did not make is used as it is when it is the right VLAN
//! and never touched otherwise.

use crate::model::Vlan;
use futures::TryStreamExt;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVlan, LinkAttribute, LinkInfo};
use rtnetlink::{Handle, LinkUnspec, LinkVlan};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{info, warn};

/// The alias (`ip link` shows it) that marks a VLAN as vipd's.
pub const ALIAS: &str = "vipd: VLAN for Service VIPs";

#[derive(Debug, thiserror::Error)]
pub enum VlanError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("VLAN {vlan}: its parent interface {parent:?} does not exist on this node")]
    NoParent { vlan: String, parent: String },
    #[error("VLAN {vlan}: an interface of that name exists and is not VLAN {tag} on {parent}: not touching it")]
    NotThatVlan {
        vlan: String,
        parent: String,
        tag: u16,
    },
    #[error("{action} VLAN {vlan}: {source}")]
    Request {
        action: &'static str,
        vlan: String,
        source: Box<rtnetlink::Error>,
    },
}

/// The VLANs vipd made on this node.
pub struct Vlans {
    handle: Handle,
    /// By name, the index of each VLAN vipd made (or adopted from an earlier vipd).
    made: BTreeMap<String, u32>,
}

impl Vlans {
    /// Opens netlink and adopts the VLANs an earlier vipd left (by their alias).
    pub async fn open() -> Result<Vlans, VlanError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(VlanError::Socket)?;
        tokio::spawn(conn);
        let mut vlans = Vlans {
            handle,
            made: BTreeMap::new(),
        };
        for msg in vlans.all_links().await? {
            if alias(&msg) == Some(ALIAS) {
                if let Some(name) = name(&msg) {
                    vlans.made.insert(name, msg.header.index);
                }
            }
        }
        if !vlans.made.is_empty() {
            info!(vlans = ?vlans.made.keys().collect::<Vec<_>>(), "adopted the VLAN interfaces an earlier vipd made");
        }
        Ok(vlans)
    }

    /// Makes sure every wanted VLAN exists: creates what is missing. Returns the names of the
    /// VLANs that are in place and are what they should be (VLAN `tag` on `parent`), and the
    /// errors of the others. One read of the links per call: it runs at every plan.
    pub async fn ensure(&mut self, wanted: &BTreeSet<Vlan>) -> (BTreeSet<String>, Vec<VlanError>) {
        let mut verified = BTreeSet::new();
        let links = match self.all_links().await {
            Ok(l) => l,
            Err(e) => return (verified, vec![e]),
        };
        let by_name = |n: &str| links.iter().find(|m| name(m).as_deref() == Some(n));
        let mut errors = Vec::new();
        for vlan in wanted {
            let vlan_name = vlan.name();
            let parent_index = by_name(&vlan.parent).map(|m| m.header.index);
            if let Some(existing) = by_name(&vlan_name) {
                if parent_index.is_none()
                    || vlan_of(existing) != Some((parent_index.unwrap_or(0), vlan.tag))
                {
                    errors.push(VlanError::NotThatVlan {
                        vlan: vlan_name,
                        parent: vlan.parent.clone(),
                        tag: vlan.tag,
                    });
                } else {
                    verified.insert(vlan_name);
                }
                continue;
            }
            let Some(parent_index) = parent_index else {
                errors.push(VlanError::NoParent {
                    vlan: vlan_name,
                    parent: vlan.parent.clone(),
                });
                continue;
            };
            match self.create(vlan, &vlan_name, parent_index).await {
                Ok(()) => {
                    verified.insert(vlan_name);
                }
                Err(e) => errors.push(e),
            }
        }
        (verified, errors)
    }

    async fn create(
        &mut self,
        vlan: &Vlan,
        name: &str,
        parent_index: u32,
    ) -> Result<(), VlanError> {
        self.handle
            .link()
            .add(LinkVlan::new(name, parent_index, vlan.tag).up().build())
            .execute()
            .await
            .map_err(|e| request_error("create", name, e))?;
        let index = self
            .all_links()
            .await?
            .iter()
            .find(|m| self::name(m).as_deref() == Some(name))
            .map(|m| m.header.index)
            .ok_or_else(|| request_error("find the new", name, rtnetlink::Error::RequestFailed))?;
        // Unmarked, it would not be found as vipd's again: deleted rather than leaked.
        if let Err(e) = self
            .handle
            .link()
            .set(LinkUnspec::new_with_index(index).alias(ALIAS).build())
            .execute()
            .await
        {
            let _ = self.handle.link().del(index).execute().await;
            return Err(request_error("mark", name, e));
        }
        self.made.insert(name.to_owned(), index);
        info!(vlan = %name, parent = %vlan.parent, tag = vlan.tag, "VLAN interface created");
        Ok(())
    }

    /// Deletes the VLANs vipd made that no Service wants. One that cannot be deleted is kept on
    /// the list and tried again next time.
    pub async fn remove_unwanted(&mut self, wanted: &BTreeSet<Vlan>) -> Vec<VlanError> {
        let keep: BTreeSet<String> = wanted.iter().map(Vlan::name).collect();
        let stale: Vec<(String, u32)> = self
            .made
            .iter()
            .filter(|(n, _)| !keep.contains(*n))
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        if stale.is_empty() {
            return Vec::new();
        }
        let links = match self.all_links().await {
            Ok(l) => l,
            Err(e) => return vec![e],
        };
        let mut errors = Vec::new();
        for (vlan_name, index) in stale {
            // Only the link still carrying our mark: the index may have been reused.
            let still_ours = links.iter().any(|m| {
                m.header.index == index
                    && name(m).as_deref() == Some(vlan_name.as_str())
                    && alias(m) == Some(ALIAS)
            });
            if still_ours {
                if let Err(e) = self.handle.link().del(index).execute().await {
                    errors.push(request_error("delete", &vlan_name, e));
                    continue;
                }
                info!(vlan = %vlan_name, "VLAN interface deleted: no Service needs it");
            }
            self.made.remove(&vlan_name);
        }
        errors
    }

    /// Deletes every VLAN vipd made (a shutdown).
    pub async fn remove_all(&mut self) {
        for e in self.remove_unwanted(&BTreeSet::new()).await {
            warn!("shutdown: {e}");
        }
    }

    async fn all_links(&self) -> Result<Vec<LinkMessage>, VlanError> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| request_error("list the links for", "vipd's", e))
    }
}

fn name(msg: &LinkMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn alias(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(a) => Some(a.as_str()),
        _ => None,
    })
}

/// The parent index and tag of a VLAN link; `None` for any other kind of link.
fn vlan_of(msg: &LinkMessage) -> Option<(u32, u16)> {
    let infos = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(i) => Some(i),
        _ => None,
    })?;
    if !infos
        .iter()
        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vlan)))
    {
        return None;
    }
    let tag = infos.iter().find_map(|i| match i {
        LinkInfo::Data(InfoData::Vlan(v)) => v.iter().find_map(|v| match v {
            InfoVlan::Id(id) => Some(*id),
            _ => None,
        }),
        _ => None,
    })?;
    let parent = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    })?;
    Some((parent, tag))
}

fn request_error(action: &'static str, vlan: &str, e: rtnetlink::Error) -> VlanError {
    VlanError::Request {
        action,
        vlan: vlan.to_owned(),
        source: Box::new(e),
    }
}

//! [I/O] Small waits the owner loops select on.

/// Completes when `notify` is notified — a DHCP lease bound, moved or lost, UPnP's external
/// address or mapped Services changed — and never when there is nothing to notify.
pub async fn notified(notify: Option<&tokio::sync::Notify>) {
    match notify {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

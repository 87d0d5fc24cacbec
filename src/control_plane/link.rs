//! [I/O] Whether the interface the control-plane VIP sits on (ARP mode) is up, and a wake-up
//! when that changes. A node whose LAN link is down cannot answer for the VIP, yet may still
//! renew the Lease over another path (a second NIC, a management network): it must stand down
//! at once, not hold the VIP dark until someone notices.
//!
//! Polled from sysfs (a few bytes every 200 ms) rather than by an rtnetlink subscription: it
//! cannot miss an event or fall behind, and it needs no socket per interface.

use std::time::Duration;
use tokio::sync::watch;

/// How often the state is read: a fraction of the failover budget (lease duration + 1 s).
const POLL: Duration = Duration::from_millis(200);

/// An interface's operational state, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Up,
    /// Down, no carrier, or not present: why, for the log and `vipd status`.
    Down(String),
}

/// [pure] The state from sysfs's `operstate` (RFC 2863's names). `unknown` is up: `lo`,
/// dummies and some drivers never report more, and they carry traffic.
pub fn from_operstate(ifname: &str, operstate: Option<&str>) -> LinkState {
    match operstate.map(str::trim) {
        Some("up" | "unknown") => LinkState::Up,
        Some(other) => LinkState::Down(format!("interface {ifname} is {other}")),
        None => LinkState::Down(format!("interface {ifname} does not exist")),
    }
}

/// Reads `ifname`'s state now.
pub fn read(ifname: &str) -> LinkState {
    if ifname.is_empty() || ifname.contains('/') || ifname.starts_with('.') {
        return from_operstate(ifname, None);
    }
    let path = std::path::Path::new("/sys/class/net")
        .join(ifname)
        .join("operstate");
    from_operstate(ifname, std::fs::read_to_string(path).ok().as_deref())
}

/// Watches the state of the interfaces it is told to, completing [`LinkWatch::changed`] when
/// one of them goes up or down.
pub struct LinkWatch {
    /// The interfaces to watch, each with the state the caller planned from.
    watched: watch::Sender<Vec<(String, LinkState)>>,
    changes: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LinkWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Default for LinkWatch {
    fn default() -> Self {
        Self::start()
    }
}

impl LinkWatch {
    pub fn start() -> LinkWatch {
        let (watched, names) = watch::channel(Vec::new());
        let (tx, changes) = watch::channel(0u64);
        let task = tokio::spawn(poll(names, tx));
        LinkWatch {
            watched,
            changes,
            task,
        }
    }

    /// Watches these interfaces from now on, against the states the caller planned from (a
    /// change between its read and the next poll is not missed).
    pub fn watch(&self, planned: Vec<(String, LinkState)>) {
        self.watched.send_if_modified(|w| {
            let changed = *w != planned;
            *w = planned;
            changed
        });
    }

    /// Completes when a watched interface changed state; cancel-safe.
    pub async fn changed(&mut self) {
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn poll(mut planned: watch::Receiver<Vec<(String, LinkState)>>, changes: watch::Sender<u64>) {
    let mut last: Vec<(String, LinkState)> = Vec::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if planned.has_changed().unwrap_or(false) {
            last = planned.borrow_and_update().clone();
        }
        let now: Vec<(String, LinkState)> =
            last.iter().map(|(n, _)| (n.clone(), read(n))).collect();
        if now != last {
            changes.send_modify(|n| *n += 1);
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_and_unknown_carry_traffic_everything_else_is_down_with_its_name() {
        assert_eq!(from_operstate("lan0", Some("up\n")), LinkState::Up);
        assert_eq!(from_operstate("lo", Some("unknown\n")), LinkState::Up);
        assert_eq!(
            from_operstate("lan0", Some("down\n")),
            LinkState::Down("interface lan0 is down".into())
        );
        assert_eq!(
            from_operstate("lan0", Some("lowerlayerdown")),
            LinkState::Down("interface lan0 is lowerlayerdown".into())
        );
        assert_eq!(
            from_operstate("eth9", None),
            LinkState::Down("interface eth9 does not exist".into())
        );
    }

    #[test]
    fn loopback_reads_as_up_and_a_made_up_name_as_missing() {
        assert_eq!(read("lo"), LinkState::Up);
        assert!(matches!(read("no-such-if0"), LinkState::Down(_)));
        assert!(matches!(read("../lo"), LinkState::Down(_)));
    }
}

//! [I/O] A drain's clock and the operator's say in it, shared by BGP mode and static VIPs.
//! A node is leaving when its Node says so ([`crate::plan::shutdown::node_leaving`]) or when an
//! operator sends vipd SIGUSR1 (SIGUSR2 takes that back): its routes then carry RFC 8326's
//! GRACEFUL_SHUTDOWN, and once `vipd_bgp_drain_time` has passed they are withdrawn
//! ([`crate::plan::shutdown::drain`]).

use super::announcer::Announcer;
use crate::plan::shutdown::{self, Drain, BY_OPERATOR};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::info;

pub struct Drainer {
    drain_time: Option<Duration>,
    drain_signal: Option<Signal>,
    undrain_signal: Option<Signal>,
    /// SIGUSR1 came last (not SIGUSR2).
    by_operator: bool,
    /// Since when the node has been leaving.
    since: Option<Instant>,
    /// When the drain time of a leaving node runs out.
    deadline: Option<Instant>,
    withdrawn: bool,
}

impl Drainer {
    pub fn new(drain_time: Option<Duration>) -> Drainer {
        Drainer {
            drain_time,
            drain_signal: None,
            undrain_signal: None,
            by_operator: false,
            since: None,
            deadline: None,
            withdrawn: false,
        }
    }

    /// Installs the handlers of SIGUSR1 and SIGUSR2 (before them, either would end vipd).
    pub fn listen(&mut self) -> std::io::Result<()> {
        self.drain_signal = Some(signal(SignalKind::user_defined1())?);
        self.undrain_signal = Some(signal(SignalKind::user_defined2())?);
        Ok(())
    }

    /// Whether an operator drained vipd (SIGUSR1).
    pub fn by_operator(&self) -> bool {
        self.by_operator
    }

    /// Waits for an operator's signal or for the drain time to run out; whether the drain
    /// changed.
    pub async fn changed(&mut self) -> bool {
        let deadline = self.deadline;
        let (drain, undrain) = (&mut self.drain_signal, &mut self.undrain_signal);
        let on = tokio::select! {
            Some(()) = recv(drain) => true,
            Some(()) = recv(undrain) => false,
            () = sleep_until(deadline) => return true,
        };
        let changed = on != self.by_operator;
        self.by_operator = on;
        info!(
            "{}: {}",
            if on { "SIGUSR1" } else { "SIGUSR2" },
            match (on, changed) {
                (true, true) => "draining: routes marked for graceful shutdown",
                (false, true) => "drain taken back",
                (true, false) => "already draining",
                (false, false) => "not draining",
            }
        );
        changed
    }

    /// The drain now, with `node_leaving` the Node's reason (if any): marks the routes on
    /// `announcer` while leaving, and says so when that changes.
    pub fn update(&mut self, node_leaving: Option<String>, announcer: &mut Announcer) -> Drain {
        let leaving = node_leaving.or_else(|| self.by_operator.then(|| BY_OPERATOR.to_owned()));
        let now = Instant::now();
        self.since = leaving.as_ref().map(|_| self.since.unwrap_or(now));
        let drain = shutdown::drain(leaving, self.since, self.drain_time, now);
        if announcer.set_graceful_shutdown(drain != Drain::Serving) {
            match &drain {
                Drain::Marked { why, until } => info!(
                    "graceful shutdown (RFC 8326): every route now carries 65535:0 because {why}; {}",
                    match until {
                        Some(_) => format!(
                            "withdrawn after vipd_bgp_drain_time ({}s)",
                            self.drain_time.unwrap_or_default().as_secs()
                        ),
                        None => "withdrawn when vipd stops (vipd_bgp_drain_time=0)".into(),
                    }
                ),
                _ => info!("graceful shutdown over: routes announced as usual again"),
            }
        }
        self.deadline = match &drain {
            Drain::Marked { until, .. } => *until,
            _ => None,
        };
        let withdrawn = matches!(drain, Drain::Withdrawn { .. });
        if withdrawn && !self.withdrawn {
            if let Drain::Withdrawn { why } = &drain {
                info!("vipd_bgp_drain_time is over and {why}: withdrawing every route");
            }
        }
        self.withdrawn = withdrawn;
        drain
    }
}

async fn recv(signal: &mut Option<Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

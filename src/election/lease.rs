//! [I/O] One task per Lease runs an [`Elector`]: reads the Lease, writes what the elector asks
//! (create, or replace guarded by the resourceVersion read), and reports leadership changes to
//! the owner loop. Every API call is bounded by the renew deadline, so a hung API server cannot
//! hold a decision back; the fence itself does not depend on this task at all (the owner loop
//! drops the VIP at [`Leadership::Leading`]'s `until` on its own).

pub use crate::election::LeaseKey;
use crate::election::{
    Elector, LeaseWrite, Observed, Output, StopReason, Timing, WriteKind, Written,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// Leading until `until` unless extended by another `Leading`.
    Leading {
        until: tokio::time::Instant,
    },
    NotLeading(StopReason),
    /// Reading (once per failure streak) or writing the Lease failed, with a short reason
    /// (`read_failed`, `read_timeout`, `write_failed`, `write_timeout`). Leadership is as it
    /// was: a leader that cannot renew still ends at its fence deadline.
    Failed(&'static str),
}

/// A running election for one Lease.
pub struct Election {
    eligible: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Election {
    /// Starts standing for `key` as `identity`. `held` counts the Leases this node leads (for
    /// the spread delay); leadership changes go to `events`.
    pub fn start(
        client: Client,
        key: LeaseKey,
        identity: String,
        timing: Timing,
        eligible: bool,
        held: Arc<AtomicUsize>,
        events: mpsc::UnboundedSender<(LeaseKey, Leadership)>,
    ) -> Election {
        let (eligible_tx, eligible_rx) = watch::channel(eligible);
        let (stop_tx, stop_rx) = watch::channel(false);
        let api = Api::namespaced(client, &key.namespace);
        let elector = Elector::new(identity, timing, eligible).with_stagger_for(&key.to_string());
        let driver = Driver {
            api,
            key,
            elector,
            timing,
            held,
            leading: false,
            events,
            last: None,
            failing: false,
        };
        Election {
            eligible: eligible_tx,
            stop: stop_tx,
            task: tokio::spawn(driver.run(eligible_rx, stop_rx)),
        }
    }

    pub fn set_eligible(&self, eligible: bool) {
        self.eligible
            .send_if_modified(|e| std::mem::replace(e, eligible) != eligible);
    }

    /// Stops standing: releases the Lease if held (the caller has already dropped what it
    /// announced under it), waiting at most `deadline`.
    /// Ends the election task without a word to the API server: the Lease stays held, for the
    /// next process of this node (the same holder identity) to renew. A restart's way out.
    pub fn abandon(self) {
        self.task.abort();
    }

    pub async fn stop(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(deadline, self.task).await.is_err() {
            abort.abort();
        }
    }
}

struct Driver {
    api: Api<Lease>,
    key: LeaseKey,
    elector: Elector,
    timing: Timing,
    held: Arc<AtomicUsize>,
    /// Whether `held` counts this Lease now.
    leading: bool,
    events: mpsc::UnboundedSender<(LeaseKey, Leadership)>,
    /// The Lease as last read or written (its other fields are kept on replace).
    last: Option<Lease>,
    /// Logging a failure streak once.
    failing: bool,
}

impl Driver {
    async fn run(mut self, mut eligible: watch::Receiver<bool>, mut stop: watch::Receiver<bool>) {
        let mut stopping = false;
        loop {
            let held = self.others_held();
            let (api, name) = (self.api.clone(), self.key.name.clone());
            let outs = match self.call(async move { api.get_opt(&name).await }).await {
                Some(lease) => {
                    let observed = lease.as_ref().map(observed);
                    self.last = lease;
                    self.elector.observe(observed, Instant::now(), held)
                }
                None => self.elector.tick(Instant::now()),
            };
            self.carry_out(outs).await;
            if stopping {
                return;
            }
            let next = self.elector.next_read(Instant::now(), self.others_held());
            tokio::select! {
                () = tokio::time::sleep_until(next.into()) => {}
                r = eligible.changed() => if r.is_ok() {
                    let e = *eligible.borrow_and_update();
                    let outs = self.elector.set_eligible(e, Instant::now());
                    self.carry_out(outs).await;
                },
                _ = stop.changed() => {
                    let outs = self.elector.shutdown(Instant::now());
                    self.carry_out(outs).await;
                    // One more round: read, then release if the Lease is ours.
                    stopping = true;
                }
            }
        }
    }

    fn others_held(&self) -> usize {
        self.held
            .load(Ordering::Relaxed)
            .saturating_sub(usize::from(self.leading))
    }

    async fn carry_out(&mut self, outs: Vec<Output>) {
        let mut queue = std::collections::VecDeque::from(outs);
        while let Some(out) = queue.pop_front() {
            match out {
                Output::Write(w) => {
                    let sent = Instant::now();
                    let result = self.write(&w).await;
                    queue.extend(self.elector.written(w.kind, result, sent, Instant::now()));
                }
                Output::Leading { until } => {
                    if !self.leading {
                        self.leading = true;
                        self.held.fetch_add(1, Ordering::Relaxed);
                        info!(lease = %self.key, "leading");
                    }
                    let _ = self.events.send((
                        self.key.clone(),
                        Leadership::Leading {
                            until: until.into(),
                        },
                    ));
                }
                Output::NotLeading(why) => {
                    if self.leading {
                        self.leading = false;
                        self.held.fetch_sub(1, Ordering::Relaxed);
                    }
                    info!(lease = %self.key, %why, "not leading");
                    let _ = self
                        .events
                        .send((self.key.clone(), Leadership::NotLeading(why)));
                }
            }
        }
    }

    /// Runs an API call bounded by the renew deadline; `None` on error or timeout (logged once
    /// per failure streak).
    async fn call<T>(
        &mut self,
        f: impl std::future::Future<Output = kube::Result<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.timing.renew_deadline, f).await {
            Ok(Ok(v)) => {
                if self.failing {
                    info!(lease = %self.key, "the Lease can be read again");
                    self.failing = false;
                }
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string(), "read_failed");
                None
            }
            Err(_) => {
                self.failed("timed out", "read_timeout");
                None
            }
        }
    }

    fn failed(&mut self, why: &str, reason: &'static str) {
        if !self.failing {
            warn!(lease = %self.key, error = why, "cannot read the Lease; retrying (a leader stops announcing at its renew deadline)");
            self.failing = true;
            let _ = self
                .events
                .send((self.key.clone(), Leadership::Failed(reason)));
        }
    }

    async fn write(&mut self, w: &LeaseWrite) -> Written {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut lease = self.last.clone().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.key.name.clone()),
                namespace: Some(self.key.namespace.clone()),
                ..Default::default()
            },
            spec: None,
        });
        lease.metadata.resource_version = w.resource_version.clone();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = w.holder.clone();
        spec.lease_duration_seconds = Some(w.lease_duration_seconds);
        spec.lease_transitions = Some(w.transitions);
        spec.renew_time = Some(now.clone());
        if matches!(w.kind, WriteKind::Create | WriteKind::Take) {
            spec.acquire_time = Some(now);
        }
        let pp = PostParams::default();
        let call = match w.kind {
            WriteKind::Create => {
                tokio::time::timeout(self.timing.renew_deadline, self.api.create(&pp, &lease)).await
            }
            _ => {
                tokio::time::timeout(
                    self.timing.renew_deadline,
                    self.api.replace(&self.key.name, &pp, &lease),
                )
                .await
            }
        };
        match call {
            Ok(Ok(written)) => {
                let o = observed(&written);
                self.last = Some(written);
                debug!(lease = %self.key, kind = ?w.kind, "Lease written");
                Written::Ok(o)
            }
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => {
                debug!(lease = %self.key, kind = ?w.kind, "Lease changed meanwhile: {}", e.message);
                Written::Conflict
            }
            Ok(Err(e)) => {
                warn!(lease = %self.key, kind = ?w.kind, error = %e, "cannot write the Lease");
                let _ = self
                    .events
                    .send((self.key.clone(), Leadership::Failed("write_failed")));
                Written::Failed
            }
            Err(_) => {
                warn!(lease = %self.key, kind = ?w.kind, "writing the Lease timed out");
                let _ = self
                    .events
                    .send((self.key.clone(), Leadership::Failed("write_timeout")));
                Written::Failed
            }
        }
    }
}

fn observed(l: &Lease) -> Observed {
    let spec = l.spec.as_ref();
    Observed {
        resource_version: l.metadata.resource_version.clone().unwrap_or_default(),
        holder: spec.and_then(|s| s.holder_identity.clone()),
        lease_duration: spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
    }
}

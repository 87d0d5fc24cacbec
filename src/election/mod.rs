//! [pure] Leader election on one coordination.k8s.io Lease, built so that two nodes can never
//! lead at the same instant.
//!
//! The driver ([`lease`], I/O) reads the Lease, feeds it to [`Elector::observe`], carries
//! out the [`Output::Write`] that comes back (every replace guarded by the resourceVersion that
//! was read) and reports the result to [`Elector::written`].
//!
//! Why it cannot split-brain:
//! - **Self-fencing.** A write that makes or keeps this node leader counts from the instant it
//!   was *sent*: leadership lasts until `sent + renew_deadline` ([`Output::Leading`]), and the
//!   consumer drops the VIP at that instant unless a later renew extended it.
//! - **Taking only what is expired by our own clock.** Another node's Lease is expired only
//!   after its resourceVersion stayed unchanged for `leaseDurationSeconds` *as measured from
//!   when we first saw that version* (as client-go does): the holder sent that write before we
//!   saw it, so its leadership ended `lease_duration - renew_deadline` before we may take. No
//!   wall-clock comparison between nodes is involved.
//! - Every replace carries the resourceVersion read, so of two racing writers one gets a
//!   conflict; a conflict while leading ends leadership at once.
//! - **Sticky**: a Lease renewed within its duration is never taken, however eligible we are.
//! - **Spread**: a free or expired Lease is taken only after `held × retry` (the number of
//!   Leases this node already leads), so the node holding fewest VIPs wins races; a Lease that
//!   does not exist yet or was released waits also a stagger in `[0, retry)` from a stable hash
//!   of (node, Lease), so at startup, when no node holds anything, different nodes win different
//!   Leases. (An expired Lease gets no stagger: a dead leader's VIPs must come back within the
//!   failover budget.)
//!
//! Time comes in as `now`; nothing here reads a clock.
//!
//! Owns Lease elections. Imports nothing of the crate but itself: the owner loop and IPAM
//! stand through it.

use std::time::{Duration, Instant};

pub mod lease;
#[cfg(test)]
mod tests;

/// A Lease's identity. Display: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `vip_leaseduration`, `vip_renewdeadline`, `vip_retryperiod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub lease_duration: Duration,
    /// Below `lease_duration`: the difference is the margin between the old leader dropping
    /// the VIP and the first instant another node may take the Lease.
    pub renew_deadline: Duration,
    /// How often the Lease is read (and renewed while leading).
    pub retry: Duration,
}

/// A Lease as read from (or returned by) the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub resource_version: String,
    /// `spec.holderIdentity`; `None` or empty: released.
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds`; `None`: ours is assumed.
    pub lease_duration: Option<Duration>,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
}

impl Observed {
    fn holder(&self) -> Option<&str> {
        self.holder.as_deref().filter(|h| !h.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// No Lease yet: create it holding it.
    Create,
    /// Ours: extend it.
    Renew,
    /// Free or expired: become its holder.
    Take,
    /// Ours, and we stop: clear the holder so another node need not wait for expiry.
    Release,
}

/// One write of the Lease. `renewTime`/`acquireTime` are filled in by the driver from the
/// wall clock (for humans; no decision here reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseWrite {
    pub kind: WriteKind,
    /// Replace only if the Lease is still at this version (`None` for a create).
    pub resource_version: Option<String>,
    /// `spec.holderIdentity` to write (`None` releases).
    pub holder: Option<String>,
    pub lease_duration_seconds: i32,
    pub transitions: i32,
}

/// The outcome of a write, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Applied; the Lease now.
    Ok(Observed),
    /// 409 Conflict (or 409 AlreadyExists on create): someone else wrote first.
    Conflict,
    /// Anything else (timeout, connection refused, 5xx): it may or may not have been applied.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// No renew succeeded within `renew_deadline`.
    RenewDeadline,
    /// Another node wrote the Lease.
    Lost,
    /// This node may no longer stand (no serving endpoint here, Service gone).
    Ineligible,
    /// vipd is shutting down.
    Shutdown,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::RenewDeadline => "no renew succeeded within the renew deadline",
            StopReason::Lost => "another node wrote the Lease",
            StopReason::Ineligible => "this node no longer stands for it",
            StopReason::Shutdown => "vipd is shutting down",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write the Lease, then call [`Elector::written`].
    Write(LeaseWrite),
    /// This node leads until `until` (exclusive), unless a later `Leading` extends it. The
    /// consumer must stop announcing at `until` on its own: the fence holds even if this
    /// machine is never called again.
    Leading { until: Instant },
    /// Stop announcing now.
    NotLeading(StopReason),
}

#[derive(Debug, Clone)]
pub struct Elector {
    identity: String,
    timing: Timing,
    eligible: bool,
    /// The Lease as last seen and when we first saw it at that resourceVersion; `None` before
    /// the first read.
    seen: Option<Seen>,
    /// The end of our leadership, while leading.
    leading_until: Option<Instant>,
    /// Since when the Lease could be acquired (absent, released, expired), and the stagger
    /// that applies: the spread delay counts from here.
    free_since: Option<(Instant, Duration)>,
    /// This node's stagger for this Lease (see the module docs).
    stagger: Duration,
}

#[derive(Debug, Clone)]
enum Seen {
    Absent,
    Lease { lease: Observed, since: Instant },
}

impl Elector {
    pub fn new(identity: impl Into<String>, timing: Timing, eligible: bool) -> Elector {
        Elector {
            identity: identity.into(),
            timing,
            eligible,
            seen: None,
            leading_until: None,
            free_since: None,
            stagger: Duration::ZERO,
        }
    }

    /// Sets the startup stagger from a stable hash of this node's identity and `lease` (e.g.
    /// `namespace/name`): the same on every run, different across nodes and Leases.
    pub fn with_stagger_for(mut self, lease: &str) -> Elector {
        // FNV-1a: stable across builds and platforms, unlike std's RandomState.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.identity.bytes().chain([b'#']).chain(lease.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.stagger = self.timing.retry.mul_f64((h % 1000) as f64 / 1000.0);
        self
    }

    pub fn is_leading(&self, now: Instant) -> bool {
        self.leading_until.is_some_and(|u| now < u)
    }

    /// The fence: ends leadership whose deadline passed.
    pub fn tick(&mut self, now: Instant) -> Vec<Output> {
        match self.leading_until {
            Some(until) if now >= until => {
                self.leading_until = None;
                vec![Output::NotLeading(StopReason::RenewDeadline)]
            }
            _ => Vec::new(),
        }
    }

    /// Whether this node stands. Ineligible while leading: stop now (the Lease is released at
    /// the next [`Elector::observe`]).
    pub fn set_eligible(&mut self, eligible: bool, now: Instant) -> Vec<Output> {
        self.eligible = eligible;
        self.stop_if_leading(!eligible, StopReason::Ineligible, now)
    }

    /// Stop standing for good: leadership ends now; the next observe releases the Lease.
    pub fn shutdown(&mut self, now: Instant) -> Vec<Output> {
        self.eligible = false;
        self.stop_if_leading(true, StopReason::Shutdown, now)
    }

    fn stop_if_leading(&mut self, stop: bool, why: StopReason, now: Instant) -> Vec<Output> {
        let mut out = self.tick(now);
        if stop && self.leading_until.take().is_some() {
            out.push(Output::NotLeading(why));
        }
        out
    }

    /// The Lease as just read (`None`: it does not exist). `held`: how many other Leases this
    /// node leads (for the spread delay).
    pub fn observe(&mut self, lease: Option<Observed>, now: Instant, held: usize) -> Vec<Output> {
        self.seen = Some(match (lease, self.seen.take()) {
            (None, _) => Seen::Absent,
            (Some(l), Some(Seen::Lease { lease, since }))
                if lease.resource_version == l.resource_version =>
            {
                Seen::Lease { lease: l, since }
            }
            (Some(l), _) => Seen::Lease {
                lease: l,
                since: now,
            },
        });
        let mut out = self.tick(now);
        out.extend(self.act(now, held));
        out
    }

    fn act(&mut self, now: Instant, held: usize) -> Vec<Output> {
        let Some(seen) = &self.seen else {
            return Vec::new();
        };
        let lease = match seen {
            Seen::Absent => {
                return if self.may_acquire(now, self.stagger, now, held) {
                    vec![self.write(WriteKind::Create, None, 0)]
                } else {
                    Vec::new()
                };
            }
            Seen::Lease { lease, since } => (lease.clone(), *since),
        };
        let (lease, since) = lease;
        match lease.holder() {
            Some(h) if h == self.identity => {
                if self.eligible {
                    self.free_since = None;
                    vec![self.write(
                        WriteKind::Renew,
                        Some(lease.resource_version),
                        lease.transitions,
                    )]
                } else {
                    let mut out = Vec::new();
                    if self.leading_until.take().is_some() {
                        out.push(Output::NotLeading(StopReason::Ineligible));
                    }
                    out.push(Output::Write(LeaseWrite {
                        kind: WriteKind::Release,
                        resource_version: Some(lease.resource_version),
                        holder: None,
                        lease_duration_seconds: self.duration_seconds(),
                        transitions: lease.transitions,
                    }));
                    out
                }
            }
            Some(_) => {
                let expires = since + lease.lease_duration.unwrap_or(self.timing.lease_duration);
                if now >= expires && self.may_acquire(expires, Duration::ZERO, now, held) {
                    vec![self.write(
                        WriteKind::Take,
                        Some(lease.resource_version),
                        lease.transitions + 1,
                    )]
                } else {
                    if now < expires {
                        self.free_since = None;
                    }
                    Vec::new()
                }
            }
            None => {
                if self.may_acquire(now, self.stagger, now, held) {
                    vec![self.write(
                        WriteKind::Take,
                        Some(lease.resource_version),
                        lease.transitions + 1,
                    )]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Eligible, and the spread delay since the Lease became free (at `free_at`, with
    /// `stagger`) has passed.
    fn may_acquire(
        &mut self,
        free_at: Instant,
        stagger: Duration,
        now: Instant,
        held: usize,
    ) -> bool {
        if !self.eligible {
            return false;
        }
        let (since, stagger) = *self.free_since.get_or_insert((free_at, stagger));
        now >= since + stagger + self.spread(held)
    }

    fn spread(&self, held: usize) -> Duration {
        self.timing.retry * u32::try_from(held).unwrap_or(u32::MAX)
    }

    fn duration_seconds(&self) -> i32 {
        // Rounded up: other nodes must never wait less than our own lease duration.
        let d = self.timing.lease_duration;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }

    fn write(&self, kind: WriteKind, rv: Option<String>, transitions: i32) -> Output {
        Output::Write(LeaseWrite {
            kind,
            resource_version: rv,
            holder: Some(self.identity.clone()),
            lease_duration_seconds: self.duration_seconds(),
            transitions,
        })
    }

    /// The result of a write sent at `sent`, known at `now`.
    pub fn written(
        &mut self,
        kind: WriteKind,
        result: Written,
        sent: Instant,
        now: Instant,
    ) -> Vec<Output> {
        let mut out = self.tick(now);
        match result {
            Written::Ok(lease) => {
                self.seen = Some(Seen::Lease { lease, since: now });
                if kind == WriteKind::Release {
                    return out;
                }
                self.free_since = None;
                let until = sent + self.timing.renew_deadline;
                if now < until && self.eligible {
                    self.leading_until = Some(until);
                    out.push(Output::Leading { until });
                } else if self.leading_until.take().is_some() {
                    out.push(Output::NotLeading(StopReason::RenewDeadline));
                }
            }
            Written::Conflict => {
                if self.leading_until.take().is_some() {
                    out.push(Output::NotLeading(StopReason::Lost));
                }
            }
            Written::Failed => {}
        }
        out
    }

    /// When the driver should read the Lease next (never later than `now + retry`): earlier
    /// when a Lease expires or the spread delay ends before then, so a dead leader is replaced
    /// as soon as its Lease may be taken.
    pub fn next_read(&self, now: Instant, held: usize) -> Instant {
        let mut next = now + self.timing.retry;
        if let Some(until) = self.leading_until {
            next = next.min(until.max(now));
        }
        if let Some(Seen::Lease { lease, since }) = &self.seen {
            if lease.holder().is_some_and(|h| h != self.identity) && self.eligible {
                let expires = *since + lease.lease_duration.unwrap_or(self.timing.lease_duration);
                if expires > now {
                    next = next.min(expires);
                }
            }
        }
        if let (Some((free, stagger)), true) = (self.free_since, self.eligible) {
            let at = free + stagger + self.spread(held);
            if at > now {
                next = next.min(at);
            }
        }
        next
    }
}

//! [pure] A token bucket per Service for Kubernetes Events, so a flapping Service cannot flood
//! the API server (metallb#2387): a burst passes, then one Event per refill period. What is
//! dropped is counted and said in the next Event that passes.

use crate::decide::ServiceKey;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Events that pass at once per Service.
pub const BURST: u32 = 10;
/// After the burst: one Event per Service per this period.
pub const REFILL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it; `suppressed` Events about this Service were dropped since the last one sent.
    Send {
        suppressed: u32,
    },
    Drop,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    /// When the next token arrives (meaningful while `tokens < burst`).
    next_token: Instant,
    suppressed: u32,
}

#[derive(Debug)]
pub struct EventLimiter {
    burst: u32,
    refill: Duration,
    buckets: HashMap<ServiceKey, Bucket>,
    checks: u32,
}

impl Default for EventLimiter {
    fn default() -> Self {
        EventLimiter::new(BURST, REFILL)
    }
}

impl EventLimiter {
    pub fn new(burst: u32, refill: Duration) -> EventLimiter {
        EventLimiter {
            burst: burst.max(1),
            refill,
            buckets: HashMap::new(),
            checks: 0,
        }
    }

    pub fn check(&mut self, key: &ServiceKey, now: Instant) -> Verdict {
        self.checks = self.checks.wrapping_add(1);
        if self.checks.is_multiple_of(1024) {
            self.prune(now);
        }
        let (burst, refill) = (self.burst, self.refill);
        let b = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            next_token: now,
            suppressed: 0,
        });
        refill_bucket(b, burst, refill, now);
        if b.tokens == 0 {
            b.suppressed += 1;
            return Verdict::Drop;
        }
        if b.tokens == burst {
            // The clock for the next token starts when the first one is spent.
            b.next_token = now + refill;
        }
        b.tokens -= 1;
        Verdict::Send {
            suppressed: std::mem::take(&mut b.suppressed),
        }
    }

    /// A full bucket with nothing suppressed is the same as no bucket: forget it, so deleted
    /// Services do not accumulate.
    fn prune(&mut self, now: Instant) {
        let (burst, refill) = (self.burst, self.refill);
        self.buckets.retain(|_, b| {
            refill_bucket(b, burst, refill, now);
            b.tokens < burst || b.suppressed > 0
        });
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

fn refill_bucket(b: &mut Bucket, burst: u32, refill: Duration, now: Instant) {
    while b.tokens < burst && now >= b.next_token {
        b.tokens += 1;
        b.next_token += refill;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_burst_passes_then_one_per_period_and_the_next_says_how_many_were_dropped() {
        let mut l = EventLimiter::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(&key("a"), t0), Verdict::Send { suppressed: 0 });
        }
        // A flapping Service: 50 more events within the first second are dropped.
        for i in 0..50 {
            assert_eq!(
                l.check(&key("a"), t0 + Duration::from_millis(i * 10)),
                Verdict::Drop
            );
        }
        // Another Service is not affected.
        assert_eq!(l.check(&key("b"), t0), Verdict::Send { suppressed: 0 });
        // One token 30 s after the first was spent.
        assert_eq!(
            l.check(&key("a"), t0 + Duration::from_secs(30)),
            Verdict::Send { suppressed: 50 }
        );
        assert_eq!(
            l.check(&key("a"), t0 + Duration::from_secs(31)),
            Verdict::Drop
        );
        assert_eq!(
            l.check(&key("a"), t0 + Duration::from_secs(60)),
            Verdict::Send { suppressed: 1 }
        );
    }

    #[test]
    fn over_an_hour_of_flapping_at_most_burst_plus_one_per_period_pass() {
        let mut l = EventLimiter::new(10, Duration::from_secs(30));
        let t0 = Instant::now();
        let mut sent = 0u32;
        let mut dropped = 0u32;
        // An event every 100 ms for an hour.
        for i in 0..36_000u64 {
            match l.check(&key("flap"), t0 + Duration::from_millis(i * 100)) {
                Verdict::Send { suppressed } => {
                    sent += 1;
                    dropped += suppressed;
                }
                Verdict::Drop => {}
            }
        }
        assert_eq!(sent, 10 + 3600 / 30 - 1, "sent {sent}");
        // Every event is either sent or counted in a later one (but the trailing drops).
        assert!(sent + dropped <= 36_000 && sent + dropped > 36_000 - 300);
    }

    #[test]
    fn quiet_services_are_forgotten() {
        let mut l = EventLimiter::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..1000 {
            l.check(&key(&format!("s{i}")), t0);
        }
        assert_eq!(l.tracked(), 1000);
        // Long after, the next 1024th check prunes the full buckets.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..24 {
            l.check(&key("s0"), later);
        }
        assert!(l.tracked() <= 1, "{}", l.tracked());
    }
}

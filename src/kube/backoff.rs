//! [pure] How long a failed watch waits before it tries again: exponential from 400 ms, doubled
//! each failure in a row, capped at 8 s, each wait drawn at random in its upper half (jitter),
//! back to the start after any success.
//!
//! kube's default (client-go's: 800 ms doubling to 30 s) is kind to a struggling API server, but
//! after a burst of errors — a restart, a few seconds of 500s — a watch can sleep up to 30 s
//! while Services and endpoints change, and the node announces what it no longer should for that
//! long (found by `tests/chaos.rs`: an endpoint move unseen for over 10 s after an API fault).
//! vipd runs three watches per node; at 8 s they cost a recovering API server at most three
//! requests per node every 4 to 8 s, spread by the jitter.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(400);
const CAP: Duration = Duration::from_secs(8);

/// The waits of one watch's failure streak.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
    rng: fastrand::Rng,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff::with_seed(fastrand::u64(..))
    }
}

impl WatchBackoff {
    /// A repeatable sequence (tests).
    pub fn with_seed(seed: u64) -> Self {
        WatchBackoff {
            next: FIRST,
            rng: fastrand::Rng::with_seed(seed),
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    /// The next wait: in `[d/2, d]` for the current step `d`; never ends (a watch always
    /// retries: giving up would leave the view stale for good).
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (d * 2).min(CAP);
        let half = d / 2;
        let jitter = half.mul_f64(self.rng.f64());
        Some(half + jitter)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn doubles_from_400_ms_to_an_8_s_cap_with_jitter_in_the_upper_half_and_resets() {
        let mut b = WatchBackoff::with_seed(7);
        let waits: Vec<Duration> = b.by_ref().take(8).collect();
        let steps = [400, 800, 1600, 3200, 6400, 8000, 8000, 8000];
        for (w, step) in waits.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(*w >= step / 2 && *w <= step, "{w:?} for step {step:?}");
        }
        b.reset();
        let first = b.next().unwrap();
        assert!(first <= FIRST, "{first:?}");
    }
}

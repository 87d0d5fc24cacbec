//! What the chaos runs (tests/chaos.rs, tests/chaos_lan.rs) share: their length and seed from
//! the environment (`CHAOS_SECONDS`, default 30, CI's short run; `CHAOS_SEED`, to replay a run),
//! the order of faults (every kind once, then at random until the time is up) and the report
//! file their one-line summaries are appended to (`CHAOS_REPORT`).

use std::time::{Duration, Instant};

pub struct Run {
    pub seconds: u64,
    pub seed: u64,
    /// Every random choice of the run comes from here, so a seed replays it.
    pub rng: fastrand::Rng,
    started: Instant,
    round: usize,
}

impl Run {
    pub fn from_env() -> Run {
        let seconds = std::env::var("CHAOS_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        Run {
            seconds,
            seed,
            rng: fastrand::Rng::with_seed(seed),
            started: Instant::now(),
            round: 0,
        }
    }

    /// Starts the clock of the faults.
    pub fn begin(&mut self) {
        self.started = Instant::now();
        self.round = 0;
    }

    /// The next fault: each of `all` once, in order, then at random; `None` once every kind
    /// has come and the time is up.
    pub fn next<F: Copy>(&mut self, all: &[F]) -> Option<F> {
        let more_time = self.started.elapsed() < Duration::from_secs(self.seconds);
        if !more_time && self.round >= all.len() {
            return None;
        }
        let fault = if self.round < all.len() {
            all[self.round]
        } else {
            all[self.rng.usize(0..all.len())]
        };
        self.round += 1;
        Some(fault)
    }

    /// Since [`Run::begin`].
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Appends `summary` to `CHAOS_REPORT`, if set.
pub fn append_report(summary: &str) {
    if let Some(path) = std::env::var_os("CHAOS_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open CHAOS_REPORT {}: {e}", path.to_string_lossy()));
        writeln!(f, "{summary}").expect("append to CHAOS_REPORT");
    }
}

/// The violations of a report, as " (a | b)", or nothing when there are none.
pub fn listed(violations: &[String]) -> String {
    if violations.is_empty() {
        String::new()
    } else {
        format!(" ({})", violations.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::Run;

    #[test]
    fn every_kind_comes_once_in_order_then_the_run_ends_when_the_time_is_up() {
        let mut run = Run::from_env();
        run.seconds = 0;
        run.begin();
        assert_eq!(run.next(&['a', 'b', 'c']), Some('a'));
        assert_eq!(run.next(&['a', 'b', 'c']), Some('b'));
        assert_eq!(run.next(&['a', 'b', 'c']), Some('c'));
        assert_eq!(run.next(&['a', 'b', 'c']), None);
    }
}

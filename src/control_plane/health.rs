//! [pure] Whether the local API server may be announced behind the control-plane VIP, from the
//! results of its health checks: not until a first check passes (a node never announces an API
//! server that is not there, during `kubeadm init` included), withdrawn after
//! `failure_threshold` checks in a row fail (kube-vip's rule, so one slow answer does not move
//! the VIP), back at the first that passes.

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `200 OK`.
    Passed,
    /// Anything else: the status, a refused connection, a TLS error, a timeout.
    Failed(String),
}

/// What changed with a check, for the log and the owner loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The first check that passed, or the first after a withdrawal: announce.
    Up,
    /// A failure below the threshold: still announced (if it was).
    Failing { consecutive: u32, why: String },
    /// The threshold is reached: withdraw.
    Down { consecutive: u32, why: String },
    /// Nothing to report (a pass while up, a failure while already down).
    None,
}

#[derive(Debug, Clone)]
pub struct Health {
    threshold: u32,
    consecutive: u32,
    up: bool,
    /// The last failure, while not up: what `vipd status` says.
    last_failure: Option<String>,
}

impl Health {
    /// `threshold` is at least 1 (the settings check it).
    pub fn new(threshold: u32) -> Health {
        Health {
            threshold: threshold.max(1),
            consecutive: 0,
            up: false,
            last_failure: Some("no health check has passed yet".into()),
        }
    }

    /// Whether the VIP may be announced for this node's API server.
    pub fn up(&self) -> bool {
        self.up
    }

    /// Why not, while not up.
    pub fn why_down(&self) -> Option<&str> {
        (!self.up).then_some(self.last_failure.as_deref().unwrap_or(""))
    }

    pub fn observe(&mut self, check: Check) -> Change {
        match check {
            Check::Passed => {
                self.consecutive = 0;
                self.last_failure = None;
                if self.up {
                    Change::None
                } else {
                    self.up = true;
                    Change::Up
                }
            }
            Check::Failed(why) => {
                self.consecutive = self.consecutive.saturating_add(1);
                if !self.up {
                    // Not announced: only the reason is kept fresh.
                    self.last_failure = Some(why);
                    return Change::None;
                }
                if self.consecutive >= self.threshold {
                    self.up = false;
                    self.last_failure = Some(why.clone());
                    Change::Down {
                        consecutive: self.consecutive,
                        why,
                    }
                } else {
                    Change::Failing {
                        consecutive: self.consecutive,
                        why,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(why: &str) -> Check {
        Check::Failed(why.into())
    }

    #[test]
    fn nothing_is_announced_before_a_first_check_passes() {
        let mut h = Health::new(3);
        assert!(!h.up());
        assert_eq!(h.why_down(), Some("no health check has passed yet"));
        assert_eq!(h.observe(fail("connection refused")), Change::None);
        assert_eq!(h.why_down(), Some("connection refused"));
        assert_eq!(h.observe(Check::Passed), Change::Up);
        assert!(h.up());
        assert_eq!(h.why_down(), None);
        assert_eq!(h.observe(Check::Passed), Change::None);
    }

    #[test]
    fn withdrawn_at_the_threshold_of_failures_in_a_row_and_back_at_the_first_pass() {
        let mut h = Health::new(3);
        h.observe(Check::Passed);
        assert_eq!(
            h.observe(fail("503")),
            Change::Failing {
                consecutive: 1,
                why: "503".into()
            }
        );
        // A pass in between starts the count again.
        assert_eq!(h.observe(Check::Passed), Change::None);
        assert_eq!(
            h.observe(fail("timeout")),
            Change::Failing {
                consecutive: 1,
                why: "timeout".into()
            }
        );
        assert_eq!(
            h.observe(fail("timeout")),
            Change::Failing {
                consecutive: 2,
                why: "timeout".into()
            }
        );
        assert!(h.up());
        assert_eq!(
            h.observe(fail("refused")),
            Change::Down {
                consecutive: 3,
                why: "refused".into()
            }
        );
        assert!(!h.up());
        assert_eq!(h.observe(fail("refused")), Change::None);
        assert_eq!(h.why_down(), Some("refused"));
        assert_eq!(h.observe(Check::Passed), Change::Up);
    }

    #[test]
    fn a_threshold_of_one_withdraws_at_the_first_failure() {
        let mut h = Health::new(1);
        h.observe(Check::Passed);
        assert_eq!(
            h.observe(fail("500")),
            Change::Down {
                consecutive: 1,
                why: "500".into()
            }
        );
    }
}

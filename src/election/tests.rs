//! Decision tables for the elector, and a simulation (proptest) of two electors sharing one
//! Lease store and one clock, with lost, late and failed writes: never two leaders at once.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn timing() -> Timing {
    Timing {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry: Duration::from_millis(500),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lease(rv: &str, holder: Option<&str>) -> Observed {
    Observed {
        resource_version: rv.into(),
        holder: holder.map(Into::into),
        lease_duration: Some(Duration::from_secs(3)),
        transitions: 0,
    }
}

/// An eligible elector on node `n1` that found no Lease at `t0` and created it at once (the
/// create answered at `t0` too): leading from `t0`.
fn created_at(t0: Instant) -> Elector {
    let mut e = Elector::new("n1", timing(), true);
    e.observe(None, t0, 0);
    e.written(
        WriteKind::Create,
        Written::Ok(lease("1", Some("n1"))),
        t0,
        t0,
    );
    e
}

fn write(kind: WriteKind, rv: Option<&str>, holder: Option<&str>, transitions: i32) -> Output {
    Output::Write(LeaseWrite {
        kind,
        resource_version: rv.map(Into::into),
        holder: holder.map(Into::into),
        lease_duration_seconds: 3,
        transitions,
    })
}

#[test]
fn an_absent_lease_is_created_and_leadership_runs_from_the_send_instant_plus_the_renew_deadline() {
    let t0 = Instant::now();
    let mut e = Elector::new("n1", timing(), true);
    assert_eq!(
        e.observe(None, t0, 0),
        [write(WriteKind::Create, None, Some("n1"), 0)]
    );
    assert_eq!(
        e.written(
            WriteKind::Create,
            Written::Ok(lease("1", Some("n1"))),
            t0,
            t0 + ms(40)
        ),
        [Output::Leading {
            until: t0 + ms(2000)
        }]
    );
    assert!(e.is_leading(t0 + ms(1999)));
    assert!(!e.is_leading(t0 + ms(2000)));
}

#[test]
fn a_leader_renews_its_lease_guarded_by_the_version_read() {
    let t0 = Instant::now();
    let mut e = created_at(t0);
    assert_eq!(
        e.observe(Some(lease("1", Some("n1"))), t0 + ms(500), 0),
        [write(WriteKind::Renew, Some("1"), Some("n1"), 0)]
    );
    assert_eq!(
        e.written(
            WriteKind::Renew,
            Written::Ok(lease("2", Some("n1"))),
            t0 + ms(500),
            t0 + ms(510)
        ),
        [Output::Leading {
            until: t0 + ms(2500)
        }]
    );
}

#[test]
fn a_leader_whose_renews_fail_fences_itself_at_the_renew_deadline() {
    let t0 = Instant::now();
    let mut e = created_at(t0);
    e.observe(Some(lease("1", Some("n1"))), t0 + ms(500), 0);
    assert_eq!(
        e.written(
            WriteKind::Renew,
            Written::Failed,
            t0 + ms(500),
            t0 + ms(900)
        ),
        []
    );
    assert_eq!(e.tick(t0 + ms(1999)), []);
    assert_eq!(
        e.tick(t0 + ms(2000)),
        [Output::NotLeading(StopReason::RenewDeadline)]
    );
    assert_eq!(e.tick(t0 + ms(2100)), []);
}

#[test]
fn a_renew_that_succeeds_only_after_the_deadline_does_not_extend_leadership() {
    let t0 = Instant::now();
    let mut e = created_at(t0);
    e.observe(Some(lease("1", Some("n1"))), t0 + ms(500), 0);
    // Sent at 0.5 s, answered at 2.6 s: it counts from 0.5 s, so it ended at 2.5 s.
    assert_eq!(
        e.written(
            WriteKind::Renew,
            Written::Ok(lease("2", Some("n1"))),
            t0 + ms(500),
            t0 + ms(2600)
        ),
        [Output::NotLeading(StopReason::RenewDeadline)]
    );
    assert!(!e.is_leading(t0 + ms(2600)));
}

#[test]
fn a_conflict_while_leading_ends_leadership_at_once() {
    let t0 = Instant::now();
    let mut e = created_at(t0);
    e.observe(Some(lease("1", Some("n1"))), t0 + ms(500), 0);
    assert_eq!(
        e.written(
            WriteKind::Renew,
            Written::Conflict,
            t0 + ms(500),
            t0 + ms(510)
        ),
        [Output::NotLeading(StopReason::Lost)]
    );
}

#[test]
fn a_healthy_holders_lease_is_never_taken_sticky() {
    let t0 = Instant::now();
    let mut e = Elector::new("n2", timing(), true);
    // The holder renews every 500 ms: each new version restarts our expiry clock.
    for i in 0..20u64 {
        let rv = i.to_string();
        assert_eq!(
            e.observe(Some(lease(&rv, Some("n1"))), t0 + ms(500 * i), 0),
            [],
            "read {i}"
        );
    }
}

#[test]
fn a_lease_unchanged_for_its_duration_by_our_clock_is_taken() {
    let t0 = Instant::now();
    let mut e = Elector::new("n2", timing(), true);
    assert_eq!(e.observe(Some(lease("7", Some("n1"))), t0, 0), []);
    assert_eq!(e.next_read(t0 + ms(2800), 0), t0 + ms(3000));
    assert_eq!(
        e.observe(Some(lease("7", Some("n1"))), t0 + ms(2999), 0),
        []
    );
    assert_eq!(
        e.observe(Some(lease("7", Some("n1"))), t0 + ms(3000), 0),
        [write(WriteKind::Take, Some("7"), Some("n2"), 1)]
    );
}

#[test]
fn an_ineligible_node_never_takes_and_an_ineligible_leader_stops_then_releases() {
    let t0 = Instant::now();
    let mut e = Elector::new("n2", timing(), false);
    assert_eq!(e.observe(None, t0, 0), []);
    assert_eq!(e.observe(Some(lease("7", None)), t0 + ms(10), 0), []);
    assert_eq!(
        e.observe(Some(lease("7", Some("n1"))), t0 + ms(9000), 0),
        []
    );

    let mut e = created_at(t0);
    assert_eq!(
        e.set_eligible(false, t0 + ms(100)),
        [Output::NotLeading(StopReason::Ineligible)]
    );
    assert_eq!(
        e.observe(Some(lease("1", Some("n1"))), t0 + ms(200), 0),
        [write(WriteKind::Release, Some("1"), None, 0)]
    );
    assert_eq!(
        e.written(
            WriteKind::Release,
            Written::Ok(lease("2", None)),
            t0 + ms(200),
            t0 + ms(210)
        ),
        []
    );
}

#[test]
fn a_released_lease_is_taken_at_once_by_a_node_holding_nothing() {
    let t0 = Instant::now();
    let mut e = Elector::new("n2", timing(), true);
    assert_eq!(
        e.observe(Some(lease("8", None)), t0, 0),
        [write(WriteKind::Take, Some("8"), Some("n2"), 1)]
    );
}

#[test]
fn spread_a_node_holding_two_leases_waits_two_retry_periods_before_taking_a_free_one() {
    let t0 = Instant::now();
    let mut e = Elector::new("n2", timing(), true);
    assert_eq!(e.observe(None, t0, 2), []);
    assert_eq!(e.next_read(t0, 2), t0 + ms(500));
    assert_eq!(e.observe(None, t0 + ms(999), 2), []);
    assert_eq!(
        e.observe(None, t0 + ms(1000), 2),
        [write(WriteKind::Create, None, Some("n2"), 0)]
    );
}

#[test]
fn spread_at_startup_a_stable_per_node_stagger_below_one_retry_period_delays_creation() {
    let t0 = Instant::now();
    let stagger = |node: &str, lease: &str| {
        let mut e = Elector::new(node, timing(), true).with_stagger_for(lease);
        assert_eq!(e.observe(None, t0, 0), []);
        e.next_read(t0, 0) - t0
    };
    let a = stagger("node0", "default/kubevip-web");
    assert_eq!(a, stagger("node0", "default/kubevip-web"), "stable");
    assert!(a < ms(500));
    let all: BTreeSet<Duration> = ["node0", "node1", "node2"]
        .iter()
        .flat_map(|n| ["default/kubevip-a", "default/kubevip-b"].map(|l| stagger(n, l)))
        .collect();
    assert!(
        all.len() >= 5,
        "staggers differ across nodes and Leases: {all:?}"
    );
    // An expired Lease is taken without stagger: the failover budget.
    let mut e = Elector::new("n2", timing(), true).with_stagger_for("default/kubevip-web");
    e.observe(Some(lease("7", Some("n1"))), t0, 0);
    assert_eq!(
        e.observe(Some(lease("7", Some("n1"))), t0 + ms(3000), 0),
        [write(WriteKind::Take, Some("7"), Some("n2"), 1)]
    );
}

#[test]
fn shutdown_stops_leading_first_and_then_releases() {
    let t0 = Instant::now();
    let mut e = created_at(t0);
    assert_eq!(
        e.shutdown(t0 + ms(100)),
        [Output::NotLeading(StopReason::Shutdown)]
    );
    assert_eq!(
        e.observe(Some(lease("1", Some("n1"))), t0 + ms(110), 0),
        [write(WriteKind::Release, Some("1"), None, 0)]
    );
}

// ---- simulation ----

/// One step a simulated elector can be in.
#[derive(Debug, Clone)]
enum Pending {
    Idle {
        wake: Instant,
    },
    Reading {
        deliver: Instant,
        snapshot: Option<Observed>,
    },
    Writing {
        write: LeaseWrite,
        sent: Instant,
        apply: Option<Instant>,
        respond: Instant,
        result: Option<Written>,
    },
}

/// Per step of each elector: a latency and whether the message is lost.
#[derive(Debug, Clone)]
struct Net {
    read_ms: u64,
    apply_ms: u64,
    respond_ms: u64,
    lost_request: bool,
    lost_response: bool,
    eligible: bool,
}

fn net() -> impl Strategy<Value = Net> {
    (
        0u64..1500,
        0u64..1200,
        0u64..1500,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(read_ms, apply_ms, respond_ms, lost_request, lost_response, eligible)| Net {
                read_ms,
                apply_ms,
                respond_ms,
                lost_request,
                lost_response,
                eligible,
            },
        )
}

struct Store {
    lease: Option<Observed>,
    version: u64,
}

impl Store {
    fn apply(&mut self, w: &LeaseWrite) -> Written {
        let current = self.lease.as_ref().map(|l| l.resource_version.clone());
        if current != w.resource_version {
            return Written::Conflict;
        }
        self.version += 1;
        let l = Observed {
            resource_version: self.version.to_string(),
            holder: w.holder.clone(),
            lease_duration: Some(Duration::from_secs(
                u64::try_from(w.lease_duration_seconds).unwrap(),
            )),
            transitions: w.transitions,
        };
        self.lease = Some(l.clone());
        Written::Ok(l)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn two_electors_on_one_lease_never_lead_at_the_same_instant(
        steps in prop::collection::vec((0usize..2, net()), 50..400)
    ) {
        let t0 = Instant::now();
        let mut store = Store { lease: None, version: 0 };
        let mut electors = [
            Elector::new("a", timing(), true).with_stagger_for("default/l"),
            Elector::new("b", timing(), true).with_stagger_for("default/l"),
        ];
        let mut pending = [Pending::Idle { wake: t0 }, Pending::Idle { wake: t0 }];
        // Leadership intervals [from, until) per elector as the consumer sees them.
        let mut intervals: [Vec<(Instant, Instant)>; 2] = [Vec::new(), Vec::new()];
        let mut leading: [Option<(Instant, Instant)>; 2] = [None, None];
        let mut nets = steps.into_iter();
        let record = |i: usize, outs: &[Output], now: Instant, leading: &mut [Option<(Instant, Instant)>; 2], intervals: &mut [Vec<(Instant, Instant)>; 2]| -> Option<LeaseWrite> {
            let mut write = None;
            for o in outs {
                match o {
                    Output::Leading { until } => {
                        let from = leading[i].map_or(now, |(f, u)| if u > now { f } else { now });
                        if let Some((f, u)) = leading[i] { if u <= now { intervals[i].push((f, u)); } }
                        leading[i] = Some((from, *until));
                    }
                    Output::NotLeading(_) => {
                        if let Some((f, u)) = leading[i].take() { intervals[i].push((f, u.min(now))); }
                    }
                    Output::Write(w) => write = Some(w.clone()),
                }
            }
            write
        };
        for _ in 0..2000 {
            // The next event of either elector.
            let due = |p: &Pending| match p {
                Pending::Idle { wake } => *wake,
                Pending::Reading { deliver, .. } => *deliver,
                Pending::Writing { apply: Some(a), result: None, .. } => *a,
                Pending::Writing { respond, .. } => *respond,
            };
            let i = if due(&pending[0]) <= due(&pending[1]) { 0 } else { 1 };
            let now = due(&pending[i]);
            let Some((_, n)) = nets.next() else { break };
            let held = 0;
            match pending[i].clone() {
                Pending::Idle { .. } => {
                    let outs = electors[i].set_eligible(n.eligible, now);
                    record(i, &outs, now, &mut leading, &mut intervals);
                    // The read happens now; its answer arrives later.
                    pending[i] = Pending::Reading { deliver: now + ms(n.read_ms), snapshot: store.lease.clone() };
                }
                Pending::Reading { snapshot, .. } => {
                    let outs = electors[i].observe(snapshot, now, held);
                    match record(i, &outs, now, &mut leading, &mut intervals) {
                        Some(write) => {
                            let apply = (!n.lost_request).then(|| now + ms(n.apply_ms));
                            let respond = apply.unwrap_or(now) + ms(n.respond_ms);
                            pending[i] = Pending::Writing { write, sent: now, apply, respond, result: None };
                        }
                        None => pending[i] = Pending::Idle { wake: electors[i].next_read(now, held) },
                    }
                }
                Pending::Writing { write, sent, apply: Some(a), respond, result: None } => {
                    let r = store.apply(&write);
                    let r = if n.lost_response { Written::Failed } else { r };
                    pending[i] = Pending::Writing { write, sent, apply: Some(a), respond, result: Some(r) };
                }
                Pending::Writing { write, sent, result, .. } => {
                    let outs = electors[i].written(write.kind, result.unwrap_or(Written::Failed), sent, now);
                    record(i, &outs, now, &mut leading, &mut intervals);
                    pending[i] = Pending::Idle { wake: electors[i].next_read(now, held) };
                }
            }
            // The consumer's own fence: leadership ends at `until` whatever the elector does.
            for (j, e) in electors.iter_mut().enumerate() {
                let outs = e.tick(now);
                record(j, &outs, now, &mut leading, &mut intervals);
            }
        }
        for (i, l) in leading.iter().enumerate() {
            if let Some(iv) = l { intervals[i].push(*iv); }
        }
        for a in &intervals[0] {
            for b in &intervals[1] {
                let overlap = a.0 < b.1 && b.0 < a.1;
                prop_assert!(!overlap, "a leads {:?}..{:?}, b leads {:?}..{:?}",
                    a.0 - t0, a.1 - t0, b.0 - t0, b.1 - t0);
            }
        }
    }
}

#[test]
fn the_simulation_does_elect_leaders_and_hand_over() {
    // Guard against a simulation that never lets anyone lead (it would trivially pass): with
    // a fast, lossless network, one elector leads soon, and after it dies the other takes over
    // once the lease expired.
    let t0 = Instant::now();
    let mut a = Elector::new("a", timing(), true);
    let mut b = Elector::new("b", timing(), true);
    let mut store = Store {
        lease: None,
        version: 0,
    };
    let outs = a.observe(store.lease.clone(), t0, 0);
    let Output::Write(w) = &outs[0] else {
        panic!("{outs:?}")
    };
    let r = store.apply(w);
    assert!(matches!(
        a.written(w.kind, r, t0, t0)[..],
        [Output::Leading { .. }]
    ));
    // b watches; a dies after one more read at 0 ms.
    assert_eq!(b.observe(store.lease.clone(), t0 + ms(10), 0), []);
    let mut t = t0 + ms(10);
    loop {
        t = b.next_read(t, 0);
        let outs = b.observe(store.lease.clone(), t, 0);
        if let [Output::Write(w)] = &outs[..] {
            assert_eq!(w.kind, WriteKind::Take);
            assert_eq!(t, t0 + ms(3010));
            let r = store.apply(w);
            assert!(matches!(
                b.written(w.kind, r, t, t)[..],
                [Output::Leading { .. }]
            ));
            break;
        }
        assert!(t < t0 + ms(4000), "b never took over");
    }
    assert!(!a.is_leading(t));
}

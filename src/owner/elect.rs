//! [I/O] The Leases the owner loop stands for, in either mode: starts and stops the elections
//! the plan's [`LeaseStep`]s ask for, and tracks which Leases this node leads, each until its
//! fence deadline (leadership ends there whatever the election task does).

use crate::election::lease::{Election, Leadership};
use crate::election::{LeaseKey, Timing};
use crate::observe::Observer;
use crate::plan::gate::LeaseStep;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;

/// How long shutdown waits for each Lease release.
const RELEASE_DEADLINE: Duration = Duration::from_secs(2);

pub struct Elect {
    client: kube::Client,
    node: String,
    timing: Timing,
    /// How many Leases this node leads (the spread delay of every election reads it).
    held: Arc<AtomicUsize>,
    /// The elections running, with whether this node is eligible in each.
    elections: BTreeMap<LeaseKey, (Election, bool)>,
    /// Leases this node leads, each until its fence deadline.
    leading: BTreeMap<LeaseKey, Instant>,
    lead_tx: mpsc::UnboundedSender<(LeaseKey, Leadership)>,
    /// `kube_vip_is_leader` per Lease.
    observer: Observer,
    /// Lease reads and writes that failed, for the per-Service election metrics.
    failures: Vec<(LeaseKey, &'static str)>,
}

impl Elect {
    /// Leadership changes of every election go to `lead_tx`; the owner loop hands them back to
    /// [`Elect::on_leadership`].
    pub fn new(
        client: kube::Client,
        node: &str,
        timing: Timing,
        lead_tx: mpsc::UnboundedSender<(LeaseKey, Leadership)>,
        observer: Observer,
    ) -> Elect {
        Elect {
            client,
            node: node.to_owned(),
            timing,
            held: Arc::new(AtomicUsize::new(0)),
            elections: BTreeMap::new(),
            leading: BTreeMap::new(),
            lead_tx,
            observer,
            failures: Vec::new(),
        }
    }

    /// Whether the set of Leases led changed (a renew only moves a deadline).
    pub fn on_leadership(&mut self, key: LeaseKey, l: Leadership) -> bool {
        match l {
            Leadership::Leading { until } => {
                let new = self.leading.insert(key.clone(), until).is_none();
                if new {
                    self.observer.set_leader(&key.name, true);
                }
                new
            }
            Leadership::NotLeading(why) => {
                let was = self.leading.remove(&key).is_some();
                if was {
                    info!(lease = %key, %why, "leadership ended: what it elects stops here");
                    self.observer.set_leader(&key.name, false);
                }
                was
            }
            Leadership::Failed(reason) => {
                self.failures.push((key, reason));
                false
            }
        }
    }

    /// The Lease reads and writes that failed since the last call.
    pub fn take_failures(&mut self) -> Vec<(LeaseKey, &'static str)> {
        std::mem::take(&mut self.failures)
    }

    /// The earliest fence deadline of the Leases led.
    pub fn fence(&self) -> Option<Instant> {
        self.leading.values().min().copied()
    }

    /// The Leases led now: those past their fence deadline are dropped first.
    pub fn led(&mut self) -> BTreeSet<LeaseKey> {
        let now = Instant::now();
        let fenced: Vec<LeaseKey> = self
            .leading
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in fenced {
            self.leading.remove(&key);
            info!(lease = %key, "leadership reached its renew deadline without a renew: what it elects stops here");
            self.observer.set_leader(&key.name, false);
        }
        self.leading.keys().cloned().collect()
    }

    /// The Leases stood for, with whether this node is eligible in each.
    pub fn stood(&self) -> BTreeMap<LeaseKey, bool> {
        self.elections
            .iter()
            .map(|(k, (_, eligible))| (k.clone(), *eligible))
            .collect()
    }

    /// Carries out one step of the plan. Called after what was served under a Lease that goes
    /// has stopped.
    pub fn apply(&mut self, step: LeaseStep) {
        match step {
            LeaseStep::Unstand(key) => {
                self.leading.remove(&key);
                if let Some((e, _)) = self.elections.remove(&key) {
                    info!(lease = %key, "no Service uses this Lease any more: releasing it");
                    tokio::spawn(e.stop(RELEASE_DEADLINE));
                }
            }
            LeaseStep::Stand { lease, eligible } => match self.elections.get_mut(&lease) {
                Some((e, was)) => {
                    e.set_eligible(eligible);
                    *was = eligible;
                }
                None => {
                    info!(%lease, eligible, "standing for election");
                    let e = Election::start(
                        self.client.clone(),
                        lease.clone(),
                        self.node.clone(),
                        self.timing,
                        eligible,
                        self.held.clone(),
                        self.lead_tx.clone(),
                    );
                    self.elections.insert(lease, (e, eligible));
                }
            },
        }
    }

    /// Releases every Lease (shutdown's last step), waiting at most two seconds for each.
    /// A restart: every election task ends and every Lease stays held for the next process.
    pub fn abandon_all(&mut self) {
        self.leading.clear();
        for (election, _) in std::mem::take(&mut self.elections).into_values() {
            election.abandon();
        }
    }

    pub async fn release_all(&mut self) {
        self.leading.clear();
        let stops: Vec<_> = std::mem::take(&mut self.elections)
            .into_values()
            .map(|(e, _)| e.stop(RELEASE_DEADLINE))
            .collect();
        futures::future::join_all(stops).await;
    }
}

//! The Lease election driver (`vipd::election::lease`) against vipd's in-process API server over
//! real HTTP, no root needed: two candidates, one leads; the leader stops (release) and the
//! other takes over at once; at no moment do both hold leadership as the owner loop sees it
//! (Leading until its fence deadline, NotLeading at once).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use fake_apiserver::ApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::mpsc;
use tokio::time::Instant;
use vipd::election::lease::{Election, Leadership, LeaseKey};
use vipd::election::Timing;

fn timing() -> Timing {
    Timing {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry: Duration::from_millis(500),
    }
}

/// Leadership per candidate as the owner loop would see it.
#[derive(Default)]
struct Seen {
    until: [Option<Instant>; 2],
}

impl Seen {
    fn apply(&mut self, who: usize, l: Leadership) {
        self.until[who] = match l {
            Leadership::Leading { until } => Some(until),
            Leadership::NotLeading(_) => None,
            // A failed read or write changes nothing; the fence ends a stale leadership.
            Leadership::Failed(_) => return,
        };
    }

    fn leading(&self, who: usize) -> bool {
        self.until[who].is_some_and(|u| Instant::now() < u)
    }
}

#[tokio::test]
async fn a_released_lease_passes_to_the_other_candidate_at_once_and_never_to_both() {
    let api = ApiServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = api.client();
    let key = LeaseKey {
        namespace: "default".into(),
        name: "kubevip-web".into(),
    };
    let (tx0, mut rx0) = mpsc::unbounded_channel();
    let (tx1, mut rx1) = mpsc::unbounded_channel();
    let start = |id: &str, tx| {
        Election::start(
            client.clone(),
            key.clone(),
            id.into(),
            timing(),
            true,
            Arc::new(AtomicUsize::new(0)),
            tx,
        )
    };
    let mut elections = [Some(start("node0", tx0)), Some(start("node1", tx1))];
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(5);
    let first = loop {
        tokio::select! {
            Some((_, l)) = rx0.recv() => seen.apply(0, l),
            Some((_, l)) = rx1.recv() => seen.apply(1, l),
            () = tokio::time::sleep_until(deadline) => panic!("nobody leads after 5 s"),
        }
        assert!(!(seen.leading(0) && seen.leading(1)), "both lead");
        if let Some(who) = (0..2).find(|w| seen.leading(*w)) {
            break who;
        }
    };
    let holder = Api::<Lease>::namespaced(client.clone(), "default")
        .get("kubevip-web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder, Some(format!("node{first}")));

    // Sticky: for two lease durations the leader keeps it and the other never leads.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        tokio::select! {
            Some((_, l)) = rx0.recv() => seen.apply(0, l),
            Some((_, l)) = rx1.recv() => seen.apply(1, l),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        assert!(seen.leading(first), "the leader keeps leading");
        assert!(!seen.leading(1 - first), "the other never leads meanwhile");
    }

    // The leader stops: it reports NotLeading, releases, and the other takes within a retry
    // period plus its stagger (each below one retry period), far below the lease duration.
    let t0 = Instant::now();
    elections[first]
        .take()
        .unwrap()
        .stop(Duration::from_secs(2))
        .await;
    let (rx_first, rx_other) = if first == 0 {
        (&mut rx0, &mut rx1)
    } else {
        (&mut rx1, &mut rx0)
    };
    while let Ok((_, l)) = rx_first.try_recv() {
        seen.apply(first, l);
    }
    assert!(!seen.leading(first), "a stopped candidate does not lead");
    let took = loop {
        tokio::select! {
            Some((_, l)) = rx_other.recv() => seen.apply(1 - first, l),
            () = tokio::time::sleep_until(t0 + Duration::from_secs(3)) => panic!("no takeover within 3 s"),
        }
        if seen.leading(1 - first) {
            break t0.elapsed();
        }
    };
    eprintln!("==== released Lease taken over in {took:?} ====");
    assert!(
        took < Duration::from_millis(1500),
        "takeover after release took {took:?}"
    );
    drop(elections);
}

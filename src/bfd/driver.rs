//! [I/O] One BFD session's task: runs a [`Session`] over its [`Link`], keeps its two timers,
//! and tells the BGP peer task when the session comes Up and when it fails. A task of its own,
//! so that a BGP write stuck on a full TCP window never delays a BFD packet (a late packet is a
//! false failure at the peer).

use crate::bfd::packet::Diag;
use crate::bfd::session::{Config, Input, Output, Report, Session, Timer};
use crate::bfd::socket::Link;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// What the BGP peer task hears from its BFD session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `after_stale`: the peer was still holding a previous process's session Up (a crash)
    /// until just now.
    Up { after_stale: bool },
    /// The session left Up; `failure` false for an AdminDown (RFC 5882 §3.2: not acted on).
    Down { diag: Diag, failure: bool },
}

/// AdminDown goes out this many times, a few milliseconds apart: one lost datagram would make
/// the peer take our restart for a path failure.
const ADMIN_DOWN_COPIES: u32 = 3;

/// The BGP peer task's end of a BFD session. Dropping it takes the session AdminDown too, but
/// without waiting for the packets to leave.
pub struct Handle {
    pub events: mpsc::UnboundedReceiver<Event>,
    pub report: watch::Receiver<Report>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Takes the session AdminDown and waits (briefly) until the peer has been told.
    pub async fn admin_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), &mut self.task).await;
    }
}

/// Starts a session (Down, sending once a second until the peer answers).
pub fn spawn(cfg: Config, multihop: bool, link: Link, local_discriminator: u32) -> Handle {
    let session = Session::new(cfg, local_discriminator, fastrand::u64(..));
    let report = Report {
        config: cfg,
        multihop,
        status: session.status(),
        failures: 0,
        discarded: 0,
        up_since: None,
    };
    let (report_tx, report_rx) = watch::channel(report);
    let (events_tx, events) = mpsc::unbounded_channel();
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(session, link, events_tx, report_tx, stop_rx));
    Handle {
        events,
        report: report_rx,
        stop: Some(stop),
        task,
    }
}

struct Runner {
    session: Session,
    link: Link,
    timers: [Option<Instant>; 2],
    events: mpsc::UnboundedSender<Event>,
    report: watch::Sender<Report>,
    send_failed: bool,
}

async fn run(
    session: Session,
    link: Link,
    events: mpsc::UnboundedSender<Event>,
    report: watch::Sender<Report>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut r = Runner {
        session,
        link,
        timers: [None; 2],
        events,
        report,
        send_failed: false,
    };
    r.step(Input::Start);
    loop {
        let deadline = r.timers.iter().flatten().min().copied();
        tokio::select! {
            biased;
            // Asked to stop, or the BGP peer task is gone: either way the peer is told.
            _ = &mut stop => {
                r.step(Input::AdminDown);
                for _ in 1..ADMIN_DOWN_COPIES {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    r.resend_admin_down();
                }
                return;
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = Instant::now();
                for t in Timer::ALL {
                    if r.timers[t as usize].is_some_and(|at| at <= now) {
                        r.timers[t as usize] = None;
                        r.step(Input::Fired(t));
                    }
                }
            }
            got = r.link.recv() => match got {
                Some(Ok(p)) => r.step(Input::Received(p)),
                Some(Err(why)) => {
                    debug!(%why, "BFD packet from the peer discarded");
                    r.report.send_modify(|rep| rep.discarded += 1);
                }
                None => return,
            },
        }
    }
}

impl Runner {
    fn step(&mut self, input: Input) {
        let now = Instant::now();
        for output in self.session.handle(input, now) {
            match output {
                Output::Send(p) => self.send(&p),
                Output::Arm(t, at) => self.timers[t as usize] = Some(at),
                Output::Disarm(t) => self.timers[t as usize] = None,
                Output::Up => {
                    info!("BFD session Up");
                    self.report.send_modify(|r| r.up_since = Some(now));
                    let _ = self.events.send(Event::Up {
                        after_stale: self.session.saw_stale_peer(),
                    });
                }
                Output::Down { diag, failure } => {
                    if failure {
                        warn!(%diag, "BFD session Down: the path to the peer failed");
                    } else {
                        info!(%diag, "BFD session Down administratively (not a failure)");
                    }
                    self.report.send_modify(|r| {
                        r.up_since = None;
                        r.failures += u64::from(failure);
                    });
                    let _ = self.events.send(Event::Down { diag, failure });
                }
                Output::Discarded(why) => {
                    debug!(%why, "BFD packet from the peer discarded");
                    self.report.send_modify(|r| r.discarded += 1);
                }
            }
        }
        let status = self.session.status();
        self.report.send_if_modified(|r| {
            let changed = r.status != status;
            r.status = status;
            changed
        });
    }

    fn resend_admin_down(&mut self) {
        let out = self
            .session
            .handle(Input::Fired(Timer::Transmit), Instant::now());
        if let Some(Output::Send(p)) = out.into_iter().next() {
            self.send(&p);
        }
    }

    fn send(&mut self, p: &crate::bfd::packet::Packet) {
        match self.link.send(p) {
            Ok(()) => self.send_failed = false,
            // Said once per outage: with the link down every packet fails the same way.
            Err(e) if !self.send_failed => {
                self.send_failed = true;
                warn!(error = %e, "cannot send BFD packets to the peer");
            }
            Err(_) => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

//! [I/O] Watch streams: newline-delimited `{"type": …, "object": …}` events, as a stream of chunks.
//!
//! From `resourceVersion` X the history after X is replayed, then live events follow; without
//! one (or "0", or with `sendInitialEvents=true`) the current objects come first as synthetic
//! ADDED events. A version older than the kept history gets one ERROR event carrying a 410
//! Expired Status and the stream ends, which is what makes kube's watcher re-list. Selectors
//! apply per event, and an object that stops matching is sent as DELETED (starts matching:
//! ADDED), as on the real server. Streaming lists (`sendInitialEvents=true`) end the initial
//! events with a BOOKMARK annotated `k8s.io/initial-events-end`.

use super::error::ApiError;
use super::resources::ResourceDef;
use super::selector::Selector;
use super::store::{Db, Event, EventType, Store};
use super::table::{self, Include};
use bytes::Bytes;
use futures::Stream;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Synthetic ADDED events for the current objects, then live events.
    Snapshot,
    /// Events after this resourceVersion.
    After(u64),
}

/// A parsed watch request.
#[derive(Debug)]
pub struct WatchSpec {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub selector: Selector,
    pub start: Start,
    /// `allowWatchBookmarks=true`
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: mark the end of the initial events with a bookmark.
    pub initial_events_end: bool,
    /// `timeoutSeconds`: end the stream (cleanly) after this long.
    pub timeout: Option<Duration>,
    /// Objects are sent as one-row Tables (kubectl `get -w`).
    pub table: Option<Include>,
}

impl WatchSpec {
    fn wants(&self, e: &Event) -> bool {
        e.resource == self.def.qualified()
            && self.namespace.as_ref().is_none_or(|ns| *ns == e.namespace)
    }

    /// How an event looks through this watch's selector (`None`: not at all).
    fn view(&self, e: &Event) -> Option<EventType> {
        if !self.wants(e) {
            return None;
        }
        let now = self.selector.matches(&e.object);
        let before = e
            .previous
            .as_ref()
            .is_some_and(|p| self.selector.matches(p));
        match (e.kind, before, now) {
            (EventType::Modified, true, true) => Some(EventType::Modified),
            (EventType::Modified, false, true) => Some(EventType::Added),
            (EventType::Modified, true, false) => Some(EventType::Deleted),
            (EventType::Modified, false, false) => None,
            (kind, _, true) => Some(kind),
            (_, _, false) => None,
        }
    }

    /// One ADDED/MODIFIED/DELETED line.
    fn event(&self, kind: EventType, obj: &Value) -> Bytes {
        match self.table {
            Some(inc) => line(
                kind.as_str(),
                &table::table(
                    self.def,
                    std::slice::from_ref(obj),
                    None,
                    SystemTime::now(),
                    inc,
                ),
            ),
            None => line(kind.as_str(), obj),
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta}),
        )
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// The state of one open watch.
struct Watch {
    store: Store,
    spec: WatchSpec,
    /// Every event up to this resourceVersion has been looked at.
    pos: u64,
    changes: tokio::sync::watch::Receiver<u64>,
    queue: VecDeque<Bytes>,
    /// No more events after the queue drains (expired).
    ended: bool,
    deadline: Option<Instant>,
    interval: Duration,
    next_bookmark: Instant,
}

impl Watch {
    /// Queues what the watch sends before any live event.
    fn open(&mut self, db: &Db) {
        match self.spec.start {
            Start::Snapshot => {
                let objs: Vec<Value> = db
                    .list(self.spec.def, self.spec.namespace.as_deref())
                    .filter(|o| self.spec.selector.matches(o))
                    .cloned()
                    .collect();
                for o in objs {
                    self.queue.push_back(self.spec.event(EventType::Added, &o));
                }
                self.pos = db.rv();
                if self.spec.initial_events_end {
                    self.queue.push_back(self.spec.bookmark(self.pos, true));
                }
            }
            Start::After(rv) => {
                self.pos = rv;
                self.catch_up(db);
            }
        }
    }

    /// Queues the events after `pos`, or an Expired error if they are gone.
    fn catch_up(&mut self, db: &Db) {
        match db.events_after(self.pos) {
            Ok(events) => {
                for e in events {
                    if let Some(kind) = self.spec.view(&e) {
                        self.queue.push_back(self.spec.event(kind, &e.object));
                    }
                }
                self.pos = self.pos.max(db.rv());
            }
            Err(e @ ApiError::Expired { .. }) => {
                self.queue.push_back(line("ERROR", &e.status()));
                self.ended = true;
            }
            Err(other) => {
                self.queue.push_back(line("ERROR", &other.status()));
                self.ended = true;
            }
        }
    }

    /// The next chunk, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.queue.pop_front() {
                return Some(b);
            }
            if self.ended {
                return None;
            }
            let (deadline, bookmark_at) = (
                self.deadline,
                self.spec.bookmarks.then_some(self.next_bookmark),
            );
            let woke = tokio::select! {
                changed = self.changes.changed() => match changed {
                    Ok(()) => Wake::Changed,
                    Err(_) => Wake::End,
                },
                () = sleep_until(bookmark_at) => Wake::Bookmark,
                () = sleep_until(deadline) => Wake::End,
            };
            match woke {
                Wake::Changed => {
                    self.changes.borrow_and_update();
                    let store = self.store.clone();
                    store.read(|db| self.catch_up(db));
                }
                Wake::Bookmark => {
                    self.next_bookmark = Instant::now() + self.interval;
                    self.queue.push_back(self.spec.bookmark(self.pos, false));
                }
                Wake::End => return None,
            }
        }
    }
}

enum Wake {
    Changed,
    Bookmark,
    End,
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Opens a watch on `store`: the chunks to send, ending at the timeout, on expiry, or never.
pub fn stream(
    store: Store,
    spec: WatchSpec,
    bookmark_interval: Duration,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let mut changes = store.subscribe();
    // Mark the current version seen before reading, so no later change is missed.
    changes.borrow_and_update();
    let now = Instant::now();
    let mut w = Watch {
        store: store.clone(),
        deadline: spec.timeout.map(|t| now + t),
        spec,
        pos: 0,
        changes,
        queue: VecDeque::new(),
        ended: false,
        interval: bookmark_interval,
        next_bookmark: now + bookmark_interval,
    };
    store.read(|db| w.open(db));
    futures::stream::unfold(w, |mut w| async move { w.next().await.map(|b| (b, w)) })
}

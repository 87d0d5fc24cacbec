//! [I/O] The data: objects by (resource, namespace, name), one global resourceVersion counter and the
//! bounded event history that watches replay from. [`Db`] is pure; [`Store`] shares it between
//! requests and wakes watches when it changes.

use super::error::ApiError;
use super::meta;
use super::resources::{self, ResourceDef};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// How many events a store keeps for watches to resume from; older resourceVersions get 410.
pub const DEFAULT_HISTORY: usize = 10_000;

/// (qualified resource, namespace or "", name)
type Key = (String, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    /// Qualified resource (`services`, `leases.coordination.k8s.io`).
    pub resource: String,
    pub namespace: String,
    /// The object after the change (for DELETED: as it was, with the deletion's resourceVersion).
    pub object: Value,
    /// The object before a MODIFIED, to tell watchers with selectors that it stopped matching.
    pub previous: Option<Value>,
}

/// The objects and their history. Every write goes through [`Db::put`] or [`Db::remove`], which
/// assign the next resourceVersion and record the event.
#[derive(Debug)]
pub struct Db {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    capacity: usize,
    /// The oldest resourceVersion a watch may start from: every event after it is in `history`.
    floor: u64,
    /// Bearer tokens minted by TokenRequests, and whose they are.
    tokens: BTreeMap<String, TokenOwner>,
}

/// The ServiceAccount a token was minted for (its UID: a token does not pass to a
/// ServiceAccount created again under the same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Db {
    pub fn new(capacity: usize) -> Db {
        Db {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            capacity: capacity.max(1),
            floor: 0,
            tokens: BTreeMap::new(),
        }
    }

    /// Mints a bearer token for `owner` (no expiry is enforced: tests outlive no token).
    pub fn issue_token(&mut self, owner: TokenOwner) -> String {
        let mut rng = fastrand::Rng::new();
        let token: String = std::iter::repeat_with(|| rng.alphanumeric())
            .take(40)
            .collect();
        let token = format!("fake-sa.{token}");
        self.tokens.insert(token.clone(), owner);
        token
    }

    pub fn token_owner(&self, token: &str) -> Option<&TokenOwner> {
        self.tokens.get(token)
    }

    /// The current (latest) resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(def.qualified(), ns.to_string(), name.to_string()))
    }

    /// The objects of one resource, in one namespace or all of them, ordered by namespace and name.
    pub fn list<'a>(
        &'a self,
        def: &ResourceDef,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let q = def.qualified();
        let start = (q.clone(), ns.unwrap_or("").to_string(), String::new());
        self.objects
            .range(start..)
            .take_while(move |((r, n, _), _)| *r == q && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
    }

    /// Stores `obj` under the next resourceVersion (which it writes into the object) and records
    /// ADDED or MODIFIED. Returns the stored object.
    pub fn put(&mut self, def: &ResourceDef, ns: &str, name: &str, mut obj: Value) -> Value {
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        let key = (def.qualified(), ns.to_string(), name.to_string());
        let previous = self.objects.insert(key, obj.clone());
        let kind = match previous {
            Some(_) => EventType::Modified,
            None => EventType::Added,
        };
        self.record(def, ns, kind, obj.clone(), previous);
        obj
    }

    /// Removes an object under the next resourceVersion and records DELETED. Returns it as
    /// deleted (with that resourceVersion).
    pub fn remove(&mut self, def: &ResourceDef, ns: &str, name: &str) -> Option<Value> {
        let key = (def.qualified(), ns.to_string(), name.to_string());
        let mut obj = self.objects.remove(&key)?;
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        self.record(def, ns, EventType::Deleted, obj.clone(), None);
        Some(obj)
    }

    fn record(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        kind: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        if self.history.len() == self.capacity {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        self.history.push_back(Arc::new(Event {
            rv: self.rv,
            kind,
            resource: def.qualified(),
            namespace: ns.to_string(),
            object,
            previous,
        }));
    }

    /// The events after resourceVersion `from`, or 410 Expired if some of them are forgotten.
    pub fn events_after(&self, from: u64) -> Result<Vec<Arc<Event>>, ApiError> {
        if from < self.floor {
            return Err(ApiError::Expired {
                requested: from,
                oldest: self.floor,
            });
        }
        // History is ordered by rv; skip what the caller has seen.
        let skip = self.history.partition_point(|e| e.rv <= from);
        Ok(self.history.iter().skip(skip).cloned().collect())
    }

    /// Forgets the history: watches from any resourceVersion before now get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

/// The shared store: cheap to clone, outlives a stopped server so that a new one can serve the
/// same data.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Shared>,
}

struct Shared {
    db: Mutex<Db>,
    /// The latest resourceVersion; watches wait on it.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Store {
        Store::new()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("resource_version", &self.read(|db| db.rv()))
            .finish()
    }
}

impl Store {
    /// A store holding only the namespaces a fresh cluster has (`default`, `kube-system`).
    pub fn new() -> Store {
        Store::with_history(DEFAULT_HISTORY)
    }

    /// As [`Store::new`], keeping the last `events` events for watches to resume from.
    pub fn with_history(events: usize) -> Store {
        let mut db = Db::new(events);
        let now = SystemTime::now();
        if let Some(def) = resources::find("", "v1", "namespaces") {
            for ns in resources::INITIAL_NAMESPACES {
                let obj = meta::initial_namespace(ns, now);
                db.put(def, "", ns, obj);
            }
        }
        let (changes, _) = tokio::sync::watch::channel(db.rv());
        Store {
            inner: Arc::new(Shared {
                db: Mutex::new(db),
                changes,
            }),
        }
    }

    /// Forget the event history: a watch or list-then-watch from any older resourceVersion now
    /// gets 410 Gone.
    pub fn compact(&self) {
        self.lock().compact();
    }

    fn lock(&self) -> MutexGuard<'_, Db> {
        // A panic while holding the lock cannot leave a Db half-written in a way later readers
        // trip over (each write is one map insert plus one push), so keep serving.
        self.inner.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn read<R>(&self, f: impl FnOnce(&Db) -> R) -> R {
        f(&self.lock())
    }

    /// Runs a write and wakes watches if it changed anything.
    pub(super) fn write<R>(&self, f: impl FnOnce(&mut Db) -> R) -> R {
        let (out, rv) = {
            let mut db = self.lock();
            let out = f(&mut db);
            (out, db.rv())
        };
        self.inner.changes.send_if_modified(|seen| {
            let changed = *seen != rv;
            *seen = rv;
            changed
        });
        out
    }

    pub(super) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> &'static ResourceDef {
        resources::find("", "v1", "services").unwrap_or_else(|| unreachable!())
    }

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}})
    }

    #[test]
    fn writes_bump_one_counter_and_record_events_in_order() {
        let mut db = Db::new(10);
        let a = db.put(svc(), "default", "a", obj("a"));
        assert_eq!(a["metadata"]["resourceVersion"], "1");
        db.put(svc(), "default", "a", obj("a"));
        let gone = db.remove(svc(), "default", "a");
        assert_eq!(
            gone.map(|g| g["metadata"]["resourceVersion"].clone()),
            Some(json!("3"))
        );
        let kinds: Vec<(u64, EventType)> = db
            .events_after(0)
            .unwrap_or_default()
            .iter()
            .map(|e| (e.rv, e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (1, EventType::Added),
                (2, EventType::Modified),
                (3, EventType::Deleted)
            ]
        );
        assert_eq!(db.events_after(2).map(|e| e.len()), Ok(1));
        assert_eq!(db.remove(svc(), "default", "a"), None);
    }

    #[test]
    fn a_full_history_forgets_the_oldest_and_expires_watches_from_before_it() {
        let mut db = Db::new(2);
        for n in ["a", "b", "c"] {
            db.put(svc(), "default", n, obj(n));
        }
        assert_eq!(
            db.events_after(0),
            Err(ApiError::Expired {
                requested: 0,
                oldest: 1
            })
        );
        assert_eq!(db.events_after(1).map(|e| e.len()), Ok(2));
    }

    #[test]
    fn compaction_expires_every_older_resource_version() {
        let mut db = Db::new(10);
        db.put(svc(), "default", "a", obj("a"));
        db.put(svc(), "default", "b", obj("b"));
        db.compact();
        assert!(db.events_after(1).is_err());
        assert_eq!(db.events_after(2).map(|e| e.len()), Ok(0));
    }

    #[test]
    fn list_is_scoped_to_resource_and_namespace() {
        let mut db = Db::new(10);
        let cm = resources::find("", "v1", "configmaps").unwrap_or_else(|| unreachable!());
        db.put(svc(), "default", "a", obj("a"));
        db.put(svc(), "other", "b", obj("b"));
        db.put(cm, "default", "c", obj("c"));
        assert_eq!(db.list(svc(), None).count(), 2);
        assert_eq!(db.list(svc(), Some("other")).count(), 1);
        assert_eq!(db.list(svc(), Some("defaul")).count(), 0);
        assert_eq!(db.list(cm, Some("default")).count(), 1);
    }
}

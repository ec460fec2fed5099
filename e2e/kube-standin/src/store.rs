//! In-memory object storage: one global, monotonically increasing resourceVersion, a map
//! per resource type, a bounded history of changes (so watches can resume from a
//! resourceVersion, and get `410 Gone` once it has been compacted away) and a broadcast
//! channel feeding live watches.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::registry::{ResourceType, builtin_types};

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change, as kept in history and sent to watchers.
#[derive(Debug)]
pub struct Change {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub kind: ChangeType,
    /// The object after the change (for DELETED: the last state, with the deletion's resourceVersion).
    pub object: Value,
    /// The object before the change, so label-selected watches can turn a
    /// MODIFIED that stops matching into DELETED (as the real watch cache does).
    pub previous: Option<Value>,
    pub rv: u64,
}

pub type TypeKey = (String, String);
/// (namespace, name); namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

/// Tunables, mostly for tests that want to provoke `410 Gone` quickly.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub history_limit: usize,
    pub bookmark_interval: std::time::Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            history_limit: 1000,
            bookmark_interval: std::time::Duration::from_secs(5),
        }
    }
}

pub struct State {
    pub rv: u64,
    pub types: BTreeMap<TypeKey, ResourceType>,
    pub objects: HashMap<TypeKey, BTreeMap<ObjKey, Value>>,
    pub history: VecDeque<Arc<Change>>,
    /// The oldest resourceVersion a watch may resume from: everything after it is in `history`.
    pub compacted_rv: u64,
    /// uids of deleted objects, so garbage collection only removes dependents of owners
    /// that really existed here (owners of kinds not served here are left alone).
    pub deleted_uids: HashSet<String>,
    history_limit: usize,
    tx: broadcast::Sender<Arc<Change>>,
}

pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Change>>,
    /// `true` while watches are held off (see [`Store::set_watch_blackout`]).
    blackout: watch::Sender<bool>,
    /// Bumped to make every open watch end (clients then re-watch from their last resourceVersion).
    disconnect: watch::Sender<u64>,
    pub config: StoreConfig,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish()
    }
}

impl Store {
    pub fn new(config: StoreConfig) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let mut types = BTreeMap::new();
        for t in builtin_types() {
            types.insert(t.key(), t);
        }
        let state = State {
            rv: 1,
            types,
            objects: HashMap::new(),
            history: VecDeque::new(),
            compacted_rv: 1,
            deleted_uids: HashSet::new(),
            history_limit: config.history_limit.max(1),
            tx: tx.clone(),
        };
        Self {
            state: Mutex::new(state),
            tx,
            blackout: watch::channel(false).0,
            disconnect: watch::channel(0).0,
            config,
        }
    }

    /// The state lock. Never held across an await.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough data for a test double.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    /// Holds new watch requests (and ends open ones) while `on`, as if the API server were
    /// unreachable; tests use it to let history move past a watcher's resourceVersion.
    pub fn set_watch_blackout(&self, on: bool) {
        self.blackout.send_replace(on);
        if on {
            self.disconnect_watches();
        }
    }

    pub fn blackout(&self) -> watch::Receiver<bool> {
        self.blackout.subscribe()
    }

    pub fn disconnect_watches(&self) {
        self.disconnect.send_modify(|n| *n += 1);
    }

    pub fn disconnects(&self) -> watch::Receiver<u64> {
        self.disconnect.subscribe()
    }

    /// Drops all history, as an etcd compaction would: any watch from an older resourceVersion gets 410.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.compacted_rv = st.rv;
    }
}

impl State {
    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .filter(|t| t.versions.iter().any(|v| v == version))
    }

    pub fn objects_of(&self, key: &TypeKey) -> Option<&BTreeMap<ObjKey, Value>> {
        self.objects.get(key)
    }

    pub fn get(&self, key: &TypeKey, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(key)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(change);
    }

    /// Stores `obj` (new or replacing), stamping a fresh resourceVersion; returns the stored object.
    pub fn put(&mut self, key: &TypeKey, obj: Value) -> Value {
        let mut obj = obj;
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let previous = self
            .objects
            .entry(key.clone())
            .or_default()
            .insert((ns.clone(), name), obj.clone());
        let kind = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.record(Change {
            group: key.0.clone(),
            plural: key.1.clone(),
            namespace: ns,
            kind,
            object: obj.clone(),
            previous,
            rv,
        });
        obj
    }

    /// Removes an object for good; returns its last state.
    pub fn remove(&mut self, key: &TypeKey, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self.objects.get_mut(key)?.remove(&(ns.to_string(), name.to_string()))?;
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            self.deleted_uids.insert(uid.to_string());
        }
        self.record(Change {
            group: key.0.clone(),
            plural: key.1.clone(),
            namespace: ns.to_string(),
            kind: ChangeType::Deleted,
            object: obj.clone(),
            previous: None,
            rv,
        });
        Some(obj)
    }

    /// History entries newer than `rv`, or `None` when some of them were compacted away.
    pub fn changes_since(&self, rv: u64) -> Option<Vec<Arc<Change>>> {
        if rv < self.compacted_rv {
            return None;
        }
        Some(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }
}

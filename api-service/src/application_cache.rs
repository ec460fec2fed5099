//! Applications read back by their owners, in memory. Reading one is the authenticated hot
//! path (verify, limit and replay in one Redis round trip, then the row); the row was a
//! PostgreSQL round trip per request. Rows are written once by the API and changed only
//! outside it, so a row trigger NOTIFYs `applications_changed` with the id on every update or
//! delete (migration 0005), and the cache drops that entry. It serves only while the change
//! feed is up (the catalogue's listener, see `catalogue.rs`); otherwise every read goes to
//! PostgreSQL, and the cache starts empty when the feed returns.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;
use uuid::Uuid;

/// The channel migration 0005's trigger notifies (payload: the application id, or empty
/// for "everything", after a TRUNCATE).
pub const CHANNEL: &str = "applications_changed";
/// Entries kept; past it the cache starts over (a bound on memory, not an eviction policy).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub struct ApplicationCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Serving: the change feed is up.
    live: bool,
    /// Bumped by every invalidation, so a read that began before one cannot store what it
    /// read (the row may have changed after it was read).
    generation: u64,
    /// Application id → (owner, JSON body).
    entries: HashMap<Uuid, (String, Bytes)>,
}

impl ApplicationCache {
    /// The cached body of `id` if `principal` owns it.
    pub fn get(&self, principal: &str, id: Uuid) -> Option<Bytes> {
        let inner = self.inner.lock().ok()?;
        let (owner, body) = inner.entries.get(&id).filter(|_| inner.live)?;
        (owner == principal).then(|| body.clone())
    }

    /// Taken before reading PostgreSQL and handed to [`Self::insert`]; `None` while not serving.
    pub fn generation(&self) -> Option<u64> {
        let inner = self.inner.lock().ok()?;
        inner.live.then_some(inner.generation)
    }

    pub fn insert(&self, principal: &str, id: Uuid, body: Bytes, read_at: u64) {
        let Ok(mut inner) = self.inner.lock() else { return };
        if !inner.live || inner.generation != read_at {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(id, (principal.to_owned(), body));
    }

    /// A notification: one application changed, or (`None`) any may have.
    pub fn invalidate(&self, id: Option<Uuid>) {
        let Ok(mut inner) = self.inner.lock() else { return };
        inner.generation += 1;
        match id {
            Some(id) => {
                inner.entries.remove(&id);
            }
            None => inner.entries.clear(),
        }
    }

    /// The change feed came up (`true`) or went down: either way nothing cached so far is
    /// trusted any more.
    pub fn set_live(&self, live: bool) {
        let Ok(mut inner) = self.inner.lock() else { return };
        inner.live = live;
        inner.generation += 1;
        inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serves_only_owners_and_only_while_live() {
        let cache = ApplicationCache::default();
        let id = Uuid::new_v4();
        assert_eq!(cache.generation(), None, "not live yet");
        cache.set_live(true);
        let g = cache.generation().unwrap();
        cache.insert("alice", id, Bytes::from_static(b"{}"), g);
        assert!(cache.get("alice", id).is_some());
        assert!(cache.get("bob", id).is_none(), "someone else's application");
        cache.set_live(false);
        assert!(cache.get("alice", id).is_none());
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_stored() {
        let cache = ApplicationCache::default();
        cache.set_live(true);
        let id = Uuid::new_v4();
        let before = cache.generation().unwrap();
        cache.invalidate(Some(id));
        cache.insert("alice", id, Bytes::from_static(b"old"), before);
        assert!(cache.get("alice", id).is_none());
        let now = cache.generation().unwrap();
        cache.insert("alice", id, Bytes::from_static(b"new"), now);
        cache.invalidate(Some(id));
        assert!(cache.get("alice", id).is_none());
    }
}

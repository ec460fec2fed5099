//! Replay protection's decisions: the marker a single-use token leaves in Redis, the verdict
//! from Redis's answer, and the per-instance `jti` memory used when Redis cannot answer
//! (same-instance replays are still caught during a failover). Every fresh `jti` is remembered
//! here as well, so a token first used while Redis was up is still refused on this instance
//! while Redis is down.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::VerifiedToken;
use crate::config::ReplayFallback;
use crate::limiter::{ReplayCheck, ReplayMark};

/// The marker lives until the token could no longer be accepted anyway: `exp` plus leeway.
/// `None` for a token without `jti` (accepted only with `--allow-tokens-without-jti`).
pub fn mark(token: &VerifiedToken, leeway: Duration, now: SystemTime) -> Option<ReplayMark> {
    let jti = token.jti.as_ref()?;
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let ttl = token
        .expires_at
        .saturating_add(leeway.as_secs())
        .saturating_sub(now)
        .max(1);
    Some(ReplayMark {
        key: format!("jwt:jti:{jti}"),
        ttl: Duration::from_secs(ttl),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    Fresh,
    Replayed,
    /// Redis could not answer and `--replay-fallback strict` says 503.
    Unavailable,
}

/// Redis decides when it answered; the per-instance cache always remembers too, and catches
/// same-instance replays that Redis cannot (down, or lost the key in a failover).
pub fn judge(
    cache: &LocalReplayCache,
    fallback: ReplayFallback,
    mark: &ReplayMark,
    redis: ReplayCheck,
    now: Instant,
) -> ReplayVerdict {
    let locally_fresh = cache.first_use(&mark.key, now + mark.ttl, now);
    match (redis, fallback) {
        (ReplayCheck::Replayed, _) => ReplayVerdict::Replayed,
        (ReplayCheck::Fresh, _) | (ReplayCheck::Unknown, ReplayFallback::Local) if locally_fresh => {
            ReplayVerdict::Fresh
        }
        (ReplayCheck::Fresh, _) | (ReplayCheck::Unknown, ReplayFallback::Local) => ReplayVerdict::Replayed,
        (ReplayCheck::Unknown, ReplayFallback::Strict) => ReplayVerdict::Unavailable,
    }
}

pub struct LocalReplayCache {
    max_entries: usize,
    seen: Mutex<Seen>,
}

/// The remembered `jti`s, by key and by expiry, so the per-request work stays O(log n) when
/// the cache is full (a full scan per request showed in the profile under load).
#[derive(Default)]
struct Seen {
    until: HashMap<Arc<str>, Instant>,
    by_expiry: BTreeSet<(Instant, Arc<str>)>,
}

impl Seen {
    fn len(&self) -> usize {
        self.until.len()
    }

    /// Forgets the entry closest to expiry.
    fn pop_first(&mut self) {
        if let Some((_, key)) = self.by_expiry.pop_first() {
            self.until.remove(&key);
        }
    }
}

impl LocalReplayCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Records `jti` until `expires`; false when it was already recorded and still live.
    pub fn first_use(&self, jti: &str, expires: Instant, now: Instant) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        if seen.until.get(jti).is_some_and(|until| *until > now) {
            return false;
        }
        while seen.by_expiry.first().is_some_and(|(until, _)| *until <= now) {
            seen.pop_first();
        }
        // Still full of live entries: forget the one closest to expiry, the least useful.
        if seen.len() >= self.max_entries {
            seen.pop_first();
        }
        let key: Arc<str> = Arc::from(jti);
        if let Some(old) = seen.until.insert(key.clone(), expires) {
            seen.by_expiry.remove(&(old, key.clone()));
        }
        seen.by_expiry.insert((expires, key));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn remembers_until_expiry_within_bounds() {
        let cache = LocalReplayCache::new(2);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        assert!(cache.first_use("a", later, now));
        assert!(!cache.first_use("a", later, now));
        assert!(cache.first_use("a", later, later), "expired entries are forgotten");
        assert!(cache.first_use("b", later + Duration::from_secs(1), now));
        assert!(cache.first_use("c", later, now));
        assert_eq!(cache.seen.lock().map(|s| s.len()).unwrap_or_default(), 2);
    }

    #[test]
    fn a_full_cache_forgets_the_entry_closest_to_expiry() {
        let cache = LocalReplayCache::new(3);
        let now = Instant::now();
        let at = |s| now + Duration::from_secs(s);
        assert!(cache.first_use("late", at(300), now));
        assert!(cache.first_use("soon", at(10), now));
        assert!(cache.first_use("mid", at(100), now));
        assert!(cache.first_use("new", at(200), now), "full: soon is dropped");
        assert!(!cache.first_use("late", at(300), now));
        assert!(!cache.first_use("mid", at(100), now));
        assert!(cache.first_use("soon", at(10), now), "forgotten");
        // Expired entries go first, before any live one.
        assert!(cache.first_use("after", at(400), at(150)));
        assert!(!cache.first_use("late", at(300), at(150)));
        let sizes = cache.seen.lock().map(|s| (s.until.len(), s.by_expiry.len()));
        assert!(matches!(sizes, Ok((a, b)) if a == b), "{sizes:?}");
    }
}

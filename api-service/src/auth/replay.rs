//! Replay protection's decisions: the marker a single-use token leaves in Redis, the verdict
//! from Redis's answer, and the per-instance `jti` memory used when Redis cannot answer
//! (same-instance replays are still caught during a failover). Every fresh `jti` is remembered
//! here as well, so a token first used while Redis was up is still refused on this instance
//! while Redis is down.

use std::collections::HashMap;
use std::sync::Mutex;
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
    seen: Mutex<HashMap<String, Instant>>,
}

impl LocalReplayCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records `jti` until `expires`; false when it was already recorded and still live.
    pub fn first_use(&self, jti: &str, expires: Instant, now: Instant) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        if seen.get(jti).is_some_and(|until| *until > now) {
            return false;
        }
        if seen.len() >= self.max_entries {
            seen.retain(|_, until| *until > now);
            // Still full of live entries: forget the one closest to expiry, the least useful.
            if seen.len() >= self.max_entries
                && let Some(victim) = seen.iter().min_by_key(|(_, until)| **until).map(|(k, _)| k.clone())
            {
                seen.remove(&victim);
            }
        }
        seen.insert(jti.to_owned(), expires);
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
}

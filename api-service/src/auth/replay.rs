//! The per-instance `jti` memory used when Redis cannot answer: same-instance replays are
//! still caught during a failover. Every fresh `jti` is remembered here as well, so a token
//! first used while Redis was up is still refused on this instance while Redis is down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

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

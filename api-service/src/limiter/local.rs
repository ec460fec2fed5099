//! The per-instance fallback limiter used while Redis is unavailable: fixed windows in a
//! bounded map, so a Redis outage neither removes limiting nor grows memory without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::policy::Policy;

pub struct LocalLimiter {
    max_keys: usize,
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

/// `Ok(())` when allowed, `Err(retry_after)` when over the limit.
pub type LocalVerdict = Result<(), Duration>;

impl LocalLimiter {
    pub fn new(max_keys: usize) -> Self {
        Self {
            max_keys,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, key: &str, policy: &Policy, now: Instant) -> LocalVerdict {
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        if windows.len() >= self.max_keys && !windows.contains_key(key) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < policy.window);
            if windows.len() >= self.max_keys {
                // Full of live windows: admit rather than evict someone's count.
                return Ok(());
            }
        }
        let (start, count) = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= policy.window {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > policy.limit {
            Err(policy.window.saturating_sub(now.duration_since(*start)))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_window_and_stays_bounded() {
        let policy = Policy {
            name: "t".into(),
            limit: 2,
            window: Duration::from_secs(10),
        };
        let local = LocalLimiter::new(2);
        let t0 = Instant::now();
        assert!(local.check("a", &policy, t0).is_ok());
        assert!(local.check("a", &policy, t0).is_ok());
        assert!(local.check("a", &policy, t0).is_err());
        assert!(local.check("a", &policy, t0 + Duration::from_secs(10)).is_ok());
        assert!(local.check("b", &policy, t0).is_ok());
        assert!(local.check("c", &policy, t0).is_ok(), "full map admits");
        assert_eq!(local.windows.lock().map(|w| w.len()).unwrap_or_default(), 2);
    }
}

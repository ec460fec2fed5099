//! When each active promotion is next due, so the controller can say how late it gets to
//! them: under load (thousands of promotions, a slow API server) evaluations queue behind
//! each other, and a platform team needs to see that before rollbacks get slow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Schedule {
    due: Mutex<HashMap<String, Instant>>,
}

impl Schedule {
    /// How late an evaluation starting at `now` is: zero when it runs early (a change to the
    /// object or what it references), `None` for a promotion with no evaluation scheduled.
    pub fn lateness(&self, key: &str, now: Instant) -> Option<Duration> {
        let due = self.due.lock().ok()?.get(key).copied()?;
        Some(now.saturating_duration_since(due))
    }

    /// The next evaluation is due at `at`.
    pub fn due_at(&self, key: &str, at: Instant) {
        if let Ok(mut due) = self.due.lock() {
            due.insert(key.to_owned(), at);
        }
    }

    /// No evaluation scheduled any more (finished, deleted).
    pub fn forget(&self, key: &str) {
        if let Ok(mut due) = self.due.lock() {
            due.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_counts_from_the_due_time_and_early_runs_are_on_time() {
        let s = Schedule::default();
        let t0 = Instant::now();
        assert_eq!(s.lateness("a/x", t0), None);
        s.due_at("a/x", t0 + Duration::from_secs(30));
        assert_eq!(s.lateness("a/x", t0 + Duration::from_secs(10)), Some(Duration::ZERO));
        assert_eq!(
            s.lateness("a/x", t0 + Duration::from_millis(30_250)),
            Some(Duration::from_millis(250))
        );
        s.forget("a/x");
        assert_eq!(s.lateness("a/x", t0 + Duration::from_secs(60)), None);
    }
}

//! Earlier scrapes per CanaryPromotion, in memory: the baselines that counter deltas are taken
//! against. Like `rate(x[W])`, a reading covers about the window `W`: the baseline is the
//! newest scrape at least `W` old (or the oldest one kept, until one is that old), so extra
//! reconciles (a Deployment changed) do not shrink the window to a few requests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::counters::{PodCounters, WindowTotals};

type Pods = BTreeMap<String, PodCounters>;

/// Bound on the scrapes kept per object, however often it is reconciled.
const MAX_KEPT: usize = 32;
/// A baseline older than this many windows is stale (judging stopped and started again).
const STALE_WINDOWS: u32 = 4;
/// Histories of objects not read for this long are dropped (deleted or finished objects).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct History {
    scrapes: VecDeque<(Instant, Pods)>,
}

impl History {
    /// The totals since the baseline (None without one), then keeps `pods` as a future baseline.
    fn record(&mut self, now: Instant, window: Duration, pods: Pods) -> Option<WindowTotals> {
        let stale = window.saturating_mul(STALE_WINDOWS);
        self.scrapes
            .retain(|(at, _)| now.saturating_duration_since(*at) <= stale);
        // Drop baselines once a newer one is at least a window old.
        while self
            .scrapes
            .get(1)
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= window)
        {
            self.scrapes.pop_front();
        }
        let totals = self.scrapes.front().map(|(_, base)| totals(base, &pods));
        self.scrapes.push_back((now, pods));
        while self.scrapes.len() > MAX_KEPT {
            self.scrapes.pop_front();
        }
        totals
    }

    fn last_at(&self) -> Option<Instant> {
        self.scrapes.back().map(|(at, _)| *at)
    }
}

/// Sums per-pod deltas. A pod without a baseline (new since then) only sets one: as in
/// Prometheus, a series' first sample says nothing about the window.
fn totals(base: &Pods, now: &Pods) -> WindowTotals {
    let mut t = WindowTotals::default();
    for (pod, counters) in now {
        if let Some(b) = base.get(pod) {
            t.add(&counters.since(b));
        }
    }
    t
}

/// The operator's scrape histories, by CanaryPromotion UID.
#[derive(Default)]
pub struct ScrapeState {
    histories: Mutex<HashMap<String, History>>,
}

impl ScrapeState {
    /// Records a scrape of `uid`'s canary pods at `now` and returns the totals over about
    /// `window`; `None` while there is no earlier scrape to compare with.
    pub fn record(&self, uid: &str, now: Instant, window: Duration, pods: Pods) -> Option<WindowTotals> {
        // A poisoned lock only means another reconcile panicked mid-update; the map is
        // still a valid cache of baselines.
        let mut map = self.histories.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|k, h| {
            k == uid
                || h.last_at()
                    .is_some_and(|at| now.saturating_duration_since(at) < FORGET_AFTER)
        });
        map.entry(uid.to_owned()).or_default().record(now, window, pods)
    }

    /// Forgets `uid` (the object is being deleted).
    pub fn forget(&self, uid: &str) {
        self.histories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(requests: f64) -> Pods {
        let c = PodCounters {
            requests,
            ..Default::default()
        };
        [("a".to_owned(), c)].into()
    }

    fn samples(t: Option<WindowTotals>) -> Option<u64> {
        t.map(|t| t.samples())
    }

    #[test]
    fn first_scrape_has_no_data_then_the_window_slides() {
        let s = ScrapeState::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(2);
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(samples(s.record("x", at(0), w, pods(0.0))), None);
        assert_eq!(samples(s.record("x", at(1), w, pods(10.0))), Some(10));
        assert_eq!(samples(s.record("x", at(2), w, pods(30.0))), Some(30));
        // The scrape at 1 s is now a window old: it becomes the baseline.
        assert_eq!(samples(s.record("x", at(3), w, pods(60.0))), Some(50));
        // An extra reconcile half a second later keeps the same baseline (the newest one a
        // window old), so it does not shrink to half a second of traffic.
        assert_eq!(
            samples(s.record("x", at(3) + Duration::from_millis(500), w, pods(65.0))),
            Some(55)
        );
        // Another object has its own history.
        assert_eq!(samples(s.record("y", at(3), w, pods(60.0))), None);
        // Stale baselines (judging paused for a long time) are not used.
        assert_eq!(samples(s.record("x", at(60), w, pods(1000.0))), None);
        s.forget("x");
        assert_eq!(samples(s.record("x", at(61), w, pods(1000.0))), None);
    }

    #[test]
    fn new_pods_only_set_a_baseline() {
        let s = ScrapeState::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(2);
        s.record("x", t0, w, pods(5.0));
        let mut now = pods(7.0);
        now.insert(
            "b".into(),
            PodCounters {
                requests: 100.0,
                ..Default::default()
            },
        );
        assert_eq!(samples(s.record("x", t0 + Duration::from_secs(1), w, now)), Some(2));
    }
}

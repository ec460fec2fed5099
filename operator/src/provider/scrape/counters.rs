//! The SLIs from scraped counters: per-pod totals of the canary-track series the metric
//! contract defines, deltas between two scrapes (with counter resets), and the same arithmetic
//! the Prometheus provider's PromQL does (ratios of sums, `histogram_quantile`).

use super::exposition::Sample;
use crate::provider::Sli;

/// One pod's canary-track counters at one scrape, already summed over the labels the SLIs
/// do not split by (route, method, op, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodCounters {
    pub requests: f64,
    pub requests_5xx: f64,
    /// Rate-limiter decisions, tester traffic excluded.
    pub decisions: f64,
    pub limited: f64,
    pub redis_errors: f64,
    pub openai: f64,
    pub openai_fallback: f64,
    /// `http_request_duration_seconds_bucket` by `le`, sorted by `le` (cumulative counts).
    pub buckets: Vec<(f64, f64)>,
    /// `redis_command_duration_seconds_bucket`, the same way.
    pub redis_buckets: Vec<(f64, f64)>,
    /// Gauges, not counters: read as they are, never subtracted.
    pub db_in_use: Option<f64>,
    pub db_max: Option<f64>,
}

fn add_bucket(buckets: &mut Vec<(f64, f64)>, le: f64, count: f64) {
    match buckets.binary_search_by(|(b, _)| b.total_cmp(&le)) {
        Ok(i) => buckets[i].1 += count,
        Err(i) => buckets.insert(i, (le, count)),
    }
}

fn add_opt(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.unwrap_or(0.0) + v);
}

impl PodCounters {
    /// Sums the `track="canary"` series of one pod's page.
    pub fn from_samples(samples: &[Sample]) -> PodCounters {
        let mut c = PodCounters::default();
        for s in samples.iter().filter(|s| s.label("track") == Some("canary")) {
            let v = s.value;
            match s.name.as_str() {
                "http_requests_total" => {
                    c.requests += v;
                    if s.label("status").is_some_and(|st| st.len() == 3 && st.starts_with('5')) {
                        c.requests_5xx += v;
                    }
                }
                "ratelimit_decisions_total" if s.label("principal") != Some("tester") => {
                    c.decisions += v;
                    if s.label("decision") == Some("limited") {
                        c.limited += v;
                    }
                }
                "limiter_redis_errors_total" => c.redis_errors += v,
                // With the model switched off every answer is the fallback by design; a model
                // that timed out, answered nonsense or refused (`error`, e.g. a 429) leaves the
                // student the rule-based ranking all the same.
                "openai_requests_total" if s.label("outcome") != Some("disabled") => {
                    c.openai += v;
                    if matches!(s.label("outcome"), Some("fallback" | "error")) {
                        c.openai_fallback += v;
                    }
                }
                "http_request_duration_seconds_bucket" => {
                    if let Some(le) = s.label("le").and_then(parse_le) {
                        add_bucket(&mut c.buckets, le, v);
                    }
                }
                "redis_command_duration_seconds_bucket" => {
                    if let Some(le) = s.label("le").and_then(parse_le) {
                        add_bucket(&mut c.redis_buckets, le, v);
                    }
                }
                "db_pool_connections" if s.label("state") == Some("in_use") => add_opt(&mut c.db_in_use, v),
                "db_pool_max_connections" => add_opt(&mut c.db_max, v),
                _ => {}
            }
        }
        c
    }

    fn counters(&self) -> impl Iterator<Item = f64> + '_ {
        [
            self.requests,
            self.requests_5xx,
            self.decisions,
            self.limited,
            self.redis_errors,
            self.openai,
            self.openai_fallback,
        ]
        .into_iter()
        .chain(self.buckets.iter().chain(&self.redis_buckets).map(|(_, c)| *c))
    }

    /// What happened on this pod since `base`. A counter that went down means the process
    /// restarted in between: everything it counted since the restart is the delta (from 0),
    /// for all of its counters alike, so ratios stay consistent.
    pub fn since(&self, base: &PodCounters) -> PodCounters {
        // Per bucket; `None` when a bucket went down (a restart).
        let delta = |now: &[(f64, f64)], then: &[(f64, f64)]| -> Option<Vec<(f64, f64)>> {
            now.iter()
                .map(|(le, c)| {
                    let before = then.iter().find(|(b, _)| b == le).map_or(0.0, |(_, c)| *c);
                    (*c >= before).then(|| (*le, c - before))
                })
                .collect()
        };
        let reset = self.requests < base.requests
            || self.requests_5xx < base.requests_5xx
            || self.decisions < base.decisions
            || self.limited < base.limited
            || self.redis_errors < base.redis_errors
            || self.openai < base.openai
            || self.openai_fallback < base.openai_fallback;
        let (false, Some(buckets), Some(redis_buckets)) = (
            reset,
            delta(&self.buckets, &base.buckets),
            delta(&self.redis_buckets, &base.redis_buckets),
        ) else {
            return self.clone();
        };
        PodCounters {
            requests: self.requests - base.requests,
            requests_5xx: self.requests_5xx - base.requests_5xx,
            decisions: self.decisions - base.decisions,
            limited: self.limited - base.limited,
            redis_errors: self.redis_errors - base.redis_errors,
            openai: self.openai - base.openai,
            openai_fallback: self.openai_fallback - base.openai_fallback,
            buckets,
            redis_buckets,
            db_in_use: self.db_in_use,
            db_max: self.db_max,
        }
    }

    fn utilization(&self) -> Option<f64> {
        match (self.db_in_use, self.db_max) {
            (Some(used), Some(max)) if max > 0.0 => Some(used / max),
            _ => None,
        }
    }

    /// NaN or negative values would poison the sums; a page with them is not trusted.
    pub fn is_sane(&self) -> bool {
        self.counters().all(|v| v.is_finite() && v >= 0.0)
    }
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        other => other.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

/// The canary's activity over the window: per-pod deltas summed over pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowTotals {
    pub sum: PodCounters,
    /// Worst pod's DB pool utilisation (as `max(...)` in PromQL).
    pub db_utilization: Option<f64>,
}

impl WindowTotals {
    pub fn add(&mut self, delta: &PodCounters) {
        let s = &mut self.sum;
        s.requests += delta.requests;
        s.requests_5xx += delta.requests_5xx;
        s.decisions += delta.decisions;
        s.limited += delta.limited;
        s.redis_errors += delta.redis_errors;
        s.openai += delta.openai;
        s.openai_fallback += delta.openai_fallback;
        for (le, c) in &delta.buckets {
            add_bucket(&mut s.buckets, *le, *c);
        }
        for (le, c) in &delta.redis_buckets {
            add_bucket(&mut s.redis_buckets, *le, *c);
        }
        if let Some(u) = delta.utilization() {
            self.db_utilization = Some(self.db_utilization.map_or(u, |w| w.max(u)));
        }
    }

    /// Canary requests in the window: the `samples` of every reading.
    pub fn samples(&self) -> u64 {
        self.sum.requests.round() as u64
    }

    /// The SLI's value, or `None` for no data (0/0, no histogram, no gauge).
    pub fn value(&self, sli: Sli) -> Option<f64> {
        let s = &self.sum;
        let ratio = |num: f64, den: f64| (den > 0.0).then(|| num / den);
        match sli {
            Sli::Availability => ratio(s.requests_5xx, s.requests).map(|r| 1.0 - r),
            Sli::ErrorRate5xx => ratio(s.requests_5xx, s.requests),
            Sli::RateLimited429 => ratio(s.limited, s.decisions),
            // A counter that never moved may not be exposed at all: absent means zero.
            Sli::LimiterRedisErrors => Some(s.redis_errors),
            Sli::OpenaiFallbackRate => ratio(s.openai_fallback, s.openai),
            Sli::P95LatencyMs => histogram_quantile(0.95, &s.buckets).map(|v| v * 1000.0),
            Sli::DbPoolUtilization => self.db_utilization,
            Sli::RedisP95LatencyMs => histogram_quantile(0.95, &s.redis_buckets).map(|v| v * 1000.0),
        }
    }
}

/// Prometheus' `histogram_quantile` over cumulative buckets sorted by `le`: find the bucket
/// holding the rank and interpolate linearly inside it (the lowest bucket starts at 0; a rank
/// in the `+Inf` bucket answers the highest finite bound). `None` where Prometheus says NaN.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let (&(last_le, total), _) = buckets.split_last()?;
    if buckets.len() < 2 || last_le != f64::INFINITY || total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    // Counts must not decrease with `le` (float noise, scrapes mid-update): as Prometheus,
    // carry the running maximum.
    let mut cumulative = Vec::with_capacity(buckets.len());
    let mut max = 0.0_f64;
    for (le, c) in buckets {
        max = max.max(*c);
        cumulative.push((*le, max));
    }
    let total = max;
    let rank = q * total;
    let b = cumulative[..cumulative.len() - 1]
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(cumulative.len() - 1);
    if b == cumulative.len() - 1 {
        return Some(cumulative[b - 1].0);
    }
    let (end, count) = cumulative[b];
    if b == 0 && end <= 0.0 {
        return Some(end);
    }
    let (start, below) = if b == 0 { (0.0, 0.0) } else { cumulative[b - 1] };
    let in_bucket = count - below;
    if in_bucket <= 0.0 {
        return Some(end);
    }
    Some(start + (end - start) * (rank - below) / in_bucket)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::provider::scrape::exposition::parse;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn quantile_interpolates_like_prometheus() {
        // 100 observations: 50 ≤ 0.1, 90 ≤ 0.22, 100 ≤ 0.25.
        let b = [(0.1, 50.0), (0.22, 90.0), (0.25, 98.0), (INF, 100.0)];
        // rank 95 lies in (0.22, 0.25]: 0.22 + 0.03 * (95 - 90) / 8.
        let p95 = histogram_quantile(0.95, &b).unwrap();
        assert!((p95 - (0.22 + 0.03 * 5.0 / 8.0)).abs() < 1e-12, "{p95}");
        // In the first bucket: from 0.
        assert!((histogram_quantile(0.25, &b).unwrap() - 0.05).abs() < 1e-12);
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(histogram_quantile(0.99, &b), Some(0.25));
        // No observations, no +Inf bucket, a single bucket: NaN in Prometheus.
        assert_eq!(histogram_quantile(0.95, &[(0.1, 0.0), (INF, 0.0)]), None);
        assert_eq!(histogram_quantile(0.95, &[(0.1, 1.0), (0.2, 2.0)]), None);
        assert_eq!(histogram_quantile(0.95, &[(INF, 2.0)]), None);
        // Non-monotonic counts are smoothed, not trusted.
        let bumpy = [(0.1, 10.0), (0.2, 9.0), (INF, 10.0)];
        assert!((histogram_quantile(0.5, &bumpy).unwrap() - 0.05).abs() < 1e-12);
    }

    fn page(requests_200: f64, requests_500: f64, bucket_022: f64, bucket_inf: f64) -> PodCounters {
        let text = format!(
            r#"http_requests_total{{route="/a",status="200",track="canary"}} {requests_200}
http_requests_total{{route="/a",status="500",track="canary"}} {requests_500}
http_requests_total{{route="/a",status="500",track="stable"}} 999
http_request_duration_seconds_bucket{{route="/a",le="0.22",track="canary"}} {bucket_022}
http_request_duration_seconds_bucket{{route="/a",le="+Inf",track="canary"}} {bucket_inf}
ratelimit_decisions_total{{decision="allowed",principal="user",track="canary"}} 90
ratelimit_decisions_total{{decision="limited",principal="user",track="canary"}} 10
ratelimit_decisions_total{{decision="limited",principal="tester",track="canary"}} 500
db_pool_connections{{state="in_use",track="canary"}} 3
db_pool_connections{{state="idle",track="canary"}} 7
db_pool_max_connections{{track="canary"}} 10
openai_requests_total{{outcome="ok",track="canary"}} 40
openai_requests_total{{outcome="fallback",track="canary"}} 10
openai_requests_total{{outcome="error",track="canary"}} 5
openai_requests_total{{outcome="disabled",track="canary"}} 500
redis_command_duration_seconds_bucket{{command="evalsha",le="0.001",track="canary"}} {requests_200}
redis_command_duration_seconds_bucket{{command="evalsha",le="+Inf",track="canary"}} {requests_200}
"#
        );
        PodCounters::from_samples(&parse(&text).unwrap())
    }

    #[test]
    fn sums_only_canary_series_and_excludes_testers() {
        let c = page(100.0, 5.0, 80.0, 105.0);
        assert_eq!(c.requests, 105.0);
        assert_eq!(c.requests_5xx, 5.0);
        assert_eq!((c.decisions, c.limited), (100.0, 10.0));
        assert_eq!(c.buckets, vec![(0.22, 80.0), (INF, 105.0)]);
        assert_eq!(c.utilization(), Some(0.3));
        assert_eq!(
            (c.openai, c.openai_fallback),
            (55.0, 15.0),
            "a refused model call is a fallback, the model disabled is none"
        );
        assert_eq!(c.redis_buckets, vec![(0.001, 100.0), (INF, 100.0)]);
    }

    #[test]
    fn deltas_over_pods_and_counter_resets() {
        let base_a = page(100.0, 0.0, 100.0, 100.0);
        let base_b = page(1000.0, 0.0, 1000.0, 1000.0);
        // Pod a served 100 more requests (10 of them 5xx, all fast).
        let now_a = page(190.0, 10.0, 200.0, 200.0);
        // Pod b restarted: its counters start again from 0 and it served 50 (5 of them 5xx).
        let now_b = page(45.0, 5.0, 40.0, 50.0);
        let (da, db) = (now_a.since(&base_a), now_b.since(&base_b));
        assert_eq!((da.requests, da.requests_5xx), (100.0, 10.0));
        assert_eq!(db, now_b, "a reset counts from 0");
        let mut w = WindowTotals::default();
        w.add(&da);
        w.add(&db);
        assert_eq!(w.samples(), 150);
        let close = |sli: Sli, want: f64| {
            let got = w.value(sli).unwrap();
            assert!((got - want).abs() < 1e-9, "{sli:?}: {got} != {want}");
        };
        close(Sli::ErrorRate5xx, 0.1);
        close(Sli::Availability, 0.9);
        assert_eq!(w.value(Sli::LimiterRedisErrors), Some(0.0));
        assert_eq!(w.value(Sli::DbPoolUtilization), Some(0.3));
        // 90 round trips on a (all ≤ 1 ms), 45 on b after its restart: p95 interpolates to 0.95 ms.
        close(Sli::RedisP95LatencyMs, 0.95);
        // Ratelimit counters did not move on a; b restarted: 10 limited of 100.
        close(Sli::RateLimited429, 0.1);
        // 140 of 150 within 0.22 s: rank 142.5 is in the +Inf bucket → 0.22.
        close(Sli::P95LatencyMs, 220.0);
        // OpenAI counters did not move on a; b restarted: 10 fallbacks and 5 errors of 55 (the
        // 500 with the model disabled left out).
        close(Sli::OpenaiFallbackRate, 15.0 / 55.0);
        let mut idle = WindowTotals::default();
        idle.add(&now_a.since(&now_a));
        assert_eq!(idle.value(Sli::OpenaiFallbackRate), None, "0/0 is no data");
    }

    #[test]
    fn an_idle_window_has_no_ratios() {
        let a = page(100.0, 1.0, 100.0, 101.0);
        let mut w = WindowTotals::default();
        w.add(&a.since(&a));
        assert_eq!(w.samples(), 0);
        assert_eq!(w.value(Sli::ErrorRate5xx), None);
        assert_eq!(w.value(Sli::P95LatencyMs), None);
        assert_eq!(w.value(Sli::LimiterRedisErrors), Some(0.0));
    }
}

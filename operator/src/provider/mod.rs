//! Metric providers: where gate and rollback readings come from. Both providers compute the
//! same SLIs on the canary track (`track="canary"`; the metric contract is in README.md,
//! "Metrics"); they differ only in whether Prometheus or the operator does the arithmetic.
//! After a promotion, the post-promotion watch reads the same SLIs on the stable track.

pub mod pods;
pub mod prometheus;
pub mod rate_limit;
pub mod redis;
pub mod replay;
pub mod scrape;
mod secret;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use canary_core::{PromotionSpec, Reading};

/// The SLIs with built-in definitions (gate keys and rollback metric names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sli {
    /// Share of non-5xx responses.
    Availability,
    /// p95 request latency in milliseconds.
    P95LatencyMs,
    /// Share of 5xx responses.
    ErrorRate5xx,
    /// Share of rate-limiter decisions that were `limited`, tester traffic excluded.
    RateLimited429,
    /// Limiter Redis errors in the window (a count).
    LimiterRedisErrors,
    /// Share of OpenAI requests answered by the fallback.
    OpenaiFallbackRate,
    /// Worst pod's DB pool utilisation (in use / max).
    DbPoolUtilization,
    /// p95 of the API's own Redis round trips in milliseconds.
    RedisP95LatencyMs,
}

impl Sli {
    pub const ALL: [Sli; 8] = [
        Sli::Availability,
        Sli::P95LatencyMs,
        Sli::ErrorRate5xx,
        Sli::RateLimited429,
        Sli::LimiterRedisErrors,
        Sli::OpenaiFallbackRate,
        Sli::DbPoolUtilization,
        Sli::RedisP95LatencyMs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sli::Availability => "availability",
            Sli::P95LatencyMs => "p95LatencyMs",
            Sli::ErrorRate5xx => "errorRate5xx",
            Sli::RateLimited429 => "rateLimited429",
            Sli::LimiterRedisErrors => "limiterRedisErrors",
            Sli::OpenaiFallbackRate => "openaiFallbackRate",
            Sli::DbPoolUtilization => "dbPoolUtilization",
            Sli::RedisP95LatencyMs => "redisP95LatencyMs",
        }
    }

    pub fn from_name(name: &str) -> Option<Sli> {
        Sli::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Which pods a reading describes: the `track` label of the metric contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Track {
    #[default]
    Canary,
    /// After the promotion, the stable track runs the new image (`spec.postPromotion`).
    Stable,
}

impl Track {
    pub fn label(self) -> &'static str {
        match self {
            Track::Canary => "canary",
            Track::Stable => "stable",
        }
    }
}

/// What one reading asks for: a built-in SLI or a user's PromQL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Query {
    Builtin(Sli),
    PromQl(String),
    /// A rollback metric without a built-in definition and without `query`.
    Unknown(String),
}

/// Every reading a spec needs this tick: gate name → query, criterion metric → query, and
/// the rows the Redis probe answers.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    pub gates: Vec<(String, Query)>,
    pub criteria: Vec<(String, Query)>,
    pub redis: Option<redis::RedisChecks>,
    /// The replay-protection probe, when the spec has that gate.
    pub replay: Option<replay::ReplayCheck>,
    /// The rate-limit probe, when the spec has that gate.
    pub rate_limit: Option<rate_limit::RateLimitCheck>,
    /// The track built-in queries read.
    pub track: Track,
    /// Extra label matchers of the built-in queries (`spec.metrics.prometheus.labels`).
    pub labels: BTreeMap<String, String>,
}

impl Wanted {
    /// Gates the metric providers answer, the Redis probe's rows and the replay probe.
    pub fn for_spec(spec: &PromotionSpec) -> Wanted {
        let mut w = Wanted {
            labels: extra_labels(spec),
            ..Wanted::default()
        };
        if let Some(sli) = &spec.gates.sli {
            let configured = [
                (Sli::Availability, &sli.availability),
                (Sli::P95LatencyMs, &sli.p95_latency_ms),
                (Sli::ErrorRate5xx, &sli.error_rate5xx),
                (Sli::RateLimited429, &sli.rate_limited429),
                (Sli::OpenaiFallbackRate, &sli.openai_fallback_rate),
                (Sli::DbPoolUtilization, &sli.db_pool_utilization),
                (Sli::RedisP95LatencyMs, &sli.redis_p95_latency_ms),
            ];
            for (s, threshold) in configured {
                if threshold.is_some() {
                    w.gates.push((format!("sli.{}", s.name()), Query::Builtin(s)));
                }
            }
        }
        if let Some(r) = &spec.gates.redis {
            let rows = [
                (redis::Row::Tls, r.require_tls),
                (redis::Row::Auth, r.require_auth),
                (redis::Row::Replica, r.require_replica),
                (redis::Row::P95LatencyMs, r.p95_latency_ms.is_some()),
                (redis::Row::FragmentationRatio, r.fragmentation_ratio.is_some()),
                (redis::Row::EvictedKeys, r.evicted_keys.is_some()),
                (redis::Row::MaxmemoryPolicy, r.maxmemory_policy.is_some()),
                (redis::Row::PlaintextRefused, r.plaintext_port.is_some()),
                (redis::Row::SentinelQuorum, r.require_sentinel_quorum),
            ];
            w.redis = Some(redis::RedisChecks {
                secret: r.secret_ref.clone(),
                rows: rows.into_iter().filter(|(_, on)| *on).map(|(row, _)| row).collect(),
                maxmemory_policy: r.maxmemory_policy,
                plaintext_port: r.plaintext_port,
            });
            // The canary's own view of Redis: its limiter's errors, from the metric provider.
            if r.limiter_errors.is_some() {
                w.gates.push((
                    "redis.limiterErrors".to_owned(),
                    Query::Builtin(Sli::LimiterRedisErrors),
                ));
            }
        }
        if let Some(r) = &spec.gates.replay_protection {
            w.replay = Some(replay::ReplayCheck {
                secret: r.probe.secret_ref.clone(),
                pods: probe_targets(spec, r.probe.port, &r.probe.port_name, &r.probe.path),
                tester_header: r.probe.tester_header.clone(),
            });
        }
        if let Some(r) = &spec.gates.rate_limit {
            w.rate_limit = Some(rate_limit::RateLimitCheck {
                pods: probe_targets(spec, r.probe.port, &r.probe.port_name, &r.probe.path),
                secret: r.probe.secret_ref.clone(),
                tester_header: r.probe.tester_header.clone(),
                max_requests: r.probe.max_requests,
            });
        }
        for c in &spec.gates.custom {
            w.gates
                .push((format!("custom.{}", c.name), Query::PromQl(c.query.clone())));
        }
        w.criteria = criteria(spec);
        w
    }

    /// The post-promotion watch: the rollback criteria only, on the stable track (the CRD
    /// allows the watch only with built-in criteria).
    pub fn for_watch(spec: &PromotionSpec) -> Wanted {
        Wanted {
            criteria: criteria(spec),
            track: Track::Stable,
            labels: extra_labels(spec),
            ..Wanted::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.gates.is_empty() && self.criteria.is_empty()
    }
}

fn probe_targets(
    spec: &PromotionSpec,
    port: Option<u16>,
    port_name: &Option<String>,
    path: &str,
) -> pods::ProbeTargets {
    pods::ProbeTargets {
        canary_service: spec.canary.service_name().to_owned(),
        stable_service: spec.stable.service_name().to_owned(),
        request: canary_core::ScrapeSource {
            port,
            port_name: port_name.clone(),
            path: path.to_owned(),
        },
    }
}

fn extra_labels(spec: &PromotionSpec) -> BTreeMap<String, String> {
    spec.metrics
        .prometheus
        .as_ref()
        .map(|p| p.labels.clone())
        .unwrap_or_default()
}

fn criteria(spec: &PromotionSpec) -> Vec<(String, Query)> {
    spec.rollback
        .iter()
        .map(|c| {
            let q = match (&c.query, Sli::from_name(&c.metric)) {
                (Some(q), _) => Query::PromQl(q.clone()),
                (None, Some(s)) => Query::Builtin(s),
                (None, None) => Query::Unknown(c.metric.clone()),
            };
            (c.metric.clone(), q)
        })
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    pub gates: BTreeMap<String, Reading>,
    pub criteria: BTreeMap<String, Reading>,
}

/// A source of gate and rollback readings for one canary.
pub trait MetricProvider {
    /// Reads everything in `wanted` over `window`. Never fails as a whole: each reading is a
    /// value, no data, or an error that `decide` judges per the gate's `noData` policy.
    fn read(&self, wanted: &Wanted, window: Duration) -> impl Future<Output = Readings> + Send;
}

/// The evaluation window for an interval: long enough for `rate()` to see several scrapes,
/// short enough that a breach shows up within about one interval.
pub fn window_for(interval: Duration, min_window: Duration) -> Duration {
    (interval * 2).max(min_window)
}

fn unknown_metric(name: &str) -> Reading {
    Reading::Error(format!(
        "no built-in query for metric {name:?}; set rollback[].query (built-ins: {})",
        Sli::ALL.map(Sli::name).join(", ")
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The probes report under exactly the gate names `Plan::compile` judges.
    #[test]
    fn probe_rows_are_the_plans_gates() {
        let spec: PromotionSpec = serde_json::from_value(serde_json::json!({
            "stable": {"deployment": "a"}, "canary": {"deployment": "b"},
            "traffic": {"replicas": {}}, "steps": [{"weight": 100, "bake": "1m"}],
            "metrics": {"prometheus": {"address": "http://p:9090"}},
            "gates": {"redis": {"secretRef": "r", "requireTls": true, "requireAuth": true, "requireReplica": true,
                "p95LatencyMs": "< 10", "fragmentationRatio": "< 1.5", "evictedKeys": "== 0", "limiterErrors": "== 0",
                "requireSentinelQuorum": true, "maxmemoryPolicy": "noeviction", "plaintextPort": 6379},
                "replayProtection": {"probe": {"secretRef": "p", "path": "/api/v1/applications/x", "port": 8080}},
                "rateLimit": {"probe": {"path": "/api/v1/scholarships", "portName": "http"}}}
        }))
        .unwrap();
        let wanted = Wanted::for_spec(&spec);
        let mut read: Vec<&str> = wanted.redis.unwrap().rows.iter().map(|r| r.gate()).collect();
        read.extend(wanted.gates.iter().map(|(name, _)| name.as_str()));
        read.extend(wanted.replay.map(|_| canary_core::plan::REPLAY_GATE));
        read.extend(wanted.rate_limit.map(|_| canary_core::plan::RATE_LIMIT_GATE));
        read.sort_unstable();
        let plan = canary_core::Plan::compile(&spec).unwrap();
        let mut judged: Vec<&str> = plan.gates.iter().map(|g| g.name.as_str()).collect();
        judged.sort_unstable();
        assert_eq!(read, judged);
    }

    /// The CRD's rule and `Plan::compile` accept exactly the metrics the providers can read.
    #[test]
    fn the_spec_knows_every_builtin_metric() {
        assert_eq!(Sli::ALL.map(Sli::name), canary_core::spec::BUILTIN_METRICS);
    }
}

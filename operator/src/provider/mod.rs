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
pub mod secret;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use canary_core::{GateSource, Plan, PromotionSpec, Reading};

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
    /// Share of model asks answered by the rule-based fallback (timed out, unusable, refused).
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
    /// The Redis Secret a failover drill goes through, on a drill step.
    pub drill: Option<String>,
    /// The track built-in queries read.
    pub track: Track,
    /// Extra label matchers of the built-in queries (`spec.metrics.prometheus.labels`).
    pub labels: BTreeMap<String, String>,
}

impl Wanted {
    /// Every reading the plan's gates and criteria need, from the source each names; the
    /// spec supplies only how to reach the probes (Secrets, ports, paths).
    pub fn for_plan(plan: &Plan, spec: &PromotionSpec) -> Wanted {
        let mut w = Wanted {
            labels: extra_labels(spec),
            criteria: criteria(plan),
            ..Wanted::default()
        };
        let mut redis_rows = Vec::new();
        for gate in &plan.gates {
            let name = gate.name.clone();
            match &gate.source {
                GateSource::Builtin(metric) => w.gates.push((name, builtin(metric))),
                GateSource::PromQl(query) => w.gates.push((name, Query::PromQl(query.clone()))),
                GateSource::Redis(row) => redis_rows.push(*row),
                GateSource::ReplayProbe => {
                    w.replay = spec.gates.replay_protection.as_ref().map(|r| replay::ReplayCheck {
                        secret: r.probe.secret_ref.clone(),
                        pods: probe_targets(spec, r.probe.port, &r.probe.port_name, &r.probe.path),
                        tester_header: r.probe.tester_header.clone(),
                    });
                }
                GateSource::FailoverDrill => {
                    // The drill is judged from the canary's 5xx ratio and limiter errors
                    // around the failover, whatever gates the spec has.
                    for (reading, metric) in [
                        (canary_core::drill::DRILL_5XX, "errorRate5xx"),
                        (canary_core::drill::DRILL_LIMITER_ERRORS, "limiterRedisErrors"),
                    ] {
                        w.gates.push((reading.to_owned(), builtin(metric)));
                    }
                    w.drill = spec.gates.redis.as_ref().map(|r| r.secret_ref.clone());
                }
                GateSource::RateLimitProbe => {
                    w.rate_limit = spec.gates.rate_limit.as_ref().map(|r| rate_limit::RateLimitCheck {
                        pods: probe_targets(spec, r.probe.port, &r.probe.port_name, &r.probe.path),
                        secret: r.probe.secret_ref.clone(),
                        tester_header: r.probe.tester_header.clone(),
                        max_requests: r.probe.max_requests,
                    });
                }
            }
        }
        if let (false, Some(r)) = (redis_rows.is_empty(), &spec.gates.redis) {
            w.redis = Some(redis::RedisChecks {
                secret: r.secret_ref.clone(),
                rows: redis_rows,
                maxmemory_policy: r.maxmemory_policy,
                plaintext_port: r.plaintext_port,
                latency_budget: plan.interval.to_std().unwrap_or_default() / 3,
            });
        }
        w
    }

    /// Leaves out what only a drill step reads.
    pub fn without_drill(mut self) -> Wanted {
        if self.drill.take().is_some() {
            self.gates.retain(|(name, _)| {
                ![canary_core::drill::DRILL_5XX, canary_core::drill::DRILL_LIMITER_ERRORS].contains(&name.as_str())
            });
        }
        self
    }

    /// The post-promotion watch: the rollback criteria only, on the stable track (the plan
    /// allows the watch only with built-in criteria).
    pub fn for_watch(plan: &Plan, spec: &PromotionSpec) -> Wanted {
        Wanted {
            criteria: criteria(plan),
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

fn builtin(metric: &str) -> Query {
    Sli::from_name(metric).map_or_else(|| Query::Unknown(metric.to_owned()), Query::Builtin)
}

fn criteria(plan: &Plan) -> Vec<(String, Query)> {
    plan.criteria
        .iter()
        .map(|c| {
            let query = match &c.query {
                Some(q) => Query::PromQl(q.clone()),
                None => builtin(&c.metric),
            };
            (c.metric.clone(), query)
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

    /// Every gate of the plan is read from exactly one place, under its own name.
    #[test]
    fn every_plan_gate_is_read_once() {
        let spec: PromotionSpec = serde_json::from_value(serde_json::json!({
            "stable": {"deployment": "a"}, "canary": {"deployment": "b"},
            "traffic": {"replicas": {}}, "steps": [{"weight": 100, "bake": "1m"}],
            "metrics": {"prometheus": {"address": "http://p:9090"}},
            "gates": {"sli": {"availability": ">= 0.99", "redisP95LatencyMs": "< 10"},
                "redis": {"secretRef": "r", "requireTls": true, "requireAuth": true, "requireReplica": true,
                "p95LatencyMs": "< 10", "fragmentationRatio": "< 1.5", "evictedKeys": "== 0", "limiterErrors": "== 0",
                "requireSentinelQuorum": true, "maxmemoryPolicy": "noeviction", "plaintextPort": 6379},
                "replayProtection": {"probe": {"secretRef": "p", "path": "/api/v1/applications/x", "port": 8080}},
                "rateLimit": {"probe": {"path": "/api/v1/scholarships", "portName": "http", "secretRef": "p"}},
                "custom": [{"name": "c", "query": "vector(1)", "condition": "== 1"}]}
        }))
        .unwrap();
        let plan = canary_core::Plan::compile(&spec).unwrap();
        let wanted = Wanted::for_plan(&plan, &spec);
        let mut read: Vec<String> = wanted.redis.unwrap().rows.iter().map(|r| r.gate()).collect();
        read.extend(wanted.gates.iter().map(|(name, _)| name.clone()));
        read.extend(wanted.replay.map(|_| canary_core::plan::REPLAY_GATE.to_owned()));
        read.extend(wanted.rate_limit.map(|_| canary_core::plan::RATE_LIMIT_GATE.to_owned()));
        read.sort_unstable();
        let mut judged: Vec<String> = plan.gates.iter().map(|g| g.name.clone()).collect();
        judged.sort_unstable();
        assert_eq!(read, judged);
        assert!(wanted.gates.iter().all(|(_, q)| !matches!(q, Query::Unknown(_))));
    }

    /// The CRD's rule and `Plan::compile` accept exactly the metrics the providers can read.
    #[test]
    fn the_spec_knows_every_builtin_metric() {
        assert_eq!(Sli::ALL.map(Sli::name), canary_core::spec::BUILTIN_METRICS);
    }
}

//! The spec compiled into typed values (durations, thresholds, gate list), with the same
//! rules the CRD enforces. The API server should never let an invalid spec through, but
//! `decide` re-checks because CRDs can be installed without validation (or an old schema).

use chrono::TimeDelta;

use crate::duration::{DurationError, parse_duration};
use crate::spec::{BUILTIN_METRICS, NoDataPolicy, PostPromotion, PromotionSpec, PromotionStrategy};
use crate::threshold::{Threshold, ThresholdError};

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub weight: u32,
    pub bake: TimeDelta,
    pub require_approval: bool,
    /// Fail Redis over once this step's weight is applied (`spec.steps[].redisFailoverDrill`).
    pub failover_drill: bool,
}

/// The replay-protection gate's name in status.
pub const REPLAY_GATE: &str = "replayProtection.crossPod";
/// The rate-limit probe's gate name in status.
pub const RATE_LIMIT_GATE: &str = "rateLimit.crossPod";
/// The failover drill's gate name in status (on drill steps only).
pub const DRILL_GATE: &str = "redis.failoverDrill";

/// Where a gate's reading comes from. Gates are named and typed here only: the shell reads
/// what these say and `decide` judges the same list, so the two cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateSource {
    /// A built-in SLI of the metric contract, by metric name (one of [`BUILTIN_METRICS`]).
    Builtin(&'static str),
    /// `gates.custom[].query`.
    PromQl(String),
    /// A row of the operator's own Redis probe.
    Redis(RedisRow),
    /// The operator's cross-pod replay probe.
    ReplayProbe,
    /// The operator's cross-pod rate-limit probe.
    RateLimitProbe,
    /// A Redis failover drill, judged by `decide` from the readings around it: it applies
    /// on drill steps only.
    FailoverDrill,
}

/// The Redis probe's rows (`redis.limiterErrors` is the canary's own metric instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisRow {
    Tls,
    Auth,
    Replica,
    SentinelQuorum,
    MaxmemoryPolicy,
    PlaintextRefused,
    P95LatencyMs,
    FragmentationRatio,
    EvictedKeys,
}

impl RedisRow {
    /// The row's key under `redis.` (its gate is `redis.<key>`).
    pub fn key(self) -> &'static str {
        match self {
            RedisRow::Tls => "tls",
            RedisRow::Auth => "auth",
            RedisRow::Replica => "replica",
            RedisRow::SentinelQuorum => "sentinelQuorum",
            RedisRow::MaxmemoryPolicy => "maxmemoryPolicy",
            RedisRow::PlaintextRefused => "plaintextRefused",
            RedisRow::P95LatencyMs => "p95LatencyMs",
            RedisRow::FragmentationRatio => "fragmentationRatio",
            RedisRow::EvictedKeys => "evictedKeys",
        }
    }

    pub fn gate(self) -> String {
        format!("redis.{}", self.key())
    }
}

/// One go/no-go gate: the name readings are reported under, where they come from, and how
/// to judge them.
#[derive(Debug, Clone, PartialEq)]
pub struct GateSpec {
    pub name: String,
    pub source: GateSource,
    pub threshold: Threshold,
    pub no_data: NoDataPolicy,
    pub min_samples: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Above(f64),
    Below(f64),
}

impl Bound {
    pub fn breached_by(self, value: f64) -> bool {
        match self {
            Bound::Above(limit) => value > limit,
            Bound::Below(limit) => value < limit,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Above(v) => write!(f, "> {v}"),
            Bound::Below(v) => write!(f, "< {v}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CriterionSpec {
    pub metric: String,
    /// `rollback[].query`; without it `metric` is one of [`BUILTIN_METRICS`].
    pub query: Option<String>,
    pub bound: Bound,
    pub window: TimeDelta,
    pub min_samples: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    pub interval: TimeDelta,
    /// `spec.paused`.
    pub paused: bool,
    /// `spec.canary.image`: the image to promote (else the canary Deployment's).
    pub canary_image: Option<String>,
    pub progress_deadline: Option<TimeDelta>,
    pub gates: Vec<GateSpec>,
    pub criteria: Vec<CriterionSpec>,
    pub strategy: PromotionStrategy,
    /// `spec.rollbackWithin`: every criterion's window plus the interval fits within it.
    pub rollback_within: Option<TimeDelta>,
    pub post_promotion: Option<PostPromotionPlan>,
    /// How a failover drill is judged, when a step asks for one.
    pub failover_drill: Option<DrillPlan>,
}

/// `spec.gates.redis.failoverDrill`, compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrillPlan {
    /// How long after the failover the canary is judged.
    pub window: TimeDelta,
}

/// The watch after a promotion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostPromotionPlan {
    pub watch: TimeDelta,
    /// Roll the stable image back on a breach (else report it).
    pub rollback: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("spec.{field}: {source}")]
    Duration { field: String, source: DurationError },
    #[error("spec.{field}: {source}")]
    Threshold { field: String, source: ThresholdError },
    #[error("spec.{field}: {reason}")]
    Invalid { field: String, reason: &'static str },
}

fn invalid(field: impl Into<String>, reason: &'static str) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        reason,
    }
}

fn duration(field: impl Into<String>, s: &str) -> Result<TimeDelta, SpecError> {
    parse_duration(s).map_err(|source| SpecError::Duration {
        field: field.into(),
        source,
    })
}

fn threshold(field: impl Into<String>, s: &str) -> Result<Threshold, SpecError> {
    Threshold::parse(s).map_err(|source| SpecError::Threshold {
        field: field.into(),
        source,
    })
}

impl Plan {
    pub fn compile(spec: &PromotionSpec) -> Result<Plan, SpecError> {
        let t = &spec.traffic;
        let routers = [t.nginx.is_some(), t.gateway_api.is_some(), t.replicas.is_some()];
        if routers.iter().filter(|r| **r).count() != 1 {
            return Err(invalid(
                "traffic",
                "exactly one of nginx, gatewayApi or replicas must be set",
            ));
        }
        let m = &spec.metrics;
        if m.prometheus.is_some() == m.scrape.is_some() {
            return Err(invalid("metrics", "exactly one of prometheus or scrape must be set"));
        }
        if let Some(s) = &m.scrape {
            one_port("metrics.scrape", s.port, s.port_name.as_deref())?;
        }
        if let Some(p) = &m.prometheus
            && let Some(key) = p.labels.keys().find(|k| !is_extra_label(k))
        {
            return Err(invalid(
                format!("metrics.prometheus.labels.{key}"),
                "not a Prometheus label name the operator leaves to the spec (letters, digits, _; not __*, not track)",
            ));
        }
        if m.scrape.is_some() {
            if !spec.gates.custom.is_empty() {
                return Err(invalid("gates.custom", "PromQL gates need spec.metrics.prometheus"));
            }
            if let Some(i) = spec.rollback.iter().position(|c| c.query.is_some()) {
                return Err(invalid(
                    format!("rollback[{i}].query"),
                    "PromQL needs spec.metrics.prometheus",
                ));
            }
        }
        let steps = compile_steps(spec)?;
        let interval = duration("interval", &spec.interval)?;
        if interval < TimeDelta::seconds(1) {
            return Err(invalid("interval", "must be at least 1s"));
        }
        let progress_deadline = spec
            .progress_deadline
            .as_deref()
            .map(|d| duration("progressDeadline", d))
            .transpose()?;
        for (i, sink) in spec.notify.iter().enumerate() {
            if spec.notify[..i].iter().any(|other| other.name == sink.name) {
                return Err(invalid("notify", "names must be unique"));
            }
        }
        let criteria = compile_criteria(spec)?;
        let rollback_within = spec
            .rollback_within
            .as_deref()
            .map(|d| duration("rollbackWithin", d))
            .transpose()?;
        if let Some(within) = rollback_within {
            if criteria.is_empty() {
                return Err(invalid("rollbackWithin", "needs at least one rollback criterion"));
            }
            if criteria.iter().any(|c| c.window + interval > within) {
                return Err(invalid(
                    "rollbackWithin",
                    "every rollback[].for plus interval must fit within it",
                ));
            }
        }
        let post_promotion = spec
            .post_promotion
            .as_ref()
            .map(|p| compile_post_promotion(spec, p))
            .transpose()?;
        let failover_drill = compile_drill(spec, &steps)?;
        Ok(Plan {
            steps,
            interval,
            paused: spec.paused,
            canary_image: spec.canary.image.clone(),
            progress_deadline,
            gates: compile_gates(spec, failover_drill.is_some())?,
            criteria,
            strategy: spec.promotion.strategy,
            rollback_within,
            post_promotion,
            failover_drill,
        })
    }

    /// Whether `gate` is judged at `step` (1-based): the drill's only on drill steps.
    pub fn applies_at(&self, gate: &GateSpec, step: u32) -> bool {
        gate.source != GateSource::FailoverDrill || self.drill_at(step).is_some()
    }

    /// The gates judged at `step` (1-based).
    pub fn gates_at(&self, step: u32) -> impl Iterator<Item = &GateSpec> {
        self.gates.iter().filter(move |g| self.applies_at(g, step))
    }

    /// The drill of `step` (1-based), when it has one.
    pub fn drill_at(&self, step: u32) -> Option<DrillPlan> {
        let index = usize::try_from(step).ok()?.checked_sub(1)?;
        self.steps.get(index).filter(|s| s.failover_drill)?;
        self.failover_drill
    }

    /// The longest a breach can last before the canary carries no traffic: the slowest
    /// criterion's window, plus one interval (a breach starts just after an evaluation), plus
    /// `metric_window` (a rate over that window can take that long to cross its bound after a
    /// step change). `None` without rollback criteria.
    pub fn rollback_bound(&self, metric_window: TimeDelta) -> Option<TimeDelta> {
        let slowest = self.criteria.iter().map(|c| c.window).max()?;
        Some(slowest + self.interval + metric_window)
    }

    pub fn last_weight(&self) -> u32 {
        self.steps.last().map_or(0, |s| s.weight)
    }
}

fn compile_steps(spec: &PromotionSpec) -> Result<Vec<PlannedStep>, SpecError> {
    if spec.steps.is_empty() {
        return Err(invalid("steps", "at least one step is required"));
    }
    let mut previous = 0;
    let mut steps = Vec::with_capacity(spec.steps.len());
    for (i, step) in spec.steps.iter().enumerate() {
        if !(1..=100).contains(&step.weight) {
            return Err(invalid(format!("steps[{i}].weight"), "must be in 1..100"));
        }
        if step.weight <= previous {
            return Err(invalid("steps", "weights must be strictly increasing"));
        }
        previous = step.weight;
        steps.push(PlannedStep {
            weight: step.weight,
            bake: duration(format!("steps[{i}].bake"), &step.bake)?,
            require_approval: step.require_approval,
            failover_drill: step.redis_failover_drill,
        });
    }
    if previous != 100 {
        return Err(invalid("steps", "the last step must have weight 100"));
    }
    Ok(steps)
}

/// The drill's judgement, when a step asks for a drill; refused without the opt-in.
fn compile_drill(spec: &PromotionSpec, steps: &[PlannedStep]) -> Result<Option<DrillPlan>, SpecError> {
    let opt_in = spec.gates.redis.as_ref().and_then(|r| r.failover_drill.as_ref());
    let window = opt_in
        .map(|drill| duration("gates.redis.failoverDrill.window", &drill.window))
        .transpose()?;
    if window.is_some_and(|w| w < TimeDelta::seconds(1)) {
        return Err(invalid("gates.redis.failoverDrill.window", "must be at least 1s"));
    }
    let Some(i) = steps.iter().position(|s| s.failover_drill) else {
        return Ok(None);
    };
    match window {
        Some(window) => Ok(Some(DrillPlan { window })),
        None => Err(invalid(
            format!("steps[{i}].redisFailoverDrill"),
            "a Redis failover drill needs the opt-in gates.redis.failoverDrill",
        )),
    }
}

fn compile_gates(spec: &PromotionSpec, drill: bool) -> Result<Vec<GateSpec>, SpecError> {
    let mut gates = Vec::new();
    let mut push = |name: String, source: GateSource, field: String, expr: &str, no_data, min_samples: u32| {
        gates.push(GateSpec {
            name,
            source,
            threshold: threshold(field, expr)?,
            no_data,
            min_samples: u64::from(min_samples),
        });
        Ok::<(), SpecError>(())
    };
    if let Some(sli) = &spec.gates.sli {
        for (key, expr) in [
            ("availability", &sli.availability),
            ("p95LatencyMs", &sli.p95_latency_ms),
            ("errorRate5xx", &sli.error_rate5xx),
            ("rateLimited429", &sli.rate_limited429),
            ("openaiFallbackRate", &sli.openai_fallback_rate),
            ("dbPoolUtilization", &sli.db_pool_utilization),
            ("redisP95LatencyMs", &sli.redis_p95_latency_ms),
        ] {
            if let Some(expr) = expr {
                push(
                    format!("sli.{key}"),
                    GateSource::Builtin(key),
                    format!("gates.sli.{key}"),
                    expr,
                    sli.no_data,
                    sli.min_samples,
                )?;
            }
        }
    }
    if let Some(redis) = &spec.gates.redis {
        // Requirements become gates on readings from the Redis probe (1/0 for TLS, auth,
        // Sentinel quorum, the eviction policy and a refusing plaintext port; the number of
        // connected replicas), so they share judgement, status and events with every other
        // gate.
        let rows = [
            (RedisRow::Tls, "requireTls", redis.require_tls.then_some("== 1")),
            (RedisRow::Auth, "requireAuth", redis.require_auth.then_some("== 1")),
            (
                RedisRow::Replica,
                "requireReplica",
                redis.require_replica.then_some(">= 1"),
            ),
            (
                RedisRow::SentinelQuorum,
                "requireSentinelQuorum",
                redis.require_sentinel_quorum.then_some("== 1"),
            ),
            (
                RedisRow::MaxmemoryPolicy,
                "maxmemoryPolicy",
                redis.maxmemory_policy.map(|_| "== 1"),
            ),
            (
                RedisRow::PlaintextRefused,
                "plaintextPort",
                redis.plaintext_port.map(|_| "== 1"),
            ),
            (RedisRow::P95LatencyMs, "p95LatencyMs", redis.p95_latency_ms.as_deref()),
            (
                RedisRow::FragmentationRatio,
                "fragmentationRatio",
                redis.fragmentation_ratio.as_deref(),
            ),
            (RedisRow::EvictedKeys, "evictedKeys", redis.evicted_keys.as_deref()),
        ];
        for (row, field, condition) in rows {
            if let Some(condition) = condition {
                push(
                    row.gate(),
                    GateSource::Redis(row),
                    format!("gates.redis.{field}"),
                    condition,
                    redis.no_data,
                    redis.min_samples,
                )?;
            }
        }
        // Read as 1 (passed) or 0 (failed) once judged; until then no data, which holds the
        // step whatever the gate's policy: a drill still running has not passed.
        if drill {
            push(
                DRILL_GATE.to_owned(),
                GateSource::FailoverDrill,
                "gates.redis.failoverDrill".to_owned(),
                "== 1",
                NoDataPolicy::Hold,
                1,
            )?;
        }
        // The canary's own view of Redis: its limiter's errors, from the metric source.
        if let Some(expr) = &redis.limiter_errors {
            push(
                "redis.limiterErrors".to_owned(),
                GateSource::Builtin("limiterRedisErrors"),
                "gates.redis.limiterErrors".to_owned(),
                expr,
                redis.no_data,
                redis.min_samples,
            )?;
        }
    }
    if let Some(replay) = &spec.gates.replay_protection {
        let probe = &replay.probe;
        one_port("gates.replayProtection.probe", probe.port, probe.port_name.as_deref())?;
        // The probe reads 1 when every expectation held (one pod accepted, the other refused
        // with token_replayed, its counter rose) and 0 otherwise.
        push(
            REPLAY_GATE.to_owned(),
            GateSource::ReplayProbe,
            "gates.replayProtection".to_owned(),
            "== 1",
            replay.no_data,
            1,
        )?;
    }
    if let Some(limit) = &spec.gates.rate_limit {
        let probe = &limit.probe;
        one_port("gates.rateLimit.probe", probe.port, probe.port_name.as_deref())?;
        if !(4..=2000).contains(&probe.max_requests) {
            return Err(invalid("gates.rateLimit.probe.maxRequests", "must be in 4..2000"));
        }
        push(
            RATE_LIMIT_GATE.to_owned(),
            GateSource::RateLimitProbe,
            "gates.rateLimit".to_owned(),
            "== 1",
            limit.no_data,
            1,
        )?;
    }
    for (i, custom) in spec.gates.custom.iter().enumerate() {
        push(
            format!("custom.{}", custom.name),
            GateSource::PromQl(custom.query.clone()),
            format!("gates.custom[{i}].condition"),
            &custom.condition,
            custom.no_data,
            custom.min_samples,
        )?;
    }
    let mut names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("gates.custom", "names must be unique"));
    }
    Ok(gates)
}

fn compile_post_promotion(spec: &PromotionSpec, p: &PostPromotion) -> Result<PostPromotionPlan, SpecError> {
    if spec.metrics.prometheus.is_none() {
        return Err(invalid(
            "postPromotion",
            "the watch reads the stable track from metrics.prometheus",
        ));
    }
    if spec.rollback.is_empty() || spec.rollback.iter().any(|c| c.query.is_some()) {
        return Err(invalid("postPromotion", "needs rollback criteria on built-in metrics"));
    }
    if p.rollback && spec.promotion.strategy == PromotionStrategy::External {
        return Err(invalid(
            "postPromotion.rollback",
            "with promotion.strategy external the stable image belongs to your pipeline",
        ));
    }
    Ok(PostPromotionPlan {
        watch: duration("postPromotion.watch", &p.watch)?,
        rollback: p.rollback,
    })
}

fn compile_criteria(spec: &PromotionSpec) -> Result<Vec<CriterionSpec>, SpecError> {
    let mut criteria: Vec<CriterionSpec> = Vec::with_capacity(spec.rollback.len());
    for (i, c) in spec.rollback.iter().enumerate() {
        let bound = match (c.above, c.below) {
            (Some(v), None) if v.is_finite() => Bound::Above(v),
            (None, Some(v)) if v.is_finite() => Bound::Below(v),
            _ => {
                return Err(invalid(
                    format!("rollback[{i}]"),
                    "exactly one of above or below must be set",
                ));
            }
        };
        if c.query.is_none() && !BUILTIN_METRICS.contains(&c.metric.as_str()) {
            return Err(invalid(
                format!("rollback[{i}].metric"),
                "no built-in query for this metric; set query",
            ));
        }
        if criteria.iter().any(|other| other.metric == c.metric) {
            return Err(invalid("rollback", "metric names must be unique"));
        }
        criteria.push(CriterionSpec {
            metric: c.metric.clone(),
            query: c.query.clone(),
            bound,
            window: duration(format!("rollback[{i}].for"), &c.for_)?,
            min_samples: u64::from(c.min_samples),
        });
    }
    Ok(criteria)
}

/// Pods are reached on a port number or on an EndpointSlice port name, never both.
fn one_port(field: &str, port: Option<u16>, port_name: Option<&str>) -> Result<(), SpecError> {
    if port.is_some() == port_name.is_some() {
        return Err(invalid(field, "exactly one of port or portName must be set"));
    }
    Ok(())
}

/// A label the spec may add to the built-in queries: a Prometheus label name, not reserved
/// (`__*`) and not `track`, which the operator sets itself.
fn is_extra_label(key: &str) -> bool {
    let mut chars = key.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    starts_well && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !key.starts_with("__") && key != "track"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Gate sources name their metrics as literals: each must be one of the contract's.
    #[test]
    fn every_builtin_gate_names_a_contract_metric() {
        let spec: PromotionSpec = serde_json::from_value(serde_json::json!({
            "stable": {"deployment": "s"}, "canary": {"deployment": "c"},
            "traffic": {"replicas": {}}, "steps": [{"weight": 100, "bake": "1m"}],
            "metrics": {"prometheus": {"address": "http://p:9090"}},
            "gates": {
                "sli": {"availability": "> 0", "p95LatencyMs": "> 0", "errorRate5xx": "> 0",
                        "rateLimited429": "> 0", "openaiFallbackRate": "> 0",
                        "dbPoolUtilization": "> 0", "redisP95LatencyMs": "> 0"},
                "redis": {"secretRef": "r", "limiterErrors": "== 0"}
            }
        }))
        .unwrap();
        let plan = Plan::compile(&spec).unwrap();
        let builtins: Vec<&str> = plan
            .gates
            .iter()
            .filter_map(|g| match g.source {
                GateSource::Builtin(metric) => Some(metric),
                _ => None,
            })
            .collect();
        assert_eq!(builtins.len(), 8);
        assert!(builtins.iter().all(|m| BUILTIN_METRICS.contains(m)), "{builtins:?}");
    }
}

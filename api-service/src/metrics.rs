//! The Prometheus series the canary operator judges this service by. Names and labels follow
//! the metric contract in README.md ("Metrics"); every series carries `track` as a constant label.

use std::borrow::Cow;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::track::Track;

/// Latency buckets; 0.22 and 0.25 are the canary gate (p95 ≤ 220 ms) and rollback (250 ms)
/// thresholds, so those quantiles are exact rather than interpolated.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.22, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Cow<'static, str>,
    pub method: Cow<'static, str>,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Cow<'static, str>,
    pub method: Cow<'static, str>,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are the contract's lowercase words
pub enum OpenAiOutcome {
    ok,
    fallback,
    error,
    disabled,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: OpenAiOutcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum PoolState {
    in_use,
    idle,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: PoolState,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Decision {
    allowed,
    limited,
    degraded,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum PrincipalKind {
    user,
    anonymous,
    tester,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub route: Cow<'static, str>,
    pub decision: Decision,
    pub principal: PrincipalKind,
}

/// Where a limiter's Redis call failed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum LimiterOp {
    /// (Re)connecting or resolving the primary through Sentinel.
    connect,
    /// The rate-limit script (with the replay check when present).
    eval,
    /// The script's budget ran out before Redis answered.
    timeout,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: LimiterOp,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: &'static str,
}

/// Redis round trips are sub-millisecond on a healthy network; the limiter's budget is 50 ms.
pub const REDIS_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: crate::auth::RejectReason,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: HistogramFamily<RouteLabels>,
    pub openai_requests: Family<OutcomeLabels, Counter>,
    pub db_pool_connections: Family<PoolLabels, Gauge>,
    pub db_pool_max_connections: Gauge,
    pub ratelimit_decisions: Family<DecisionLabels, Counter>,
    pub limiter_redis_errors: Family<OpLabels, Counter>,
    pub redis_command_duration: HistogramFamily<CommandLabels>,
    pub redis_connected: Gauge,
    pub redis_commands_in_flight: Gauge,
    pub jwt_rejected: Family<RejectLabels, Counter>,
    pub jwt_replay_prevented: Counter,
    pub jwt_replay_fallback: Counter,
    pub catalogue_reloads: Counter,
    pub catalogue_in_memory: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn redis_histogram() -> Histogram {
    Histogram::new(REDIS_BUCKETS)
}

impl Metrics {
    pub fn new(track: Track) -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_label((Cow::Borrowed("track"), Cow::Borrowed(track.as_str())));

        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            http_requests.clone(),
        );
        let http_request_duration: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency from first byte in to response head out",
            http_request_duration.clone(),
        );
        let openai_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "openai_requests",
            "Recommendation requests by how the ranking was produced",
            openai_requests.clone(),
        );
        let db_pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "PostgreSQL pool connections by state",
            db_pool_connections.clone(),
        );
        let db_pool_max_connections = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "Configured PostgreSQL pool size",
            db_pool_max_connections.clone(),
        );

        let ratelimit_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "ratelimit_decisions",
            "Rate-limit decisions by route, outcome and kind of principal",
            ratelimit_decisions.clone(),
        );
        let limiter_redis_errors = Family::<OpLabels, Counter>::default();
        registry.register(
            "limiter_redis_errors",
            "Redis failures seen by the rate limiter and replay check",
            limiter_redis_errors.clone(),
        );
        let redis_command_duration: HistogramFamily<CommandLabels> = Family::new_with_constructor(redis_histogram);
        registry.register(
            "redis_command_duration_seconds",
            "Redis round-trip time by command",
            redis_command_duration.clone(),
        );
        let redis_connected = Gauge::default();
        registry.register(
            "redis_connected",
            "1 while connected to the Redis primary",
            redis_connected.clone(),
        );
        let redis_commands_in_flight = Gauge::default();
        registry.register(
            "redis_commands_in_flight",
            "Commands awaiting a reply on the multiplexed Redis connection",
            redis_commands_in_flight.clone(),
        );

        let jwt_rejected = Family::<RejectLabels, Counter>::default();
        registry.register("jwt_rejected", "Bearer tokens refused, by reason", jwt_rejected.clone());
        let jwt_replay_prevented = Counter::default();
        registry.register(
            "jwt_replay_prevented",
            "Requests refused because their token's jti was already used",
            jwt_replay_prevented.clone(),
        );
        let jwt_replay_fallback = Counter::default();
        registry.register(
            "jwt_replay_fallback",
            "Replay checks answered by the per-instance jti cache because Redis did not answer",
            jwt_replay_fallback.clone(),
        );
        let catalogue_reloads = Counter::default();
        registry.register(
            "catalogue_reloads",
            "Loads of the in-memory catalogue (at start, on each change PostgreSQL notifies, and every 20 s on a quiet feed)",
            catalogue_reloads.clone(),
        );
        let catalogue_in_memory = Gauge::default();
        registry.register(
            "catalogue_in_memory",
            "1 while single-scholarship, eligibility and recommendation reads are served from memory (0: from PostgreSQL, the change feed is down)",
            catalogue_in_memory.clone(),
        );

        // Zero-valued series from the start, so `rate()` and ratios see 0 rather than no data.
        for outcome in [
            OpenAiOutcome::ok,
            OpenAiOutcome::fallback,
            OpenAiOutcome::error,
            OpenAiOutcome::disabled,
        ] {
            let _ = openai_requests.get_or_create(&OutcomeLabels { outcome });
        }
        for op in [LimiterOp::connect, LimiterOp::eval, LimiterOp::timeout] {
            let _ = limiter_redis_errors.get_or_create(&OpLabels { op });
        }
        for state in [PoolState::in_use, PoolState::idle] {
            let _ = db_pool_connections.get_or_create(&PoolLabels { state });
        }

        Self {
            registry: root,
            http_requests,
            http_request_duration,
            openai_requests,
            db_pool_connections,
            db_pool_max_connections,
            ratelimit_decisions,
            limiter_redis_errors,
            redis_command_duration,
            redis_connected,
            redis_commands_in_flight,
            jwt_rejected,
            jwt_replay_prevented,
            jwt_replay_fallback,
            catalogue_reloads,
            catalogue_in_memory,
        }
    }

    pub fn limiter_error(&self, op: LimiterOp) {
        self.limiter_redis_errors.get_or_create(&OpLabels { op }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

//! The Prometheus series the canary operator judges this service by. Names and labels follow
//! the metric contract in DESIGN.md; every series carries `track` as a constant label.

use std::borrow::Cow;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::Track;

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

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: HistogramFamily<RouteLabels>,
    pub openai_requests: Family<OutcomeLabels, Counter>,
    pub db_pool_connections: Family<PoolLabels, Gauge>,
    pub db_pool_max_connections: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
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

        // Zero-valued series from the start, so `rate()` and ratios see 0 rather than no data.
        for outcome in [
            OpenAiOutcome::ok,
            OpenAiOutcome::fallback,
            OpenAiOutcome::error,
            OpenAiOutcome::disabled,
        ] {
            let _ = openai_requests.get_or_create(&OutcomeLabels { outcome });
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
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

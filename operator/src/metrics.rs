//! The operator's own metrics and its HTTP endpoints (`/metrics`, `/livez`, `/readyz`).
//! Every label is from a closed set (error categories, phases, gate states): never object
//! names, which would make the series count grow with the cluster.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use canary_core::{GateState, Phase};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub errors: Family<CategoryLabel, Counter>,
    pub duration: Histogram,
    pub promotions: Family<PhaseLabel, Gauge>,
    pub gate_evaluations: Family<StateLabel, Counter>,
    pub breach_to_rollback: Histogram,
    pub leader: Gauge,
    /// Last phase seen per object, so the per-phase gauge can move objects between phases.
    phases: Mutex<HashMap<String, Phase>>,
    ready: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn phase_name(p: Phase) -> String {
    format!("{p:?}")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("canary_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        let errors = Family::<CategoryLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error category",
            errors.clone(),
        );
        let duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            duration.clone(),
        );
        let promotions = Family::<PhaseLabel, Gauge>::default();
        registry.register("promotions", "CanaryPromotions by phase", promotions.clone());
        let gate_evaluations = Family::<StateLabel, Counter>::default();
        registry.register(
            "gate_evaluations",
            "Gate evaluations by resulting state",
            gate_evaluations.clone(),
        );
        let breach_to_rollback = Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0]);
        registry.register(
            "breach_to_rollback_seconds",
            "From the start of the breach that triggered a rollback to the router carrying weight 0 (includes the criterion's `for` window)",
            breach_to_rollback.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        Self {
            registry,
            reconciles,
            errors,
            duration,
            promotions,
            gate_evaluations,
            breach_to_rollback,
            leader,
            phases: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    pub fn error(&self, category: &'static str) {
        self.errors
            .get_or_create(&CategoryLabel {
                category: category.to_owned(),
            })
            .inc();
    }

    pub fn gate(&self, state: GateState) {
        self.gate_evaluations
            .get_or_create(&StateLabel {
                state: format!("{state:?}"),
            })
            .inc();
    }

    /// Records `key`'s phase (or its removal with `None`).
    pub fn set_phase(&self, key: &str, phase: Option<Phase>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        let previous = match phase {
            Some(p) => phases.insert(key.to_owned(), p),
            None => phases.remove(key),
        };
        if previous == phase {
            return;
        }
        if let Some(old) = previous {
            self.promotions
                .get_or_create(&PhaseLabel { phase: phase_name(old) })
                .dec();
        }
        if let Some(new) = phase {
            self.promotions
                .get_or_create(&PhaseLabel { phase: phase_name(new) })
                .inc();
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// `/metrics`, `/livez` and `/readyz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }),
        )
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                // Ready once the API server answered: a standby replica is ready too (it is
                // healthy, just not acting), so rolling updates of the operator proceed.
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
                }
            }),
        )
        .with_state(metrics)
}

pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(metrics)).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

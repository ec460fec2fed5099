//! The operator's own metrics and its HTTP endpoints (`/metrics`, `/livez`, `/readyz`).
//! Aggregate series carry labels from closed sets (error categories, phases, gate states).
//! The per-promotion series (weight, gate values and thresholds) exist only while a promotion
//! is active and are removed when it reaches a terminal phase or is deleted, so their count
//! follows the promotions in flight, not the promotions stored in the cluster.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use canary_core::threshold::Threshold;
use canary_core::{CanaryPromotionStatus, GateState, Phase};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub category: &'static str,
    /// Pipeline step: observe, act, status, finalizer, reconcile.
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabel {
    pub probe: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// One active promotion.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PromotionLabel {
    pub namespace: String,
    pub promotion: String,
}

/// One gate of one active promotion.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabel {
    pub namespace: String,
    pub promotion: String,
    pub gate: String,
}

/// The per-promotion series one promotion owns, so they can all be removed together.
#[derive(Default)]
struct PromotionSeries {
    gates: Vec<GateLabel>,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub evaluation_lateness: Histogram,
    pub promotions: Family<PhaseLabel, Gauge>,
    pub gate_evaluations: Family<StateLabel, Counter>,
    pub breach_to_rollback: Histogram,
    pub late_rollbacks: Counter,
    pub post_promotion_breaches: Counter,
    notifications: Family<OutcomeLabel, Counter>,
    probe_duration: Family<ProbeLabel, Histogram>,
    probe_requests: Family<ProbeLabel, Counter>,
    pub leader: Gauge,
    pub shards: Gauge,
    pub unsharded: Gauge,
    pub overlapping: Gauge,
    weight: Family<PromotionLabel, Gauge>,
    gate_value: Family<GateLabel, Gauge<f64, AtomicU64>>,
    gate_threshold: Family<GateLabel, Gauge<f64, AtomicU64>>,
    active: Mutex<HashMap<PromotionLabel, PromotionSeries>>,
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
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error category and pipeline step",
            errors.clone(),
        );
        let duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            duration.clone(),
        );
        let evaluation_lateness = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "evaluation_lateness_seconds",
            "How long after its due time (the last evaluation plus the interval) an active promotion was evaluated again",
            evaluation_lateness.clone(),
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
        let late_rollbacks = Counter::default();
        registry.register(
            "late_rollbacks",
            "Rollbacks whose breach-to-weight-0 time exceeded the promotion's spec.rollbackWithin",
            late_rollbacks.clone(),
        );
        let post_promotion_breaches = Counter::default();
        registry.register(
            "post_promotion_breaches",
            "Rollback criteria that held for their window on the stable track during a post-promotion watch",
            post_promotion_breaches.clone(),
        );
        let notifications = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "notifications",
            "Webhook notifications by outcome: delivered, failed (after retries, or no URL), dropped (too many in flight)",
            notifications.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        let shards = Gauge::default();
        registry.register(
            "shards",
            "Live shards (Leases carrying a shard selector) seen by this shard's leader",
            shards.clone(),
        );
        let unsharded = Gauge::default();
        registry.register(
            "unsharded_promotions",
            "CanaryPromotions no live shard's selector selects: no operator reconciles them",
            unsharded.clone(),
        );
        let overlapping = Gauge::default();
        registry.register(
            "overlapping_promotions",
            "CanaryPromotions more than one live shard's selector selects",
            overlapping.clone(),
        );
        let weight = Family::<PromotionLabel, Gauge>::default();
        registry.register(
            "promotion_weight",
            "Canary traffic percentage an active promotion wants its router to carry",
            weight.clone(),
        );
        let gate_value = Family::<GateLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "gate_value",
            "Last reading of each gate of an active promotion (absent while the gate has no data)",
            gate_value.clone(),
        );
        let gate_threshold = Family::<GateLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "gate_threshold",
            "The number each gate's reading is compared with (the comparison is in the gate's status)",
            gate_threshold.clone(),
        );
        let probe_duration = Family::<ProbeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        });
        registry.register(
            "probe_duration_seconds",
            "Wall time of the operator's active probes, per run",
            probe_duration.clone(),
        );
        let probe_requests = Family::<ProbeLabel, Counter>::default();
        registry.register(
            "probe_requests",
            "HTTP requests the operator's active probes sent (token, probes, metrics reads)",
            probe_requests.clone(),
        );
        Self {
            registry,
            probe_duration,
            probe_requests,
            weight,
            gate_value,
            gate_threshold,
            active: Mutex::new(HashMap::new()),
            reconciles,
            errors,
            duration,
            evaluation_lateness,
            promotions,
            gate_evaluations,
            breach_to_rollback,
            late_rollbacks,
            post_promotion_breaches,
            notifications,
            leader,
            shards,
            unsharded,
            overlapping,
            phases: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    pub fn error(&self, category: &'static str, step: &'static str) {
        self.errors.get_or_create(&ErrorLabels { category, step }).inc();
    }

    /// Counts one notification by outcome (`delivered`, `failed`, `dropped`).
    pub fn notification(&self, outcome: &'static str) {
        self.notifications.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// One run of an active probe (`replay`): its wall time and the requests it sent.
    pub fn record_probe(&self, probe: &'static str, took: std::time::Duration, requests: u32) {
        let label = ProbeLabel { probe };
        self.probe_duration.get_or_create(&label).observe(took.as_secs_f64());
        self.probe_requests.get_or_create(&label).inc_by(u64::from(requests));
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

    /// Publishes an active promotion's weight and gate readings, or removes every series of
    /// it once `status` is terminal or the promotion is gone (`None`).
    pub fn set_progress(&self, namespace: &str, promotion: &str, status: Option<&CanaryPromotionStatus>) {
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        let key = PromotionLabel {
            namespace: namespace.to_owned(),
            promotion: promotion.to_owned(),
        };
        if let Some(old) = active.remove(&key) {
            self.weight.remove(&key);
            for gate in &old.gates {
                self.gate_value.remove(gate);
                self.gate_threshold.remove(gate);
            }
        }
        // A watching promotion carries no canary weight and judges no gates.
        let Some(status) = status.filter(|s| !s.phase.is_terminal() && s.phase != Phase::Watching) else {
            return;
        };
        self.weight.get_or_create(&key).set(i64::from(status.weight));
        let mut series = PromotionSeries::default();
        for gate in &status.gates {
            let label = GateLabel {
                namespace: namespace.to_owned(),
                promotion: promotion.to_owned(),
                gate: gate.name.clone(),
            };
            if let Some(value) = gate.value {
                self.gate_value.get_or_create(&label).set(value);
            }
            if let Ok(threshold) = Threshold::parse(&gate.threshold) {
                self.gate_threshold.get_or_create(&label).set(threshold.value);
            }
            series.gates.push(label);
        }
        active.insert(key, series);
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

#[cfg(test)]
mod tests {
    use super::*;
    use canary_core::GateStatus;

    fn status(phase: Phase, weight: u32) -> CanaryPromotionStatus {
        let gate = |name: &str, value: Option<f64>, threshold: &str| GateStatus {
            name: name.into(),
            state: GateState::Passing,
            value,
            threshold: threshold.into(),
            samples: None,
            since: chrono::DateTime::UNIX_EPOCH,
            message: None,
        };
        CanaryPromotionStatus {
            phase,
            weight,
            gates: vec![
                gate("sli.p95LatencyMs", Some(41.5), "<= 250"),
                gate("sli.availability", None, ">= 0.995"),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn active_promotions_publish_weight_and_gates_and_terminal_ones_vanish() {
        let metrics = Metrics::new();
        metrics.set_progress("team-a", "api", Some(&status(Phase::Progressing, 30)));
        let text = metrics.encode();
        assert!(
            text.contains(r#"canary_operator_promotion_weight{namespace="team-a",promotion="api"} 30"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"canary_operator_gate_value{namespace="team-a",promotion="api",gate="sli.p95LatencyMs"} 41.5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"canary_operator_gate_threshold{namespace="team-a",promotion="api",gate="sli.availability"} 0.995"#
            ),
            "{text}"
        );
        // No reading, no value series: a dashboard shows a gap, not a made-up zero.
        assert!(
            !text.contains(r#"gate_value{namespace="team-a",promotion="api",gate="sli.availability"}"#),
            "{text}"
        );

        metrics.set_progress("team-a", "api", Some(&status(Phase::Promoted, 0)));
        let text = metrics.encode();
        assert!(!text.contains(r#"promotion="api""#), "{text}");

        metrics.set_progress("team-a", "api", Some(&status(Phase::Progressing, 10)));
        metrics.set_progress("team-a", "api", None);
        assert!(!metrics.encode().contains(r#"promotion="api""#));
    }
}

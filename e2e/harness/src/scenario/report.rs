//! What a scenario run saw, and its rendering for people (the demo prints it; a failing
//! test prints it too).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;

use crate::error::Result;
use crate::ingress::{Segment, TrafficSplit};
use crate::kubelet::Rollout;
use crate::load::LoadStats;
use crate::manifests::{NAMESPACE, PROMOTION, STABLE};

/// The promotion's (phase, step, weight) from one moment on.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseChange {
    pub at: Duration,
    pub phase: String,
    pub step: String,
    pub weight: i64,
    pub gates: String,
}

impl PhaseChange {
    pub fn from_status(at: Duration, status: &Value) -> Self {
        let text = |key: &str| status[key].as_str().unwrap_or("").to_owned();
        Self {
            at,
            phase: text("phase"),
            step: text("stepLabel"),
            weight: status["weight"].as_i64().unwrap_or(0),
            gates: text("gatesSummary"),
        }
    }

    pub fn same_state(&self, other: &PhaseChange) -> bool {
        self.phase == other.phase && self.step == other.step && self.weight == other.weight
    }
}

/// One Event about the CanaryPromotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    pub kind: String,
    pub reason: String,
    pub note: String,
    pub count: i32,
}

#[derive(Debug, Clone)]
pub struct ScenarioReport {
    /// Final phase.
    pub phase: String,
    pub elapsed: Duration,
    /// Final `.status` of the CanaryPromotion.
    pub status: Value,
    pub timeline: Vec<PhaseChange>,
    pub events: Vec<EventLine>,
    /// Weights the ingress stand-in applied, with the requests routed under each.
    pub segments: Vec<Segment>,
    pub ingress_totals: TrafficSplit,
    pub load: LoadStats,
    /// Image of the stable Deployment's first container at the end.
    pub stable_image: Option<String>,
    pub rollouts: Vec<Rollout>,
    pub log_dir: PathBuf,
    pub operator_log: PathBuf,
    pub api_logs: Vec<PathBuf>,
    pub prometheus: String,
    pub steps: Vec<(u32, Duration)>,
}

impl ScenarioReport {
    /// For a release that is bad from its first request (the demo's bad ones): from the
    /// ingress first routing users to the canary to it routing none there. That is the whole
    /// user-visible cost of the bad release, measured where users meet it. `None` unless the
    /// promotion was rolled back.
    pub fn canary_exposure(&self) -> Option<Duration> {
        if self.phase != "RolledBack" {
            return None;
        }
        let first = self
            .segments
            .iter()
            .position(|s| s.weight.percent() > 0.0 && s.split.canary.requests > 0)?;
        let zero = self.segments[first..].iter().find(|s| s.weight.percent() == 0.0)?;
        zero.since.checked_sub(self.segments[first].since)
    }

    /// Non-zero canary weights the ingress applied, in order (percent, rounded).
    pub fn canary_weights_seen(&self) -> Vec<u32> {
        self.segments
            .iter()
            .map(|s| s.weight.percent().round() as u32)
            .filter(|w| *w > 0)
            .collect()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Outcome: {} after {:.0?}", self.phase, self.elapsed);
        let _ = writeln!(out, "\nPhase timeline (from the CanaryPromotion status):");
        for c in &self.timeline {
            let _ = writeln!(
                out,
                "  {:>6.1}s  {:<12} step {:<4} weight {:>3}  gates {}",
                c.at.as_secs_f64(),
                c.phase,
                c.step,
                c.weight,
                c.gates
            );
        }
        let _ = writeln!(out, "\nRequest split seen by the ingress stand-in, per canary weight:");
        let _ = writeln!(
            out,
            "  {:>7}  {:>6}  {:>8}  {:>8}  {:>8}  {:>5}",
            "from", "weight", "requests", "stable", "canary", "5xx"
        );
        for s in &self.segments {
            let _ = writeln!(
                out,
                "  {:>6.1}s  {:>5.0}%  {:>8}  {:>8}  {:>8}  {:>5}   canary share {:.1}%",
                s.since.as_secs_f64(),
                s.weight.percent(),
                s.split.requests(),
                s.split.stable.requests,
                s.split.canary.requests,
                s.split.failures(),
                s.split.canary_share() * 100.0
            );
        }
        let t = &self.ingress_totals;
        let _ = writeln!(
            out,
            "  total    {:>15}  {:>8}  {:>8}  {:>5}",
            t.requests(),
            t.stable.requests,
            t.canary.requests,
            t.failures()
        );
        let _ = writeln!(
            out,
            "\nLoad generator: {} sent, statuses {:?}, transport errors {}, skipped ticks {}",
            self.load.sent, self.load.by_status, self.load.transport_errors, self.load.skipped
        );
        let _ = writeln!(out, "\nEvents of canarypromotion/{PROMOTION}:");
        for e in &self.events {
            let count = if e.count > 1 {
                format!(" (x{})", e.count)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {:<8} {:<18} {}{count}", e.kind, e.reason, e.note);
        }
        let _ = writeln!(out, "\nKubelet stand-in rollouts:");
        for r in &self.rollouts {
            let _ = writeln!(
                out,
                "  {:>6.1}s  {} generation {} image {}",
                r.at.as_secs_f64(),
                r.deployment,
                r.generation,
                r.image.as_deref().unwrap_or("?")
            );
        }
        let _ = writeln!(
            out,
            "\nStable Deployment {NAMESPACE}/{STABLE} image: {}",
            self.stable_image.as_deref().unwrap_or("?")
        );
        let _ = writeln!(
            out,
            "Final status message: {}",
            self.status["message"].as_str().unwrap_or("")
        );
        if let Some(criteria) = self.status["rollback"].as_array() {
            let _ = writeln!(
                out,
                "Rollback criteria at the end (metric, value, threshold, breached since):"
            );
            for c in criteria {
                let _ = writeln!(
                    out,
                    "  {:<22} {:>10}  {:<8} {}",
                    c["metric"].as_str().unwrap_or(""),
                    c["value"]
                        .as_f64()
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.4}")),
                    c["threshold"].as_str().unwrap_or(""),
                    c["breachSince"].as_str().unwrap_or("-")
                );
            }
        }
        if let Some(took) = self.canary_exposure() {
            let _ = writeln!(
                out,
                "Bad canary exposed to users (first canary request at the ingress -> canary weight 0 at the ingress): {:.1} s",
                took.as_secs_f64()
            );
        }
        out
    }
}

/// Events regarding the CanaryPromotion, oldest first.
pub(super) async fn events(client: &Client) -> Result<Vec<EventLine>> {
    let api: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let mut events: Vec<Event> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(PROMOTION))
        .collect();
    events.sort_by_key(|e| {
        e.event_time
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    });
    Ok(events
        .into_iter()
        .map(|e| EventLine {
            kind: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
            count: e.series.map_or(1, |s| s.count),
        })
        .collect())
}

pub(super) async fn stable_image(client: &Client) -> Result<Option<String>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let deployment = api.get(STABLE).await?;
    Ok(deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image))
}

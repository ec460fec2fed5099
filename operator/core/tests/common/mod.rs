//! Shared fixtures: the runbook's promotion and a fake clock driving `decide`.
#![allow(clippy::unwrap_used, dead_code)]

use canary_core::{
    CanaryPromotionStatus, Decision, DeploymentObservation, Observation, PromotionSpec, Reading, decide,
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};

pub const IMAGE: &str = "registry.example/scholarship-api:v1.5.0";
pub const OLD_IMAGE: &str = "registry.example/scholarship-api:v1.4.2";

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap()
}

/// The runbook: 5 % → 25 % → 50 % → 100 % with 10 min / 6 h / 12 h / 30 min bakes.
pub fn runbook_spec() -> PromotionSpec {
    serde_json::from_value(serde_json::json!({
        "stable": {"deployment": "scholarship-api"},
        "canary": {"deployment": "scholarship-api-canary", "image": IMAGE},
        "traffic": {"nginx": {"canaryIngress": "scholarship-api-canary"}},
        "steps": [
            {"weight": 5, "bake": "10m"}, {"weight": 25, "bake": "6h"},
            {"weight": 50, "bake": "12h"}, {"weight": 100, "bake": "30m"}
        ],
        "interval": "30s",
        "metrics": {"prometheus": {"address": "http://prometheus.monitoring:9090"}},
        "gates": {
            "sli": {"availability": ">= 0.999", "p95LatencyMs": "<= 220", "minSamples": 100},
            "redis": {"secretRef": "redis-credentials", "requireTls": true, "evictedKeys": "== 0"},
            "custom": [{"name": "openai-fallback", "query": "q", "condition": "< 0.05"}]
        },
        "rollback": [
            {"metric": "p95LatencyMs", "above": 250, "for": "10m"},
            {"metric": "errorRate5xx", "above": 0.01, "for": "10m"}
        ],
        "promotion": {"strategy": "patch"}
    }))
    .unwrap()
}

pub const GATES: [&str; 5] = [
    "sli.availability",
    "sli.p95LatencyMs",
    "redis.tls",
    "redis.evictedKeys",
    "custom.openai-fallback",
];

pub fn value(value: f64) -> Reading {
    Reading::Value { value, samples: 1000 }
}

/// Every gate green, no criterion breached, the router following the operator.
pub fn green(generation: i64) -> Observation {
    let mut obs = Observation {
        generation,
        router_weight: None,
        stable: DeploymentObservation {
            image: Some(OLD_IMAGE.into()),
            available: true,
        },
        canary_image: Some(IMAGE.into()),
        ..Observation::default()
    };
    for (gate, v) in GATES.iter().zip([0.9995, 180.0, 1.0, 0.0, 0.01]) {
        obs.gates.insert((*gate).into(), value(v));
    }
    obs.criteria.insert("p95LatencyMs".into(), value(180.0));
    obs.criteria.insert("errorRate5xx".into(), value(0.001));
    obs
}

/// A fake clock driving `decide` the way the controller would: one call per interval,
/// the router following the decided weight and, with `patch`, the stable Deployment
/// taking the image on the next tick.
pub struct Sim {
    pub spec: PromotionSpec,
    pub status: CanaryPromotionStatus,
    pub obs: Observation,
    pub now: DateTime<Utc>,
    pub step: TimeDelta,
    pub log: Vec<Decision>,
}

impl Sim {
    pub fn new(spec: PromotionSpec) -> Self {
        Sim {
            spec,
            status: CanaryPromotionStatus::default(),
            obs: green(1),
            now: t0(),
            step: TimeDelta::seconds(30),
            log: Vec::new(),
        }
    }

    pub fn tick(&mut self) -> &Decision {
        self.obs.release = Some(canary_core::release_digest(&self.spec));
        let d = decide(&self.spec, &self.status, &self.obs, self.now);
        self.status = d.status.clone();
        self.obs.router_weight = Some(d.weight);
        if let Some(image) = &d.patch_stable_image {
            self.obs.stable.image = Some(image.clone());
        }
        self.now += self.step;
        self.log.push(d);
        self.log.last().unwrap()
    }

    /// Ticks for `span` of fake time.
    pub fn run_for(&mut self, span: TimeDelta) {
        let end = self.now + span;
        while self.now < end {
            self.tick();
        }
    }

    /// Ticks until `pred` holds (at most `limit` of fake time); returns the elapsed time.
    pub fn run_until(&mut self, limit: TimeDelta, pred: impl Fn(&CanaryPromotionStatus) -> bool) -> Option<TimeDelta> {
        let start = self.now;
        while self.now - start <= limit {
            self.tick();
            if pred(&self.status) {
                return Some(self.now - self.step - start);
            }
        }
        None
    }

    pub fn reasons(&self) -> Vec<&'static str> {
        self.log
            .iter()
            .flat_map(|d| d.events.iter().map(|e| e.reason.as_str()))
            .collect()
    }
}

//! What the shell observed this tick, as a plain value: the only input `decide` has about
//! the outside world.

use std::collections::BTreeMap;

use chrono::TimeDelta;

/// One reading of a gate or rollback metric.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// A value backed by `samples` observations (requests, probes, ...).
    Value { value: f64, samples: u64 },
    /// An active probe's outcome: a value judged like any other, and what the probe saw
    /// (which pod accepted, which refused and why), shown as the gate's message.
    Probed { value: f64, detail: String },
    /// The query returned nothing (no traffic yet, series absent).
    NoData,
    /// The provider failed (timeout, HTTP error, Redis unreachable).
    Error(String),
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct DeploymentObservation {
    /// Image of the Deployment's first container.
    pub image: Option<String>,
    /// The Deployment has rolled out this image and reports `Available`.
    pub available: bool,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Observation {
    /// `metadata.generation` of the CanaryPromotion.
    pub generation: i64,
    /// Gate readings by gate name (see [`crate::plan::Plan::gates`]); a gate without an
    /// entry has no data.
    pub gates: BTreeMap<String, Reading>,
    /// Rollback readings by criterion metric name.
    pub criteria: BTreeMap<String, Reading>,
    /// Canary weight the router currently carries, if it could be read.
    pub router_weight: Option<u32>,
    pub stable: DeploymentObservation,
    /// Image the canary Deployment runs.
    pub canary_image: Option<String>,
    /// Raw value of the `scholarship.dev/action` annotation.
    pub action: Option<String>,
    /// The window rates and quantiles are computed over (a breach can take this long to
    /// show in them).
    pub metric_window: TimeDelta,
    /// A failover the shell made this tick for the current step's drill.
    pub drill: Option<DrillEvent>,
    /// [`crate::spec::release_digest`] of the spec: a new generation with the same digest is
    /// the same release (a pause, a resume, a webhook edited) and carries on where it was.
    pub release: Option<String>,
}

/// What became of the shell's `SENTINEL FAILOVER` for a drill step.
#[derive(Clone, Debug, PartialEq)]
pub enum DrillEvent {
    /// The Sentinels failed the primary over at `at`: `from` before, `to` once they named
    /// another (unset if they had not yet when the shell stopped waiting).
    FailedOver {
        from: String,
        to: Option<String>,
        at: chrono::DateTime<chrono::Utc>,
    },
    /// It could not be made (no Sentinel answered, the Secret lacks them, the command was
    /// refused: no replica to promote, an unknown master name).
    Refused(String),
}

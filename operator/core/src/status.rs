//! What the operator records in `.status`: everything `decide` needs after a restart, as
//! timestamps rather than in-memory timers, plus what users read (printer columns).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Pending,
    Progressing,
    Paused,
    Promoting,
    Promoted,
    /// Promoted, and the rollback criteria are still judged on the stable track until
    /// `watchUntil` (`spec.postPromotion`).
    Watching,
    RollingBack,
    RolledBack,
    Failed,
}

impl Phase {
    /// Phases that only a new generation (or, for `Failed`, a `retry`) leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Promoted | Phase::RolledBack | Phase::Failed)
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryPromotionStatus {
    #[serde(default)]
    pub phase: Phase,
    /// 1-based index of the current step; 0 before the first step.
    #[serde(default)]
    pub current_step: u32,
    /// "current/total", for the STEP printer column.
    #[serde(default)]
    pub step_label: String,
    /// Canary traffic percentage the operator wants the router to carry.
    #[serde(default)]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<DateTime<Utc>>,
    /// Since when every gate has passed without interruption (unset while one does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates_passing_since: Option<DateTime<Utc>>,
    /// When `spec.paused` took effect; unset when not paused by spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
    /// When the last step finished and promotion began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_started_at: Option<DateTime<Utc>>,
    /// The image the stable Deployment ran when the promotion began: what a post-promotion
    /// rollback puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_stable_image: Option<String>,
    /// End of the post-promotion watch (`spec.postPromotion.watch` after the promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_until: Option<DateTime<Utc>>,
    /// Step (1-based) a `resume` action approved, for steps with `requireApproval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_step: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_canary_image: Option<String>,
    /// Digest of the spec's release fields (all but `paused` and `notify`) this run started
    /// with: a generation that changes only those carries on instead of starting over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_release: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateStatus>,
    /// "passing/total", for the GATES printer column.
    #[serde(default)]
    pub gates_summary: String,
    /// First gate that is not passing, for `-o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_gate: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<CriterionStatus>,
    /// The longest a breach can last before the canary carries no traffic, as the operator
    /// computes it: the slowest rollback criterion's `for`, plus one interval, plus the
    /// metric window. Compare with `spec.rollbackWithin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_bound: Option<String>,
    /// The Redis failover drill of the current (or last) drill step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillStatus>,
    #[serde(default)]
    pub message: String,
    /// The last `scholarship.dev/action` annotation value acted upon (acknowledgement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_action: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateState {
    Passing,
    Failing,
    NoData,
    Error,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    pub name: String,
    pub state: GateState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub threshold: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// When the gate entered its current state.
    pub since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CriterionStatus {
    pub metric: String,
    /// e.g. "> 250".
    pub threshold: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Start of the current uninterrupted breach; unset while not breached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breach_since: Option<DateTime<Utc>>,
}

/// A Redis failover drill: when the primary was failed over and what the canary did then.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    /// The step (1-based) that asked for it.
    pub step: u32,
    pub failed_over_at: DateTime<Utc>,
    /// The primary before the failover, and after it (`host:port` as the Sentinels name them).
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The canary's 5xx ratio when the failover was made, and the highest seen since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate5xx_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate5xx_max: Option<f64>,
    /// Unset while the drill's window runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<DrillResult>,
    #[serde(default)]
    pub message: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrillResult {
    Passed,
    Failed,
}

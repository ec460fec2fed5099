//! Pure decision core of the canary-promotion operator.
//!
//! Kube-free on purpose (no kube, tokio or HTTP dependency): the spec/status types, the
//! duration and threshold grammars, gate judgement, rollback windows, conditions and
//! [`decide`] are plain data and plain functions, so the whole policy is tested with a fake
//! clock and benchmarked in microseconds. The operator crate observes and acts around it.
//!
//! Policy in one paragraph: each step sets its weight; it advances only when every gate
//! has passed continuously for the step's whole bake (the bake counts from the first
//! green evaluation after the weight change); after the last step the canary image is
//! promoted (`patch` or `external`), then the canary weight goes to 0. Any rollback
//! criterion breached continuously for its `for` window sends the weight to 0 at once and
//! ends in `RolledBack`, which only a new generation leaves.

pub mod action;
pub mod conditions;
pub mod decide;
pub mod drill;
pub mod duration;
pub mod gates;
pub mod observation;
pub mod plan;
pub mod spec;
pub mod status;
pub mod threshold;
pub mod windows;

pub use action::{ANNOTATION as ACTION_ANNOTATION, Action};
pub use conditions::{Condition, ConditionStatus};
pub use decide::{Decision, Event, EventType, Reason, decide, decide_plan};
pub use observation::{DeploymentObservation, DrillEvent, Observation, Reading};
pub use plan::{GateSource, Plan, RedisRow, SpecError};
pub use spec::*;
pub use status::{CanaryPromotionStatus, CriterionStatus, DrillResult, DrillStatus, GateState, GateStatus, Phase};

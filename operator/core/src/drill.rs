//! The Redis failover drill of a step: the shell fails the primary over once the step's
//! weight is applied and reports it ([`DrillEvent`]); from then on, for the drill's window,
//! the canary's 5xx ratio must not rise above both its value at the failover and the step's
//! `sli.errorRate5xx` gate, and at the end its limiter's Redis errors must be back to zero and
//! the step's latency gates passing. The end is the drill's window, and at least the metric
//! window plus an interval after the failover, so the last readings describe the canary after
//! it only. The verdict is the reading of gate `redis.failoverDrill` (1 passed, 0 failed, no
//! data while the window runs), kept in `status.drill` for the rest of the step.

use chrono::{DateTime, Utc};

use crate::observation::{DrillEvent, Observation, Reading};
use crate::plan::{DrillPlan, GateSource, GateSpec, Plan};
use crate::status::{DrillResult, DrillStatus};

/// Readings the shell takes on drill steps, under these names, beside the gates'.
pub const DRILL_5XX: &str = "redis.failoverDrill/errorRate5xx";
pub const DRILL_LIMITER_ERRORS: &str = "redis.failoverDrill/limiterRedisErrors";

/// What one tick made of the drill.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillTick {
    pub status: Option<DrillStatus>,
    /// The drill gate's reading this tick.
    pub reading: Reading,
    /// Shown as the gate's message while it has no reading (a drill waiting or running).
    pub note: Option<String>,
    /// Worth an Event: `(warning, message)`.
    pub event: Option<(bool, String)>,
}

fn value(obs: &Observation, name: &str) -> Option<f64> {
    match obs.gates.get(name) {
        Some(Reading::Value { value, .. }) => Some(*value),
        _ => None,
    }
}

fn secs(d: chrono::TimeDelta) -> i64 {
    d.num_seconds()
}

/// Advances the drill of `step` (1-based), whose judgement is `drill`.
pub fn tick(
    plan: &Plan,
    drill: DrillPlan,
    step: u32,
    previous: Option<&DrillStatus>,
    obs: &Observation,
    now: DateTime<Utc>,
) -> DrillTick {
    let Some(previous) = previous.filter(|d| d.step == step) else {
        return start(step, obs);
    };
    let mut st = previous.clone();
    if let Some(result) = st.result {
        return DrillTick {
            reading: verdict_reading(result, &st),
            status: Some(st),
            note: None,
            event: None,
        };
    }
    if let Some(now_5xx) = value(obs, DRILL_5XX) {
        st.error_rate5xx_max = Some(st.error_rate5xx_max.map_or(now_5xx, |m| m.max(now_5xx)));
    }
    let elapsed = now.signed_duration_since(st.failed_over_at);
    let judged_after = drill.window.max(obs.metric_window + plan.interval);
    if elapsed < judged_after {
        let note = format!(
            "drill running: {} → {}, {}s of {}s",
            st.from,
            st.to.as_deref().unwrap_or("?"),
            secs(elapsed),
            secs(judged_after)
        );
        return running(st, note);
    }
    match verdict(plan, &st, obs) {
        None => running(
            st,
            "drill window over: waiting for the limiter and latency readings".to_owned(),
        ),
        Some(broken) => {
            let passed = broken.is_empty();
            let head = format!("primary {} → {}", st.from, st.to.as_deref().unwrap_or("?"));
            st.message = if passed {
                let max = st.error_rate5xx_max.unwrap_or_default();
                format!(
                    "{head}: 5xx ratio at most {max} after it (before: {}), limiter errors back to 0, latency gates passing",
                    before_text(&st)
                )
            } else {
                format!("{head}: {}", broken.join("; "))
            };
            let result = if passed {
                DrillResult::Passed
            } else {
                DrillResult::Failed
            };
            st.result = Some(result);
            let event = (
                !passed,
                format!(
                    "Redis failover drill {}: {}",
                    if passed { "passed" } else { "failed" },
                    st.message
                ),
            );
            DrillTick {
                reading: verdict_reading(result, &st),
                status: Some(st),
                note: None,
                event: Some(event),
            }
        }
    }
}

/// Before the failover: the shell reports it once the step's weight is applied.
fn start(step: u32, obs: &Observation) -> DrillTick {
    match &obs.drill {
        Some(DrillEvent::FailedOver { from, to, at }) => {
            let before = value(obs, DRILL_5XX);
            let message = format!(
                "step {step}: Redis primary {from} failed over to {}",
                to.as_deref().unwrap_or("(not yet named)")
            );
            let st = DrillStatus {
                step,
                failed_over_at: *at,
                from: from.clone(),
                to: to.clone(),
                error_rate5xx_before: before,
                // Only readings taken after the failover count.
                error_rate5xx_max: None,
                result: None,
                message: message.clone(),
            };
            DrillTick {
                status: Some(st),
                reading: Reading::NoData,
                note: Some("drill running: failed over just now".to_owned()),
                event: Some((false, format!("Redis failover drill: {message}"))),
            }
        }
        Some(DrillEvent::Refused(reason)) => DrillTick {
            status: None,
            reading: Reading::Error(format!("the drill's failover was not made: {reason}")),
            note: None,
            event: None,
        },
        None => DrillTick {
            status: None,
            reading: Reading::NoData,
            note: Some(
                "drill waiting: Redis is failed over once the step's weight is applied (and not while paused)"
                    .to_owned(),
            ),
            event: None,
        },
    }
}

fn running(st: DrillStatus, note: String) -> DrillTick {
    DrillTick {
        status: Some(st),
        reading: Reading::NoData,
        note: Some(note),
        event: None,
    }
}

/// The drill gate's reading once judged: 1 passed, 0 failed, with the verdict's message.
fn verdict_reading(result: DrillResult, st: &DrillStatus) -> Reading {
    Reading::Probed {
        value: if result == DrillResult::Passed { 1.0 } else { 0.0 },
        detail: st.message.clone(),
    }
}

fn before_text(st: &DrillStatus) -> String {
    st.error_rate5xx_before
        .map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}

/// The broken expectations (empty: passed), or `None` while a reading it needs is missing
/// (no 5xx ratio read since the failover, no limiter or latency reading now).
fn verdict(plan: &Plan, st: &DrillStatus, obs: &Observation) -> Option<Vec<String>> {
    let mut broken = Vec::new();
    let max = st.error_rate5xx_max?;
    let before = st.error_rate5xx_before.unwrap_or(0.0);
    // A ratio over a sliding window moves with traffic: a rise counts only past both its
    // value at the failover and the step's own 5xx gate.
    let gate = plan
        .gates
        .iter()
        .find(|g| g.source == GateSource::Builtin("errorRate5xx"));
    if max > before + 1e-9 && gate.is_none_or(|g| !g.threshold.holds(max)) {
        let limit = gate.map_or_else(String::new, |g| format!(", beyond its gate {}", g.threshold));
        broken.push(format!(
            "the canary's 5xx ratio rose from {} to {max}{limit}",
            before_text(st)
        ));
    }
    let limiter = value(obs, DRILL_LIMITER_ERRORS)?;
    if limiter > 0.0 {
        broken.push(format!(
            "limiter errors did not return to zero ({limiter} in the last metric window)"
        ));
    }
    // The step's latency gates: request p95 and the API's own Redis round trips.
    let latency = |g: &&GateSpec| matches!(g.source, GateSource::Builtin("p95LatencyMs" | "redisP95LatencyMs"));
    for gate in plan.gates.iter().filter(latency) {
        let latency = value(obs, &gate.name)?;
        if !gate.threshold.holds(latency) {
            broken.push(format!("{} is {latency} (want {})", gate.name, gate.threshold));
        }
    }
    Some(broken)
}

//! The Redis failover drill of a step, through `decide` with a fake clock: the step waits for
//! the shell's failover, holds while the drill's window runs, then passes or fails the drill
//! gate on the readings around the failover.
#![allow(clippy::unwrap_used)]

mod common;

use canary_core::drill::{DRILL_5XX, DRILL_LIMITER_ERRORS};
use canary_core::{DrillEvent, DrillResult, GateState, Phase, Plan};
use chrono::TimeDelta;
use common::*;

const DRILL: &str = "redis.failoverDrill";

/// The runbook with a drill at step 2 (25 %), judged for 5 minutes.
fn drill_spec() -> canary_core::PromotionSpec {
    let mut spec = runbook_spec();
    spec.steps[1].redis_failover_drill = true;
    spec.gates.redis.as_mut().unwrap().failover_drill =
        Some(serde_json::from_value(serde_json::json!({"window": "5m"})).unwrap());
    spec
}

/// Into step 2 with the drill readings green (no 5xx, no limiter errors).
fn at_step_two() -> Sim {
    let mut sim = Sim::new(drill_spec());
    sim.obs.gates.insert(DRILL_5XX.into(), value(0.0));
    sim.obs.gates.insert(DRILL_LIMITER_ERRORS.into(), value(0.0));
    sim.run_until(TimeDelta::hours(1), |s| s.current_step == 2).unwrap();
    // The tick that advanced judged step 1's gates; this one judges step 2's.
    sim.tick();
    sim
}

fn drill_row(sim: &Sim) -> Option<&canary_core::GateStatus> {
    sim.status.gates.iter().find(|g| g.name == DRILL)
}

fn fail_over(sim: &mut Sim) {
    sim.obs.drill = Some(DrillEvent::FailedOver {
        from: "10.0.0.1:6379".into(),
        to: Some("10.0.0.2:6379".into()),
        at: sim.now,
    });
    sim.tick();
    sim.obs.drill = None;
}

#[test]
fn the_drill_gate_is_judged_on_drill_steps_only() {
    let plan = Plan::compile(&drill_spec()).unwrap();
    let gate = plan.gates.iter().find(|g| g.name == DRILL).unwrap();
    assert!(!plan.applies_at(gate, 1) && plan.applies_at(gate, 2) && !plan.applies_at(gate, 3));
    let sim = at_step_two();
    // Step 1 judged five gates; step 2 adds the drill, waiting for the failover.
    assert!(
        sim.log
            .iter()
            .any(|d| d.status.current_step == 1 && d.status.gates_summary == "5/5")
    );
    let row = drill_row(&sim).unwrap();
    assert_eq!(row.state, GateState::NoData);
}

#[test]
fn a_step_waits_for_its_drill_and_passes_it_when_the_canary_rides_it_out() {
    let mut sim = at_step_two();
    // No failover yet: the step holds however long its bake.
    sim.run_for(TimeDelta::hours(7));
    assert_eq!(sim.status.current_step, 2);
    assert!(drill_row(&sim).unwrap().message.as_deref().unwrap().contains("waiting"));

    fail_over(&mut sim);
    let drill = sim.status.drill.clone().unwrap();
    assert_eq!(
        (drill.step, drill.from.as_str(), drill.result),
        (2, "10.0.0.1:6379", None)
    );
    // The window runs: no data, holding.
    sim.run_for(TimeDelta::minutes(4));
    assert_eq!(drill_row(&sim).unwrap().state, GateState::NoData);
    assert!(
        drill_row(&sim)
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .starts_with("drill running")
    );
    sim.run_for(TimeDelta::minutes(2));
    let row = drill_row(&sim).unwrap();
    assert_eq!((row.state, row.value), (GateState::Passing, Some(1.0)), "{row:?}");
    assert_eq!(sim.status.drill.as_ref().unwrap().result, Some(DrillResult::Passed));
    // Then the step bakes as usual (6 h from the first all-green tick) and advances.
    sim.run_until(TimeDelta::hours(7), |s| s.current_step == 3).unwrap();
    sim.tick();
    assert!(drill_row(&sim).is_none(), "no drill at step 3");
    let reasons = sim.reasons();
    assert_eq!(
        reasons.iter().filter(|r| **r == "FailoverDrill").count(),
        2,
        "made, passed"
    );
}

#[test]
fn a_rise_in_5xx_during_the_window_fails_the_drill_even_if_it_recovers() {
    let mut sim = at_step_two();
    fail_over(&mut sim);
    sim.obs.gates.insert(DRILL_5XX.into(), value(0.02));
    sim.run_for(TimeDelta::minutes(1));
    sim.obs.gates.insert(DRILL_5XX.into(), value(0.0));
    sim.run_for(TimeDelta::minutes(5));
    let row = drill_row(&sim).unwrap();
    assert_eq!((row.state, row.value), (GateState::Failing, Some(0.0)));
    assert!(
        row.message
            .as_deref()
            .unwrap()
            .contains("5xx ratio rose from 0 to 0.02"),
        "{row:?}"
    );
    // A failed drill is a failing gate: the step never advances, and the drill is not redone.
    sim.run_for(TimeDelta::hours(7));
    assert_eq!(sim.status.current_step, 2);
    assert_eq!(sim.status.phase, Phase::Progressing);
    assert_eq!(sim.status.drill.as_ref().unwrap().result, Some(DrillResult::Failed));
}

#[test]
fn limiter_errors_that_stay_and_latency_that_stays_high_fail_the_drill() {
    let mut sim = at_step_two();
    fail_over(&mut sim);
    sim.obs.gates.insert(DRILL_LIMITER_ERRORS.into(), value(37.0));
    sim.obs.gates.insert("sli.p95LatencyMs".into(), value(900.0));
    sim.run_for(TimeDelta::minutes(6));
    let message = drill_row(&sim).unwrap().message.clone().unwrap();
    assert!(
        message.contains("limiter errors did not return to zero (37"),
        "{message}"
    );
    assert!(message.contains("sli.p95LatencyMs is 900 (want <= 220)"), "{message}");
}

#[test]
fn a_rise_within_the_step_s_5xx_gate_is_noise_and_no_reading_is_no_verdict() {
    let mut spec = drill_spec();
    spec.gates.sli.as_mut().unwrap().error_rate5xx = Some("<= 0.01".into());
    let mut sim = Sim::new(spec);
    sim.obs.gates.insert("sli.errorRate5xx".into(), value(0.001));
    sim.obs.gates.insert(DRILL_5XX.into(), value(0.001));
    sim.obs.gates.insert(DRILL_LIMITER_ERRORS.into(), value(0.0));
    sim.run_until(TimeDelta::hours(1), |s| s.current_step == 2).unwrap();
    sim.tick();
    fail_over(&mut sim);
    // From 0.001 to 0.004: above its value at the failover, within the gate's 0.01.
    sim.obs.gates.insert(DRILL_5XX.into(), value(0.004));
    sim.run_for(TimeDelta::minutes(6));
    assert_eq!(sim.status.drill.as_ref().unwrap().result, Some(DrillResult::Passed));

    // A canary whose 5xx ratio cannot be read after the failover gets no verdict.
    let mut sim = at_step_two();
    fail_over(&mut sim);
    sim.obs.gates.remove(DRILL_5XX);
    sim.run_for(TimeDelta::minutes(10));
    assert_eq!(sim.status.drill.as_ref().unwrap().result, None);
    assert_eq!(drill_row(&sim).unwrap().state, GateState::NoData);
}

#[test]
fn the_verdict_waits_for_the_metric_window_to_hold_only_readings_after_the_failover() {
    let mut sim = at_step_two();
    // A metric window of 10 minutes: a 5-minute drill is judged after 10m30s (window + interval).
    sim.obs.metric_window = TimeDelta::minutes(10);
    fail_over(&mut sim);
    sim.run_for(TimeDelta::minutes(10));
    assert_eq!(sim.status.drill.as_ref().unwrap().result, None);
    sim.run_for(TimeDelta::minutes(1));
    assert_eq!(sim.status.drill.as_ref().unwrap().result, Some(DrillResult::Passed));
}

#[test]
fn a_refused_failover_is_an_error_row_and_is_tried_again() {
    let mut sim = at_step_two();
    sim.obs.drill = Some(DrillEvent::Refused(
        "sentinel 10.0.0.9:26379: connection refused".into(),
    ));
    sim.tick();
    let row = drill_row(&sim).unwrap();
    assert_eq!(row.state, GateState::Error);
    assert!(
        row.message
            .as_deref()
            .unwrap()
            .starts_with("the drill's failover was not made: sentinel")
    );
    assert_eq!(sim.status.drill, None, "nothing recorded: the shell tries again");
    fail_over(&mut sim);
    assert!(sim.status.drill.is_some());
}

#[test]
fn a_drill_without_the_opt_in_is_refused_naming_the_field() {
    let mut spec = runbook_spec();
    spec.steps[1].redis_failover_drill = true;
    let error = Plan::compile(&spec).unwrap_err().to_string();
    assert_eq!(
        error,
        "spec.steps[1].redisFailoverDrill: a Redis failover drill needs the opt-in gates.redis.failoverDrill"
    );
}

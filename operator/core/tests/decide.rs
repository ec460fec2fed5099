//! Table tests of `decide` on a fake clock, following the runbook's timeline.
#![allow(clippy::unwrap_used)]

mod common;

use canary_core::{CanaryPromotionStatus, ConditionStatus, Observation, Phase, PromotionStrategy, Reading, decide};
use chrono::TimeDelta;
use common::*;

fn h(n: i64) -> TimeDelta {
    TimeDelta::hours(n)
}
fn m(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

fn condition(status: &CanaryPromotionStatus, type_: &str) -> (ConditionStatus, String) {
    let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status, c.reason.clone())
}

#[test]
fn green_runbook_promotes_with_the_expected_timeline() {
    let mut sim = Sim::new(runbook_spec());
    let took = sim
        .run_until(h(24), |s| s.phase == Phase::Promoted)
        .expect("promoted within 24h");
    // 10m + 6h + 12h + 30m of bakes, plus one interval per step for the first green
    // evaluation at the new weight and one for the stable image to roll out.
    assert!(took >= h(18) + m(40), "too fast: {took}");
    assert!(took <= h(18) + m(45), "too slow: {took}");

    let mut weights: Vec<u32> = sim.log.iter().map(|d| d.weight).collect();
    weights.dedup();
    assert_eq!(weights, [5, 25, 50, 100, 0]);
    let reasons = sim.reasons();
    assert_eq!(reasons.iter().filter(|r| **r == "StepAdvanced").count(), 3);
    assert!(reasons.contains(&"Started") && reasons.contains(&"Promoting") && reasons.contains(&"Promoted"));
    assert!(!reasons.contains(&"GateFailing"));
    assert!(sim.log.iter().any(|d| d.patch_stable_image.as_deref() == Some(IMAGE)));

    let s = &sim.status;
    assert_eq!(
        (s.weight, s.step_label.as_str(), s.gates_summary.as_str()),
        (0, "4/4", "5/5")
    );
    assert_eq!(condition(s, "Promoted").0, ConditionStatus::True);
    assert_eq!(condition(s, "Ready").0, ConditionStatus::True);
    assert_eq!(condition(s, "RolledBack").0, ConditionStatus::False);
    // Terminal: nothing more to do until the object changes.
    assert_eq!(sim.tick().requeue_after, None);
}

#[test]
fn step_does_not_advance_before_its_bake() {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(m(10)); // the first green tick is at +30s, so 10m is not yet enough
    assert_eq!(sim.status.weight, 5);
    sim.run_for(m(1));
    assert_eq!(sim.status.weight, 25);
    assert_eq!(sim.status.step_label, "2/4");
    sim.run_for(h(5) + m(59));
    assert_eq!(sim.status.weight, 25);
}

/// Runs into step 2, then breaches p95 and decides at exact offsets from the first breach.
fn breach_for(span: TimeDelta, value: f64) -> canary_core::Decision {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(h(1));
    assert_eq!(sim.status.weight, 25);
    sim.obs.criteria.insert("p95LatencyMs".into(), common::value(value));
    let start = sim.now;
    let first = decide(&sim.spec, &sim.status, &sim.obs, start);
    assert_eq!(first.status.phase, Phase::Progressing);
    decide(&sim.spec, &first.status, &sim.obs, start + span)
}

#[test]
fn p95_breach_rolls_back_only_after_the_full_window() {
    let d = breach_for(m(9) + TimeDelta::seconds(59), 262.0);
    assert_eq!((d.status.phase, d.weight), (Phase::Progressing, 25));

    let d = breach_for(m(10), 262.0);
    assert_eq!((d.status.phase, d.weight), (Phase::RollingBack, 0));
    assert!(
        d.status.message.contains("p95LatencyMs 262 > 250 for 10m"),
        "{}",
        d.status.message
    );
    let (status, reason) = condition(&d.status, "RolledBack");
    assert_eq!((status, reason.as_str()), (ConditionStatus::True, "RollbackCriterion"));
    assert!(d.events.iter().any(|e| e.reason.as_str() == "RollbackStarted"));

    // The value sits exactly at the threshold: not a breach ("above" is strict).
    let d = breach_for(h(1), 250.0);
    assert_eq!(d.status.phase, Phase::Progressing);
}

#[test]
fn a_breach_that_clears_resets_the_window() {
    let mut sim = Sim::new(runbook_spec());
    sim.step = TimeDelta::seconds(30);
    sim.run_for(h(1));
    sim.obs.criteria.insert("p95LatencyMs".into(), value(262.0));
    sim.run_for(m(9));
    sim.obs.criteria.insert("p95LatencyMs".into(), value(200.0));
    sim.tick();
    sim.obs.criteria.insert("p95LatencyMs".into(), value(262.0));
    sim.run_for(m(9) + TimeDelta::seconds(30));
    assert_eq!(sim.status.phase, Phase::Progressing, "{}", sim.status.message);
    // No data neither clears nor extends the window.
    sim.obs.criteria.insert("p95LatencyMs".into(), Reading::NoData);
    sim.tick();
    sim.obs.criteria.insert("p95LatencyMs".into(), value(262.0));
    sim.run_for(m(1));
    assert_eq!(sim.status.phase, Phase::RolledBack);
}

#[test]
fn rolled_back_is_final_until_a_new_generation() {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(h(1));
    sim.obs.criteria.insert("errorRate5xx".into(), value(0.05));
    sim.run_for(m(11));
    assert_eq!(sim.status.phase, Phase::RolledBack);
    assert!(sim.reasons().contains(&"RolledBack"));

    // Healthy again, a new image on the canary Deployment: still rolled back.
    sim.obs = green(1);
    sim.obs.canary_image = Some("registry.example/scholarship-api:v1.5.1".into());
    sim.spec.canary.image = None;
    sim.run_for(h(30));
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::RolledBack, 0));

    sim.obs.generation = 2;
    sim.tick();
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Progressing, 5));
    assert!(sim.reasons().contains(&"SpecChanged"));
}

#[test]
fn flapping_gate_keeps_restarting_the_bake() {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(m(11));
    assert_eq!(sim.status.weight, 25);
    // Fail for one tick every 5 hours: a 6 h bake never completes.
    for _ in 0..4 {
        sim.run_for(h(5));
        sim.obs.gates.insert("sli.p95LatencyMs".into(), value(300.0));
        sim.tick();
        assert_eq!(sim.status.failing_gate.as_deref(), Some("sli.p95LatencyMs"));
        assert_eq!(sim.status.gates_summary, "4/5");
        sim.obs.gates.insert("sli.p95LatencyMs".into(), value(180.0));
    }
    assert_eq!(sim.status.weight, 25);
    let reasons = sim.reasons();
    assert_eq!(reasons.iter().filter(|r| **r == "GateFailing").count(), 4);
    assert_eq!(reasons.iter().filter(|r| **r == "GateRecovered").count(), 3);
    // Once steady, it advances one bake after the last recovery.
    sim.run_for(h(6));
    assert_eq!(sim.status.weight, 25);
    sim.run_for(m(1));
    assert_eq!(sim.status.weight, 50);
}

/// Step 2 at 25 %, a 10-minute data gap on the SLI gates at +3 h; returns when step 3
/// started, measured from the start of step 2.
fn gap_in_step_two(policy: &str, gap: TimeDelta) -> Option<TimeDelta> {
    let mut spec = runbook_spec();
    spec.gates.sli.as_mut().unwrap().no_data = serde_json::from_value(policy.into()).unwrap();
    let mut sim = Sim::new(spec);
    sim.run_for(m(11));
    assert_eq!(sim.status.weight, 25);
    let start = sim.now;
    sim.run_for(h(3));
    for gate in ["sli.availability", "sli.p95LatencyMs"] {
        sim.obs.gates.insert(gate.into(), Reading::NoData);
    }
    sim.run_for(gap);
    if policy == "hold" {
        assert_eq!(sim.status.gates[0].state, canary_core::GateState::NoData);
        assert!(sim.status.message.contains("holding"), "{}", sim.status.message);
    }
    sim.obs = green(1);
    sim.obs.router_weight = Some(25);
    sim.run_until(h(20), |s| s.weight == 50)
        .map(|_| sim.now - sim.step - start)
}

#[test]
fn no_data_policies() {
    // hold: the gap blocks nothing at +3 h and does not restart the bake.
    let hold = gap_in_step_two("hold", m(10)).unwrap();
    assert!(hold <= h(6) + m(1), "hold took {hold}");
    // fail: the gap is a failure; the bake restarts when data returns.
    let fail = gap_in_step_two("fail", m(10)).unwrap();
    assert!(fail >= h(9) + m(10), "fail took {fail}");
    // pass: no data counts as green.
    let pass = gap_in_step_two("pass", m(10)).unwrap();
    assert!(pass <= h(6) + m(1), "pass took {pass}");
    // hold: no advance while data is missing, even past the bake.
    let held = gap_in_step_two("hold", h(7)).unwrap();
    assert!(held >= h(10), "hold advanced without data: {held}");
}

#[test]
fn too_few_samples_count_as_no_data() {
    let mut spec = runbook_spec();
    spec.gates.sli.as_mut().unwrap().no_data = canary_core::NoDataPolicy::Fail;
    let mut sim = Sim::new(spec);
    sim.obs.gates.insert(
        "sli.availability".into(),
        Reading::Value {
            value: 1.0,
            samples: 99,
        },
    );
    sim.run_for(h(2));
    assert_eq!(sim.status.weight, 5);
    assert_eq!(sim.status.failing_gate.as_deref(), Some("sli.availability"));
    assert_eq!(sim.status.gates[0].state, canary_core::GateState::NoData);
}

#[test]
fn pause_holds_weight_and_resume_restarts_the_bake() {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(h(3));
    assert_eq!(sim.status.weight, 25);
    sim.spec.paused = true;
    sim.run_for(h(10));
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Paused, 25));
    assert_eq!(condition(&sim.status, "Progressing").0, ConditionStatus::False);
    // Rollback criteria still apply while paused.
    let mut breached = sim.obs.clone();
    breached.criteria.insert("p95LatencyMs".into(), value(400.0));
    let d = decide(&sim.spec, &sim.status, &breached, sim.now);
    let d = decide(&sim.spec, &d.status, &breached, sim.now + m(10));
    assert_eq!(d.status.phase, Phase::RollingBack);

    sim.spec.paused = false;
    sim.tick();
    assert_eq!(sim.status.phase, Phase::Progressing);
    // The weight did not change, so the bake counts from the resume itself.
    sim.run_for(h(6) - m(1));
    assert_eq!(sim.status.weight, 25);
    sim.run_for(m(2));
    assert_eq!(sim.status.weight, 50);
    let reasons = sim.reasons();
    assert_eq!(reasons.iter().filter(|r| **r == "Paused").count(), 1);
    assert_eq!(reasons.iter().filter(|r| **r == "Resumed").count(), 1);
}

/// As on a real API server: editing `paused` bumps the generation. It is the same release,
/// so the pause holds the current step and the resume carries on from it, never from step 1.
#[test]
fn pausing_and_resuming_through_a_new_generation_keeps_the_step() {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(h(3));
    assert_eq!((sim.status.current_step, sim.status.weight), (2, 25));
    sim.spec.paused = true;
    sim.obs.generation = 2;
    sim.run_for(h(1));
    assert_eq!(
        (sim.status.phase, sim.status.current_step, sim.status.weight),
        (Phase::Paused, 2, 25)
    );
    assert_eq!(sim.status.observed_generation, Some(2));
    sim.spec.paused = false;
    sim.obs.generation = 3;
    sim.tick();
    assert_eq!(
        (sim.status.phase, sim.status.current_step, sim.status.weight),
        (Phase::Progressing, 2, 25)
    );
    assert!(
        !sim.log
            .iter()
            .any(|d| d.weight == 5 && d.status.observed_generation.unwrap_or(0) > 1)
    );
    // Any other change is a new release: it starts again from step 1.
    sim.spec.interval = "1m".into();
    sim.obs.generation = 4;
    sim.tick();
    assert_eq!((sim.status.current_step, sim.status.weight), (1, 5));
}

#[test]
fn abort_rolls_back_once_and_is_acknowledged() {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(h(1));
    sim.obs.action = Some("abort".into());
    let d = sim.tick().clone();
    assert_eq!((d.status.phase, d.weight), (Phase::RollingBack, 0));
    assert_eq!(d.status.last_applied_action.as_deref(), Some("abort"));
    assert!(d.events.iter().any(|e| e.reason.as_str() == "Aborted"));
    sim.run_for(h(1));
    assert_eq!(sim.status.phase, Phase::RolledBack);
    let (_, reason) = condition(&sim.status, "RolledBack");
    assert_eq!(reason, "Aborted");
    assert_eq!(sim.reasons().iter().filter(|r| **r == "ActionAcknowledged").count(), 1);
    // A second, distinct request in a phase where it does not apply is acknowledged as ignored.
    sim.obs.action = Some("promote-full@2".into());
    sim.tick();
    assert!(sim.reasons().contains(&"ActionIgnored"));
    assert_eq!(sim.status.phase, Phase::RolledBack);
}

#[test]
fn promote_full_skips_remaining_steps() {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(m(2));
    sim.obs.action = Some("promote-full@1".into());
    let d = sim.tick().clone();
    assert_eq!((d.status.phase, d.weight), (Phase::Promoting, 100));
    assert_eq!(d.patch_stable_image.as_deref(), Some(IMAGE));
    sim.tick();
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Promoted, 0));
}

#[test]
fn external_promotion_waits_for_someone_else() {
    let mut spec = runbook_spec();
    spec.promotion.strategy = PromotionStrategy::External;
    let mut sim = Sim::new(spec);
    sim.run_for(h(20));
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Promoting, 100));
    assert!(sim.log.iter().all(|d| d.patch_stable_image.is_none()));
    sim.obs.stable.image = Some(IMAGE.into());
    sim.obs.stable.available = false;
    sim.tick();
    assert_eq!(sim.status.phase, Phase::Promoting);
    sim.obs.stable.available = true;
    sim.tick();
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Promoted, 0));
}

#[test]
fn new_generation_or_canary_image_restarts_from_step_one() {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(h(7));
    assert_eq!(sim.status.weight, 50);
    // A changed step is a new release (a generation changing only `paused` or `notify` is
    // not: see pausing_and_resuming_through_a_new_generation_keeps_the_step).
    sim.spec.steps[0].bake = "11m".into();
    sim.obs.generation = 2;
    sim.tick();
    assert_eq!((sim.status.weight, sim.status.current_step), (5, 1));
    assert_eq!(sim.status.observed_generation, Some(2));
    assert!(sim.reasons().contains(&"SpecChanged"));

    sim.spec.canary.image = None;
    sim.obs.canary_image = Some("registry.example/scholarship-api:v1.5.1".into());
    sim.run_for(h(7));
    let before = sim.reasons().iter().filter(|r| **r == "SpecChanged").count();
    assert!(before >= 2);
    assert_eq!(
        sim.status.observed_canary_image.as_deref(),
        Some("registry.example/scholarship-api:v1.5.1")
    );
}

#[test]
fn progress_deadline_fails_and_retry_starts_again() {
    let mut spec = runbook_spec();
    spec.progress_deadline = Some("1h".into());
    let mut sim = Sim::new(spec);
    sim.obs.gates.insert("redis.tls".into(), value(0.0));
    let took = sim.run_until(h(3), |s| s.phase == Phase::Failed).unwrap();
    assert!(took > m(70) && took <= m(71), "{took}");
    assert_eq!(sim.status.weight, 0);
    assert!(sim.reasons().contains(&"ProgressDeadlineExceeded"));
    sim.obs.gates.insert("redis.tls".into(), value(1.0));
    sim.obs.action = Some("retry".into());
    sim.tick();
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Progressing, 5));
}

#[test]
fn approval_step_waits_for_resume() {
    let mut spec = runbook_spec();
    spec.steps[0].require_approval = true;
    let mut sim = Sim::new(spec);
    sim.run_for(h(2));
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Paused, 5));
    assert!(sim.reasons().contains(&"AwaitingApproval"));
    sim.obs.action = Some("resume".into());
    sim.tick();
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Progressing, 25));
}

#[test]
fn restart_through_serde_decides_the_same() {
    let mut sim = Sim::new(runbook_spec());
    for span in [m(1), m(10), h(3), h(7), h(12)] {
        sim.run_for(span);
        if span == h(3) {
            sim.obs.criteria.insert("p95LatencyMs".into(), value(300.0));
            sim.obs
                .gates
                .insert("sli.availability".into(), Reading::Error("timeout".into()));
        }
        let json = serde_json::to_string(&sim.status).unwrap();
        let restored: CanaryPromotionStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(restored, sim.status);
        let a = decide(&sim.spec, &sim.status, &sim.obs, sim.now);
        let b = decide(&sim.spec, &restored, &sim.obs, sim.now);
        assert_eq!(a, b);
    }
}

#[test]
fn clock_skew_neither_panics_nor_advances() {
    let mut sim = Sim::new(runbook_spec());
    sim.run_for(h(3));
    let before = sim.status.clone();
    for back in [TimeDelta::seconds(1), h(1), h(24 * 365)] {
        let d = decide(&sim.spec, &before, &sim.obs, sim.now - back);
        assert_eq!(d.weight, before.weight);
        assert_eq!(d.status.current_step, before.current_step);
        assert_eq!(d.status.phase, Phase::Progressing);
    }
    // Far in the past with a breach and a deadline: still no rollback or failure.
    let mut spec = sim.spec.clone();
    spec.progress_deadline = Some("1m".into());
    let mut obs = sim.obs.clone();
    obs.criteria.insert("p95LatencyMs".into(), value(900.0));
    let d = decide(&spec, &before, &obs, sim.now - h(48));
    assert_eq!(d.status.phase, Phase::Progressing);
}

#[test]
fn already_promoted_image_needs_no_canary() {
    let mut sim = Sim::new(runbook_spec());
    sim.obs.stable.image = Some(IMAGE.into());
    sim.tick();
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Promoted, 0));
}

#[test]
fn invalid_spec_fails_without_traffic() {
    let mut spec = runbook_spec();
    spec.steps[1].weight = 3;
    let d = decide(&spec, &CanaryPromotionStatus::default(), &green(1), t0());
    assert_eq!((d.status.phase, d.weight), (Phase::Failed, 0));
    assert!(
        d.status
            .message
            .contains("spec.steps: weights must be strictly increasing")
    );
    assert_eq!(d.events[0].reason.as_str(), "InvalidSpec");
    let again = decide(&spec, &d.status, &green(1), t0());
    assert!(again.events.is_empty());
}

#[test]
fn waits_for_a_canary_image() {
    let mut spec = runbook_spec();
    spec.canary.image = None;
    let obs = Observation {
        canary_image: None,
        ..green(1)
    };
    let d = decide(&spec, &CanaryPromotionStatus::default(), &obs, t0());
    assert_eq!((d.status.phase, d.weight), (Phase::Pending, 0));
}

#[test]
fn the_rollback_bound_is_the_slowest_window_plus_interval_plus_metric_window() {
    let mut spec = runbook_spec();
    spec.rollback_within = Some("12m".into());
    let mut sim = Sim::new(spec);
    sim.obs.metric_window = m(1);
    sim.tick();
    // 10m (slowest `for`) + 30s (interval) + 1m (metric window).
    assert_eq!(sim.status.rollback_bound.as_deref(), Some("11m30s"));
    assert!(!sim.reasons().contains(&"RollbackBoundExceeded"));

    // A metric window the API server could not know about breaks the promise: one Warning,
    // not one per tick.
    sim.obs.metric_window = m(3);
    sim.run_for(m(2));
    assert_eq!(sim.status.rollback_bound.as_deref(), Some("13m30s"));
    let warnings: Vec<_> = sim
        .log
        .iter()
        .flat_map(|d| &d.events)
        .filter(|e| e.reason.as_str() == "RollbackBoundExceeded")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].message.contains("beyond spec.rollbackWithin 12m"),
        "{}",
        warnings[0].message
    );
}

#[test]
fn a_rollback_promise_the_criteria_cannot_keep_is_an_invalid_spec() {
    let mut spec = runbook_spec();
    spec.rollback_within = Some("10m".into());
    let err = canary_core::Plan::compile(&spec).unwrap_err().to_string();
    assert!(err.contains("spec.rollbackWithin"), "{err}");
    spec.rollback.clear();
    spec.rollback_within = Some("1h".into());
    let err = canary_core::Plan::compile(&spec).unwrap_err().to_string();
    assert!(err.contains("needs at least one rollback criterion"), "{err}");
    let d = decide(&spec, &CanaryPromotionStatus::default(), &green(1), t0());
    assert_eq!(d.status.phase, Phase::Failed);
}

fn watched(rollback: bool) -> Sim {
    let mut spec = runbook_spec();
    spec.post_promotion = Some(canary_core::PostPromotion {
        watch: "48h".into(),
        rollback,
    });
    let mut sim = Sim::new(spec);
    sim.run_until(h(24), |s| s.phase == Phase::Watching)
        .expect("watching after the promotion");
    sim
}

#[test]
fn the_watch_keeps_the_promotion_promoted_for_48h_then_completes() {
    let mut sim = watched(true);
    let st = sim.status.clone();
    assert_eq!(
        condition(&st, "Promoted").0,
        ConditionStatus::True,
        "kubectl wait --for=condition=Promoted works"
    );
    assert_eq!(condition(&st, "Ready").0, ConditionStatus::True);
    assert_eq!(st.weight, 0);
    assert_eq!(st.previous_stable_image.as_deref(), Some(OLD_IMAGE));
    let until = st.watch_until.unwrap();
    // 48 h from the moment the stable Deployment ran the image (one interval after the
    // promotion began).
    let from_promotion = until - st.promotion_started_at.unwrap();
    assert!(
        from_promotion > h(48) && from_promotion <= h(48) + m(1),
        "{from_promotion}"
    );
    assert!(st.message.contains("watching the stable track"), "{}", st.message);

    let left = sim
        .run_until(h(49), |s| s.phase == Phase::Promoted)
        .expect("the watch ends");
    assert!(left >= h(48) - m(2) && left <= h(48) + m(1), "{left}");
    assert!(sim.reasons().contains(&"WatchCompleted"));
    assert!(!sim.reasons().contains(&"PostPromotionBreach"));
    // Terminal now: no more requeues, and nothing changes.
    assert_eq!(sim.log.last().unwrap().requeue_after, None);
}

#[test]
fn a_breach_on_the_stable_track_during_the_watch_puts_the_previous_image_back() {
    let mut sim = watched(true);
    sim.run_for(h(30));
    sim.obs.criteria.insert("p95LatencyMs".into(), value(320.0));
    let took = sim
        .run_until(m(20), |s| s.phase == Phase::RolledBack)
        .expect("rolled back within the window and an interval");
    assert!(took >= m(10) && took <= m(11), "{took}");
    let d = sim.log.last().unwrap();
    assert_eq!(d.patch_stable_image.as_deref(), Some(OLD_IMAGE));
    assert_eq!(sim.obs.stable.image.as_deref(), Some(OLD_IMAGE));
    let reasons: Vec<_> = d.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["PostPromotionBreach", "RolledBack"]);
    assert!(d.status.message.contains("p95LatencyMs"), "{}", d.status.message);
    // The reason survives later reconciles.
    sim.run_for(m(5));
    assert_eq!(
        condition(&sim.status, "RolledBack"),
        (ConditionStatus::True, "PostPromotionBreach".into())
    );
    assert_eq!(condition(&sim.status, "Promoted").0, ConditionStatus::False);
}

#[test]
fn a_report_only_watch_reports_each_window_of_a_breach_and_keeps_watching() {
    let mut sim = watched(false);
    sim.obs.criteria.insert("errorRate5xx".into(), value(0.2));
    sim.run_for(m(25));
    let breaches = sim.reasons().iter().filter(|r| **r == "PostPromotionBreach").count();
    assert_eq!(breaches, 2, "one per 10m window over 25m");
    assert_eq!(sim.status.phase, Phase::Watching);
    assert!(sim.log.iter().rev().take(50).all(|d| d.patch_stable_image.is_none()));
    let event = sim
        .log
        .iter()
        .flat_map(|d| &d.events)
        .find(|e| e.reason.as_str() == "PostPromotionBreach")
        .unwrap();
    assert!(event.message.contains("reported only"), "{}", event.message);
    let (status, reason) = condition(&sim.status, "PostPromotionBreach");
    assert_eq!((status, reason.as_str()), (ConditionStatus::True, "RollbackCriterion"));
    // Promoted all the same: the breach is reported, not acted on.
    assert_eq!(condition(&sim.status, "Promoted").0, ConditionStatus::True);
}

#[test]
fn the_watch_needs_built_in_criteria_and_prometheus() {
    let mut spec = runbook_spec();
    spec.post_promotion = Some(canary_core::PostPromotion {
        watch: "48h".into(),
        rollback: true,
    });
    assert!(canary_core::Plan::compile(&spec).is_ok());
    let mut custom = spec.clone();
    custom.rollback[0].query = Some("q".into());
    assert!(
        canary_core::Plan::compile(&custom)
            .unwrap_err()
            .to_string()
            .contains("postPromotion")
    );
    let mut external = spec.clone();
    external.promotion.strategy = PromotionStrategy::External;
    assert!(
        canary_core::Plan::compile(&external)
            .unwrap_err()
            .to_string()
            .contains("postPromotion.rollback")
    );
}

#[test]
fn a_spec_edit_during_the_watch_keeps_watching() {
    let mut sim = watched(true);
    let until = sim.status.watch_until;
    sim.obs.generation = 2;
    sim.tick();
    assert_eq!(sim.status.phase, Phase::Watching);
    assert_eq!(sim.status.watch_until, until);
    assert_eq!(sim.status.observed_generation, Some(2));
    assert_eq!(sim.status.previous_stable_image.as_deref(), Some(OLD_IMAGE));
    let message = &sim.log.last().unwrap().events[0].message;
    assert!(message.contains("the post-promotion watch goes on"), "{message}");
}

#[test]
fn a_stable_image_changed_by_someone_else_ends_the_watch_without_a_rollback() {
    let mut sim = watched(true);
    sim.obs.stable.image = Some("registry.example/scholarship-api:v1.5.1-hotfix".into());
    sim.obs.criteria.insert("p95LatencyMs".into(), value(900.0));
    sim.tick();
    assert_eq!(sim.status.phase, Phase::Promoted);
    assert!(sim.status.message.contains("v1.5.1-hotfix"), "{}", sim.status.message);
    assert!(
        sim.log
            .iter()
            .all(|d| d.patch_stable_image.as_deref() != Some(OLD_IMAGE))
    );
}

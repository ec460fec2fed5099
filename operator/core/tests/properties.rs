//! Property tests: invariants of `decide` over random observation sequences.
#![allow(clippy::unwrap_used)]

mod common;

use canary_core::{CanaryPromotionStatus, Phase, Reading, decide};
use chrono::TimeDelta;
use common::*;
use proptest::prelude::*;

/// One tick of the world: how far the clock moves and what the shell observes.
#[derive(Debug, Clone)]
struct Tick {
    advance_s: i64,
    /// Per gate: 0 no data, 1 failing, anything else passing (green most of the time so
    /// runs do reach promotion).
    gate_values: Vec<u8>,
    p95: Option<f64>,
    paused: bool,
    action: Option<&'static str>,
    stable_follows: bool,
}

fn tick() -> impl Strategy<Value = Tick> {
    (
        // Mostly forward, sometimes backwards (clock skew), sometimes a big jump.
        prop_oneof![8 => 0i64..1800, 1 => -600i64..0, 1 => 0i64..50_000],
        prop::collection::vec(
            prop_oneof![1 => Just(0u8), 1 => Just(1u8), 30 => Just(2u8)],
            GATES.len(),
        ),
        prop_oneof![8 => Just(None), 1 => Just(Some(180.0)), 1 => (251.0f64..400.0).prop_map(Some)],
        prop::bool::weighted(0.1),
        prop::option::weighted(
            0.05,
            prop::sample::select(vec!["abort", "promote-full", "retry", "resume", "bogus"]),
        ),
        any::<bool>(),
    )
        .prop_map(|(advance_s, gate_values, p95, paused, action, stable_follows)| Tick {
            advance_s,
            gate_values,
            p95,
            paused,
            action,
            stable_follows,
        })
}

/// Replays `ticks` against one generation; returns every decision's (phase, weight, step).
fn replay(ticks: &[Tick]) -> Vec<(Phase, u32, u32, Option<String>)> {
    let mut spec = runbook_spec();
    let mut status = CanaryPromotionStatus::default();
    let mut obs = green(1);
    let mut now = t0();
    let mut out = Vec::new();
    for (i, t) in ticks.iter().enumerate() {
        now += TimeDelta::seconds(t.advance_s);
        spec.paused = t.paused;
        let pass = [0.9995, 180.0, 1.0, 0.0, 0.01];
        let fail = [0.9, 300.0, 0.0, 7.0, 0.5];
        for (i, gate) in GATES.iter().enumerate() {
            let reading = match t.gate_values[i] {
                0 => Reading::NoData,
                1 => value(fail[i]),
                _ => value(pass[i]),
            };
            obs.gates.insert((*gate).into(), reading);
        }
        obs.criteria
            .insert("p95LatencyMs".into(), t.p95.map_or(Reading::NoData, value));
        obs.action = t.action.map(|a| format!("{a}@{i}"));
        let d = decide(&spec, &status, &obs, now);
        obs.router_weight = Some(d.weight);
        if t.stable_follows
            && let Some(image) = &d.patch_stable_image
        {
            obs.stable.image = Some(image.clone());
        }
        out.push((
            d.status.phase,
            d.weight,
            d.status.current_step,
            d.patch_stable_image.clone(),
        ));
        status = d.status;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn weight_never_exceeds_the_current_step(ticks in prop::collection::vec(tick(), 1..120)) {
        let spec = runbook_spec();
        for (phase, weight, step, _) in replay(&ticks) {
            let cap = if step == 0 { 0 } else { spec.steps[step as usize - 1].weight };
            prop_assert!(weight <= cap, "{phase:?} weight {weight} step {step}");
        }
    }

    #[test]
    fn weight_only_rises_except_to_zero(ticks in prop::collection::vec(tick(), 1..120)) {
        let mut previous = 0;
        for (phase, weight, _, _) in replay(&ticks) {
            prop_assert!(weight >= previous || weight == 0, "{previous} -> {weight} in {phase:?}");
            if weight == 0 {
                prop_assert!(!matches!(phase, Phase::Progressing | Phase::Paused | Phase::Promoting));
            }
            previous = weight;
        }
    }

    #[test]
    fn rolled_back_never_reaches_promoted(ticks in prop::collection::vec(tick(), 1..160)) {
        let mut rolled_back = false;
        for (phase, weight, _, patch) in replay(&ticks) {
            rolled_back |= phase == Phase::RolledBack;
            if rolled_back {
                prop_assert_eq!(phase, Phase::RolledBack);
                prop_assert_eq!(weight, 0);
                prop_assert!(patch.is_none());
            }
        }
    }

    #[test]
    fn reaches_every_outcome(seed in 0u8..1) {
        // Guards the generators: a quiet world promotes, a breaching one rolls back.
        let _ = seed;
        let quiet = Tick { advance_s: 1800, gate_values: vec![2; GATES.len()], p95: None,
            paused: false, action: None, stable_follows: true };
        let outcome = replay(&vec![quiet.clone(); 60]);
        prop_assert_eq!(outcome.last().unwrap().0, Phase::Promoted);
        let hot = Tick { p95: Some(300.0), advance_s: 300, ..quiet };
        let outcome = replay(&vec![hot; 10]);
        prop_assert_eq!(outcome.last().unwrap().0, Phase::RolledBack);
    }

    #[test]
    fn decide_is_deterministic(ticks in prop::collection::vec(tick(), 1..60)) {
        prop_assert_eq!(replay(&ticks), replay(&ticks));
    }
}

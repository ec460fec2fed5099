//! Gate judgement: one reading against one gate, with the no-data policy and minimum
//! sample count applied.

use chrono::{DateTime, Utc};

use crate::observation::Reading;
use crate::plan::GateSpec;
use crate::spec::NoDataPolicy;
use crate::status::{GateState, GateStatus};

/// What a gate's reading means for the step machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counts towards the bake.
    Pass,
    /// Breaks the bake: it restarts once every gate passes again.
    Fail,
    /// Blocks advancing this tick without breaking the bake (no data under `hold`).
    Hold,
}

pub struct Judgement {
    pub status: GateStatus,
    pub verdict: Verdict,
}

/// Judges one gate. `previous` is the gate's status from the last tick, used only to keep
/// `since` stable while the state does not change.
pub fn judge(
    gate: &GateSpec,
    reading: Option<&Reading>,
    previous: Option<&GateStatus>,
    now: DateTime<Utc>,
) -> Judgement {
    let against_threshold = |value: f64| {
        if gate.threshold.holds(value) {
            GateState::Passing
        } else {
            GateState::Failing
        }
    };
    let (state, value, samples, message) = match reading {
        Some(Reading::Value { value, samples }) if *samples >= gate.min_samples => {
            (against_threshold(*value), Some(*value), Some(*samples), None)
        }
        Some(Reading::Value { value, samples }) => (
            GateState::NoData,
            Some(*value),
            Some(*samples),
            Some(format!("{samples} samples < minSamples {}", gate.min_samples)),
        ),
        Some(Reading::Probed { value, detail }) => {
            (against_threshold(*value), Some(*value), Some(1), Some(detail.clone()))
        }
        Some(Reading::NoData) | None => (GateState::NoData, None, None, None),
        Some(Reading::Error(e)) => (GateState::Error, None, None, Some(e.clone())),
    };
    let verdict = match state {
        GateState::Passing => Verdict::Pass,
        GateState::Failing => Verdict::Fail,
        // A provider error says as little about the canary as an empty result, so both
        // follow the gate's no-data policy; the state still tells them apart for users.
        GateState::NoData | GateState::Error => match gate.no_data {
            NoDataPolicy::Hold => Verdict::Hold,
            NoDataPolicy::Fail => Verdict::Fail,
            NoDataPolicy::Pass => Verdict::Pass,
        },
    };
    let since = match previous {
        Some(p) if p.state == state => p.since,
        _ => now,
    };
    Judgement {
        status: GateStatus {
            name: gate.name.clone(),
            state,
            value,
            threshold: gate.threshold.to_string(),
            samples,
            since,
            message,
        },
        verdict,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::threshold::Threshold;

    fn gate(no_data: NoDataPolicy, min_samples: u64) -> GateSpec {
        GateSpec {
            name: "sli.p95LatencyMs".into(),
            source: crate::plan::GateSource::Builtin("p95LatencyMs"),
            threshold: Threshold::parse("<= 220").unwrap(),
            no_data,
            min_samples,
        }
    }

    fn verdict(g: &GateSpec, r: Option<Reading>) -> (GateState, Verdict) {
        let j = judge(g, r.as_ref(), None, DateTime::<Utc>::UNIX_EPOCH);
        (j.status.state, j.verdict)
    }

    #[test]
    fn values_against_threshold() {
        let g = gate(NoDataPolicy::Hold, 10);
        let v = |value| Some(Reading::Value { value, samples: 100 });
        assert_eq!(verdict(&g, v(200.0)), (GateState::Passing, Verdict::Pass));
        assert_eq!(verdict(&g, v(221.0)), (GateState::Failing, Verdict::Fail));
    }

    #[test]
    fn a_probe_verdict_is_judged_with_what_the_probe_saw() {
        let mut g = gate(NoDataPolicy::Pass, 5);
        g.threshold = Threshold::parse("== 1").unwrap();
        let probed = |value: f64| Reading::Probed {
            value,
            detail: "both pods accepted".into(),
        };
        // One run is one sample, whatever minSamples says: the probe is not a rate.
        let failing = judge(&g, Some(&probed(0.0)), None, DateTime::<Utc>::UNIX_EPOCH);
        assert_eq!(
            (failing.status.state, failing.verdict),
            (GateState::Failing, Verdict::Fail)
        );
        assert_eq!(failing.status.message.as_deref(), Some("both pods accepted"));
        assert_eq!(verdict(&g, Some(probed(1.0))), (GateState::Passing, Verdict::Pass));
    }

    #[test]
    fn too_few_samples_is_no_data() {
        let g = gate(NoDataPolicy::Fail, 10);
        let r = Some(Reading::Value { value: 1.0, samples: 9 });
        assert_eq!(verdict(&g, r), (GateState::NoData, Verdict::Fail));
    }

    #[test]
    fn no_data_policies() {
        for (policy, expected) in [
            (NoDataPolicy::Hold, Verdict::Hold),
            (NoDataPolicy::Fail, Verdict::Fail),
            (NoDataPolicy::Pass, Verdict::Pass),
        ] {
            let g = gate(policy, 1);
            assert_eq!(verdict(&g, None), (GateState::NoData, expected));
            assert_eq!(verdict(&g, Some(Reading::NoData)), (GateState::NoData, expected));
            let e = Some(Reading::Error("timeout".into()));
            assert_eq!(verdict(&g, e), (GateState::Error, expected));
        }
    }
}

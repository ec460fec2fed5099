//! Rollback windows: a criterion rolls back only when breached continuously for its `for`
//! window. The window start is a timestamp in status, so it survives restarts.

use chrono::{DateTime, Utc};

use crate::duration::format_duration;
use crate::observation::Reading;
use crate::plan::CriterionSpec;
use crate::status::CriterionStatus;

pub struct WindowOutcome {
    pub status: CriterionStatus,
    /// Set when the breach has held for the whole window: the rollback reason.
    pub trigger: Option<String>,
}

pub fn evaluate(
    criterion: &CriterionSpec,
    reading: Option<&Reading>,
    previous: Option<&CriterionStatus>,
    now: DateTime<Utc>,
) -> WindowOutcome {
    let previous_since = previous.and_then(|p| p.breach_since);
    let (value, breach_since) = match reading {
        Some(Reading::Value { value, samples }) if *samples >= criterion.min_samples => {
            if criterion.bound.breached_by(*value) {
                (Some(*value), Some(previous_since.unwrap_or(now)))
            } else {
                // A clear reading ends the breach: the next one starts a new window.
                (Some(*value), None)
            }
        }
        // Missing or thin data neither proves nor clears a breach; the window keeps its
        // start so a scrape gap cannot postpone a rollback forever.
        _ => (previous.and_then(|p| p.value), previous_since),
    };
    let breached_now = matches!(reading, Some(Reading::Value { value, samples })
        if *samples >= criterion.min_samples && criterion.bound.breached_by(*value));
    let trigger = match (breach_since, value) {
        (Some(since), Some(v)) if breached_now && now.signed_duration_since(since) >= criterion.window => {
            Some(format!(
                "{} {} {} for {}",
                criterion.metric,
                v,
                criterion.bound,
                format_duration(criterion.window)
            ))
        }
        _ => None,
    };
    WindowOutcome {
        status: CriterionStatus {
            metric: criterion.metric.clone(),
            threshold: criterion.bound.to_string(),
            value,
            breach_since,
        },
        trigger,
    }
}

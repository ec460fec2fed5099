//! Status conditions in the exact `metav1.Condition` shape, so `kubectl wait
//! --for=condition=Promoted` and GitOps health checks work unmodified.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const PROMOTED: &str = "Promoted";
pub const ROLLED_BACK: &str = "RolledBack";

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason.
    pub reason: String,
    pub message: String,
    /// Changes only when `status` changes.
    pub last_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Upserts a condition; returns the stored condition when anything user-visible changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: i64,
    now: DateTime<Utc>,
) -> Option<Condition> {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let unchanged = c.status == status
                && c.reason == reason
                && c.message == message
                && c.observed_generation == Some(generation);
            if unchanged {
                return None;
            }
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message.to_owned();
            c.observed_generation = Some(generation);
            Some(c.clone())
        }
        None => {
            let c = Condition {
                type_: type_.to_owned(),
                status,
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: now,
                observed_generation: Some(generation),
            };
            conditions.push(c.clone());
            Some(c)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn transition_time_moves_only_with_status() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let t1 = t0 + chrono::TimeDelta::minutes(5);
        let mut cs = Vec::new();
        set_condition(&mut cs, PROMOTED, ConditionStatus::False, "Progressing", "a", 1, t0);
        let changed = set_condition(&mut cs, PROMOTED, ConditionStatus::False, "Progressing", "b", 1, t1);
        assert!(changed.is_some());
        assert_eq!(cs[0].last_transition_time, t0);
        set_condition(&mut cs, PROMOTED, ConditionStatus::True, "Promoted", "b", 1, t1);
        assert_eq!(cs[0].last_transition_time, t1);
        assert!(set_condition(&mut cs, PROMOTED, ConditionStatus::True, "Promoted", "b", 1, t1).is_none());
        let json = serde_json::to_value(&cs[0]).unwrap();
        assert_eq!(json["type"], "Promoted");
        assert_eq!(json["status"], "True");
        assert!(json["lastTransitionTime"].is_string());
    }
}

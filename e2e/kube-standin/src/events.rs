//! `events.k8s.io/v1` Events are a view of the core/v1 Events, as on a real server: one
//! storage, two shapes. So the operator's events (kube-rs records events.k8s.io/v1) show up in
//! `kubectl describe`, which lists core/v1 Events by `involvedObject`.

use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field) pairs that only differ by name.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, from_v1: bool) -> Value {
    let Value::Object(m) = obj else { return obj.clone() };
    let mut out = Map::new();
    for (k, v) in m {
        let renamed = RENAMED.iter().find_map(|(v1, core)| {
            if from_v1 && k == v1 {
                Some(*core)
            } else if !from_v1 && k == core {
                Some(*v1)
            } else {
                None
            }
        });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    Value::Object(out)
}

/// events.k8s.io/v1 → core/v1 (for storage).
pub fn to_core(obj: &Value) -> Value {
    let mut core = rename(obj, true);
    core["apiVersion"] = Value::String("v1".into());
    core["kind"] = Value::String("Event".into());
    // The real conversion fills `source` from the reporting fields when it is absent.
    if core.get("source").is_none()
        && let Some(c) = core.get("reportingComponent").cloned()
    {
        core["source"] = serde_json::json!({"component": c});
    }
    core
}

/// core/v1 → events.k8s.io/v1 (for responses).
pub fn to_v1(obj: &Value) -> Value {
    let mut v1 = rename(obj, false);
    v1["apiVersion"] = Value::String("events.k8s.io/v1".into());
    v1["kind"] = Value::String("Event".into());
    v1
}

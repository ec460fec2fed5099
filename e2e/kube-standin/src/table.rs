//! `meta.k8s.io/v1 Table` responses for `kubectl get`: columns from a CRD's
//! `additionalPrinterColumns`, or the server-side printers of the built-in kinds.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::crd::lookup;
use crate::registry::{PrinterColumn, ResourceType};

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`, which kubectl's AGE column shows.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(ts: Option<&str>, now: DateTime<Utc>) -> Value {
    match ts.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => Value::String(human_duration((now - t.with_timezone(&Utc)).num_seconds())),
        None => Value::String("<unknown>".into()),
    }
}

fn column(name: &str, type_: &str, format: &str, priority: i64, description: &str) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn name_column() -> Value {
    column(
        "Name",
        "string",
        "name",
        0,
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    )
}

/// A CRD printer column's cell, as the real CRD table convertor computes it.
fn crd_cell(col: &PrinterColumn, obj: &Value, now: DateTime<Utc>) -> Value {
    let path = col
        .json_path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('.');
    let Some(v) = lookup(obj, path).filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match col.type_.as_str() {
        "string" => match v {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        },
        "integer" => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(Value::from)
            .unwrap_or(Value::Null),
        "number" => v.as_f64().map(Value::from).unwrap_or(Value::Null),
        "boolean" => v.as_bool().map(Value::from).unwrap_or(Value::Null),
        "date" => match v.as_str() {
            Some(s) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Value::String(human_duration((now - t.with_timezone(&Utc)).num_seconds())),
                Err(_) => Value::String("<invalid>".into()),
            },
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_none(x: String) -> String {
    if x.is_empty() { "<none>".into() } else { x }
}

/// Column definitions and a row builder for one type.
type RowFn<'a> = Box<dyn Fn(&Value, DateTime<Utc>) -> Vec<Value> + 'a>;

fn layout<'a>(rt: &'a ResourceType, version: &str) -> (Vec<Value>, RowFn<'a>) {
    let created = |o: &Value, now| age(o["metadata"]["creationTimestamp"].as_str(), now);
    if let Some(v) = rt.crd_version(version) {
        let cols = if v.printer_columns.is_empty() {
            vec![PrinterColumn {
                name: "Age".into(),
                type_: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            }]
        } else {
            v.printer_columns.clone()
        };
        let mut defs = vec![name_column()];
        defs.extend(
            cols.iter()
                .map(|c| column(&c.name, &c.type_, &c.format, c.priority, &c.description)),
        );
        let row = move |o: &Value, now| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(cols.iter().map(|c| crd_cell(c, o, now)));
            cells
        };
        return (defs, Box::new(row));
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments") => (
            vec![
                name_column(),
                column("Ready", "string", "", 0, "Number of the pod with ready state"),
                column(
                    "Up-to-date",
                    "string",
                    "",
                    0,
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                column(
                    "Available",
                    "string",
                    "",
                    0,
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                column(
                    "Age",
                    "string",
                    "",
                    0,
                    "CreationTimestamp is a timestamp representing the server time when this object was created.",
                ),
                column(
                    "Containers",
                    "string",
                    "",
                    1,
                    "Names of each container in the template.",
                ),
                column(
                    "Images",
                    "string",
                    "",
                    1,
                    "Images referenced by each container in the template.",
                ),
                column(
                    "Selector",
                    "string",
                    "",
                    1,
                    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
                ),
            ],
            Box::new(move |o: &Value, now| {
                let st = &o["status"];
                let desired = o["spec"]["replicas"].as_i64().unwrap_or(1);
                let containers = o["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let names: Vec<String> = containers.iter().map(|c| s(&c["name"])).collect();
                let images: Vec<String> = containers.iter().map(|c| s(&c["image"])).collect();
                let selector: Vec<String> = o["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect())
                    .unwrap_or_default();
                vec![
                    o["metadata"]["name"].clone(),
                    json!(format!("{}/{}", st["readyReplicas"].as_i64().unwrap_or(0), desired)),
                    json!(st["updatedReplicas"].as_i64().unwrap_or(0)),
                    json!(st["availableReplicas"].as_i64().unwrap_or(0)),
                    created(o, now),
                    json!(names.join(",")),
                    json!(images.join(",")),
                    json!(or_none(selector.join(","))),
                ]
            }),
        ),
        ("", "configmaps") => (
            vec![
                name_column(),
                column("Data", "integer", "", 0, "Number of data entries"),
                column("Age", "string", "", 0, ""),
            ],
            Box::new(move |o: &Value, now| {
                let n =
                    o["data"].as_object().map_or(0, |m| m.len()) + o["binaryData"].as_object().map_or(0, |m| m.len());
                vec![o["metadata"]["name"].clone(), json!(n), created(o, now)]
            }),
        ),
        ("", "secrets") => (
            vec![
                name_column(),
                column("Type", "string", "", 0, ""),
                column("Data", "integer", "", 0, ""),
                column("Age", "string", "", 0, ""),
            ],
            Box::new(move |o: &Value, now| {
                let n = o["data"].as_object().map_or(0, |m| m.len());
                vec![
                    o["metadata"]["name"].clone(),
                    json!(o["type"].as_str().unwrap_or("Opaque")),
                    json!(n),
                    created(o, now),
                ]
            }),
        ),
        ("", "namespaces") => (
            vec![
                name_column(),
                column("Status", "string", "", 0, ""),
                column("Age", "string", "", 0, ""),
            ],
            Box::new(move |o: &Value, now| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(o["status"]["phase"].as_str().unwrap_or("Active")),
                    created(o, now),
                ]
            }),
        ),
        ("", "services") => (
            vec![
                name_column(),
                column("Type", "string", "", 0, ""),
                column("Cluster-IP", "string", "", 0, ""),
                column("External-IP", "string", "", 0, ""),
                column("Port(s)", "string", "", 0, ""),
                column("Age", "string", "", 0, ""),
                column("Selector", "string", "", 1, ""),
            ],
            Box::new(move |o: &Value, now| {
                let ports: Vec<String> = o["spec"]["ports"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| format!("{}/{}", s(&p["port"]), p["protocol"].as_str().unwrap_or("TCP")))
                            .collect()
                    })
                    .unwrap_or_default();
                let selector: Vec<String> = o["spec"]["selector"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect())
                    .unwrap_or_default();
                vec![
                    o["metadata"]["name"].clone(),
                    json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP")),
                    json!(or_none(s(&o["spec"]["clusterIP"]))),
                    json!("<none>"),
                    json!(or_none(ports.join(","))),
                    created(o, now),
                    json!(or_none(selector.join(","))),
                ]
            }),
        ),
        ("coordination.k8s.io", "leases") => (
            vec![
                name_column(),
                column("Holder", "string", "", 0, ""),
                column("Age", "string", "", 0, ""),
            ],
            Box::new(move |o: &Value, now| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(s(&o["spec"]["holderIdentity"])),
                    created(o, now),
                ]
            }),
        ),
        ("apiextensions.k8s.io", "customresourcedefinitions") => (
            vec![name_column(), column("Created At", "date", "", 0, "")],
            Box::new(move |o: &Value, _now| {
                vec![
                    o["metadata"]["name"].clone(),
                    o["metadata"]["creationTimestamp"].clone(),
                ]
            }),
        ),
        _ => (
            vec![name_column(), column("Age", "string", "", 0, "")],
            Box::new(move |o: &Value, now| vec![o["metadata"]["name"].clone(), created(o, now)]),
        ),
    }
}

/// The row's `object`: by default `PartialObjectMetadata`, like the real server.
fn row_object(o: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => o.clone(),
        _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
    }
}

/// Builds a Table for `objects` (already converted to the requested version).
pub fn table(rt: &ResourceType, version: &str, objects: &[Value], list_meta: Value, include: &str) -> Value {
    let now = Utc::now();
    let (defs, row) = layout(rt, version);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": row(o, now), "object": row_object(o, include)}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_apimachinery() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(50 * 3600), "2d2h");
    }
}

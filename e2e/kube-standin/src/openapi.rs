//! A minimal OpenAPI v3 surface, shaped by what kubectl 1.32 actually reads from it:
//!
//! - `kubectl apply/create` (default `--validate=strict`) looks, in `/openapi/v3/<gv>`, for a
//!   PATCH operation tagged with the kind's `x-kubernetes-group-version-kind` which
//!   declares a `fieldValidation` parameter; when found it leaves validation to the server.
//!   Without it kubectl falls back to `/openapi/v2` and fails when that is missing.
//! - client-side `kubectl apply` uses the v3 schema for strategic merge only when the PATCH
//!   operation lists `application/strategic-merge-patch+json`; we do not list it, so kubectl
//!   uses the merge metadata compiled into it (exact for built-in kinds) and JSON merge
//!   patches for custom resources, as it does against a real server.
//!
//! Schemas (`components`) are not served: `kubectl explain` does not work.

use serde_json::{Map, Value, json};

use crate::registry::ResourceType;
use crate::store::State;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(s: &str) -> String {
    // FNV-1a: stable across runs, so kubectl's HTTP cache sees a new URL only when the document changes.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn item_path(t: &ResourceType, version: &str) -> String {
    let base = format!("/{}", gv_path(&t.group, version));
    if t.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
    } else {
        format!("{base}/{}/{{name}}", t.plural)
    }
}

/// The document for one group/version.
pub fn gv_doc(st: &State, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for t in st
        .types
        .values()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
    {
        let gvk = json!({"group": t.group, "version": version, "kind": t.kind});
        let content: Map<String, Value> = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
        .iter()
        .map(|c| (c.to_string(), json!({"schema": {"type": "object"}})))
        .collect();
        paths.insert(
            item_path(t, version),
            json!({
                "get": {"x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk,
                        "responses": {"200": {"description": "OK"}}},
                "put": {"x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk,
                        "responses": {"200": {"description": "OK"}}},
                "patch": {"x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                          "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                          "requestBody": {"content": content}, "responses": {"200": {"description": "OK"}}},
                "delete": {"x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk,
                           "responses": {"200": {"description": "OK"}}},
                "parameters": [param("pretty")],
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-standin)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// `/openapi/v3`: one entry per served group/version.
pub fn v3_index(st: &State) -> Value {
    let mut gvs: Vec<(String, String)> = Vec::new();
    for t in st.types.values() {
        for v in &t.versions {
            let gv = (t.group.clone(), v.clone());
            if !gvs.contains(&gv) {
                gvs.push(gv);
            }
        }
    }
    let mut paths = Map::new();
    for (g, v) in gvs {
        let doc = gv_doc(st, &g, &v).map(|d| d.to_string()).unwrap_or_default();
        let p = gv_path(&g, &v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
        );
    }
    json!({"paths": paths})
}

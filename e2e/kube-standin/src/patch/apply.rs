//! Server-side apply, simplified (see docs/kube-standin.md):
//! - the applied configuration is merged into the live object: maps recursively, lists by
//!   `x-kubernetes-list-map-keys` (CRDs) or the built-in merge keys, `set` lists unioned,
//!   everything else replaced;
//! - ownership is tracked only for `Apply` managers, as leaf field paths in `managedFields`
//!   (`FieldsV1`); a field a manager applied before and omits now is removed unless another
//!   apply manager owns it, and applying a different value to a field another apply manager
//!   owns is a 409 conflict unless `force=true`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::builtin_list_key;
use crate::status::{ApiError, ApiResult};

/// One step of a field path, encoded as in `FieldsV1`: `f:name`, `k:{"name":"a"}`, `v:"x"`.
pub type Path = Vec<String>;

/// How a list merges.
enum ListType {
    Map(Vec<String>),
    Set,
    Atomic,
}

/// Tells list and map semantics from a CRD schema, or from built-in knowledge when there is none.
#[derive(Clone, Copy)]
pub struct Shape<'a> {
    pub schema: Option<&'a Value>,
    pub builtin: bool,
}

impl<'a> Shape<'a> {
    fn child(&self, key: &str) -> Shape<'a> {
        let schema = self.schema.and_then(|s| {
            s.get("properties")
                .and_then(|p| p.get(key))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
        });
        Shape {
            schema,
            builtin: self.builtin,
        }
    }
    fn items(&self) -> Shape<'a> {
        Shape {
            schema: self.schema.and_then(|s| s.get("items")),
            builtin: self.builtin,
        }
    }
    fn atomic_map(&self) -> bool {
        self.schema
            .and_then(|s| s.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
    }
    fn list_type(&self, field: &str, items: &[Value]) -> ListType {
        if let Some(s) = self.schema {
            return match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => ListType::Map(
                    s.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|k| k.as_str().map(String::from)).collect())
                        .unwrap_or_default(),
                ),
                Some("set") => ListType::Set,
                _ => ListType::Atomic,
            };
        }
        if self.builtin {
            if field == "finalizers" {
                return ListType::Set;
            }
            if let Some(k) = builtin_list_key(field, items.first())
                && items.iter().all(|i| i.get(k).is_some())
            {
                return ListType::Map(vec![k.to_string()]);
            }
        }
        ListType::Atomic
    }
}

fn key_of(item: &Value, keys: &[String]) -> Option<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for k in keys {
        out.insert(k.clone(), item.get(k)?.clone());
    }
    Some(out)
}

/// Merges `applied` into `target`.
pub fn merge(target: &mut Value, applied: &Value, shape: Shape<'_>, field: &str) {
    match applied {
        Value::Object(am) if !shape.atomic_map() => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(tm) = target {
                for (k, v) in am {
                    if v.is_null() {
                        tm.remove(k);
                        continue;
                    }
                    let slot = tm.entry(k.clone()).or_insert(Value::Null);
                    merge(slot, v, shape.child(k), k);
                }
            }
        }
        Value::Array(items) => match shape.list_type(field, items) {
            ListType::Map(keys) if !keys.is_empty() => {
                let mut current = target.as_array().cloned().unwrap_or_default();
                for item in items {
                    let key = key_of(item, &keys);
                    match current.iter().position(|c| key.is_some() && key_of(c, &keys) == key) {
                        Some(i) => merge(&mut current[i], item, shape.items(), ""),
                        None => current.push(item.clone()),
                    }
                }
                *target = Value::Array(current);
            }
            ListType::Set => {
                let mut current = target.as_array().cloned().unwrap_or_default();
                for item in items {
                    if !current.contains(item) {
                        current.push(item.clone());
                    }
                }
                *target = Value::Array(current);
            }
            _ => *target = applied.clone(),
        },
        other => *target = other.clone(),
    }
}

/// Metadata fields that identify the object rather than being owned by a manager.
const IDENTITY: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "managedFields",
    "creationTimestamp",
    "generation",
];

/// Leaf field paths set by an applied configuration.
pub fn field_set(applied: &Value, shape: Shape<'_>) -> Vec<Path> {
    let mut out = Vec::new();
    if let Value::Object(m) = applied {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            if k == "metadata" {
                if let Value::Object(meta) = v {
                    for (mk, mv) in meta {
                        if IDENTITY.contains(&mk.as_str()) {
                            continue;
                        }
                        let p = vec!["f:metadata".to_string(), format!("f:{mk}")];
                        collect(
                            mv,
                            Shape {
                                schema: None,
                                builtin: true,
                            },
                            mk,
                            p,
                            &mut out,
                        );
                    }
                }
                continue;
            }
            collect(v, shape.child(k), k, vec![format!("f:{k}")], &mut out);
        }
    }
    out
}

fn collect(v: &Value, shape: Shape<'_>, field: &str, prefix: Path, out: &mut Vec<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() && !shape.atomic_map() => {
            for (k, cv) in m {
                let mut p = prefix.clone();
                p.push(format!("f:{k}"));
                collect(cv, shape.child(k), k, p, out);
            }
        }
        Value::Array(items) if !items.is_empty() => match shape.list_type(field, items) {
            ListType::Map(keys) if !keys.is_empty() => {
                for item in items {
                    let Some(key) = key_of(item, &keys) else { continue };
                    let mut p = prefix.clone();
                    p.push(format!("k:{}", Value::Object(key.into_iter().collect())));
                    let mut marker = p.clone();
                    marker.push(".".to_string());
                    out.push(marker);
                    if let Value::Object(m) = item {
                        for (k, cv) in m {
                            let mut cp = p.clone();
                            cp.push(format!("f:{k}"));
                            collect(cv, shape.items().child(k), k, cp, out);
                        }
                    }
                }
            }
            ListType::Set => {
                for item in items {
                    let mut p = prefix.clone();
                    p.push(format!("v:{item}"));
                    out.push(p);
                }
            }
            _ => out.push(prefix),
        },
        _ => out.push(prefix),
    }
}

/// Renders leaf paths as a `FieldsV1` tree.
pub fn fields_v1(paths: &[Path]) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for elem in path {
            let next = node.entry(elem.clone()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = next else { break };
            node = m;
        }
    }
    Value::Object(root)
}

/// Reads leaf paths back from a `FieldsV1` tree.
pub fn parse_fields_v1(tree: &Value) -> Vec<Path> {
    fn walk(v: &Value, prefix: &mut Path, out: &mut Vec<Path>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, cv) in m {
                    prefix.push(k.clone());
                    walk(cv, prefix, out);
                    prefix.pop();
                }
            }
            _ => out.push(prefix.clone()),
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

fn step<'v>(v: &'v Value, elem: &str) -> Option<&'v Value> {
    if let Some(f) = elem.strip_prefix("f:") {
        return v.get(f);
    }
    if let Some(k) = elem.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        return v
            .as_array()?
            .iter()
            .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
    }
    if let Some(x) = elem.strip_prefix("v:") {
        let want: Value = serde_json::from_str(x).ok()?;
        return v.as_array()?.iter().find(|i| **i == want);
    }
    None
}

/// The value at a path (a trailing `.` marker means the list item itself).
pub fn get_path<'v>(obj: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = obj;
    for elem in path.iter().filter(|e| *e != ".") {
        cur = step(cur, elem)?;
    }
    Some(cur)
}

/// Removes the field, list item or set element at a path.
pub fn remove_path(obj: &mut Value, path: &[String]) {
    let path: Vec<&String> = path.iter().filter(|e| *e != ".").collect();
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for elem in parents {
        let next = if let Some(f) = elem.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = elem.strip_prefix("k:") {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv))))
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(key), Some(a)) = (serde_json::from_str::<Map<String, Value>>(k), cur.as_array_mut()) {
            a.retain(|i| !key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
        }
    } else if let Some(x) = last.strip_prefix("v:")
        && let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(x), cur.as_array_mut())
    {
        a.retain(|i| *i != want);
    }
}

/// Human-readable path for conflict messages: `.spec.containers[name="a"].image`.
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for elem in path {
        if let Some(f) = elem.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = elem.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(kk, kv)| format!("{kk}={kv}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = elem.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Everything an apply needs besides the objects.
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub subresource: Option<&'a str>,
    pub api_version: &'a str,
    pub now: &'a str,
    pub shape: Shape<'a>,
}

fn entry_subresource(e: &Value) -> Option<&str> {
    e.get("subresource").and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Applies `applied` to `live` (a copy of the stored object, or a fresh skeleton on create),
/// returning the merged object with updated `managedFields`.
pub fn apply(live: &Value, applied: &Value, req: &ApplyRequest<'_>) -> ApiResult<Value> {
    let new_paths = field_set(applied, req.shape);
    let mut managed: Vec<Value> = live["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mine = |e: &Value| {
        e["manager"].as_str() == Some(req.manager)
            && e["operation"].as_str() == Some("Apply")
            && entry_subresource(e) == req.subresource
    };
    let previous: Vec<Path> = managed
        .iter()
        .find(|e| mine(e))
        .map(|e| parse_fields_v1(&e["fieldsV1"]))
        .unwrap_or_default();

    // Conflicts with other apply managers that own a leaf we set to a different value.
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for entry in managed
        .iter()
        .filter(|e| !mine(e) && e["operation"].as_str() == Some("Apply"))
    {
        let theirs = parse_fields_v1(&entry["fieldsV1"]);
        for p in &new_paths {
            if theirs.contains(p) && get_path(live, p) != get_path(applied, p) {
                conflicts.push((entry["manager"].as_str().unwrap_or_default().to_string(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !req.force {
            let list: Vec<String> = conflicts
                .iter()
                .map(|(m, p)| format!("conflict with \"{m}\": {}", display_path(p)))
                .collect();
            let message = if list.len() == 1 {
                format!("Apply failed with 1 conflict: {}", list[0])
            } else {
                format!("Apply failed with {} conflicts: {}", list.len(), list.join("\n"))
            };
            return Err(ApiError::new(409, "Conflict", message));
        }
        // Forced: the other managers lose the contested fields.
        for entry in managed.iter_mut() {
            let Some(name) = entry["manager"].as_str().map(String::from) else {
                continue;
            };
            let lost: Vec<&Path> = conflicts.iter().filter(|(m, _)| *m == name).map(|(_, p)| p).collect();
            if lost.is_empty() {
                continue;
            }
            let kept: Vec<Path> = parse_fields_v1(&entry["fieldsV1"])
                .into_iter()
                .filter(|p| !lost.contains(&p))
                .collect();
            entry["fieldsV1"] = fields_v1(&kept);
        }
    }

    let mut merged = live.clone();
    let mut body = applied.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in IDENTITY {
            meta.remove(*k);
        }
    }
    merge(&mut merged, &body, req.shape, "");

    // Fields this manager applied before and no longer applies go, unless someone else owns them.
    let others: Vec<Path> = managed
        .iter()
        .filter(|e| !mine(e) && e["operation"].as_str() == Some("Apply"))
        .flat_map(|e| parse_fields_v1(&e["fieldsV1"]))
        .collect();
    let mut stale: Vec<&Path> = previous
        .iter()
        .filter(|p| !new_paths.iter().any(|n| n.starts_with(p) || p.starts_with(n)))
        .filter(|p| !others.iter().any(|o| o.starts_with(p) || p.starts_with(o)))
        .collect();
    stale.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in stale {
        remove_path(&mut merged, p);
    }

    managed.retain(|e| !mine(e));
    let mut entry = json!({
        "manager": req.manager,
        "operation": "Apply",
        "apiVersion": req.api_version,
        "time": req.now,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(&new_paths),
    });
    if let Some(sub) = req.subresource {
        entry["subresource"] = Value::String(sub.to_string());
    }
    managed.push(entry);
    merged["metadata"]["managedFields"] = Value::Array(managed);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req<'a>(manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            force,
            subresource: None,
            api_version: "v1",
            now: "2025-01-01T00:00:00Z",
            shape: Shape {
                schema: None,
                builtin: true,
            },
        }
    }

    #[test]
    fn removes_fields_no_longer_applied_and_detects_conflicts() {
        let live = json!({"metadata": {"name": "x"}, "data": {}});
        let a1 = json!({"metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}});
        let o1 = apply(&live, &a1, &req("m1", false)).unwrap();
        let a2 = json!({"metadata": {"name": "x"}, "data": {"a": "1"}});
        let o2 = apply(&o1, &a2, &req("m1", false)).unwrap();
        assert_eq!(o2["data"], json!({"a": "1"}));
        let a3 = json!({"metadata": {"name": "x"}, "data": {"a": "9"}});
        let err = apply(&o2, &a3, &req("m2", false)).unwrap_err();
        assert_eq!(err.code, 409);
        let o3 = apply(&o2, &a3, &req("m2", true)).unwrap();
        assert_eq!(o3["data"]["a"], "9");
    }

    #[test]
    fn merges_keyed_lists() {
        let live = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
        let applied = json!({"spec": {"containers": [{"name": "b", "image": "2"}]}});
        let out = apply(&live, &applied, &req("m", false)).unwrap();
        assert_eq!(out["spec"]["containers"][1]["image"], "2");
        assert_eq!(out["spec"]["containers"][0]["image"], "1");
    }
}

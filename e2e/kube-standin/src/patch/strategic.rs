//! Strategic merge patch for built-in kinds, with the directives kubectl emits:
//! `$patch` (replace/delete/merge), `$retainKeys`, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>`. List merge keys come from [`super::builtin_list_key`].

use serde_json::{Map, Value};

use super::{builtin_list_key, builtin_primitive_merge};
use crate::status::{ApiError, ApiResult};

pub fn strategic_merge(target: &mut Value, patch: &Value) -> ApiResult<()> {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => merge_map(t, p),
        (t, p) => {
            *t = strip_directives(p);
            Ok(())
        }
    }
}

/// Removes `$...` directives from a value that is copied in as-is.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|i| {
                    !(i.is_object() && i.get("$patch").is_some() && i.as_object().is_some_and(|o| o.len() == 1))
                })
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> ApiResult<()> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(&Value::Object(patch.clone()))
                .as_object()
                .cloned()
                .unwrap_or_default();
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(ApiError::bad_request(format!("unknown patch type: {other}"))),
    }
    for (key, pv) in patch {
        if key.starts_with('$') {
            continue;
        }
        match pv {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(pm) => match target.get_mut(key) {
                Some(Value::Object(tm)) => merge_map(tm, pm)?,
                _ => {
                    if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                        target.remove(key);
                    } else {
                        target.insert(key.clone(), strip_directives(pv));
                    }
                }
            },
            Value::Array(items) => {
                let existing = target.remove(key);
                let merged = merge_list(key, existing, items)?;
                target.insert(key.clone(), merged);
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
    // Directives that refer to sibling lists.
    for (key, pv) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (target.get_mut(field), pv.as_array()) {
                list.retain(|v| !remove.contains(v));
            }
        } else if let Some(field) = key.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(list)), Some(order)) = (target.get_mut(field), pv.as_array())
        {
            reorder(field, list, order);
        }
    }
    if let Some(Value::Array(retain)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.get(key)
}

fn merge_list(field: &str, existing: Option<Value>, patch: &[Value]) -> ApiResult<Value> {
    let mut current = match existing {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    // A `{"$patch": "replace"}` element replaces the whole list.
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(strip_directives(&Value::Array(patch.to_vec())));
    }
    if builtin_primitive_merge(field) {
        for v in patch {
            if !current.contains(v) {
                current.push(v.clone());
            }
        }
        return Ok(Value::Array(current));
    }
    let sample = patch.iter().chain(current.iter()).find(|i| i.is_object());
    let Some(merge_key) = builtin_list_key(field, sample).filter(|_| sample.is_some()) else {
        return Ok(strip_directives(&Value::Array(patch.to_vec())));
    };
    for item in patch {
        let Some(k) = key_of(item, merge_key) else {
            current.push(strip_directives(item));
            continue;
        };
        let pos = current.iter().position(|c| key_of(c, merge_key) == Some(k));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            current.retain(|c| key_of(c, merge_key) != Some(k));
            continue;
        }
        match pos {
            Some(i) => strategic_merge(&mut current[i], item)?,
            None => current.push(strip_directives(item)),
        }
    }
    Ok(Value::Array(current))
}

/// Orders list items as `$setElementOrder` says; items it does not mention keep their place at the end.
fn reorder(field: &str, list: &mut [Value], order: &[Value]) {
    let sample = order.first();
    let Some(merge_key) = builtin_list_key(field, sample).filter(|_| sample.is_some_and(Value::is_object)) else {
        return;
    };
    let rank = |v: &Value| {
        order
            .iter()
            .position(|o| o.get(merge_key).is_some() && o.get(merge_key) == v.get(merge_key))
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(|v| rank(v));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_containers_by_name_and_retains_keys() {
        let mut d = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}});
        let p = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
            "template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "a:2"}]}}}});
        strategic_merge(&mut d, &p).unwrap();
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "b:1"}, {"name": "a", "image": "a:2"}])
        );
    }

    #[test]
    fn deletes_list_items_and_unions_finalizers() {
        let mut d = json!({"metadata": {"finalizers": ["x"]}, "spec": {"ports": [{"port": 80}, {"port": 81}]}});
        let p = json!({"metadata": {"finalizers": ["y"]}, "spec": {"ports": [{"port": 81, "$patch": "delete"}]}});
        strategic_merge(&mut d, &p).unwrap();
        assert_eq!(
            d,
            json!({"metadata": {"finalizers": ["x", "y"]}, "spec": {"ports": [{"port": 80}]}})
        );
    }
}

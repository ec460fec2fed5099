//! CustomResourceDefinitions: turning a stored CRD into a served [`ResourceType`], and the
//! schema-driven steps a real server runs on every custom-resource write: pruning of unknown
//! fields, defaulting, OpenAPI v3 validation and CEL (`x-kubernetes-validations`) rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::registry::{CrdVersion, PrinterColumn, ResourceType, ScaleSpec};
use crate::status::Cause;

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn strip_dot(path: &str) -> String {
    path.trim_start_matches('.').to_string()
}

/// Checks the parts of a CRD that the stand-in depends on.
pub fn validate_crd(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(Cause::new("FieldValueRequired", "spec.group", "Required value"));
    }
    if plural.is_empty() {
        causes.push(Cause::new("FieldValueRequired", "spec.names.plural", "Required value"));
    }
    if spec["names"]["kind"].as_str().unwrap_or_default().is_empty() {
        causes.push(Cause::new("FieldValueRequired", "spec.names.kind", "Required value"));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.versions",
            "Required value: must have exactly one version marked as storage version",
        ));
    } else if versions.iter().filter(|v| v["storage"].as_bool() == Some(true)).count() != 1 {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.versions",
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                Value::Array(versions.clone())
            ),
        ));
    }
    causes
}

/// Fills what a real server defaults on a CRD and marks it Established (immediately: there is
/// no asynchronous controller here).
pub fn default_and_establish(crd: &mut Value, now: &str) {
    let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default().to_string();
    let names = &mut crd["spec"]["names"];
    if names.get("listKind").is_none() {
        names["listKind"] = Value::String(format!("{kind}List"));
    }
    if names.get("singular").is_none() {
        names["singular"] = Value::String(kind.to_lowercase());
    }
    if crd["spec"].get("conversion").is_none() {
        crd["spec"]["conversion"] = json!({"strategy": "None"});
    }
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let accepted = crd["spec"]["names"].clone();
    let mut stored: Vec<Value> = crd["status"]["storedVersions"].as_array().cloned().unwrap_or_default();
    for s in storage {
        if !stored.contains(&s) {
            stored.push(s);
        }
    }
    crd["status"] = json!({
        "acceptedNames": accepted,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
    });
}

/// The served type a CRD defines.
pub fn resource_type(crd: &Value) -> ResourceType {
    let spec = &crd["spec"];
    let mut versions_json: Vec<Value> = spec["versions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|v| v["served"].as_bool() != Some(false))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    // Storage version first: it is the preferred version in discovery.
    versions_json.sort_by_key(|v| v["storage"].as_bool() != Some(true));
    let mut versions = BTreeMap::new();
    for v in &versions_json {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let schema = v["schema"]["openAPIV3Schema"].clone();
        let schema = if schema.is_null() { None } else { Some(schema) };
        let compiled = schema.as_ref().map(kube_cel::compile_schema);
        let printer_columns = v["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: c["name"].as_str().unwrap_or_default().to_string(),
                        type_: c["type"].as_str().unwrap_or("string").to_string(),
                        format: c["format"].as_str().unwrap_or_default().to_string(),
                        description: c["description"].as_str().unwrap_or_default().to_string(),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sub = &v["subresources"];
        let scale = sub.get("scale").filter(|s| s.is_object()).map(|s| ScaleSpec {
            spec_replicas: strip_dot(s["specReplicasPath"].as_str().unwrap_or(".spec.replicas")),
            status_replicas: strip_dot(s["statusReplicasPath"].as_str().unwrap_or(".status.replicas")),
            label_selector: s["labelSelectorPath"].as_str().map(strip_dot),
        });
        versions.insert(
            name.clone(),
            CrdVersion {
                name,
                schema,
                compiled,
                printer_columns,
                status_subresource: sub.get("status").is_some_and(Value::is_object),
                scale,
            },
        );
    }
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let preferred = versions_json
        .first()
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let status_subresource = versions.get(&preferred).is_some_and(|v| v.status_subresource);
    let scale = versions.get(&preferred).and_then(|v| v.scale.clone());
    ResourceType {
        group: spec["group"].as_str().unwrap_or_default().to_string(),
        versions: versions_json
            .iter()
            .filter_map(|v| v["name"].as_str().map(String::from))
            .collect(),
        singular: names["singular"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase()),
        kind,
        plural: names["plural"].as_str().unwrap_or_default().to_string(),
        namespaced: spec["scope"].as_str() != Some("Cluster"),
        short_names: strs(&names["shortNames"]),
        categories: strs(&names["categories"]),
        status_subresource,
        scale,
        generation: true,
        crd: Some(Arc::new(versions)),
        crd_name: crd["metadata"]["name"].as_str().map(String::from),
    }
}

/// ObjectMeta fields; anything else under a custom resource's `metadata` is dropped.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Structural-schema pruning: drops fields the schema does not declare (unless
/// `x-kubernetes-preserve-unknown-fields`) and `null`s of non-nullable fields; returns the
/// paths it dropped (for `fieldValidation=Strict|Warn`).
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Value::Object(root) = obj {
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            let drop: Vec<String> = meta
                .keys()
                .filter(|k| !OBJECT_META.contains(&k.as_str()))
                .cloned()
                .collect();
            for k in drop {
                meta.remove(&k);
                unknown.push(format!("metadata.{k}"));
            }
        }
        let keys: Vec<String> = root.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match schema.get("properties").and_then(|p| p.get(&k)) {
                Some(child) => {
                    if let Some(v) = root.get_mut(&k) {
                        if v.is_null() && child["nullable"].as_bool() != Some(true) {
                            root.remove(&k);
                        } else {
                            prune_value(v, child, &k, &mut unknown);
                        }
                    }
                }
                None if schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true) => {}
                None => {
                    root.remove(&k);
                    unknown.push(k);
                }
            }
        }
    }
    unknown
}

fn prune_value(v: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if props.is_none() && additional.is_none() && (preserve || schema.get("type").is_none()) {
                return;
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child = props.and_then(|p| p.get(&k)).or(additional);
                let child_path = format!("{path}.{k}");
                match child {
                    Some(cs) => {
                        let is_null = m.get(&k).is_some_and(Value::is_null);
                        if is_null && cs["nullable"].as_bool() != Some(true) {
                            m.remove(&k);
                        } else if let Some(cv) = m.get_mut(&k) {
                            prune_value(cv, cs, &child_path, unknown);
                        }
                    }
                    None if preserve => {}
                    None => {
                        m.remove(&k);
                        unknown.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_value(item, is, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Applies schema `default`s (after pruning, as the real server does).
pub fn apply_defaults(obj: &Value, schema: &Value) -> Value {
    kube_cel::apply_defaults(schema, obj)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        other => other.to_string(),
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match want {
        "integer" => v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => true,
    }
}

/// OpenAPI v3 validation as the real server reports it (messages name the field).
pub fn validate_schema(v: &Value, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if schema["nullable"].as_bool() != Some(true) && schema.get("type").is_some() {
            causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        if !(v.is_string() || type_ok("integer", v)) {
            causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"{}\": {path} in body must be of type integer,string: \"{}\"",
                    type_name(v),
                    type_name(v)
                ),
            ));
        }
        return;
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str)
        && !type_ok(want, v)
    {
        causes.push(Cause::new(
            "FieldValueTypeInvalid",
            path,
            format!(
                "Invalid value: \"{}\": {path} in body must be of type {want}: \"{}\"",
                type_name(v),
                type_name(v)
            ),
        ));
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        let supported: Vec<String> = options.iter().map(Value::to_string).collect();
        causes.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                render(v),
                supported.join(", ")
            ),
        ));
    }
    match v {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                causes.push(Cause::new(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should be at least {min} chars long",
                        render(v)
                    ),
                ));
            }
            if let Some(pattern) = schema["pattern"].as_str()
                && let Ok(re) = regex::Regex::new(pattern)
                && !re.is_match(s)
            {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {}: {path} in body should match '{pattern}'", render(v)),
                ));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            let exclusive_max = schema["exclusiveMaximum"].as_bool() == Some(true);
            let exclusive_min = schema["exclusiveMinimum"].as_bool() == Some(true);
            if let Some(max) = schema["maximum"].as_f64()
                && (x > max || (exclusive_max && x >= max))
            {
                let rel = if exclusive_max {
                    "less than"
                } else {
                    "less than or equal to"
                };
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should be {rel} {}",
                        render(v),
                        schema["maximum"]
                    ),
                ));
            }
            if let Some(min) = schema["minimum"].as_f64()
                && (x < min || (exclusive_min && x <= min))
            {
                let rel = if exclusive_min {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should be {rel} {}",
                        render(v),
                        schema["minimum"]
                    ),
                ));
            }
        }
        Value::Array(items) => {
            validate_size(items.len(), schema, ("maxItems", "minItems", "items"), path, causes);
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_schema(item, is, &format!("{path}[{i}]"), causes);
                }
            }
        }
        Value::Object(m) => {
            validate_required(m, schema, path, causes);
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, cs) in props {
                    if let Some(cv) = m.get(k) {
                        validate_schema(cv, cs, &join(path, k), causes);
                    }
                }
            }
            if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, cv) in m {
                    validate_schema(cv, add, &join(path, k), causes);
                }
            }
            validate_size(
                m.len(),
                schema,
                ("maxProperties", "minProperties", "properties"),
                path,
                causes,
            );
        }
        Value::Bool(_) | Value::Null => {}
    }
    // Logical junctors: structural schemas use them for "exactly one of"-style constraints.
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let ok = branches.iter().filter(|b| branch_ok(v, b, path)).count();
        if ok != 1 {
            causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {}: {path} in body must match exactly one schema in oneOf",
                    render(v)
                ),
            ));
        }
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array)
        && !branches.iter().any(|b| branch_ok(v, b, path))
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {}: {path} in body must match at least one schema in anyOf",
                render(v)
            ),
        ));
    }
}

fn branch_ok(v: &Value, schema: &Value, path: &str) -> bool {
    let mut c = Vec::new();
    validate_schema(v, schema, path, &mut c);
    c.is_empty()
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn validate_required(m: &Map<String, Value>, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    for r in strs(&schema["required"]) {
        if !m.contains_key(&r) {
            causes.push(Cause::new("FieldValueRequired", join(path, &r), "Required value"));
        }
    }
}

/// Validates a whole custom resource: the root is special (apiVersion/kind/metadata are not in the schema).
pub fn validate_object(obj: &Value, schema: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Value::Object(m) = obj {
        validate_required(m, schema, "", &mut causes);
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, cs) in props {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(cv) = m.get(k) {
                    validate_schema(cv, cs, k, &mut causes);
                }
            }
        }
    }
    causes
}

/// Evaluates the schema's CEL rules (see the README for which ones are supported).
pub fn validate_cel(version: &CrdVersion, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let Some(compiled) = &version.compiled else {
        return Vec::new();
    };
    let validator = kube_cel::Validator::new();
    match validator.validate_compiled(compiled, obj, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                let field = e.field_path.trim_start_matches('.').to_string();
                let value = lookup(obj, &field).map(type_name).unwrap_or("object");
                let reason = e.reason.clone().unwrap_or_else(|| "FieldValueInvalid".to_string());
                Cause::new(&reason, field, format!("Invalid value: \"{value}\": {}", e.message))
            })
            .collect(),
    }
}

/// Follows `a.b[0].c` in an object.
pub fn lookup<'v>(obj: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = obj;
    if path.is_empty() {
        return Some(cur);
    }
    for seg in path.split('.') {
        let (name, idx) = match seg.find('[') {
            Some(i) => (&seg[..i], Some(&seg[i..])),
            None => (seg, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(idx) = idx {
            for part in idx.split('[').filter(|p| !p.is_empty()) {
                let n: usize = part.trim_end_matches(']').parse().ok()?;
                cur = cur.get(n)?;
            }
        }
    }
    Some(cur)
}

/// `maxItems`/`minItems` and `maxProperties`/`minProperties`, worded as kube-apiserver words them.
fn validate_size(len: usize, schema: &Value, bounds: (&str, &str, &str), path: &str, causes: &mut Vec<Cause>) {
    let (max_key, min_key, noun) = bounds;
    if let Some(max) = schema[max_key].as_u64()
        && len as u64 > max
    {
        causes.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {len}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema[min_key].as_u64()
        && (len as u64) < min
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {len}: {path} in body should have at least {min} {noun}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prunes_defaults_and_validates() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["a"],
            "properties": {"a": {"type": "integer", "maximum": 10}, "b": {"type": "string", "default": "x"}}}}});
        let mut obj = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "n", "junk": 1}, "spec": {"a": 11, "c": true}, "other": 1});
        let unknown = prune(&mut obj, &schema);
        assert_eq!(unknown, vec!["metadata.junk", "other", "spec.c"]);
        let obj = apply_defaults(&obj, &schema);
        assert_eq!(obj["spec"]["b"], "x");
        let causes = validate_object(&obj, &schema);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.a");
        assert!(
            causes[0].message.contains("less than or equal to 10"),
            "{}",
            causes[0].message
        );
    }
}

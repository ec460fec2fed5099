//! Example objects, valid and invalid, checked against the generated CRD schema twice: on a
//! real kube-apiserver through kubectl (the authority: structural schema, CEL cost budget,
//! strict field validation), and offline with a small structural validator plus kube's
//! client-side CEL evaluator, which needs no server and also checks that `Plan::compile`
//! refuses what the schema refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use canary_operator::CanaryPromotion;
use kube::core::CustomResourceExt;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = CanaryPromotion::crd();
    let version = &crd.spec.versions[0];
    serde_json::to_value(version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap()).unwrap()
}

fn example() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/canarypromotion.yaml");
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// OpenAPI checks the API server applies before CEL: types, required, enum, pattern,
/// lengths, bounds, and no unknown fields (the schema does not preserve them).
fn structural(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() && schema["nullable"] == json!(true) {
        return;
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{path}: expected {ty}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} not in enum"));
    }
    if let Some(s) = value.as_str() {
        if let Some(p) = schema["pattern"].as_str()
            && !regex::Regex::new(p).unwrap().is_match(s)
        {
            errors.push(format!("{path}: {s:?} does not match {p}"));
        }
        let len = s.chars().count() as u64;
        if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
            errors.push(format!("{path}: longer than maxLength"));
        }
        if schema["minLength"].as_u64().is_some_and(|m| len < m) {
            errors.push(format!("{path}: shorter than minLength"));
        }
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|m| n < m) {
            errors.push(format!("{path}: below minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|m| n > m) {
            errors.push(format!("{path}: above maximum"));
        }
    }
    if let Some(items) = value.as_array() {
        if schema["maxItems"].as_u64().is_some_and(|m| items.len() as u64 > m) {
            errors.push(format!("{path}: more than maxItems"));
        }
        if schema["minItems"].as_u64().is_some_and(|m| (items.len() as u64) < m) {
            errors.push(format!("{path}: fewer than minItems"));
        }
        for (i, item) in items.iter().enumerate() {
            structural(&schema["items"], item, &format!("{path}[{i}]"), errors);
        }
    }
    if let Some(fields) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            if !fields.contains_key(required.as_str().unwrap()) {
                errors.push(format!("{path}.{}: required", required.as_str().unwrap()));
            }
        }
        let props = schema["properties"].as_object();
        let open = schema["x-kubernetes-preserve-unknown-fields"] == json!(true);
        if schema["maxProperties"]
            .as_u64()
            .is_some_and(|m| fields.len() as u64 > m)
        {
            errors.push(format!("{path}: more than maxProperties"));
        }
        // A map: every value has the schema of `additionalProperties`.
        let values = schema["additionalProperties"]
            .is_object()
            .then(|| &schema["additionalProperties"]);
        for (key, field) in fields {
            match props.and_then(|p| p.get(key)).or(values) {
                Some(s) => structural(s, field, &format!("{path}.{key}"), errors),
                // The API server owns the envelope (apiVersion, kind, metadata).
                None if open || path.is_empty() => {}
                None => errors.push(format!("{path}.{key}: unknown field")),
            }
        }
    }
}

/// All validation messages for `object`, OpenAPI first, then CEL (as the API server does:
/// CEL rules only run on objects that are structurally valid).
fn validate(object: &Value) -> Vec<String> {
    let schema = schema();
    let mut errors = Vec::new();
    structural(&schema, object, "", &mut errors);
    if !errors.is_empty() {
        return errors;
    }
    if let Err(cel) = kube::core::cel::Validator::new().validate(&schema, object, None) {
        errors.extend(cel.iter().map(|e| e.to_string()));
    }
    errors
}

#[test]
fn example_is_valid_and_deserializes() {
    let object = example();
    assert_eq!(validate(&object), Vec::<String>::new());
    let typed: CanaryPromotion = serde_json::from_value(object).unwrap();
    assert_eq!(typed.spec.promotion.steps.len(), 4);
    assert!(canary_core::Plan::compile(&typed.spec.promotion).is_ok());
}

/// The direct-scrape source: a port number or an EndpointSlice port name (exactly one), a path.
#[test]
fn scrape_sources() {
    let with = |scrape: Value| {
        let mut object = example();
        set(&mut object, "/spec/metrics/prometheus", Value::Null);
        set(&mut object, "/spec/metrics/scrape", scrape);
        // Custom gates need PromQL, and the post-promotion watch reads Prometheus: a scrape
        // spec has neither.
        set(&mut object, "/spec/gates/custom", Value::Null);
        set(&mut object, "/spec/postPromotion", Value::Null);
        validate(&object)
    };
    assert_eq!(with(json!({"port": 8080, "path": "/metrics"})), Vec::<String>::new());
    assert_eq!(with(json!({"portName": "metrics"})), Vec::<String>::new());
    let mut watching = example();
    set(&mut watching, "/spec/metrics", json!({"scrape": {"port": 8080}}));
    set(&mut watching, "/spec/gates/custom", Value::Null);
    assert!(
        validate(&watching)
            .iter()
            .any(|e| e.contains("spec.postPromotion: the watch reads the stable track from spec.metrics.prometheus")),
        "{:?}",
        validate(&watching)
    );
    for (scrape, expected) in [
        (json!({}), "spec.metrics.scrape: exactly one of port or portName"),
        (
            json!({"port": 8080, "portName": "metrics"}),
            "spec.metrics.scrape: exactly one of port or portName",
        ),
        (json!({"port": 0}), ".spec.metrics.scrape.port: below minimum"),
        (json!({"port": 70000}), ".spec.metrics.scrape.port: above maximum"),
        (json!({"port": 80, "path": "metrics"}), ".spec.metrics.scrape.path"),
        (json!({"port": 80, "path": "/m?x=1"}), ".spec.metrics.scrape.path"),
        (json!({"portName": "Metrics_Port"}), ".spec.metrics.scrape.portName"),
    ] {
        let errors = with(scrape.clone());
        assert!(errors.iter().any(|e| e.contains(expected)), "{scrape}: {errors:?}");
    }
}

#[test]
fn minimal_objects_for_each_router_are_valid() {
    for traffic in [
        json!({"replicas": {}}),
        json!({"gatewayApi": {"httpRoute": "api", "stableBackend": "api", "canaryBackend": "api-canary"}}),
    ] {
        let object = json!({
            "apiVersion": "scholarship.dev/v1alpha1", "kind": "CanaryPromotion",
            "metadata": {"name": "api"},
            "spec": {
                "stable": {"deployment": "api"}, "canary": {"deployment": "api-canary"},
                "traffic": traffic, "steps": [{"weight": 100, "bake": "0s"}],
                "metrics": {"prometheus": {"address": "http://prom:9090"}}
            }
        });
        assert_eq!(validate(&object), Vec::<String>::new(), "{traffic}");
    }
}

/// (description, JSON pointer into the example, new value or null to remove, expected
/// substring of a validation message).
fn invalid_cases() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    vec![
        (
            "weights not increasing",
            "/spec/steps/2/weight",
            json!(25),
            "spec.steps: weights must be strictly increasing",
        ),
        (
            "weights decreasing",
            "/spec/steps/1/weight",
            json!(3),
            "spec.steps: weights must be strictly increasing",
        ),
        (
            "last step below 100",
            "/spec/steps/3/weight",
            json!(90),
            "spec.steps: the last step must have weight 100",
        ),
        (
            "weight 0",
            "/spec/steps/0/weight",
            json!(0),
            "spec.steps[0].weight: below minimum",
        ),
        (
            "weight 101",
            "/spec/steps/3/weight",
            json!(101),
            "spec.steps[3].weight: above maximum",
        ),
        ("no steps", "/spec/steps", json!([]), "spec.steps: fewer than minItems"),
        ("bad bake", "/spec/steps/1/bake", json!("6 hours"), "spec.steps[1].bake"),
        (
            "decimal bake",
            "/spec/steps/1/bake",
            json!("1.5h"),
            "spec.steps[1].bake",
        ),
        (
            "interval too short",
            "/spec/interval",
            json!("500ms"),
            "spec.interval: must be at least 1s",
        ),
        ("bad interval", "/spec/interval", json!("30"), "spec.interval"),
        (
            "bad threshold",
            "/spec/gates/sli/availability",
            json!("0.999"),
            "spec.gates.sli.availability",
        ),
        (
            "bad operator",
            "/spec/gates/redis/p95LatencyMs",
            json!("=< 10"),
            "spec.gates.redis.p95LatencyMs",
        ),
        (
            "bad custom condition",
            "/spec/gates/custom/0/condition",
            json!("< lots"),
            "spec.gates.custom[0].condition",
        ),
        (
            "bad noData",
            "/spec/gates/sli/noData",
            json!("ignore"),
            "spec.gates.sli.noData",
        ),
        (
            "two routers",
            "/spec/traffic/replicas",
            json!({}),
            "spec.traffic: exactly one of nginx, gatewayApi or replicas",
        ),
        (
            "no router",
            "/spec/traffic/nginx",
            Value::Null,
            "spec.traffic: exactly one of nginx, gatewayApi or replicas",
        ),
        (
            "both above and below",
            "/spec/rollback/0/below",
            json!(1),
            "spec.rollback[]: exactly one of above or below",
        ),
        (
            "neither above nor below",
            "/spec/rollback/0/above",
            Value::Null,
            "spec.rollback[]: exactly one of above or below",
        ),
        (
            "duplicate rollback metric",
            "/spec/rollback/1/metric",
            json!("p95LatencyMs"),
            "spec.rollback: metric names must be unique",
        ),
        (
            "bad rollback window",
            "/spec/rollback/0/for",
            json!("ten minutes"),
            "spec.rollback[0].for",
        ),
        (
            "bad strategy",
            "/spec/promotion/strategy",
            json!("replace"),
            "spec.promotion.strategy",
        ),
        (
            "unknown field",
            "/spec/canaryWeight",
            json!(5),
            "spec.canaryWeight: unknown field",
        ),
        ("missing stable", "/spec/stable", Value::Null, "spec.stable: required"),
        (
            "bad deployment name",
            "/spec/canary/deployment",
            json!("Scholarship_API"),
            "spec.canary.deployment",
        ),
        (
            "bad prometheus address",
            "/spec/metrics/prometheus/address",
            json!("prometheus:9090"),
            "spec.metrics.prometheus.address",
        ),
        (
            "two metric sources",
            "/spec/metrics/scrape",
            json!({"port": 8080}),
            "spec.metrics: exactly one of prometheus or scrape",
        ),
        (
            "no metric source",
            "/spec/metrics/prometheus",
            Value::Null,
            "spec.metrics: exactly one of prometheus or scrape",
        ),
        (
            "bad canary service",
            "/spec/canary/service",
            json!("api.canary"),
            "spec.canary.service",
        ),
        (
            "custom PromQL gate with the scrape provider",
            "/spec/metrics",
            json!({"scrape": {"port": 8080}}),
            "spec.gates.custom: PromQL gates need spec.metrics.prometheus",
        ),
        (
            "rollback metric without a built-in query",
            "/spec/rollback/0/metric",
            json!("p99LatencyMs"),
            "spec.rollback[].metric: no built-in query for this metric",
        ),
        (
            "failover drill without the opt-in",
            "/spec/steps/1/redisFailoverDrill",
            json!(true),
            "spec.steps[].redisFailoverDrill: a Redis failover drill needs the opt-in spec.gates.redis.failoverDrill (and the Sentinels in its Secret)",
        ),
        (
            "failover drill window under a second",
            "/spec/gates/redis/failoverDrill",
            json!({"window": "500ms"}),
            "spec.gates.redis.failoverDrill.window: must be at least 1s",
        ),
        (
            "replay probe with two ports",
            "/spec/gates/replayProtection",
            json!({"probe": {"secretRef": "canary-probe-client", "path": "/api/v1/applications/x",
                "port": 8080, "portName": "http"}}),
            "spec.gates.replayProtection.probe: exactly one of port or portName must be set",
        ),
        (
            "replay probe without a port",
            "/spec/gates/replayProtection",
            json!({"probe": {"secretRef": "canary-probe-client", "path": "/api/v1/applications/x"}}),
            "spec.gates.replayProtection.probe: exactly one of port or portName must be set",
        ),
        (
            "rate-limit probe without a port",
            "/spec/gates/rateLimit",
            json!({"probe": {"path": "/api/v1/scholarships", "secretRef": "probe"}}),
            "spec.gates.rateLimit.probe: exactly one of port or portName must be set",
        ),
        (
            "rate-limit burst too large",
            "/spec/gates/rateLimit",
            json!({"probe": {"path": "/api/v1/scholarships", "port": 8080, "secretRef": "probe", "maxRequests": 100000}}),
            "spec.gates.rateLimit.probe.maxRequests",
        ),
        (
            "replay probe path that is no path",
            "/spec/gates/replayProtection",
            json!({"probe": {"secretRef": "canary-probe-client", "path": "api/v1", "port": 8080}}),
            "spec.gates.replayProtection.probe.path",
        ),
        (
            "bad progress deadline",
            "/spec/progressDeadline",
            json!("2 h"),
            "spec.progressDeadline",
        ),
        (
            "rollback promise shorter than a window",
            "/spec/rollbackWithin",
            json!("10m"),
            "spec.rollbackWithin: every spec.rollback[].for plus spec.interval must fit within it",
        ),
        (
            "bad rollback promise",
            "/spec/rollbackWithin",
            json!("2 minutes"),
            "spec.rollbackWithin",
        ),
        (
            "post-promotion rollback with an external promotion",
            "/spec/promotion",
            json!({"strategy": "external"}),
            "spec.postPromotion.rollback: with promotion.strategy external the stable image belongs to your pipeline",
        ),
        (
            "post-promotion watch on a custom rollback query",
            "/spec/rollback/0/query",
            json!("histogram_quantile(0.99, x)"),
            "spec.postPromotion: needs rollback criteria on built-in metrics",
        ),
        (
            "bad watch",
            "/spec/postPromotion/watch",
            json!("2 days"),
            "spec.postPromotion.watch",
        ),
        (
            "duplicate notify names",
            "/spec/notify/1/name",
            json!("platform-slack"),
            "spec.notify: names must be unique",
        ),
        (
            "track among the query labels",
            "/spec/metrics/prometheus/labels",
            json!({"namespace": "team-a", "track": "stable"}),
            "spec.metrics.prometheus.labels: track is set by the operator",
        ),
        (
            "a query label that is no label name",
            "/spec/metrics/prometheus/labels",
            json!({"app.kubernetes.io/name": "api"}),
            "spec.metrics.prometheus.labels: keys must be Prometheus label names",
        ),
    ]
}

fn set(object: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = object.pointer_mut(parent).unwrap();
    match (parent, new) {
        (Value::Array(items), Value::Null) => {
            items.remove(key.parse::<usize>().unwrap());
        }
        (Value::Array(items), v) => items[key.parse::<usize>().unwrap()] = v,
        (Value::Object(fields), Value::Null) => {
            fields.remove(key);
        }
        (Value::Object(fields), v) => {
            fields.insert(key.to_owned(), v);
        }
        _ => panic!("{pointer} is not inside an object or array"),
    }
}

#[test]
fn invalid_objects_are_rejected_with_a_message_naming_the_field() {
    let mut failures = Vec::new();
    for (what, pointer, new, expected) in invalid_cases() {
        let mut object = example();
        set(&mut object, pointer, new);
        let errors = validate(&object);
        if !errors.iter().any(|e| e.contains(expected)) {
            failures.push(format!("{what}: expected {expected:?}, got {errors:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The validation message the CRD itself defines (a CEL rule's `message`), if `expected`
/// names one rather than a generic OpenAPI check of the offline validator.
fn rule_message(expected: &str) -> Option<&str> {
    let (_, message) = expected.split_once(": ")?;
    let generic = [
        "below minimum",
        "above maximum",
        "fewer than minItems",
        "more than maxItems",
        "unknown field",
        "required",
        "expected ",
        "does not match",
        "not in enum",
        "longer than",
        "shorter than",
    ];
    (!generic.iter().any(|g| message.starts_with(g))).then_some(message)
}

/// What a person sees: every invalid example, created with kubectl on a real API server, is
/// refused, and the error names the field (and says the CRD's own message where it has one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_api_server_refuses_every_invalid_example_naming_the_field() {
    tokio::time::timeout(std::time::Duration::from_secs(120), async {
        let c = common::Cluster::start().await;
        let mut valid = example();
        valid["metadata"] = json!({"name": "valid"});
        c.kubectl(&["create", "-f", "-"], Some(&valid.to_string()))
            .await
            .expect("the example is accepted");
        let mut failures = Vec::new();
        // Compared without list indexes: `spec.rollback[0].metric` names `spec.rollback[].metric`.
        let unindexed = regex::Regex::new(r"\[\d*\]").unwrap();
        for (i, (what, pointer, new, expected)) in invalid_cases().into_iter().enumerate() {
            let mut object = example();
            object["metadata"] = json!({"name": format!("invalid-{i}")});
            set(&mut object, pointer, new);
            let field = unindexed
                .replace_all(expected.split(':').next().unwrap(), "")
                .into_owned();
            match c.kubectl(&["create", "-f", "-"], Some(&object.to_string())).await {
                Ok(out) => failures.push(format!("{what}: accepted ({})", out.trim())),
                Err(err) if !unindexed.replace_all(&err, "").contains(&field) => {
                    failures.push(format!("{what}: {field} not named in {err}"))
                }
                Err(err) if rule_message(expected).is_some_and(|m| !err.contains(m)) => {
                    failures.push(format!("{what}: {:?} not in {err}", rule_message(expected)))
                }
                Err(_) => {}
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    })
    .await
    .expect("bounded");
}

#[test]
fn duplicate_custom_gate_names_are_rejected() {
    let mut object = example();
    let gate = object.pointer("/spec/gates/custom/0").unwrap().clone();
    object
        .pointer_mut("/spec/gates/custom")
        .unwrap()
        .as_array_mut()
        .unwrap()
        .push(gate);
    let errors = validate(&object);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.gates.custom: names must be unique")),
        "{errors:?}"
    );
}

/// The CRD schema and `Plan::compile` must agree: whatever the schema rejects in these
/// cases, the core rejects too (defence in depth when the CRD is installed without
/// validation or with an older schema).
#[test]
fn core_rejects_what_the_schema_rejects() {
    let core_checked = [
        "weights not increasing",
        "weights decreasing",
        "last step below 100",
        "weight 0",
        "weight 101",
        "no steps",
        "bad bake",
        "decimal bake",
        "interval too short",
        "bad interval",
        "bad threshold",
        "bad operator",
        "bad custom condition",
        "two routers",
        "no router",
        "both above and below",
        "neither above nor below",
        "duplicate rollback metric",
        "bad rollback window",
        "bad progress deadline",
        "rollback promise shorter than a window",
        "bad rollback promise",
        "post-promotion rollback with an external promotion",
        "post-promotion watch on a custom rollback query",
        "bad watch",
        "duplicate notify names",
        "track among the query labels",
        "a query label that is no label name",
        "failover drill without the opt-in",
        "failover drill window under a second",
        "replay probe with two ports",
        "replay probe without a port",
        "rate-limit probe without a port",
        "rate-limit burst too large",
        "custom PromQL gate with the scrape provider",
        "rollback metric without a built-in query",
        "two metric sources",
        "no metric source",
    ];
    for (what, pointer, new, _) in invalid_cases() {
        if !core_checked.contains(&what) {
            continue;
        }
        let mut object = example();
        set(&mut object, pointer, new);
        let spec: canary_core::PromotionSpec = serde_json::from_value(object["spec"].clone()).unwrap();
        assert!(canary_core::Plan::compile(&spec).is_err(), "core accepted {what}");
    }
}

#[test]
fn cel_rules_have_bounded_inputs() {
    // The API server rejects CRDs whose rule cost is unbounded: every list and string the
    // rules touch must carry maxItems / maxLength.
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        match schema["type"].as_str() {
            Some("array") if schema["maxItems"].is_null() && !path.starts_with(".status") => {
                missing.push(format!("{path}: maxItems"));
            }
            Some("string")
                if schema["maxLength"].is_null()
                    && schema["enum"].is_null()
                    && !path.starts_with(".status")
                    && !path.starts_with(".metadata")
                    && !matches!(path, ".apiVersion" | ".kind") =>
            {
                missing.push(format!("{path}: maxLength"));
            }
            _ => {}
        }
        if let Some(props) = schema["properties"].as_object() {
            for (k, v) in props {
                walk(v, &format!("{path}.{k}"), missing);
            }
        }
        if schema["items"].is_object() {
            walk(&schema["items"], &format!("{path}[]"), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&schema(), "", &mut missing);
    assert!(missing.is_empty(), "unbounded: {missing:?}");
}

#[test]
fn printer_columns_and_subresources() {
    let crd = CanaryPromotion::crd();
    assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["canprom".to_owned()][..]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<(String, i32)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.to_uppercase(), c.priority.unwrap_or(0)))
        .collect();
    let expected = [
        ("PHASE", 0),
        ("WEIGHT", 0),
        ("STEP", 0),
        ("GATES", 0),
        ("AGE", 0),
        ("FAILING", 1),
        ("MESSAGE", 1),
    ];
    assert_eq!(columns, expected.map(|(n, p)| (n.to_owned(), p)));
}

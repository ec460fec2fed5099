//! The Helm charts as a platform team meets them: `helm lint --strict`, `helm template` with
//! the minimal and a production-like set of values, the rendered objects checked against the
//! Kubernetes schemas and applied to a real kube-apiserver, the values schema refusing bad
//! values by name, the Argo CD health check run by Lua against every phase, and every alert
//! and dashboard query parsed by promtool and written only with metric names the binaries
//! export. Also: the images' build stages build what CI builds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use canary_core::Phase;
use serde_json::{Value, json};
use testkit::charts::{Helm, Release, chart_dir, kubernetes_validate, workspace_root};

/// The Kubernetes minor the local API server and kubectl run.
const KUBERNETES_VERSION: &str = "1.33.0";

fn helm() -> Helm {
    Helm::new().expect("helm (scripts/fetch-tools.sh)")
}

/// The operator release as a production install sets it: monitoring on, Secret reads in two
/// namespaces.
fn operator_release(namespace: &str) -> Release<'_> {
    Release::new("canary-operator", "canary-operator", namespace)
        .set("metrics.serviceMonitor.enabled", "true")
        .set("prometheusRule.enabled", "true")
        .set("dashboard.enabled", "true")
        .set("secretReadNamespaces[0]", "scholarship")
        .set("secretReadNamespaces[1]", "payments")
}

fn api_release(namespace: &str) -> Release<'_> {
    Release::new("scholarship-api", "scholarship-api", namespace).values("ci/production-values.yaml")
}

/// YAML documents of a rendered chart, as JSON values.
fn documents(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{e}:\n{doc}")))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn both_charts_lint_strictly_with_default_minimal_and_production_values() {
    let helm = helm();
    let releases = [
        Release::new("canary-operator", "canary-operator", "canary-operator"),
        operator_release("canary-operator").set("watchNamespace", "scholarship"),
        Release::new("scholarship-api", "scholarship-api", "scholarship").values("ci/minimal-values.yaml"),
        api_release("scholarship"),
        api_release("scholarship")
            .set("router", "gatewayApi")
            .set("gatewayApi.parentRefs[0].name", "public")
            .set("networkPolicy.gatewayNamespace", "gateway-system"),
    ];
    for release in &releases {
        let report = helm.lint_strict(release).unwrap_or_else(|e| panic!("{release:?}: {e}"));
        assert!(report.contains("0 chart(s) failed"), "{report}");
        helm.template(release).unwrap_or_else(|e| panic!("{release:?}: {e}"));
    }
}

#[test]
fn the_api_chart_wants_its_database_and_identity_provider_named() {
    let err = helm()
        .template(&Release::new("scholarship-api", "scholarship-api", "scholarship"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("database.existingSecret"), "{err}");
    let err = helm()
        .template(
            &Release::new("scholarship-api", "scholarship-api", "scholarship").set("database.existingSecret", "db"),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("auth.jwksUrl, auth.issuer and auth.audience are required"),
        "{err}"
    );
}

#[test]
fn bad_values_are_refused_naming_the_value() {
    let helm = helm();
    let minimal = || Release::new("scholarship-api", "scholarship-api", "scholarship").values("ci/minimal-values.yaml");
    let cases = [
        (minimal().set("cors.allowedOrigins[0]", "*"), "/cors/allowedOrigins/0"),
        (minimal().set("redis.url", "redis://redis.data:6379"), "/redis/url"),
        (
            minimal().set("redis.url", "rediss://default:hunter2@redis.data:6380"),
            "/redis/url",
        ),
        (minimal().set("canary.replica", "2"), "'replica' not allowed"),
        (minimal().set("router", "istio"), "/router"),
        (
            minimal().set("canaryPromotion.interval", "30 seconds"),
            "/canaryPromotion/interval",
        ),
        (
            minimal().set("recommendations.openai.timeoutMs", "5000"),
            "/recommendations/openai/timeoutMs",
        ),
        (minimal().set("auth.replayFallback", "open"), "/auth/replayFallback"),
        // Values the schema must not let through because the binary would exit on them.
        (minimal().set("auth.algorithms[0]", "RS384"), "/auth/algorithms/0"),
        (
            minimal().set("limiter.rateLimits", "catalogue=10/1m"),
            "/limiter/rateLimits",
        ),
        (
            minimal().set("limiter.preauthLimit", "10/500ms"),
            "/limiter/preauthLimit",
        ),
        (
            minimal().set("canaryPromotion.gates.sli.p99LatencyMs", "< 0.8"),
            "'p99LatencyMs' not allowed",
        ),
    ];
    // Plaintext Redis is fine once TLS is explicitly not required.
    helm.template(
        &minimal()
            .set("redis.url", "redis://redis.data:6379")
            .set("redis.requireTls", "false"),
    )
    .unwrap();
    let production =
        || Release::new("scholarship-api", "scholarship-api", "scholarship").values("ci/production-values.yaml");
    // Combinations the templates refuse with a message of their own.
    let cases = cases.into_iter().chain([
        (
            production()
                .set("router", "gatewayApi")
                .set("gatewayApi.parentRefs[0].name", "public"),
            "networkPolicy.gatewayNamespace",
        ),
        (
            production().set("router", "none"),
            "autoscaling.enabled with router none",
        ),
        (
            production().set("canary.enabled", "false"),
            "canaryPromotion.enabled needs canary.enabled",
        ),
    ]);
    for (release, named) in cases {
        let err = helm
            .template(&release)
            .expect_err(&format!("{:?} accepted", release.set))
            .to_string();
        assert!(err.contains(named), "{:?}: {err}", release.set);
    }
    let err = helm
        .template(
            &Release::new("canary-operator", "canary-operator", "canary-operator")
                .set("leaderElection.enabled", "false"),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("replicaCount > 1 needs leaderElection.enabled"), "{err}");
}

#[test]
fn the_chart_crd_is_the_committed_crd() {
    let committed = std::fs::read(workspace_root().join("crds/canarypromotion.yaml")).unwrap();
    let in_chart = std::fs::read(chart_dir("canary-operator").join("crds/canarypromotion.yaml")).unwrap();
    assert!(
        committed == in_chart,
        "charts/canary-operator/crds/canarypromotion.yaml differs from crds/canarypromotion.yaml: copy it"
    );
}

#[test]
fn rendered_objects_validate_against_the_kubernetes_schemas() {
    let helm = helm();
    let dir = tempfile::tempdir().unwrap();
    let renders = [
        ("operator", helm.template(&operator_release("canary-operator")).unwrap()),
        (
            "operator-one-namespace",
            helm.template(&operator_release("canary-operator").set("watchNamespace", "scholarship"))
                .unwrap(),
        ),
        ("api", helm.template(&api_release("scholarship")).unwrap()),
    ];
    for (name, rendered) in renders {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let report = kubernetes_validate(&file, KUBERNETES_VERSION).unwrap_or_else(|e| panic!("{name}: {e}"));
        let builtin = documents(&rendered)
            .iter()
            .filter(|d| {
                !d["apiVersion"].as_str().unwrap().contains(".dev/")
                    && !d["apiVersion"].as_str().unwrap().contains("coreos.com")
            })
            .count();
        let passed = report.lines().filter(|l| l.contains(" passed for resource ")).count();
        assert_eq!(passed, builtin, "{name}: every built-in object validates:\n{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_charts_apply_to_a_real_api_server_and_the_operator_may_do_exactly_its_job() {
    let server = testkit::KubeApiServer::shared().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let kubectl = testkit::kube::Kubectl::new(&server.kubeconfig(), cache.path());
    let run = |args: &'static [&'static str]| {
        let kubectl = kubectl.clone();
        async move {
            kubectl
                .run(args)
                .await
                .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
        }
    };
    // The CRDs a cluster has: ours (from the chart, as `helm install` applies crds/), Gateway
    // API's HTTPRoute and the Prometheus Operator's ServiceMonitor and PrometheusRule.
    let mut crds = vec![
        chart_dir("canary-operator").join("crds/canarypromotion.yaml"),
        testkit::httproute_crd(),
    ];
    crds.extend(testkit::charts::prometheus_operator_crds().unwrap());
    for crd in &crds {
        let args = [
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crd.to_str().unwrap(),
        ];
        kubectl.run(&args).await.unwrap();
    }
    for crd in [
        "canarypromotions.scholarship.dev",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "httproutes.gateway.networking.k8s.io",
    ] {
        let crd = format!("crd/{crd}");
        kubectl
            .run(&["wait", "--for=condition=Established", "--timeout=30s", &crd])
            .await
            .unwrap();
    }
    for namespace in ["chart-operator", "chart-api", "chart-api-gw", "scholarship", "payments"] {
        // Other tests of this binary may have created it already.
        let _ = kubectl.run(&["create", "namespace", namespace]).await;
    }
    let helm = helm();
    let operator = helm.template(&operator_release("chart-operator")).unwrap();
    let api = helm.template(&api_release("chart-api")).unwrap();
    let gateway = helm
        .template(
            &api_release("chart-api-gw")
                .set("router", "gatewayApi")
                .set("gatewayApi.parentRefs[0].name", "public")
                .set("networkPolicy.gatewayNamespace", "gateway-system"),
        )
        .unwrap();
    for rendered in [&operator, &api, &gateway] {
        let applied = kubectl
            .run_with_input(
                &["apply", "--server-side", "--field-manager=helm", "-f", "-"],
                Some(rendered),
            )
            .await
            .unwrap();
        assert_eq!(
            applied.lines().filter(|l| l.contains("serverside-applied")).count(),
            documents(rendered).len(),
            "{applied}"
        );
    }
    // The API server defaulted and accepted the chart's CanaryPromotion (CEL rules included).
    let promotion = run(&[
        "get",
        "canarypromotion",
        "scholarship-api",
        "-n",
        "chart-api",
        "-o",
        "json",
    ])
    .await;
    let promotion: Value = serde_json::from_str(&promotion).unwrap();
    assert_eq!(
        promotion["spec"]["traffic"]["nginx"]["canaryIngress"],
        "scholarship-api-canary"
    );
    let promotion = run(&[
        "get",
        "canarypromotion",
        "scholarship-api",
        "-n",
        "chart-api-gw",
        "-o",
        "json",
    ])
    .await;
    let promotion: Value = serde_json::from_str(&promotion).unwrap();
    assert_eq!(
        promotion["spec"]["traffic"]["gatewayApi"]["httpRoute"],
        "scholarship-api"
    );

    let account = "--as=system:serviceaccount:chart-operator:canary-operator";
    let can = |verb: &'static str, resource: &'static str, namespace: &'static str| {
        let kubectl = kubectl.clone();
        // can-i exits 1 for "no".
        async move {
            kubectl
                .run(&["auth", "can-i", verb, resource, account, "-n", namespace])
                .await
                .is_ok_and(|answer| answer.trim() == "yes")
        }
    };
    assert!(can("patch", "canarypromotions.scholarship.dev/status", "chart-api").await);
    assert!(can("update", "httproutes.gateway.networking.k8s.io", "chart-api-gw").await);
    assert!(can("get", "secrets", "scholarship").await && can("get", "secrets", "payments").await);
    assert!(
        !can("get", "secrets", "chart-api").await,
        "Secret reads only where secretReadNamespaces says"
    );
    assert!(!can("list", "secrets", "scholarship").await);
    assert!(can("update", "leases.coordination.k8s.io", "chart-operator").await);
    assert!(!can("update", "leases.coordination.k8s.io", "chart-api").await);
    assert!(!can("delete", "deployments.apps", "chart-api").await);
}

/// Every phase the operator writes. A match without a wildcard: a new phase fails to compile
/// here until the health check's expectations say what Argo CD shows for it.
fn expected_health(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending | Phase::Progressing | Phase::Promoting => "Progressing",
        Phase::Paused => "Suspended",
        // Promoted and under the post-promotion watch: healthy, so sync waves do not wait 48 h.
        Phase::Promoted | Phase::Watching => "Healthy",
        Phase::RollingBack | Phase::RolledBack | Phase::Failed => "Degraded",
    }
}

const PHASES: [Phase; 9] = [
    Phase::Pending,
    Phase::Progressing,
    Phase::Paused,
    Phase::Promoting,
    Phase::Promoted,
    Phase::Watching,
    Phase::RollingBack,
    Phase::RolledBack,
    Phase::Failed,
];

/// A JSON value as a Lua table constructor (`null` becomes an absent field, as in Argo CD).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the chart's Argo CD health script on `object` with Lua 5.4: `(status, message)`.
fn argocd_health(object: &Value) -> (String, String) {
    let script = std::fs::read_to_string(chart_dir("canary-operator").join("files/argocd-health.lua")).unwrap();
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, \"\\n\", hs.message or \"\")",
        lua_literal(object)
    );
    let out = Command::new("lua5.4")
        .arg("-e")
        .arg(&program)
        .output()
        .expect("lua5.4 (Debian's lua5.4, scripts/setup.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap();
    (status.to_owned(), message.to_owned())
}

fn promotion_in(phase: Option<Phase>, generation: i64, observed: i64) -> Value {
    let mut object = json!({
        "apiVersion": "scholarship.dev/v1alpha1",
        "kind": "CanaryPromotion",
        "metadata": {"name": "api", "namespace": "team-a", "generation": generation},
        "spec": {}
    });
    if let Some(phase) = phase {
        object["status"] = json!({
            "phase": phase,
            "observedGeneration": observed,
            "stepLabel": "2/4",
            "weight": 30,
            "gatesSummary": "9/10",
            "message": "baking step 2/4"
        });
    }
    object
}

#[test]
fn argo_cd_health_maps_every_phase_the_operator_writes() {
    for phase in PHASES {
        let (status, message) = argocd_health(&promotion_in(Some(phase), 3, 3));
        assert_eq!(status, expected_health(phase), "{phase:?}: {message}");
        assert!(
            message.contains("step 2/4") && message.contains("weight 30%"),
            "{phase:?}: {message}"
        );
    }
    let (status, message) = argocd_health(&promotion_in(None, 1, 0));
    assert_eq!(
        (status.as_str(), message.contains("Waiting for canary-operator")),
        ("Progressing", true)
    );
    // A new spec the operator has not observed yet is not Healthy, whatever the old phase says.
    let (status, message) = argocd_health(&promotion_in(Some(Phase::Promoted), 4, 3));
    assert_eq!(status, "Progressing", "{message}");
    assert!(message.contains("generation 4"), "{message}");
    // A missing Deployment: Degraded with the operator's reason, not Progressing forever.
    let mut missing = promotion_in(Some(Phase::Progressing), 4, 3);
    missing["status"]["conditions"] = json!([
        {"type": "Ready", "status": "False", "reason": "Progressing", "message": "m"},
        {"type": "ReferencesResolved", "status": "False", "reason": "DeploymentNotFound",
         "message": "Deployment team-a/api-canary not found"}
    ]);
    assert_eq!(
        argocd_health(&missing),
        (
            "Degraded".to_owned(),
            "Deployment team-a/api-canary not found".to_owned()
        )
    );
    let mut unknown = promotion_in(Some(Phase::Promoted), 3, 3);
    unknown["status"]["phase"] = json!("Exploded");
    assert_eq!(argocd_health(&unknown).0, "Unknown");
}

/// Sample names a registry exposes, from its `# TYPE` lines: `x_total` for a counter `x`,
/// `x_bucket`/`x_sum`/`x_count` for a histogram, `x` for a gauge.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if (words.next(), words.next()) != (Some("#"), Some("TYPE")) {
            continue;
        }
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["bucket", "sum", "count"] {
                    names.insert(format!("{name}_{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every sample name the two binaries' registries expose. A family without series prints
/// nothing, so one series is recorded in each labelled family first, through the same public
/// handles the binaries record with.
fn exported_metric_names() -> BTreeSet<String> {
    use canary_core::{CanaryPromotionStatus, GateState, GateStatus};
    use scholarship_api::metrics::*;

    let operator = canary_operator::metrics::Metrics::new();
    operator.error("kube_api", "act");
    operator.gate(GateState::Passing);
    operator.notification("failed");
    operator.set_phase("team-a/api", Some(Phase::Progressing));
    let gate = GateStatus {
        name: "sli.p95LatencyMs".into(),
        state: GateState::Passing,
        value: Some(40.0),
        threshold: "<= 250".into(),
        samples: None,
        since: chrono::DateTime::UNIX_EPOCH,
        message: None,
    };
    let status = CanaryPromotionStatus {
        phase: Phase::Progressing,
        weight: 10,
        gates: vec![gate],
        ..Default::default()
    };
    operator.set_progress("team-a", "api", Some(&status));

    let api = Metrics::new(scholarship_api::config::Track::Canary);
    let route = || std::borrow::Cow::Borrowed("/api/v1/scholarships");
    let method = || std::borrow::Cow::Borrowed("GET");
    api.http_requests
        .get_or_create(&RequestLabels {
            route: route(),
            method: method(),
            status: 200,
        })
        .inc();
    api.http_request_duration
        .get_or_create(&RouteLabels {
            route: route(),
            method: method(),
        })
        .observe(0.01);
    api.ratelimit_decisions
        .get_or_create(&DecisionLabels {
            route: route(),
            decision: Decision::allowed,
            principal: PrincipalKind::user,
        })
        .inc();
    api.redis_command_duration
        .get_or_create(&CommandLabels { command: "EVALSHA" })
        .observe(0.001);
    api.jwt_rejected
        .get_or_create(&RejectLabels {
            reason: scholarship_api::auth::RejectReason::missing,
        })
        .inc();

    let mut names = exported_names(&operator.encode());
    names.extend(exported_names(&api.encode()));
    names
}

/// Metric names a query selects: every selector in the charts is written `name{...}`.
fn selected_metrics(expr: &str) -> BTreeSet<String> {
    let selector = regex::Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{").unwrap();
    let label_values = regex::Regex::new(r"label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)").unwrap();
    selector
        .captures_iter(expr)
        .chain(label_values.captures_iter(expr))
        .map(|c| c[1].to_owned())
        .collect()
}

/// Checks `rules` (a Prometheus rule file as JSON) with `promtool check rules`.
fn promtool_check(rules: &Value, dir: &Path, name: &str) {
    let file = dir.join(format!("{name}.rules.json"));
    std::fs::write(&file, serde_json::to_string_pretty(rules).unwrap()).unwrap();
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("promtool (Debian's prometheus, scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alerts_and_dashboard_parse_and_use_only_metrics_the_binaries_export() {
    let exported = exported_metric_names();
    assert!(exported.contains("canary_operator_promotion_weight") && exported.contains("http_requests_total"));

    let helm = helm();
    let dir = tempfile::tempdir().unwrap();
    let mut docs = documents(&helm.template(&operator_release("canary-operator")).unwrap());
    docs.extend(documents(&helm.template(&api_release("scholarship")).unwrap()));

    let rules = of_kind(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 2, "one PrometheusRule per chart");
    let mut alerts = 0;
    for rule in rules {
        let name = rule["metadata"]["name"].as_str().unwrap();
        promtool_check(&json!({"groups": rule["spec"]["groups"]}), dir.path(), name);
        for group in rule["spec"]["groups"].as_array().unwrap() {
            for alert in group["rules"].as_array().unwrap() {
                let expr = alert["expr"].as_str().unwrap();
                let used = selected_metrics(expr);
                assert!(!used.is_empty(), "{expr}");
                let unknown: Vec<_> = used.difference(&exported).collect();
                assert!(
                    unknown.is_empty(),
                    "alert {}: unknown metrics {unknown:?}",
                    alert["alert"]
                );
                alerts += 1;
            }
        }
    }
    assert!(alerts >= 8, "{alerts} alerts");

    let dashboards = of_kind(&docs, "ConfigMap");
    let [dashboard] = dashboards.as_slice() else {
        panic!("one dashboard ConfigMap, got {}", dashboards.len())
    };
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(dashboard["data"]["canary-promotions.json"].as_str().unwrap()).unwrap();
    let mut recording = Vec::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let used = selected_metrics(expr);
            let unknown: Vec<_> = used.difference(&exported).collect();
            assert!(
                !used.is_empty() && unknown.is_empty(),
                "panel {}: {expr} uses {unknown:?}",
                panel["title"]
            );
            // Grafana's variables, as Grafana substitutes them.
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$namespace", ".*")
                .replace("$promotion", ".*");
            recording.push(json!({"record": format!("dashboard:panel_{}:{}", panel["id"], target["refId"].as_str().unwrap()), "expr": expr}));
        }
    }
    for variable in json["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            let unknown: Vec<_> = selected_metrics(query).difference(&exported).cloned().collect();
            assert!(unknown.is_empty(), "variable {}: {unknown:?}", variable["name"]);
        }
    }
    assert!(recording.len() >= 9);
    promtool_check(
        &json!({"groups": [{"name": "dashboard", "rules": recording}]}),
        dir.path(),
        "dashboard",
    );
}

/// `(workspace directory, binary, chart)` of each image.
const IMAGES: [(&str, &str, &str); 2] = [
    ("api-service", "scholarship-api", "scholarship-api"),
    ("operator", "canary-operator", "canary-operator"),
];

#[test]
fn each_image_builds_what_ci_builds_and_the_charts_name_it_by_the_convention() {
    let ci = std::fs::read_to_string(workspace_root().join("scripts/test.sh")).unwrap();
    for (dir, binary, chart) in IMAGES {
        let dockerfile = std::fs::read_to_string(workspace_root().join(dir).join("Dockerfile")).unwrap();
        let build = dockerfile
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("cargo build"))
            .unwrap_or_else(|| panic!("{dir}/Dockerfile has no cargo build"));
        let build = build.trim_end_matches('\\').trim();
        assert!(
            ci.lines().any(|l| l.trim() == build),
            "{dir}/Dockerfile builds `{build}`, which scripts/test.sh does not"
        );
        assert!(
            build.contains(&format!("--bin {binary}")) && build.contains("--locked"),
            "{build}"
        );
        // Runtime stage: distroless, non-root, exec-form entry point (no shell in the image).
        let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
        assert!(
            runtime.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
            "{runtime}"
        );
        assert!(runtime.contains("USER 65532:65532"), "{runtime}");
        assert!(
            runtime.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "{runtime}"
        );

        // <registry>/<binary>:<crate version>.
        let crate_version = std::fs::read_to_string(workspace_root().join(dir).join("Cargo.toml"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("version = "))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap();
        let chart_yaml: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(chart_dir(chart).join("Chart.yaml")).unwrap()).unwrap();
        assert_eq!(
            chart_yaml["appVersion"],
            crate_version.as_str(),
            "{chart}: appVersion follows the crate"
        );
        let values: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(chart_dir(chart).join("values.yaml")).unwrap()).unwrap();
        assert_eq!(
            values["image"]["repository"], binary,
            "{chart}: the image is named after the binary"
        );
        assert_eq!(values["image"]["tag"], "", "{chart}: the tag defaults to appVersion");
    }
    // And the rendered image reference follows it.
    let rendered = helm()
        .template(&Release::new("scholarship-api", "scholarship-api", "scholarship").values("ci/minimal-values.yaml"))
        .unwrap();
    assert!(
        rendered.contains("image: \"ghcr.io/scholarship-dev/scholarship-api:0.1.0\""),
        "{rendered}"
    );
}

#[test]
fn the_canary_ingress_leaves_the_weight_to_the_operator() {
    let docs = documents(&helm().template(&api_release("scholarship")).unwrap());
    let ingresses = of_kind(&docs, "Ingress");
    let canary = ingresses
        .iter()
        .find(|i| i["metadata"]["name"] == "scholarship-api-canary")
        .unwrap();
    let annotations = &canary["metadata"]["annotations"];
    assert_eq!(annotations["nginx.ingress.kubernetes.io/canary"], "true");
    // Absent: neither `helm upgrade` nor an Argo CD sync resets a promotion's traffic.
    assert!(annotations.get("nginx.ingress.kubernetes.io/canary-weight").is_none());
    // With the autoscaler on, the stable replica count is the HPA's, not the chart's.
    let stable = of_kind(&docs, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "scholarship-api")
        .unwrap();
    assert!(stable["spec"].get("replicas").is_none());
    let grace = stable["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert_eq!(grace, 5 + 25 + 5, "drain 5 s + grace 25 s + margin");
}

#[test]
fn router_none_serves_both_tracks_through_one_service_and_scrapes_each_once() {
    let docs = documents(
        &helm()
            .template(
                &api_release("scholarship")
                    .set("router", "none")
                    .set("autoscaling.enabled", "false"),
            )
            .unwrap(),
    );
    assert!(of_kind(&docs, "Ingress").is_empty() && of_kind(&docs, "HTTPRoute").is_empty());
    let services = of_kind(&docs, "Service");
    let selector = |name: &str| {
        services
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .map(|s| s["spec"]["selector"].clone())
            .unwrap_or_else(|| panic!("no Service {name}"))
    };
    assert!(
        selector("scholarship-api").get("scholarship.dev/track").is_none(),
        "both tracks"
    );
    assert_eq!(selector("scholarship-api-stable")["scholarship.dev/track"], "stable");
    assert_eq!(selector("scholarship-api-canary")["scholarship.dev/track"], "canary");
    let monitor = of_kind(&docs, "ServiceMonitor")[0];
    assert_eq!(
        monitor["spec"]["selector"]["matchExpressions"][0]["values"],
        json!(["stable", "canary"]),
        "the Service across both tracks is not scraped"
    );
    // Without the autoscaler the canary defaults to the stable size: it takes all traffic at
    // the last step.
    let deployments = of_kind(&docs, "Deployment");
    let replicas: Vec<&Value> = deployments.iter().map(|d| &d["spec"]["replicas"]).collect();
    assert_eq!(replicas, [&json!(3), &json!(3)]);
    assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 2, "one budget per track");
}

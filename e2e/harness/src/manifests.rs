//! The objects the scenario applies, rendered from the Helm charts a cluster would install:
//! `charts/scholarship-api` (the API's two Deployments, Services, Ingresses and the
//! CanaryPromotion) and `charts/canary-operator` (its ServiceAccount and least-privilege RBAC),
//! so the demo proves the charts work with the operator. Only the CRD comes from `crds/`.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use testkit::charts::{Helm, Release};

use crate::error::{HarnessError, Result};

pub const NAMESPACE: &str = "scholarship";
/// The scholarship-api release: its Deployments, Services and Ingresses are named after it.
pub const STABLE: &str = "scholarship-api";
pub const CANARY: &str = "scholarship-api-canary";
pub const PROMOTION: &str = "scholarship-api";
const IMAGE_REGISTRY: &str = "registry.example";
const STABLE_TAG: &str = "v1.4.0";
const CANARY_TAG: &str = "v1.5.0";
pub const STABLE_IMAGE: &str = "registry.example/scholarship-api:v1.4.0";
pub const CANARY_IMAGE: &str = "registry.example/scholarship-api:v1.5.0";
const HOST: &str = "api.scholarship.example";

/// The committed CRD, compiled in so the demo binary runs from anywhere.
const CRD_YAML: &str = include_str!("../../../crds/canarypromotion.yaml");
/// The canary-operator release's namespace: its ServiceAccount and Lease live there.
pub const OPERATOR_NAMESPACE: &str = "canary-operator";
/// The Secret holding the Redis URL and CA for the promotion's Redis gate.
pub const REDIS_SECRET: &str = "redis-credentials";
/// The operator's ServiceAccount: the canary-operator release's name.
const OPERATOR_ACCOUNT: &str = "canary-operator";

/// The CanaryPromotion resource, for `Api<DynamicObject>`.
pub fn promotion_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("scholarship.dev", "v1alpha1", "CanaryPromotion");
    ApiResource::from_gvk_with_plural(&gvk, "canarypromotions")
}

/// What the CanaryPromotion asks for; the rest of the spec is fixed (nginx router, SLI gates,
/// rollback criteria, patch promotion).
#[derive(Debug, Clone)]
pub struct PromotionPlan {
    /// `(weight, bake)`, weights strictly increasing, the last 100.
    pub steps: Vec<(u32, Duration)>,
    pub interval: Duration,
    /// Prometheus HTTP API base URL.
    pub prometheus: String,
    /// Canary requests a metric window must hold before a gate counts as data.
    pub min_samples: u32,
    pub progress_deadline: Duration,
    /// The operator's replay-protection and rate-limit probes (the pods must be reachable
    /// through EndpointSlices, with JWT auth on).
    pub probes: bool,
}

/// The Secret of the probes' client credentials and tester token.
pub const PROBE_SECRET: &str = "canary-probe-client";

/// Creates the probes' Secret: the IdP's token endpoint, the probe client and the tester
/// token, the keys `kubectl create secret generic` would be given.
pub async fn create_probe_secret(
    client: &Client,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
    tester_token: &str,
) -> Result<()> {
    let data = json!({"tokenUrl": token_url, "clientId": client_id, "clientSecret": client_secret,
                      "testerToken": tester_token});
    create_secret(client, PROBE_SECRET, data).await
}

/// The EndpointSlice the endpoint controller would write for `service` with one ready pod at
/// `addr`, port name `http` (the charts' Service port).
pub async fn create_endpoint_slice(client: &Client, service: &str, addr: std::net::SocketAddr) -> Result<()> {
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let name = format!("{service}-pods");
    let slice = typed(
        &name,
        json!({
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": addr.port(), "protocol": "TCP"}],
            "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": true},
                           "targetRef": {"kind": "Pod", "name": format!("{service}-0")}}]
        }),
    )?;
    slices.create(&PostParams::default(), &slice).await?;
    Ok(())
}

/// A Go-style duration (`12s`, `1500ms`) as the CRD's grammar wants it.
pub fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The scholarship-api chart's values for the demo: both tracks, the nginx router, and (with
/// a plan) the CanaryPromotion. The API processes themselves run outside the cluster, as the
/// pods of these Deployments would, so the values that only reach the pods' environment
/// (database Secret, identity provider) matter to nobody here: the processes run without an
/// identity provider, as the values say.
pub fn api_values(plan: Option<&PromotionPlan>) -> Value {
    let mut values = json!({
        "image": {"registry": IMAGE_REGISTRY, "repository": "scholarship-api", "tag": STABLE_TAG},
        "stable": {"replicas": 3},
        "canary": {"enabled": true, "replicas": 1, "image": {"tag": CANARY_TAG}},
        "router": "nginx",
        "ingress": {"host": HOST},
        "database": {"existingSecret": "scholarship-api-database"},
        "auth": {"insecureNoAuth": true},
    });
    if let Some(plan) = plan {
        values["canaryPromotion"] = promotion_values(plan);
    }
    values
}

fn promotion_values(plan: &PromotionPlan) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|(weight, bake)| json!({"weight": weight, "bake": go_duration(*bake)}))
        .collect();
    let mut gates = json!({
        "sli": {
            "availability": ">= 0.995",
            "p95LatencyMs": "<= 250",
            "errorRate5xx": "<= 0.005",
            "rateLimited429": "<= 0.01",
            "noData": "hold",
            "minSamples": plan.min_samples
        },
        // The runbook's Redis checks, probed by the operator itself. Not the fragmentation
        // ratio: a fresh, nearly empty Redis reports a high one (its RSS is mostly the
        // allocator's baseline), which says nothing about a real one.
        "redis": {
            "enabled": true,
            "secretRef": REDIS_SECRET,
            "requireTls": true,
            "requireAuth": true,
            "requireReplica": true,
            "p95LatencyMs": "< 10",
            "evictedKeys": "== 0",
            "limiterErrors": "== 0"
        }
    });
    if plan.probes {
        gates["replayProtection"] = json!({"enabled": true, "secretRef": PROBE_SECRET});
        gates["rateLimit"] = json!({"enabled": true, "secretRef": PROBE_SECRET});
    }
    json!({
        "enabled": true,
        "steps": steps,
        "interval": go_duration(plan.interval),
        "progressDeadline": go_duration(plan.progress_deadline),
        "prometheus": {"address": plan.prometheus},
        "gates": gates,
        "rollback": [
            {"metric": "errorRate5xx", "above": 0.05, "for": "20s"},
            {"metric": "p95LatencyMs", "above": 1000, "for": "30s"},
            // The runbook's model fallback ratio (5 %); no data while no model is asked.
            {"metric": "openaiFallbackRate", "above": 0.05, "for": "30s"}
        ],
        // 30 s + the interval fits; status.rollbackBound adds the operator's metric window.
        "rollbackWithin": "45s",
        "promotion": {"strategy": "patch"}
    })
}

/// Renders a chart with `values` (written to a file beside the logs, so a reader can re-run
/// `helm template` with them).
pub fn render(chart: &str, release: &str, namespace: &str, values: &Value, dir: &Path) -> Result<String> {
    let file = dir.join(format!("{release}.values.json"));
    let text = serde_json::to_string_pretty(values).map_err(|e| HarnessError::Manifest {
        name: file.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(&file, text).map_err(HarnessError::io(format!("write {}", file.display())))?;
    let helm = Helm::new().map_err(HarnessError::io("find helm"))?;
    helm.template(&Release::new(chart, release, namespace).values_file(&file))
        .map_err(HarnessError::io(format!("helm template {chart}")))
}

/// The documents of a rendered chart, split by kind: `(CanaryPromotions, everything else)`.
fn split_promotions(rendered: &str) -> (String, String) {
    let (mut promotions, mut rest) = (String::new(), String::new());
    for document in rendered.split("\n---") {
        let kind = document
            .lines()
            .find_map(|l| l.strip_prefix("kind:"))
            .map(str::trim)
            .unwrap_or_default();
        let target = if kind == "CanaryPromotion" {
            &mut promotions
        } else {
            &mut rest
        };
        target.push_str(document);
        target.push_str("\n---");
    }
    (promotions, rest)
}

fn typed<T: DeserializeOwned>(name: &str, value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| HarnessError::Manifest {
        name: name.to_owned(),
        message: e.to_string(),
    })
}

pub fn deployment(name: &str, image: &str, replicas: i32) -> Result<Deployment> {
    typed(
        name,
        json!({
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": STABLE}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": STABLE, "app.kubernetes.io/instance": name}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": STABLE, "app.kubernetes.io/instance": name}},
                    "spec": {"containers": [{"name": "api", "image": image, "ports": [{"containerPort": 8080}]}]}
                }
            }
        }),
    )
}

/// The stable Ingress, or (with `canary`) its ingress-nginx canary twin for the same host.
pub fn ingress(name: &str, canary: bool) -> Result<Ingress> {
    let annotations = if canary {
        json!({"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "0"})
    } else {
        json!({})
    };
    typed(
        name,
        json!({
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": HOST, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"number": 80}}}
            }]}}]}
        }),
    )
}

pub fn crd() -> Result<CustomResourceDefinition> {
    serde_saphyr::from_str(CRD_YAML).map_err(|e| HarnessError::Manifest {
        name: "crds/canarypromotion.yaml".into(),
        message: e.to_string(),
    })
}

/// Installs the CRD and waits until CanaryPromotions are served.
pub async fn install_crd(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd()?).await?;
    let promotions: Api<DynamicObject> = Api::all_with(client.clone(), &promotion_resource());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match promotions.list(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The namespace and the scholarship-api release's objects (both Deployments, Services and
/// Ingresses), before any promotion exists.
pub async fn apply_workload(client: &Client, dir: &Path) -> Result<()> {
    create_namespace(client, NAMESPACE).await?;
    let rendered = render("scholarship-api", STABLE, NAMESPACE, &api_values(None), dir)?;
    let (_, workload) = split_promotions(&rendered);
    testkit::kube::apply_yaml(client, &workload, NAMESPACE).await?;
    Ok(())
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &typed("namespace", json!({"metadata": {"name": name}}))?,
        )
        .await?;
    Ok(())
}

/// The primary's name in Sentinel, when the scenario runs Sentinels.
pub const REDIS_MASTER_NAME: &str = "scholarship-redis";

/// The operator's Redis gate Secret: the primary's URL and CA, and the Sentinels when there
/// are any (the probe then follows them to the current primary).
pub async fn create_redis_secret(client: &Client, url: &str, ca_file: &Path, sentinels: &[String]) -> Result<()> {
    let ca = std::fs::read_to_string(ca_file).map_err(HarnessError::io(format!("read {}", ca_file.display())))?;
    let mut data = json!({"url": url, "ca.crt": ca});
    if !sentinels.is_empty() {
        data["sentinels"] = json!(sentinels.join(","));
        data["masterName"] = json!(REDIS_MASTER_NAME);
    }
    create_secret(client, REDIS_SECRET, data).await
}

/// Creates the Secret `name` in the API's namespace from string values, as `kubectl create
/// secret generic --from-literal` would.
async fn create_secret(client: &Client, name: &str, string_data: Value) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = typed(
        name,
        json!({"metadata": {"name": name, "namespace": NAMESPACE}, "stringData": string_data}),
    )?;
    secrets.create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// Installs the canary-operator release (ServiceAccount, least-privilege RBAC confined to the
/// API's namespace with Secret reads there, Lease permissions, and its Deployment, which no kubelet runs
/// here: the operator runs as a local process instead) and writes a kubeconfig for its
/// ServiceAccount at `out`, so the operator runs with exactly the chart's permissions.
pub async fn install_operator(client: &Client, admin_kubeconfig: &Path, dir: &Path, out: &Path) -> Result<()> {
    create_namespace(client, OPERATOR_NAMESPACE).await?;
    // The operator process watches only the API's namespace (`--namespace`), so the chart
    // grants a Role there and nothing cluster-wide: the demo proves that narrow install works.
    let values = json!({"watchNamespace": NAMESPACE, "secretReadNamespaces": [NAMESPACE]});
    let rendered = render("canary-operator", OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, &values, dir)?;
    testkit::kube::apply_yaml(client, &rendered, OPERATOR_NAMESPACE).await?;
    testkit::kube::service_account_kubeconfig(
        client,
        admin_kubeconfig,
        OPERATOR_NAMESPACE,
        OPERATOR_ACCOUNT,
        Duration::from_secs(24 * 3600),
        out,
    )
    .await?;
    Ok(())
}

/// The chart's CanaryPromotion for `plan`, applied as `helm upgrade` would add it.
pub async fn create_promotion(client: &Client, plan: &PromotionPlan, dir: &Path) -> Result<()> {
    let rendered = render("scholarship-api", STABLE, NAMESPACE, &api_values(Some(plan)), dir)?;
    let (promotion, _) = split_promotions(&rendered);
    let applied = testkit::kube::apply_yaml(client, &promotion, NAMESPACE).await?;
    if applied.len() != 1 {
        return Err(HarnessError::Manifest {
            name: "charts/scholarship-api".into(),
            message: format!("expected one CanaryPromotion, rendered {}", applied.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_crd_parses() {
        let crd = crd().expect("crds/canarypromotion.yaml parses");
        assert_eq!(crd.spec.names.kind, "CanaryPromotion");
    }

    #[test]
    fn durations_use_the_crd_grammar() {
        assert_eq!(go_duration(Duration::from_secs(12)), "12s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn the_charts_render_the_promotion_with_the_plan_s_steps() {
        let plan = PromotionPlan {
            steps: vec![(10, Duration::from_secs(10)), (100, Duration::from_secs(5))],
            interval: Duration::from_secs(2),
            prometheus: "http://127.0.0.1:9090".into(),
            min_samples: 20,
            progress_deadline: Duration::from_secs(120),
            probes: true,
        };
        let dir = tempfile::tempdir().expect("a scratch directory");
        let rendered = render(
            "scholarship-api",
            STABLE,
            NAMESPACE,
            &api_values(Some(&plan)),
            dir.path(),
        )
        .expect("the chart renders (scripts/fetch-tools.sh installs helm)");
        let (promotion, workload) = split_promotions(&rendered);
        let promotion: Value = serde_saphyr::from_str(promotion.trim_end_matches("\n---")).expect("one YAML document");
        assert_eq!(promotion["spec"]["steps"][1], json!({"weight": 100, "bake": "5s"}));
        assert_eq!(promotion["spec"]["interval"], "2s");
        assert_eq!(promotion["spec"]["canary"]["image"], CANARY_IMAGE);
        assert_eq!(promotion["spec"]["traffic"]["nginx"]["canaryIngress"], CANARY);
        assert!(workload.contains(&format!("image: \"{STABLE_IMAGE}\"")), "{workload}");
        assert!(!workload.contains("kind: CanaryPromotion"));
    }
}

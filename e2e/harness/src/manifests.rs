//! The objects the scenario applies: the CRD, the API's two Deployments, Services and
//! Ingresses (stable + ingress-nginx canary), and a CanaryPromotion with short steps.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{HarnessError, Result};

pub const NAMESPACE: &str = "scholarship";
pub const STABLE: &str = "scholarship-api";
pub const CANARY: &str = "scholarship-api-canary";
pub const PROMOTION: &str = "scholarship-api";
pub const STABLE_IMAGE: &str = "registry.example/scholarship-api:v1.4.0";
pub const CANARY_IMAGE: &str = "registry.example/scholarship-api:v1.5.0";
const HOST: &str = "api.scholarship.example";

/// The committed CRD, compiled in so the demo binary runs from anywhere.
const CRD_YAML: &str = include_str!("../../../crds/canarypromotion.yaml");
/// The operator's least-privilege RBAC, as a cluster admin would apply it.
const RBAC_YAML: &str = include_str!("../../../operator/deploy/rbac.yaml");
/// The namespace `operator/deploy/rbac.yaml` puts the operator's ServiceAccount and Lease in.
pub const OPERATOR_NAMESPACE: &str = "canary-operator";
/// The Secret holding the Redis URL and CA for the promotion's Redis gate.
pub const REDIS_SECRET: &str = "redis-credentials";
/// The operator's ServiceAccount in that manifest.
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
}

/// A Go-style duration (`12s`, `1500ms`) as the CRD's grammar wants it.
pub fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

pub fn promotion(plan: &PromotionPlan) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|(weight, bake)| json!({"weight": weight, "bake": go_duration(*bake)}))
        .collect();
    json!({
        "apiVersion": "scholarship.dev/v1alpha1",
        "kind": "CanaryPromotion",
        "metadata": {"name": PROMOTION, "namespace": NAMESPACE},
        "spec": {
            "stable": {"deployment": STABLE},
            "canary": {"deployment": CANARY, "image": CANARY_IMAGE},
            "traffic": {"nginx": {"canaryIngress": CANARY}},
            "steps": steps,
            "interval": go_duration(plan.interval),
            "progressDeadline": go_duration(plan.progress_deadline),
            "metrics": {"prometheus": {"address": plan.prometheus}},
            "gates": {
                "sli": {
                    "availability": ">= 0.995",
                    "p95LatencyMs": "<= 250",
                    "errorRate5xx": "<= 0.005",
                    "rateLimited429": "<= 0.01",
                    "noData": "hold",
                    "minSamples": plan.min_samples
                },
                // The runbook's Redis checks, probed by the operator itself. Not the
                // fragmentation ratio: a fresh, nearly empty Redis reports a high one (its RSS
                // is mostly the allocator's baseline), which says nothing about a real one.
                "redis": {
                    "secretRef": REDIS_SECRET,
                    "requireTls": true,
                    "requireAuth": true,
                    "requireReplica": true,
                    "p95LatencyMs": "< 10",
                    "evictedKeys": "== 0",
                    "limiterErrors": "== 0"
                }
            },
            "rollback": [
                {"metric": "errorRate5xx", "above": 0.05, "for": "20s"},
                {"metric": "p95LatencyMs", "above": 1000, "for": "30s"}
            ],
            "promotion": {"strategy": "patch"}
        }
    })
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

pub fn service(name: &str) -> Result<Service> {
    typed(
        name,
        json!({
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": {"app.kubernetes.io/instance": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
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

/// The namespace and the API's workload objects, before any promotion exists.
pub async fn apply_workload(client: &Client) -> Result<()> {
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&pp, &typed("namespace", json!({"metadata": {"name": NAMESPACE}}))?)
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    deployments.create(&pp, &deployment(STABLE, STABLE_IMAGE, 3)?).await?;
    deployments.create(&pp, &deployment(CANARY, CANARY_IMAGE, 1)?).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), NAMESPACE);
    for (name, canary) in [(STABLE, false), (CANARY, true)] {
        services.create(&pp, &service(name)?).await?;
        ingresses.create(&pp, &ingress(name, canary)?).await?;
    }
    Ok(())
}

/// The Secret the Redis gate connects with: the API's own `rediss://` URL (password included)
/// and the CA that signed the server certificate.
pub async fn create_redis_secret(client: &Client, url: &str, ca_file: &Path) -> Result<()> {
    let ca = std::fs::read_to_string(ca_file).map_err(HarnessError::io(format!("read {}", ca_file.display())))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = typed(
        REDIS_SECRET,
        json!({"metadata": {"name": REDIS_SECRET, "namespace": NAMESPACE}, "stringData": {"url": url, "ca.crt": ca}}),
    )?;
    secrets.create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// Applies `operator/deploy/rbac.yaml` and writes a kubeconfig for the operator's
/// ServiceAccount at `out`, so the operator runs with exactly those permissions.
pub async fn install_operator_rbac(client: &Client, admin_kubeconfig: &Path, out: &Path) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &typed("namespace", json!({"metadata": {"name": OPERATOR_NAMESPACE}}))?,
        )
        .await?;
    testkit::kube::apply_yaml(client, RBAC_YAML, OPERATOR_NAMESPACE).await?;
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

pub async fn create_promotion(client: &Client, plan: &PromotionPlan) -> Result<()> {
    let promotions: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &promotion_resource());
    let object: DynamicObject = typed(PROMOTION, promotion(plan))?;
    promotions.create(&PostParams::default(), &object).await?;
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
    fn the_promotion_lists_the_steps() {
        let plan = PromotionPlan {
            steps: vec![(10, Duration::from_secs(10)), (100, Duration::from_secs(5))],
            interval: Duration::from_secs(2),
            prometheus: "http://127.0.0.1:9090".into(),
            min_samples: 20,
            progress_deadline: Duration::from_secs(120),
        };
        let p = promotion(&plan);
        assert_eq!(p["spec"]["steps"][1], json!({"weight": 100, "bake": "5s"}));
        assert_eq!(p["spec"]["interval"], "2s");
        assert!(typed::<DynamicObject>("p", p).is_ok());
    }
}

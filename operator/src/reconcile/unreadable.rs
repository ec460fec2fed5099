//! CanaryPromotions this version cannot read (stored under an older schema, or written while
//! validation was off). The controller watches metadata only and reads each object through
//! kube's `DeserializeGuard`, so one such object never breaks anything for the others; it is
//! reported once per change with a Warning Event naming the field, and left alone — except
//! that deleting one must not hang on our finalizer: it is removed (traffic cannot be restored
//! for an object whose spec cannot be read, and the Event says so).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};

use super::{Context, Error, FINALIZER};
use crate::crd::{CanaryPromotion, CanaryPromotionStatus, PromotionSpec};

/// Event reason for an object the operator cannot read.
pub const REASON: &str = "InvalidObject";

/// Where and why `raw` does not deserialize, e.g. `spec.steps[0].weight: invalid type: ...`.
/// The spec and the status are read on their own: serde loses the path through the
/// `#[serde(flatten)]` that wraps the spec.
pub fn explain(raw: serde_json::Value) -> Option<String> {
    fn at<T: serde::de::DeserializeOwned>(part: &str, value: &serde_json::Value) -> Option<String> {
        let value = value.get(part)?.clone();
        serde_path_to_error::deserialize::<_, T>(value)
            .err()
            .map(|e| format!("{part}.{}: {}", e.path(), e.inner()))
    }
    at::<PromotionSpec>("spec", &raw)
        .or_else(|| at::<CanaryPromotionStatus>("status", &raw))
        .or_else(|| {
            serde_json::from_value::<CanaryPromotion>(raw)
                .err()
                .map(|e| e.to_string())
        })
}

/// Reports the unreadable object and waits for it to change.
pub async fn report(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let namespace = meta.namespace.clone().ok_or(Error::NoNamespace)?;
    let name = meta.name.clone().unwrap_or_default();
    // The guard keeps serde's message only; read the object again, untyped, for the field's
    // path.
    let resource = kube::api::ApiResource::erase::<CanaryPromotion>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
    if meta.deletion_timestamp.is_some() && meta.finalizers.iter().flatten().any(|f| f == FINALIZER) {
        let kept: Vec<&String> = meta.finalizers.iter().flatten().filter(|f| *f != FINALIZER).collect();
        // Guarded by resourceVersion, like kube's own finalizer helper.
        let patch = serde_json::json!({
            "metadata": {"finalizers": kept, "resourceVersion": meta.resource_version}
        });
        raw.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::Kube)?;
        tracing::warn!(%namespace, %name, "unreadable CanaryPromotion deleted: finalizer removed without restoring traffic");
        return Ok(Action::await_change());
    }
    let detail = match raw.get_opt(&name).await {
        Ok(object) => object
            .and_then(|object| serde_json::to_value(&object).ok())
            .and_then(explain),
        Err(e) => {
            tracing::debug!(error = %e, "cannot re-read the object for its error path");
            None
        }
    }
    .unwrap_or_else(|| invalid.error.clone());
    tracing::warn!(%namespace, %name, error = %detail, "cannot read this CanaryPromotion; skipping it");
    ctx.metrics.error("invalid_object", super::Step::Observe.as_str());
    let reference = ObjectReference {
        api_version: Some(CanaryPromotion::api_version(&()).into_owned()),
        kind: Some(CanaryPromotion::kind(&()).into_owned()),
        name: Some(name),
        namespace: Some(namespace),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    };
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: REASON.to_owned(),
        note: Some(super::act::truncate(
            &format!(
                "canary-operator cannot read this object, so it is not reconciled: {detail}. Fix the field or re-apply the object."
            ),
            1000,
        )),
        action: "Read".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, "could not publish event");
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_explanation_names_the_field() {
        let raw = json!({
            "apiVersion": "scholarship.dev/v1alpha1", "kind": "CanaryPromotion",
            "metadata": {"name": "old", "namespace": "team-a"},
            "spec": {
                "stable": {"deployment": "api"}, "canary": {"deployment": "api-canary"},
                "traffic": {"nginx": {"canaryIngress": "api-canary"}},
                "steps": [{"weight": "ten", "bake": "1m"}],
                "metrics": {"prometheus": {"address": "http://p:9090"}}
            }
        });
        let detail = explain(raw).unwrap_or_default();
        assert!(detail.starts_with("spec.steps[0].weight: invalid type"), "{detail}");
        let stale_status = json!({
            "metadata": {"name": "old"},
            "spec": {
                "stable": {"deployment": "api"}, "canary": {"deployment": "api-canary"},
                "traffic": {"replicas": {}}, "steps": [{"weight": 100, "bake": "1m"}],
                "metrics": {"prometheus": {"address": "http://p:9090"}}
            },
            "status": {"phase": "Retired"}
        });
        let detail = explain(stale_status).unwrap_or_default();
        assert!(
            detail.starts_with("status.phase: unknown variant `Retired`"),
            "{detail}"
        );
    }
}

//! The `CanaryPromotion` custom resource. The spec and status types live in `canary-core`
//! (one source of truth for the schema and for `decide`); this module only adds the
//! Kubernetes envelope: group/version/kind, scope, subresources and printer columns.

use kube::CustomResource;
use kube::core::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use canary_core::{CanaryPromotionStatus, PromotionSpec};

/// Walks a canary through weighted, gated steps, then promotes it or rolls it back.
// Repeated `type_ = "string"` inside distinct `printcolumn(...)` entries is not a duplicate;
// clippy's lint cannot see that.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "scholarship.dev",
    version = "v1alpha1",
    kind = "CanaryPromotion",
    plural = "canarypromotions",
    shortname = "canprom",
    namespaced,
    status = "CanaryPromotionStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.weight"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.stepLabel"),
    printcolumn(name = "Gates", type_ = "string", json_path = ".status.gatesSummary"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Failing", type_ = "string", json_path = ".status.failingGate", priority = 1),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1)
)]
pub struct CanaryPromotionSpec {
    #[serde(flatten)]
    pub promotion: PromotionSpec,
}

/// The CRD as YAML, exactly as committed in `crds/canarypromotion.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&CanaryPromotion::crd())
}

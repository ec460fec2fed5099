//! Which resource types the stand-in serves: the built-in kinds the operator and its tests use,
//! plus every kind defined by a stored CustomResourceDefinition.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube_cel::CompiledSchema;
use serde_json::Value;

/// Where a `scale` subresource reads and writes replica counts (JSON paths without leading `.`).
#[derive(Debug, Clone)]
pub struct ScaleSpec {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// Schema-driven behaviour of one served version of a custom resource.
pub struct CrdVersion {
    pub name: String,
    pub schema: Option<Value>,
    /// CEL rules compiled once per CRD write, not per object write.
    pub compiled: Option<CompiledSchema>,
    pub printer_columns: Vec<PrinterColumn>,
    pub status_subresource: bool,
    pub scale: Option<ScaleSpec>,
}

impl std::fmt::Debug for CrdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdVersion").field("name", &self.name).finish()
    }
}

/// A resource type as discovery and the request handlers see it.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    /// Served versions, the first is the preferred (storage) one.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    pub scale: Option<ScaleSpec>,
    /// Whether `metadata.generation` is maintained (it is not for ConfigMaps, Secrets, Events...).
    pub generation: bool,
    /// Present for custom resources.
    pub crd: Option<Arc<BTreeMap<String, CrdVersion>>>,
    /// Name of the CRD that defines this type.
    pub crd_name: Option<String>,
}

impl ResourceType {
    pub fn key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }
    pub fn storage_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }
    pub fn crd_version(&self, version: &str) -> Option<&CrdVersion> {
        self.crd.as_ref().and_then(|m| m.get(version))
    }
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short_names: &[&str],
    status: bool,
    generation: bool,
) -> ResourceType {
    ResourceType {
        group: group.to_string(),
        versions: vec![version.to_string()],
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status_subresource: status,
        scale: None,
        generation,
        crd: None,
        crd_name: None,
    }
}

/// The built-in kinds (see the README table).
pub fn builtin_types() -> Vec<ResourceType> {
    let mut deployment = builtin("apps", "v1", "Deployment", "deployments", true, &["deploy"], true, true);
    deployment.categories = vec!["all".into()];
    deployment.scale = Some(ScaleSpec {
        spec_replicas: "spec.replicas".into(),
        status_replicas: "status.replicas".into(),
        label_selector: None,
    });
    let mut service = builtin("", "v1", "Service", "services", true, &["svc"], true, false);
    service.categories = vec!["all".into()];
    vec![
        builtin("", "v1", "Namespace", "namespaces", false, &["ns"], true, false),
        builtin("", "v1", "Secret", "secrets", true, &[], false, false),
        builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], false, false),
        service,
        builtin("", "v1", "Event", "events", true, &["ev"], false, false),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            false,
            false,
        ),
        builtin("", "v1", "Pod", "pods", true, &["po"], true, false),
        builtin("events.k8s.io", "v1", "Event", "events", true, &["ev"], false, false),
        deployment,
        builtin(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            true,
            &["ing"],
            true,
            true,
        ),
        builtin("coordination.k8s.io", "v1", "Lease", "leases", true, &[], false, false),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
            true,
        ),
        builtin(
            "gateway.networking.k8s.io",
            "v1",
            "HTTPRoute",
            "httproutes",
            true,
            &[],
            true,
            true,
        ),
    ]
}

//! The four PATCH flavours: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge
//! (built-in kinds only, as on a real server) and server-side apply.

pub mod apply;
pub mod json;
pub mod merge;
pub mod strategic;

use serde_json::Value;

/// Merge key for a list field of a built-in kind, by field name. The real server reads these
/// from Go struct tags (`patchMergeKey`); these are the ones kubectl relies on for the kinds
/// served here. `ports` is keyed by `containerPort` in pod templates and by `port` in Services.
pub fn builtin_list_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "readinessGates" => Some("conditionType"),
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// Primitive lists that strategic merge unions instead of replacing.
pub fn builtin_primitive_merge(field: &str) -> bool {
    field == "finalizers"
}

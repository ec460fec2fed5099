//! JSON merge patch (RFC 7386): maps merge recursively, `null` deletes, everything else replaces.

use serde_json::Value;

pub fn merge_patch(target: &mut Value, patch: &Value) {
    // json-patch implements RFC 7386 exactly; kept behind this function so callers need not care.
    json_patch::merge(target, patch);
}

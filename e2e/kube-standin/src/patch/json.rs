//! JSON patch (RFC 6902), with the API server's reading of `test`: like the evanphx/json-patch
//! library kube-apiserver uses, testing for `null` succeeds when the path does not exist (kube-rs'
//! `finalizer()` relies on this to add the first finalizer).

use json_patch::PatchOperation;
use serde_json::Value;

use crate::status::{ApiError, ApiResult};

pub fn json_patch(target: &mut Value, patch: &Value) -> ApiResult<()> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "the server rejected our request due to an error in our request: {e}"
        ))
    })?;
    // All or nothing: work on a copy and keep it only if every operation applies.
    let mut patched = target.clone();
    for op in &ops.0 {
        if let PatchOperation::Test(test) = op
            && test.value.is_null()
            && patched.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut patched, std::slice::from_ref(op)).map_err(|e| {
            ApiError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        })?;
    }
    *target = patched;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn testing_null_on_a_missing_path_passes_like_the_api_server() {
        let mut obj = json!({"metadata": {"name": "x"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
        ]);
        json_patch(&mut obj, &patch).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["f"]));
        // Now the path exists and is not null: the same test fails and nothing changes.
        let before = obj.clone();
        assert!(json_patch(&mut obj, &patch).is_err());
        assert_eq!(obj, before);
    }
}

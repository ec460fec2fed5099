//! JSON request bodies with precise errors: 415 for another media type, 413 over the limit,
//! 400 for malformed JSON or a non-object, and field validation (422) left to the handler.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::SharedState;

/// A JSON object body, not yet validated.
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<SharedState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &SharedState) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.config.server.body_limit_bytes;
        let bytes = Bytes::from_request(request, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(inner) if inner.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge { limit }
            }
            other => ApiError::MalformedBody(other.body_text()),
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::MalformedBody("the body must be a JSON object".into())),
            // serde's message gives line and column, never the offending content.
            Err(e) => Err(ApiError::MalformedBody(e.to_string())),
        }
    }
}

//! Every error leaves the service as an RFC 9457 `application/problem+json` body with a stable
//! machine-readable `code`. Internal details are logged (without request data), never returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid input field, named the way the client spelled it (JSON pointer-ish dotted path).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct FieldError {
    /// The field, e.g. `gpa` or `applicant.email`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The error body of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI identifying the problem type.
    #[serde(rename = "type")]
    #[schema(example = "https://scholarship.dev/problems/not_found")]
    pub type_uri: String,
    /// Short summary of the problem type.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// Human-readable explanation of this occurrence.
    pub detail: String,
    /// Stable machine-readable code (`not_found`, `validation_failed`, ...).
    pub code: &'static str,
    /// Invalid fields, for `validation_failed` and `invalid_parameter`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{detail}")]
    InvalidParameter { detail: String, errors: Vec<FieldError> },
    #[error("malformed JSON body: {0}")]
    MalformedBody(String),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the request body has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("missing Idempotency-Key header")]
    MissingIdempotencyKey,
    #[error("{0}")]
    InvalidIdempotencyKey(&'static str),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyKeyInFlight,
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("recommendations are disabled on this deployment")]
    FeatureDisabled,
    #[error("the service is not ready")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }

    /// 400 for query parameters, every bad one named in `detail` and `errors`.
    pub fn invalid_parameters(errors: Vec<FieldError>) -> Self {
        let listed: Vec<String> = errors.iter().map(|e| format!("`{}`: {}", e.field, e.message)).collect();
        Self::InvalidParameter {
            detail: format!("invalid query parameters: {}", listed.join("; ")),
            errors,
        }
    }

    pub fn invalid_parameter(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::InvalidParameter {
            detail: format!("query parameter `{field}`: {message}"),
            errors: vec![FieldError::new(field, message)],
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) | Self::FeatureDisabled => StatusCode::NOT_FOUND,
            Self::InvalidParameter { .. }
            | Self::MalformedBody(_)
            | Self::MissingIdempotencyKey
            | Self::InvalidIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable category, safe as a metric label or log field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::MalformedBody(_) => "malformed_body",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Validation(_) => "validation_failed",
            Self::MissingIdempotencyKey => "idempotency_key_missing",
            Self::InvalidIdempotencyKey(_) => "idempotency_key_invalid",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IdempotencyKeyInFlight => "idempotency_key_in_flight",
            Self::RateLimited { .. } => "rate_limited",
            Self::FeatureDisabled => "feature_disabled",
            Self::Unavailable => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "Not found",
            Self::InvalidParameter { .. } => "Invalid parameter",
            Self::MalformedBody(_) => "Malformed body",
            Self::PayloadTooLarge { .. } => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::Validation(_) => "Validation failed",
            Self::MissingIdempotencyKey | Self::InvalidIdempotencyKey(_) => "Idempotency-Key required",
            Self::IdempotencyKeyReused => "Idempotency-Key reused",
            Self::IdempotencyKeyInFlight => "Request in progress",
            Self::RateLimited { .. } => "Too many requests",
            Self::FeatureDisabled => "Feature disabled",
            Self::Unavailable => "Service unavailable",
            Self::Internal(_) => "Internal error",
        }
    }

    pub fn to_problem(&self) -> Problem {
        let errors = match self {
            Self::Validation(errors) | Self::InvalidParameter { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        let code = self.code();
        Problem {
            type_uri: format!("https://scholarship.dev/problems/{code}"),
            title: self.title(),
            status: self.status().as_u16(),
            detail: self.to_string(),
            code,
            errors,
        }
    }
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(source) = &self {
            // Logged here, once, with the cause; the client only learns that it happened.
            tracing::error!(error = %source, "request failed");
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.to_problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if matches!(self, Self::Unavailable | Self::IdempotencyKeyInFlight) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// Attached to error responses so the access log can say why without re-parsing the body.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Self::Unavailable,
            other => Self::internal(other),
        }
    }
}

//! Rate-limit responses: the headers and the 429s.
//!
//! Headers follow draft-ietf-httpapi-ratelimit-headers-11 (`RateLimit-Policy: "name";q=;w=`,
//! `RateLimit: "name";r=;t=`) plus the older `RateLimit-Limit/-Remaining/-Reset` trio. While
//! degraded there is no shared quota to report, so none of them are sent.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::limiter::{Quota, Verdict};

/// Runs or refuses the request according to `verdict`, with the matching headers.
pub async fn respond(verdict: Verdict, request: Request, next: Next) -> Response {
    match verdict {
        Verdict::Allowed(quota) => {
            let mut response = next.run(request).await;
            quota_headers(response.headers_mut(), &quota);
            response
        }
        Verdict::Limited(quota) => {
            let mut response = too_many(quota.reset);
            quota_headers(response.headers_mut(), &quota);
            response
        }
        Verdict::Degraded { local_limit: None } => next.run(request).await,
        Verdict::Degraded {
            local_limit: Some(retry),
        } => too_many(retry),
    }
}

pub fn too_many(retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::RateLimited { retry_after: seconds }.into_response();
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn quota_headers(headers: &mut HeaderMap, quota: &Quota) {
    let reset = quota.reset.as_secs_f64().ceil() as u64;
    let policy = &quota.policy;
    let pairs = [
        (
            "ratelimit-policy",
            format!("\"{}\";q={};w={}", policy.name, policy.limit, policy.window.as_secs()),
        ),
        (
            "ratelimit",
            format!("\"{}\";r={};t={reset}", policy.name, quota.remaining),
        ),
        ("ratelimit-limit", policy.limit.to_string()),
        ("ratelimit-remaining", quota.remaining.to_string()),
        ("ratelimit-reset", reset.to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

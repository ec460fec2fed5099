//! JSON logs, correlation IDs and the per-request metrics.
//!
//! Logs never contain request or response bodies, query strings or headers other than the
//! correlation ID: that is how personal data (names, emails, dates of birth, essays) stays
//! out of them. The access log names the matched route template, not the concrete path.

use std::borrow::Cow;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::ErrorCode;
use crate::metrics::{RequestLabels, RouteLabels};
use crate::state::SharedState;

pub const REQUEST_ID: &str = "x-request-id";

pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .init();
}

/// The correlation ID of the current request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Takes the caller's `X-Request-ID` if it is sane, else the trace id of a W3C `traceparent`,
/// else a new UUIDv7 (time-ordered, so IDs sort like the logs).
pub fn correlation_id(headers: &HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()))
        .filter(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)));
    if let Some(id) = given {
        return id.to_owned();
    }
    let trace_id = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(|v| {
        let mut parts = v.split('-');
        let (_version, trace) = (parts.next()?, parts.next()?);
        let valid = trace.len() == 32
            && trace.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && trace.bytes().any(|b| b != b'0');
        valid.then(|| trace.to_owned())
    });
    trace_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Metric label for the method; unknown methods share one value to bound cardinality.
fn method_label(method: &Method) -> Cow<'static, str> {
    match *method {
        Method::GET => "GET".into(),
        Method::HEAD => "HEAD".into(),
        Method::POST => "POST".into(),
        Method::PUT => "PUT".into(),
        Method::PATCH => "PATCH".into(),
        Method::DELETE => "DELETE".into(),
        Method::OPTIONS => "OPTIONS".into(),
        _ => "other".into(),
    }
}

/// Correlation ID, span, access log line and HTTP metrics for every request.
pub async fn observe(State(state): State<SharedState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = correlation_id(request.headers());
    let route: Cow<'static, str> = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(Cow::Borrowed("unmatched"), |p| Cow::Owned(p.as_str().to_owned()));
    let method = method_label(request.method());
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    request.extensions_mut().insert(RequestId(request_id.clone()));

    let mut response = next.run(request).instrument(span.clone()).await;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let metrics = &state.metrics;
    metrics
        .http_requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.clone(),
            status,
        })
        .inc();
    metrics
        .http_request_duration
        .get_or_create(&RouteLabels { route, method })
        .observe(elapsed.as_secs_f64());

    let error = response.extensions().get::<ErrorCode>().map(|c| c.0);
    span.in_scope(|| {
        tracing::info!(
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            error,
            "request completed"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_id_sources_in_order() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(correlation_id(&h), "4bf92f3577b34da6a3ce929d0e0e4736");
        h.insert(REQUEST_ID, HeaderValue::from_static("req-42"));
        assert_eq!(correlation_id(&h), "req-42");
        h.insert(REQUEST_ID, HeaderValue::from_static("bad id with spaces"));
        assert_eq!(correlation_id(&h), "4bf92f3577b34da6a3ce929d0e0e4736");
        let fresh = correlation_id(&HeaderMap::new());
        assert_eq!(fresh.len(), 36);
    }
}

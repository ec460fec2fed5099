//! The rate-limit layer on `/api/v1`: decides, labels, and writes the headers.
//!
//! Headers follow draft-ietf-httpapi-ratelimit-headers-11 (`RateLimit-Policy: "name";q=;w=`,
//! `RateLimit: "name";r=;t=`) plus the older `RateLimit-Limit/-Remaining/-Reset` trio. While
//! degraded there is no shared quota to report, so none of them are sent.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::caller::Caller;
use crate::error::ApiError;
use crate::limiter::client_ip::{address_key, client_ip};
use crate::limiter::{Quota, Verdict};
use crate::metrics::{Decision, DecisionLabels, PrincipalKind};
use crate::state::SharedState;

/// Which budget a route draws from; `None` for routes that are not limited.
pub fn endpoint_for(method: &Method, route: &str) -> Option<&'static str> {
    Some(match (method.as_str(), route) {
        ("GET" | "HEAD", "/api/v1/scholarships" | "/api/v1/scholarships/{id}") => "catalogue",
        ("POST", "/api/v1/eligibility/check") => "eligibility",
        ("GET", "/api/v1/recommendations") => "recommendations",
        ("POST", "/api/v1/applications") => "applications",
        ("GET", "/api/v1/applications/{id}") => "applications-read",
        _ => return None,
    })
}

/// The rate-limit identity of a request and how it is labelled.
pub struct RatePrincipal {
    pub key: String,
    pub kind: PrincipalKind,
}

pub fn rate_principal(state: &SharedState, request: &Request) -> RatePrincipal {
    let tester = is_tester(state, request.headers());
    let authenticated = request.extensions().get::<Caller>().filter(|c| c.authenticated);
    let (key, kind) = match authenticated {
        Some(caller) => (format!("user:{}", caller.principal), PrincipalKind::user),
        None => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
            let ip = client_ip(peer, request.headers(), &state.trusted_proxies);
            (format!("ip:{}", address_key(ip)), PrincipalKind::anonymous)
        }
    };
    RatePrincipal {
        key,
        kind: if tester { PrincipalKind::tester } else { kind },
    }
}

/// Tester traffic carries the configured header with the configured secret value.
fn is_tester(state: &SharedState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.config.tester_token else {
        return false;
    };
    headers
        .get(state.config.tester_header.as_str())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn rate_limit(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let Some(limiter) = &state.limiter else {
        return next.run(request).await;
    };
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let Some(endpoint) = route.as_deref().and_then(|r| endpoint_for(request.method(), r)) else {
        return next.run(request).await;
    };
    let principal = rate_principal(&state, &request);
    let (verdict, _) = limiter.check(endpoint, &principal.key, None).await;
    let decision = match &verdict {
        Verdict::Allowed(_) => Decision::allowed,
        Verdict::Limited(_) => Decision::limited,
        // Decided without Redis, whichever way the local limiter went.
        Verdict::Degraded { .. } => Decision::degraded,
    };
    state
        .metrics
        .ratelimit_decisions
        .get_or_create(&DecisionLabels {
            route: Cow::Owned(route.unwrap_or_default()),
            decision,
            principal: principal.kind,
        })
        .inc();
    respond(verdict, request, next).await
}

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

fn too_many(retry_after: Duration) -> Response {
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

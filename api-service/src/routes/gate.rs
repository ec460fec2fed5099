//! The gate in front of every `/api/v1` route: authentication, the replay check and the rate
//! limit, in the order that keeps abuse cheap and costs one Redis round trip per request.
//! `routes::app` wraps each route in a gate for that route's `Endpoint`, around every method
//! the route answers (HEAD included), so nothing is looked up by method or path here.
//!
//! 1. a coarse per-address limit, in memory, so floods of forged tokens cost no crypto;
//! 2. token verification (signature and claims) on routes that need a caller;
//! 3. one Redis script: the rate-limit counter plus, on single-use routes, `SET jwt:jti NX`;
//! 4. replay verdict (Redis, with the per-instance cache as fallback and second opinion);
//! 5. the rate-limit verdict, its headers, and the handler.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Instant, SystemTime};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::caller::Caller;
use super::rate_limit::{respond, too_many};
use crate::auth::replay::{self, ReplayVerdict};
use crate::auth::{RejectReason, Rejection};
use crate::config::ReplayFallback;
use crate::endpoint::{Access, Endpoint};
use crate::error::ApiError;
use crate::limiter::ReplayCheck;
use crate::limiter::Verdict;
use crate::limiter::client_ip::{address_key, client_ip};
use crate::metrics::{Decision, DecisionLabels, PrincipalKind, RejectLabels};
use crate::state::SharedState;

/// The gate's state: the service, and the endpoint of the route it guards.
#[derive(Clone)]
pub struct Guard {
    pub state: SharedState,
    pub endpoint: Endpoint,
}

pub async fn gate(State(Guard { state, endpoint }): State<Guard>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let ip = client_ip(peer, request.headers(), &state.trusted_proxies);
    let mut tester = is_tester(&state, request.headers());

    let now = SystemTime::now();
    let mut token = None;
    match (endpoint.access(), &state.auth) {
        (Access::Public, _) => {}
        (Access::Caller, Some(auth)) => {
            let address = format!("ip:{}", address_key(ip));
            if let Err(retry) =
                state
                    .preauth_limiter
                    .check(&address, &state.config.limits.preauth_limit, Instant::now())
            {
                return too_many(retry);
            }
            match auth.verify(request.headers(), now).await {
                Ok(verified) => {
                    tester |= verified.tester;
                    request.extensions_mut().insert(Caller {
                        principal: verified.subject.clone(),
                        authenticated: true,
                    });
                    token = Some(verified);
                }
                Err(reason) => return reject(&state, reason),
            }
        }
        // `--insecure-no-auth` (development): everyone is the one anonymous caller.
        (Access::Caller, None) => {
            request.extensions_mut().insert(Caller::anonymous());
        }
    }

    let (principal, kind) = match &token {
        Some(t) => (format!("user:{}", t.subject), PrincipalKind::user),
        None => (format!("ip:{}", address_key(ip)), PrincipalKind::anonymous),
    };
    let kind = if tester { PrincipalKind::tester } else { kind };
    let single_use = token.as_ref().filter(|_| state.single_use.applies_to(endpoint));
    let mark = single_use.and_then(|t| replay::mark(t, state.auth.as_ref().map(|a| a.leeway())?, now));

    let (verdict, replay) = match &state.limiter {
        Some(limiter) => {
            let (verdict, replay) = limiter.check(endpoint, &principal, mark.as_ref()).await;
            (Some(verdict), replay)
        }
        None => (None, ReplayCheck::Unknown),
    };
    if let (Some(token), Some(mark)) = (single_use, &mark) {
        let fallback = state.config.auth.replay_fallback;
        if replay == ReplayCheck::Unknown && fallback == ReplayFallback::Local {
            state.metrics.jwt_replay_fallback.inc();
        }
        match replay::judge(&state.replay_cache, fallback, mark, replay, Instant::now()) {
            ReplayVerdict::Fresh => {}
            ReplayVerdict::Replayed => {
                state.metrics.jwt_replay_prevented.inc();
                tracing::warn!(subject = %token.subject, source_ip = %ip, "token replay prevented");
                return reject(&state, RejectReason::replayed);
            }
            ReplayVerdict::Unavailable => return ApiError::Unavailable.into_response(),
        }
    }

    let Some(verdict) = verdict else {
        return next.run(request).await;
    };
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
            principal: kind,
        })
        .inc();
    respond(verdict, request, next).await
}

fn reject(state: &SharedState, reason: RejectReason) -> Response {
    state.metrics.jwt_rejected.get_or_create(&RejectLabels { reason }).inc();
    Rejection(reason).into_response()
}

/// Tester traffic carries the configured header with the configured secret value.
fn is_tester(state: &SharedState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.config.auth.tester_token else {
        return false;
    };
    headers
        .get(state.config.auth.tester_header.as_str())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

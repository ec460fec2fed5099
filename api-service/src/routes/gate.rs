//! The gate in front of `/api/v1`: authentication, the replay check and the rate limit, in
//! the order that keeps abuse cheap and costs one Redis round trip per request.
//!
//! 1. a coarse per-address limit, in memory, so floods of forged tokens cost no crypto;
//! 2. token verification (signature and claims) on routes that need a caller;
//! 3. one Redis script: the rate-limit counter plus, on single-use routes, `SET jwt:jti NX`;
//! 4. replay verdict (Redis, with the per-instance cache as fallback and second opinion);
//! 5. the rate-limit verdict, its headers, and the handler.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::caller::Caller;
use super::rate_limit::{endpoint_for, respond, too_many};
use crate::auth::{RejectReason, Rejection, VerifiedToken};
use crate::config::ReplayFallback;
use crate::error::ApiError;
use crate::limiter::client_ip::{address_key, client_ip};
use crate::limiter::{ReplayCheck, ReplayMark, Verdict};
use crate::metrics::{Decision, DecisionLabels, PrincipalKind, RejectLabels};
use crate::state::SharedState;

/// Catalogue reads are public; every other limited endpoint needs a verified caller.
pub fn requires_caller(endpoint: &str) -> bool {
    endpoint != "catalogue"
}

pub async fn gate(State(state): State<SharedState>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let Some(endpoint) = route.as_deref().and_then(|r| endpoint_for(request.method(), r)) else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let ip = client_ip(peer, request.headers(), &state.trusted_proxies);
    let mut tester = is_tester(&state, request.headers());

    let now = SystemTime::now();
    let mut token = None;
    if requires_caller(endpoint)
        && let Some(auth) = &state.auth
    {
        let address = format!("ip:{}", address_key(ip));
        if let Err(retry) = state
            .preauth_limiter
            .check(&address, &state.config.preauth_limit, Instant::now())
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

    let (principal, kind) = match &token {
        Some(t) => (format!("user:{}", t.subject), PrincipalKind::user),
        None => (format!("ip:{}", address_key(ip)), PrincipalKind::anonymous),
    };
    let kind = if tester { PrincipalKind::tester } else { kind };
    let single_use = token.as_ref().filter(|_| state.single_use.applies_to(endpoint));
    let mark = single_use.and_then(|t| replay_mark(t, state.auth.as_ref().map(|a| a.leeway())?, now));

    let (verdict, replay) = match &state.limiter {
        Some(limiter) => {
            let (verdict, replay) = limiter.check(endpoint, &principal, mark.as_ref()).await;
            (Some(verdict), replay)
        }
        None => (None, ReplayCheck::Unknown),
    };
    if let (Some(token), Some(mark)) = (single_use, &mark) {
        match judge_replay(&state, mark, replay) {
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

/// The marker lives until the token could no longer be accepted anyway: `exp` plus leeway.
fn replay_mark(token: &VerifiedToken, leeway: Duration, now: SystemTime) -> Option<ReplayMark> {
    let jti = token.jti.as_ref()?;
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let ttl = token
        .expires_at
        .saturating_add(leeway.as_secs())
        .saturating_sub(now)
        .max(1);
    Some(ReplayMark {
        key: format!("jwt:jti:{jti}"),
        ttl: Duration::from_secs(ttl),
    })
}

enum ReplayVerdict {
    Fresh,
    Replayed,
    Unavailable,
}

/// Redis decides when it answered; the per-instance cache always remembers too, and catches
/// same-instance replays that Redis cannot (down, or lost the key in a failover).
fn judge_replay(state: &SharedState, mark: &ReplayMark, redis: ReplayCheck) -> ReplayVerdict {
    let now = Instant::now();
    let locally_fresh = state.replay_cache.first_use(&mark.key, now + mark.ttl, now);
    match redis {
        ReplayCheck::Replayed => ReplayVerdict::Replayed,
        ReplayCheck::Fresh if locally_fresh => ReplayVerdict::Fresh,
        ReplayCheck::Fresh => ReplayVerdict::Replayed,
        ReplayCheck::Unknown => match state.config.replay_fallback {
            ReplayFallback::Strict => ReplayVerdict::Unavailable,
            ReplayFallback::Local => {
                state.metrics.jwt_replay_fallback.inc();
                if locally_fresh {
                    ReplayVerdict::Fresh
                } else {
                    ReplayVerdict::Replayed
                }
            }
        },
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

//! Operational endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::metrics::{PoolLabels, PoolState};
use crate::openapi::ApiDoc;
use crate::state::SharedState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: the process serves HTTP. Deliberately checks nothing else, so a database outage
/// never gets pods restarted.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `degraded` (serving, but a non-critical dependency fails) or `not_ready`.
    pub status: &'static str,
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `migrations`, `database`, `draining` or `redis`.
    pub name: &'static str,
    pub ok: bool,
    /// Whether a failure takes the instance out of rotation. Redis is not critical: the
    /// limiter degrades open, and failing readiness on it would take every pod out at once.
    pub critical: bool,
    /// Why the check fails, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the check is connected to (for `redis`: the primary's address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Readiness: migrations applied, the database answers, and no shutdown has begun.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready for traffic", body = Readiness),
    (status = 503, description = "Not ready; `checks` says why", body = Readiness),
))]
pub async fn readyz(State(state): State<SharedState>) -> Response {
    let draining = state.lifecycle.draining();
    let migrated = state.lifecycle.migrated();
    let database = tokio::time::timeout(Duration::from_secs(1), sqlx::query("SELECT 1").execute(&state.db)).await;
    let database_reason = match database {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 1 s".to_owned()),
    };
    let mut checks = vec![
        Check {
            name: "migrations",
            ok: migrated,
            critical: true,
            reason: (!migrated).then(|| "not applied yet".to_owned()),
            target: None,
        },
        Check {
            name: "database",
            ok: database_reason.is_none(),
            critical: true,
            reason: database_reason,
            target: None,
        },
        Check {
            name: "draining",
            ok: !draining,
            critical: true,
            reason: draining.then(|| "shutting down".to_owned()),
            target: None,
        },
    ];
    if let Some(limiter) = &state.limiter {
        let link = limiter.redis_link().status();
        checks.push(Check {
            name: "redis",
            ok: link.connected,
            critical: false,
            reason: (!link.connected).then(|| link.last_error.unwrap_or_else(|| "connecting".to_owned())),
            target: link.address,
        });
    }
    let ready = checks.iter().all(|c| c.ok || !c.critical);
    let degraded = checks.iter().any(|c| !c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: match (ready, degraded) {
            (false, _) => "not_ready",
            (true, true) => "degraded",
            (true, false) => "ready",
        },
        checks,
    };
    (status, Json(body)).into_response()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
))]
pub async fn metrics(State(state): State<SharedState>) -> Response {
    // Pool gauges are sampled at scrape time rather than tracked on every checkout.
    let size = i64::from(state.db.size());
    let idle = i64::try_from(state.db.num_idle()).unwrap_or(i64::MAX);
    let pool = &state.metrics.db_pool_connections;
    pool.get_or_create(&PoolLabels { state: PoolState::idle }).set(idle);
    pool.get_or_create(&PoolLabels {
        state: PoolState::in_use,
    })
    .set((size - idle).max(0));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses(
    (status = 200, description = "OpenAPI 3 document", content_type = "application/json"),
))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        ApiDoc::openapi().to_json().unwrap_or_default(),
    )
        .into_response()
}

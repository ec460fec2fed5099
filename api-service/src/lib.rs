//! The scholarship API: catalogue, eligibility, recommendations and applications.
//!
//! [`app`] builds the whole HTTP surface from a [`state::AppState`]; [`serve`] runs it with
//! the start-up tasks (migrations, housekeeping) and graceful shutdown.

pub mod application_cache;
pub mod auth;
pub mod catalogue;
pub mod config;
pub mod eligibility;
pub mod endpoint;
pub mod error;
pub mod idempotency;
pub mod limiter;
pub mod metrics;
pub mod openapi;
pub mod recommend;
pub mod redis_link;
pub mod routes;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod track;
pub mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use routes::app;
use state::{AppState, SharedState};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("--database-url: {0}")]
    DatabaseUrl(#[from] sqlx::Error),
    #[error("HTTP client for the model endpoint: {0}")]
    HttpClient(reqwest::Error),
    #[error(transparent)]
    Redis(#[from] redis_link::RedisConfigError),
    #[error("listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// Runs the service on `listener` until `shutdown` resolves, then drains: readiness turns
/// false, new connections are refused after the drain delay, in-flight requests finish
/// (bounded by the grace period).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    install_crypto_provider();
    let state: SharedState = Arc::new(state);
    state.start_background();
    tokio::spawn(migrate_until_done(state.clone()));
    tokio::spawn(purge_expired_idempotency_keys(state.clone()));

    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let draining = {
        let state = state.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining");
            state.lifecycle.start_draining();
            tokio::time::sleep(state.config.server.shutdown_drain).await;
            let _ = drained_tx.send(());
        }
    };
    let grace = state.config.server.shutdown_grace;
    let server = axum::serve(
        listener,
        app(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(draining);

    let deadline = async move {
        if drained_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => served?,
        () = deadline => tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests outlived the grace period"),
    }
    state.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// One rustls crypto provider for the whole process (Redis TLS and the model client); with
/// two compiled in, rustls would refuse to pick and panic at the first TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Applies migrations, retrying while PostgreSQL is unreachable; readiness waits for this.
async fn migrate_until_done(state: SharedState) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match store::MIGRATOR.run(&state.db).await {
            Ok(()) => {
                state.lifecycle.mark_migrated();
                tracing::info!("database migrations applied");
                tokio::spawn(catalogue::keep_fresh(state.clone()));
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "database migrations failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn purge_expired_idempotency_keys(state: SharedState) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        if !state.lifecycle.migrated() {
            continue;
        }
        let store = idempotency::Store {
            db: &state.db,
            ttl: state.config.database.idempotency_ttl,
        };
        match store.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency keys removed"),
            Err(e) => tracing::warn!(error = %e, "purging expired idempotency keys failed"),
        }
    }
}

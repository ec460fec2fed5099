//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;

use crate::config::Config;
use crate::limiter::Limiter;
use crate::limiter::client_ip::TrustedProxies;
use crate::metrics::Metrics;
use crate::recommend::ModelClient;
use crate::redis_link::RedisLink;

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub config: Config,
    pub db: PgPool,
    pub metrics: Arc<Metrics>,
    /// `None` when no Redis is configured: requests are not rate-limited.
    pub limiter: Option<Limiter>,
    pub trusted_proxies: TrustedProxies,
    /// `None` when no model endpoint is configured: rule-based ranking only.
    pub model: Option<ModelClient>,
    pub lifecycle: Lifecycle,
}

/// Readiness inputs that are not a live probe: migrations done, shutdown begun.
#[derive(Debug, Default)]
pub struct Lifecycle {
    migrated: AtomicBool,
    draining: AtomicBool,
}

impl Lifecycle {
    pub fn mark_migrated(&self) {
        self.migrated.store(true, Ordering::Release);
    }

    pub fn migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

impl AppState {
    /// Starts the background work that needs a runtime (the Redis supervisor).
    pub fn start_background(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.redis_link().spawn_supervisor();
        }
    }

    pub fn new(config: Config) -> Result<Self, crate::StartupError> {
        let db = crate::store::pool(config.database_url.as_str(), config.db_max_connections)?;
        let model = match &config.openai_base_url {
            Some(url) => Some(
                ModelClient::new(
                    url,
                    config.openai_api_key.clone(),
                    config.openai_model.clone(),
                    config.openai_timeout(),
                )
                .map_err(crate::StartupError::HttpClient)?,
            ),
            None => None,
        };
        let metrics = Arc::new(Metrics::new(config.track));
        metrics
            .db_pool_max_connections
            .set(i64::from(config.db_max_connections));
        let limiter = match config.redis_settings() {
            Some(settings) => Some(Limiter::new(
                config.rate_limits.clone(),
                RedisLink::new(settings, metrics.clone())?,
                std::time::Duration::from_millis(config.limiter_timeout_ms),
                config.local_limiter_max_keys,
                metrics.clone(),
            )),
            None => None,
        };
        Ok(Self {
            trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            config,
            db,
            metrics,
            limiter,
            model,
            lifecycle: Lifecycle::default(),
        })
    }
}

//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;

use crate::auth::replay::LocalReplayCache;
use crate::auth::{AuthSettings, Authenticator, SingleUse};
use crate::config::Config;
use crate::limiter::Limiter;
use crate::limiter::client_ip::TrustedProxies;
use crate::limiter::local::LocalLimiter;
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
    /// `None` only with --insecure-no-auth.
    pub auth: Option<Authenticator>,
    pub single_use: SingleUse,
    pub replay_cache: LocalReplayCache,
    pub preauth_limiter: LocalLimiter,
    /// `None` when no model endpoint is configured: rule-based ranking only.
    pub model: Option<ModelClient>,
    pub lifecycle: Lifecycle,
    /// The catalogue in memory, while PostgreSQL's change feed is up.
    pub catalogue: crate::catalogue::Catalogue,
    /// Applications read back by their owners, while the same change feed is up.
    pub applications: crate::application_cache::ApplicationCache,
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
        if let Some(auth) = &self.auth {
            auth.jwks().spawn_refresher();
        }
    }

    pub fn new(config: Config) -> Result<Self, crate::StartupError> {
        let db = crate::store::pool(
            config.database.database_url.as_str(),
            config.database.db_max_connections,
        )?;
        let model = match &config.model.openai_base_url {
            Some(url) => Some(
                ModelClient::new(
                    url,
                    config.model.openai_api_key.clone(),
                    config.model.openai_model.clone(),
                    config.model.openai_timeout,
                )
                .map_err(crate::StartupError::HttpClient)?,
            ),
            None => None,
        };
        let metrics = Arc::new(Metrics::new(config.server.track));
        metrics
            .db_pool_max_connections
            .set(i64::from(config.database.db_max_connections));
        let limiter = match config.redis.settings() {
            Some(settings) => Some(Limiter::new(
                config.limits.rate_limits.clone(),
                RedisLink::new(settings, metrics.clone())?,
                config.limits.limiter_timeout,
                config.limits.local_limiter_max_keys,
                metrics.clone(),
            )),
            None => None,
        };
        let auth = match (
            &config.auth.jwks_url,
            &config.auth.jwt_issuer,
            &config.auth.jwt_audience,
        ) {
            (Some(url), Some(issuer), Some(audience)) if !config.auth.insecure_no_auth => {
                let jwks = crate::auth::jwks::Jwks::new(
                    url.clone(),
                    config.auth.jwt_algorithms.clone(),
                    config.auth.jwks_refresh_cooldown,
                    config.auth.jwks_max_refresh_interval,
                )
                .map_err(crate::StartupError::HttpClient)?;
                let settings = AuthSettings {
                    issuer: issuer.clone(),
                    audience: audience.clone(),
                    leeway: config.auth.jwt_leeway,
                    max_lifetime: config.auth.jwt_max_lifetime,
                    require_jti: !config.auth.allow_tokens_without_jti,
                    tester_claim: config.auth.jwt_tester_claim.clone(),
                };
                Some(Authenticator::new(settings, jwks, &config.auth.jwt_algorithms))
            }
            _ => None,
        };
        Ok(Self {
            trusted_proxies: TrustedProxies::new(config.limits.trusted_proxies.clone()),
            auth,
            single_use: config.auth.single_use_endpoints.clone(),
            replay_cache: LocalReplayCache::new(config.auth.replay_cache_max_entries),
            preauth_limiter: LocalLimiter::new(config.limits.local_limiter_max_keys),
            config,
            db,
            metrics,
            limiter,
            model,
            lifecycle: Lifecycle::default(),
            catalogue: crate::catalogue::Catalogue::default(),
            applications: crate::application_cache::ApplicationCache::default(),
        })
    }
}

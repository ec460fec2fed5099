//! Command-line and environment configuration. Every option has an environment fallback so the
//! same binary is configured by flags locally and by the Helm chart's env in a cluster.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use reqwest::Url;

pub use crate::track::Track;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "scholarship-api",
    version,
    about = "The scholarship API (JSON under /api/v1)"
)]
pub struct Config {
    #[command(flatten, next_help_heading = "Server")]
    pub server: ServerOptions,
    #[command(flatten, next_help_heading = "PostgreSQL")]
    pub database: DatabaseOptions,
    #[command(flatten, next_help_heading = "Recommendations")]
    pub model: ModelOptions,
    #[command(flatten, next_help_heading = "Redis")]
    pub redis: RedisOptions,
    #[command(flatten, next_help_heading = "Rate limiting")]
    pub limits: LimiterOptions,
    #[command(flatten, next_help_heading = "Authentication")]
    pub auth: AuthOptions,
}

/// How the process serves HTTP and stops.
#[derive(Debug, Clone, Args)]
pub struct ServerOptions {
    /// Address to listen on (ignored when a socket is passed by socket activation,
    /// `LISTEN_FDS`).
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Which release track this instance serves; every metric series carries it as `track`.
    #[arg(long, env = "TRACK", value_enum, default_value_t = Track::Stable)]
    pub track: Track,

    /// Largest accepted request body in bytes; larger bodies get 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,

    /// Origins allowed by CORS, comma-separated (exact origins; `*` is refused).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_allowed_origins: Vec<String>,

    /// After SIGTERM, report not-ready for this long before refusing new connections, so load
    /// balancers stop routing here first.
    #[arg(long = "shutdown-drain-ms", env = "SHUTDOWN_DRAIN_MS", default_value = "5000", value_name = "MS", value_parser = millis(0, 600_000))]
    pub shutdown_drain: Duration,

    /// Upper bound on waiting for in-flight requests during shutdown, in seconds.
    #[arg(long = "shutdown-grace-seconds", env = "SHUTDOWN_GRACE_SECONDS", default_value = "25", value_name = "SECONDS", value_parser = seconds(0, 3600))]
    pub shutdown_grace: Duration,

    /// Log filter in `tracing` syntax (e.g. `info,sqlx=warn`).
    #[arg(long, env = "LOG_FILTER", default_value = "info,sqlx=warn")]
    pub log_filter: String,
}

/// PostgreSQL and what the service keeps there.
#[derive(Debug, Clone, Args)]
pub struct DatabaseOptions {
    /// PostgreSQL URL, e.g. postgres://user:pass@db:5432/scholarships.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_postgres_url)]
    pub database_url: Url,

    /// Maximum connections in the PostgreSQL pool.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// How long an `Idempotency-Key` is remembered, in hours.
    #[arg(long = "idempotency-ttl-hours", env = "IDEMPOTENCY_TTL_HOURS", default_value = "24", value_name = "HOURS", value_parser = hours(1, 720))]
    pub idempotency_ttl: Duration,
}

/// Recommendations and the optional OpenAI-compatible model that re-ranks them.
#[derive(Debug, Clone, Args)]
pub struct ModelOptions {
    /// Serve `GET /api/v1/recommendations`; when false it answers 404 `feature_disabled`.
    #[arg(long, env = "RECOMMENDATIONS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub recommendations_enabled: bool,

    /// Base URL of an OpenAI-compatible API (the path `/chat/completions` is appended).
    /// Without it recommendations use the rule-based ranking only.
    #[arg(long, env = "OPENAI_BASE_URL", value_parser = parse_http_url)]
    pub openai_base_url: Option<Url>,

    /// API key sent as a Bearer token to the OpenAI-compatible endpoint.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// Model name for chat completions.
    #[arg(long, env = "OPENAI_MODEL", default_value = "gpt-4o-mini")]
    pub openai_model: String,

    /// Time budget for one chat-completions call, in milliseconds (at most 2000).
    #[arg(long = "openai-timeout-ms", env = "OPENAI_TIMEOUT_MS", default_value = "1500", value_name = "MS", value_parser = millis(50, 2000))]
    pub openai_timeout: Duration,
}

/// Redis, shared by the rate limiter and the replay check.
#[derive(Debug, Clone, Args)]
pub struct RedisOptions {
    /// Redis for the distributed rate limiter: `redis://` or `rediss://` (TLS), with
    /// `user:password@` for ACL/AUTH and `/db`. Without it rate limiting is off.
    #[arg(long, env = "REDIS_URL", value_parser = parse_redis_url, hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Sentinel addresses (host:port, comma-separated); the primary is then found through
    /// them and followed across failovers, and the host in --redis-url is ignored.
    #[arg(long, env = "REDIS_SENTINELS", value_delimiter = ',')]
    pub redis_sentinels: Vec<String>,

    /// The Sentinel master name.
    #[arg(long, env = "REDIS_MASTER_NAME", default_value = "mymaster")]
    pub redis_master_name: String,

    /// Password for the Sentinels themselves (if they require one).
    #[arg(long, env = "REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<String>,

    /// PEM file of the CA that signed the Redis server certificate (rediss://).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// DEVELOPMENT ONLY: accept any Redis TLS certificate.
    #[arg(long, env = "REDIS_INSECURE_SKIP_VERIFY")]
    pub redis_insecure_skip_verify: bool,

    /// Redis connect timeout in milliseconds.
    #[arg(long = "redis-connect-timeout-ms", env = "REDIS_CONNECT_TIMEOUT_MS", default_value = "100", value_name = "MS", value_parser = millis(1, 10_000))]
    pub redis_connect_timeout: Duration,

    /// Redis command timeout in milliseconds.
    #[arg(long = "redis-command-timeout-ms", env = "REDIS_COMMAND_TIMEOUT_MS", default_value = "200", value_name = "MS", value_parser = millis(1, 10_000))]
    pub redis_command_timeout: Duration,
}

/// Rate limiting and who the client is.
#[derive(Debug, Clone, Args)]
pub struct LimiterOptions {
    /// Rate-limit policies, `endpoint=LIMIT/WINDOW` comma-separated, with a `default`.
    /// Endpoints: catalogue, eligibility, recommendations, applications, applications-read.
    #[arg(long, env = "RATE_LIMITS", default_value = crate::limiter::policy::DEFAULT_POLICIES)]
    pub rate_limits: crate::limiter::Policies,

    /// The limiter's own budget per request, in milliseconds; past it the request degrades.
    #[arg(long = "limiter-timeout-ms", env = "LIMITER_TIMEOUT_MS", default_value = "50", value_name = "MS", value_parser = millis(1, 10_000))]
    pub limiter_timeout: Duration,

    /// Keys the per-instance fallback limiter may track while Redis is unavailable.
    #[arg(long, env = "LOCAL_LIMITER_MAX_KEYS", default_value_t = 100_000)]
    pub local_limiter_max_keys: usize,

    /// Proxies whose X-Forwarded-For / Forwarded headers are believed (CIDRs, comma-separated).
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Per-address limit on authentication attempts, per instance, checked before any
    /// signature work (`LIMIT/WINDOW`).
    #[arg(long, env = "PREAUTH_LIMIT", default_value = "1000/1s", value_parser = |s: &str| crate::limiter::Policy::parse("preauth", s))]
    pub preauth_limit: crate::limiter::Policy,
}

/// JWT authentication, replay protection and tester traffic.
#[derive(Debug, Clone, Args)]
pub struct AuthOptions {
    /// JWKS URL of the identity provider: the only source of verification keys.
    #[arg(long, env = "JWKS_URL", value_parser = parse_http_url)]
    pub jwks_url: Option<Url>,

    /// Required `iss` of every token.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of every token.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Accepted signature algorithms (subset of RS256, ES256, EdDSA), comma-separated.
    #[arg(long, env = "JWT_ALGORITHMS", value_delimiter = ',', default_value = "RS256,ES256,EdDSA", value_parser = crate::auth::parse_algorithm)]
    pub jwt_algorithms: Vec<jsonwebtoken::Algorithm>,

    /// Clock-skew leeway for exp, nbf and iat, in seconds.
    #[arg(long = "jwt-leeway-seconds", env = "JWT_LEEWAY_SECONDS", default_value = "60", value_name = "SECONDS", value_parser = seconds(0, 300))]
    pub jwt_leeway: Duration,

    /// Longest accepted token lifetime (exp - iat), in seconds.
    #[arg(long = "jwt-max-lifetime-seconds", env = "JWT_MAX_LIFETIME_SECONDS", default_value = "3600", value_name = "SECONDS", value_parser = seconds(1, 86_400))]
    pub jwt_max_lifetime: Duration,

    /// Minimum time between on-demand JWKS refreshes for unknown key ids, in seconds (≥ 30).
    #[arg(long = "jwks-refresh-cooldown-seconds", env = "JWKS_REFRESH_COOLDOWN_SECONDS", default_value = "30", value_name = "SECONDS", value_parser = seconds(30, 3600))]
    pub jwks_refresh_cooldown: Duration,

    /// Refresh the JWKS at least this often, whatever its max-age says, so a key the IdP
    /// removed stops being accepted within this bound (seconds).
    #[arg(long = "jwks-max-refresh-interval-seconds", env = "JWKS_MAX_REFRESH_INTERVAL_SECONDS", default_value = "3600", value_name = "SECONDS", value_parser = seconds(1, 86_400))]
    pub jwks_max_refresh_interval: Duration,

    /// Boolean claim that marks tester/probe tokens (counted as principal="tester").
    #[arg(long, env = "JWT_TESTER_CLAIM")]
    pub jwt_tester_claim: Option<String>,

    /// Endpoints whose tokens are single-use: `all` (authenticated endpoints), `none`, or a
    /// list such as `applications,applications-read`.
    #[arg(long, env = "SINGLE_USE_ENDPOINTS", default_value = "all")]
    pub single_use_endpoints: crate::auth::SingleUse,

    /// When Redis cannot answer the replay check: `local` (per-instance jti cache) or
    /// `strict` (503 with Retry-After).
    #[arg(long, env = "REPLAY_FALLBACK", value_enum, default_value_t = ReplayFallback::Local)]
    pub replay_fallback: ReplayFallback,

    /// Entries the per-instance jti cache may hold.
    #[arg(long, env = "REPLAY_CACHE_MAX_ENTRIES", default_value_t = 100_000)]
    pub replay_cache_max_entries: usize,

    /// DEVELOPMENT ONLY: accept tokens without `jti` (replay protection then cannot apply).
    #[arg(long, env = "ALLOW_TOKENS_WITHOUT_JTI")]
    pub allow_tokens_without_jti: bool,

    /// DEVELOPMENT ONLY: serve without authentication (every caller is anonymous).
    #[arg(long, env = "INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Header that marks tester/probe traffic (counted as principal="tester").
    #[arg(long, env = "TESTER_HEADER", default_value = "x-canary-tester", value_parser = parse_header_name)]
    pub tester_header: String,

    /// The secret value the tester header must carry; without it no traffic is a tester.
    #[arg(long, env = "TESTER_TOKEN", hide_env_values = true)]
    pub tester_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayFallback {
    Local,
    Strict,
}

impl Config {
    /// Cross-option rules clap cannot express; the message names the option.
    pub fn check(&self) -> Result<(), String> {
        let auth = &self.auth;
        if auth.insecure_no_auth {
            return Ok(());
        }
        for (option, missing) in [
            ("--jwks-url", auth.jwks_url.is_none()),
            ("--jwt-issuer", auth.jwt_issuer.is_none()),
            ("--jwt-audience", auth.jwt_audience.is_none()),
        ] {
            if missing {
                return Err(format!(
                    "error: {option} is required (or --insecure-no-auth for development without authentication)"
                ));
            }
        }
        Ok(())
    }
}

impl RedisOptions {
    /// The Redis link's settings; `None` without `--redis-url` (rate limiting off).
    pub fn settings(&self) -> Option<crate::redis_link::RedisSettings> {
        let url = self.redis_url.clone()?;
        Some(crate::redis_link::RedisSettings {
            url,
            sentinels: self.redis_sentinels.clone(),
            master_name: self.redis_master_name.clone(),
            sentinel_password: self.redis_sentinel_password.clone(),
            ca_file: self.redis_ca_file.clone(),
            insecure_skip_verify: self.redis_insecure_skip_verify,
            connect_timeout: self.redis_connect_timeout,
            command_timeout: self.redis_command_timeout,
        })
    }
}

/// A whole number of `unit`s within `min..=max`, as a `Duration`.
fn duration_in(
    unit: Duration,
    name: &'static str,
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |raw: &str| {
        let n: u64 = raw
            .trim()
            .parse()
            .map_err(|_| format!("`{raw}` is not a whole number of {name}"))?;
        if !(min..=max).contains(&n) {
            return Err(format!("must be {min} to {max} {name}"));
        }
        u32::try_from(n)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(|| format!("`{raw}` {name} is too long"))
    }
}

fn millis(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    duration_in(Duration::from_millis(1), "milliseconds", min, max)
}

fn seconds(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    duration_in(Duration::from_secs(1), "seconds", min, max)
}

fn hours(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    duration_in(Duration::from_secs(3600), "hours", min, max)
}

fn parse_postgres_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| e.to_string())?;
    match url.scheme() {
        "postgres" | "postgresql" => Ok(url),
        other => Err(format!("scheme must be postgres:// or postgresql://, not {other}://")),
    }
}

fn parse_http_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| e.to_string())?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("scheme must be http:// or https://, not {other}://")),
    }
}

fn parse_redis_url(raw: &str) -> Result<String, String> {
    let url = Url::parse(raw).map_err(|e| e.to_string())?;
    match url.scheme() {
        "redis" | "rediss" => Ok(raw.to_owned()),
        other => Err(format!("scheme must be redis:// or rediss://, not {other}://")),
    }
}

fn parse_header_name(raw: &str) -> Result<String, String> {
    axum::http::HeaderName::try_from(raw)
        .map(|h| h.as_str().to_owned())
        .map_err(|_| format!("`{raw}` is not a valid header name"))
}

fn parse_origin(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw == "*" {
        return Err("a wildcard origin is not allowed; list exact origins".into());
    }
    let url = Url::parse(raw).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("an origin is scheme://host[:port]".into());
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut argv = vec!["scholarship-api", "--database-url", "postgres://localhost/db"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv)
    }

    #[test]
    fn defaults_are_production_safe() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.server.track, Track::Stable);
        assert_eq!(c.server.body_limit_bytes, 65536);
        assert!(c.server.cors_allowed_origins.is_empty());
        assert_eq!(c.model.openai_timeout, Duration::from_millis(1500));
        assert_eq!(c.database.idempotency_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.auth.jwt_leeway, Duration::from_secs(60));
    }

    #[test]
    fn rejects_wildcard_origin_and_long_timeouts() {
        assert!(parse(&["--cors-allowed-origins", "*"]).is_err());
        assert!(parse(&["--openai-timeout-ms", "2001"]).is_err());
        assert!(parse(&["--track", "blue"]).is_err());
        let c = parse(&["--cors-allowed-origins", "https://app.example/,http://localhost:3000"]).unwrap();
        assert_eq!(
            c.server.cors_allowed_origins,
            ["https://app.example", "http://localhost:3000"]
        );
        assert!(parse(&["--jwks-refresh-cooldown-seconds", "29"]).is_err());
        assert!(parse(&["--redis-command-timeout-ms", "soon"]).is_err());
    }
}

//! Command-line and environment configuration. Every option has an environment fallback so the
//! same binary is configured by flags locally and by the Helm chart's env in a cluster.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use reqwest::Url;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "scholarship-api",
    version,
    about = "The scholarship API (JSON under /api/v1)"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// PostgreSQL URL, e.g. postgres://user:pass@db:5432/scholarships.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_postgres_url)]
    pub database_url: Url,

    /// Maximum connections in the PostgreSQL pool.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// Which release track this instance serves; every metric series carries it as `track`.
    #[arg(long, env = "TRACK", value_enum, default_value_t = Track::Stable)]
    pub track: Track,

    /// Largest accepted request body in bytes; larger bodies get 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,

    /// Origins allowed by CORS, comma-separated (exact origins; `*` is refused).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_allowed_origins: Vec<String>,

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
    #[arg(long, env = "OPENAI_TIMEOUT_MS", default_value_t = 1500, value_parser = clap::value_parser!(u64).range(50..=2000))]
    pub openai_timeout_ms: u64,

    /// How long an `Idempotency-Key` is remembered, in hours.
    #[arg(long, env = "IDEMPOTENCY_TTL_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub idempotency_ttl_hours: u32,

    /// After SIGTERM, report not-ready for this long before refusing new connections, so load
    /// balancers stop routing here first.
    #[arg(long, env = "SHUTDOWN_DRAIN_MS", default_value_t = 5000)]
    pub shutdown_drain_ms: u64,

    /// Upper bound on waiting for in-flight requests during shutdown, in seconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 25)]
    pub shutdown_grace_seconds: u64,

    /// Log filter in `tracing` syntax (e.g. `info,sqlx=warn`).
    #[arg(long, env = "LOG_FILTER", default_value = "info,sqlx=warn")]
    pub log_filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Track {
    Stable,
    Canary,
}

impl Track {
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Canary => "canary",
        }
    }
}

impl Config {
    pub fn openai_timeout(&self) -> Duration {
        Duration::from_millis(self.openai_timeout_ms)
    }

    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.idempotency_ttl_hours) * 3600)
    }

    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
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
        assert_eq!(c.track, Track::Stable);
        assert_eq!(c.body_limit_bytes, 65536);
        assert!(c.cors_allowed_origins.is_empty());
        assert!(c.openai_timeout_ms <= 2000);
    }

    #[test]
    fn rejects_wildcard_origin_and_long_timeouts() {
        assert!(parse(&["--cors-allowed-origins", "*"]).is_err());
        assert!(parse(&["--openai-timeout-ms", "2001"]).is_err());
        assert!(parse(&["--track", "blue"]).is_err());
        let c = parse(&["--cors-allowed-origins", "https://app.example/,http://localhost:3000"]).unwrap();
        assert_eq!(c.cors_allowed_origins, ["https://app.example", "http://localhost:3000"]);
    }
}

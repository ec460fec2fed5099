//! One supervised connection to the Redis primary.
//!
//! Requests never wait for a connection: they take the current multiplexed connection or, when
//! there is none, fail at once (the limiter then degrades open). A supervisor task owns
//! (re)connecting with jittered exponential backoff and, with Sentinel, polls the primary's
//! address every second: after a failover the old primary may keep accepting writes for
//! seconds, so waiting for an error is not enough.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::io::tcp::{TcpSettings, socket2};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError};
use tokio::sync::Notify;

use crate::metrics::{LimiterOp, Metrics};

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://`, with credentials and database; with Sentinel the host part is
    /// replaced by the primary Sentinel names.
    pub url: String,
    pub sentinels: Vec<String>,
    pub master_name: String,
    pub sentinel_password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    #[error("--redis-url: {0}")]
    Url(RedisError),
    #[error("--redis-ca-file {path}: {source}")]
    CaFile { path: PathBuf, source: std::io::Error },
    #[error("--redis-sentinels: `{0}` is not host:port")]
    Sentinel(String),
}

/// What readiness and logs report about the link.
#[derive(Debug, Clone, Default)]
pub struct LinkStatus {
    pub connected: bool,
    pub address: Option<String>,
    pub last_error: Option<String>,
}

pub struct RedisLink {
    settings: RedisSettings,
    base: ConnectionInfo,
    tls: bool,
    ca_pem: Option<Vec<u8>>,
    sentinels: Vec<(String, u16)>,
    current: RwLock<Option<(String, MultiplexedConnection)>>,
    status: Mutex<LinkStatus>,
    reconnect: Notify,
    metrics: Arc<Metrics>,
}

const BACKOFF_BASE: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const SENTINEL_POLL: Duration = Duration::from_secs(1);

impl RedisLink {
    pub fn new(settings: RedisSettings, metrics: Arc<Metrics>) -> Result<Arc<Self>, RedisConfigError> {
        let base = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(RedisConfigError::Url)?;
        let tls = matches!(base.addr(), ConnectionAddr::TcpTls { .. });
        let ca_pem = match &settings.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| RedisConfigError::CaFile {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let sentinels = settings
            .sentinels
            .iter()
            .map(|s| {
                let (host, port) = s
                    .rsplit_once(':')
                    .ok_or_else(|| RedisConfigError::Sentinel(s.clone()))?;
                let port = port.parse().map_err(|_| RedisConfigError::Sentinel(s.clone()))?;
                Ok((host.trim_matches(['[', ']']).to_owned(), port))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Self {
            settings,
            base,
            tls,
            ca_pem,
            sentinels,
            current: RwLock::new(None),
            status: Mutex::new(LinkStatus::default()),
            reconnect: Notify::new(),
            metrics,
        }))
    }

    /// The current connection, if any; never waits.
    pub fn connection(&self) -> Option<MultiplexedConnection> {
        self.current.read().ok()?.as_ref().map(|(_, c)| c.clone())
    }

    pub fn status(&self) -> LinkStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Called with every command error: a broken connection or a demoted primary (READONLY)
    /// means reconnecting; a slow answer alone does not.
    pub fn report_error(&self, error: &RedisError) {
        let broken = error.is_io_error()
            || error.is_connection_dropped()
            || error.is_unrecoverable_error()
            || error.code() == Some("READONLY");
        if broken {
            self.drop_connection(&error.to_string());
        }
    }

    fn drop_connection(&self, reason: &str) {
        if let Ok(mut current) = self.current.write() {
            *current = None;
        }
        self.set_status(false, None, Some(reason.to_owned()));
        self.reconnect.notify_one();
    }

    fn set_status(&self, connected: bool, address: Option<String>, error: Option<String>) {
        self.metrics.redis_connected.set(i64::from(connected));
        if let Ok(mut s) = self.status.lock() {
            s.connected = connected;
            if address.is_some() {
                s.address = address;
            }
            if connected {
                s.last_error = None;
            } else if error.is_some() {
                s.last_error = error;
            }
        }
    }

    /// Keeps a connection to the primary for as long as the process lives.
    pub fn spawn_supervisor(self: &Arc<Self>) {
        let link = Arc::clone(self);
        tokio::spawn(async move { link.supervise().await });
    }

    async fn supervise(self: Arc<Self>) {
        let mut failures: u32 = 0;
        loop {
            if self.connection().is_none() {
                match self.connect().await {
                    Ok((address, connection)) => {
                        if failures > 0 {
                            tracing::info!(redis = %address, "redis connection restored");
                        } else {
                            tracing::info!(redis = %address, "redis connected");
                        }
                        failures = 0;
                        if let Ok(mut current) = self.current.write() {
                            *current = Some((address.clone(), connection));
                        }
                        self.set_status(true, Some(address), None);
                    }
                    Err(reason) => {
                        self.metrics.limiter_error(LimiterOp::connect);
                        // Log the first failure and then every 20th, not every retry.
                        if failures.is_multiple_of(20) {
                            tracing::error!(error = %reason, "redis unavailable; rate limiting degrades to per-instance");
                        }
                        self.set_status(false, None, Some(reason));
                        failures = failures.saturating_add(1);
                        tokio::time::sleep(jittered_backoff(failures)).await;
                        continue;
                    }
                }
            }
            if self.sentinels.is_empty() {
                self.reconnect.notified().await;
            } else {
                tokio::select! {
                    () = self.reconnect.notified() => {}
                    () = tokio::time::sleep(SENTINEL_POLL) => self.follow_failover().await,
                }
            }
        }
    }

    /// Reconnects when Sentinel names a different primary than the one we talk to.
    async fn follow_failover(&self) {
        let Ok(primary) = self.resolve_primary().await else {
            return;
        };
        let current = self
            .current
            .read()
            .ok()
            .and_then(|c| c.as_ref().map(|(a, _)| a.clone()));
        let address = format!("{}:{}", primary.0, primary.1);
        if current.as_deref() != Some(address.as_str()) {
            tracing::warn!(from = ?current, to = %address, "sentinel reports a new primary; switching");
            self.drop_connection(&format!("primary moved to {address}"));
        }
    }

    async fn connect(&self) -> Result<(String, MultiplexedConnection), String> {
        let (host, port) = if self.sentinels.is_empty() {
            match self.base.addr() {
                ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
                other => return Err(format!("unsupported address {other}")),
            }
        } else {
            self.resolve_primary().await?
        };
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure: self.settings.insecure_skip_verify,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.clone(), port)
        };
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10));
        let info = self
            .base
            .clone()
            .set_addr(addr)
            .set_tcp_settings(TcpSettings::default().set_nodelay(true).set_keepalive(keepalive));
        let client = match &self.ca_pem {
            Some(pem) => Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => Client::open(info),
        }
        .map_err(|e| e.to_string())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(self.settings.command_timeout));
        // The handshake (TLS, AUTH, SELECT) is bounded too, not only the TCP connect.
        let budget = self.settings.connect_timeout + self.settings.command_timeout;
        let mut connection = tokio::time::timeout(budget, client.get_multiplexed_async_connection_with_config(&config))
            .await
            .map_err(|_| format!("no connection to {host}:{port} within {budget:?}"))?
            .map_err(|e| format!("{host}:{port}: {e}"))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|e| format!("{host}:{port}: {e}"))?;
        Ok((format!("{host}:{port}"), connection))
    }

    /// Asks each Sentinel in turn for the primary's address.
    async fn resolve_primary(&self) -> Result<(String, u16), String> {
        let mut last = String::from("no sentinel configured");
        for (host, port) in &self.sentinels {
            match self.ask_sentinel(host, *port).await {
                Ok(primary) => return Ok(primary),
                Err(e) => last = format!("sentinel {host}:{port}: {e}"),
            }
        }
        Err(last)
    }

    async fn ask_sentinel(&self, host: &str, port: u16) -> Result<(String, u16), String> {
        let mut info = ConnectionAddr::Tcp(host.to_owned(), port)
            .into_connection_info()
            .map_err(|e| e.to_string())?;
        if let Some(password) = &self.settings.sentinel_password {
            let settings = info.redis_settings().clone().set_password(password.clone());
            info = info.set_redis_settings(settings);
        }
        let client = Client::open(info).map_err(|e| e.to_string())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(self.settings.command_timeout));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        let answer: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.settings.master_name)
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        let (host, port) = answer.ok_or_else(|| format!("unknown master name {}", self.settings.master_name))?;
        Ok((host, port.parse().map_err(|_| format!("bad port {port}"))?))
    }
}

/// Equal jitter: a random delay between half and all of an exponentially growing cap, so
/// instances that lost Redis together do not reconnect in lockstep.
fn jittered_backoff(failures: u32) -> Duration {
    let cap = BACKOFF_BASE.saturating_mul(1u32 << failures.min(8)).min(BACKOFF_MAX);
    let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for failures in 0..20 {
            let d = jittered_backoff(failures);
            assert!(d <= BACKOFF_MAX);
            assert!(d >= Duration::from_millis(25));
        }
        assert!(jittered_backoff(10) >= BACKOFF_MAX / 2);
    }
}

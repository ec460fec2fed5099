//! The Redis gate: the operator connects to the canary's Redis itself, with credentials from a
//! Secret, and reads one row per sub-check:
//!
//! * `redis.tls` — 1 when the URL is `rediss://` and the handshake (with the Secret's CA, if
//!   given) and an authenticated `PING` succeed; 0 for a plaintext URL.
//! * `redis.auth` — 1 when a `PING` without credentials is refused (`NOAUTH`) while the
//!   authenticated one answers; 0 when Redis answers anyone, also when it refuses the
//!   Secret's `AUTH` because it has no password configured (the other rows are then measured
//!   without credentials).
//! * `redis.replica` — connected replicas of the primary (`INFO replication`).
//! * `redis.p95LatencyMs` — p95 of a burst of `PING` round trips.
//! * `redis.fragmentationRatio` — `mem_fragmentation_ratio` (`INFO memory`).
//! * `redis.evictedKeys` — increase of `evicted_keys` (`INFO stats`) over the metric window.
//!   Replay markers (`jwt:jti:*`) are evictable under any evicting `maxmemory-policy`, so the
//!   replay guarantee holds only while this stays 0.
//! * `redis.maxmemoryPolicy` — 1 when `maxmemory_policy` (`INFO memory`) is the required one.
//! * `redis.plaintextRefused` — 1 when nothing answers plaintext Redis on the given port of
//!   the URL's host (connection refused, closed, or not a Redis reply).
//! * `redis.sentinelQuorum` — 1 when every Sentinel in the Secret answers, they all name the
//!   same primary, and `SENTINEL CKQUORUM` is OK.
//!
//! A probe that cannot connect turns every row into an `Error` with the reason (`NOAUTH`, a
//! TLS handshake failure, a timeout), which `decide` judges per the gate's `noData` policy.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use canary_core::{Reading, RedisRow};
use kube::Client;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use super::secret::{SecretError, SecretKeys};

/// Round trips in one latency burst.
const BURST: usize = 20;
/// Bound of the connect + handshake, and of each command.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Keys read from the Secret named by `spec.gates.redis.secretRef`.
pub mod keys {
    /// `redis://` or `rediss://` URL, credentials optional (`rediss://user:pass@host:6380`).
    pub const URL: &str = "url";
    /// ACL user name; overrides the URL's.
    pub const USERNAME: &str = "username";
    /// Password (AUTH or ACL); overrides the URL's.
    pub const PASSWORD: &str = "password";
    /// PEM CA bundle that signed the server certificate; system roots when absent.
    pub const CA: &str = "ca.crt";
    /// Comma-separated `host:port` of the Sentinels (for `redis.sentinelQuorum`).
    pub const SENTINELS: &str = "sentinels";
    /// The monitored primary's name in Sentinel (`sentinel monitor <name> ...`).
    pub const MASTER_NAME: &str = "masterName";
    /// Optional password of the Sentinels themselves.
    pub const SENTINEL_PASSWORD: &str = "sentinelPassword";
}

/// Which rows a spec asks for, and the Secret to connect with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisChecks {
    pub secret: String,
    pub rows: Vec<RedisRow>,
    /// For `redis.maxmemoryPolicy`.
    pub maxmemory_policy: Option<canary_core::MaxmemoryPolicy>,
    /// For `redis.plaintextRefused`.
    pub plaintext_port: Option<u16>,
    /// How long the `redis.p95LatencyMs` burst may take: a slow Redis gives fewer round
    /// trips, not a probe that outlasts its round (a third of the interval).
    pub latency_budget: Duration,
}

impl RedisChecks {
    /// The Sentinel row needs the Secret to list the Sentinels.
    pub fn needs_sentinels(&self) -> bool {
        self.rows.contains(&RedisRow::SentinelQuorum)
    }
}

/// Why a connection (handshake, AUTH, first `PING`) failed.
#[derive(Debug)]
enum ConnectError {
    TimedOut,
    Redis(redis::RedisError),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::TimedOut => write!(f, "no connection within {:?}", TIMEOUT * 2),
            ConnectError::Redis(e) => f.write_str(&describe(e)),
        }
    }
}

/// Where and how to connect, from the Secret.
#[derive(Clone)]
pub struct Target {
    info: ConnectionInfo,
    ca_pem: Option<Vec<u8>>,
    sentinels: Option<Sentinels>,
}

/// Where the Sentinels are, from the Secret.
#[derive(Clone)]
struct Sentinels {
    addresses: Vec<String>,
    master_name: String,
    password: Option<String>,
}

impl std::fmt::Debug for Target {
    // Never print credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.info.addr().to_string())
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Reads the Secret `name` in `namespace` (which must list the Sentinels when
    /// `sentinels_required`); the error says what is missing, never a value.
    pub async fn from_secret(
        client: &Client,
        namespace: &str,
        name: &str,
        sentinels_required: bool,
    ) -> Result<Target, SecretError> {
        let secret = SecretKeys::read(client, namespace, name).await?;
        let url = secret.required(keys::URL)?;
        let (username, password) = (secret.text(keys::USERNAME)?, secret.text(keys::PASSWORD)?);
        let mut target =
            Target::new(&url, username, password, secret.bytes(keys::CA)).map_err(|e| secret.problem(&e))?;
        if sentinels_required {
            secret.required(keys::SENTINELS)?;
        }
        if let Some(list) = secret.text(keys::SENTINELS)?.filter(|l| !l.is_empty()) {
            target.sentinels = Some(Sentinels {
                addresses: list
                    .split(',')
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect(),
                master_name: secret.required(keys::MASTER_NAME)?,
                password: secret.text(keys::SENTINEL_PASSWORD)?.filter(|p| !p.is_empty()),
            });
        }
        Ok(target)
    }

    pub fn new(
        url: &str,
        username: Option<String>,
        password: Option<String>,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Target, String> {
        let info = url
            .into_connection_info()
            .map_err(|_| "key url is not a redis:// or rediss:// URL".to_owned())?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = username {
            settings = settings.set_username(user);
        }
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        Ok(Target {
            info: info.set_redis_settings(settings),
            ca_pem,
            sentinels: None,
        })
    }

    /// The same connection settings (TLS, credentials, database) at another host and port.
    fn at(&self, host: String, port: u16) -> ConnectionInfo {
        let addr = match self.info.addr() {
            ConnectionAddr::TcpTls {
                insecure, tls_params, ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        self.info.clone().set_addr(addr)
    }

    /// The same address and TLS settings, without credentials.
    fn anonymous(&self) -> ConnectionInfo {
        self.info.clone().set_redis_settings(RedisConnectionInfo::default())
    }

    fn tls(&self) -> bool {
        matches!(self.info.addr(), ConnectionAddr::TcpTls { .. })
    }

    fn has_credentials(&self) -> bool {
        self.info.redis_settings().password().is_some()
    }

    async fn connect(&self, info: ConnectionInfo) -> Result<MultiplexedConnection, ConnectError> {
        let client = match &self.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
        .map_err(ConnectError::Redis)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let mut connection = tokio::time::timeout(
            TIMEOUT * 2,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| ConnectError::TimedOut)?
        .map_err(ConnectError::Redis)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(ConnectError::Redis)?;
        Ok(connection)
    }
}

/// What went wrong, in the words an operator searches for: the server's code (`NOAUTH`, ...),
/// an authentication failure, or the transport's own error (a TLS handshake, a refused port).
fn describe(e: &redis::RedisError) -> String {
    match (e.kind(), e.code()) {
        (redis::ErrorKind::AuthenticationFailed, _) => {
            "authentication failed: wrong user name or password (WRONGPASS)".to_owned()
        }
        (_, Some(code)) => format!("{code}: {}", e.detail().unwrap_or_default()),
        _ => e.to_string(),
    }
}

/// Recent `evicted_keys` counts per promotion, for the increase over the window. In memory:
/// after a restart the first probe has nothing to compare with and reads as no data.
#[derive(Default)]
pub struct EvictionHistory {
    samples: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
}

impl EvictionHistory {
    /// Records `count` and returns its increase since the oldest sample still inside `window`
    /// (`None` until there is an earlier sample).
    fn increase(&self, key: &str, count: u64, window: Duration, now: Instant) -> Option<u64> {
        let mut all = self.samples.lock().ok()?;
        let samples = all.entry(key.to_owned()).or_default();
        // Fewer than before: Redis restarted and counts from zero again.
        if samples.back().is_some_and(|(_, last)| count < *last) {
            samples.clear();
            samples.push_back((now, count));
            return Some(count);
        }
        // Keep one sample at or before the window's start as the baseline.
        while samples.len() >= 2 && samples[1].0 + window <= now {
            samples.pop_front();
        }
        let baseline = samples.front().map(|(_, c)| *c);
        samples.push_back((now, count));
        baseline.map(|b| count - b)
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut all) = self.samples.lock() {
            all.remove(key);
        }
    }
}

/// Probes `target` for the `checks`; readings keyed by each row's gate name.
pub async fn probe(
    target: &Target,
    checks: &RedisChecks,
    history: &EvictionHistory,
    history_key: &str,
    window: Duration,
) -> BTreeMap<String, Reading> {
    let rows = &checks.rows;
    // With Sentinels the primary is whoever they name now: after a failover the URL's host is
    // a replica, and the rows describe the Redis the canary actually writes to.
    let located;
    let target = match &target.sentinels {
        Some(sentinels) => match current_primary(sentinels).await {
            Ok((host, port)) => {
                located = Target {
                    info: target.at(host, port),
                    ..target.clone()
                };
                &located
            }
            Err(e) => {
                let reading = Reading::Error(format!("no primary from the Sentinels: {e}"));
                return rows.iter().map(|r| (r.gate(), reading.clone())).collect();
            }
        },
        None => target,
    };
    // A Redis with authentication switched off refuses the Secret's AUTH ("no password is
    // configured"): it answers anyone, which is the auth row's failure, not every row's.
    let mut open_to_anyone = false;
    let connection = match target.connect(target.info.clone()).await {
        Err(ConnectError::Redis(e)) if e.kind() == redis::ErrorKind::AuthenticationFailed => {
            match target.connect(target.anonymous()).await {
                Ok(c) => {
                    open_to_anyone = true;
                    Ok(c)
                }
                Err(_) => Err(ConnectError::Redis(e)),
            }
        }
        other => other,
    };
    let mut connection = match connection {
        Ok(c) => c,
        Err(e) => {
            let reading = Reading::Error(e.to_string());
            return rows.iter().map(|r| (r.gate(), reading.clone())).collect();
        }
    };
    let mut out = BTreeMap::new();
    for &row in rows {
        let reading = match row {
            RedisRow::Tls => flag(target.tls()),
            RedisRow::Auth if open_to_anyone => Reading::Probed {
                value: 0.0,
                detail: "Redis answers without credentials (it refused the Secret's: no password is configured, \
                         or the Secret's are wrong and the default user needs none)"
                    .to_owned(),
            },
            RedisRow::Auth => auth_enforced(target).await,
            RedisRow::Replica => info_field(&mut connection, "replication", "connected_slaves").await,
            RedisRow::P95LatencyMs => latency_p95(&mut connection, checks.latency_budget).await,
            RedisRow::FragmentationRatio => info_field(&mut connection, "memory", "mem_fragmentation_ratio").await,
            RedisRow::EvictedKeys => match info_field(&mut connection, "stats", "evicted_keys").await {
                Reading::Value { value, .. } => history
                    .increase(history_key, value as u64, window, Instant::now())
                    .map_or(Reading::NoData, |increase| Reading::Value {
                        value: increase as f64,
                        samples: 1,
                    }),
                other => other,
            },
            RedisRow::MaxmemoryPolicy => match checks.maxmemory_policy {
                Some(want) => maxmemory_policy(&mut connection, want.as_str()).await,
                None => Reading::NoData,
            },
            RedisRow::PlaintextRefused => match checks.plaintext_port {
                Some(port) => plaintext_refused(target, port).await,
                None => Reading::NoData,
            },
            RedisRow::SentinelQuorum => match &target.sentinels {
                Some(sentinels) => sentinel_quorum(sentinels).await,
                None => Reading::Error(format!(
                    "the Secret has no key {:?} (comma-separated host:port of the Sentinels)",
                    keys::SENTINELS
                )),
            },
        };
        out.insert(row.gate(), reading);
    }
    out
}

fn flag(on: bool) -> Reading {
    Reading::Value {
        value: if on { 1.0 } else { 0.0 },
        samples: 1,
    }
}

/// Redis must refuse a client without credentials. Without credentials in the Secret there is
/// nothing to prove: the authenticated `PING` above was the unauthenticated one.
async fn auth_enforced(target: &Target) -> Reading {
    if !target.has_credentials() {
        return flag(false);
    }
    match target.connect(target.anonymous()).await {
        Ok(_) => flag(false),
        // Only the server's own refusal proves auth is enforced; any other failure proves nothing.
        Err(ConnectError::Redis(e)) if e.code() == Some("NOAUTH") => flag(true),
        Err(e) => Reading::Error(format!("unauthenticated PING: {e}")),
    }
}

/// One `field:value` line of an `INFO` section, as text.
async fn info_text(connection: &mut MultiplexedConnection, section: &str, field: &str) -> Result<String, String> {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(connection)
        .await
        .map_err(|e| format!("INFO {section}: {}", describe(&e)))?;
    if section == "replication" && info.lines().any(|l| l.trim() == "role:slave") {
        return Err("the Secret's URL points at a replica, not the primary".into());
    }
    info.lines()
        .find_map(|line| Some(line.trim().strip_prefix(field)?.strip_prefix(':')?.to_owned()))
        .ok_or_else(|| format!("INFO {section} has no {field}"))
}

async fn info_field(connection: &mut MultiplexedConnection, section: &str, field: &str) -> Reading {
    match info_text(connection, section, field).await {
        Ok(text) => text.parse::<f64>().map_or_else(
            |_| Reading::Error(format!("INFO {section}: {field} is not a number")),
            |value| Reading::Value { value, samples: 1 },
        ),
        Err(e) => Reading::Error(e),
    }
}

fn verdict(held: bool, detail: String) -> Reading {
    Reading::Probed {
        value: if held { 1.0 } else { 0.0 },
        detail,
    }
}

async fn maxmemory_policy(connection: &mut MultiplexedConnection, want: &str) -> Reading {
    match info_text(connection, "memory", "maxmemory_policy").await {
        Ok(policy) if policy == want => verdict(true, format!("maxmemory-policy is {policy}")),
        Ok(policy) => verdict(false, format!("maxmemory-policy is {policy}, want {want}")),
        Err(e) => Reading::Error(e),
    }
}

/// Redis must not answer plaintext on `port` of the primary's host. Only a Redis reply (even
/// `NOAUTH`) proves the port open; a refused or reset connection, or bytes that are not RESP,
/// prove it closed to plaintext clients.
async fn plaintext_refused(target: &Target, port: u16) -> Reading {
    let host = match target.info.addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
        other => return Reading::Error(format!("no TCP host in the Secret's URL ({other})")),
    };
    let Ok(plain) = ConnectionAddr::Tcp(host.clone(), port).into_connection_info() else {
        return Reading::Error(format!("{host}:{port} is no address"));
    };
    let anonymous = Target {
        info: plain,
        ca_pem: None,
        sentinels: None,
    };
    match anonymous.connect(anonymous.info.clone()).await {
        Ok(_) => verdict(false, format!("{host}:{port} answers plaintext PING")),
        Err(ConnectError::Redis(e)) if e.code().is_some() => verdict(
            false,
            format!("{host}:{port} answers plaintext Redis ({})", describe(&e)),
        ),
        // No answer at all is no proof either way (a firewall in the operator's path only).
        Err(ConnectError::TimedOut) => Reading::Error(format!(
            "{host}:{port}: no answer within {:?}, so the probe cannot tell whether plaintext is refused",
            TIMEOUT * 2
        )),
        Err(e) => verdict(true, format!("{host}:{port} refuses plaintext Redis ({e})")),
    }
}

/// A plaintext connection to one Sentinel.
async fn sentinel_connection(sentinels: &Sentinels, address: &str) -> Result<MultiplexedConnection, String> {
    let mut settings = RedisConnectionInfo::default();
    if let Some(password) = &sentinels.password {
        settings = settings.set_password(password.clone());
    }
    let info = format!("redis://{address}")
        .into_connection_info()
        .map_err(|_| format!("sentinel {address}: not host:port"))?
        .set_redis_settings(settings);
    let plain = Target {
        info: info.clone(),
        ca_pem: None,
        sentinels: None,
    };
    plain
        .connect(info)
        .await
        .map_err(|e| format!("sentinel {address}: {e}"))
}

async fn primary_named_by(
    connection: &mut MultiplexedConnection,
    sentinels: &Sentinels,
    address: &str,
) -> Result<Option<(String, String)>, String> {
    redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(&sentinels.master_name)
        .query_async(connection)
        .await
        .map_err(|e| format!("sentinel {address}: {}", describe(&e)))
}

/// The primary as the first Sentinel that knows it says.
async fn current_primary(sentinels: &Sentinels) -> Result<(String, u16), String> {
    let mut last = "no Sentinel listed".to_owned();
    for address in &sentinels.addresses {
        let named = match sentinel_connection(sentinels, address).await {
            Ok(mut connection) => primary_named_by(&mut connection, sentinels, address).await,
            Err(e) => Err(e),
        };
        match named {
            Ok(Some((host, port))) => {
                if let Ok(port) = port.parse() {
                    return Ok((host, port));
                }
                last = format!("sentinel {address}: port {port:?}");
            }
            Ok(None) => last = format!("sentinel {address} does not know {:?}", sentinels.master_name),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// How long a drill waits for the Sentinels to name the new primary.
const FAILOVER_WAIT: Duration = Duration::from_secs(5);

/// What a drill's failover did.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedOver {
    pub from: String,
    pub to: Option<String>,
    /// When a Sentinel accepted the command.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A failover drill: asks the first Sentinel that accepts to fail the primary over
/// (`SENTINEL FAILOVER`; `INPROG`, one already running, counts as accepted), then waits (at
/// most [`FAILOVER_WAIT`]) for the Sentinels to name another primary.
pub async fn failover(target: &Target) -> Result<FailedOver, String> {
    let Some(sentinels) = &target.sentinels else {
        return Err(format!(
            "the Secret has no key {:?}: a drill fails over through the Sentinels",
            keys::SENTINELS
        ));
    };
    let (host, port) = current_primary(sentinels).await?;
    let from = format!("{host}:{port}");
    let mut refusals = Vec::new();
    let mut accepted = false;
    for address in &sentinels.addresses {
        let answer = match sentinel_connection(sentinels, address).await {
            Ok(mut connection) => redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(&sentinels.master_name)
                .query_async::<String>(&mut connection)
                .await
                // Another failover of this primary is running (ours, if an answer came late).
                .or_else(|e| {
                    if e.code() == Some("INPROG") {
                        Ok(String::new())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| format!("sentinel {address}: {}", describe(&e))),
            Err(e) => Err(e),
        };
        match answer {
            Ok(_) => {
                accepted = true;
                break;
            }
            Err(e) => refusals.push(e),
        }
    }
    if !accepted {
        return Err(refusals.join("; "));
    }
    let at = chrono::Utc::now();
    let deadline = Instant::now() + FAILOVER_WAIT;
    while Instant::now() < deadline {
        if let Ok((host, port)) = current_primary(sentinels).await {
            let now = format!("{host}:{port}");
            if now != from {
                return Ok(FailedOver {
                    from,
                    to: Some(now),
                    at,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(FailedOver { from, to: None, at })
}

/// The Sentinels must all answer and name one primary, and have the quorum to fail over.
async fn sentinel_quorum(sentinels: &Sentinels) -> Reading {
    let ask = |address: String| async move {
        let mut connection = sentinel_connection(sentinels, &address).await?;
        let primary = primary_named_by(&mut connection, sentinels, &address).await?;
        let quorum: Result<String, _> = redis::cmd("SENTINEL")
            .arg("ckquorum")
            .arg(&sentinels.master_name)
            .query_async(&mut connection)
            .await;
        Ok::<_, String>((
            primary.map(|(h, p)| format!("{h}:{p}")),
            quorum.map_err(|e| describe(&e)),
        ))
    };
    let answers = futures::future::join_all(sentinels.addresses.iter().cloned().map(ask)).await;
    let total = answers.len();
    let mut named: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut quorum_ok = false;
    for answer in answers {
        match answer {
            Ok((Some(primary), quorum)) => {
                *named.entry(primary).or_default() += 1;
                match quorum {
                    Ok(_) => quorum_ok = true,
                    Err(e) => problems.push(e),
                }
            }
            Ok((None, _)) => problems.push(format!("a Sentinel does not know {:?}", sentinels.master_name)),
            Err(e) => problems.push(e),
        }
    }
    let agreeing = named.values().max().copied().unwrap_or(0);
    let primaries: Vec<&str> = named.keys().map(String::as_str).collect();
    let detail = format!(
        "{agreeing}/{total} Sentinels name {} as primary{}{}",
        primaries.join(" / "),
        if quorum_ok { "; CKQUORUM OK" } else { "; no CKQUORUM OK" },
        if problems.is_empty() {
            String::new()
        } else {
            format!("; {}", problems.join("; "))
        }
    );
    verdict(
        total > 0 && named.len() == 1 && agreeing == total && quorum_ok && problems.is_empty(),
        detail,
    )
}

async fn latency_p95(connection: &mut MultiplexedConnection, budget: Duration) -> Reading {
    let mut millis = Vec::with_capacity(BURST);
    let burst_started = Instant::now();
    while millis.len() < BURST && (millis.is_empty() || burst_started.elapsed() < budget) {
        let started = Instant::now();
        let pong: Result<String, _> = redis::cmd("PING").query_async(connection).await;
        if let Err(e) = pong {
            return Reading::Error(format!("PING: {}", describe(&e)));
        }
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let samples = millis.len() as u64;
    Reading::Value {
        value: nearest_rank(&mut millis, 0.95),
        samples,
    }
}

fn nearest_rank(values: &mut [f64], quantile: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((quantile * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn p95_is_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&mut v, 0.95), 19.0);
        assert_eq!(nearest_rank(&mut [3.0], 0.95), 3.0);
    }

    #[test]
    fn evictions_are_counted_over_the_window() {
        let h = EvictionHistory::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        assert_eq!(h.increase("a", 5, w, t0), None, "no baseline yet");
        assert_eq!(h.increase("a", 5, w, t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(h.increase("a", 8, w, t0 + Duration::from_secs(4)), Some(3));
        // t0 and t0+2 fell out of the window; t0+4 (8) is the baseline now.
        assert_eq!(h.increase("a", 8, w, t0 + Duration::from_secs(15)), Some(0));
        assert_eq!(
            h.increase("a", 1, w, t0 + Duration::from_secs(16)),
            Some(1),
            "restart: from zero"
        );
        assert_eq!(h.increase("a", 3, w, t0 + Duration::from_secs(17)), Some(2));
        h.forget("a");
        assert_eq!(h.increase("a", 1, w, t0 + Duration::from_secs(18)), None);
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let t = Target::new(
            "rediss://user:hunter2@127.0.0.1:6380",
            None,
            Some("s3cret".into()),
            None,
        )
        .unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
        assert!(t.tls() && t.has_credentials());
        assert!(Target::new("http://x", None, None, None).is_err());
    }
}

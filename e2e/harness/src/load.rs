//! Load generator: catalogue reads at a bounded rate, for a bounded time and request count.
//!
//! Each request carries `X-Forwarded-For` with one of `clients` simulated student addresses
//! (10.42.x.y). The ingress stand-in appends its peer, and the API (trusting 127.0.0.1 as a
//! proxy) rate-limits per simulated student, as it would behind a real ingress, instead of
//! treating all load as one client.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::error::Result;

/// The catalogue queries sent, in turn, unless a config says otherwise.
const CATALOGUE_PATHS: [&str; 4] = [
    "/api/v1/scholarships?page_size=5",
    "/api/v1/scholarships?level=masters&page_size=5",
    "/api/v1/scholarships?field_of_study=computer-science&page_size=10",
    "/api/v1/scholarships?page_size=20",
];

/// A student's recommendations: the model-assisted path.
pub const RECOMMENDATIONS_PATH: &str =
    "/api/v1/recommendations?gpa=3.6&level=masters&field_of_study=computer-science&residency=US&limit=5";

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL of the ingress, e.g. `http://127.0.0.1:PORT` (loopback only).
    pub target: String,
    pub requests_per_second: u32,
    /// The generator stops by itself after this long...
    pub max_duration: Duration,
    /// ...or after this many requests, whichever comes first.
    pub max_requests: u64,
    /// Requests in flight at most; a tick finding none free is skipped, so a slow target
    /// lowers the rate instead of piling up requests.
    pub max_in_flight: usize,
    /// Simulated distinct client addresses.
    pub clients: u32,
    pub request_timeout: Duration,
    /// Paths (with query) sent in turn.
    pub paths: Vec<String>,
    /// Tokens for the paths that need a caller (recommendations), when authentication is on.
    pub tokens: Option<TokenMinter>,
}

/// Mints a fresh bearer token for a simulated student (by index): with replay protection on,
/// a token serves one request.
#[derive(Clone)]
pub struct TokenMinter(pub Arc<dyn Fn(u32) -> String + Send + Sync>);

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMinter")
    }
}

impl LoadConfig {
    pub fn new(target: impl Into<String>, requests_per_second: u32, max_duration: Duration) -> Self {
        Self {
            target: target.into(),
            requests_per_second,
            max_duration,
            max_requests: u64::from(requests_per_second) * max_duration.as_secs().max(1),
            max_in_flight: 64,
            clients: 500,
            request_timeout: Duration::from_secs(5),
            paths: CATALOGUE_PATHS.map(str::to_owned).to_vec(),
            tokens: None,
        }
    }
}

/// What the generator sent and got back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub sent: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    /// Ticks skipped because `max_in_flight` requests were outstanding.
    pub skipped: u64,
}

impl LoadStats {
    pub fn answered(&self) -> u64 {
        self.by_status.values().sum()
    }

    pub fn count_where(&self, f: impl Fn(u16) -> bool) -> u64 {
        self.by_status.iter().filter(|(s, _)| f(**s)).map(|(_, n)| n).sum()
    }

    pub fn server_errors(&self) -> u64 {
        self.count_where(|s| s >= 500)
    }
}

/// A running load generator; stops when dropped.
#[derive(Debug)]
pub struct LoadGenerator {
    stats: Arc<Mutex<LoadStats>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl LoadGenerator {
    pub fn start(config: LoadConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy() // loopback only: never through $HTTP_PROXY
            .timeout(config.request_timeout)
            .build()?;
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(generate(client, config, stats.clone(), stopped));
        Ok(Self {
            stats,
            stop,
            task: Some(task),
        })
    }

    pub fn stats(&self) -> LoadStats {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops sending, waits (bounded) for requests in flight, and returns the final counts.
    pub async fn stop(mut self) -> LoadStats {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.stats()
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn generate(
    client: reqwest::Client,
    config: LoadConfig,
    stats: Arc<Mutex<LoadStats>>,
    mut stopped: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(config.requests_per_second.max(1)));
    let mut ticker = tokio::time::interval(period);
    // After a stall, carry on at the set rate rather than bursting to catch up.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let mut sent: u64 = 0;
    while sent < config.max_requests && started.elapsed() < config.max_duration {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => break,
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            stats.lock().unwrap_or_else(PoisonError::into_inner).skipped += 1;
            continue;
        };
        let request = build_request(&client, &config, sent);
        sent += 1;
        stats.lock().unwrap_or_else(PoisonError::into_inner).sent += 1;
        let stats = stats.clone();
        tokio::spawn(async move {
            // Read the body too: it is part of the response time, and it lets the
            // connection go back to the pool.
            let status = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.bytes().await.map(|_| status).ok()
                }
                Err(_) => None,
            };
            let mut stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
            match status {
                Some(status) => *stats.by_status.entry(status).or_default() += 1,
                None => stats.transport_errors += 1,
            }
            drop(permit);
        });
    }
    // Let the requests in flight finish: all permits back means all answered.
    let _ = in_flight.acquire_many(config.max_in_flight.max(1) as u32).await;
}

fn build_request(client: &reqwest::Client, config: &LoadConfig, n: u64) -> reqwest::RequestBuilder {
    let path = config
        .paths
        .get((n % config.paths.len().max(1) as u64) as usize)
        .map_or("/", String::as_str);
    let client_id = (n % u64::from(config.clients.max(1))) as u32;
    let address = format!("10.42.{}.{}", client_id / 250, client_id % 250 + 1);
    let request = client
        .get(format!("{}{path}", config.target))
        .header("x-forwarded-for", address);
    match &config.tokens {
        Some(mint) if path.starts_with("/api/v1/recommendations") => request.bearer_auth((mint.0)(client_id)),
        _ => request,
    }
}

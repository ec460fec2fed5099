//! The whole canary promotion on loopback: the stack (`Stack::start`), waiting for the
//! outcome, and a report of what every part saw (`Stack::finish`).

mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use kube::{Api, Client};
use serde_json::Value;
use tokio::task::JoinHandle;

pub use report::{EventLine, PhaseChange, ScenarioReport};

use crate::error::{HarnessError, Result};
use crate::ingress::{IngressConfig, IngressStandIn};
use crate::kubelet::{KubeletConfig, KubeletStandIn};
use crate::load::{LoadConfig, LoadGenerator};
use crate::manifests::{self, NAMESPACE, PROMOTION, PromotionPlan};
use crate::processes::{ApiProcess, ApiSettings, Binaries, OperatorProcess, OperatorSettings};
use crate::slow_link::SlowLink;
use testkit::model::ModelStandIn;

/// The demo Redis's password (loopback only, generated data; not a secret).
const REDIS_PASSWORD: &str = "demo-redis-password";
/// The operator's probe identity at the IdP stand-in, and the API's tester token (likewise).
const PROBE_CLIENT: &str = "canary-probe";
const PROBE_CLIENT_SECRET: &str = "demo-probe-client-secret";
const TESTER_TOKEN: &str = "demo-tester-token";

/// Phases after which the operator does nothing more on its own.
pub const TERMINAL_PHASES: [&str; 3] = ["Promoted", "RolledBack", "Failed"];

/// What the canary release does once it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryRelease {
    /// Serves like the stable one: the promotion walks every step.
    Healthy,
    /// Ships with a database URL that points nowhere (a wrong Secret, a dropped grant): every
    /// catalogue read answers 503, so the 5xx rollback criterion fires.
    BrokenDatabase,
    /// Turns slow once it serves: its database link degrades (every round trip 600 ms later),
    /// so reads still succeed but over a second late, and the latency criterion fires.
    SlowDatabase,
}

/// How much later the degraded link delivers each answer of the canary's database.
const SLOW_LINK_DELAY: Duration = Duration::from_millis(600);

#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub binaries: Binaries,
    pub canary: CanaryRelease,
    /// `(weight, bake)` per step.
    pub steps: Vec<(u32, Duration)>,
    /// The promotion's evaluation interval.
    pub interval: Duration,
    /// The operator's `--min-window`.
    pub min_window: Duration,
    pub min_samples: u32,
    pub requests_per_second: u32,
    /// Longest wait for a terminal phase; the load stops by itself a little later.
    pub timeout: Duration,
    /// How long the kubelet stand-in takes to finish a rollout.
    pub rollout_delay: Duration,
    /// Prometheus scrape interval for both API processes.
    pub scrape_interval: Duration,
    /// Keep the directory with every process's log after the run.
    pub keep_logs: bool,
    /// Run three Sentinels over the Redis primary and its replica; both API processes and the
    /// operator's Redis probe find the primary through them (see [`Stack::redis_failover`]).
    pub redis_sentinels: bool,
    /// Run a model stand-in for recommendations (see [`Stack::model`]) and send a share of the
    /// load to `GET /api/v1/recommendations`.
    pub model: bool,
    /// The promotion's `progressDeadline`.
    pub progress_deadline: Duration,
    /// The API processes serve at pod addresses (a network namespace; needs root) listed in
    /// EndpointSlices, with JWT auth on (an IdP stand-in), so the operator's replay-protection
    /// and rate-limit probes run against them. Off: 127.0.0.1 and `--insecure-no-auth`.
    pub probes: bool,
}

impl ScenarioConfig {
    /// The demo's settings: four steps, bakes of 10–12 s, 2 s interval, 40 req/s.
    pub fn demo(binaries: Binaries) -> Self {
        let s = Duration::from_secs;
        Self {
            binaries,
            canary: CanaryRelease::Healthy,
            steps: vec![(10, s(10)), (30, s(12)), (60, s(12)), (100, s(10))],
            interval: s(2),
            min_window: s(10),
            min_samples: 20,
            requests_per_second: 40,
            timeout: s(300),
            rollout_delay: Duration::from_millis(1500),
            scrape_interval: s(1),
            keep_logs: false,
            redis_sentinels: false,
            model: false,
            progress_deadline: s(120),
            probes: true,
        }
    }
}

/// Everything the scenario started. Fields drop in declaration order, so traffic stops first
/// and the servers everything depends on stop last.
pub struct Stack {
    load: Option<LoadGenerator>,
    phase_watch: JoinHandle<()>,
    operator: OperatorProcess,
    kubelet: KubeletStandIn,
    ingress: IngressStandIn,
    canary_api: ApiProcess,
    model: Option<ModelStandIn>,
    _slow_link: Option<SlowLink>,
    stable_api: ApiProcess,
    prometheus: testkit::Prometheus,
    _redis: testkit::RedisServer,
    redis_replica: testkit::RedisServer,
    sentinels: Vec<testkit::Sentinel>,
    _postgres: testkit::Postgres,
    _idp: Option<Arc<testkit::idp::Idp>>,
    /// Where the API processes serve (dropped after them).
    _pod_host: Option<Arc<testkit::TestHost>>,
    client: Client,
    kubectl: testkit::kube::Kubectl,
    apiserver: testkit::KubeApiServer,
    timeline: Arc<Mutex<Vec<PhaseChange>>>,
    started: Instant,
    config: ScenarioConfig,
    log_dir: PathBuf,
    _scratch: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("api_server", &self.apiserver.url())
            .field("ingress", &self.ingress.addr)
            .field("log_dir", &self.log_dir)
            .finish_non_exhaustive()
    }
}

fn not_ready(what: &str, limit: Duration) -> HarnessError {
    HarnessError::NotReady {
        what: what.to_owned(),
        limit,
        detail: String::new(),
    }
}

/// Runs a blocking testkit start-up (initdb, waiting for a port) off the async workers.
async fn blocking<T: Send + 'static>(what: &str, f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await?
        .map_err(HarnessError::io(format!("start {what}")))
}

impl Stack {
    /// Starts every part, applies the objects and creates the CanaryPromotion. `progress`
    /// hears a line per part started.
    pub async fn start(config: ScenarioConfig, mut progress: impl FnMut(&str)) -> Result<Stack> {
        config.binaries.check()?;
        let started = Instant::now();
        let scratch = tempfile::Builder::new()
            .prefix("canary-e2e-")
            .tempdir()
            .map_err(HarnessError::io("create a scratch directory"))?;
        let (log_dir, scratch) = if config.keep_logs {
            (scratch.keep(), None)
        } else {
            (scratch.path().to_path_buf(), Some(scratch))
        };

        let apiserver_dir = log_dir.join("kube-apiserver");
        std::fs::create_dir_all(&apiserver_dir).map_err(HarnessError::io("create the API server's directory"))?;
        let apiserver = blocking("kube-apiserver and etcd", move || {
            testkit::KubeApiServer::start_in(&apiserver_dir)
        })
        .await?;
        let client = testkit::kube::client(&apiserver.kubeconfig()).await?;
        let kubectl = testkit::kube::Kubectl::new(&apiserver.kubeconfig(), &log_dir.join("kubectl-cache"));
        manifests::install_crd(&client).await?;
        manifests::apply_workload(&client, &log_dir).await?;
        let operator_kubeconfig = log_dir.join("operator.kubeconfig");
        manifests::install_operator(&client, &apiserver.kubeconfig(), &log_dir, &operator_kubeconfig).await?;
        let kubelet = KubeletStandIn::start(
            client.clone(),
            KubeletConfig {
                namespace: NAMESPACE.into(),
                rollout_delay: config.rollout_delay,
            },
        );
        progress(&format!(
            "kube-apiserver and etcd on {} (ready in {:.1} s, kubeconfig {}); CRD and the rendered \
             charts applied: canary-operator (ServiceAccount, RBAC), scholarship-api (Deployments, \
             Services, Ingresses)",
            apiserver.url(),
            apiserver.started_in().as_secs_f64(),
            apiserver.kubeconfig().display()
        ));

        let postgres = blocking("PostgreSQL", testkit::Postgres::start).await?;
        let database_url = blocking("the database", {
            let port = postgres.port();
            move || {
                std::process::Command::new("psql")
                    .args(["-X", "-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                    .args(["-c", "CREATE DATABASE scholarships"])
                    .output()
                    .and_then(|o| {
                        if o.status.success() {
                            Ok(())
                        } else {
                            Err(std::io::Error::other(String::from_utf8_lossy(&o.stderr).into_owned()))
                        }
                    })
            }
        })
        .await
        .map(|()| postgres.url("scholarships"))?;
        let (redis, redis_replica, redis_tls) = blocking("Redis (TLS, AUTH) and a replica", || {
            let tls = testkit::TlsFiles::generate()?;
            let options = testkit::RedisOptions {
                password: Some(REDIS_PASSWORD.into()),
                tls: Some(tls.clone()),
                replica_of: None,
            };
            let primary = testkit::RedisServer::start(options.clone())?;
            let replica = testkit::RedisServer::start(testkit::RedisOptions {
                replica_of: Some(primary.port()),
                ..options
            })?;
            Ok((primary, replica, tls))
        })
        .await?;
        let sentinels = if config.redis_sentinels {
            let (primary, tls) = (redis.port(), redis_tls.clone());
            blocking("three Redis Sentinels", move || {
                (0..3)
                    .map(|_| {
                        testkit::Sentinel::start_with(
                            manifests::REDIS_MASTER_NAME,
                            primary,
                            2,
                            Some(REDIS_PASSWORD),
                            Some(&tls),
                        )
                    })
                    .collect::<std::io::Result<Vec<_>>>()
            })
            .await?
        } else {
            Vec::new()
        };
        let sentinel_addresses: Vec<String> = sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        manifests::create_redis_secret(&client, &redis.url(), &redis_tls.ca_cert, &sentinel_addresses).await?;
        progress(&format!(
            "PostgreSQL on 127.0.0.1:{}, Redis (TLS, AUTH) on 127.0.0.1:{} with a replica on 127.0.0.1:{}; \
             Secret redis-credentials for the operator's Redis gate",
            postgres.port(),
            redis.port(),
            redis_replica.port()
        ));

        let model = if config.model {
            let model = ModelStandIn::start()
                .await
                .map_err(HarnessError::io("start the model stand-in"))?;
            progress(&format!(
                "model stand-in (OpenAI chat completions) on {}",
                model.base_url()
            ));
            Some(model)
        } else {
            None
        };
        let (pod_host, idp) = if config.probes {
            let host = blocking("a test host for the pods (needs root)", testkit::TestHost::create).await?;
            let key = testkit::idp::SigningKey::generate("demo", jsonwebtoken::Algorithm::RS256);
            let idp = testkit::idp::Idp::start(vec![key]).await;
            idp.register_client(PROBE_CLIENT, PROBE_CLIENT_SECRET, Value::Null);
            manifests::create_probe_secret(&client, &idp.token_url, PROBE_CLIENT, PROBE_CLIENT_SECRET, TESTER_TOKEN)
                .await?;
            progress(&format!(
                "pods at {} (a network namespace), IdP stand-in (JWKS, client credentials) at {}; \
                 Secret {} for the operator's replay and rate-limit probes",
                host.address(),
                idp.token_url,
                manifests::PROBE_SECRET
            ));
            (Some(Arc::new(host)), Some(Arc::new(idp)))
        } else {
            (None, None)
        };
        let auth = match &idp {
            Some(idp) => {
                let mut flags = idp.flags();
                flags.extend(["--tester-token".to_owned(), TESTER_TOKEN.to_owned()]);
                flags
            }
            None => Vec::new(),
        };
        let api_settings = ApiSettings {
            host: pod_host.clone(),
            auth,
            database_url,
            redis_url: redis.url(),
            redis_ca_file: redis_tls.ca_cert.clone(),
            redis_sentinels: sentinel_addresses,
            openai_base_url: model.as_ref().map(ModelStandIn::base_url),
            log_dir: log_dir.clone(),
        };
        let stable_api = ApiProcess::start(&config.binaries.api, "stable", &api_settings, true).await?;
        let mut slow_link = None;
        let canary_api = match config.canary {
            CanaryRelease::Healthy => ApiProcess::start(&config.binaries.api, "canary", &api_settings, true).await?,
            CanaryRelease::BrokenDatabase => {
                // A port nothing listens on: the release's database is unreachable.
                let broken = ApiSettings {
                    database_url: format!("postgres://postgres@127.0.0.1:{}/scholarships", testkit::free_port()),
                    ..api_settings.clone()
                };
                ApiProcess::start(&config.binaries.api, "canary", &broken, false).await?
            }
            CanaryRelease::SlowDatabase => {
                let link = SlowLink::start(SocketAddr::from(([127, 0, 0, 1], postgres.port())))
                    .await
                    .map_err(HarnessError::io("start the slow link"))?;
                let slow = ApiSettings {
                    database_url: format!("postgres://postgres@127.0.0.1:{}/scholarships", link.addr.port()),
                    ..api_settings.clone()
                };
                let api = ApiProcess::start(&config.binaries.api, "canary", &slow, true).await?;
                // Started healthy, then its link degrades: the canary turns slow while serving.
                link.set_delay(SLOW_LINK_DELAY);
                slow_link = Some(link);
                api
            }
        };
        let broken = match config.canary {
            CanaryRelease::Healthy => "",
            CanaryRelease::BrokenDatabase => " (this release cannot reach its database)",
            CanaryRelease::SlowDatabase => " (its database link turns slow once it serves)",
        };
        if config.probes {
            manifests::create_endpoint_slice(&client, manifests::STABLE, stable_api.addr).await?;
            manifests::create_endpoint_slice(&client, manifests::CANARY, canary_api.addr).await?;
        }
        let auth = if config.probes { ", JWT auth on" } else { "" };
        progress(&format!(
            "scholarship-api --track stable on {}, --track canary on {}{broken}{auth}",
            stable_api.addr, canary_api.addr
        ));

        let targets = vec![stable_api.addr.to_string(), canary_api.addr.to_string()];
        let scrape = config.scrape_interval;
        // The label Kubernetes service discovery would put on the pods' series: the chart's
        // CanaryPromotion narrows its queries to it.
        let prometheus = blocking("Prometheus", move || {
            testkit::Prometheus::start_labelled(&targets, scrape, &[("namespace", crate::manifests::NAMESPACE)])
        })
        .await?;
        progress(&format!(
            "Prometheus on {} scraping both every {:?}",
            prometheus.url(),
            scrape
        ));

        let ingress = IngressStandIn::start(
            client.clone(),
            IngressConfig::new(NAMESPACE, manifests::CANARY, stable_api.addr, canary_api.addr),
        )
        .await?;
        let mut load_config = LoadConfig::new(
            ingress.url(),
            config.requests_per_second,
            config.timeout + Duration::from_secs(30),
        );
        load_config.max_in_flight = 32;
        if config.model {
            load_config.paths.push(crate::load::RECOMMENDATIONS_PATH.to_owned());
            if let Some(idp) = idp.clone() {
                load_config.tokens = Some(crate::load::TokenMinter(Arc::new(move |student| {
                    idp.token("demo", &format!("student-{student}"))
                })));
            }
        }
        let load = LoadGenerator::start(load_config)?;
        progress(&format!(
            "ingress stand-in on {} following Ingress {}/{}; load {} req/s",
            ingress.url(),
            NAMESPACE,
            manifests::CANARY,
            config.requests_per_second
        ));

        let operator = OperatorProcess::start(
            &config.binaries.operator,
            &OperatorSettings {
                kubeconfig: operator_kubeconfig,
                namespace: NAMESPACE.into(),
                lease_namespace: manifests::OPERATOR_NAMESPACE.into(),
                min_window: config.min_window,
                log_dir: log_dir.clone(),
            },
        )
        .await?;
        progress(&format!(
            "canary-operator run (metrics on {}, log {})",
            operator.metrics_addr,
            operator.log.display()
        ));

        let plan = PromotionPlan {
            steps: config.steps.clone(),
            interval: config.interval,
            prometheus: prometheus.url(),
            min_samples: config.min_samples,
            progress_deadline: config.progress_deadline,
            probes: config.probes,
        };
        manifests::create_promotion(&client, &plan, &log_dir).await?;
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let phase_watch = tokio::spawn(watch_phases(client.clone(), started, timeline.clone()));
        progress(&format!(
            "CanaryPromotion {NAMESPACE}/{PROMOTION} applied from charts/scholarship-api"
        ));

        Ok(Stack {
            load: Some(load),
            phase_watch,
            operator,
            kubelet,
            ingress,
            canary_api,
            model,
            _slow_link: slow_link,
            stable_api,
            prometheus,
            _redis: redis,
            redis_replica,
            sentinels,
            _postgres: postgres,
            _idp: idp,
            _pod_host: pod_host,
            client,
            kubectl,
            apiserver,
            timeline,
            started,
            config,
            log_dir,
            _scratch: scratch,
        })
    }

    /// The Redis primary as the Sentinels name it (`host:port`), with Sentinels running.
    fn redis_primary(&self) -> Option<String> {
        let answer = self
            .sentinels
            .first()?
            .cli(&["SENTINEL", "get-master-addr-by-name", manifests::REDIS_MASTER_NAME])
            .ok()?;
        let mut lines = answer.lines();
        Some(format!("{}:{}", lines.next()?, lines.next()?))
    }

    /// A Sentinel-driven failover of Redis (`SENTINEL FAILOVER`), once the replica is in sync
    /// and known to the Sentinels; returns the old and the new primary once they changed.
    pub async fn redis_failover(&self, limit: Duration) -> Result<(String, String)> {
        let sentinel = self
            .sentinels
            .first()
            .ok_or_else(|| not_ready("a Sentinel (set ScenarioConfig::redis_sentinels)", limit))?;
        let replica = self.redis_replica.port().to_string();
        let deadline = Instant::now() + limit;
        let before = loop {
            let known = sentinel
                .cli(&["SENTINEL", "replicas", manifests::REDIS_MASTER_NAME])
                .unwrap_or_default();
            let synced = self.redis_replica.cli(&["INFO", "replication"]).unwrap_or_default();
            if known.contains(&replica) && synced.contains("master_link_status:up") {
                break self.redis_primary().unwrap_or_default();
            }
            if Instant::now() > deadline {
                return Err(not_ready("the replica, in sync and known to the Sentinels,", limit));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        sentinel
            .cli(&["SENTINEL", "FAILOVER", manifests::REDIS_MASTER_NAME])
            .map_err(HarnessError::io("SENTINEL FAILOVER"))?;
        loop {
            match self.redis_primary() {
                Some(now) if now != before => return Ok((before, now)),
                _ if Instant::now() > deadline => {
                    return Err(not_ready("a new primary named by the Sentinels", limit));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The model stand-in, with [`ScenarioConfig::model`].
    pub fn model(&self) -> Option<&ModelStandIn> {
        self.model.as_ref()
    }

    /// Kills the canary's API process and starts it again on the same address after `down`
    /// (a pod's container killed and restarted by its kubelet); returns how long the canary
    /// did not answer, from the kill to ready again.
    pub async fn kill_and_restart_canary(&mut self, down: Duration) -> Result<Duration> {
        let killed = Instant::now();
        self.canary_api.kill_and_restart(down).await?;
        Ok(killed.elapsed())
    }

    /// The cluster-admin kubeconfig of this stack's API server.
    pub fn kubeconfig(&self) -> PathBuf {
        self.apiserver.kubeconfig()
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn ingress(&self) -> &IngressStandIn {
        &self.ingress
    }

    /// `kubectl <args>` against this stack's API server.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        Ok(self.kubectl.run(args).await?)
    }

    /// The CanaryPromotion's `.status` (null before the operator wrote one).
    pub async fn promotion_status(&self) -> Result<Value> {
        promotion_status(&self.client).await
    }

    /// The latest phase the watcher saw.
    pub fn phase(&self) -> Option<String> {
        self.timeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .map(|c| c.phase.clone())
    }

    /// Waits until the promotion reaches a terminal phase or `limit` passes; returns the
    /// last phase seen.
    pub async fn wait_for_terminal_phase(&self, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let phase = self.phase();
            if phase.as_deref().is_some_and(|p| TERMINAL_PHASES.contains(&p)) || tokio::time::Instant::now() >= deadline
            {
                return phase;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The ingress polls the canary Ingress, so it applies the operator's last weight up to
    /// one poll interval later: give it a moment (bounded) before reporting what it routed.
    async fn wait_for_ingress_weight(&self, percent: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while (self.ingress.current_weight().percent() - percent).abs() > 0.5 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the load, collects what every part saw, then stops everything.
    pub async fn finish(mut self) -> Result<ScenarioReport> {
        self.phase_watch.abort();
        let status = self.promotion_status().await?;
        self.wait_for_ingress_weight(status["weight"].as_f64().unwrap_or(0.0))
            .await;
        let load = match self.load.take() {
            Some(load) => load.stop().await,
            None => Default::default(),
        };
        let events = report::events(&self.client).await?;
        let stable_image = report::stable_image(&self.client).await?;
        let timeline = self.timeline.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Ok(ScenarioReport {
            phase: status["phase"].as_str().unwrap_or("").to_owned(),
            elapsed: self.started.elapsed(),
            status,
            timeline,
            events,
            segments: self.ingress.segments(),
            ingress_totals: self.ingress.totals(),
            load,
            stable_image,
            rollouts: self.kubelet.rollouts(),
            log_dir: self.log_dir.clone(),
            operator_log: self.operator.log.clone(),
            api_logs: vec![self.stable_api.log.clone(), self.canary_api.log.clone()],
            prometheus: self.prometheus.url(),
            steps: self.config.steps.clone(),
        })
    }
}

async fn promotion_status(client: &Client) -> Result<Value> {
    let promotions: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), NAMESPACE, &manifests::promotion_resource());
    let object = promotions.get(PROMOTION).await?;
    Ok(object.data.get("status").cloned().unwrap_or(Value::Null))
}

/// Records each change of (phase, step, weight) of the promotion, polled every 250 ms.
async fn watch_phases(client: Client, started: Instant, timeline: Arc<Mutex<Vec<PhaseChange>>>) {
    loop {
        if let Ok(status) = promotion_status(&client).await {
            let change = PhaseChange::from_status(started.elapsed(), &status);
            let mut timeline = timeline.lock().unwrap_or_else(PoisonError::into_inner);
            if change.phase.is_empty() {
                // The operator has not written a status yet.
            } else if timeline.last().is_none_or(|last| !last.same_state(&change)) {
                timeline.push(change);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One-shot convenience: start, wait for a terminal phase (bounded by `config.timeout`),
/// finish.
pub async fn run(config: ScenarioConfig) -> Result<ScenarioReport> {
    let timeout = config.timeout;
    let stack = Stack::start(config, |line| tracing::info!("{line}")).await?;
    stack.wait_for_terminal_phase(timeout).await;
    stack.finish().await
}

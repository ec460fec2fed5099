//! The workspace's own binaries, run as child processes that die with us
//! (`testkit::ManagedChild`: parent-death signal plus an exit hook).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use std::sync::Arc;

use testkit::{ManagedChild, TestHost};

use crate::error::{HarnessError, Result};

/// Paths of the `scholarship-api` and `canary-operator` executables.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub api: PathBuf,
    pub operator: PathBuf,
}

impl Binaries {
    /// The binaries in `dir` (e.g. `target/release`).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            api: dir.join("scholarship-api"),
            operator: dir.join("canary-operator"),
        }
    }

    /// The binaries built next to the running executable (cargo puts all of a profile's
    /// binaries in one directory).
    pub fn next_to_current_exe() -> Result<Self> {
        let exe = std::env::current_exe().map_err(HarnessError::io("locate the current executable"))?;
        let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self::in_dir(&dir))
    }

    /// Fails naming the first missing binary.
    pub fn check(&self) -> Result<()> {
        for path in [&self.api, &self.operator] {
            if !path.is_file() {
                return Err(HarnessError::MissingBinary(path.clone()));
            }
        }
        Ok(())
    }
}

/// Opened for appending: a process restarted on the same log keeps its first life's lines.
fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(HarnessError::io(format!("open {}", path.display())))
}

fn spawn(command: Command, log: &Path) -> Result<ManagedChild> {
    spawn_logging(command, log, None)
}

/// [`spawn`], handing the process `listener` (socket activation).
fn spawn_with_listener(command: Command, listener: std::net::TcpListener, log: &Path) -> Result<ManagedChild> {
    spawn_logging(command, log, Some(listener))
}

fn spawn_logging(mut command: Command, log: &Path, listener: Option<std::net::TcpListener>) -> Result<ManagedChild> {
    let file = log_file(log)?;
    let stderr = file
        .try_clone()
        .map_err(HarnessError::io(format!("open {}", log.display())))?;
    command.stdin(Stdio::null()).stdout(file).stderr(stderr);
    // The logs go to files: no terminal colour codes in them.
    command.env("NO_COLOR", "1");
    let name = command.get_program().to_string_lossy().into_owned();
    match listener {
        Some(listener) => ManagedChild::spawn_with_listener(command, listener, libc::SIGTERM),
        None => ManagedChild::spawn(command, libc::SIGTERM),
    }
    .map_err(HarnessError::io(format!("start {name}")))
}

/// Polls `url` until it answers 200, or fails after `limit` naming `what` and its log.
async fn wait_until_ok(url: &str, what: &str, log: &Path, limit: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HarnessError::NotReady {
                what: what.to_owned(),
                limit,
                detail: format!(" (see {})", log.display()),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `scholarship-api` process (a stand-in for one Deployment's pods).
#[derive(Debug)]
pub struct ApiProcess {
    pub track: &'static str,
    pub addr: SocketAddr,
    pub log: PathBuf,
    binary: PathBuf,
    settings: ApiSettings,
    expect_ready: bool,
    child: ManagedChild,
}

/// How to start an API process; both tracks share the database and Redis, as the two
/// Deployments do in a cluster.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub database_url: String,
    /// `rediss://` with the password.
    pub redis_url: String,
    /// The CA that signed Redis's certificate.
    pub redis_ca_file: PathBuf,
    /// `host:port` of the Sentinels to find the primary through (none: the URL's host).
    pub redis_sentinels: Vec<String>,
    /// `--openai-base-url` (none: rule-based recommendations only).
    pub openai_base_url: Option<String>,
    /// Serve at this test host's address (a pod address EndpointSlices may list) instead of
    /// 127.0.0.1; the process is handed its listening socket (socket activation).
    pub host: Option<Arc<TestHost>>,
    /// Authentication flags (`--jwks-url` ... and `--tester-token`); empty: `--insecure-no-auth`.
    pub auth: Vec<String>,
    pub log_dir: PathBuf,
}

impl ApiProcess {
    /// Starts it on a free loopback port and waits for `/readyz` (migrations done), or only
    /// for `/healthz` when `expect_ready` is false (a release that cannot reach its database
    /// never gets ready, but it runs and answers).
    pub async fn start(binary: &Path, track: &'static str, settings: &ApiSettings, expect_ready: bool) -> Result<Self> {
        let addr = match &settings.host {
            Some(host) => {
                let listener = host.listen(0).map_err(HarnessError::io("listen on the test host"))?;
                let port = listener
                    .local_addr()
                    .map_err(HarnessError::io("read the listener's address"))?
                    .port();
                SocketAddr::from((host.address(), port))
            }
            None => SocketAddr::from(([127, 0, 0, 1], testkit::free_port())),
        };
        let log = settings.log_dir.join(format!("api-{track}.log"));
        let child = Self::run(binary, track, addr, settings, &log, expect_ready).await?;
        Ok(Self {
            track,
            addr,
            log,
            binary: binary.to_path_buf(),
            settings: settings.clone(),
            expect_ready,
            child,
        })
    }

    /// Kills the process (SIGKILL: no drain, in-flight requests cut), then, after `down`,
    /// starts it again on the same address, as a kubelet restarts a pod's container; returns
    /// once the new process is ready.
    pub async fn kill_and_restart(&mut self, down: Duration) -> Result<()> {
        self.child.kill();
        tokio::time::sleep(down).await;
        self.child = Self::run(
            &self.binary,
            self.track,
            self.addr,
            &self.settings,
            &self.log,
            self.expect_ready,
        )
        .await?;
        Ok(())
    }

    async fn run(
        binary: &Path,
        track: &str,
        addr: SocketAddr,
        settings: &ApiSettings,
        log: &Path,
        expect_ready: bool,
    ) -> Result<ManagedChild> {
        let mut command = Command::new(binary);
        command
            .args(["--track", track])
            .arg("--database-url")
            .arg(&settings.database_url)
            .arg("--redis-url")
            .arg(&settings.redis_url)
            .arg("--redis-ca-file")
            .arg(&settings.redis_ca_file)
            .args(["--db-max-connections", "10"])
            // The chart's catalogue rate (120 a minute) in 5 s windows: the operator's
            // rate-limit burst (a window's budget + 4) finds a fresh window within seconds at
            // every step.
            .args(["--rate-limits", "catalogue=10/5s,applications=10/1m,default=60/1m"])
            .args(["--shutdown-drain-ms", "0", "--shutdown-grace-seconds", "2"])
            .env("LOG_FILTER", "warn");
        // The ingress stand-in is the only proxy: trust its X-Forwarded-For so each simulated
        // student gets their own budget. It connects from 127.0.0.1, or from the test host's
        // peer, and appends its own client (the load generator, on 127.0.0.1).
        let proxy = settings.host.as_ref().map_or_else(
            || "127.0.0.1/32".to_owned(),
            |h| format!("127.0.0.1/32,{}/32", h.peer_address()),
        );
        command.arg("--trusted-proxies").arg(proxy);
        if settings.auth.is_empty() {
            command.arg("--insecure-no-auth");
        } else {
            command.args(&settings.auth);
        }
        if !settings.redis_sentinels.is_empty() {
            command
                .arg("--redis-sentinels")
                .arg(settings.redis_sentinels.join(","))
                .args(["--redis-master-name", crate::manifests::REDIS_MASTER_NAME]);
        }
        if let Some(url) = &settings.openai_base_url {
            command.arg("--openai-base-url").arg(url);
        }
        let child = match &settings.host {
            Some(host) => {
                // The port of the first life, bound again after a restart.
                let listener = host
                    .listen(addr.port())
                    .map_err(HarnessError::io(format!("listen on {addr}")))?;
                spawn_with_listener(command, listener, log)?
            }
            None => {
                command.arg("--listen").arg(addr.to_string());
                spawn(command, log)?
            }
        };
        let probe = if expect_ready { "readyz" } else { "healthz" };
        wait_until_ok(
            &format!("http://{addr}/{probe}"),
            &format!("scholarship-api ({track})"),
            log,
            Duration::from_secs(60),
        )
        .await?;
        Ok(child)
    }
}

/// The real `canary-operator run`, against a kubeconfig.
#[derive(Debug)]
pub struct OperatorProcess {
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
    _child: ManagedChild,
}

#[derive(Debug, Clone)]
pub struct OperatorSettings {
    /// The operator's own credentials (its ServiceAccount), not an admin's.
    pub kubeconfig: PathBuf,
    pub namespace: String,
    /// Where its leader-election Lease lives (the operator's own namespace).
    pub lease_namespace: String,
    /// `--min-window`: the metric window is max(2 × interval, this).
    pub min_window: Duration,
    pub log_dir: PathBuf,
}

impl OperatorProcess {
    /// Starts it and waits for `/readyz` (the API server answered).
    pub async fn start(binary: &Path, settings: &OperatorSettings) -> Result<Self> {
        let metrics_addr = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
        let log = settings.log_dir.join("canary-operator.log");
        let mut command = Command::new(binary);
        command
            .arg("run")
            .args(["--namespace", &settings.namespace])
            .args(["--lease-namespace", &settings.lease_namespace])
            .arg("--listen")
            .arg(metrics_addr.to_string())
            .arg("--min-window")
            .arg(crate::manifests::go_duration(settings.min_window))
            .args(["--prometheus-timeout", "2s", "--log-format", "text"])
            .args(["--identity", "canary-operator-0"])
            .env("KUBECONFIG", &settings.kubeconfig)
            .env("RUST_LOG", "info,kube=warn");
        let child = spawn(command, &log)?;
        wait_until_ok(
            &format!("http://{metrics_addr}/readyz"),
            "canary-operator",
            &log,
            Duration::from_secs(30),
        )
        .await?;
        Ok(Self {
            metrics_addr,
            log,
            _child: child,
        })
    }
}

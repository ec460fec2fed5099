//! Shared test fixtures: the service in-process or as its real binary, against a real
//! PostgreSQL on a loopback port, plus a stand-in for the OpenAI chat-completions API.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clap::Parser;
use scholarship_api::config::Config;
use scholarship_api::state::AppState;
use testkit::{ManagedChild, Postgres};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// The service running in this test's runtime, on its own fresh database.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts with extra command-line flags, e.g. `["--track", "canary"]`.
    pub async fn start_with(flags: &[&str]) -> Self {
        let database_url = Postgres::shared().fresh_database();
        let mut argv = vec![
            "scholarship-api",
            "--database-url",
            &database_url,
            "--shutdown-drain-ms",
            "0",
        ];
        argv.extend_from_slice(flags);
        if !flags.contains(&"--jwks-url") {
            argv.push("--insecure-no-auth");
        }
        let config = Config::try_parse_from(argv).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let state = AppState::new(config).unwrap();
        tokio::spawn(async move {
            scholarship_api::serve(state, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let app = Self {
            base,
            client: client(),
            database_url,
            shutdown: Some(tx),
        };
        app.wait_ready().await;
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn wait_ready(&self) {
        wait_ready(&self.client, &self.base).await;
    }

    /// Runs SQL against this app's database.
    pub fn sql(&self, sql: &str) -> String {
        let db = self.database_url.rsplit('/').next().unwrap();
        Postgres::shared().psql(db, sql).unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    pub async fn wait_redis_connected(&self) {
        wait_redis_connected(&self.client, &self.base).await;
    }
}

/// Waits until readiness reports the Redis link up (`status: ready`, not `degraded`).
pub async fn wait_redis_connected(client: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && let Ok(body) = r.json::<serde_json::Value>().await
            && body["status"] == "ready"
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{base}: redis not connected within {READY_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .unwrap()
}

pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{base} not ready within {READY_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the value of one series from Prometheus text, 0 when absent.
/// Polls `f` every 20 ms for up to 2 s.
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "not within 2 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn series_value(metrics: &str, name_and_labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| name_and_labels.iter().all(|part| l.contains(part)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The real `scholarship-api` binary, stdout captured for log assertions.
pub struct BinaryApp {
    pub base: String,
    pub process: ManagedChild,
    logs: Arc<Mutex<String>>,
}

impl BinaryApp {
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_on(&Postgres::shared().fresh_database(), testkit::free_port(), extra).await
    }

    /// Starts on a given database and port (to restart "the same pod").
    pub async fn start_on(database_url: &str, port: u16, extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scholarship-api"));
        command
            .args(["--listen", &format!("127.0.0.1:{port}"), "--database-url", database_url])
            .args(extra)
            .args(if extra.contains(&"--jwks-url") {
                &[][..]
            } else {
                &["--insecure-no-auth"][..]
            })
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = ManagedChild::spawn(command, libc::SIGTERM).unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let child = process.child_mut().unwrap();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut all = logs.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
            });
        }
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&client(), &base).await;
        Self { base, process, logs }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// How the OpenAI stand-in answers.
#[derive(Clone, Debug)]
pub enum ModelBehaviour {
    /// Answers with this message content after this delay.
    Answer { content: String, delay: Duration },
    /// Answers with an HTTP error status.
    Fail(StatusCode),
}

/// A stand-in for an OpenAI-compatible `/v1/chat/completions` endpoint on loopback.
pub struct ModelStandIn {
    pub base_url: String,
    pub behaviour: Arc<Mutex<ModelBehaviour>>,
    pub calls: Arc<Mutex<Vec<serde_json::Value>>>,
}

#[derive(Clone)]
struct StandInState {
    behaviour: Arc<Mutex<ModelBehaviour>>,
    calls: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl ModelStandIn {
    pub async fn start(behaviour: ModelBehaviour) -> Self {
        let behaviour = Arc::new(Mutex::new(behaviour));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = StandInState {
            behaviour: behaviour.clone(),
            calls: calls.clone(),
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("http://{addr}/v1"),
            behaviour,
            calls,
        }
    }
}

async fn complete(State(state): State<StandInState>, Json(request): Json<serde_json::Value>) -> Response {
    state.calls.lock().unwrap().push(request);
    let behaviour = state.behaviour.lock().unwrap().clone();
    match behaviour {
        ModelBehaviour::Fail(status) => {
            (status, Json(serde_json::json!({"error": {"message": "boom"}}))).into_response()
        }
        ModelBehaviour::Answer { content, delay } => {
            tokio::time::sleep(delay).await;
            Json(serde_json::json!({
                "id": "chatcmpl-test", "object": "chat.completion", "model": "test",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
            }))
            .into_response()
        }
    }
}

//! Shared fixtures for the controller tests: a real kube-apiserver with etcd (or the cluster
//! `KUBECONFIG` names when `CANARY_TEST_REAL_CLUSTER=1`) where the operator runs as its own
//! ServiceAccount with the RBAC that `charts/canary-operator` renders, a tiny "kubelet" that keeps Deployment
//! status in line with spec, and a scripted Prometheus answering `/api/v1/query`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canary_operator::CanaryPromotion;
use canary_operator::clock::SystemClock;
use canary_operator::provider::prometheus::{builtin_query, samples_query, series};
use canary_operator::provider::{Sli, Track};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::CustomResourceExt;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

pub mod api_pod;

pub const OLD_IMAGE: &str = "registry.example/scholarship-api:v1.4.2";
pub const NEW_IMAGE: &str = "registry.example/scholarship-api:v1.5.0";
/// Window the operator is configured with in tests (min window; the interval is 1 s).
pub const WINDOW: Duration = Duration::from_secs(2);

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    canary_operator::telemetry::init(canary_operator::telemetry::LogFormat::Text);
}

/// Polls `f` every 50 ms until it returns `Some`, failing after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The canary-operator release's namespace: its ServiceAccount (and Lease) live there.
pub const OPERATOR_NAMESPACE: &str = "canary-operator";

/// Kubeconfigs shared by every test of one test binary: the cluster admin, and the operator's
/// ServiceAccount bound by the chart's RBAC.
struct Shared {
    admin: std::path::PathBuf,
    operator: std::path::PathBuf,
}

/// Once per test binary: a real kube-apiserver (or the cluster `KUBECONFIG` names when
/// `CANARY_TEST_REAL_CLUSTER=1`), the CRD, the operator's RBAC and a token for its account.
async fn shared() -> &'static Shared {
    static SHARED: tokio::sync::OnceCell<Shared> = tokio::sync::OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let real = std::env::var("CANARY_TEST_REAL_CLUSTER").is_ok_and(|v| v == "1");
            let admin = if real {
                std::path::PathBuf::from(std::env::var("KUBECONFIG").expect("KUBECONFIG"))
            } else {
                testkit::KubeApiServer::shared().unwrap().kubeconfig()
            };
            let client = client_for(&admin).await;
            install_crd(&client).await;
            if !real {
                install_httproute_crd(&client).await;
            }
            create_namespace(&client, OPERATOR_NAMESPACE).await;
            // The release grants Secret reads there (secretReadNamespaces).
            create_namespace(&client, "scholarship").await;
            testkit::kube::apply_yaml(&client, &chart_rbac("scholarship").join("\n---"), OPERATOR_NAMESPACE)
                .await
                .unwrap();
            let dir = testkit::scratch_dir("operator-tests-").unwrap().keep();
            testkit::remove_at_exit(dir.clone());
            let operator = dir.join("operator.kubeconfig");
            testkit::kube::service_account_kubeconfig(
                &client,
                &admin,
                OPERATOR_NAMESPACE,
                "canary-operator",
                Duration::from_secs(3600),
                &operator,
            )
            .await
            .unwrap();
            Shared { admin, operator }
        })
        .await
}

/// The ServiceAccount and RBAC documents of the canary-operator release `canary-operator` in
/// namespace `canary-operator`, with Secret reads in `secret_namespace`, exactly as
/// `helm install` renders them.
fn chart_rbac(secret_namespace: &str) -> Vec<String> {
    use testkit::charts::{Helm, Release};
    let release = Release::new("canary-operator", "canary-operator", OPERATOR_NAMESPACE)
        .set("secretReadNamespaces[0]", secret_namespace);
    let rendered = Helm::new()
        .and_then(|helm| helm.template(&release))
        .expect("helm template charts/canary-operator (scripts/fetch-tools.sh installs helm)");
    rendered
        .split("\n---")
        .filter(|doc| doc.contains("kind: ServiceAccount") || doc.contains("rbac.authorization.k8s.io/v1"))
        .map(str::to_owned)
        .collect()
}

/// Gateway API's own HTTPRoute CRD, so the Gateway API router is checked against its rules.
async fn install_httproute_crd(client: &Client) {
    let yaml = std::fs::read_to_string(testkit::httproute_crd()).unwrap();
    testkit::kube::apply_yaml(client, &yaml, "default").await.unwrap();
    let routes: Api<kube::api::DynamicObject> =
        Api::all_with(client.clone(), &canary_operator::router::gateway_http_route_resource());
    eventually(Duration::from_secs(10), "HTTPRoutes to be served", || async {
        routes.list(&ListParams::default().limit(1)).await.ok()
    })
    .await;
}

async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
        Err(e) => panic!("cannot create namespace {name}: {e}"),
    }
}

/// One test's view of the API server: a namespace of its own, an admin client for setting
/// the scene, and the operator's own (RBAC-limited) credentials.
pub struct Cluster {
    /// Cluster-admin kubeconfig.
    pub kubeconfig: std::path::PathBuf,
    /// The operator ServiceAccount's kubeconfig: the operator under test uses only this.
    pub operator_kubeconfig: std::path::PathBuf,
    /// Cluster admin, for what the test itself does.
    pub client: Client,
    pub ns: String,
    kubelet: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kubelet.abort();
    }
}

pub async fn client_for(kubeconfig: &std::path::Path) -> Client {
    testkit::kube::client(kubeconfig).await.unwrap()
}

impl Cluster {
    pub async fn start() -> Cluster {
        init();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let shared = shared().await;
        let client = client_for(&shared.admin).await;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ns = format!("test-{}-{n}", std::process::id());
        create_namespace(&client, &ns).await;
        // No kube-controller-manager or kubelet here: this plays both for Deployment status.
        let kubelet = tokio::spawn(kubelet(client.clone(), ns.clone()));
        Cluster {
            kubeconfig: shared.admin.clone(),
            operator_kubeconfig: shared.operator.clone(),
            client,
            ns,
            kubelet,
        }
    }

    /// A client with the operator's credentials (what the chart's RBAC grants).
    pub async fn operator_client(&self) -> Client {
        client_for(&self.operator_kubeconfig).await
    }

    /// Lets the operator read Secrets in this test's namespace, as the chart does for each
    /// namespace in `secretReadNamespaces`.
    pub async fn grant_secret_reads(&self) {
        let in_namespace = format!("namespace: {}\n", self.ns);
        let binding: Vec<String> = chart_rbac(&self.ns)
            .into_iter()
            .filter(|doc| doc.contains("kind: RoleBinding") && doc.contains(&in_namespace))
            .collect();
        assert_eq!(binding.len(), 1, "the chart binds Secret reads in {}", self.ns);
        testkit::kube::apply_yaml(&self.client, &binding[0], &self.ns)
            .await
            .unwrap();
    }

    /// A Secret in the test's namespace with these string values.
    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let string_data: serde_json::Map<String, Value> =
            data.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        let secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": string_data})).unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    }

    /// The operator's leader-election Lease for this test (one per test namespace).
    pub fn lease_name(&self) -> String {
        format!("lease-{}", self.ns)
    }

    pub fn cps(&self) -> Api<CanaryPromotion> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn ingresses(&self) -> Api<Ingress> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn create_deployment(&self, name: &str, image: &str, replicas: i32) {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "scholarship-api"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "scholarship-api", "deploy": name}},
                "template": {
                    "metadata": {"labels": {"app": "scholarship-api", "deploy": name}},
                    "spec": {"containers": [{"name": "api", "image": image}]}
                }
            }
        }))
        .unwrap();
        self.deployments().create(&PostParams::default(), &d).await.unwrap();
    }

    /// The usual scene: Deployments `api` (2 replicas of the old image) and `api-canary`
    /// (1 of the new), and the canary Ingress `api-canary`.
    pub async fn create_nginx_scene(&self) {
        self.create_deployment("api", OLD_IMAGE, 2).await;
        self.create_deployment("api-canary", NEW_IMAGE, 1).await;
        self.create_canary_ingress("api-canary").await;
    }

    pub async fn create_canary_ingress(&self, name: &str) {
        let ing: Ingress = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {"nginx.ingress.kubernetes.io/canary": "true"}},
            "spec": {"rules": [{"host": "api.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}
        }))
        .unwrap();
        self.ingresses().create(&PostParams::default(), &ing).await.unwrap();
    }

    pub async fn create_cp(&self, name: &str, spec: Value) {
        let cp: CanaryPromotion = serde_json::from_value(
            json!({"apiVersion": "scholarship.dev/v1alpha1", "kind": "CanaryPromotion",
                "metadata": {"name": name}, "spec": spec}),
        )
        .unwrap();
        self.cps().create(&PostParams::default(), &cp).await.unwrap();
    }

    pub async fn cp(&self, name: &str) -> Option<CanaryPromotion> {
        self.cps().get_opt(name).await.unwrap()
    }

    pub async fn status(&self, name: &str) -> Value {
        let cp = self.cps().get(name).await.unwrap();
        serde_json::to_value(cp.status).unwrap()
    }

    pub async fn wait_phase(&self, name: &str, phase: &str, limit: Duration) -> Value {
        eventually(limit, &format!("{name} to reach {phase}"), || async {
            let s = self.status(name).await;
            (s["phase"] == phase).then_some(s)
        })
        .await
    }

    pub async fn ingress_weight(&self, name: &str) -> Option<String> {
        let ing = self.ingresses().get(name).await.unwrap();
        ing.annotations()
            .get("nginx.ingress.kubernetes.io/canary-weight")
            .cloned()
    }

    pub async fn image(&self, deployment: &str) -> String {
        let d = self.deployments().get(deployment).await.unwrap();
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }

    /// Event reasons recorded for `name`, oldest first.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &self.ns);
        let mut list: Vec<_> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        list.into_iter().filter_map(|e| e.reason).collect()
    }

    pub async fn delete_cp(&self, name: &str) {
        self.cps().delete(name, &DeleteParams::default()).await.unwrap();
    }
}

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = CanaryPromotion::crd();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
        Err(e) => panic!("cannot install the CRD: {e}"),
    }
    let cps: Api<CanaryPromotion> = Api::all(client.clone());
    eventually(Duration::from_secs(10), "the CRD to be served", || async {
        cps.list(&ListParams::default().limit(1)).await.ok()
    })
    .await;
}

/// Plays the Deployment controller and kubelet: status follows spec a moment later.
async fn kubelet(client: Client, ns: String) {
    let api: Api<Deployment> = Api::namespaced(client, &ns);
    loop {
        if let Ok(list) = api.list(&ListParams::default()).await {
            for d in list.items {
                let generation = d.metadata.generation.unwrap_or(0);
                let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let st = d.status.clone().unwrap_or_default();
                if st.observed_generation == Some(generation) && st.ready_replicas.unwrap_or(0) == replicas {
                    continue;
                }
                let status = json!({"status": {
                    "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                    "readyReplicas": replicas, "availableReplicas": replicas,
                    "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]
                }});
                let _ = api
                    .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Prometheus HTTP API with scripted answers: each built-in SLI has a value (or no data),
/// the request count is 1000 unless told otherwise, custom PromQL maps to values.
#[derive(Clone)]
pub struct ScriptedProm {
    pub address: String,
    answers: Arc<Mutex<HashMap<String, Option<f64>>>>,
    pub queries: Arc<Mutex<u64>>,
    /// How often each distinct query was asked.
    seen: Arc<Mutex<HashMap<String, u64>>>,
}

impl ScriptedProm {
    pub async fn start() -> ScriptedProm {
        let answers: Arc<Mutex<HashMap<String, Option<f64>>>> = Arc::default();
        let queries: Arc<Mutex<u64>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let (a, q, s) = (answers.clone(), queries.clone(), seen.clone());
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(
                move |axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>| {
                    let (a, q, seen) = (a.clone(), q.clone(), s.clone());
                    async move {
                        *q.lock().unwrap() += 1;
                        let query = params.get("query").cloned().unwrap_or_default();
                        *seen.lock().unwrap().entry(query.clone()).or_insert(0) += 1;
                        let value = a.lock().unwrap().get(&query).copied().flatten();
                        let result = match value {
                            Some(v) => json!([{"metric": {}, "value": [0.0, v.to_string()]}]),
                            None => json!([]),
                        };
                        axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
                    }
                },
            ),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let p = ScriptedProm {
            address,
            answers,
            queries,
            seen,
        };
        p.set_samples(Some(1000.0));
        p.all_green();
        p
    }

    /// Queries asked so far whose PromQL contains `needle`.
    pub fn queries_containing(&self, needle: &str) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(q, _)| q.contains(needle))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn set_query(&self, query: &str, v: Option<f64>) {
        self.answers.lock().unwrap().insert(query.to_owned(), v);
    }

    pub fn set(&self, sli: Sli, v: Option<f64>) {
        self.set_on(Track::Canary, sli, v);
    }

    /// The SLI of one track (the stable one is read by the post-promotion watch).
    pub fn set_on(&self, track: Track, sli: Sli, v: Option<f64>) {
        self.set_query(&builtin_query(sli, &series(track, &Default::default()), WINDOW), v);
    }

    pub fn set_samples(&self, v: Option<f64>) {
        for track in [Track::Canary, Track::Stable] {
            self.set_query(&samples_query(&series(track, &Default::default()), WINDOW), v);
        }
    }

    /// Both tracks healthy.
    pub fn all_green(&self) {
        self.green_for(&Default::default(), WINDOW);
    }

    /// Both tracks healthy, and busy, for queries narrowed by `labels` over `window`.
    pub fn green_for(&self, labels: &std::collections::BTreeMap<String, String>, window: Duration) {
        for track in [Track::Canary, Track::Stable] {
            let on = series(track, labels);
            self.set_query(&samples_query(&on, window), Some(1000.0));
            for (sli, v) in [
                (Sli::Availability, 0.9995),
                (Sli::P95LatencyMs, 180.0),
                (Sli::ErrorRate5xx, 0.001),
                (Sli::RateLimited429, 0.002),
                (Sli::LimiterRedisErrors, 0.0),
                (Sli::OpenaiFallbackRate, 0.01),
                (Sli::DbPoolUtilization, 0.3),
                (Sli::RedisP95LatencyMs, 2.0),
            ] {
                self.set_query(&builtin_query(sli, &on, window), Some(v));
            }
        }
    }
}

/// The condition of `type_` in a status, as JSON (panics when absent).
pub fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// A promotion spec with short timings: interval 1 s, bakes of `bake`.
pub fn spec(traffic: Value, prometheus: &str, bake: &str, rollback_for: &str) -> Value {
    json!({
        "stable": {"deployment": "api"},
        "canary": {"deployment": "api-canary", "image": NEW_IMAGE},
        "traffic": traffic,
        "steps": [{"weight": 10, "bake": bake}, {"weight": 50, "bake": bake}, {"weight": 100, "bake": bake}],
        "interval": "1s",
        "metrics": {"prometheus": {"address": prometheus}},
        "gates": {"sli": {"availability": ">= 0.999", "p95LatencyMs": "<= 220", "errorRate5xx": "<= 0.005",
                          "rateLimited429": "<= 0.01", "minSamples": 100}},
        "rollback": [
            {"metric": "p95LatencyMs", "above": 250, "for": rollback_for},
            {"metric": "errorRate5xx", "above": 0.01, "for": rollback_for},
            {"metric": "limiterRedisErrors", "above": 0, "for": rollback_for}
        ]
    })
}

pub fn nginx() -> Value {
    json!({"nginx": {"canaryIngress": "api-canary"}})
}

/// Operator settings for in-process runs in `namespace` (no election unless given a lease).
pub fn settings(namespace: &str, lease: Option<canary_operator::leader::LeaseSettings>) -> canary_operator::Settings {
    canary_operator::Settings {
        namespace: Some(namespace.to_owned()),
        shard_selector: None,
        shard_survey_period: Duration::from_secs(1),
        listen: "127.0.0.1:0".parse().unwrap(),
        lease,
        identity: "test-operator".into(),
        prometheus_timeout: Duration::from_secs(2),
        min_window: WINDOW,
        concurrency: 8,
    }
}

/// The operator running inside the test process; stops when dropped.
pub struct InProcess {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<(), canary_operator::RunError>>>,
}

impl InProcess {
    /// Runs as the operator's ServiceAccount, watching the test's namespace only.
    pub async fn start(cluster: &Cluster) -> InProcess {
        InProcess::start_with(cluster, settings(&cluster.ns, None)).await
    }

    /// The same with other settings (a shard selector, an identity).
    pub async fn start_with(cluster: &Cluster, settings: canary_operator::Settings) -> InProcess {
        let (stop, rx) = watch::channel(false);
        let client = cluster.operator_client().await;
        let task = tokio::spawn(canary_operator::run(client, settings, Arc::new(SystemClock), rx));
        InProcess { stop, task: Some(task) }
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A canary pod's `/metrics` for the direct-scrape provider: serves the metric contract's
/// canary-track series (plus stable-track noise it must ignore) from counters that a
/// background task advances like steady traffic: `rps`/10 requests every 100 ms, of which the
/// `error_share` answer 5xx. All requests are fast (≤ 50 ms bucket).
#[derive(Clone)]
pub struct FakePod {
    /// The pod's own IP: a test host in a network namespace of its own, because the API
    /// server refuses loopback addresses in EndpointSlices.
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
    _host: Arc<testkit::TestHost>,
    state: Arc<Mutex<PodTraffic>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct PodTraffic {
    ok: u64,
    errors: u64,
    error_share: f64,
    rps: u64,
    /// Fractional 5xx carried between ticks so small shares still show up.
    carry: f64,
}

impl FakePod {
    pub async fn start(rps: u64) -> FakePod {
        let state = Arc::new(Mutex::new(PodTraffic {
            rps,
            ..Default::default()
        }));
        let host = testkit::TestHost::create().unwrap();
        let listener = tokio::net::TcpListener::from_std(host.listen(0).unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = state.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let s = s.clone();
                async move { exposition(&s.lock().unwrap()) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut t = s.lock().unwrap();
                let n = t.rps / 10;
                t.carry += n as f64 * t.error_share;
                let errors = t.carry.floor() as u64;
                t.carry -= errors as f64;
                t.errors += errors;
                t.ok += n - errors.min(n);
            }
        });
        FakePod {
            ip: host.address(),
            port,
            _host: Arc::new(host),
            state,
            task: Arc::new(task),
        }
    }

    pub fn set_error_share(&self, share: f64) {
        self.state.lock().unwrap().error_share = share;
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn exposition(t: &PodTraffic) -> String {
    let (ok, err) = (t.ok, t.errors);
    let total = ok + err;
    format!(
        r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{{route="/v1/scholarships",method="GET",status="200",track="canary"}} {ok}
http_requests_total{{route="/v1/scholarships",method="GET",status="503",track="canary"}} {err}
http_requests_total{{route="/v1/scholarships",method="GET",status="500",track="stable"}} 100000
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{{route="/v1/scholarships",method="GET",track="canary",le="0.05"}} {total}
http_request_duration_seconds_bucket{{route="/v1/scholarships",method="GET",track="canary",le="0.22"}} {total}
http_request_duration_seconds_bucket{{route="/v1/scholarships",method="GET",track="canary",le="0.25"}} {total}
http_request_duration_seconds_bucket{{route="/v1/scholarships",method="GET",track="canary",le="+Inf"}} {total}
http_request_duration_seconds_sum{{route="/v1/scholarships",method="GET",track="canary"}} 0.0
http_request_duration_seconds_count{{route="/v1/scholarships",method="GET",track="canary"}} {total}
ratelimit_decisions_total{{route="/v1/scholarships",decision="allowed",principal="user",track="canary"}} {total}
ratelimit_decisions_total{{route="/v1/scholarships",decision="limited",principal="tester",track="canary"}} {total}
limiter_redis_errors_total{{op="evalsha",track="canary"}} 0
db_pool_connections{{state="in_use",track="canary"}} 2
db_pool_connections{{state="idle",track="canary"}} 8
db_pool_max_connections{{track="canary"}} 10
# EOF
"#
    )
}

impl Cluster {
    /// One EndpointSlice per fake pod for the Service `service`, port name `metrics`.
    pub async fn create_endpoint_slices(&self, service: &str, pods: &[&FakePod]) {
        let addresses: Vec<_> = pods.iter().map(|p| (p.ip, p.port)).collect();
        self.create_endpoint_slices_for(service, "metrics", &addresses).await;
    }

    /// One EndpointSlice per pod address for the Service `service` (a pod's port is per
    /// slice), the port under the name `port_name`. Pods live in test hosts: the API server
    /// refuses loopback IPs in EndpointSlices.
    pub async fn create_endpoint_slices_for(&self, service: &str, port_name: &str, pods: &[(std::net::Ipv4Addr, u16)]) {
        let api: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = Api::namespaced(self.client.clone(), &self.ns);
        for (i, (ip, port)) in pods.iter().enumerate() {
            let slice = serde_json::from_value(json!({
                "metadata": {"name": format!("{service}-{i}"),
                             "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true},
                               "targetRef": {"kind": "Pod", "name": format!("{service}-pod-{i}")}}]
            }))
            .unwrap();
            api.create(&PostParams::default(), &slice).await.unwrap();
        }
    }
}

/// `spec(...)` with the direct-scrape metric source (EndpointSlice port `metrics`).
pub fn scrape_spec(traffic: Value, bake: &str, rollback_for: &str) -> Value {
    let mut s = spec(traffic, "http://unused.invalid", bake, rollback_for);
    s["metrics"] = json!({"scrape": {"portName": "metrics", "path": "/metrics"}});
    s
}

impl Cluster {
    /// `kubectl ARGS` as the cluster admin in the test's namespace, with `stdin` piped in;
    /// stdout on success, stderr on failure.
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let cache = std::env::temp_dir().join(format!("operator-tests-kubectl-{}", std::process::id()));
        static CLEANUP: std::sync::Once = std::sync::Once::new();
        CLEANUP.call_once(|| testkit::remove_at_exit(cache.clone()));
        // The test's namespace first: a `-n` in `args` comes later and wins.
        let args: Vec<&str> = ["--namespace", self.ns.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        match testkit::kube::Kubectl::new(&self.kubeconfig, &cache)
            .run_with_input(&args, stdin)
            .await
        {
            Ok(out) => Ok(out),
            Err(testkit::kube::KubeFixtureError::Kubectl { stderr, .. }) => Err(stderr),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// One sample of an operator's `/metrics` on `port` (`None` while it does not answer).
pub async fn operator_metric(port: u16, name: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// `canary-operator run` (the binary at `bin`) as the operator's ServiceAccount, watching the
/// test's namespace, electing on Lease `lease` in the operator namespace and serving
/// `/metrics` on `port`; callers add what their test varies.
pub fn operator_command(
    bin: &str,
    c: &Cluster,
    identity: &str,
    lease: &str,
    lease_duration: Duration,
    port: u16,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("run")
        .env("KUBECONFIG", &c.operator_kubeconfig)
        .env("CANARY_OPERATOR_NAMESPACE", &c.ns)
        .env("CANARY_OPERATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("CANARY_OPERATOR_LEASE_NAMESPACE", OPERATOR_NAMESPACE)
        .env("CANARY_OPERATOR_LEASE_NAME", lease)
        .env(
            "CANARY_OPERATOR_LEASE_DURATION",
            format!("{}s", lease_duration.as_secs()),
        )
        .env("CANARY_OPERATOR_MIN_WINDOW", format!("{}s", WINDOW.as_secs()))
        .env("POD_NAME", identity)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    cmd
}

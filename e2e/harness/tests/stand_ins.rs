//! The ingress, kubelet and load pieces on their own, against a real kube-apiserver and
//! tiny loopback backends (no PostgreSQL, Redis, Prometheus or operator needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use canary_e2e::ingress::{CanaryWeight, IngressConfig, IngressStandIn};
use canary_e2e::kubelet::{KubeletConfig, KubeletStandIn, needs_rollout};
use canary_e2e::load::{LoadConfig, LoadGenerator};
use canary_e2e::manifests;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// A real kube-apiserver of this test's own (the manifests use one fixed namespace).
async fn cluster() -> (testkit::KubeApiServer, Client) {
    canary_e2e::install_crypto_provider();
    let server = tokio::task::spawn_blocking(testkit::KubeApiServer::start)
        .await
        .unwrap()
        .unwrap();
    let client = testkit::kube::client(&server.kubeconfig()).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": manifests::NAMESPACE}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    (server, client)
}

#[derive(Clone)]
struct Backend {
    name: &'static str,
    status: StatusCode,
    hits: Arc<AtomicU64>,
}

/// Answers with its name in `x-backend` and the `X-Forwarded-For` it received in
/// `x-seen-forwarded-for`.
async fn answer(State(backend): State<Backend>, headers: HeaderMap) -> Response {
    backend.hits.fetch_add(1, Ordering::Relaxed);
    let mut response = (backend.status, backend.name).into_response();
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_static(backend.name));
    if let Some(xff) = headers.get("x-forwarded-for") {
        response.headers_mut().insert("x-seen-forwarded-for", xff.clone());
    }
    response
}

/// A loopback backend answering every request with `status`; returns its address and hit count.
async fn backend(name: &'static str, status: u16) -> (SocketAddr, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let state = Backend {
        name,
        status: StatusCode::from_u16(status).unwrap(),
        hits: hits.clone(),
    };
    let app = axum::Router::new().fallback(answer).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

async fn set_weight(client: &Client, weight: &str, total: Option<&str>) {
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), manifests::NAMESPACE);
    let mut annotations = json!({"nginx.ingress.kubernetes.io/canary-weight": weight});
    if let Some(total) = total {
        annotations["nginx.ingress.kubernetes.io/canary-weight-total"] = json!(total);
    }
    ingresses
        .patch(
            manifests::CANARY,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .unwrap();
}

async fn wait_for_weight(ingress: &IngressStandIn, want: CanaryWeight) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while ingress.current_weight() != want {
        assert!(Instant::now() < deadline, "ingress never applied {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_splits_by_canary_weight_and_appends_the_peer_to_x_forwarded_for() {
    let (_server, client) = cluster().await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), manifests::NAMESPACE);
    ingresses
        .create(
            &PostParams::default(),
            &manifests::ingress(manifests::CANARY, true).unwrap(),
        )
        .await
        .unwrap();
    let (stable, stable_hits) = backend("stable", 200).await;
    let (canary, canary_hits) = backend("canary", 200).await;
    let ingress = IngressStandIn::start(
        client.clone(),
        IngressConfig::new(manifests::NAMESPACE, manifests::CANARY, stable, canary),
    )
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // Weight 0: everything to stable; the peer is appended to the client's chain.
    let response = http
        .get(format!("{}/api/v1/scholarships?page_size=1", ingress.url()))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-backend"], "stable");
    assert_eq!(response.headers()["x-seen-forwarded-for"], "203.0.113.9, 127.0.0.1");

    set_weight(&client, "30", None).await;
    wait_for_weight(&ingress, CanaryWeight { weight: 30, total: 100 }).await;
    for _ in 0..600 {
        http.get(ingress.url()).send().await.unwrap();
    }
    let segment = ingress.segments().last().cloned().unwrap();
    assert_eq!(segment.split.requests(), 600);
    let share = segment.split.canary_share();
    assert!((0.22..=0.38).contains(&share), "canary share {share} at weight 30");
    assert_eq!(
        stable_hits.load(Ordering::Relaxed) + canary_hits.load(Ordering::Relaxed),
        601
    );

    // A custom total: 1000 of 1000 is everything.
    set_weight(&client, "1000", Some("1000")).await;
    wait_for_weight(
        &ingress,
        CanaryWeight {
            weight: 1000,
            total: 1000,
        },
    )
    .await;
    for _ in 0..20 {
        let response = http.get(ingress.url()).send().await.unwrap();
        assert_eq!(response.headers()["x-backend"], "canary");
    }
    let weights: Vec<u32> = ingress.segments().iter().map(|s| s.weight.percent() as u32).collect();
    assert_eq!(weights, [0, 30, 100]);
    assert_eq!(ingress.totals().failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_counts_upstream_5xx_and_unreachable_backends() {
    let (_server, client) = cluster().await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), manifests::NAMESPACE);
    ingresses
        .create(
            &PostParams::default(),
            &manifests::ingress(manifests::CANARY, true).unwrap(),
        )
        .await
        .unwrap();
    let (stable, _) = backend("stable", 503).await;
    // Nothing listens on the canary address.
    let canary = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let ingress = IngressStandIn::start(
        client.clone(),
        IngressConfig::new(manifests::NAMESPACE, manifests::CANARY, stable, canary),
    )
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(http.get(ingress.url()).send().await.unwrap().status(), 503);
    set_weight(&client, "100", None).await;
    wait_for_weight(
        &ingress,
        CanaryWeight {
            weight: 100,
            total: 100,
        },
    )
    .await;
    assert_eq!(http.get(ingress.url()).send().await.unwrap().status(), 502);
    let totals = ingress.totals();
    assert_eq!(totals.stable.status_5xx, 1);
    assert_eq!(totals.canary.transport_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_finishes_rollouts_after_the_delay() {
    let (_server, client) = cluster().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), manifests::NAMESPACE);
    deployments
        .create(
            &PostParams::default(),
            &manifests::deployment(manifests::STABLE, manifests::STABLE_IMAGE, 3).unwrap(),
        )
        .await
        .unwrap();
    let delay = Duration::from_millis(600);
    let kubelet = KubeletStandIn::start(
        client.clone(),
        KubeletConfig {
            namespace: manifests::NAMESPACE.into(),
            rollout_delay: delay,
        },
    );
    let rolled_out = |generation: i64| {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get(manifests::STABLE).await.unwrap();
            (d.metadata.generation == Some(generation) && !needs_rollout(&d)).then_some(d)
        }
    };
    let started = Instant::now();
    let d = loop {
        if let Some(d) = rolled_out(1).await {
            break d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "first rollout never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status = d.status.unwrap();
    assert_eq!(status.available_replicas, Some(3));
    assert_eq!(status.observed_generation, Some(1));

    // The operator's promotion: a new image bumps the generation; status follows after the delay.
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": manifests::CANARY_IMAGE}]}}}});
    deployments
        .patch(manifests::STABLE, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let changed = Instant::now();
    loop {
        if rolled_out(2).await.is_some() {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "second rollout never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        changed.elapsed() >= delay - Duration::from_millis(50),
        "status written before the delay"
    );
    let rollouts = kubelet.rollouts();
    assert_eq!(rollouts.len(), 2, "{rollouts:?}");
    assert_eq!(rollouts[1].image.as_deref(), Some(manifests::CANARY_IMAGE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_is_bounded_in_rate_duration_and_count() {
    let (addr, hits) = backend("stable", 200).await;
    let mut config = LoadConfig::new(format!("http://{addr}"), 50, Duration::from_secs(1));
    config.max_requests = 1000;
    let started = Instant::now();
    let load = LoadGenerator::start(config).unwrap();
    while !load.is_finished() {
        assert!(started.elapsed() < Duration::from_secs(5), "load never stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = load.stop().await;
    // 50/s for 1 s: the first tick fires at once, so 50 or 51.
    assert!((45..=51).contains(&stats.sent), "{stats:?}");
    assert_eq!(stats.answered(), stats.sent);
    assert_eq!(stats.by_status.get(&200).copied(), Some(stats.sent));
    assert_eq!(hits.load(Ordering::Relaxed), stats.sent);

    // And the count bound wins over the duration.
    let mut config = LoadConfig::new(format!("http://{addr}"), 100, Duration::from_secs(10));
    config.max_requests = 10;
    let stats = LoadGenerator::start(config).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(stats.is_finished());
    assert_eq!(stats.stop().await.sent, 10);
}

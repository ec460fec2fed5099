//! `operator/examples/canarypromotion.yaml`, the whole runbook, run to `Promoted` against
//! real parts: two canary pods and a stable pod (real `scholarship-api` processes at pod
//! addresses), PostgreSQL, a Redis primary with TLS, AUTH and a replica, Prometheus scraping
//! the pods, the IdP stand-in's client credentials for the probes, a model stand-in behind
//! recommendations, webhook receivers, and students' traffic.
//!
//! What the test changes in the example is what only a cluster has (addresses, namespace,
//! Secret contents) and time: steps, interval, rollback windows and the post-promotion watch
//! in seconds instead of hours. Every gate, threshold and criterion is the example's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::api_pod::{ApiPod, students};
use common::*;
use serde_json::{Value, json};
use testkit::idp::{Idp, SigningKey};
use testkit::model::ModelStandIn;
use testkit::{Postgres, Prometheus, RedisOptions, RedisServer, TestHost, TlsFiles};

const PROBE_CLIENT: &str = "canary-probe";
const PROBE_SECRET: &str = "probe-client-secret";
const TESTER_TOKEN: &str = "tester-token-for-probes";
const REDIS_PASSWORD: &str = "runbook-redis-password";

fn example() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/canarypromotion.yaml");
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The example's spec with this machine's addresses and times in seconds.
fn runbook_spec(prometheus: &str, namespace: &str, plaintext_port: u16) -> Value {
    let mut spec = example()["spec"].clone();
    let bakes = ["4s", "4s", "4s", "3s"];
    for (step, bake) in spec["steps"].as_array_mut().unwrap().iter_mut().zip(bakes) {
        step["bake"] = json!(bake);
    }
    spec["interval"] = json!("1s");
    let prom = &mut spec["metrics"]["prometheus"];
    prom["address"] = json!(prometheus);
    prom["labels"]["namespace"] = json!(namespace);
    // Only the Redis host's plaintext port is this machine's: nothing may answer there.
    spec["gates"]["redis"]["plaintextPort"] = json!(plaintext_port);
    // The pods share one test host, a port each: the probes find theirs by port name.
    for probe in ["replayProtection", "rateLimit"] {
        let p = spec["gates"][probe]["probe"].as_object_mut().unwrap();
        p.remove("port");
        p.insert("portName".into(), json!("http"));
    }
    for criterion in spec["rollback"].as_array_mut().unwrap() {
        let minutes = criterion["for"]
            .as_str()
            .unwrap()
            .trim_end_matches('m')
            .parse::<u64>()
            .unwrap();
        criterion["for"] = json!(format!("{minutes}s"));
    }
    spec["postPromotion"]["watch"] = json!("3s");
    spec
}

/// Webhook posts a local receiver got, per sink name (the URL's last segment).
#[derive(Clone, Default)]
struct Webhooks(Arc<std::sync::Mutex<Vec<(String, Value)>>>);

impl Webhooks {
    async fn start(&self) -> std::net::SocketAddr {
        use axum::extract::{Path, State};
        let app = axum::Router::new()
            .route(
                "/hooks/{sink}",
                axum::routing::post(
                    |State(w): State<Webhooks>, Path(sink): Path<String>, body: String| async move {
                        w.0.lock()
                            .unwrap()
                            .push((sink, serde_json::from_str(&body).unwrap_or(Value::Null)));
                        "ok"
                    },
                ),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn count(&self, sink: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|(s, _)| s == sink).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_runbook_promotes_a_healthy_canary_with_every_gate_green() {
    // Redis as the runbook wants it: TLS, AUTH, one replica; holding data, as a production
    // Redis does (a nearly empty one reports a meaningless fragmentation ratio).
    let (redis, _replica, tls) = tokio::task::spawn_blocking(|| {
        let tls = TlsFiles::generate().unwrap();
        let options = RedisOptions {
            password: Some(REDIS_PASSWORD.into()),
            tls: Some(tls.clone()),
            replica_of: None,
        };
        let primary = RedisServer::start(options.clone()).unwrap();
        let replica = RedisServer::start(RedisOptions {
            replica_of: Some(primary.port()),
            ..options
        })
        .unwrap();
        for batch in 0..8 {
            let prefix = format!("ballast:{batch}:");
            let fill = "for i = 1, 4000 do redis.call('SET', KEYS[1] .. i, string.rep('x', 1000)) end";
            primary.cli(&["EVAL", fill, "1", &prefix]).unwrap();
        }
        (primary, replica, tls)
    })
    .await
    .unwrap();
    let idp = Arc::new(Idp::start(vec![SigningKey::generate("k1", jsonwebtoken::Algorithm::RS256)]).await);
    idp.register_client(PROBE_CLIENT, PROBE_SECRET, json!({}));
    let model = ModelStandIn::start().await.unwrap();
    let database_url = Postgres::shared().fresh_database();
    let host = Arc::new(TestHost::create().unwrap());

    let mut flags: Vec<String> = [
        "--database-url",
        &database_url,
        "--redis-url",
        &redis.url(),
        "--openai-base-url",
        &model.base_url(),
        "--tester-token",
        TESTER_TOKEN,
        "--db-max-connections",
        "8",
        // A small catalogue budget, so the cross-pod burst spends one window quickly.
        "--rate-limits",
        "catalogue=12/5s,applications=10/1m,default=60/1m",
    ]
    .map(str::to_owned)
    .to_vec();
    // The students' proxy is the test host's peer.
    flags.push("--trusted-proxies".into());
    flags.push(format!("{}/32", host.peer_address()));
    flags.push("--redis-ca-file".into());
    flags.push(tls.ca_cert.display().to_string());
    flags.extend(idp.flags());
    let (a, b, stable) = futures::join!(
        ApiPod::start(&host, "canary", &flags),
        ApiPod::start(&host, "canary", &flags),
        ApiPod::start(&host, "stable", &flags)
    );
    let targets: Vec<String> = [&a, &b, &stable]
        .iter()
        .map(|p| format!("{}:{}", p.ip, p.port))
        .collect();

    let cluster = Cluster::start().await;
    let prometheus = {
        let namespace = cluster.ns.clone();
        tokio::task::spawn_blocking(move || {
            Prometheus::start_labelled(&targets, Duration::from_secs(1), &[("namespace", &namespace)])
        })
        .await
        .unwrap()
        .unwrap()
    };
    let webhooks = Webhooks::default();
    let receiver = webhooks.start().await;

    cluster.grant_secret_reads().await;
    cluster.create_deployment("scholarship-api", OLD_IMAGE, 3).await;
    cluster.create_deployment("scholarship-api-canary", NEW_IMAGE, 2).await;
    cluster.create_canary_ingress("scholarship-api-canary").await;
    cluster
        .create_endpoint_slices_for("scholarship-api-canary", "http", &[(a.ip, a.port), (b.ip, b.port)])
        .await;
    cluster
        .create_endpoint_slices_for("scholarship-api", "http", &[(stable.ip, stable.port)])
        .await;
    let ca = std::fs::read_to_string(&tls.ca_cert).unwrap();
    cluster
        .create_secret("redis-credentials", &[("url", &redis.url()), ("ca.crt", &ca)])
        .await;
    cluster
        .create_secret(
            "canary-probe-client",
            &[
                ("tokenUrl", &idp.token_url),
                ("clientId", PROBE_CLIENT),
                ("clientSecret", PROBE_SECRET),
                ("testerToken", TESTER_TOKEN),
            ],
        )
        .await;
    for (secret, sink) in [("canary-slack-webhook", "slack"), ("canary-audit-webhook", "audit")] {
        let url = format!("http://{receiver}/hooks/{sink}");
        cluster.create_secret(secret, &[("url", &url)]).await;
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let failed = students(
        vec![a.url(), b.url(), a.url(), b.url(), stable.url()],
        Some(idp.clone()),
        stopped,
    );
    // A metric window of 10 s: the example's minSamples (100 canary requests) at this load.
    let mut settings = settings(&cluster.ns, None);
    settings.min_window = Duration::from_secs(10);
    let operator = InProcess::start_with(&cluster, settings).await;
    let spec = runbook_spec(&prometheus.url(), &cluster.ns, testkit::free_port());
    cluster.create_cp("scholarship-api", spec).await;

    // Every gate of the runbook green at once, each with a value.
    let all_green = eventually(Duration::from_secs(90), "every gate passing", || async {
        let status = cluster.status("scholarship-api").await;
        let rows = status["gates"].as_array()?;
        (!rows.is_empty() && rows.iter().all(|g| g["state"] == "Passing")).then_some(status)
    })
    .await;
    let names: Vec<&str> = all_green["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    eprintln!("every gate passing: {}", all_green["gatesSummary"]);
    for gate in [
        "sli.availability",
        "sli.p95LatencyMs",
        "sli.errorRate5xx",
        "sli.rateLimited429",
        "sli.openaiFallbackRate",
        "sli.dbPoolUtilization",
        "sli.redisP95LatencyMs",
        "redis.tls",
        "redis.auth",
        "redis.replica",
        "redis.p95LatencyMs",
        "redis.fragmentationRatio",
        "redis.evictedKeys",
        "redis.maxmemoryPolicy",
        "redis.plaintextRefused",
        "redis.limiterErrors",
        "replayProtection.crossPod",
        "rateLimit.crossPod",
        "custom.redis-disconnected-pods",
    ] {
        assert!(names.contains(&gate), "{gate} missing from {names:?}");
    }

    let status = cluster
        .wait_phase("scholarship-api", "Promoted", Duration::from_secs(120))
        .await;
    let _ = stop.send(true);
    assert_eq!(cluster.image("scholarship-api").await, NEW_IMAGE, "{status}");
    assert_eq!(status["weight"], 0, "{status}");
    // The model answered (no fallback), the students were never refused or failed.
    assert!(model.answered() > 0, "the model was never asked");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "students' requests failed: {status}");
    // Both webhooks heard the transitions.
    assert!(webhooks.count("slack") >= 2 && webhooks.count("audit") >= 2, "{status}");
    operator.shutdown().await;
}

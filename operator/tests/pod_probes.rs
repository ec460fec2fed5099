//! The replay-protection and rate-limit gates against real `scholarship-api` processes. Each
//! "pod" is the real binary, handed a listening socket bound in a test host's network
//! namespace (socket activation), so its EndpointSlice lists a pod-like address the real
//! kube-apiserver accepts, while the process still reaches PostgreSQL, Redis and the IdP
//! stand-in on loopback. The pods of one test share one host (one address, a port each), so
//! the operator reaches them all from one source address, as it would in a cluster. The
//! replay probe's token comes from the IdP's client credentials endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::api_pod::ApiPod;
use common::*;
use kube::api::Api;
use serde_json::{Value, json};
use testkit::idp::{Idp, SigningKey};
use testkit::{Postgres, RedisOptions, RedisServer, TestHost};

const PROBE_CLIENT: &str = "canary-probe";
const PROBE_SECRET: &str = "probe-client-secret";
const TESTER_TOKEN: &str = "tester-token-for-probes";
/// A made-up application id: the accepted probe gets a 404, which is past authentication.
const PROBE_PATH: &str = "/api/v1/applications/00000000-0000-0000-0000-000000000000";

/// The catalogue's budget in these tests: small, so a burst exhausts it quickly, per 5 s, so
/// the next step's burst finds a fresh window soon.
const CATALOGUE_LIMIT: u32 = 12;

/// A canary pod of these tests: its database and Redis, trusting the IdP, with the tester
/// token and a small catalogue budget; `extra` flags last.
async fn api_pod(host: &Arc<TestHost>, database_url: &str, redis: &RedisServer, idp: &Idp, extra: &[&str]) -> ApiPod {
    let mut flags: Vec<String> = ["--database-url", database_url, "--redis-url", &redis.url()]
        .map(str::to_owned)
        .to_vec();
    flags.extend(idp.flags());
    flags.extend(["--tester-token", TESTER_TOKEN, "--db-max-connections", "4"].map(str::to_owned));
    flags.push("--rate-limits".into());
    flags.push(format!(
        "catalogue={CATALOGUE_LIMIT}/5s,applications=10/1m,default=60/1m"
    ));
    flags.extend(extra.iter().map(|f| (*f).to_owned()));
    ApiPod::start(host, "canary", &flags).await
}

/// The scene: Deployments, the probe's Secret, and one EndpointSlice per pod (port `http`).
async fn scene(cluster: &Cluster, idp: &Idp, canary: &[&ApiPod], stable: &[&ApiPod]) {
    cluster.grant_secret_reads().await;
    cluster.create_deployment("api", OLD_IMAGE, 2).await;
    cluster.create_deployment("api-canary", OLD_IMAGE, 0).await;
    cluster
        .create_secret(
            "probe-client",
            &[
                ("tokenUrl", &idp.token_url),
                ("clientId", PROBE_CLIENT),
                ("clientSecret", PROBE_SECRET),
                ("testerToken", TESTER_TOKEN),
            ],
        )
        .await;
    for (service, pods) in [("api-canary", canary), ("api", stable)] {
        let addresses: Vec<_> = pods.iter().map(|p| (p.ip, p.port)).collect();
        cluster.create_endpoint_slices_for(service, "http", &addresses).await;
    }
}

/// Two steps gated by the pod probes only (metrics scraped from the same real pods).
fn probes_spec() -> Value {
    json!({
        "stable": {"deployment": "api"},
        "canary": {"deployment": "api-canary", "image": NEW_IMAGE},
        "traffic": {"replicas": {}},
        "steps": [{"weight": 50, "bake": "3s"}, {"weight": 100, "bake": "1s"}],
        "interval": "1s",
        "metrics": {"scrape": {"portName": "http"}},
        "gates": {
            "replayProtection": {"probe": {"secretRef": "probe-client", "path": PROBE_PATH, "portName": "http"}},
            "rateLimit": {"probe": {"secretRef": "probe-client", "path": "/api/v1/scholarships?page_size=1",
                                    "portName": "http", "maxRequests": 40}}
        }
    })
}

struct Services {
    database_url: String,
    idp: Idp,
    /// Where this test's pods listen.
    host: Arc<TestHost>,
}

async fn services() -> Services {
    let idp = Idp::start(vec![SigningKey::generate("k1", jsonwebtoken::Algorithm::RS256)]).await;
    idp.register_client(PROBE_CLIENT, PROBE_SECRET, json!({}));
    Services {
        database_url: Postgres::shared().fresh_database(),
        idp,
        host: Arc::new(TestHost::create().unwrap()),
    }
}

const REPLAY: &str = "replayProtection.crossPod";
const RATE_LIMIT: &str = "rateLimit.crossPod";

/// A gate's status row, once it reads `state`.
async fn gate_row(cluster: &Cluster, gate: &str, state: &str) -> Value {
    eventually(Duration::from_secs(30), &format!("{gate} reads {state}"), || async {
        let status = cluster.status("probes").await;
        status["gates"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == gate && g["state"] == state)
            .cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_protection_and_the_rate_limit_shared_by_two_canary_pods_pass_and_the_canary_is_promoted() {
    let s = services().await;
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let (a, b) = futures::join!(
        api_pod(&s.host, &s.database_url, &redis, &s.idp, &[]),
        api_pod(&s.host, &s.database_url, &redis, &s.idp, &[])
    );
    let stable = api_pod(&s.host, &s.database_url, &redis, &s.idp, &[]).await;
    let cluster = Cluster::start().await;
    scene(&cluster, &s.idp, &[&a, &b], &[&stable]).await;
    let operator = InProcess::start(&cluster).await;
    cluster.create_cp("probes", probes_spec()).await;

    let row = gate_row(&cluster, REPLAY, "Passing").await;
    let message = row["message"].as_str().unwrap_or_default();
    assert_eq!(row["value"], 1.0, "{row}");
    assert!(
        message.contains("canary pod") && message.contains("refused the replay as token_replayed"),
        "{row}"
    );
    assert!(!message.contains("stable pod"), "two canary pods, no stable one: {row}");
    // The first step's burst spends the catalogue's fresh window across both pods.
    let row = gate_row(&cluster, RATE_LIMIT, "Passing").await;
    let message = row["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "{CATALOGUE_LIMIT} of {} requests allowed",
            CATALOGUE_LIMIT + 4
        )),
        "{row}"
    );
    let status = cluster.wait_phase("probes", "Promoted", Duration::from_secs(60)).await;
    assert_eq!(cluster.image("api").await, NEW_IMAGE, "{status}");

    // Every probe: one token, one acceptance and one refusal, counted by the refusing pod,
    // and both requests are tester traffic.
    let tokens = s.idp.tokens_issued() as f64;
    let replays = a.counter("jwt_replay_prevented_total", "").await + b.counter("jwt_replay_prevented_total", "").await;
    assert!(tokens >= 2.0, "one token per evaluation: {tokens}");
    assert!(
        replays >= tokens - 1.0 && replays <= tokens,
        "{replays} replays refused for {tokens} tokens"
    );
    let tester = a.counter("ratelimit_decisions_total", "principal=\"tester\"").await
        + b.counter("ratelimit_decisions_total", "principal=\"tester\"").await;
    let users = a.counter("ratelimit_decisions_total", "principal=\"user\"").await
        + b.counter("ratelimit_decisions_total", "principal=\"user\"").await;
    assert!(tester >= tokens - 1.0 && users == 0.0, "tester {tester}, user {users}");
    // One conclusive burst per step (two steps), each stopping after four refusals; a burst
    // into a window the last one spent stops at its first refusal.
    let limited = a.counter("ratelimit_decisions_total", "decision=\"limited\"").await
        + b.counter("ratelimit_decisions_total", "decision=\"limited\"").await;
    assert!((8.0..=16.0).contains(&limited), "{limited} refusals");
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_with_replay_protection_off_fails_the_gate_and_never_advances() {
    let s = services().await;
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let off = ["--single-use-endpoints", "none"];
    let (a, b) = futures::join!(
        api_pod(&s.host, &s.database_url, &redis, &s.idp, &off),
        api_pod(&s.host, &s.database_url, &redis, &s.idp, &off)
    );
    let cluster = Cluster::start().await;
    scene(&cluster, &s.idp, &[&a, &b], &[]).await;
    let operator = InProcess::start(&cluster).await;
    cluster.create_cp("probes", probes_spec()).await;

    let row = gate_row(&cluster, REPLAY, "Failing").await;
    assert_eq!(row["value"], 0.0, "{row}");
    assert!(
        row["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("both pods accepted the same token"),
        "{row}"
    );
    // Longer than the first bake: still at the first step.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = cluster.status("probes").await;
    assert_eq!(status["phase"], "Progressing", "{status}");
    assert_eq!(
        (&status["currentStep"], &status["weight"]),
        (&json!(1), &json!(50)),
        "{status}"
    );
    assert_eq!(status["failingGate"], "replayProtection.crossPod", "{status}");
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_on_its_own_redis_fails_both_gates_against_a_stable_pod() {
    let s = services().await;
    let (shared, separate) = (
        RedisServer::start(RedisOptions::default()).unwrap(),
        RedisServer::start(RedisOptions::default()).unwrap(),
    );
    // One canary pod: the probe pairs it with a stable pod, and they do not share Redis.
    let (canary, stable) = futures::join!(
        api_pod(&s.host, &s.database_url, &separate, &s.idp, &[]),
        api_pod(&s.host, &s.database_url, &shared, &s.idp, &[])
    );
    let cluster = Cluster::start().await;
    scene(&cluster, &s.idp, &[&canary], &[&stable]).await;
    let operator = InProcess::start(&cluster).await;
    cluster.create_cp("probes", probes_spec()).await;

    let row = gate_row(&cluster, REPLAY, "Failing").await;
    let message = row["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("both pods accepted the same token") && message.contains("stable pod"),
        "{row}"
    );
    // Each pod counts its own budget: twice the policy gets through.
    let row = gate_row(&cluster, RATE_LIMIT, "Failing").await;
    let message = row["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{} requests allowed", 2 * CATALOGUE_LIMIT))
            && message.contains("do not share one budget"),
        "{row}"
    );
    // An unreadable probe Secret is an Error row that names it, never a silent hold.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(cluster.client.clone(), &cluster.ns);
    secrets.delete("probe-client", &Default::default()).await.unwrap();
    let row = gate_row(&cluster, REPLAY, "Error").await;
    assert!(
        row["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/probe-client not found"),
        "{row}"
    );
    // ...and a condition naming the field, with one Warning event however many intervals pass.
    let status = cluster.status("probes").await;
    let resolved = condition(&status, "ReferencesResolved");
    assert_eq!(
        (&resolved["status"], &resolved["reason"]),
        (&json!("False"), &json!("ProbeSecretUnresolved")),
        "{status}"
    );
    assert!(
        resolved["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("spec.gates.replayProtection.probe.secretRef: secret "),
        "{resolved}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let warnings = cluster.event_reasons("probes").await;
    assert_eq!(
        warnings.iter().filter(|r| *r == "ProbeSecretUnresolved").count(),
        1,
        "{warnings:?}"
    );
    operator.shutdown().await;
}

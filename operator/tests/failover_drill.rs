//! The Redis failover drill against real parts: a Redis primary with a replica and three
//! Sentinels, two canary pods (real `scholarship-api` processes at pod addresses) under
//! students' load, metrics scraped from the pods. The operator fails Redis over at the drill
//! step: canary pods that follow the Sentinels ride it out and the drill passes; pods that
//! only know the old primary's address cannot follow (their limiter's writes now hit a
//! replica) and the drill fails, naming the limiter errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api_pod::{ApiPod, students};
use common::*;
use serde_json::{Value, json};
use testkit::{Postgres, RedisOptions, RedisServer, Sentinel, TestHost};

const PASSWORD: &str = "drill-s3cret";
const MASTER: &str = "primary";

struct Redis {
    primary: RedisServer,
    _replica: RedisServer,
    sentinels: Vec<Sentinel>,
}

impl Redis {
    fn start() -> Redis {
        let options = RedisOptions {
            password: Some(PASSWORD.into()),
            ..Default::default()
        };
        let primary = RedisServer::start(options.clone()).unwrap();
        let replica = RedisServer::start(RedisOptions {
            replica_of: Some(primary.port()),
            ..options
        })
        .unwrap();
        let sentinels = (0..3)
            .map(|_| Sentinel::start(MASTER, primary.port(), 2, Some(PASSWORD)).unwrap())
            .collect();
        Redis {
            primary,
            _replica: replica,
            sentinels,
        }
    }

    fn sentinel_list(&self) -> String {
        let addresses: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        addresses.join(",")
    }

    /// Waits until the Sentinels know the replica (a failover needs one to promote).
    async fn ready_for_failover(&self) {
        eventually(Duration::from_secs(30), "the Sentinels to know the replica", || async {
            let replicas = self.sentinels[0]
                .cli(&["SENTINEL", "replicas", MASTER])
                .unwrap_or_default();
            replicas.contains("slave").then_some(())
        })
        .await;
    }
}

/// Two steps, the first with the drill (12 s window); gates read from the pods themselves.
fn drill_spec() -> Value {
    json!({
        "stable": {"deployment": "api"},
        "canary": {"deployment": "api-canary", "image": NEW_IMAGE},
        "traffic": {"replicas": {}},
        "steps": [{"weight": 50, "bake": "2s", "redisFailoverDrill": true}, {"weight": 100, "bake": "1s"}],
        "interval": "1s",
        "metrics": {"scrape": {"portName": "http"}},
        "gates": {
            "sli": {"errorRate5xx": "<= 0.005", "p95LatencyMs": "<= 500", "minSamples": 5},
            "redis": {"secretRef": "redis-credentials", "failoverDrill": {"window": "12s"}}
        }
    })
}

/// Runs the drill with canary pods that follow the Sentinels or only know the primary's URL;
/// returns the drill's status row once judged, the promotion's status, and how long from the
/// failover to the verdict.
async fn drill_with(follow_sentinels: bool) -> (Value, Value, Duration) {
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let database_url = Postgres::shared().fresh_database();
    let host = Arc::new(TestHost::create().unwrap());
    let mut flags: Vec<String> = [
        "--database-url",
        &database_url,
        "--redis-url",
        &redis.primary.url(),
        "--insecure-no-auth",
        "--db-max-connections",
        "4",
    ]
    .map(str::to_owned)
    .to_vec();
    // The students' proxy is the test host's peer.
    flags.extend(["--trusted-proxies".to_owned(), format!("{}/32", host.peer_address())]);
    if follow_sentinels {
        flags.extend(["--redis-sentinels".to_owned(), redis.sentinel_list()]);
        flags.extend(["--redis-master-name".to_owned(), MASTER.to_owned()]);
    }
    let (a, b) = futures::join!(
        ApiPod::start(&host, "canary", &flags),
        ApiPod::start(&host, "canary", &flags)
    );
    redis.ready_for_failover().await;

    let cluster = Cluster::start().await;
    cluster.grant_secret_reads().await;
    cluster.create_deployment("api", OLD_IMAGE, 2).await;
    cluster.create_deployment("api-canary", OLD_IMAGE, 0).await;
    cluster
        .create_endpoint_slices_for("api-canary", "http", &[(a.ip, a.port), (b.ip, b.port)])
        .await;
    cluster
        .create_secret(
            "redis-credentials",
            &[
                ("url", &redis.primary.url()),
                ("sentinels", &redis.sentinel_list()),
                ("masterName", MASTER),
            ],
        )
        .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let failed = students(vec![a.url(), b.url()], None, stopped);
    let operator = InProcess::start(&cluster).await;
    cluster.create_cp("drill", drill_spec()).await;

    let failed_over = eventually(Duration::from_secs(60), "the drill's failover", || async {
        let status = cluster.status("drill").await;
        status["drill"]["failedOverAt"].is_string().then_some(Instant::now())
    })
    .await;
    let (row, status) = eventually(Duration::from_secs(60), "the drill's verdict", || async {
        let status = cluster.status("drill").await;
        let row = status["gates"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == "redis.failoverDrill" && g["value"].is_number())
            .cloned()?;
        Some((row, status))
    })
    .await;
    let took = failed_over.elapsed();
    let _ = stop.send(true);
    operator.shutdown().await;
    // Degraded open: not one student saw an error either way.
    assert_eq!(failed.load(std::sync::atomic::Ordering::Relaxed), 0, "{status}");
    (row, status, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canary_pods_that_follow_the_sentinels_pass_the_failover_drill() {
    let (row, status, took) = drill_with(true).await;
    eprintln!("drill verdict {took:?} after the failover: {row}");
    assert_eq!(
        (&row["state"], &row["value"]),
        (&json!("Passing"), &json!(1.0)),
        "{status}"
    );
    let message = row["message"].as_str().unwrap_or_default();
    assert!(message.contains("5xx ratio at most 0 after it"), "{message}");
    let drill = &status["drill"];
    assert_eq!(drill["result"], "Passed", "{status}");
    assert_ne!(
        drill["from"], drill["to"],
        "the Sentinels named a new primary: {status}"
    );
    assert!(drill["to"].is_string(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canary_pods_that_cannot_follow_the_failover_fail_the_drill() {
    let (row, status, took) = drill_with(false).await;
    eprintln!("drill verdict {took:?} after the failover: {row}");
    assert_eq!(
        (&row["state"], &row["value"]),
        (&json!("Failing"), &json!(0.0)),
        "{status}"
    );
    let message = row["message"].as_str().unwrap_or_default();
    assert!(message.contains("limiter errors did not return to zero"), "{message}");
    assert_eq!(status["drill"]["result"], "Failed", "{status}");
    assert_eq!(status["currentStep"], 1, "a failed drill holds the step: {status}");
}

//! The controller on a real kube-apiserver (or a cluster of yours, see `common`), with a
//! scripted Prometheus: promotion, rollback, invalid references, deletion mid-flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use canary_operator::provider::{Sli, Track};
use common::*;
use serde_json::{Value, json};

/// Every test bounds its own time.
const LIMIT: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_full_promotion() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_nginx_scene().await;
        let op = InProcess::start(&c).await;
        c.create_cp("promo", spec(nginx(), &prom.address, "2s", "3s")).await;

        // Watch the weights the router carries on the way.
        let mut seen = Vec::new();
        let started = Instant::now();
        loop {
            if let Some(w) = c.ingress_weight("api-canary").await
                && seen.last() != Some(&w)
            {
                seen.push(w);
            }
            let s = c.status("promo").await;
            if s["phase"] == "Promoted" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(40), "not promoted in time: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let s = c.status("promo").await;
        assert_eq!(s["weight"], 0);
        assert_eq!(s["stepLabel"], "3/3");
        assert_eq!(s["gatesSummary"], "4/4");
        assert_eq!(c.image("api").await, NEW_IMAGE, "stable runs the canary image");
        assert_eq!(c.ingress_weight("api-canary").await.as_deref(), Some("0"));
        for w in ["10", "50", "100"] {
            assert!(seen.iter().any(|s| s == w), "weight {w} never applied: {seen:?}");
        }
        let conditions = s["conditions"].as_array().unwrap();
        let promoted = conditions.iter().find(|c| c["type"] == "Promoted").unwrap();
        assert_eq!(promoted["status"], "True");
        let resolved = conditions.iter().find(|c| c["type"] == "ReferencesResolved").unwrap();
        assert_eq!(resolved["status"], "True");
        let reasons = eventually(Duration::from_secs(5), "Promoted event", || async {
            let r = c.event_reasons("promo").await;
            r.iter().any(|x| x == "Promoted").then_some(r)
        })
        .await;
        for r in ["Started", "StepAdvanced", "Promoting", "Promoted"] {
            assert!(reasons.iter().any(|x| x == r), "no {r} event in {reasons:?}");
        }
        let cp = c.cp("promo").await.unwrap();
        assert!(
            cp.metadata
                .finalizers
                .unwrap_or_default()
                .iter()
                .any(|f| f == "scholarship.dev/restore-stable")
        );
        op.shutdown().await;
    })
    .await;
}

/// `spec.paused` edited with kubectl semantics (a merge patch: a new generation): the pause
/// holds the current step and weight, the resume carries on from that step; neither starts
/// the release again from step 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_keep_the_step_across_generations() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_nginx_scene().await;
        let _op = InProcess::start(&c).await;
        c.create_cp("promo", spec(nginx(), &prom.address, "2s", "1m")).await;
        eventually(LIMIT, "step 2", || async {
            let s = c.status("promo").await;
            (s["currentStep"] == 2).then_some(())
        })
        .await;
        let pause = |paused: bool| {
            let c = &c;
            async move {
                c.cps()
                    .patch(
                        "promo",
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(json!({"spec": {"paused": paused}})),
                    )
                    .await
                    .unwrap();
            }
        };
        pause(true).await;
        let s = c.wait_phase("promo", "Paused", LIMIT).await;
        assert_eq!((&s["currentStep"], &s["weight"]), (&json!(2), &json!(50)), "{s}");
        // Paused for longer than a bake: still step 2, the ingress still at 50.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s = c.status("promo").await;
        assert_eq!((&s["phase"], &s["currentStep"]), (&json!("Paused"), &json!(2)), "{s}");
        assert_eq!(c.ingress_weight("api-canary").await.as_deref(), Some("50"));
        pause(false).await;
        let s = c.wait_phase("promo", "Promoted", LIMIT).await;
        assert_eq!(s["observedGeneration"], 3, "{s}");
        let reasons = c.event_reasons("promo").await;
        assert!(
            reasons.iter().any(|r| r == "Paused") && reasons.iter().any(|r| r == "Resumed"),
            "{reasons:?}"
        );
        assert_eq!(
            reasons.iter().filter(|r| *r == "Started").count(),
            1,
            "never started again: {reasons:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_when_a_criterion_holds_for_its_window() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_nginx_scene().await;
        let op = InProcess::start(&c).await;
        c.create_cp("promo", spec(nginx(), &prom.address, "1h", "2s")).await;
        eventually(LIMIT, "weight 10", || async {
            (c.ingress_weight("api-canary").await.as_deref() == Some("10")).then_some(())
        })
        .await;
        // Let a few green evaluations pass, then breach p95 latency.
        tokio::time::sleep(Duration::from_secs(2)).await;
        prom.set(Sli::P95LatencyMs, Some(300.0));
        let breach = Instant::now();
        eventually(LIMIT, "weight 0", || async {
            (c.ingress_weight("api-canary").await.as_deref() == Some("0")).then_some(())
        })
        .await;
        let elapsed = breach.elapsed();
        // Visible at the next evaluation (≤ 1 interval), then held for `for` (2 s).
        assert!(
            elapsed >= Duration::from_secs(2),
            "rolled back before the window: {elapsed:?}"
        );
        assert!(elapsed <= Duration::from_secs(5), "rollback too slow: {elapsed:?}");
        eprintln!("breach visible → weight 0: {elapsed:?} (for = 2s, interval = 1s)");
        let s = c.wait_phase("promo", "RolledBack", Duration::from_secs(5)).await;
        let rb = condition(&s, "RolledBack");
        assert_eq!(rb["status"], "True");
        assert_eq!(rb["reason"], "RollbackCriterion");
        assert!(
            s["message"].as_str().unwrap().contains("p95LatencyMs 300 > 250 for 2s"),
            "{s}"
        );
        assert_eq!(c.image("api").await, OLD_IMAGE);
        let reasons = eventually(Duration::from_secs(5), "RolledBack event", || async {
            let r = c.event_reasons("promo").await;
            r.iter().any(|x| x == "RolledBack").then_some(r)
        })
        .await;
        assert!(reasons.iter().any(|r| r == "RollbackStarted"), "{reasons:?}");
        assert!(reasons.iter().any(|r| r == "RolledBack"), "{reasons:?}");
        // A gate failing too: the p95 gate went Failing with an event.
        assert!(reasons.iter().any(|r| r == "GateFailing"), "{reasons:?}");
        op.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_deployment_gets_a_condition_and_recovers() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_deployment("api", OLD_IMAGE, 2).await;
        c.create_canary_ingress("api-canary").await;
        let op = InProcess::start(&c).await;
        c.create_cp("promo", spec(nginx(), &prom.address, "1h", "1m")).await;
        let s = eventually(LIMIT, "ReferencesResolved=False", || async {
            let s = c.cp("promo").await?.status?;
            let cond = s.conditions.iter().find(|c| c.type_ == "ReferencesResolved")?.clone();
            (cond.status == canary_core::ConditionStatus::False).then_some((s, cond))
        })
        .await;
        assert_eq!(s.1.reason, "DeploymentNotFound");
        assert!(s.1.message.contains("api-canary"), "{}", s.1.message);
        assert!(s.0.message.contains("not found"), "{}", s.0.message);
        let reasons = eventually(Duration::from_secs(5), "DeploymentNotFound event", || async {
            let r = c.event_reasons("promo").await;
            r.iter().any(|x| x == "DeploymentNotFound").then_some(r)
        })
        .await;
        assert_eq!(
            reasons.iter().filter(|r| *r == "DeploymentNotFound").count(),
            1,
            "not hot-looped: {reasons:?}"
        );
        // Creating the Deployment is a change the controller watches: it starts.
        c.create_deployment("api-canary", NEW_IMAGE, 1).await;
        let s = c.wait_phase("promo", "Progressing", Duration::from_secs(10)).await;
        let resolved = condition(&s, "ReferencesResolved");
        assert_eq!(resolved["status"], "True");
        op.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_mid_flight_restores_stable() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_nginx_scene().await;
        let op = InProcess::start(&c).await;
        c.create_cp("promo", spec(nginx(), &prom.address, "1h", "1m")).await;
        eventually(LIMIT, "weight 10", || async {
            (c.ingress_weight("api-canary").await.as_deref() == Some("10")).then_some(())
        })
        .await;
        c.delete_cp("promo").await;
        eventually(Duration::from_secs(10), "the object to go", || async {
            c.cp("promo").await.is_none().then_some(())
        })
        .await;
        assert_eq!(c.ingress_weight("api-canary").await.as_deref(), Some("0"));
        assert_eq!(c.image("api").await, OLD_IMAGE);
        op.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_holds_the_step() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        prom.set_samples(None);
        c.create_nginx_scene().await;
        let op = InProcess::start(&c).await;
        c.create_cp("promo", spec(nginx(), &prom.address, "1s", "1m")).await;
        c.wait_phase("promo", "Progressing", Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let s = c.status("promo").await;
        assert_eq!(s["currentStep"], 1, "no data must hold the step: {s}");
        assert_eq!(s["gates"][0]["state"], "NoData", "{s}");
        // Data arrives: it advances.
        prom.set_samples(Some(1000.0));
        eventually(Duration::from_secs(15), "step 2", || async {
            (c.status("promo").await["currentStep"] == 2).then_some(())
        })
        .await;
        let _ = json!({});
        op.shutdown().await;
    })
    .await;
}

async fn promote_and_wait(
    c: &Cluster,
    prom: &ScriptedProm,
    traffic: serde_json::Value,
) -> (serde_json::Value, InProcess) {
    let op = InProcess::start(c).await;
    c.create_cp("promo", spec(traffic, &prom.address, "1s", "3s")).await;
    let s = c.wait_phase("promo", "Promoted", Duration::from_secs(40)).await;
    assert_eq!(c.image("api").await, NEW_IMAGE, "stable runs the canary image");
    (s, op)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_full_promotion() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_deployment("api", OLD_IMAGE, 2).await;
        c.create_deployment("api-canary", NEW_IMAGE, 1).await;
        let ar = canary_operator::router::gateway_http_route_resource();
        let routes: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(c.client.clone(), &c.ns, &ar);
        let route: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "api"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
                {"name": "api", "port": 80, "weight": 100}, {"name": "api-canary", "port": 80, "weight": 0}]}]}
        }))
        .unwrap();
        routes.create(&Default::default(), &route).await.unwrap();
        let weights = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::new()));
        let (w, r) = (weights.clone(), routes.clone());
        let sampler = tokio::spawn(async move {
            loop {
                if let Ok(route) = r.get("api").await {
                    let refs = &route.data["spec"]["rules"][0]["backendRefs"];
                    let pair = (
                        refs[0]["weight"].as_u64().unwrap_or(0),
                        refs[1]["weight"].as_u64().unwrap_or(0),
                    );
                    let mut w = w.lock().unwrap();
                    if w.last() != Some(&pair) {
                        w.push(pair);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let traffic =
            json!({"gatewayApi": {"httpRoute": "api", "stableBackend": "api", "canaryBackend": "api-canary"}});
        let (s, op) = promote_and_wait(&c, &prom, traffic).await;
        op.shutdown().await;
        sampler.abort();
        assert_eq!(s["weight"], 0);
        // The sampler may have stopped between the last route write and its next poll.
        let route = routes.get("api").await.unwrap();
        let refs = &route.data["spec"]["rules"][0]["backendRefs"];
        let last = (
            refs[0]["weight"].as_u64().unwrap_or(0),
            refs[1]["weight"].as_u64().unwrap_or(0),
        );
        let mut seen = weights.lock().unwrap().clone();
        if seen.last() != Some(&last) {
            seen.push(last);
        }
        for pair in [(90, 10), (50, 50), (0, 100)] {
            assert!(seen.contains(&pair), "{pair:?} never applied: {seen:?}");
        }
        assert_eq!(seen.last(), Some(&(100, 0)), "{seen:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_ratio_full_promotion() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_deployment("api", OLD_IMAGE, 4).await;
        c.create_deployment("api-canary", NEW_IMAGE, 0).await;
        let replicas = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i32, i32)>::new()));
        let (rs, deployments) = (replicas.clone(), c.deployments());
        let sampler = tokio::spawn(async move {
            loop {
                let ready = |d: &k8s_openapi::api::apps::v1::Deployment| {
                    d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
                };
                if let (Ok(s), Ok(k)) = (deployments.get("api").await, deployments.get("api-canary").await) {
                    let pair = (ready(&s), ready(&k));
                    let mut rs = rs.lock().unwrap();
                    if rs.last() != Some(&pair) {
                        rs.push(pair);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let (_, op) = promote_and_wait(&c, &prom, json!({"replicas": {}})).await;
        // Promoted once stable runs the image; the canary leaves once stable is ready again.
        eventually(Duration::from_secs(10), "weight 0", || async {
            (c.status("promo").await["weight"] == 0).then_some(())
        })
        .await;
        op.shutdown().await;
        sampler.abort();
        let seen = replicas.lock().unwrap().clone();
        // 10 % of 4 → 1 canary + 3 stable; 50 % → 2 + 2; 100 % → 4 canary.
        for pair in [(3, 1), (2, 2), (0, 4)] {
            assert!(seen.contains(&pair), "{pair:?} never reached: {seen:?}");
        }
        // Ready capacity never dropped below the stable's original 4 replicas.
        assert!(seen.iter().skip(1).all(|(s, k)| s + k >= 4), "{seen:?}");
        let stable = c.deployments().get("api").await.unwrap();
        let canary = c.deployments().get("api-canary").await.unwrap();
        assert_eq!(stable.spec.unwrap().replicas, Some(4));
        assert_eq!(canary.spec.unwrap().replicas, Some(0));
    })
    .await;
}

/// Direct scrape (no Prometheus): two canary pods' `/metrics`, found through EndpointSlices
/// of the canary Service (defaulting to the canary Deployment's name), judged from counter
/// deltas between scrapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_scrape_promotes() {
    bounded(async {
        let c = Cluster::start().await;
        let (a, b) = (FakePod::start(200).await, FakePod::start(200).await);
        c.create_endpoint_slices("api-canary", &[&a, &b]).await;
        c.create_deployment("api", OLD_IMAGE, 2).await;
        c.create_deployment("api-canary", NEW_IMAGE, 2).await;
        c.create_canary_ingress("api-canary").await;
        let op = InProcess::start(&c).await;
        c.create_cp("promo", scrape_spec(nginx(), "2s", "3s")).await;
        // The first evaluation has no baseline: no data, then values.
        let s = eventually(Duration::from_secs(20), "passing scrape gates", || async {
            let s = c.status("promo").await;
            (s["gates"][0]["state"] == "Passing").then_some(s)
        })
        .await;
        // 2 pods × 200 req/s over a ~2 s window, all fast, no 5xx.
        let gate = |name: &str| {
            s["gates"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(gate("sli.errorRate5xx")["value"], 0.0, "{s}");
        assert!(gate("sli.availability")["samples"].as_u64().unwrap() >= 400, "{s}");
        let p95 = gate("sli.p95LatencyMs")["value"].as_f64().unwrap();
        assert!(
            (47.0..=50.0).contains(&p95),
            "p95 interpolated inside (0, 50] ms: {p95}"
        );
        let s = c.wait_phase("promo", "Promoted", Duration::from_secs(40)).await;
        assert_eq!(s["gatesSummary"], "4/4");
        assert_eq!(c.image("api").await, NEW_IMAGE);
        op.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_scrape_rolls_back_when_5xx_rise() {
    bounded(async {
        let c = Cluster::start().await;
        let (a, b) = (FakePod::start(200).await, FakePod::start(200).await);
        c.create_endpoint_slices("api-canary-svc", &[&a, &b]).await;
        c.create_deployment("api", OLD_IMAGE, 2).await;
        c.create_deployment("api-canary", NEW_IMAGE, 2).await;
        c.create_canary_ingress("api-canary").await;
        let op = InProcess::start(&c).await;
        let mut spec = scrape_spec(nginx(), "1h", "2s");
        spec["canary"]["service"] = json!("api-canary-svc");
        c.create_cp("promo", spec).await;
        eventually(LIMIT, "passing scrape gates at weight 10", || async {
            let s = c.status("promo").await;
            (s["gates"][0]["state"] == "Passing" && c.ingress_weight("api-canary").await.as_deref() == Some("10"))
                .then_some(())
        })
        .await;
        // One pod starts failing 10 % of its requests: 5 % overall, above the 1 % criterion.
        a.set_error_share(0.1);
        let breach = Instant::now();
        let s = c.wait_phase("promo", "RolledBack", Duration::from_secs(20)).await;
        eprintln!(
            "5xx rise → RolledBack: {:?} (for = 2s, interval = 1s)",
            breach.elapsed()
        );
        let message = s["message"].as_str().unwrap();
        assert!(message.contains("errorRate5xx"), "{s}");
        assert_eq!(c.ingress_weight("api-canary").await.as_deref(), Some("0"));
        assert_eq!(c.image("api").await, OLD_IMAGE);
        op.shutdown().await;
    })
    .await;
}

/// A Redis primary with TLS and AUTH, optionally with a connected replica.
struct RedisSetup {
    primary: testkit::RedisServer,
    _replica: Option<testkit::RedisServer>,
    tls: testkit::TlsFiles,
}

fn redis_setup(with_replica: bool) -> RedisSetup {
    let tls = testkit::TlsFiles::generate().unwrap();
    let options = testkit::RedisOptions {
        password: Some("probe-s3cret".into()),
        tls: Some(tls.clone()),
        replica_of: None,
    };
    let primary = testkit::RedisServer::start(options.clone()).unwrap();
    let replica = with_replica.then(|| {
        testkit::RedisServer::start(testkit::RedisOptions {
            replica_of: Some(primary.port()),
            ..options
        })
        .unwrap()
    });
    RedisSetup {
        primary,
        _replica: replica,
        tls,
    }
}

/// The spec with a Redis gate of every probe row, against the Secret `redis-credentials`.
fn redis_spec(prom: &ScriptedProm) -> serde_json::Value {
    let mut s = spec(nginx(), &prom.address, "2s", "1m");
    s["gates"]["redis"] = json!({
        "secretRef": "redis-credentials", "requireTls": true, "requireAuth": true, "requireReplica": true,
        "p95LatencyMs": "< 200", "fragmentationRatio": "< 1000", "evictedKeys": "== 0", "limiterErrors": "== 0"
    });
    s
}

/// Deployments, the canary Ingress, Secret reads granted, and `redis-credentials` holding
/// `url` (plus `ca.crt` for a TLS setup).
async fn redis_scene(c: &Cluster, redis: Option<&RedisSetup>, url: &str) {
    c.create_deployment("api", OLD_IMAGE, 2).await;
    c.create_deployment("api-canary", NEW_IMAGE, 1).await;
    c.create_canary_ingress("api-canary").await;
    c.grant_secret_reads().await;
    match redis {
        Some(redis) => {
            let ca = std::fs::read_to_string(&redis.tls.ca_cert).unwrap();
            c.create_secret("redis-credentials", &[("url", url), ("ca.crt", &ca)])
                .await;
        }
        None => c.create_secret("redis-credentials", &[("url", url)]).await,
    }
}

fn gate_row(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["gates"]
        .as_array()
        .and_then(|rows| rows.iter().find(|g| g["name"] == name))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gate_probes_redis_itself_and_promotes_when_every_row_passes() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        let redis = tokio::task::spawn_blocking(|| redis_setup(true)).await.unwrap();
        redis_scene(&c, Some(&redis), &redis.primary.url()).await;
        let op = InProcess::start(&c).await;
        let mut spec = redis_spec(&prom);
        // TLS only: nothing answers plaintext on another port of the host.
        spec["gates"]["redis"]["plaintextPort"] = json!(testkit::free_port());
        spec["gates"]["redis"]["maxmemoryPolicy"] = json!("noeviction");
        c.create_cp("promo", spec).await;
        // Every Redis row passing, with the value the probe read.
        let s = eventually(LIMIT, "the redis rows to pass", || async {
            let s = c.status("promo").await;
            let rows = [
                "tls",
                "auth",
                "replica",
                "p95LatencyMs",
                "fragmentationRatio",
                "evictedKeys",
                "limiterErrors",
                "plaintextRefused",
                "maxmemoryPolicy",
            ];
            rows.iter()
                .all(|r| gate_row(&s, &format!("redis.{r}"))["state"] == "Passing")
                .then_some(s)
        })
        .await;
        assert_eq!(gate_row(&s, "redis.replica")["value"], 1.0, "{s}");
        assert_eq!(gate_row(&s, "redis.tls")["value"], 1.0);
        let s = c.wait_phase("promo", "Promoted", LIMIT).await;
        assert_eq!(s["gatesSummary"], "13/13");
        op.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gate_names_the_row_that_fails_and_holds_the_step() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        // No replica, and a Secret whose URL is plaintext to a TLS-only server.
        let redis = tokio::task::spawn_blocking(|| redis_setup(false)).await.unwrap();
        redis_scene(&c, Some(&redis), &redis.primary.url()).await;
        let op = InProcess::start(&c).await;
        c.create_cp("promo", redis_spec(&prom)).await;
        let s = eventually(LIMIT, "redis.replica to fail", || async {
            let s = c.status("promo").await;
            (gate_row(&s, "redis.replica")["state"] == "Failing").then_some(s)
        })
        .await;
        assert_eq!(gate_row(&s, "redis.replica")["value"], 0.0, "{s}");
        for row in ["tls", "auth", "p95LatencyMs"] {
            assert_eq!(
                gate_row(&s, &format!("redis.{row}"))["state"],
                "Passing",
                "redis.{row}: {s}"
            );
        }
        assert_eq!(s["currentStep"], 1, "held at the first step");
        assert!(s["message"].as_str().unwrap_or("").contains("redis.replica"), "{s}");

        // A wrong password: every probe row is an error naming the reason.
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(c.client.clone(), &c.ns);
        let wrong = redis.primary.url().replace("probe-s3cret", "wrong");
        secrets
            .patch(
                "redis-credentials",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"stringData": {"url": wrong}})),
            )
            .await
            .unwrap();
        let s = eventually(LIMIT, "an auth error on the probe rows", || async {
            let s = c.status("promo").await;
            let message = gate_row(&s, "redis.tls")["message"].as_str().unwrap_or("").to_owned();
            message.contains("WRONGPASS").then_some(s)
        })
        .await;
        assert_eq!(s["currentStep"], 1, "{s}");
        op.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gate_fails_tls_and_auth_on_an_open_plaintext_redis() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        let open = tokio::task::spawn_blocking(|| testkit::RedisServer::start(testkit::RedisOptions::default()))
            .await
            .unwrap()
            .unwrap();
        redis_scene(&c, None, &open.url()).await;
        let _op = InProcess::start(&c).await;
        c.create_cp("promo", redis_spec(&prom)).await;
        let s = eventually(LIMIT, "redis.tls and redis.auth to fail", || async {
            let s = c.status("promo").await;
            let failing = |row: &str| gate_row(&s, row)["state"] == "Failing";
            (failing("redis.tls") && failing("redis.auth")).then_some(s)
        })
        .await;
        assert_eq!(gate_row(&s, "redis.tls")["value"], 0.0, "{s}");
        assert_eq!(gate_row(&s, "redis.auth")["value"], 0.0, "{s}");
        assert_eq!(gate_row(&s, "redis.p95LatencyMs")["state"], "Passing", "{s}");
        assert_eq!(s["currentStep"], 1);
    })
    .await;
}

/// Sentinel quorum, the eviction policy and an open plaintext port, each row failing alone
/// when its fault is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gate_checks_sentinel_quorum_eviction_policy_and_plaintext() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        let password = "sentinel-s3cret";
        let (primary, replica, sentinels) = tokio::task::spawn_blocking(move || {
            let options = testkit::RedisOptions {
                password: Some(password.into()),
                ..Default::default()
            };
            let primary = testkit::RedisServer::start(options.clone()).unwrap();
            let replica = testkit::RedisServer::start(testkit::RedisOptions {
                replica_of: Some(primary.port()),
                ..options
            })
            .unwrap();
            let sentinels: Vec<_> = (0..3)
                .map(|_| testkit::Sentinel::start("primary", primary.port(), 2, Some(password)).unwrap())
                .collect();
            (primary, replica, sentinels)
        })
        .await
        .unwrap();
        c.create_deployment("api", OLD_IMAGE, 2).await;
        c.create_deployment("api-canary", NEW_IMAGE, 1).await;
        c.create_canary_ingress("api-canary").await;
        c.grant_secret_reads().await;
        let addresses: Vec<String> = sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        let url = format!("redis://:{password}@127.0.0.1:{}", primary.port());
        c.create_secret(
            "redis-credentials",
            &[
                ("url", &url),
                ("sentinels", &addresses.join(",")),
                ("masterName", "primary"),
            ],
        )
        .await;
        let _op = InProcess::start(&c).await;
        let mut spec = spec(nginx(), &prom.address, "1h", "1m");
        spec["gates"]["redis"] = json!({
            "secretRef": "redis-credentials", "requireSentinelQuorum": true, "requireReplica": true,
            "maxmemoryPolicy": "noeviction", "plaintextPort": primary.port(), "noData": "fail"
        });
        c.create_cp("promo", spec).await;
        let row = |s: &Value, name: &str| gate_row(s, name);
        let s = eventually(LIMIT, "the Sentinels to agree", || async {
            let s = c.status("promo").await;
            (row(&s, "redis.sentinelQuorum")["state"] == "Passing").then_some(s)
        })
        .await;
        assert!(
            row(&s, "redis.sentinelQuorum")["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!(
                    "3/3 Sentinels name 127.0.0.1:{} as primary; CKQUORUM OK",
                    primary.port()
                )),
            "{s}"
        );
        assert_eq!(row(&s, "redis.maxmemoryPolicy")["state"], "Passing", "{s}");
        // A plaintext primary: its own port answers plaintext Redis (NOAUTH is still Redis).
        assert_eq!(row(&s, "redis.plaintextRefused")["state"], "Failing", "{s}");
        assert!(
            row(&s, "redis.plaintextRefused")["message"]
                .as_str()
                .unwrap_or_default()
                .contains("answers plaintext"),
            "{s}"
        );

        eventually(LIMIT, "redis.replica to pass", || async {
            let s = c.status("promo").await;
            (row(&s, "redis.replica")["state"] == "Passing").then_some(())
        })
        .await;

        // A failover: the probe follows the Sentinels to the new primary (the URL's host is a
        // replica now) and every row describes it.
        let old = primary.port();
        sentinels[0].cli(&["SENTINEL", "FAILOVER", "primary"]).unwrap();
        let s = eventually(LIMIT, "the rows to describe the new primary", || async {
            let s = c.status("promo").await;
            let quorum = row(&s, "redis.sentinelQuorum")["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let follows = quorum.contains(&format!("127.0.0.1:{} as primary", replica.port()));
            (follows && row(&s, "redis.replica")["state"] == "Passing").then_some(s)
        })
        .await;
        assert_eq!(row(&s, "redis.maxmemoryPolicy")["state"], "Passing", "{s}");
        eprintln!(
            "failover from :{old} to :{}: every row on the new primary",
            replica.port()
        );

        // An evicting policy on the primary in service: that row fails, naming the policy.
        replica
            .cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
            .unwrap();
        let s = eventually(LIMIT, "redis.maxmemoryPolicy to fail", || async {
            let s = c.status("promo").await;
            (row(&s, "redis.maxmemoryPolicy")["state"] == "Failing").then_some(s)
        })
        .await;
        assert_eq!(
            row(&s, "redis.maxmemoryPolicy")["message"],
            "maxmemory-policy is allkeys-lru, want noeviction",
            "{s}"
        );
        assert_eq!(row(&s, "redis.sentinelQuorum")["state"], "Passing", "{s}");

        // Two of three Sentinels gone: no quorum.
        let mut sentinels = sentinels;
        drop(sentinels.drain(1..));
        let s = eventually(LIMIT, "redis.sentinelQuorum to fail", || async {
            let s = c.status("promo").await;
            (row(&s, "redis.sentinelQuorum")["state"] == "Failing").then_some(s)
        })
        .await;
        let message = row(&s, "redis.sentinelQuorum")["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.starts_with("1/3 Sentinels"), "{s}");
    })
    .await;
}

/// The runbook's Redis faults made one at a time on a healthy TLS + AUTH primary with a
/// replica: authentication switched off, latency injected (`CLIENT PAUSE` every 40 ms), keys
/// evicted. Each time exactly that row fails, with the value read, and every other row stays
/// green in the same probe round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gate_fails_exactly_the_row_whose_fault_is_made() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        let redis = tokio::task::spawn_blocking(|| redis_setup(true)).await.unwrap();
        redis_scene(&c, Some(&redis), &redis.primary.url()).await;
        let _op = InProcess::start(&c).await;
        let mut spec = spec(nginx(), &prom.address, "1h", "1m");
        spec["gates"]["redis"] = json!({
            "secretRef": "redis-credentials", "requireTls": true, "requireAuth": true, "requireReplica": true,
            "p95LatencyMs": "< 10", "evictedKeys": "== 0", "noData": "fail"
        });
        c.create_cp("promo", spec).await;
        let rows = [
            "redis.tls",
            "redis.auth",
            "redis.replica",
            "redis.p95LatencyMs",
            "redis.evictedKeys",
        ];
        // Waits for `failing` to fail; every other row must pass in that same status.
        // Also prints how long from the fault to the row failing (interval 1 s).
        let only = |failing: &'static str| {
            let c = &c;
            let fault = Instant::now();
            async move {
                let s = eventually(LIMIT, failing, || async {
                    let s = c.status("promo").await;
                    (gate_row(&s, failing)["state"] == "Failing").then_some(s)
                })
                .await;
                for row in rows.iter().filter(|r| **r != failing) {
                    assert_eq!(
                        gate_row(&s, row)["state"],
                        "Passing",
                        "{row} while {failing} fails: {s}"
                    );
                }
                eprintln!("fault → {failing} Failing: {:?}", fault.elapsed());
                gate_row(&s, failing)
            }
        };
        let all_pass = || async {
            eventually(LIMIT, "every row passing", || async {
                let s = c.status("promo").await;
                rows.iter().all(|r| gate_row(&s, r)["state"] == "Passing").then_some(())
            })
            .await
        };
        all_pass().await;

        // Authentication off: the probe's AUTH is refused, yet Redis answers anyone.
        redis.primary.cli(&["CONFIG", "SET", "requirepass", ""]).unwrap();
        let row = only("redis.auth").await;
        assert_eq!(row["value"], 0.0, "{row}");
        assert!(
            row["message"]
                .as_str()
                .unwrap_or_default()
                .contains("answers without credentials"),
            "{row}"
        );
        redis
            .primary
            .cli(&["CONFIG", "SET", "requirepass", "probe-s3cret"])
            .unwrap();
        all_pass().await;

        // Latency: every 40 ms all clients are paused for 30 ms.
        let mut pauses = redis.primary.cli_command();
        pauses.args(["-r", "-1", "-i", "0.04", "CLIENT", "PAUSE", "30", "ALL"]);
        pauses.stdout(std::process::Stdio::null());
        let pauses = testkit::ManagedChild::spawn(pauses, libc::SIGKILL).unwrap();
        let row = only("redis.p95LatencyMs").await;
        assert!(row["value"].as_f64().unwrap_or_default() >= 10.0, "{row}");
        drop(pauses);
        all_pass().await;

        // Evictions: an evicting policy and a memory cap just above what Redis holds, then
        // writes past it.
        redis
            .primary
            .cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-random"])
            .unwrap();
        let used: u64 = redis
            .primary
            .cli(&["INFO", "memory"])
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        let cap = (used + (2 << 20)).to_string();
        redis.primary.cli(&["CONFIG", "SET", "maxmemory", &cap]).unwrap();
        for batch in 0..6 {
            let prefix = format!("fill:{batch}:");
            redis
                .primary
                .cli(&[
                    "EVAL",
                    "for i = 1, 2000 do redis.call('SET', KEYS[1] .. i, string.rep('x', 1000)) end",
                    "1",
                    &prefix,
                ])
                .unwrap();
        }
        let row = only("redis.evictedKeys").await;
        assert!(row["value"].as_f64().unwrap_or_default() > 0.0, "{row}");
    })
    .await;
}

/// Figure for the docs: how long from a Redis fault (the replica dies) to its row failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gate_sees_a_lost_replica_within_an_interval() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        let mut redis = tokio::task::spawn_blocking(|| redis_setup(true)).await.unwrap();
        redis_scene(&c, Some(&redis), &redis.primary.url()).await;
        let _op = InProcess::start(&c).await;
        let mut s = redis_spec(&prom);
        s["steps"] = json!([{"weight": 10, "bake": "1h"}, {"weight": 100, "bake": "1h"}]);
        c.create_cp("promo", s).await;
        eventually(LIMIT, "redis.replica to pass", || async {
            let s = c.status("promo").await;
            (gate_row(&s, "redis.replica")["state"] == "Passing").then_some(())
        })
        .await;
        let mut replica = redis._replica.take().unwrap();
        replica.kill();
        let killed = Instant::now();
        eventually(LIMIT, "redis.replica to fail", || async {
            let s = c.status("promo").await;
            (gate_row(&s, "redis.replica")["state"] == "Failing").then_some(())
        })
        .await;
        let elapsed = killed.elapsed();
        eprintln!("replica killed → redis.replica Failing: {elapsed:?} (interval 1s)");
        // The primary notices the lost link first (its replication timeout), then one interval.
        assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    })
    .await;
}

/// Webhook requests a local receiver got, by path: `(content type, body)`. `/slow/...`
/// answers only after a minute.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<std::sync::Mutex<Vec<(String, String, Value)>>>,
    addr: Option<std::net::SocketAddr>,
}

impl Receiver {
    async fn start() -> Receiver {
        use axum::extract::{Path, State};
        use axum::http::HeaderMap;
        let mut receiver = Receiver::default();
        let app = axum::Router::new()
            .route(
                "/{sink}/{token}",
                axum::routing::post(
                    |State(r): State<Receiver>,
                     Path((sink, _token)): Path<(String, String)>,
                     headers: HeaderMap,
                     body: String| async move {
                        if sink == "slow" {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                        let content_type = headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        r.got
                            .lock()
                            .unwrap()
                            .push((sink, content_type, serde_json::from_str(&body).unwrap()));
                        "ok"
                    },
                ),
            )
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        receiver.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn url(&self, sink: &str) -> String {
        format!("http://{}/{sink}/t0ken", self.addr.unwrap())
    }

    fn got(&self, sink: &str) -> Vec<(String, Value)> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(s, _, _)| s == sink)
            .map(|(_, content_type, body)| (content_type.clone(), body.clone()))
            .collect()
    }
}

/// `spec.notify`: a Slack sink and a CloudEvents sink hear every transition in order, with
/// the gate values; a sink whose receiver is down and one that never answers delay nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_their_sinks_and_dead_ones_delay_nothing() {
    bounded(async {
        let c = Cluster::start().await;
        c.grant_secret_reads().await;
        let receiver = Receiver::start().await;
        let prom = ScriptedProm::start().await;
        c.create_nginx_scene().await;
        let down = format!("http://127.0.0.1:{}/down/t0ken", testkit::free_port());
        for (secret, url) in [
            ("slack", receiver.url("slack")),
            ("events", receiver.url("events")),
            ("slow", receiver.url("slow")),
            ("down", down),
        ] {
            c.create_secret(secret, &[("url", &url)]).await;
        }
        let op = InProcess::start(&c).await;
        let mut spec = spec(nginx(), &prom.address, "2s", "3s");
        spec["notify"] = json!([
            {"name": "team-slack", "secretRef": "slack"},
            {"name": "audit", "secretRef": "events", "format": "cloudEvents"},
            {"name": "slow", "secretRef": "slow"},
            {"name": "down", "secretRef": "down", "format": "cloudEvents"}
        ]);
        let started = Instant::now();
        c.create_cp("promo", spec).await;
        c.wait_phase("promo", "Promoted", Duration::from_secs(40)).await;
        // Three 2 s bakes and a rollout: the dead sinks cost nothing.
        assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());

        let want = ["Started", "StepAdvanced", "StepAdvanced", "Promoted"];
        let slack = eventually(Duration::from_secs(10), "Slack messages", || async {
            let got = receiver.got("slack");
            (got.len() >= want.len()).then_some(got)
        })
        .await;
        let texts: Vec<String> = slack
            .iter()
            .map(|(_, b)| b["text"].as_str().unwrap().to_owned())
            .collect();
        for (text, reason) in texts.iter().zip(want) {
            assert!(text.starts_with(&format!("*{reason}* {}/promo: ", c.ns)), "{texts:#?}");
        }
        assert!(slack.iter().all(|(content_type, _)| content_type == "application/json"));

        let events = eventually(Duration::from_secs(10), "CloudEvents", || async {
            let got = receiver.got("events");
            (got.len() >= want.len()).then_some(got)
        })
        .await;
        let types: Vec<&str> = events.iter().map(|(_, b)| b["type"].as_str().unwrap()).collect();
        let expected: Vec<String> = want
            .iter()
            .map(|r| format!("dev.scholarship.canarypromotion.{r}"))
            .collect();
        assert_eq!(types, expected);
        let (content_type, promoted) = events.last().unwrap();
        assert_eq!(content_type, "application/cloudevents+json");
        assert_eq!(promoted["specversion"], "1.0");
        assert_eq!(promoted["subject"], format!("{}/promo", c.ns));
        // The gate values the last step was judged by.
        let gates = promoted["data"]["gates"].as_array().unwrap();
        assert_eq!(gates.len(), 4, "{promoted}");
        assert!(gates.iter().all(|g| g["value"].is_number()), "{promoted}");
        assert!(receiver.got("slow").is_empty());
        op.shutdown().await;
    })
    .await;
}

/// `spec.postPromotion`: after the promotion the stable track (now the new image) is judged;
/// a breach held for its window puts the previous image back on the stable Deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_after_the_promotion_rolls_the_stable_image_back() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_nginx_scene().await;
        let op = InProcess::start(&c).await;
        let mut spec = spec(nginx(), &prom.address, "1s", "2s");
        spec["postPromotion"] = json!({"watch": "10m", "rollback": true});
        c.create_cp("promo", spec).await;
        let s = c.wait_phase("promo", "Watching", Duration::from_secs(30)).await;
        assert_eq!(c.image("api").await, NEW_IMAGE);
        assert_eq!(s["previousStableImage"], OLD_IMAGE);
        assert!(s["watchUntil"].is_string(), "{s}");
        let promoted = condition(&s, "Promoted");
        assert_eq!(
            promoted["status"], "True",
            "kubectl wait --for=condition=Promoted returns"
        );

        // The canary cleaned up after the promotion, and the canary track going bad, say
        // nothing now; the stable track does.
        c.deployments().delete("api-canary", &Default::default()).await.unwrap();
        c.ingresses().delete("api-canary", &Default::default()).await.unwrap();
        prom.set(Sli::ErrorRate5xx, Some(0.5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        let s = c.status("promo").await;
        assert_eq!(s["phase"], "Watching", "{s}");
        assert_eq!(condition(&s, "ReferencesResolved")["status"], "True", "{s}");
        let breach = Instant::now();
        prom.set_on(Track::Stable, Sli::ErrorRate5xx, Some(0.5));
        let s = c.wait_phase("promo", "RolledBack", Duration::from_secs(15)).await;
        let took = breach.elapsed();
        eprintln!("stable-track breach visible → previous image set: {took:?} (for = 2s, interval = 1s)");
        // `for: 2s` plus up to an interval (1 s) plus the reconcile.
        assert!(took < Duration::from_secs(6), "{took:?}");
        assert_eq!(
            c.image("api").await,
            OLD_IMAGE,
            "the stable Deployment runs the previous image"
        );
        let rolled_back = condition(&s, "RolledBack");
        assert_eq!(rolled_back["reason"], "PostPromotionBreach");
        assert!(s["message"].as_str().unwrap().contains("errorRate5xx"), "{s}");
        let reasons = eventually(Duration::from_secs(5), "the breach event", || async {
            let r = c.event_reasons("promo").await;
            r.iter().any(|x| x == "PostPromotionBreach").then_some(r)
        })
        .await;
        assert!(reasons.iter().any(|x| x == "RolledBack"), "{reasons:?}");
        op.shutdown().await;
    })
    .await;
}

/// `--shard-selector`: two operators split the promotions by label, each reconciles only its
/// own (its identity on every Event), and a promotion neither selects is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_the_promotions_by_label_and_never_touch_each_others() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        let mut shards = Vec::new();
        for shard in ["a", "b"] {
            let mut s = settings(&c.ns, None);
            s.shard_selector = Some(format!("scholarship.dev/shard={shard}"));
            s.identity = format!("shard-{shard}");
            shards.push(InProcess::start_with(&c, s).await);
        }
        let mut names = Vec::new();
        for (shard, i) in [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0)] {
            let name = format!("p{shard}{i}");
            c.create_deployment(&name, OLD_IMAGE, 1).await;
            c.create_deployment(&format!("{name}-canary"), NEW_IMAGE, 1).await;
            c.create_canary_ingress(&format!("{name}-canary")).await;
            let mut spec = spec(
                json!({"nginx": {"canaryIngress": format!("{name}-canary")}}),
                &prom.address,
                "1s",
                "2s",
            );
            spec["stable"]["deployment"] = json!(name);
            spec["canary"]["deployment"] = json!(format!("{name}-canary"));
            let cp: canary_operator::CanaryPromotion = serde_json::from_value(json!({
                "apiVersion": "scholarship.dev/v1alpha1", "kind": "CanaryPromotion",
                "metadata": {"name": name, "labels": {"scholarship.dev/shard": shard}}, "spec": spec
            }))
            .unwrap();
            c.cps().create(&Default::default(), &cp).await.unwrap();
            names.push((shard, name));
        }
        for (shard, name) in names.iter().filter(|(shard, _)| *shard != "c") {
            c.wait_phase(name, "Promoted", Duration::from_secs(40)).await;
            let events: kube::Api<k8s_openapi::api::events::v1::Event> = kube::Api::namespaced(c.client.clone(), &c.ns);
            let by: std::collections::BTreeSet<String> = events
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
                .filter_map(|e| e.reporting_instance)
                .collect();
            assert_eq!(by.into_iter().collect::<Vec<_>>(), [format!("shard-{shard}")], "{name}");
        }
        let outside = c.cp("pc0").await.unwrap();
        assert!(outside.status.is_none(), "no shard selects pc0: {:?}", outside.status);
        assert!(outside.metadata.finalizers.unwrap_or_default().is_empty());
        for shard in shards {
            shard.shutdown().await;
        }

        // A selector the API server cannot parse stops the operator with its message.
        let mut bad = settings(&c.ns, None);
        bad.shard_selector = Some("scholarship.dev/shard in (a".into());
        let (_stop, rx) = tokio::sync::watch::channel(false);
        let err = canary_operator::run(
            c.operator_client().await,
            bad,
            Arc::new(canary_operator::clock::SystemClock),
            rx,
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--shard-selector \"scholarship.dev/shard in (a\": "),
            "{err}"
        );
    })
    .await;
}

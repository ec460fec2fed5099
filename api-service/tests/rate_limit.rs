//! The distributed rate limiter against real Redis servers on loopback: exact limits under
//! concurrency, consistency across processes, TLS + AUTH, Sentinel failover, Redis dying, and
//! which client address counts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{BinaryApp, TestApp, client, series_value, wait_redis_connected};
use reqwest::StatusCode;
use serde_json::Value;
use testkit::{RedisOptions, RedisServer, Sentinel, TlsFiles};

const CATALOGUE: &str = "/api/v1/scholarships?page_size=1";

async fn app_with(redis_url: &str, limits: &str, extra: &[&str]) -> TestApp {
    let mut flags = vec!["--redis-url", redis_url, "--rate-limits", limits];
    flags.extend_from_slice(extra);
    TestApp::start_with(&flags).await
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn exactly_the_limit_passes_under_concurrency_with_headers_on_both_sides() {
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let app = app_with(&redis.url(), "catalogue=20/60s,default=100/60s", &[]).await;
    app.wait_redis_connected().await;

    let responses = futures::future::join_all((0..30).map(|_| app.client.get(app.url(CATALOGUE)).send())).await;
    let mut ok = 0;
    let mut limited = 0;
    for r in responses {
        let r = r.unwrap();
        assert_eq!(header(&r, "ratelimit-policy"), "\"catalogue\";q=20;w=60");
        assert_eq!(header(&r, "ratelimit-limit"), "20");
        let reset: u64 = header(&r, "ratelimit-reset").parse().unwrap();
        assert!((1..=60).contains(&reset));
        match r.status() {
            StatusCode::OK => {
                ok += 1;
                let remaining: u64 = header(&r, "ratelimit-remaining").parse().unwrap();
                assert!(remaining < 20);
                assert_eq!(
                    header(&r, "ratelimit"),
                    format!("\"catalogue\";r={remaining};t={reset}")
                );
            }
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert_eq!(header(&r, "ratelimit-remaining"), "0");
                let retry: u64 = header(&r, "retry-after").parse().unwrap();
                assert!(retry >= 1);
                assert_eq!(header(&r, "content-type"), "application/problem+json");
                assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (20, 10));
    let ttl: i64 = redis
        .cli(&["PTTL", "rate:app:catalogue:ip:127.0.0.1"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "the key expires with its window ({ttl} ms)");

    let text = app.metrics().await;
    let labels = [
        "ratelimit_decisions_total{",
        "route=\"/api/v1/scholarships\"",
        "principal=\"anonymous\"",
    ];
    assert_eq!(
        series_value(&text, &[labels[0], labels[1], labels[2], "decision=\"allowed\""]),
        20.0
    );
    assert_eq!(
        series_value(&text, &[labels[0], labels[1], labels[2], "decision=\"limited\""]),
        10.0
    );
    // Unlimited routes carry no rate-limit headers.
    assert!(app.get("/healthz").await.headers().get("ratelimit").is_none());
}

#[tokio::test]
async fn two_processes_share_one_budget_and_a_restart_keeps_the_count() {
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let flags = [
        "--redis-url",
        &redis.url(),
        "--rate-limits",
        "catalogue=10/60s,default=100/60s",
    ];
    let db = testkit::Postgres::shared().fresh_database();
    let port_b = testkit::free_port();
    let a = BinaryApp::start_on(&db, testkit::free_port(), &flags).await;
    let mut b = BinaryApp::start_on(&db, port_b, &flags).await;
    let http = client();
    for base in [&a.base, &b.base] {
        wait_redis_connected(&http, base).await;
    }
    let mut statuses = Vec::new();
    for i in 0..14 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        statuses.push(http.get(format!("{base}{CATALOGUE}")).send().await.unwrap().status());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 10);
    assert!(statuses[10..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS));

    // Restart one "pod": the window lives in Redis, not in the process.
    b.process.stop();
    let b = BinaryApp::start_on(&db, port_b, &flags).await;
    wait_redis_connected(&http, &b.base).await;
    for base in [&a.base, &b.base] {
        let r = http.get(format!("{base}{CATALOGUE}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{base}");
    }
}

#[tokio::test]
async fn tls_and_auth_and_a_wrong_password_reported_by_readiness() {
    let tls = TlsFiles::generate().unwrap();
    let redis = RedisServer::start(RedisOptions {
        password: Some("s3cret-pass".into()),
        tls: Some(tls.clone()),
        replica_of: None,
    })
    .unwrap();
    assert!(redis.url().starts_with("rediss://:s3cret-pass@"));
    let ca = tls.ca_cert.to_str().unwrap();
    let app = app_with(
        &redis.url(),
        "catalogue=5/60s,default=100/60s",
        &["--redis-ca-file", ca],
    )
    .await;
    app.wait_redis_connected().await;
    let r = app.get(CATALOGUE).await;
    assert_eq!(header(&r, "ratelimit-remaining"), "4", "limited through Redis over TLS");
    assert_eq!(redis.cli(&["GET", "rate:app:catalogue:ip:127.0.0.1"]).unwrap(), "1");

    let wrong = redis.url().replace("s3cret-pass", "wrong-pass");
    let app = app_with(&wrong, "catalogue=5/60s,default=100/60s", &["--redis-ca-file", ca]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let reason = loop {
        let ready: Value = app.get("/readyz").await.json().await.unwrap();
        let redis_check = ready["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "redis")
            .unwrap()
            .clone();
        if let Some(reason) = redis_check["reason"].as_str().filter(|r| *r != "connecting") {
            assert_eq!(ready["status"], "degraded", "serving, with redis reported failing");
            break reason.to_owned();
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(reason.to_lowercase().contains("authentication"), "{reason}");
    let r = app.get(CATALOGUE).await;
    assert_eq!(r.status(), StatusCode::OK, "degrades open");
    assert!(
        r.headers().get("ratelimit").is_none(),
        "no invented quota while degraded"
    );
}

#[tokio::test]
async fn killing_redis_degrades_every_request_without_5xx() {
    let mut redis = RedisServer::start(RedisOptions::default()).unwrap();
    let app = app_with(&redis.url(), "catalogue=1000/60s,default=1000/60s", &[]).await;
    app.wait_redis_connected().await;
    assert_eq!(app.get(CATALOGUE).await.status(), StatusCode::OK);
    redis.kill();
    let started = Instant::now();
    for _ in 0..100 {
        let r = app.get(CATALOGUE).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get("ratelimit").is_none());
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the breaker avoids paying timeouts"
    );
    let text = app.metrics().await;
    assert!(series_value(&text, &["ratelimit_decisions_total{", "decision=\"degraded\""]) >= 99.0);
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "degraded");
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let untrusting = app_with(&redis.url(), "catalogue=100/60s,default=100/60s", &[]).await;
    untrusting.wait_redis_connected().await;
    let spoofed = untrusting
        .client
        .get(untrusting.url(CATALOGUE))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::OK);
    assert_eq!(
        redis.cli(&["EXISTS", "rate:app:catalogue:ip:198.51.100.7"]).unwrap(),
        "0"
    );
    assert_eq!(redis.cli(&["GET", "rate:app:catalogue:ip:127.0.0.1"]).unwrap(), "1");

    let trusting = app_with(
        &redis.url(),
        "catalogue=100/60s,default=100/60s",
        &["--trusted-proxies", "127.0.0.0/8"],
    )
    .await;
    trusting.wait_redis_connected().await;
    let via_proxy = trusting
        .client
        .get(trusting.url(CATALOGUE))
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.7, 127.0.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(via_proxy.status(), StatusCode::OK);
    assert_eq!(redis.cli(&["GET", "rate:app:catalogue:ip:198.51.100.7"]).unwrap(), "1");
    let v6 = trusting
        .client
        .get(trusting.url(CATALOGUE))
        .header("forwarded", "for=\"[2001:db8:1:2::99]:443\"")
        .send()
        .await
        .unwrap();
    assert_eq!(v6.status(), StatusCode::OK);
    assert_eq!(
        redis.cli(&["GET", "rate:app:catalogue:ip:2001:db8:1:2::/64"]).unwrap(),
        "1"
    );
}

#[tokio::test]
async fn tester_traffic_is_limited_but_labelled_apart() {
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let app = app_with(
        &redis.url(),
        "catalogue=2/60s,default=100/60s",
        &["--tester-token", "probe-secret"],
    )
    .await;
    app.wait_redis_connected().await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = app
            .client
            .get(app.url(CATALOGUE))
            .header("x-canary-tester", "probe-secret")
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
    }
    assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS);
    // A wrong secret is an ordinary anonymous caller.
    app.client
        .get(app.url(CATALOGUE))
        .header("x-canary-tester", "guess")
        .send()
        .await
        .unwrap();
    let text = app.metrics().await;
    assert_eq!(
        series_value(
            &text,
            &[
                "ratelimit_decisions_total{",
                "principal=\"tester\"",
                "decision=\"limited\""
            ]
        ),
        1.0
    );
    assert_eq!(
        series_value(
            &text,
            &[
                "ratelimit_decisions_total{",
                "principal=\"tester\"",
                "decision=\"allowed\""
            ]
        ),
        2.0
    );
    assert_eq!(
        series_value(&text, &["ratelimit_decisions_total{", "principal=\"anonymous\""]),
        1.0
    );
}

#[tokio::test]
async fn sentinel_failover_under_load_has_no_5xx_and_recovers_exact_limits() {
    let primary = RedisServer::start(RedisOptions::default()).unwrap();
    let replica = RedisServer::start(RedisOptions {
        replica_of: Some(primary.port()),
        ..Default::default()
    })
    .unwrap();
    let sentinels: Vec<_> = (0..3)
        .map(|_| Sentinel::start("mymaster", primary.port(), 2, None).unwrap())
        .collect();
    // The replica must be in sync and known to the sentinels before a failover can pick it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !replica
        .cli(&["INFO", "replication"])
        .unwrap()
        .contains("master_link_status:up")
        || !sentinels[0]
            .cli(&["SENTINEL", "replicas", "mymaster"])
            .unwrap()
            .contains(&replica.port().to_string())
    {
        assert!(Instant::now() < deadline, "replica never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sentinel_list = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect::<Vec<_>>()
        .join(",");
    let app = app_with(
        "redis://127.0.0.1:1",
        "catalogue=5/60s,default=100000/60s",
        &["--redis-sentinels", &sentinel_list, "--trusted-proxies", "127.0.0.0/8"],
    )
    .await;
    app.wait_redis_connected().await;
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");

    // Bounded continuous load on a route with a generous budget, while Sentinel fails over.
    let load = {
        let (client, url) = (app.client.clone(), app.url("/api/v1/eligibility/check"));
        tokio::spawn(async move {
            let body = serde_json::json!({"gpa": 3.5, "level": "masters", "field_of_study": "law", "residency": "DE", "scholarship_ids": []});
            let mut statuses = Vec::new();
            let stop = Instant::now() + Duration::from_secs(8);
            while Instant::now() < stop && statuses.len() < 4000 {
                let r = client.post(&url).json(&body).send().await.unwrap();
                statuses.push(r.status().as_u16());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sentinels[0].cli(&["SENTINEL", "FAILOVER", "mymaster"]).unwrap(), "OK");
    let statuses = load.await.unwrap();
    assert!(statuses.len() > 100, "load ran ({} requests)", statuses.len());
    assert!(statuses.iter().all(|s| *s < 500), "no 5xx during failover");

    // The service follows Sentinel to the new primary without a restart.
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    let link = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis")
        .unwrap()
        .clone();
    assert_eq!(link["target"], format!("127.0.0.1:{}", replica.port()), "{ready}");
    let text = app.metrics().await;
    let decided: f64 = ["allowed", "degraded"]
        .iter()
        .map(|d| {
            series_value(
                &text,
                &[
                    "ratelimit_decisions_total{",
                    "route=\"/api/v1/eligibility/check\"",
                    &format!("decision=\"{d}\""),
                ],
            )
        })
        .sum();
    assert_eq!(
        decided as usize,
        statuses.len(),
        "every request was decided (through Redis or degraded)"
    );
    let degraded = series_value(&text, &["ratelimit_decisions_total{", "decision=\"degraded\""]);
    eprintln!("failover: {} requests, {degraded} degraded decisions", statuses.len());
    // Errors stop: the count is flat over a later interval.
    let errors = |t: &str| -> f64 {
        ["connect", "eval", "timeout"]
            .iter()
            .map(|op| series_value(t, &["limiter_redis_errors_total{", &format!("op=\"{op}\"")]))
            .sum()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = errors(&app.metrics().await);
    for _ in 0..50 {
        app.client.post(app.url("/api/v1/eligibility/check")).json(&serde_json::json!({"gpa": 3.5, "level": "masters", "field_of_study": "law", "residency": "DE", "scholarship_ids": []})).send().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        errors(&app.metrics().await),
        before,
        "limiter_redis_errors_total stopped increasing"
    );

    // Exact again, on the new primary.
    assert!(replica.cli(&["ROLE"]).unwrap().starts_with("master"));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = app
            .client
            .get(app.url(CATALOGUE))
            .header("x-forwarded-for", "203.0.113.50")
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
    }
    assert!(statuses[..5].iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        replica.cli(&["GET", "rate:app:catalogue:ip:203.0.113.50"]).unwrap(),
        "6"
    );
}

//! The Prometheus provider against a real Prometheus (Debian package) scraping a small
//! exporter served by this test: the built-in SLI queries, no data, and errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use canary_core::Reading;
use canary_operator::provider::prometheus::PrometheusProvider;
use canary_operator::provider::{MetricProvider, Query, Sli, Wanted};

/// Counters grow linearly with time, so every rate is known exactly.
fn exposition(t: f64) -> String {
    let c = |per_sec: f64| per_sec * t;
    let mut s = String::new();
    s.push_str("# TYPE http_requests_total counter\n");
    s.push_str(&format!(
        "http_requests_total{{track=\"canary\",route=\"/s\",method=\"GET\",status=\"200\"}} {}\n",
        c(99.0)
    ));
    s.push_str(&format!(
        "http_requests_total{{track=\"canary\",route=\"/s\",method=\"GET\",status=\"500\"}} {}\n",
        c(1.0)
    ));
    s.push_str(&format!(
        "http_requests_total{{track=\"stable\",route=\"/s\",method=\"GET\",status=\"500\"}} {}\n",
        c(50.0)
    ));
    // Latency: 90 % under 0.1 s, 8 % in (0.1, 0.22], 2 % in (0.22, 0.25]: p95 interpolates
    // inside (0.1, 0.22] at 5/8 of the way: 0.1 + 0.12 * 0.625 = 0.175 s.
    s.push_str("# TYPE http_request_duration_seconds histogram\n");
    for (le, per_sec) in [("0.1", 90.0), ("0.22", 98.0), ("0.25", 100.0), ("+Inf", 100.0)] {
        s.push_str(&format!(
            "http_request_duration_seconds_bucket{{track=\"canary\",route=\"/s\",method=\"GET\",le=\"{le}\"}} {}\n",
            c(per_sec)
        ));
    }
    s.push_str(&format!(
        "http_request_duration_seconds_count{{track=\"canary\",route=\"/s\",method=\"GET\"}} {}\n",
        c(100.0)
    ));
    s.push_str("# TYPE ratelimit_decisions_total counter\n");
    for (decision, principal, per_sec) in [
        ("allowed", "user", 98.0),
        ("limited", "user", 2.0),
        ("limited", "tester", 50.0),
    ] {
        s.push_str(&format!(
            "ratelimit_decisions_total{{track=\"canary\",route=\"/s\",decision=\"{decision}\",principal=\"{principal}\"}} {}\n",
            c(per_sec)
        ));
    }
    s.push_str("# TYPE db_pool_connections gauge\n");
    s.push_str("db_pool_connections{track=\"canary\",state=\"in_use\"} 6\n");
    s.push_str("db_pool_connections{track=\"canary\",state=\"idle\"} 2\n");
    s.push_str("# TYPE db_pool_max_connections gauge\ndb_pool_max_connections{track=\"canary\"} 10\n");
    // Recommendations: 3/s from the model, 1/s fallback (timed out), 1/s error (refused by
    // the model: the rule-based ranking all the same), and 5/s with the model disabled, which
    // are not failures: the fallback rate is (1 + 1) / (3 + 1 + 1) = 0.4.
    s.push_str("# TYPE openai_requests_total counter\n");
    for (outcome, per_sec) in [("ok", 3.0), ("fallback", 1.0), ("error", 1.0), ("disabled", 5.0)] {
        s.push_str(&format!(
            "openai_requests_total{{track=\"canary\",outcome=\"{outcome}\"}} {}\n",
            c(per_sec)
        ));
    }
    // The API's own Redis round trips: all under 2 ms, 50 % under 1 ms: p95 = 1.9 ms.
    s.push_str("# TYPE redis_command_duration_seconds histogram\n");
    for (le, per_sec) in [("0.001", 50.0), ("0.002", 100.0), ("+Inf", 100.0)] {
        s.push_str(&format!(
            "redis_command_duration_seconds_bucket{{track=\"canary\",command=\"evalsha\",le=\"{le}\"}} {}\n",
            c(per_sec)
        ));
    }
    // No limiter_redis_errors_total: never incremented.
    s
}

async fn exporter() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let start = Instant::now();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { exposition(start.elapsed().as_secs_f64() + 1000.0) }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn value(r: &Reading) -> f64 {
    match r {
        Reading::Value { value, .. } => *value,
        other => panic!("expected a value, got {other:?}"),
    }
}

fn close(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_slis_no_data_and_errors_against_real_prometheus() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let target = exporter().await;
        let prom =
            testkit::Prometheus::start_labelled(&[target], Duration::from_millis(500), &[("namespace", "team-a")])
                .unwrap();
        let http = reqwest::Client::new();
        let provider = PrometheusProvider::new(http.clone(), &prom.url(), Duration::from_secs(2));
        let window = Duration::from_secs(4);
        let mut wanted = Wanted::default();
        for s in Sli::ALL {
            wanted.criteria.push((s.name().to_owned(), Query::Builtin(s)));
        }
        wanted
            .gates
            .push(("custom.bad".into(), Query::PromQl("sum(rate(".into())));
        wanted
            .gates
            .push(("custom.many".into(), Query::PromQl("http_requests_total".into())));
        wanted
            .gates
            .push(("custom.absent".into(), Query::PromQl("sum(nothing_here)".into())));

        // Poll: the first samples appear after a couple of scrapes.
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = loop {
            let r = provider.read(&wanted, window).await;
            let ready = matches!(r.criteria["availability"], Reading::Value { samples, .. } if samples >= 300);
            if ready {
                break r;
            }
            assert!(Instant::now() < deadline, "no data from Prometheus in time: {r:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let c = &r.criteria;
        assert!(close(value(&c["availability"]), 0.99, 0.002), "{:?}", c["availability"]);
        assert!(close(value(&c["errorRate5xx"]), 0.01, 0.002), "{:?}", c["errorRate5xx"]);
        assert!(close(value(&c["p95LatencyMs"]), 175.0, 5.0), "{:?}", c["p95LatencyMs"]);
        assert!(
            close(value(&c["rateLimited429"]), 0.02, 0.002),
            "testers excluded: {:?}",
            c["rateLimited429"]
        );
        assert!(
            close(value(&c["dbPoolUtilization"]), 0.6, 1e-9),
            "{:?}",
            c["dbPoolUtilization"]
        );
        // A counter that does not exist is zero errors, not missing data...
        assert_eq!(value(&c["limiterRedisErrors"]), 0.0);
        assert!(
            close(value(&c["openaiFallbackRate"]), 0.4, 0.01),
            "model disabled is left out: {:?}",
            c["openaiFallbackRate"]
        );
        assert!(
            close(value(&c["redisP95LatencyMs"]), 1.9, 0.05),
            "{:?}",
            c["redisP95LatencyMs"]
        );
        // Samples: canary requests in the window (100/s over 4 s, extrapolated).
        let Reading::Value { samples, .. } = c["availability"] else {
            unreachable!()
        };
        assert!((300..=500).contains(&samples), "samples {samples}");
        assert_eq!(r.gates["custom.absent"], Reading::NoData);
        assert!(
            matches!(&r.gates["custom.bad"], Reading::Error(e) if e.contains("bad_data")),
            "{:?}",
            r.gates["custom.bad"]
        );
        assert!(
            matches!(&r.gates["custom.many"], Reading::Error(e) if e.contains("series")),
            "{:?}",
            r.gates["custom.many"]
        );

        // `spec.metrics.prometheus.labels` narrow every built-in query: the workload's own
        // namespace reads the same values, another namespace reads nothing.
        let mut narrowed = wanted.clone();
        narrowed.labels = [("namespace".to_owned(), "team-a".to_owned())].into();
        let own = provider.read(&narrowed, window).await;
        assert!(
            close(value(&own.criteria["errorRate5xx"]), 0.01, 0.002),
            "{:?}",
            own.criteria
        );
        narrowed.labels = [("namespace".to_owned(), "team-b".to_owned())].into();
        let other = provider.read(&narrowed, window).await;
        assert_eq!(other.criteria["errorRate5xx"], Reading::NoData, "{:?}", other.criteria);
        assert_eq!(other.criteria["p95LatencyMs"], Reading::NoData);

        // Unreachable Prometheus: errors, not no data.
        let port = testkit::free_port();
        let down = PrometheusProvider::new(http, &format!("http://127.0.0.1:{port}"), Duration::from_millis(500));
        let r = down.read(&wanted, window).await;
        assert!(
            matches!(&r.criteria["availability"], Reading::Error(_)),
            "{:?}",
            r.criteria["availability"]
        );
    })
    .await
    .expect("test timed out");
}

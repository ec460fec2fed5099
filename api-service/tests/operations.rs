//! Health, readiness, metrics, OpenAPI and the cross-cutting HTTP behaviour.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestApp, series_value};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::start().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let names: Vec<_> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["migrations", "database", "draining"]);
}

#[tokio::test]
async fn readiness_fails_with_a_reason_when_the_database_is_unreachable() {
    let port = testkit::free_port();
    let url = format!("postgres://nobody@127.0.0.1:{port}/none");
    let config = <scholarship_api::config::Config as clap::Parser>::try_parse_from([
        "scholarship-api",
        "--database-url",
        &url,
        "--insecure-no-auth",
    ])
    .unwrap();
    let state = std::sync::Arc::new(scholarship_api::state::AppState::new(config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, scholarship_api::app(state)).await });
    let r = common::client().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"][1]["ok"], false);
    assert!(!body["checks"][1]["reason"].as_str().unwrap().is_empty());
    // Liveness is independent of the database.
    let r = common::client().get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_follow_the_contract() {
    let app = TestApp::start_with(&["--track", "canary"]).await;
    app.get("/api/v1/scholarships").await;
    app.get("/api/v1/scholarships/not-a-uuid").await;
    let text = app.metrics().await;
    for family in [
        "# TYPE http_requests counter",
        "# TYPE http_request_duration_seconds histogram",
        "# TYPE openai_requests counter",
        "# TYPE db_pool_connections gauge",
        "# TYPE db_pool_max_connections gauge",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
    let ok = series_value(
        &text,
        &[
            "http_requests_total{",
            "track=\"canary\"",
            "route=\"/api/v1/scholarships\"",
            "method=\"GET\"",
            "status=\"200\"",
        ],
    );
    assert_eq!(ok, 1.0);
    let bad = series_value(
        &text,
        &[
            "http_requests_total{",
            "route=\"/api/v1/scholarships/{id}\"",
            "status=\"400\"",
        ],
    );
    assert_eq!(bad, 1.0);
    for bucket in ["le=\"0.22\"", "le=\"0.25\""] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("http_request_duration_seconds_bucket{") && l.contains(bucket)),
            "bucket {bucket}"
        );
    }
    assert!(
        text.contains("db_pool_connections{track=\"canary\",state=\"in_use\"}") || text.contains("state=\"in_use\"")
    );
    assert_eq!(
        series_value(&text, &["db_pool_max_connections{", "track=\"canary\""]),
        20.0
    );
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.contains("track=\"canary\"")),
        "every series carries track"
    );
}

#[tokio::test]
async fn openapi_covers_every_route_and_the_error_body() {
    let app = TestApp::start().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/scholarships", "get"),
        ("/api/v1/scholarships/{id}", "get"),
        ("/api/v1/eligibility/check", "post"),
        ("/api/v1/recommendations", "get"),
        ("/api/v1/applications", "post"),
        ("/api/v1/applications/{id}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} undocumented"
        );
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let disabled = &paths["/api/v1/recommendations"]["get"]["responses"]["404"];
    assert!(disabled["description"].as_str().unwrap().contains("feature_disabled"));
}

#[tokio::test]
async fn correlation_ids_security_headers_and_cors() {
    let app = TestApp::start_with(&["--cors-allowed-origins", "https://students.example"]).await;
    let r = app
        .client
        .get(app.url("/api/v1/scholarships"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.headers().contains_key("content-security-policy"));

    let r = app
        .client
        .get(app.url("/healthz"))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let generated = app.get("/healthz").await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 36);

    let allowed = app
        .client
        .get(app.url("/api/v1/scholarships"))
        .header("origin", "https://students.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://students.example"
    );
    let other = app
        .client
        .get(app.url("/api/v1/scholarships"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

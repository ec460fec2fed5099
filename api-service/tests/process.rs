//! The real binary: configuration errors, PII-free logs, graceful shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BinaryApp, ModelBehaviour, ModelStandIn, client};
use reqwest::StatusCode;
use serde_json::json;

#[test]
fn bad_configuration_exits_non_zero_with_one_line_naming_the_option() {
    for (args, option) in [
        (vec!["--database-url", "not a url"], "--database-url"),
        (vec!["--database-url", "postgres://db/x", "--track", "blue"], "--track"),
        (
            vec!["--database-url", "postgres://db/x", "--openai-base-url", "ftp://x"],
            "--openai-base-url",
        ),
        (
            vec!["--database-url", "postgres://db/x", "--cors-allowed-origins", "*"],
            "--cors-allowed-origins",
        ),
        // A typo in an endpoint name is an error naming it, not a rule that silently applies to nothing.
        (
            vec![
                "--database-url",
                "postgres://db/x",
                "--rate-limits",
                "catalog=10/1m,default=60/1m",
            ],
            "--rate-limits",
        ),
        (
            vec![
                "--database-url",
                "postgres://db/x",
                "--single-use-endpoints",
                "applications,aplications-read",
            ],
            "--single-use-endpoints",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_scholarship-api"))
            .args(&args)
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(option), "{stderr}");
        if option.contains("endpoints") || option.contains("rate-limits") {
            assert!(stderr.contains("unknown endpoint"), "{stderr}");
        }
    }
    let help = Command::new(env!("CARGO_BIN_EXE_scholarship-api"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for option in [
        "--database-url",
        "--track",
        "--openai-timeout-ms",
        "--cors-allowed-origins",
        "--body-limit-bytes",
    ] {
        assert!(help.contains(option), "--help documents {option}");
    }
}

#[tokio::test]
async fn personal_data_never_reaches_the_logs() {
    let app = BinaryApp::start(&["--log-filter", "debug"]).await;
    let http = client();
    let page: serde_json::Value = http
        .get(format!(
            "{}/api/v1/scholarships?deadline_after=2027-06-01&page_size=1",
            app.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let scholarship = page["items"][0]["id"].as_str().unwrap();
    let pii = [
        "Grace Brewster Hopper",
        "grace.hopper@navy.example",
        "1906-12-09",
        "My secret essay about COBOL",
    ];
    let body = json!({
        "scholarship_id": scholarship,
        "applicant": {"full_name": pii[0], "email": pii[1], "date_of_birth": "1990-12-09", "residency": "US", "gpa": 3.9},
        "essay": pii[3],
    });
    let r = http
        .post(format!("{}/api/v1/applications", app.base))
        .header("idempotency-key", "pii-1")
        .header("x-request-id", "pii-test")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Invalid data is echoed nowhere either, not even in validation logs.
    let mut bad = body.clone();
    bad["applicant"]["date_of_birth"] = json!(pii[2]);
    bad["applicant"]["email"] = json!(format!("{} at example", pii[1]));
    let r = http
        .post(format!("{}/api/v1/applications", app.base))
        .header("idempotency-key", "pii-2")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = http
        .post(format!("{}/api/v1/applications", app.base))
        .header("idempotency-key", "pii-3")
        .header("content-type", "application/json")
        .body(format!("{{\"essay\": \"{}\"", pii[3]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = app.logs();
    assert!(
        logs.contains("\"request_id\":\"pii-test\""),
        "correlation id in the access log:\n{logs}"
    );
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every line is JSON:\n{logs}"
    );
    for secret in pii.iter().chain(["Hopper", "navy.example", "COBOL"].iter()) {
        assert!(!logs.contains(secret), "{secret} leaked into the logs:\n{logs}");
    }
}

#[tokio::test]
async fn sigterm_drains_readiness_first_and_finishes_in_flight_requests() {
    let model = ModelStandIn::start(ModelBehaviour::Answer {
        content: "{\"ranking\": []}".into(),
        delay: Duration::from_millis(1500),
    })
    .await;
    let mut app = BinaryApp::start(&[
        "--openai-base-url",
        &model.base_url,
        "--openai-timeout-ms",
        "2000",
        "--shutdown-drain-ms",
        "600",
    ])
    .await;
    let http = client();
    let slow = tokio::spawn({
        let url = format!(
            "{}/api/v1/recommendations?gpa=3.9&level=masters&field_of_study=law&residency=US",
            app.base
        );
        let http = http.clone();
        async move { http.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.process.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let ready = http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while draining"
    );

    let answered = slow.await.unwrap().unwrap();
    assert_eq!(answered.status(), StatusCode::OK, "the in-flight request completed");
    let status = tokio::task::spawn_blocking(move || app.process.wait_timeout(Duration::from_secs(10)).unwrap())
        .await
        .unwrap()
        .expect("exited after draining");
    assert!(status.success(), "{status:?}");
}

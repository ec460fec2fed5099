//! `POST /api/v1/applications` idempotency, through HTTP against a real PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{TestApp, eventually, series_value};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn open_scholarship(app: &TestApp) -> String {
    let page: Value = app
        .get("/api/v1/scholarships?deadline_after=2027-06-01&page_size=1")
        .await
        .json()
        .await
        .unwrap();
    page["items"][0]["id"].as_str().unwrap().to_owned()
}

fn form(scholarship_id: &str, essay: &str) -> Value {
    json!({
        "scholarship_id": scholarship_id,
        "applicant": {"full_name": "Ada Lovelace", "email": "ada@example.org", "date_of_birth": "2001-12-10",
                      "residency": "GB", "gpa": 3.8},
        "essay": essay,
    })
}

async fn post(app: &TestApp, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = app.client.post(app.url("/api/v1/applications")).json(body);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.send().await.unwrap()
}

fn rows(app: &TestApp) -> i64 {
    app.sql("SELECT count(*) FROM applications").parse().unwrap()
}

#[tokio::test]
async fn missing_key_is_400() {
    let app = TestApp::start().await;
    let id = open_scholarship(&app).await;
    let r = post(&app, None, &form(&id, "essay")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "idempotency_key_missing");
    assert_eq!(rows(&app), 0);
}

#[tokio::test]
async fn same_key_same_body_replays_byte_identical_without_a_second_row() {
    let app = TestApp::start().await;
    let id = open_scholarship(&app).await;
    let first = post(&app, Some("key-1"), &form(&id, "My essay.")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.bytes().await.unwrap();

    // Same content, different formatting and key order: still the same request.
    let reordered = serde_json::to_string_pretty(&form(&id, "My essay.")).unwrap();
    let second = app
        .client
        .post(app.url("/api/v1/applications"))
        .header("idempotency-key", "key-1")
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["location"], location.as_str());
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.bytes().await.unwrap(), first_body, "byte-identical replay");
    assert_eq!(rows(&app), 1);

    let stored: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(stored["essay"], "My essay.");
    assert_eq!(stored["applicant"]["email"], "ada@example.org");
}

#[tokio::test]
async fn same_key_other_body_is_422() {
    let app = TestApp::start().await;
    let id = open_scholarship(&app).await;
    assert_eq!(
        post(&app, Some("key-2"), &form(&id, "one")).await.status(),
        StatusCode::CREATED
    );
    let r = post(&app, Some("key-2"), &form(&id, "two")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "idempotency_key_reused");
    assert_eq!(rows(&app), 1);
}

#[tokio::test]
async fn concurrent_duplicates_create_exactly_one_row() {
    let app = TestApp::start().await;
    let id = open_scholarship(&app).await;
    let body = form(&id, "Concurrent essay.");
    let responses = futures::future::join_all((0..16).map(|_| post(&app, Some("burst"), &body))).await;
    let mut created_bodies = HashSet::new();
    let mut conflicts = 0;
    for r in responses {
        match r.status() {
            StatusCode::CREATED => {
                created_bodies.insert(r.bytes().await.unwrap());
            }
            StatusCode::CONFLICT => {
                assert!(r.headers().contains_key("retry-after"));
                assert_eq!(r.json::<Value>().await.unwrap()["code"], "idempotency_key_in_flight");
                conflicts += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created_bodies.len(), 1, "every 201 is the same response");
    assert!(conflicts < 16);
    assert_eq!(rows(&app), 1);
}

#[tokio::test]
async fn a_request_in_flight_gets_409_and_an_abandoned_one_is_taken_over() {
    let app = TestApp::start().await;
    let id = open_scholarship(&app).await;
    let body = form(&id, "In flight.");
    // Reserve the key as a concurrent first request would (same fingerprint), then retry.
    let first = post(&app, Some("held"), &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    app.sql(
        "UPDATE idempotency_keys SET state = 'in_flight', response_status = NULL, response_body = NULL, \
             locked_until = now() + interval '1 minute' WHERE key = 'held'",
    );
    app.sql("DELETE FROM applications");
    let r = post(&app, Some("held"), &body).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // The holder died: once its lease is over, the retry proceeds.
    app.sql("UPDATE idempotency_keys SET locked_until = now() - interval '1 second' WHERE key = 'held'");
    let r = post(&app, Some("held"), &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(rows(&app), 1);
}

#[tokio::test]
async fn keys_expire_after_24_hours() {
    let app = TestApp::start().await;
    let id = open_scholarship(&app).await;
    assert_eq!(
        post(&app, Some("old"), &form(&id, "first")).await.status(),
        StatusCode::CREATED
    );
    app.sql("UPDATE idempotency_keys SET created_at = now() - interval '24 hours 1 minute'");
    let r = post(&app, Some("old"), &form(&id, "a new body is fine now")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(rows(&app), 2);
}

#[tokio::test]
async fn invalid_forms_are_422_naming_every_field_and_release_nothing() {
    let app = TestApp::start().await;
    let body = json!({
        "scholarship_id": "nope",
        "applicant": {"full_name": "", "email": "not-an-email", "date_of_birth": "2020-01-01", "residency": "GB", "gpa": 5},
    });
    let r = post(&app, Some("bad"), &body).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = r.json().await.unwrap();
    let fields: Vec<_> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "scholarship_id",
            "applicant.full_name",
            "applicant.email",
            "applicant.date_of_birth",
            "applicant.gpa",
            "essay"
        ]
    );
    // An unknown scholarship is refused after reservation; the key is given back.
    let r = post(&app, Some("bad"), &form("5f0c6d1e-0000-4000-8000-000000000000", "x")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.sql("SELECT count(*) FROM idempotency_keys"), "0");
    assert_eq!(rows(&app), 0);
}

#[tokio::test]
async fn applications_are_read_back_and_unknown_ids_are_404() {
    let app = TestApp::start().await;
    let r = app
        .get("/api/v1/applications/5f0c6d1e-0000-4000-8000-000000000000")
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.get("/api/v1/applications/123").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Read back from memory while PostgreSQL's change feed is up, and every change made outside
/// the API (a status set by the back office, a deletion) shows within moments.
#[tokio::test]
async fn read_backs_follow_changes_made_in_the_database() {
    let app = TestApp::start().await;
    // The change feed is up (it carries the applications' notifications too): reads are cached.
    eventually(|| async { (series_value(&app.metrics().await, &["catalogue_in_memory"]) == 1.0).then_some(()) }).await;
    let scholarship = open_scholarship(&app).await;
    let created: Value = post(&app, Some("cache-1"), &form(&scholarship, "Cached essay."))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/applications/{}", created["id"].as_str().unwrap());
    let wait = |want: &'static str| {
        let (app, path) = (&app, path.clone());
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            loop {
                let r = app.get(&path).await;
                let got = match r.status() {
                    StatusCode::OK => r.json::<Value>().await.unwrap()["status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    other => other.as_u16().to_string(),
                };
                if got == want {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "read back {got}, want {want}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let first: Value = app.get(&path).await.json().await.unwrap();
    let again: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(first, again);
    let status = first["status"].as_str().unwrap().to_owned();
    assert_ne!(status, "accepted");
    app.sql(&format!(
        "UPDATE applications SET status = 'accepted' WHERE id = '{}'",
        created["id"].as_str().unwrap()
    ));
    wait("accepted").await;
    app.sql(&format!(
        "DELETE FROM applications WHERE id = '{}'",
        created["id"].as_str().unwrap()
    ));
    wait("404").await;
}

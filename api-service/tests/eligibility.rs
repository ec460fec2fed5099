//! `POST /api/v1/eligibility/check` and the JSON body rules shared by every write.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn profile() -> Value {
    json!({"gpa": 3.9, "level": "masters", "field_of_study": "computer-science", "residency": "DE"})
}

#[tokio::test]
async fn every_verdict_comes_with_its_reasons() {
    let app = TestApp::start().await;
    let r = app
        .client
        .post(app.url("/api/v1/eligibility/check"))
        .json(&profile())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert!(results.len() >= 200, "judged against the whole catalogue");
    let eligible = results.iter().filter(|v| v["eligible"] == true).count();
    assert_eq!(body["eligible_count"], eligible);
    assert!(eligible > 0 && eligible < results.len());
    for verdict in results {
        let reasons = verdict["reasons"].as_array().unwrap();
        let criteria: Vec<_> = reasons.iter().map(|r| r["criterion"].as_str().unwrap()).collect();
        assert_eq!(criteria, ["gpa", "level", "field_of_study", "residency", "deadline"]);
        let all_passed = reasons.iter().all(|r| r["passed"] == true);
        assert_eq!(verdict["eligible"], all_passed);
    }
}

#[tokio::test]
async fn narrows_to_given_ids_and_eligible_only() {
    let app = TestApp::start().await;
    let page: Value = app.get("/api/v1/scholarships?page_size=3").await.json().await.unwrap();
    let ids: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    let mut body = profile();
    body["scholarship_ids"] = json!(ids);
    let r: Value = app
        .client
        .post(app.url("/api/v1/eligibility/check"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"].as_array().unwrap().len(), 3);

    let mut body = profile();
    body["only_eligible"] = json!(true);
    let r: Value = app
        .client
        .post(app.url("/api/v1/eligibility/check"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["results"].as_array().unwrap().iter().all(|v| v["eligible"] == true));
}

#[tokio::test]
async fn invalid_profile_is_422_naming_every_bad_field() {
    let app = TestApp::start().await;
    let body = json!({"gpa": 4.5, "level": "phd", "residency": "germany", "scholarship_ids": ["x"], "extra": 1});
    let r = app
        .client
        .post(app.url("/api/v1/eligibility/check"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "validation_failed");
    let mut fields: Vec<_> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "extra",
            "field_of_study",
            "gpa",
            "level",
            "residency",
            "scholarship_ids[0]"
        ]
    );
}

#[tokio::test]
async fn malformed_bodies_get_precise_statuses() {
    let app = TestApp::start().await;
    let url = app.url("/api/v1/eligibility/check");
    let send = |body: Vec<u8>, content_type: &'static str| {
        app.client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = send(b"{\"gpa\": 3.1,".to_vec(), "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "malformed_body");

    let r = send(b"[1, 2]".to_vec(), "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = send(b"gpa=3".to_vec(), "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unsupported_media_type");

    let mut big = profile();
    big["padding"] = json!("x".repeat(70 * 1024));
    let r = send(serde_json::to_vec(&big).unwrap(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "payload_too_large");
}

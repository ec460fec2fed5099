//! `GET /api/v1/recommendations` against a stand-in OpenAI endpoint: model order, slow model,
//! failing model, unusable answers, and the feature flag.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ModelBehaviour, ModelStandIn, TestApp, series_value};
use reqwest::StatusCode;
use serde_json::Value;

const PROFILE: &str = "/api/v1/recommendations?gpa=3.9&level=masters&field_of_study=computer-science&residency=US";

async fn app_with_model(model: &ModelStandIn) -> TestApp {
    TestApp::start_with(&[
        "--openai-base-url",
        &model.base_url,
        "--openai-timeout-ms",
        "300",
        "--openai-api-key",
        "sk-test",
    ])
    .await
}

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["scholarship"]["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn rules_order() -> Vec<String> {
    let app = TestApp::start().await;
    let body: Value = app.get(PROFILE).await.json().await.unwrap();
    assert_eq!(body["source"], "rules");
    ids(&body)
}

#[tokio::test]
async fn the_model_reorders_the_shortlist() {
    let rules = rules_order().await;
    assert!(rules.len() >= 2, "profile must match several scholarships");
    let reversed: Vec<_> = rules.iter().rev().cloned().collect();
    let content = serde_json::json!({"ranking": reversed}).to_string();
    let model = ModelStandIn::start(ModelBehaviour::Answer {
        content,
        delay: Duration::ZERO,
    })
    .await;
    let app = app_with_model(&model).await;

    let body: Value = app.get(PROFILE).await.json().await.unwrap();
    assert_eq!(body["source"], "model");
    assert_eq!(ids(&body), reversed);
    assert_eq!(
        series_value(&app.metrics().await, &["openai_requests_total{", "outcome=\"ok\""]),
        1.0
    );
    let call = model.calls.lock().unwrap()[0].clone();
    assert_eq!(call["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn a_slow_model_falls_back_to_rules_within_the_timeout() {
    let rules = rules_order().await;
    let model = ModelStandIn::start(ModelBehaviour::Answer {
        content: "{}".into(),
        delay: Duration::from_secs(3),
    })
    .await;
    let app = app_with_model(&model).await;
    let started = std::time::Instant::now();
    let r = app.get(PROFILE).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the 300 ms model timeout"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["source"], "rules");
    assert_eq!(ids(&body), rules);
    assert_eq!(
        series_value(
            &app.metrics().await,
            &["openai_requests_total{", "outcome=\"fallback\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn an_erroring_model_falls_back_to_rules() {
    let model = ModelStandIn::start(ModelBehaviour::Fail(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let app = app_with_model(&model).await;
    let r = app.get(PROFILE).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["source"], "rules");
    assert_eq!(
        series_value(&app.metrics().await, &["openai_requests_total{", "outcome=\"error\""]),
        1.0
    );
}

#[tokio::test]
async fn unusable_model_output_falls_back_to_rules() {
    let model = ModelStandIn::start(ModelBehaviour::Answer {
        content: "Sure! The best one is the first.".into(),
        delay: Duration::ZERO,
    })
    .await;
    let app = app_with_model(&model).await;
    let body: Value = app.get(PROFILE).await.json().await.unwrap();
    assert_eq!(body["source"], "rules");
    assert_eq!(
        series_value(
            &app.metrics().await,
            &["openai_requests_total{", "outcome=\"fallback\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn feature_flag_off_answers_feature_disabled() {
    let app = TestApp::start_with(&["--recommendations-enabled", "false"]).await;
    let r = app.get(PROFILE).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "feature_disabled");
    assert_eq!(
        series_value(
            &app.metrics().await,
            &["openai_requests_total{", "outcome=\"disabled\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn profile_parameters_are_validated() {
    let app = TestApp::start().await;
    let r = app
        .get("/api/v1/recommendations?gpa=9&level=masters&residency=US&limit=0")
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    let fields: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["gpa", "field_of_study", "limit"]);
}

//! The public catalogue through HTTP against a real PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{TestApp, eventually, series_value};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn pages_through_the_whole_seeded_catalogue_in_stable_order() {
    let app = TestApp::start().await;
    let first: Value = app.get("/api/v1/scholarships").await.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 20, "default page size");
    assert_eq!(first["page_size"], 20);

    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    let mut next = Some("/api/v1/scholarships?page_size=100".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let page: Value = app.get(&path).await.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_owned()),
                "duplicate across pages"
            );
            keys.push((
                item["deadline"].as_str().unwrap().to_owned(),
                item["id"].as_str().unwrap().to_owned(),
            ));
        }
        next = page["links"]["next"].as_str().map(str::to_owned);
        pages += 1;
        assert!(pages < 10, "pagination does not terminate");
    }
    assert!(seen.len() >= 200, "seed catalogue has {} scholarships", seen.len());
    assert_eq!(pages, 3);
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "order is (deadline, id)");
}

#[tokio::test]
async fn filters_combine() {
    let app = TestApp::start().await;
    let r = app
        .get("/api/v1/scholarships?field_of_study=law&level=masters&min_amount=10000&deadline_after=2027-01-01&page_size=100")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for s in items {
        assert_eq!(s["field_of_study"], "law");
        assert_eq!(s["level"], "masters");
        assert!(s["amount_usd"].as_i64().unwrap() >= 10_000);
        assert!(s["deadline"].as_str().unwrap() > "2027-01-01");
    }
    let by_country: Value = app
        .get("/api/v1/scholarships?country=JP&page_size=100")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        by_country["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["country"] == "JP")
    );
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_the_parameter() {
    let app = TestApp::start().await;
    for (query, field) in [
        ("page_size=101", "page_size"),
        ("page_size=0", "page_size"),
        ("level=phd", "level"),
        ("deadline_after=tomorrow", "deadline_after"),
        ("min_amount=lots", "min_amount"),
        ("cursor=garbage", "cursor"),
        ("colour=blue", "colour"),
        ("level=masters&level=doctoral", "level"),
    ] {
        let r = app.get(&format!("/api/v1/scholarships?{query}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_parameter", "{query}");
        assert!(body["detail"].as_str().unwrap().contains(field), "{query}: {body}");
    }
}

#[tokio::test]
async fn etags_give_304_and_public_caching() {
    let app = TestApp::start().await;
    let page: Value = app.get("/api/v1/scholarships").await.json().await.unwrap();
    let item = format!("/api/v1/scholarships/{}", page["items"][0]["id"].as_str().unwrap());
    for path in ["/api/v1/scholarships?level=doctoral".to_owned(), item] {
        let first = app.get(&path).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()["cache-control"], "public, max-age=60");
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        let again = app
            .client
            .get(app.url(&path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()["etag"], etag.as_str());
        assert!(again.bytes().await.unwrap().is_empty());
        let weak = app
            .client
            .get(app.url(&path))
            .header("if-none-match", format!("\"x\", W/{etag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
        let other = app
            .client
            .get(app.url(&path))
            .header("if-none-match", "\"other\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn changed_data_changes_the_etag() {
    let app = TestApp::start().await;
    let page: Value = app.get("/api/v1/scholarships").await.json().await.unwrap();
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/scholarships/{id}");
    let etag = app.get(&path).await.headers()["etag"].to_str().unwrap().to_owned();
    app.sql(&format!(
        "UPDATE scholarships SET amount_usd = amount_usd + 1, updated_at = now() WHERE id = '{id}'"
    ));
    // The in-memory catalogue reloads on PostgreSQL's notification, milliseconds after commit.
    let fresh = eventually(|| async {
        let r = app
            .client
            .get(app.url(&path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        (r.status() == StatusCode::OK).then_some(r)
    })
    .await;
    assert_ne!(fresh.headers()["etag"].to_str().unwrap(), etag);
}

/// Served from memory while PostgreSQL's change feed is up; every insert, update and delete
/// shows within moments; a cut feed comes back with a fresh load.
#[tokio::test]
async fn the_catalogue_in_memory_follows_every_write_and_reloads_when_the_feed_comes_back() {
    let app = TestApp::start().await;
    eventually(|| async { (series_value(&app.metrics().await, &["catalogue_in_memory"]) == 1.0).then_some(()) }).await;
    let page: Value = app.get("/api/v1/scholarships").await.json().await.unwrap();
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/scholarships/{id}");
    let served: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(served["id"], id.as_str());

    // A new row, its change, its deletion: each visible through the API.
    let new = "0b9a8f00-0000-4000-8000-00000000c0de";
    app.sql(&format!(
        "INSERT INTO scholarships (id, name, provider, description, field_of_study, level, country, min_gpa, amount_usd, deadline) \
         SELECT '{new}', 'Fresh award', provider, description, field_of_study, level, country, min_gpa, 1234, deadline \
         FROM scholarships WHERE id = '{id}'"
    ));
    let new_path = format!("/api/v1/scholarships/{new}");
    eventually(|| async { (app.get(&new_path).await.status() == StatusCode::OK).then_some(()) }).await;
    app.sql(&format!("UPDATE scholarships SET amount_usd = 4321 WHERE id = '{new}'"));
    eventually(|| async {
        let body: Value = app.get(&new_path).await.json().await.unwrap();
        (body["amount_usd"] == 4321).then_some(())
    })
    .await;
    app.sql(&format!("DELETE FROM scholarships WHERE id = '{new}'"));
    eventually(|| async { (app.get(&new_path).await.status() == StatusCode::NOT_FOUND).then_some(()) }).await;

    // Cut the feed: the listening backend is terminated, and the feed comes back with a fresh
    // load.
    let db = app.database_url.rsplit('/').next().unwrap().to_owned();
    let reloads = series_value(&app.metrics().await, &["catalogue_reloads_total"]);
    app.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND query ILIKE 'LISTEN%'"
    ));
    eventually(|| async {
        let m = app.metrics().await;
        (series_value(&m, &["catalogue_in_memory"]) == 1.0 && series_value(&m, &["catalogue_reloads_total"]) > reloads)
            .then_some(())
    })
    .await;
    let served: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(served["id"], id.as_str());
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let app = TestApp::start().await;
    let r = app
        .get("/api/v1/scholarships/5f0c6d1e-0000-4000-8000-000000000000")
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["status"], 404);

    let r = app.get("/api/v1/scholarships/not-a-uuid").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "id");

    let r = app.get("/api/v1/no-such-route").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn link_header_points_at_the_next_page() {
    let app = TestApp::start().await;
    let r = app.get("/api/v1/scholarships?level=masters&page_size=5").await;
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.starts_with("</api/v1/scholarships?level=masters&page_size=5&cursor="),
        "{link}"
    );
    assert!(link.ends_with(">; rel=\"next\""));
}

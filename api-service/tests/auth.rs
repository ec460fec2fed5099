//! JWT authentication, JWKS rotation and jti replay protection, against an IdP stand-in and a
//! real Redis on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{BinaryApp, TestApp, client, series_value, wait_redis_connected};
use jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::idp::{Idp, SigningKey, now};
use testkit::{RedisOptions, RedisServer};

const CHECK: &str = "/api/v1/eligibility/check";

fn profile() -> Value {
    json!({"gpa": 3.5, "level": "masters", "field_of_study": "law", "residency": "DE", "scholarship_ids": []})
}

async fn idp() -> Idp {
    Idp::start(vec![
        SigningKey::generate("rsa-1", Algorithm::RS256),
        SigningKey::generate("ec-1", Algorithm::ES256),
        SigningKey::generate("ed-1", Algorithm::EdDSA),
    ])
    .await
}

async fn app(idp: &Idp, redis: Option<&RedisServer>, extra: &[&str]) -> TestApp {
    let mut flags: Vec<String> = idp.flags();
    if let Some(redis) = redis {
        flags.extend(["--redis-url".to_owned(), redis.url()]);
    }
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::start_with(&flags).await;
    if redis.is_some() {
        app.wait_redis_connected().await;
    }
    app
}

async fn check(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url(CHECK))
        .bearer_auth(token)
        .json(&profile())
        .send()
        .await
        .unwrap()
}

async fn reason(r: reqwest::Response) -> (StatusCode, String, String) {
    let status = r.status();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = r.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned(), challenge)
}

/// Every route of the OpenAPI document with every method, and no token. Protected routes
/// answer 401 with a Bearer challenge for each method they serve (HEAD, derived from GET,
/// included) and 405 for the others: no handler runs. Public routes answer as documented.
/// OPTIONS is the CORS preflight everywhere, answered by the CORS layer before any route
/// (empty, and no `Access-Control-Allow-Origin` for an origin that is not listed).
#[tokio::test]
async fn every_route_and_method_without_a_token_fails_closed() {
    let idp = idp().await;
    let app = app(&idp, None, &[]).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let public = [
        "/api/v1/scholarships",
        "/api/v1/scholarships/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ];
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let mut failures = Vec::new();
    let mut protected_checked = 0;
    for (template, operations) in paths {
        // The API's full path: the document lists routes under its server URL.
        let full = if template.starts_with("/api/v1") || public[2..].contains(&template.as_str()) {
            template.clone()
        } else {
            format!("/api/v1{template}")
        };
        let path = full.replace("{id}", "0190a3c2-6f1e-7b3a-9c4d-2e5f6a7b8c9d");
        let served = |m: &str| {
            let m = if m == "HEAD" { "get" } else { m };
            operations.get(m.to_lowercase()).is_some()
        };
        for method in methods {
            let request = app
                .client
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), app.url(&path));
            let response = request.send().await.unwrap();
            let status = response.status();
            let challenge = response.headers().get("www-authenticate").is_some();
            if method == "OPTIONS" {
                let allow_origin = response.headers().get("access-control-allow-origin").is_some();
                let body = response.bytes().await.unwrap();
                if status != StatusCode::OK || allow_origin || !body.is_empty() {
                    failures.push(format!(
                        "{method} {path}: {status}, not the CORS layer's preflight answer"
                    ));
                }
                continue;
            }
            let expected_ok = match (public.contains(&full.as_str()), served(method)) {
                (_, false) => status == StatusCode::METHOD_NOT_ALLOWED,
                (true, true) => status != StatusCode::UNAUTHORIZED && !status.is_server_error(),
                (false, true) => {
                    protected_checked += 1;
                    status == StatusCode::UNAUTHORIZED && challenge
                }
            };
            if !expected_ok {
                failures.push(format!("{method} {path}: {status}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // eligibility, recommendations, applications (POST), applications/{id}: GET/HEAD or POST.
    assert!(
        protected_checked >= 6,
        "walked only {protected_checked} protected route/method pairs"
    );
}

#[tokio::test]
async fn head_needs_the_same_token_as_get() {
    let idp = idp().await;
    let app = app(&idp, None, &[]).await;
    let query = "gpa=3.5&level=masters&field_of_study=computer-science&residency=DE";
    let url = app.url(&format!("/api/v1/recommendations?{query}"));
    let anonymous = app.client.head(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let forged = app.client.head(&url).bearer_auth("a.b.c").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let signed = app
        .client
        .head(&url)
        .bearer_auth(idp.token("rsa-1", "student-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::OK);
}

#[tokio::test]
async fn each_allowed_algorithm_authenticates_and_public_reads_stay_open() {
    let idp = idp().await;
    let app = app(&idp, None, &[]).await;
    for kid in ["rsa-1", "ec-1", "ed-1"] {
        let r = check(&app, &idp.token(kid, "student-1")).await;
        assert_eq!(r.status(), StatusCode::OK, "{kid}");
    }
    assert_eq!(
        app.get("/api/v1/scholarships").await.status(),
        StatusCode::OK,
        "catalogue is public"
    );
    let (status, code, challenge) =
        reason(app.client.post(app.url(CHECK)).json(&profile()).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "token_missing"));
    assert_eq!(challenge, "Bearer realm=\"scholarship-api\"");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_precise_reasons_and_never_a_panic() {
    let idp = idp().await;
    let app = app(&idp, None, &[]).await;
    let claims = Idp::claims("student-2");
    let with = |patch: Value| {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        idp.sign("rsa-1", &c)
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "rsa-1"})), b64(&claims));
    // HS256 "signed" with the RSA public key, the classic key-confusion attack.
    let public_pem = idp.key("rsa-1").jwk.clone();
    let hs_key = jsonwebtoken::EncodingKey::from_secret(serde_json::to_string(&public_pem).unwrap().as_bytes());
    let mut hs_header = jsonwebtoken::Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa-1".into());
    let hs256 = jsonwebtoken::encode(&hs_header, &claims, &hs_key).unwrap();
    let crit = {
        let header = json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]});
        let valid = idp.sign("rsa-1", &claims);
        let parts: Vec<&str> = valid.split('.').collect();
        format!("{}.{}.{}", b64(&header), parts[1], parts[2])
    };
    let tampered = {
        let valid = idp.sign("rsa-1", &claims);
        let parts: Vec<&str> = valid.split('.').collect();
        let mut other = claims.clone();
        other["sub"] = json!("admin");
        format!("{}.{}.{}", parts[0], b64(&other), parts[2])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", alg_none, "token_algorithm_not_allowed"),
        ("HS256 with the public key", hs256, "token_algorithm_not_allowed"),
        ("crit header", crit, "token_malformed"),
        ("tampered payload", tampered, "token_signature_invalid"),
        (
            "wrong iss",
            with(json!({"iss": "https://evil.example"})),
            "token_issuer_invalid",
        ),
        ("wrong aud", with(json!({"aud": "other-api"})), "token_audience_invalid"),
        (
            "expired",
            with(json!({"exp": now() - 3600, "iat": now() - 4000})),
            "token_expired",
        ),
        (
            "not yet valid",
            with(json!({"nbf": now() + 3600})),
            "token_not_yet_valid",
        ),
        (
            "issued in the future",
            with(json!({"iat": now() + 3600, "exp": now() + 3900})),
            "token_not_yet_valid",
        ),
        (
            "lifetime too long",
            with(json!({"exp": now() + 86_400})),
            "token_lifetime_too_long",
        ),
        (
            "no jti",
            {
                let mut c = claims.clone();
                c.as_object_mut().unwrap().remove("jti");
                idp.sign("rsa-1", &c)
            },
            "missing_jti",
        ),
        ("garbage base64", "%%%.@@@.!!!".to_owned(), "token_malformed"),
        ("not a JWT", "abc".to_owned(), "token_malformed"),
    ];
    for (name, token, expected) in cases {
        let r = app
            .client
            .post(app.url(CHECK))
            .header("authorization", format!("Bearer {token}"))
            .json(&profile())
            .send()
            .await
            .unwrap();
        let (status, code, challenge) = reason(r).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(code, expected, "{name}");
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(challenge.contains("error_description="), "{name}");
    }

    let basic = app
        .client
        .post(app.url(CHECK))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&profile())
        .send()
        .await
        .unwrap();
    assert_eq!(reason(basic).await.0, StatusCode::UNAUTHORIZED);
    let token = idp.token("rsa-1", "student-2");
    let twice = app
        .client
        .post(app.url(CHECK))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .json(&profile())
        .send()
        .await
        .unwrap();
    assert_eq!(
        reason(twice).await,
        (StatusCode::UNAUTHORIZED, "token_malformed".into(), twice_challenge())
    );
    let huge = format!("Bearer {}.{}.{}", "a".repeat(6000), "b".repeat(3000), "c");
    let r = app
        .client
        .post(app.url(CHECK))
        .header("authorization", huge)
        .json(&profile())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    // Unknown kid while the IdP is down: refused, and the service keeps serving.
    idp.set_down(true);
    idp.add_key(SigningKey::generate("rsa-new", Algorithm::RS256));
    let (status, code, _) = reason(check(&app, &idp.token("rsa-new", "student-2")).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "token_key_unknown"));
    assert_eq!(
        check(&app, &idp.token("rsa-1", "student-2")).await.status(),
        StatusCode::OK,
        "last good key set kept"
    );

    let text = app.metrics().await;
    for reason in [
        "algorithm",
        "signature",
        "issuer",
        "audience",
        "expired",
        "not_yet_valid",
        "missing_jti",
        "unknown_kid",
    ] {
        assert!(
            series_value(&text, &["jwt_rejected_total{", &format!("reason=\"{reason}\"")]) >= 1.0,
            "{reason}"
        );
    }
}

fn twice_challenge() -> String {
    "Bearer realm=\"scholarship-api\", error=\"invalid_token\", error_description=\"the token is malformed\"".into()
}

#[tokio::test]
async fn a_token_used_twice_in_parallel_passes_once() {
    let idp = idp().await;
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let app = app(&idp, Some(&redis), &[]).await;
    for _ in 0..5 {
        let token = idp.token("ec-1", "student-3");
        let (a, b) = tokio::join!(check(&app, &token), check(&app, &token));
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
        let refused = if a.status() == StatusCode::UNAUTHORIZED { a } else { b };
        assert_eq!(reason(refused).await.1, "token_replayed");
    }
    assert_eq!(series_value(&app.metrics().await, &["jwt_replay_prevented_total"]), 5.0);
}

#[tokio::test]
async fn a_replay_on_another_process_is_refused() {
    let idp = idp().await;
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let mut flags = idp.flags();
    flags.extend(["--redis-url".to_owned(), redis.url()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let db = testkit::Postgres::shared().fresh_database();
    let a = BinaryApp::start_on(&db, testkit::free_port(), &flags).await;
    let b = BinaryApp::start_on(&db, testkit::free_port(), &flags).await;
    let http = client();
    for base in [&a.base, &b.base] {
        wait_redis_connected(&http, base).await;
    }
    let token = idp.token("rsa-1", "student-4");
    let send = |base: String| {
        let http = http.clone();
        let token = token.clone();
        async move {
            http.post(format!("{base}{CHECK}"))
                .bearer_auth(token)
                .json(&profile())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (x, y) = tokio::join!(send(a.base.clone()), send(b.base.clone()));
    let mut statuses = [x, y];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
    let prevented = series_value(&a.metrics().await, &["jwt_replay_prevented_total"])
        + series_value(&b.metrics().await, &["jwt_replay_prevented_total"]);
    assert_eq!(prevented, 1.0);
    assert!(a.logs().contains("token replay prevented") || b.logs().contains("token replay prevented"));
    for logs in [a.logs(), b.logs()] {
        assert!(!logs.contains(&token), "the token itself is never logged");
    }
}

#[tokio::test]
async fn the_replay_marker_expires_with_the_token() {
    let idp = idp().await;
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let app = app(&idp, Some(&redis), &["--jwt-leeway-seconds", "1"]).await;
    let mut claims = Idp::claims("student-5");
    claims["exp"] = json!(now() + 2);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let token = idp.sign("rsa-1", &claims);
    assert_eq!(check(&app, &token).await.status(), StatusCode::OK);
    let key = format!("jwt:jti:{jti}");
    let ttl: i64 = redis.cli(&["PTTL", &key]).unwrap().parse().unwrap();
    assert!(ttl > 0 && ttl <= 4_000, "expires at exp + leeway ({ttl} ms)");
    let deadline = Instant::now() + Duration::from_secs(8);
    while redis.cli(&["EXISTS", &key]).unwrap() != "0" {
        assert!(Instant::now() < deadline, "the marker outlived exp + leeway");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        check(&app, &idp.token("rsa-1", "student-5")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn one_redis_round_trip_per_authenticated_request() {
    let idp = idp().await;
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let app = app(&idp, Some(&redis), &[]).await;
    // Load the script before watching, as a long-running instance would have.
    check(&app, &idp.token("rsa-1", "warm-up")).await;
    let mut monitor = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "MONITOR"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..10 {
        assert_eq!(
            check(&app, &idp.token("rsa-1", &format!("s{i}"))).await.status(),
            StatusCode::OK
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    monitor.kill().unwrap();
    let out = monitor.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    let from_clients: Vec<&str> = log.lines().filter(|l| l.contains("[0 127.0.0.1:")).collect();
    let in_script = log.lines().filter(|l| l.contains("[0 lua]")).count();
    assert_eq!(from_clients.len(), 10, "one command per request:\n{log}");
    assert!(from_clients.iter().all(|l| l.contains("\"EVALSHA\"")));
    assert!(
        in_script >= 20,
        "the rate limit and the jti SET both ran inside the script:\n{log}"
    );
}

#[tokio::test]
async fn jwks_rotation_needs_no_restart_and_fails_no_valid_request() {
    let idp = Idp::start(vec![SigningKey::generate("old", Algorithm::RS256)]).await;
    let app = app(&idp, None, &[]).await;
    assert_eq!(check(&app, &idp.token("old", "s")).await.status(), StatusCode::OK);
    let fetches_before = idp.fetches();

    // The IdP publishes a new key and signs with it from now on; old tokens are still valid.
    idp.add_key(SigningKey::generate("new", Algorithm::ES256));
    let old_token = idp.token("old", "s");
    let mut statuses = Vec::new();
    for i in 0..40 {
        let kid = if i % 2 == 0 { "new" } else { "old" };
        statuses.push(check(&app, &idp.token(kid, "s")).await.status());
    }
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(check(&app, &old_token).await.status(), StatusCode::OK);
    assert_eq!(
        idp.fetches(),
        fetches_before + 1,
        "one single-flight refresh for the new kid"
    );

    // Made-up kids cost at most one IdP request per cooldown.
    for i in 0..20 {
        check(&app, &idp.token("old", &format!("x{i}"))).await;
        let mut c = Idp::claims("s");
        c["jti"] = json!(format!("forged-{i}"));
        let header = json!({"alg": "RS256", "kid": format!("made-up-{i}")});
        let real = idp.sign("old", &c);
        let parts: Vec<&str> = real.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            parts[1],
            parts[2]
        );
        assert_eq!(reason(check(&app, &forged).await).await.1, "token_key_unknown");
    }
    assert!(
        idp.fetches() <= fetches_before + 2,
        "cooldown bounds IdP traffic ({})",
        idp.fetches()
    );
}

#[tokio::test]
async fn a_removed_key_stops_working_within_the_refresh_bound() {
    let idp = Idp::start(vec![
        SigningKey::generate("old", Algorithm::RS256),
        SigningKey::generate("new", Algorithm::EdDSA),
    ])
    .await;
    let app = app(&idp, None, &["--jwks-max-refresh-interval-seconds", "1"]).await;
    assert_eq!(check(&app, &idp.token("old", "s")).await.status(), StatusCode::OK);
    idp.unpublish("old");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = check(&app, &idp.token("old", "s")).await;
        if r.status() == StatusCode::UNAUTHORIZED {
            assert_eq!(reason(r).await.1, "token_key_unknown");
            break;
        }
        assert_eq!(r.status(), StatusCode::OK, "valid until the key is removed");
        assert!(
            Instant::now() < deadline,
            "the removed key was still accepted after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(check(&app, &idp.token("new", "s")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_redis_dead_replays_on_this_instance_are_still_refused_or_strictly_503() {
    let idp = idp().await;
    let mut redis = RedisServer::start(RedisOptions::default()).unwrap();
    let app_local = app(&idp, Some(&redis), &[]).await;
    let app_strict = app(&idp, Some(&redis), &["--replay-fallback", "strict"]).await;
    let used_before = idp.token("rsa-1", "student-6");
    assert_eq!(check(&app_local, &used_before).await.status(), StatusCode::OK);
    redis.kill();

    for _ in 0..5 {
        let token = idp.token("rsa-1", "student-6");
        assert_eq!(
            check(&app_local, &token).await.status(),
            StatusCode::OK,
            "no 5xx without Redis"
        );
        assert_eq!(
            reason(check(&app_local, &token).await).await.1,
            "token_replayed",
            "same-instance replay"
        );
    }
    assert_eq!(
        reason(check(&app_local, &used_before).await).await.1,
        "token_replayed",
        "remembered from before"
    );
    assert!(series_value(&app_local.metrics().await, &["jwt_replay_fallback_total"]) >= 10.0);

    let r = check(&app_strict, &idp.token("rsa-1", "student-6")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
}

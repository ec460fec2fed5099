//! An identity-provider stand-in: serves a JWKS over HTTP on loopback and signs tokens with
//! real keys (RSA 2048, P-256, Ed25519 made by `openssl genpkey`), with knobs for rotation
//! and outages, and an OAuth2 token endpoint for the client credentials grant (RFC 6749
//! §4.4) for registered clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Form;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const ISSUER: &str = "https://idp.test.local";
pub const AUDIENCE: &str = "scholarship-api";

pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
    pub pem: Vec<u8>,
}

impl SigningKey {
    pub fn generate(kid: &str, alg: Algorithm) -> Self {
        let args: &[&str] = match alg {
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::EdDSA => &["-algorithm", "ed25519"],
            other => panic!("unsupported {other:?}"),
        };
        let out = Command::new("openssl").arg("genpkey").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl genpkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = out.stdout;
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap();
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
            pem,
        }
    }
}

#[derive(Default)]
struct IdpState {
    keys: Vec<Arc<SigningKey>>,
    published: Vec<String>,
    down: bool,
    fetches: usize,
    /// Client id → (secret, extra claims of its tokens).
    clients: Vec<(String, String, Value)>,
    tokens_issued: usize,
}

#[derive(Clone)]
pub struct Idp {
    pub jwks_url: String,
    pub token_url: String,
    state: Arc<Mutex<IdpState>>,
}

impl Idp {
    pub async fn start(keys: Vec<SigningKey>) -> Self {
        let state = Arc::new(Mutex::new(IdpState::default()));
        let idp = Self {
            jwks_url: String::new(),
            token_url: String::new(),
            state: state.clone(),
        };
        for key in keys {
            idp.add_key(key);
        }
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(jwks))
            .route("/oauth2/token", axum::routing::post(token))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            jwks_url: format!("http://{addr}/.well-known/jwks.json"),
            token_url: format!("http://{addr}/oauth2/token"),
            ..idp
        }
    }

    /// Registers a client for the client credentials grant; its tokens carry `extra` claims
    /// (e.g. a tester flag) and are signed with the first key.
    pub fn register_client(&self, id: &str, secret: &str, extra: Value) {
        self.state
            .lock()
            .unwrap()
            .clients
            .push((id.to_owned(), secret.to_owned(), extra));
    }

    /// Access tokens issued by the token endpoint so far.
    pub fn tokens_issued(&self) -> usize {
        self.state.lock().unwrap().tokens_issued
    }

    /// The service flags that trust this IdP.
    pub fn flags(&self) -> Vec<String> {
        [
            "--jwks-url",
            &self.jwks_url,
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    pub fn add_key(&self, key: SigningKey) {
        let mut s = self.state.lock().unwrap();
        s.published.push(key.kid.clone());
        s.keys.push(Arc::new(key));
    }

    /// Stops publishing `kid` (tokens signed with it can still be minted, for tests).
    pub fn unpublish(&self, kid: &str) {
        self.state.lock().unwrap().published.retain(|k| k != kid);
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn fetches(&self) -> usize {
        self.state.lock().unwrap().fetches
    }

    pub fn key(&self, kid: &str) -> Arc<SigningKey> {
        self.state
            .lock()
            .unwrap()
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
            .unwrap()
    }

    /// Standard claims for `sub`, valid for five minutes, with a fresh `jti`.
    pub fn claims(sub: &str) -> Value {
        let now = now();
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now, "exp": now + 300,
               "jti": uuid::Uuid::new_v4().to_string()})
    }

    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let key = self.key(kid);
        let mut header = Header::new(key.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// A fresh valid token for `sub` signed with `kid`.
    pub fn token(&self, kid: &str, sub: &str) -> String {
        self.sign(kid, &Self::claims(sub))
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn jwks(State(state): State<Arc<Mutex<IdpState>>>) -> Response {
    let mut s = state.lock().unwrap();
    s.fetches += 1;
    if s.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let set = JwkSet {
        keys: s
            .keys
            .iter()
            .filter(|k| s.published.contains(&k.kid))
            .map(|k| k.jwk.clone())
            .collect(),
    };
    ([(header::CACHE_CONTROL, "max-age=300")], axum::Json(set)).into_response()
}

#[derive(serde::Deserialize)]
struct TokenRequest {
    grant_type: String,
    audience: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({"error": code}))).into_response()
}

/// The client credentials grant: the client authenticates by HTTP Basic or in the form.
async fn token(
    State(state): State<Arc<Mutex<IdpState>>>,
    headers: HeaderMap,
    Form(form): Form<TokenRequest>,
) -> Response {
    if form.grant_type != "client_credentials" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    let Some((id, secret)) = basic.or(form.client_id.zip(form.client_secret)) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let mut s = state.lock().unwrap();
    let Some(extra) = s
        .clients
        .iter()
        .find(|(i, sec, _)| *i == id && *sec == secret)
        .map(|(_, _, extra)| extra.clone())
    else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let Some(key) = s.keys.first().cloned() else {
        return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    };
    s.tokens_issued += 1;
    drop(s);
    let mut claims = Idp::claims(&id);
    if let Some(audience) = form.audience {
        claims["aud"] = json!(audience);
    }
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    let mut jwt_header = Header::new(key.alg);
    jwt_header.kid = Some(key.kid.clone());
    let access_token = jsonwebtoken::encode(&jwt_header, &claims, &key.encoding).unwrap();
    axum::Json(json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300})).into_response()
}

//! An identity-provider stand-in: serves a JWKS over HTTP on loopback and signs tokens with
//! real keys (RSA 2048, P-256, Ed25519 made by `openssl genpkey`), with knobs for rotation
//! and outages.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
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
}

#[derive(Clone)]
pub struct Idp {
    pub jwks_url: String,
    state: Arc<Mutex<IdpState>>,
}

impl Idp {
    pub async fn start(keys: Vec<SigningKey>) -> Self {
        let state = Arc::new(Mutex::new(IdpState::default()));
        let idp = Self {
            jwks_url: String::new(),
            state: state.clone(),
        };
        for key in keys {
            idp.add_key(key);
        }
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(jwks))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            jwks_url: format!("http://{addr}/.well-known/jwks.json"),
            ..idp
        }
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

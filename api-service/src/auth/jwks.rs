//! Verification keys from the configured JWKS URL only (never from a token's `jku`/`x5u`).
//!
//! Keys are prebuilt per `kid` at fetch time. The set is refreshed on a timer honouring the
//! response's `max-age` (clamped to sane bounds) and, for an unknown `kid`, once more on demand:
//! single-flight, and at most once per cooldown, so a flood of tokens with made-up `kid`s
//! cannot turn into a flood of requests to the IdP. The last good set is kept when the IdP is
//! down.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Url;
use tokio::sync::Mutex;

/// A `max-age` shorter than this is raised to it: a misconfigured IdP must not be polled hot.
const TTL_MIN: Duration = Duration::from_secs(60);
const TTL_DEFAULT: Duration = Duration::from_secs(300);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// A verification key, usable with exactly one algorithm.
pub struct VerifyingKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

type KeySet = HashMap<String, Arc<VerifyingKey>>;

pub struct Jwks {
    url: Url,
    http: reqwest::Client,
    allowed: Vec<Algorithm>,
    cooldown: Duration,
    /// Refresh at least this often whatever `max-age` says (so a removed key stops working).
    max_interval: Duration,
    set: RwLock<Arc<KeySet>>,
    /// Serialises fetches and remembers when the last on-demand one started (the timer's
    /// refreshes do not count against the cooldown: a rotation right after one must work).
    fetch: Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(
        url: Url,
        allowed: Vec<Algorithm>,
        cooldown: Duration,
        max_interval: Duration,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(1))
            .build()?;
        Ok(Arc::new(Self {
            url,
            http,
            allowed,
            cooldown,
            max_interval,
            set: RwLock::new(Arc::new(KeySet::default())),
            fetch: Mutex::new(None),
        }))
    }

    /// The key for `kid`, refreshing once (subject to the cooldown) when it is unknown.
    pub async fn key(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        if let Some(key) = self.lookup(kid) {
            return Some(key);
        }
        let mut last_fetch = self.fetch.lock().await;
        // Another request may have refreshed while we waited for the lock.
        if let Some(key) = self.lookup(kid) {
            return Some(key);
        }
        if last_fetch.is_some_and(|at| at.elapsed() < self.cooldown) {
            return None;
        }
        *last_fetch = Some(Instant::now());
        let _ = self.refresh().await;
        self.lookup(kid)
    }

    fn lookup(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        self.set.read().ok()?.get(kid).cloned()
    }

    /// Keeps the set fresh for the life of the process.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let jwks = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let next = {
                    let _serialised = jwks.fetch.lock().await;
                    match jwks.refresh().await {
                        Ok(ttl) => ttl,
                        Err(()) => RETRY_AFTER_FAILURE,
                    }
                };
                tokio::time::sleep(next).await;
            }
        });
    }

    /// Fetches and swaps in the set; on failure the previous set stays.
    async fn refresh(&self) -> Result<Duration, ()> {
        match self.fetch_set().await {
            Ok((set, ttl)) => {
                let count = set.len();
                if let Ok(mut current) = self.set.write() {
                    *current = Arc::new(set);
                }
                tracing::info!(keys = count, ttl_seconds = ttl.as_secs(), "JWKS refreshed");
                Ok(ttl)
            }
            Err(error) => {
                tracing::warn!(%error, "JWKS refresh failed; keeping the last good key set");
                Err(())
            }
        }
    }

    async fn fetch_set(&self) -> Result<(KeySet, Duration), String> {
        let response = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.without_url().to_string())?;
        let ttl = max_age(response.headers())
            .unwrap_or(TTL_DEFAULT)
            .clamp(TTL_MIN.min(self.max_interval), self.max_interval);
        let body: serde_json::Value = response.json().await.map_err(|e| e.without_url().to_string())?;
        let raw_keys = body
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or("the JWKS has no `keys` array")?;
        let mut keys = HashMap::new();
        for raw in raw_keys {
            // One odd key must not take the others down with it.
            match serde_json::from_value::<Jwk>(raw.clone())
                .map_err(|e| e.to_string())
                .and_then(|jwk| self.prepare(&jwk))
            {
                Ok((kid, key)) => {
                    keys.insert(kid, Arc::new(key));
                }
                Err(reason) => tracing::warn!(%reason, "JWKS key skipped"),
            }
        }
        Ok((keys, ttl))
    }

    /// Builds the verifying key and fixes its one algorithm: the key type decides it, and a
    /// JWK `alg` or `use` that disagrees disqualifies the key.
    fn prepare(&self, jwk: &Jwk) -> Result<(String, VerifyingKey), String> {
        let kid = jwk.common.key_id.clone().ok_or("no kid")?;
        if let Some(usage) = &jwk.common.public_key_use
            && *usage != PublicKeyUse::Signature
        {
            return Err(format!("{kid}: use is not sig"));
        }
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
            _ => return Err(format!("{kid}: unsupported key type")),
        };
        if let Some(declared) = jwk.common.key_algorithm
            && !same_algorithm(declared, algorithm)
        {
            return Err(format!("{kid}: alg {declared:?} does not match the key type"));
        }
        if !self.allowed.contains(&algorithm) {
            return Err(format!("{kid}: {algorithm:?} is not allowed"));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{kid}: {e}"))?;
        Ok((kid, VerifyingKey { algorithm, key }))
    }
}

fn same_algorithm(declared: KeyAlgorithm, algorithm: Algorithm) -> bool {
    matches!(
        (declared, algorithm),
        (KeyAlgorithm::RS256, Algorithm::RS256)
            | (KeyAlgorithm::ES256, Algorithm::ES256)
            | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
    )
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').find_map(|d| {
        let (name, seconds) = d.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().parse().ok().map(Duration::from_secs))?
    })
}

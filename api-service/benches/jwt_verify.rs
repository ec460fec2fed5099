//! Token verifications per second on one core, per allowed algorithm, through the service's
//! own `Authenticator` (header checks, key lookup, signature, claims) with aws-lc-rs.
//!
//! `cargo bench -p scholarship-api --bench jwt_verify`
#![allow(clippy::unwrap_used)]

use testkit::idp;

use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderValue, header};
use idp::{AUDIENCE, ISSUER, Idp, SigningKey};
use jsonwebtoken::Algorithm;
use scholarship_api::auth::jwks::Jwks;
use scholarship_api::auth::{AuthSettings, Authenticator};

const RUN_FOR: Duration = Duration::from_secs(3);

fn main() {
    scholarship_api::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("verifications per second on one core (current-thread runtime, {RUN_FOR:?} each):");
        for (kid, alg) in [
            ("rsa", Algorithm::RS256),
            ("ec", Algorithm::ES256),
            ("ed", Algorithm::EdDSA),
        ] {
            let idp = Idp::start(vec![SigningKey::generate(kid, alg)]).await;
            let allowed = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
            let jwks = Jwks::new(
                idp.jwks_url.parse().unwrap(),
                allowed.to_vec(),
                Duration::from_secs(30),
                Duration::from_secs(3600),
            )
            .unwrap();
            let settings = AuthSettings {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                leeway: Duration::from_secs(60),
                max_lifetime: Duration::from_secs(3600),
                require_jti: true,
                tester_claim: None,
            };
            let auth = Authenticator::new(settings, jwks, &allowed);
            let mut headers = HeaderMap::new();
            let token = idp.token(kid, "bench");
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
            // The first call loads the key set over HTTP; it is not part of the figure.
            auth.verify(&headers, SystemTime::now()).await.unwrap();
            let started = Instant::now();
            let mut count = 0u64;
            while started.elapsed() < RUN_FOR {
                for _ in 0..100 {
                    auth.verify(&headers, SystemTime::now()).await.unwrap();
                }
                count += 100;
            }
            let per_second = count as f64 / started.elapsed().as_secs_f64();
            println!("  {alg:?}: {per_second:>9.0} /s  ({:.1} µs each)", 1e6 / per_second);
        }
    });
}

//! Bearer JWT authentication (RFC 6750) with keys from a JWKS URL.
//!
//! Order matters: size and shape are checked before any parsing, the header before any key
//! lookup, the signature before any claim is trusted. Nothing about the token is logged.

pub mod jwks;
pub mod replay;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use prometheus_client::encoding::EncodeLabelValue;
use serde::Deserialize;

use crate::endpoint::Endpoint;
use crate::error::{PROBLEM_JSON, Problem};
use jwks::Jwks;

/// Tokens above this size are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
const MAX_ID_CHARS: usize = 256;

/// Why a token was refused: a small fixed set, safe as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RejectReason {
    missing,
    malformed,
    oversize,
    algorithm,
    unknown_kid,
    signature,
    expired,
    not_yet_valid,
    issuer,
    audience,
    lifetime,
    missing_jti,
    replayed,
}

impl RejectReason {
    fn description(self) -> &'static str {
        match self {
            Self::missing => "a Bearer token is required",
            Self::malformed => "the token is malformed",
            Self::oversize => "the token is larger than 8 KiB",
            Self::algorithm => "the token's algorithm is not allowed",
            Self::unknown_kid => "the token's key is unknown",
            Self::signature => "the token's signature does not verify",
            Self::expired => "the token has expired",
            Self::not_yet_valid => "the token is not valid yet",
            Self::issuer => "the token's issuer is not accepted",
            Self::audience => "the token is not meant for this audience",
            Self::lifetime => "the token's lifetime is too long",
            Self::missing_jti => "the token has no jti",
            Self::replayed => "the token was already used",
        }
    }

    /// The stable `code` of the problem body.
    fn code(self) -> &'static str {
        match self {
            Self::missing => "token_missing",
            Self::malformed => "token_malformed",
            Self::oversize => "token_too_large",
            Self::algorithm => "token_algorithm_not_allowed",
            Self::unknown_kid => "token_key_unknown",
            Self::signature => "token_signature_invalid",
            Self::expired => "token_expired",
            Self::not_yet_valid => "token_not_yet_valid",
            Self::issuer => "token_issuer_invalid",
            Self::audience => "token_audience_invalid",
            Self::lifetime => "token_lifetime_too_long",
            Self::missing_jti => "missing_jti",
            Self::replayed => "token_replayed",
        }
    }
}

/// A refused request: 401 with an RFC 6750 challenge (431 when the header is oversized).
#[derive(Debug, Clone, Copy)]
pub struct Rejection(pub RejectReason);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let reason = self.0;
        let status = if reason == RejectReason::oversize {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        } else {
            StatusCode::UNAUTHORIZED
        };
        let challenge = if reason == RejectReason::missing {
            "Bearer realm=\"scholarship-api\"".to_owned()
        } else {
            format!(
                "Bearer realm=\"scholarship-api\", error=\"invalid_token\", error_description=\"{}\"",
                reason.description()
            )
        };
        let body = Problem {
            type_uri: format!("https://scholarship.dev/problems/{}", reason.code()),
            title: "Unauthorized",
            status: status.as_u16(),
            detail: reason.description().to_owned(),
            code: reason.code(),
            errors: Vec::new(),
        };
        let mut response = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response.extensions_mut().insert(crate::error::ErrorCode(reason.code()));
        response
    }
}

/// The verified identity of a request.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub subject: String,
    /// `None` only when tokens without `jti` are explicitly allowed (development).
    pub jti: Option<String>,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// The configured tester claim is `true`.
    pub tester: bool,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: Option<u64>,
    jti: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
    pub max_lifetime: Duration,
    pub require_jti: bool,
    pub tester_claim: Option<String>,
}

pub struct Authenticator {
    settings: AuthSettings,
    jwks: Arc<Jwks>,
    /// One validation per allowed algorithm: jsonwebtoken checks the header's `alg` against it.
    validations: Vec<(Algorithm, Validation)>,
}

impl Authenticator {
    pub fn new(settings: AuthSettings, jwks: Arc<Jwks>, allowed: &[Algorithm]) -> Self {
        let validations = allowed
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.set_issuer(&[&settings.issuer]);
                v.set_audience(&[&settings.audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                v.leeway = settings.leeway.as_secs();
                v.validate_nbf = true;
                (alg, v)
            })
            .collect();
        Self {
            settings,
            jwks,
            validations,
        }
    }

    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    pub fn leeway(&self) -> Duration {
        self.settings.leeway
    }

    /// Verifies the request's bearer token: shape, header, key, signature, then claims.
    pub async fn verify(&self, headers: &HeaderMap, now: SystemTime) -> Result<VerifiedToken, RejectReason> {
        let token = bearer_token(headers)?;
        let header = parse_header(token)?;
        if header.crit.as_ref().is_some_and(|c| !c.is_null()) {
            // We understand no extensions, so any critical one makes the token unusable.
            return Err(RejectReason::malformed);
        }
        let (algorithm, validation) = self
            .validations
            .iter()
            .find(|(alg, _)| algorithm_name(*alg) == header.alg)
            .ok_or(RejectReason::algorithm)?;
        let kid = header
            .kid
            .filter(|k| !k.is_empty() && k.len() <= MAX_ID_CHARS)
            .ok_or(RejectReason::malformed)?;
        let key = self.jwks.key(&kid).await.ok_or(RejectReason::unknown_kid)?;
        if key.algorithm != *algorithm {
            return Err(RejectReason::algorithm);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, validation).map_err(|e| classify(e.kind()))?;
        self.check_claims(data.claims, now)
    }

    fn check_claims(&self, claims: Claims, now: SystemTime) -> Result<VerifiedToken, RejectReason> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let leeway = self.settings.leeway.as_secs();
        if let Some(iat) = claims.iat
            && iat > now + leeway
        {
            return Err(RejectReason::not_yet_valid);
        }
        let issued = claims.iat.unwrap_or(now).min(now);
        if claims.exp.saturating_sub(issued) > self.settings.max_lifetime.as_secs() + leeway {
            return Err(RejectReason::lifetime);
        }
        if claims.sub.is_empty() || claims.sub.len() > MAX_ID_CHARS {
            return Err(RejectReason::malformed);
        }
        let jti = match claims.jti {
            Some(jti) if !jti.is_empty() && jti.len() <= MAX_ID_CHARS => Some(jti),
            Some(_) => return Err(RejectReason::malformed),
            None if self.settings.require_jti => return Err(RejectReason::missing_jti),
            None => None,
        };
        let tester = self
            .settings
            .tester_claim
            .as_ref()
            .is_some_and(|name| claims.other.get(name) == Some(&serde_json::Value::Bool(true)));
        Ok(VerifiedToken {
            subject: claims.sub,
            jti,
            expires_at: claims.exp,
            tester,
        })
    }
}

/// Exactly one `Authorization: Bearer <token>` header, size-checked before anything else.
fn bearer_token(headers: &HeaderMap) -> Result<&str, RejectReason> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(RejectReason::missing)?;
    if values.next().is_some() {
        return Err(RejectReason::malformed);
    }
    if value.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
        return Err(RejectReason::oversize);
    }
    let value = value.to_str().map_err(|_| RejectReason::malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(RejectReason::missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(RejectReason::missing);
    }
    let token = token.trim();
    let shape_ok = token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if shape_ok {
        Ok(token)
    } else {
        Err(RejectReason::malformed)
    }
}

fn parse_header(token: &str) -> Result<RawHeader, RejectReason> {
    let encoded = token.split('.').next().ok_or(RejectReason::malformed)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| RejectReason::malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| RejectReason::malformed)
}

fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "",
    }
}

/// The algorithms this service can be configured to accept.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    match name.trim() {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(format!("`{other}` is not one of RS256, ES256, EdDSA")),
    }
}

fn classify(kind: &ErrorKind) -> RejectReason {
    match kind {
        ErrorKind::InvalidSignature => RejectReason::signature,
        ErrorKind::ExpiredSignature => RejectReason::expired,
        ErrorKind::ImmatureSignature => RejectReason::not_yet_valid,
        ErrorKind::InvalidIssuer => RejectReason::issuer,
        ErrorKind::InvalidAudience => RejectReason::audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
            RejectReason::algorithm
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => RejectReason::issuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => RejectReason::audience,
        _ => RejectReason::malformed,
    }
}

/// Which endpoints demand single-use tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingleUse {
    All,
    Endpoints(HashSet<Endpoint>),
}

impl SingleUse {
    pub fn applies_to(&self, endpoint: Endpoint) -> bool {
        match self {
            Self::All => true,
            Self::Endpoints(set) => set.contains(&endpoint),
        }
    }
}

impl std::str::FromStr for SingleUse {
    type Err = String;

    /// `all`, `none`, or endpoint names such as `applications,applications-read` (an unknown
    /// name is an error naming it).
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "all" => Ok(Self::All),
            "none" | "" => Ok(Self::Endpoints(HashSet::new())),
            list => list
                .split(',')
                .map(|s| s.trim().parse::<Endpoint>())
                .collect::<Result<_, _>>()
                .map(Self::Endpoints),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_parsing_is_strict() {
        assert_eq!(bearer_token(&HeaderMap::new()), Err(RejectReason::missing));
        assert_eq!(
            bearer_token(&with_auth("Basic dXNlcjpwYXNz")),
            Err(RejectReason::missing)
        );
        assert_eq!(bearer_token(&with_auth("Bearer a.b")), Err(RejectReason::malformed));
        assert_eq!(bearer_token(&with_auth("Bearer a.b.c!")), Err(RejectReason::malformed));
        assert_eq!(bearer_token(&with_auth("bearer a.b.c")), Ok("a.b.c"));
        let big = format!("Bearer {}.b.c", "a".repeat(MAX_TOKEN_BYTES));
        assert_eq!(bearer_token(&with_auth(&big)), Err(RejectReason::oversize));
        let mut twice = with_auth("Bearer a.b.c");
        twice.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        assert_eq!(bearer_token(&twice), Err(RejectReason::malformed));
    }

    #[test]
    fn header_parsing_rejects_garbage() {
        assert!(parse_header("!!!.b.c").is_err());
        assert!(parse_header(&format!("{}.b.c", URL_SAFE_NO_PAD.encode("not json"))).is_err());
        let h = parse_header(&format!("{}.b.c", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#))).unwrap();
        assert_eq!(h.alg, "none");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever arrives in the header, parsing answers (Ok or a reason) and never panics.
        #[test]
        fn bearer_and_header_parsing_never_panic(raw in "\\PC{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(value) = HeaderValue::from_str(&raw) {
                let mut h = HeaderMap::new();
                h.insert(header::AUTHORIZATION, value);
                if let Ok(token) = bearer_token(&h) {
                    let _ = parse_header(token);
                }
            }
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert(header::AUTHORIZATION, value);
                let _ = bearer_token(&h);
            }
            let encoded = format!("{}.{}.x", URL_SAFE_NO_PAD.encode(&bytes), URL_SAFE_NO_PAD.encode(&raw));
            let _ = parse_header(&encoded);
        }
    }
}

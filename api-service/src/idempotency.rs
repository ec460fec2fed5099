//! `Idempotency-Key` for writes (draft-ietf-httpapi-idempotency-key-header semantics).
//!
//! A key is reserved in its own committed statement so a concurrent duplicate sees it (409),
//! and completed in the same transaction that writes the resource, so a stored response always
//! has its row. A reservation whose owner died is taken over after a lease; a key is forgotten
//! after the TTL.

use std::time::Duration;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
/// How long a reservation may stay in flight before another request may take it over.
const RESERVATION_LEASE: Duration = Duration::from_secs(60);

/// The key as sent by the client, validated.
pub fn key_from(headers: &HeaderMap) -> Result<String, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let value = values.next().ok_or(ApiError::MissingIdempotencyKey)?;
    if values.next().is_some() {
        return Err(ApiError::InvalidIdempotencyKey(
            "send exactly one Idempotency-Key header",
        ));
    }
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey("Idempotency-Key must be visible ASCII"))?
        .trim()
        // The draft defines the key as a structured-field string; accept it quoted or bare.
        .trim_matches('"');
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::InvalidIdempotencyKey(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(key.to_owned())
}

/// Fingerprint of a request: same method, path and JSON content (whitespace and key order
/// do not matter) give the same hash.
pub fn fingerprint(method: &str, path: &str, body: &serde_json::Value) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    // serde_json's default map is ordered by key, so this serialisation is canonical.
    hasher.update(body.to_string().as_bytes());
    hasher.finalize().to_vec()
}

/// A response kept for replay, byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub enum Reservation {
    /// This request owns the key and must complete or release it.
    Acquired,
    /// A previous request with the same body completed: answer with its response.
    Replay(StoredResponse),
}

pub struct Store<'a> {
    pub db: &'a PgPool,
    pub ttl: Duration,
}

impl Store<'_> {
    pub async fn reserve(&self, principal: &str, key: &str, hash: &[u8]) -> Result<Reservation, ApiError> {
        // A concurrent release between the two statements can make the second find nothing;
        // trying again then acquires.
        for _ in 0..3 {
            let acquired: Option<bool> = sqlx::query_scalar(
                "INSERT INTO idempotency_keys (principal, key, request_hash, state, locked_until) \
                 VALUES ($1, $2, $3, 'in_flight', now() + make_interval(secs => $4)) \
                 ON CONFLICT (principal, key) DO UPDATE SET \
                     request_hash = EXCLUDED.request_hash, state = 'in_flight', \
                     locked_until = EXCLUDED.locked_until, created_at = now(), \
                     response_status = NULL, response_headers = NULL, response_body = NULL \
                 WHERE idempotency_keys.created_at < now() - make_interval(secs => $5) \
                    OR (idempotency_keys.state = 'in_flight' \
                        AND idempotency_keys.locked_until < now() \
                        AND idempotency_keys.request_hash = EXCLUDED.request_hash) \
                 RETURNING true",
            )
            .bind(principal)
            .bind(key)
            .bind(hash)
            .bind(RESERVATION_LEASE.as_secs_f64())
            .bind(self.ttl.as_secs_f64())
            .fetch_optional(self.db)
            .await?;
            if acquired.is_some() {
                return Ok(Reservation::Acquired);
            }

            let existing: Option<ExistingRow> = sqlx::query_as(
                "SELECT request_hash, state, response_status, response_headers, response_body \
                 FROM idempotency_keys WHERE principal = $1 AND key = $2",
            )
            .bind(principal)
            .bind(key)
            .fetch_optional(self.db)
            .await?;
            let Some(row) = existing else { continue };
            if row.request_hash != hash {
                return Err(ApiError::IdempotencyKeyReused);
            }
            return match (row.state.as_str(), row.response_status, row.response_body) {
                ("completed", Some(status), Some(body)) => Ok(Reservation::Replay(StoredResponse {
                    status: u16::try_from(status).unwrap_or(500),
                    headers: row
                        .response_headers
                        .and_then(|h| serde_json::from_value(h).ok())
                        .unwrap_or_default(),
                    body,
                })),
                _ => Err(ApiError::IdempotencyKeyInFlight),
            };
        }
        Err(ApiError::IdempotencyKeyInFlight)
    }

    /// Stores the response inside the transaction that wrote the resource.
    pub async fn complete(
        tx: &mut Transaction<'_, Postgres>,
        principal: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'completed', response_status = $3, \
             response_headers = $4, response_body = $5 WHERE principal = $1 AND key = $2",
        )
        .bind(principal)
        .bind(key)
        .bind(i16::try_from(response.status).unwrap_or(500))
        .bind(serde_json::to_value(&response.headers).unwrap_or_default())
        .bind(&response.body)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Gives the key back after a failure, so a retry is processed afresh.
    pub async fn release(&self, principal: &str, key: &str) {
        let released =
            sqlx::query("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND state = 'in_flight'")
                .bind(principal)
                .bind(key)
                .execute(self.db)
                .await;
        if let Err(e) = released {
            // The lease expires on its own; the retry then takes the key over.
            tracing::warn!(error = %e, "could not release an idempotency reservation");
        }
    }

    /// Deletes records past their TTL; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)")
            .bind(self.ttl.as_secs_f64())
            .execute(self.db)
            .await?;
        Ok(done.rows_affected())
    }
}

#[derive(sqlx::FromRow)]
struct ExistingRow {
    request_hash: Vec<u8>,
    state: String,
    response_status: Option<i16>,
    response_headers: Option<serde_json::Value>,
    response_body: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn fingerprint_ignores_formatting_but_not_content() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str("{ \"b\": [1, 2],\n \"a\": 1 }").unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"a":2,"b":[1,2]}"#).unwrap();
        assert_eq!(fingerprint("POST", "/x", &a), fingerprint("POST", "/x", &b));
        assert_ne!(fingerprint("POST", "/x", &a), fingerprint("POST", "/x", &c));
        assert_ne!(fingerprint("POST", "/x", &a), fingerprint("POST", "/y", &a));
    }

    #[test]
    fn key_validation() {
        let mut h = HeaderMap::new();
        assert!(matches!(key_from(&h), Err(ApiError::MissingIdempotencyKey)));
        h.insert(HEADER, HeaderValue::from_static("\"abc-123\""));
        assert_eq!(key_from(&h).unwrap(), "abc-123");
        h.insert(HEADER, HeaderValue::from_static("has space"));
        assert!(key_from(&h).is_err());
        h.insert(HEADER, HeaderValue::from_str(&"k".repeat(256)).unwrap());
        assert!(key_from(&h).is_err());
    }
}

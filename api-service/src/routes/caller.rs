//! Who is calling. The single seam where authentication plugs in: today every caller is
//! anonymous; the JWT layer will put the verified subject here, and everything keyed by
//! principal (applications, idempotency keys, rate limits) follows without other changes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable identifier of the principal: the token subject once authentication exists.
    pub principal: String,
    /// True only for a verified identity; anonymous callers are rate-limited by address.
    pub authenticated: bool,
}

impl Caller {
    pub const ANONYMOUS: &'static str = "anonymous";
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or(Caller {
            principal: Caller::ANONYMOUS.to_owned(),
            authenticated: false,
        }))
    }
}

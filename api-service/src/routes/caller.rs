//! Who is calling: the verified subject the gate found in the token. Handlers of endpoints
//! that need a caller take a `Caller`; when none was established (a route wired without its
//! gate), the extractor answers 401 instead of running the handler, so a handler cannot run
//! unauthenticated by accident.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;

use crate::auth::{RejectReason, Rejection};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable identifier of the principal: the token's subject.
    pub principal: String,
    /// False only for the development caller of `--insecure-no-auth`.
    pub authenticated: bool,
}

impl Caller {
    pub const ANONYMOUS: &'static str = "anonymous";

    /// The one caller of a service started with `--insecure-no-auth`.
    pub fn anonymous() -> Self {
        Self {
            principal: Self::ANONYMOUS.to_owned(),
            authenticated: false,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            let route = parts.extensions.get::<MatchedPath>().map_or("", MatchedPath::as_str);
            tracing::error!(
                route,
                "handler reached without a caller (route wired without its gate): refused"
            );
            Rejection(RejectReason::missing)
        })
    }
}

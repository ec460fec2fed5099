//! The HTTP surface: `/api/v1/*` for clients, `/healthz`, `/readyz`, `/metrics` and
//! `/openapi.json` for operations.

pub mod applications;
pub mod body;
pub mod caller;
pub mod eligibility;
pub mod gate;
pub mod ops;
pub mod rate_limit;
pub mod recommendations;
pub mod scholarships;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{MethodRouter, get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::state::SharedState;
use crate::telemetry;

pub fn app(state: SharedState) -> Router {
    let api = Api::new(&state)
        .route("/scholarships", Endpoint::Catalogue, get(scholarships::list))
        .route("/scholarships/{id}", Endpoint::Catalogue, get(scholarships::get_one))
        .route("/eligibility/check", Endpoint::Eligibility, post(eligibility::check))
        .route(
            "/recommendations",
            Endpoint::Recommendations,
            get(recommendations::recommend),
        )
        .route("/applications", Endpoint::Applications, post(applications::create))
        .route(
            "/applications/{id}",
            Endpoint::ApplicationsRead,
            get(applications::get_one),
        )
        .router;

    let routes = Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(state.config.server.body_limit_bytes))
        .layer(cors(&state.config.server.cors_allowed_origins));
    with_security_headers(routes)
        .layer(axum::middleware::from_fn_with_state(state.clone(), telemetry::observe))
        .with_state(state)
}

/// The `/api/v1` router. Its only way to add a route takes the route's `Endpoint` and wraps
/// every method the route answers (HEAD, derived from GET, included) in the gate for it: a
/// route here without authentication, replay check and rate limit cannot be written.
struct Api {
    state: SharedState,
    router: Router<SharedState>,
}

impl Api {
    fn new(state: &SharedState) -> Self {
        Self {
            state: state.clone(),
            router: Router::new(),
        }
    }

    fn route(self, path: &str, endpoint: Endpoint, methods: MethodRouter<SharedState>) -> Self {
        let guard = gate::Guard {
            state: self.state.clone(),
            endpoint,
        };
        let methods = methods.route_layer(axum::middleware::from_fn_with_state(guard, gate::gate));
        Self {
            router: self.router.route(path, methods),
            state: self.state,
        }
    }
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static(telemetry::REQUEST_ID),
        ])
        .expose_headers([
            header::ETAG,
            header::LINK,
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit-policy"),
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static(telemetry::REQUEST_ID),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Headers every response carries unless the handler chose otherwise.
fn with_security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    const HEADERS: [(HeaderName, &str); 5] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        // Private by default; public catalogue reads set their own Cache-Control.
        (header::CACHE_CONTROL, "no-store"),
    ];
    HEADERS.into_iter().fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}

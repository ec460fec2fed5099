//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::OpenApi;

use crate::routes::{applications, eligibility, ops, recommendations, scholarships};

#[derive(OpenApi)]
#[openapi(
    info(title = "Scholarship API", description = "Browse scholarships, check eligibility, get recommendations, apply. \
        Every error is an RFC 9457 problem+json body with a stable `code`."),
    paths(
        scholarships::list, scholarships::get_one, eligibility::check, recommendations::recommend,
        applications::create, applications::get_one,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    tags(
        (name = "catalogue", description = "Public, cacheable reads"),
        (name = "eligibility"), (name = "recommendations"), (name = "applications"), (name = "operations"),
    )
)]
pub struct ApiDoc;

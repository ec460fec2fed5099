//! `POST /api/v1/eligibility/check`: a profile against the catalogue, every verdict explained.

use axum::Json;
use axum::extract::State;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::JsonObject;
use super::caller::Caller;
use crate::eligibility::{Profile, Verdict, judge};
use crate::error::{ApiError, FieldError, Problem};
use crate::state::SharedState;

use crate::validate::Fields;

/// At most this many ids per check, to bound the work of one request.
pub const MAX_IDS: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
pub struct EligibilityRequest {
    #[serde(flatten)]
    pub profile: Profile,
    /// Only judge these scholarships (at most 100); all of them when absent.
    pub scholarship_ids: Option<Vec<Uuid>>,
    /// Only return scholarships the applicant is eligible for.
    #[serde(default)]
    pub only_eligible: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EligibilityResponse {
    /// The date deadlines were judged against (UTC).
    pub as_of: NaiveDate,
    pub eligible_count: usize,
    pub results: Vec<Verdict>,
}

/// Check an applicant profile against scholarships.
#[utoipa::path(post, path = "/api/v1/eligibility/check", tag = "eligibility", request_body = EligibilityRequest,
    responses(
        (status = 200, body = EligibilityResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn check(
    State(state): State<SharedState>,
    // Only for a verified caller: without one the extractor answers 401 first.
    _caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Json<EligibilityResponse>, ApiError> {
    let mut fields = Fields::json(&body);
    fields.reject_unknown(&[
        "gpa",
        "level",
        "field_of_study",
        "residency",
        "scholarship_ids",
        "only_eligible",
    ]);
    let profile = Profile::from_fields(&mut fields);
    let mut errors = fields.into_errors();
    let ids = parse_ids(body.get("scholarship_ids"), &mut errors);
    let only_eligible = match body.get("only_eligible") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new("only_eligible", "must be a boolean"));
            false
        }
    };
    let profile = match profile {
        Some(p) if errors.is_empty() => p,
        _ => return Err(ApiError::Validation(errors)),
    };

    let today = Utc::now().date_naive();
    let catalogue = state.catalogue.all(&state.db).await?;
    let results: Vec<Verdict> = catalogue
        .iter()
        .filter(|s| ids.as_ref().is_none_or(|ids| ids.contains(&s.id)))
        .map(|s| judge(&profile, s, today))
        .filter(|v| !only_eligible || v.eligible)
        .collect();
    Ok(Json(EligibilityResponse {
        as_of: today,
        eligible_count: results.iter().filter(|v| v.eligible).count(),
        results,
    }))
}

fn parse_ids(value: Option<&serde_json::Value>, errors: &mut Vec<FieldError>) -> Option<Vec<Uuid>> {
    let items = match value {
        None | Some(serde_json::Value::Null) => return None,
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => {
            errors.push(FieldError::new("scholarship_ids", "must be an array of UUIDs"));
            return None;
        }
    };
    if items.len() > MAX_IDS {
        errors.push(FieldError::new(
            "scholarship_ids",
            format!("must hold at most {MAX_IDS} ids"),
        ));
        return None;
    }
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.as_str().and_then(|s| Uuid::try_parse(s).ok()) {
            Some(id) => ids.push(id),
            None => errors.push(FieldError::new(format!("scholarship_ids[{i}]"), "must be a UUID")),
        }
    }
    Some(ids)
}

//! `POST /api/v1/applications` (idempotent) and `GET /api/v1/applications/{id}`.

use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::JsonObject;
use super::caller::Caller;
use super::scholarships::parse_id;
use crate::error::{ApiError, FieldError, Problem};
use crate::idempotency::{self, Reservation, StoredResponse};
use crate::state::SharedState;
use crate::store::{self, Application};
use crate::validate::Fields;

/// The application form. Everything in `applicant` and `essay` is personal data.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // read through `Fields`, declared here for the OpenAPI document
pub struct ApplicationRequest {
    scholarship_id: Uuid,
    applicant: Applicant,
    /// 1 to 20,000 characters.
    essay: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Applicant {
    /// 1 to 200 characters.
    full_name: String,
    email: String,
    /// YYYY-MM-DD; applicants are 14 to 100 years old.
    date_of_birth: NaiveDate,
    /// ISO 3166-1 alpha-2.
    residency: String,
    /// GPA on the 4.0 scale.
    gpa: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationReceipt {
    pub id: Uuid,
    pub scholarship_id: Uuid,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Submit an application (requires `Idempotency-Key`).
#[utoipa::path(post, path = "/api/v1/applications", tag = "applications", request_body = ApplicationRequest,
    params(("Idempotency-Key" = String, Header, description = "1 to 255 visible ASCII characters; remembered 24 h per caller")),
    responses(
        (status = 201, body = ApplicationReceipt, headers(("Location" = String))),
        (status = 400, description = "Missing or invalid Idempotency-Key, malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this key is still in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or the key was used with another body", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let form = validate(&body)?;
    let hash = idempotency::fingerprint("POST", uri.path(), &serde_json::Value::Object(body));
    let keys = idempotency::Store {
        db: &state.db,
        ttl: state.config.database.idempotency_ttl,
    };
    match keys.reserve(&caller.principal, &key, &hash).await? {
        Reservation::Replay(stored) => return Ok(stored_response(stored, true)),
        Reservation::Acquired => {}
    }
    match submit(&state, &caller, &key, form).await {
        Ok(stored) => Ok(stored_response(stored, false)),
        Err(e) => {
            keys.release(&caller.principal, &key).await;
            Err(e)
        }
    }
}

struct Form {
    scholarship_id: Uuid,
    applicant: serde_json::Value,
    essay: String,
}

fn validate(body: &serde_json::Map<String, serde_json::Value>) -> Result<Form, ApiError> {
    let mut f = Fields::json(body);
    f.reject_unknown(&["scholarship_id", "applicant", "essay"]);
    let scholarship_id = f.uuid("scholarship_id");
    let applicant = f.object("applicant", |a| {
        a.reject_unknown(&["full_name", "email", "date_of_birth", "residency", "gpa"]);
        let full_name = a.text("full_name", 200);
        let email = a.email("email");
        let date_of_birth = a
            .date("date_of_birth")
            .and_then(|born| match Utc::now().date_naive().years_since(born) {
                Some(14..=100) => Some(born),
                _ => a.invalid("date_of_birth", "applicants must be 14 to 100 years old"),
            });
        let residency = a.country("residency");
        let gpa = a.number("gpa", 0.0, 4.0);
        Some(json!({
            "full_name": full_name?, "email": email?, "date_of_birth": date_of_birth?,
            "residency": residency?, "gpa": gpa?,
        }))
    });
    let essay = f.text("essay", 20_000);
    let errors = f.into_errors();
    match (scholarship_id, applicant, essay) {
        (Some(scholarship_id), Some(applicant), Some(essay)) if errors.is_empty() => Ok(Form {
            scholarship_id,
            applicant,
            essay,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// Writes the application and completes the idempotency record in one transaction.
async fn submit(state: &SharedState, caller: &Caller, key: &str, form: Form) -> Result<StoredResponse, ApiError> {
    let scholarship = store::get_scholarship(&state.db, form.scholarship_id)
        .await?
        .ok_or_else(|| ApiError::Validation(vec![FieldError::new("scholarship_id", "no such scholarship")]))?;
    if scholarship.deadline < Utc::now().date_naive() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "scholarship_id",
            format!("the deadline ({}) has passed", scholarship.deadline),
        )]));
    }

    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO applications (id, principal, scholarship_id, applicant, essay) \
         VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
    )
    .bind(id)
    .bind(&caller.principal)
    .bind(form.scholarship_id)
    .bind(&form.applicant)
    .bind(&form.essay)
    .fetch_one(&mut *tx)
    .await?;
    let receipt = ApplicationReceipt {
        id,
        scholarship_id: form.scholarship_id,
        status: "submitted".into(),
        created_at,
    };
    let stored = StoredResponse {
        status: StatusCode::CREATED.as_u16(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("location".into(), format!("/api/v1/applications/{id}")),
        ],
        body: serde_json::to_vec(&receipt).map_err(ApiError::internal)?,
    };
    idempotency::Store::complete(&mut tx, &caller.principal, key, &stored).await?;
    tx.commit().await?;
    tracing::info!(application_id = %id, "application submitted");
    Ok(stored)
}

/// Rebuilds a stored response byte for byte; replays say so in `Idempotent-Replayed`.
fn stored_response(stored: StoredResponse, replayed: bool) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
    if replayed {
        headers.insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// Get one of the caller's applications.
#[utoipa::path(get, path = "/api/v1/applications/{id}", tag = "applications",
    params(("id" = Uuid, Path, description = "Application id")),
    responses(
        (status = 200, body = Application),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such application for this caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(state): State<SharedState>,
    caller: Caller,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    let cache = &state.applications;
    let body = match cache.get(&caller.principal, id) {
        Some(body) => body,
        None => {
            let read_at = cache.generation();
            let application = store::get_application(&state.db, &caller.principal, id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no application with id {id}")))?;
            let body = axum::body::Bytes::from(serde_json::to_vec(&application).unwrap_or_default());
            if let Some(read_at) = read_at {
                cache.insert(&caller.principal, id, body.clone(), read_at);
            }
            body
        }
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

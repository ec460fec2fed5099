//! PostgreSQL access: the catalogue, applications and idempotency records. Queries only; the
//! HTTP semantics live in `routes`.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Builds the pool lazily: the service starts (and reports not-ready) even when PostgreSQL
/// is down, instead of crash-looping.
pub fn pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options.application_name("scholarship-api")))
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct Scholarship {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub description: String,
    /// Field-of-study slug, e.g. `computer-science`.
    #[schema(example = "computer-science")]
    pub field_of_study: String,
    /// `undergraduate`, `masters` or `doctoral`.
    #[schema(example = "masters")]
    pub level: String,
    /// ISO 3166-1 alpha-2 code of the country of study.
    #[schema(example = "DE")]
    pub country: String,
    /// Residencies that may apply (ISO 3166-1 alpha-2); empty means open to all.
    pub eligible_residency: Vec<String>,
    /// Minimum GPA on the 4.0 scale.
    pub min_gpa: f64,
    /// Award amount in US dollars.
    pub amount_usd: i32,
    pub deadline: NaiveDate,
    pub updated_at: DateTime<Utc>,
}

/// `SELECT <scholarship columns> FROM scholarships <rest>`, as a literal sqlx can trust.
macro_rules! select_scholarships {
    ($rest:literal) => {
        concat!(
            "SELECT id, name, provider, description, field_of_study, level, country, ",
            "eligible_residency, min_gpa::float8 AS min_gpa, amount_usd, deadline, updated_at ",
            "FROM scholarships ",
            $rest
        )
    };
}

/// Catalogue filters; all optional and combined with AND.
#[derive(Debug, Default, Clone)]
pub struct CatalogueFilter {
    pub field_of_study: Option<String>,
    pub level: Option<String>,
    pub country: Option<String>,
    pub deadline_after: Option<NaiveDate>,
    pub min_amount_usd: Option<i32>,
}

/// A position in the stable (deadline, id) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueCursor {
    pub deadline: NaiveDate,
    pub id: Uuid,
}

pub async fn list_scholarships(
    db: &PgPool,
    filter: &CatalogueFilter,
    after: Option<CatalogueCursor>,
    limit: u32,
) -> Result<Vec<Scholarship>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new(select_scholarships!("WHERE true"));
    if let Some(v) = &filter.field_of_study {
        q.push(" AND field_of_study = ").push_bind(v);
    }
    if let Some(v) = &filter.level {
        q.push(" AND level = ").push_bind(v);
    }
    if let Some(v) = &filter.country {
        q.push(" AND country = ").push_bind(v);
    }
    if let Some(v) = filter.deadline_after {
        q.push(" AND deadline > ").push_bind(v);
    }
    if let Some(v) = filter.min_amount_usd {
        q.push(" AND amount_usd >= ").push_bind(v);
    }
    if let Some(c) = after {
        q.push(" AND (deadline, id) > (")
            .push_bind(c.deadline)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    q.push(" ORDER BY deadline, id LIMIT ").push_bind(i64::from(limit));
    q.build_query_as().fetch_all(db).await
}

pub async fn get_scholarship(db: &PgPool, id: Uuid) -> Result<Option<Scholarship>, sqlx::Error> {
    sqlx::query_as(select_scholarships!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The whole catalogue in stable order (a few hundred rows; eligibility and ranking read it).
pub async fn all_scholarships(db: &PgPool) -> Result<Vec<Scholarship>, sqlx::Error> {
    sqlx::query_as(select_scholarships!("ORDER BY deadline, id"))
        .fetch_all(db)
        .await
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Application {
    pub id: Uuid,
    pub scholarship_id: Uuid,
    pub status: String,
    pub created_at: DateTime<Utc>,
    /// The applicant as submitted (personal data: returned only to its owner).
    #[schema(value_type = Object)]
    pub applicant: serde_json::Value,
    pub essay: String,
}

pub async fn get_application(db: &PgPool, principal: &str, id: Uuid) -> Result<Option<Application>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, scholarship_id, status, created_at, applicant, essay \
         FROM applications WHERE id = $1 AND principal = $2",
    )
    .bind(id)
    .bind(principal)
    .fetch_optional(db)
    .await
}

//! `GET /api/v1/recommendations`: ranked scholarships for a profile, model-assisted when a
//! model is configured, rule-based otherwise or when the model fails.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::Utc;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::caller::Caller;
use super::scholarships::query_map;
use crate::eligibility::{self, Profile};
use crate::error::{ApiError, Problem};
use crate::metrics::{OpenAiOutcome, OutcomeLabels};
use crate::recommend::SHORTLIST;
use crate::state::SharedState;
use crate::store::Scholarship;
use crate::validate::Fields;

/// The caller's profile as query parameters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read through `Fields`, declared here for the OpenAPI document
pub struct RecommendParams {
    /// GPA on the 4.0 scale.
    gpa: f64,
    /// `undergraduate`, `masters` or `doctoral`.
    level: String,
    /// Field-of-study slug.
    field_of_study: String,
    /// Country of residence, ISO 3166-1 alpha-2.
    residency: String,
    /// How many to return, 1 to 50 (default 10).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RankingSource {
    /// The model's order.
    Model,
    /// The deterministic rule-based order (model disabled, slow, failing or unusable).
    Rules,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Recommendations {
    pub source: RankingSource,
    pub items: Vec<Recommendation>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Recommendation {
    pub rank: usize,
    /// Rule-based fit score in [0, 1].
    pub score: f64,
    pub scholarship: Scholarship,
}

/// Recommend scholarships for a profile.
#[utoipa::path(get, path = "/api/v1/recommendations", tag = "recommendations", params(RecommendParams),
    responses(
        (status = 200, body = Recommendations),
        (status = 400, description = "Invalid or missing profile parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`feature_disabled`: recommendations are switched off on this deployment",
         body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn recommend(
    State(state): State<SharedState>,
    // Only for a verified caller: without one the extractor answers 401 first.
    _caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Recommendations>, ApiError> {
    if !state.config.model.recommendations_enabled {
        count(&state, OpenAiOutcome::disabled);
        return Err(ApiError::FeatureDisabled);
    }
    let Query(pairs) = query.map_err(|e| ApiError::InvalidParameter {
        detail: e.body_text(),
        errors: Vec::new(),
    })?;
    let params = query_map(&pairs)?;
    let mut fields = Fields::query(&params);
    fields.reject_unknown(&["gpa", "level", "field_of_study", "residency", "limit"]);
    let profile = Profile::from_fields(&mut fields);
    let limit = if fields.present("limit") {
        fields.integer("limit", 1, 50)
    } else {
        Some(10)
    };
    let errors = fields.into_errors();
    let (Some(profile), Some(limit), true) = (profile, limit, errors.is_empty()) else {
        return Err(ApiError::invalid_parameters(errors));
    };

    let catalogue = state.catalogue.all(&state.db).await?;
    let ranked = eligibility::rank(&profile, &catalogue, Utc::now().date_naive());
    let (source, ordered) = order(&state, &profile, &ranked).await;
    let items = ordered
        .into_iter()
        .take(limit as usize)
        .enumerate()
        .map(|(i, (s, score))| Recommendation {
            rank: i + 1,
            score,
            scholarship: s.clone(),
        })
        .collect();
    Ok(Json(Recommendations { source, items }))
}

async fn order<'a>(
    state: &SharedState,
    profile: &Profile,
    ranked: &[(&'a Scholarship, f64)],
) -> (RankingSource, Vec<(&'a Scholarship, f64)>) {
    let Some(model) = &state.model else {
        count(state, OpenAiOutcome::disabled);
        return (RankingSource::Rules, ranked.to_vec());
    };
    if ranked.is_empty() {
        // Nothing to rank; asking the model would only cost time.
        return (RankingSource::Rules, Vec::new());
    }
    let shortlist: Vec<&Scholarship> = ranked.iter().take(SHORTLIST).map(|(s, _)| *s).collect();
    let answer = model.rank(profile, &shortlist).await;
    count(state, answer.outcome);
    match answer.order {
        Some(ids) => {
            let mut reordered: Vec<_> = ids
                .iter()
                .filter_map(|id| ranked.iter().find(|(s, _)| s.id == *id).copied())
                .collect();
            reordered.extend(ranked.iter().skip(SHORTLIST).copied());
            (RankingSource::Model, reordered)
        }
        None => (RankingSource::Rules, ranked.to_vec()),
    }
}

fn count(state: &SharedState, outcome: OpenAiOutcome) {
    state
        .metrics
        .openai_requests
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

//! The public catalogue: filtered, keyset-paginated, cacheable.

use crate::catalogue::etag_of;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::eligibility::LEVELS;
use crate::error::{ApiError, FieldError, Problem};
use crate::state::SharedState;
use crate::store::{self, CatalogueCursor, CatalogueFilter, Scholarship};
use crate::validate::Fields;

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;
/// Catalogue reads may be cached briefly by browsers and shared caches.
const PUBLIC_CACHE: &str = "public, max-age=60";

/// Query parameters of `GET /api/v1/scholarships` (documentation; parsing is strict and
/// reports every bad parameter).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read through `Fields`, declared here for the OpenAPI document
pub struct ListParams {
    /// Field-of-study slug, e.g. `computer-science`.
    field_of_study: Option<String>,
    /// `undergraduate`, `masters` or `doctoral`.
    level: Option<String>,
    /// Country of study, ISO 3166-1 alpha-2.
    country: Option<String>,
    /// Only scholarships whose deadline is after this date (YYYY-MM-DD).
    deadline_after: Option<String>,
    /// Minimum award in US dollars.
    min_amount: Option<i64>,
    /// Items per page, 1 to 100 (default 20).
    page_size: Option<i64>,
    /// Opaque cursor from a previous page's `next_cursor`.
    cursor: Option<String>,
}

const LIST_PARAMS: [&str; 7] = [
    "field_of_study",
    "level",
    "country",
    "deadline_after",
    "min_amount",
    "page_size",
    "cursor",
];

#[derive(Debug, Serialize, ToSchema)]
pub struct ScholarshipPage {
    pub items: Vec<Scholarship>,
    pub page_size: i64,
    /// Pass as `cursor` (with the same filters) for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    pub links: PageLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PageLinks {
    /// The next page, filters included; also sent as a `Link: <...>; rel="next"` header.
    pub next: Option<String>,
}

/// List scholarships.
#[utoipa::path(get, path = "/api/v1/scholarships", tag = "catalogue", params(ListParams),
    responses(
        (status = 200, description = "A page of scholarships in (deadline, id) order", body = ScholarshipPage,
         headers(("ETag" = String), ("Cache-Control" = String), ("Link" = String))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::InvalidParameter {
        detail: e.body_text(),
        errors: Vec::new(),
    })?;
    let params = query_map(&pairs)?;
    let (filter, cursor, page_size) = parse_list_params(&params)?;

    let mut rows = store::list_scholarships(&state.db, &filter, cursor, (page_size + 1) as u32).await?;
    let next_cursor = if rows.len() as i64 > page_size {
        rows.truncate(page_size as usize);
        rows.last().map(|s| {
            encode_cursor(CatalogueCursor {
                deadline: s.deadline,
                id: s.id,
            })
        })
    } else {
        None
    };
    let next = next_cursor.as_ref().map(|c| next_link(&pairs, c));
    let page = ScholarshipPage {
        items: rows,
        page_size,
        next_cursor,
        links: PageLinks { next: next.clone() },
    };
    let mut response = cacheable(&headers, &page);
    if let Some(link) = next.and_then(|n| HeaderValue::from_str(&format!("<{n}>; rel=\"next\"")).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// Get one scholarship.
#[utoipa::path(get, path = "/api/v1/scholarships/{id}", tag = "catalogue",
    params(("id" = Uuid, Path, description = "Scholarship id")),
    responses(
        (status = 200, body = Scholarship, headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such scholarship", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    if let Some(snapshot) = state.catalogue.snapshot() {
        return match snapshot.get(id) {
            Some(cached) => Ok(tagged(&headers, cached.body.clone(), &cached.etag)),
            None => Err(ApiError::NotFound(format!("no scholarship with id {id}"))),
        };
    }
    let scholarship = store::get_scholarship(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no scholarship with id {id}")))?;
    Ok(cacheable(&headers, &scholarship))
}

pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::InvalidParameter {
        detail: "path parameter `id` must be a UUID".into(),
        errors: vec![FieldError::new("id", "must be a UUID")],
    })
}

/// Query pairs as a map; a parameter given twice is ambiguous and refused.
pub fn query_map(pairs: &[(String, String)]) -> Result<Map<String, Value>, ApiError> {
    let mut map = Map::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), Value::String(v.clone())).is_some() {
            return Err(ApiError::invalid_parameter(k, "is given more than once"));
        }
    }
    Ok(map)
}

fn parse_list_params(params: &Map<String, Value>) -> Result<(CatalogueFilter, Option<CatalogueCursor>, i64), ApiError> {
    let mut f = Fields::query(params);
    f.reject_unknown(&LIST_PARAMS);
    let mut filter = CatalogueFilter::default();
    if f.present("field_of_study") {
        filter.field_of_study = f.slug("field_of_study");
    }
    if f.present("level") {
        filter.level = f.one_of("level", &LEVELS);
    }
    if f.present("country") {
        filter.country = f.country("country");
    }
    if f.present("deadline_after") {
        filter.deadline_after = f.date("deadline_after");
    }
    if f.present("min_amount") {
        filter.min_amount_usd = f.integer("min_amount", 0, i64::from(i32::MAX)).map(|v| v as i32);
    }
    let page_size = if f.present("page_size") {
        f.integer("page_size", 1, MAX_PAGE_SIZE)
    } else {
        Some(DEFAULT_PAGE_SIZE)
    };
    let mut errors = f.into_errors();
    let cursor = match params.get("cursor").and_then(Value::as_str) {
        Some(raw) => match decode_cursor(raw) {
            Some(c) => Some(c),
            None => {
                errors.push(FieldError::new("cursor", "is not a cursor returned by this API"));
                None
            }
        },
        None => None,
    };
    match (errors.is_empty(), page_size) {
        (true, Some(page_size)) => Ok((filter, cursor, page_size)),
        _ => Err(ApiError::invalid_parameters(errors)),
    }
}

fn encode_cursor(c: CatalogueCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", c.deadline, c.id))
}

fn decode_cursor(raw: &str) -> Option<CatalogueCursor> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (deadline, id) = text.split_once('|')?;
    Some(CatalogueCursor {
        deadline: deadline.parse().ok()?,
        id: Uuid::try_parse(id).ok()?,
    })
}

fn next_link(pairs: &[(String, String)], cursor: &str) -> String {
    let mut url = reqwest::Url::parse("http://link/api/v1/scholarships").expect("a constant URL parses");
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs.iter().filter(|(k, _)| k != "cursor") {
            q.append_pair(k, v);
        }
        q.append_pair("cursor", cursor);
    }
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

/// Serialises `body` with a strong ETag over its bytes and answers 304 when the client
/// already has it.
pub fn cacheable<T: Serialize>(request_headers: &HeaderMap, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let etag = etag_of(&bytes);
    tagged(request_headers, bytes.into(), &etag)
}

/// A JSON body with its ETag: 304 when `If-None-Match` names it.
fn tagged(request_headers: &HeaderMap, bytes: axum::body::Bytes, etag: &str) -> Response {
    let etag_value = HeaderValue::from_str(etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    let cache = HeaderValue::from_static(PUBLIC_CACHE);
    if if_none_match_hits(request_headers, etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response()
}

/// RFC 9110 §13.1.2: weak comparison, a list of tags, or `*`.
fn if_none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = CatalogueCursor {
            deadline: "2027-03-01".parse().unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(decode_cursor(&encode_cursor(c)), Some(c));
        assert_eq!(decode_cursor("not-a-cursor"), None);
    }

    #[test]
    fn weak_and_listed_etags_match() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"b\""));
        assert!(if_none_match_hits(&h, "\"b\""));
        assert!(!if_none_match_hits(&h, "\"c\""));
    }

    #[test]
    fn next_link_keeps_filters_and_replaces_cursor() {
        let pairs = vec![
            ("level".to_owned(), "masters".to_owned()),
            ("cursor".to_owned(), "old".to_owned()),
        ];
        assert_eq!(
            next_link(&pairs, "new"),
            "/api/v1/scholarships?level=masters&cursor=new"
        );
    }
}

//! HTTP routing: maps Kubernetes REST paths and query parameters onto [`crate::api`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::api::{self, DeleteOpts, FieldValidation, ListParams, Target, WriteOpts};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::Store;
use crate::watch::{self, WatchRequest};
use crate::{discovery, events, openapi, table};

#[derive(Clone)]
struct AppState {
    store: Arc<Store>,
    address: String,
}

/// Serves on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let store = Arc::new(Store::new(crate::StoreConfig::default()));
    api::seed(&store);
    axum::serve(listener, router(store, addr.to_string())).await
}

pub fn router(store: Arc<Store>, address: String) -> Router {
    let state = AppState { store, address };
    Router::new()
        .route(
            "/version",
            get(|| async { json_response(StatusCode::OK, &discovery::version()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .fallback(handle)
        .with_state(state)
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

async fn handle(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    tracing::debug!(%method, %uri, "request");
    match route(&app, &method, &uri, &headers, &q, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn accept_as(headers: &HeaderMap) -> Option<String> {
    let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or_default();
    // The first acceptable media type wins; we serve Table and PartialObjectMetadata(List).
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        if let Some(as_) = params.iter().find_map(|p| p.strip_prefix("as=")) {
            if matches!(as_, "Table" | "PartialObjectMetadata" | "PartialObjectMetadataList") {
                return Some(as_.to_string());
            }
        } else if params.first().is_some_and(|m| *m == "application/json" || *m == "*/*") {
            return None;
        }
    }
    None
}

async fn route(
    app: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    body: Bytes,
) -> ApiResult<Response> {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let store = &app.store;
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api"] => return Ok(json_response(StatusCode::OK, &discovery::api_versions(&app.address))),
        ["apis"] => return Ok(json_response(StatusCode::OK, &discovery::api_group_list(&store.lock()))),
        ["apis", g] => {
            return discovery::api_group(&store.lock(), g)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
        ["openapi", "v3"] => return Ok(json_response(StatusCode::OK, &openapi::v3_index(&store.lock()))),
        ["openapi", "v3", "api", v] => {
            return openapi::gv_doc(&store.lock(), "", v)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
        ["openapi", "v3", "apis", g, v] => {
            return openapi::gv_doc(&store.lock(), g, v)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    if rest.is_empty() {
        return discovery::api_resource_list(&store.lock(), group, version)
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let target = {
        let st = store.lock();
        let namespaced_collection = rest.len() >= 3
            && rest[0] == "namespaces"
            && st.find_type(group, version, rest[2]).is_some_and(|t| t.namespaced);
        let (ns, plural, name, sub) = if namespaced_collection {
            (Some(rest[1]), rest[2], rest.get(3).copied(), rest.get(4).copied())
        } else {
            (None, rest[0], rest.get(1).copied(), rest.get(2).copied())
        };
        let rt = st
            .find_type(group, version, plural)
            .cloned()
            .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"))?;
        if sub.is_some_and(|s| !(s == "status" && rt.status_subresource || s == "scale" && rt.scale.is_some())) {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        Target {
            rt,
            version: version.to_string(),
            namespace: ns.map(String::from),
            name: name.map(String::from),
            subresource: sub.map(String::from),
        }
    };
    let write_opts = WriteOpts {
        dry_run: q.get("dryRun").is_some_and(|d| d == "All"),
        field_validation: match q.get("fieldValidation").map(String::as_str) {
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            _ => FieldValidation::Warn,
        },
        field_manager: q.get("fieldManager").cloned(),
        force: q.get("force").is_some_and(|f| f == "true"),
    };
    let target_name = target.name.clone();
    let list_params = || -> ApiResult<ListParams> {
        let mut fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or_default())?;
        if legacy_watch && let Some(name) = &target_name {
            fields = FieldSelector::parse(&format!("metadata.name={name}"))?;
        }
        Ok(ListParams {
            labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or_default())?,
            fields,
            limit: q.get("limit").and_then(|l| l.parse().ok()),
            continue_token: q.get("continue").cloned(),
        })
    };
    let as_ = accept_as(headers);
    let include = q
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "PartialObjectMetadata".into());
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let watching = legacy_watch || q.get("watch").is_some_and(|w| w == "true" || w == "1");

    if target.rt.group == "events.k8s.io" {
        let req = EventsRequest {
            store,
            method,
            target,
            params: list_params()?,
            q,
            body: &body,
            content_type: &content_type,
            write_opts: &write_opts,
            watching,
            as_: as_.as_deref(),
            include: &include,
        };
        return events_route(req).await;
    }
    match *method {
        Method::GET if watching => {
            let mut target = target;
            let mut params = list_params()?;
            if let Some(name) = target.name.take() {
                params.fields = FieldSelector::parse(&format!("metadata.name={name}"))?;
            }
            let req = WatchRequest {
                target,
                params,
                resource_version: q.get("resourceVersion").cloned(),
                send_initial_events: q.get("sendInitialEvents").is_some_and(|s| s == "true"),
                bookmarks: q.get("allowWatchBookmarks").is_some_and(|s| s == "true"),
                timeout: q
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .map(Duration::from_secs),
                table: (as_.as_deref() == Some("Table")).then_some(include),
                storage: None,
            };
            Ok(watch::watch(store.clone(), req).await)
        }
        Method::GET if target.name.is_none() => {
            let (items, meta) = api::list(store, &target, &list_params()?)?;
            let body = match as_.as_deref() {
                Some("Table") => table::table(&target.rt, &target.version, &items, meta, &include),
                Some(_) => json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                    "items": items.iter().map(partial).collect::<Vec<_>>(),
                }),
                None => json!({
                    "kind": format!("{}List", target.rt.kind),
                    "apiVersion": target.rt.api_version(&target.version),
                    "metadata": meta,
                    "items": items,
                }),
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        Method::GET => {
            let obj = api::get(store, &target)?;
            let body = if target.subresource.as_deref() == Some("scale") {
                api::scale_of(&target, &obj)?
            } else {
                match as_.as_deref() {
                    Some("Table") => {
                        let rv = obj["metadata"]["resourceVersion"].clone();
                        table::table(
                            &target.rt,
                            &target.version,
                            &[obj],
                            json!({"resourceVersion": rv}),
                            &include,
                        )
                    }
                    Some(_) => partial(&obj),
                    None => obj,
                }
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        Method::POST if target.name.is_none() => {
            let obj = api::parse_body(&body, true)?;
            let w = api::create(store, &target, obj, &write_opts)?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &w.object),
                &w.warnings,
            ))
        }
        Method::PUT if target.name.is_some() => {
            if target.subresource.as_deref() == Some("scale") {
                let scale = api::write_scale(store, &target, None, &body, &write_opts)?;
                return Ok(json_response(StatusCode::OK, &scale));
            }
            let obj = api::parse_body(&body, true)?;
            let w = api::update(store, &target, obj, &write_opts)?;
            let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(with_warnings(json_response(code, &w.object), &w.warnings))
        }
        Method::PATCH if target.name.is_some() => {
            if target.subresource.as_deref() == Some("scale") {
                let scale = api::write_scale(store, &target, Some(&content_type), &body, &write_opts)?;
                return Ok(json_response(StatusCode::OK, &scale));
            }
            let w = api::patch(store, &target, &content_type, &body, &write_opts)?;
            let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(with_warnings(json_response(code, &w.object), &w.warnings))
        }
        Method::DELETE => {
            let opts_body: Value = if body.is_empty() {
                json!({})
            } else {
                api::parse_body(&body, true).unwrap_or(json!({}))
            };
            let opts = DeleteOpts {
                propagation: q
                    .get("propagationPolicy")
                    .cloned()
                    .or_else(|| opts_body["propagationPolicy"].as_str().map(String::from))
                    .or_else(|| match opts_body["orphanDependents"].as_bool() {
                        Some(true) => Some("Orphan".into()),
                        _ => None,
                    }),
                precondition_uid: opts_body["preconditions"]["uid"].as_str().map(String::from),
                precondition_rv: opts_body["preconditions"]["resourceVersion"].as_str().map(String::from),
                dry_run: write_opts.dry_run
                    || opts_body["dryRun"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|d| d == "All")),
            };
            if target.name.is_none() {
                let items = api::delete_collection(store, &target, &list_params()?, &opts)?;
                let body = json!({
                    "kind": format!("{}List", target.rt.kind),
                    "apiVersion": target.rt.api_version(&target.version),
                    "metadata": {},
                    "items": items,
                });
                return Ok(json_response(StatusCode::OK, &body));
            }
            let obj = api::delete(store, &target, &opts)?;
            let code = if obj["metadata"].get("deletionTimestamp").is_some() && api::get(store, &target).is_ok() {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok(json_response(code, &obj))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource".to_string(),
        )),
    }
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

struct EventsRequest<'a> {
    store: &'a Arc<Store>,
    method: &'a Method,
    target: Target,
    params: ListParams,
    q: &'a HashMap<String, String>,
    body: &'a Bytes,
    content_type: &'a str,
    write_opts: &'a WriteOpts,
    watching: bool,
    as_: Option<&'a str>,
    include: &'a str,
}

/// events.k8s.io/v1 requests, served from core/v1 Event storage through [`crate::events`].
async fn events_route(r: EventsRequest<'_>) -> ApiResult<Response> {
    let core_rt = r
        .store
        .lock()
        .find_type("", "v1", "events")
        .cloned()
        .ok_or_else(|| ApiError::internal("core events are not served"))?;
    let core = Target {
        rt: core_rt,
        version: "v1".into(),
        ..r.target.clone()
    };
    let v1 = |o: Value| events::to_v1(&o);
    match *r.method {
        Method::GET if r.watching => {
            let mut target = r.target.clone();
            let mut params = r.params.clone();
            if let Some(name) = target.name.take() {
                params.fields = FieldSelector::parse(&format!("metadata.name={name}"))?;
            }
            let req = WatchRequest {
                target,
                params,
                resource_version: r.q.get("resourceVersion").cloned(),
                send_initial_events: r.q.get("sendInitialEvents").is_some_and(|s| s == "true"),
                bookmarks: r.q.get("allowWatchBookmarks").is_some_and(|s| s == "true"),
                timeout: r
                    .q
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .map(Duration::from_secs),
                table: (r.as_ == Some("Table")).then(|| r.include.to_string()),
                storage: Some((core.rt.key(), events::to_v1)),
            };
            Ok(watch::watch(r.store.clone(), req).await)
        }
        Method::GET if r.target.name.is_none() => {
            // Selectors use events.k8s.io field names, so they apply to the converted objects.
            let all = ListParams {
                labels: r.params.labels.clone(),
                ..ListParams::default()
            };
            let (items, meta) = api::list(r.store, &core, &all)?;
            let items: Vec<Value> = items
                .into_iter()
                .map(v1)
                .filter(|o| r.params.fields.matches(o))
                .collect();
            let body = match r.as_ {
                Some("Table") => table::table(&r.target.rt, &r.target.version, &items, meta, r.include),
                _ => json!({"kind": "EventList", "apiVersion": "events.k8s.io/v1", "metadata": meta, "items": items}),
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        Method::GET => Ok(json_response(StatusCode::OK, &v1(api::get(r.store, &core)?))),
        Method::POST => {
            let obj = events::to_core(&api::parse_body(r.body, true)?);
            let w = api::create(r.store, &core, obj, r.write_opts)?;
            Ok(json_response(StatusCode::CREATED, &v1(w.object)))
        }
        Method::PUT => {
            let obj = events::to_core(&api::parse_body(r.body, true)?);
            let w = api::update(r.store, &core, obj, r.write_opts)?;
            Ok(json_response(
                if w.created { StatusCode::CREATED } else { StatusCode::OK },
                &v1(w.object),
            ))
        }
        Method::PATCH => {
            let mut current = v1(api::get(r.store, &core)?);
            let rv = current["metadata"]["resourceVersion"].clone();
            let patch = api::parse_body(r.body, true)?;
            match r.content_type.split(';').next().unwrap_or_default().trim() {
                "application/json-patch+json" => crate::patch::json::json_patch(&mut current, &patch)?,
                "application/strategic-merge-patch+json" => {
                    crate::patch::strategic::strategic_merge(&mut current, &patch)?
                }
                // Apply is approximated by a merge for Events (nothing here applies them).
                _ => crate::patch::merge::merge_patch(&mut current, &patch),
            }
            if patch["metadata"]["resourceVersion"].is_null() {
                current["metadata"]["resourceVersion"] = rv;
            }
            let w = api::update(r.store, &core, events::to_core(&current), r.write_opts)?;
            Ok(json_response(StatusCode::OK, &v1(w.object)))
        }
        Method::DELETE if r.target.name.is_some() => {
            let obj = api::delete(r.store, &core, &DeleteOpts::default())?;
            Ok(json_response(StatusCode::OK, &v1(obj)))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

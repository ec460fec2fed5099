//! Watch streams: newline-delimited `{"type": ..., "object": ...}` events, resumable from a
//! resourceVersion while it is still in history (`410 Gone` as an ERROR event otherwise),
//! with BOOKMARKs, `timeoutSeconds` and `sendInitialEvents` (streaming lists).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::api::{ListParams, Target, to_version};
use crate::status::ApiError;
use crate::store::{ChangeType, Store};
use crate::table;

/// Presents a stored object in the shape the watch was asked for.
pub type ViewFn = fn(&Value) -> Value;

/// What a watch request asked for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub target: Target,
    pub params: ListParams,
    pub resource_version: Option<String>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    /// `Some(includeObject)` when the client asked for Table events (`kubectl get -w`).
    pub table: Option<String>,
    /// Where the objects live when it is not the target's own storage, and how to present
    /// them (events.k8s.io/v1 Events are stored as core/v1 Events, as on a real server).
    pub storage: Option<(crate::store::TypeKey, ViewFn)>,
}

impl WatchRequest {
    fn view(&self, obj: &Value) -> Value {
        match &self.storage {
            Some((_, convert)) => convert(obj),
            None => obj.clone(),
        }
    }
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn render(req: &WatchRequest, kind: &str, obj: Value) -> Value {
    let obj = to_version(obj, &req.target.rt, &req.target.version);
    let object = match &req.table {
        Some(include) => {
            let rv = obj["metadata"]["resourceVersion"].clone();
            table::table(
                &req.target.rt,
                &req.target.version,
                &[obj],
                json!({"resourceVersion": rv}),
                include,
            )
        }
        None => obj,
    };
    json!({"type": kind, "object": object})
}

fn bookmark(req: &WatchRequest, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {
        "kind": req.target.rt.kind,
        "apiVersion": req.target.rt.api_version(&req.target.version),
        "metadata": meta,
    }})
}

fn in_scope(req: &WatchRequest, namespace: &str) -> bool {
    !req.target.rt.namespaced || req.target.namespace.as_deref().is_none_or(|ns| ns == namespace)
}

/// Starts a watch and returns the streaming response.
pub async fn watch(store: Arc<Store>, req: WatchRequest) -> Response {
    // While the "API server is unreachable" (tests), hold the request.
    let mut blackout = store.blackout();
    let _ = blackout.wait_for(|on| !*on).await;

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut disconnects = store.disconnects();
    disconnects.borrow_and_update();
    let key = req
        .storage
        .as_ref()
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| req.target.rt.key());

    // Under the lock: the initial events and the live subscription, so no change falls between them.
    let (initial, mut live, start_rv, gone) = {
        let st = store.lock();
        let live = store.subscribe();
        let from = req
            .resource_version
            .as_deref()
            .filter(|rv| !rv.is_empty() && *rv != "0");
        let mut initial = Vec::new();
        let mut gone = false;
        let snapshot = req.send_initial_events || from.is_none();
        if snapshot {
            if let Some(objs) = st.objects_of(&key) {
                for ((ns, _), o) in objs {
                    let o = req.view(o);
                    if in_scope(&req, ns) && req.params.matches(&o) {
                        initial.push(render(&req, "ADDED", o));
                    }
                }
            }
        } else {
            let rv: u64 = from.and_then(|r| r.parse().ok()).unwrap_or(0);
            match st.changes_since(rv) {
                Some(changes) => {
                    for c in changes.iter().filter(|c| c.group == key.0 && c.plural == key.1) {
                        if let Some(ev) = filter(&req, c) {
                            initial.push(ev);
                        }
                    }
                }
                None => gone = true,
            }
        }
        (initial, live, st.rv, gone)
    };

    let req2 = req.clone();
    let interval = store.config.bookmark_interval;
    tokio::spawn(async move {
        let req = req2;
        if gone {
            let err = ApiError::gone(format!(
                "too old resource version: {} ",
                req.resource_version.clone().unwrap_or_default()
            ));
            let _ = tx
                .send(line(&json!({"type": "ERROR", "object": err.to_status()})))
                .await;
            return;
        }
        for ev in initial {
            if tx.send(line(&ev)).await.is_err() {
                return;
            }
        }
        let mut last_rv = start_rv;
        if req.send_initial_events && tx.send(line(&bookmark(&req, last_rv, true))).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(req.timeout.unwrap_or(Duration::from_secs(1800)));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = disconnects.changed() => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if req.bookmarks => {
                    if tx.send(line(&bookmark(&req, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                msg = live.recv() => match msg {
                    Ok(c) => {
                        if c.rv <= start_rv {
                            continue;
                        }
                        last_rv = c.rv;
                        if c.group != key.0 || c.plural != key.1 {
                            continue;
                        }
                        if let Some(ev) = filter(&req, &c)
                            && tx.send(line(&ev)).await.is_err() {
                                return;
                            }
                    }
                    // A watcher that cannot keep up is closed, as the real watch cache does;
                    // the client re-watches from its last resourceVersion.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });

    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Turns a change into the event this watch should see (if any), honouring selectors the way
/// the real watch cache does (an object that stops matching is DELETED for this watch).
fn filter(req: &WatchRequest, c: &crate::store::Change) -> Option<Value> {
    if !in_scope(req, &c.namespace) {
        return None;
    }
    let object = req.view(&c.object);
    let now = req.params.matches(&object);
    match c.kind {
        ChangeType::Added => now.then(|| render(req, "ADDED", object.clone())),
        ChangeType::Deleted => now.then(|| render(req, "DELETED", object.clone())),
        ChangeType::Modified => {
            let before = c.previous.as_ref().is_some_and(|p| req.params.matches(&req.view(p)));
            match (before, now) {
                (true, true) => Some(render(req, "MODIFIED", object.clone())),
                (false, true) => Some(render(req, "ADDED", object.clone())),
                (true, false) => Some(render(req, "DELETED", object.clone())),
                (false, false) => None,
            }
        }
    }
}

//! Model stand-in: an OpenAI-compatible `POST /v1/chat/completions` on loopback, for the
//! API's model-assisted recommendations.
//!
//! It answers the way the API asks to be answered (a JSON object `{"ranking": [ids]}` in the
//! first choice's message), ranking the scholarships it was sent by award amount. Switched to
//! throttled, it answers as the real service does when a key's rate limit is spent: `429` with
//! `Retry-After`, `x-ratelimit-remaining-requests: 0` and an error object whose code is
//! `rate_limit_exceeded`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct ModelState {
    throttled: AtomicBool,
    answered: AtomicU64,
    refused: AtomicU64,
}

/// A running model stand-in; stops when dropped.
#[derive(Debug)]
pub struct ModelStandIn {
    pub addr: SocketAddr,
    state: Arc<ModelState>,
    server: JoinHandle<()>,
}

impl ModelStandIn {
    /// Listens on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ModelState::default());
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, server })
    }

    /// The `--openai-base-url` to give the API.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Throttles every request from now on (`true`), or serves again (`false`).
    pub fn set_throttled(&self, throttled: bool) {
        self.state.throttled.store(throttled, Ordering::SeqCst);
    }

    /// Completions answered so far.
    pub fn answered(&self) -> u64 {
        self.state.answered.load(Ordering::SeqCst)
    }

    /// Requests refused with 429 so far.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl Drop for ModelStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn complete(State(state): State<Arc<ModelState>>, Json(request): Json<Value>) -> Response {
    if state.throttled.load(Ordering::SeqCst) {
        state.refused.fetch_add(1, Ordering::SeqCst);
        let error = json!({"error": {
            "message": "Rate limit reached for requests per minute. Please try again in 1s.",
            "type": "requests",
            "param": null,
            "code": "rate_limit_exceeded",
        }});
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(error)).into_response();
        let headers = response.headers_mut();
        headers.insert("retry-after", HeaderValue::from_static("1"));
        headers.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
        return response;
    }
    let Some(ranking) = rank(&request) else {
        let error = json!({"error": {
            "message": "messages[1].content must be the student and the scholarships as JSON",
            "type": "invalid_request_error",
            "param": "messages",
            "code": null,
        }});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    state.answered.fetch_add(1, Ordering::SeqCst);
    let model = request["model"].as_str().unwrap_or("gpt-4o-mini");
    Json(json!({
        "id": format!("chatcmpl-standin-{}", state.answered.load(Ordering::SeqCst)),
        "object": "chat.completion",
        "model": model,
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": json!({"ranking": ranking}).to_string()},
        }],
    }))
    .into_response()
}

/// The ids of the scholarships in the user message, largest award first.
fn rank(request: &Value) -> Option<Vec<String>> {
    let content = request["messages"].as_array()?.iter().find(|m| m["role"] == "user")?["content"].as_str()?;
    let asked: Value = serde_json::from_str(content).ok()?;
    let mut listed: Vec<(f64, String)> = asked["scholarships"]
        .as_array()?
        .iter()
        .map(|s| Some((s["amount_usd"].as_f64().unwrap_or(0.0), s["id"].as_str()?.to_owned())))
        .collect::<Option<_>>()?;
    listed.sort_by(|a, b| b.0.total_cmp(&a.0));
    Some(listed.into_iter().map(|(_, id)| id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_the_listed_scholarships_by_award() {
        let user = json!({"student": {}, "scholarships": [
            {"id": "a", "amount_usd": 1000}, {"id": "b", "amount_usd": 5000}, {"id": "c", "amount_usd": 2500},
        ]});
        let request = json!({"messages": [
            {"role": "system", "content": "rank"},
            {"role": "user", "content": user.to_string()},
        ]});
        assert_eq!(rank(&request), Some(vec!["b".into(), "c".into(), "a".into()]));
        assert_eq!(rank(&json!({"messages": []})), None);
    }
}

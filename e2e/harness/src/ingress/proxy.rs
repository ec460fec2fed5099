//! The proxying itself: one upstream request per downstream request, hop-by-hop headers
//! dropped, `X-Forwarded-*` set as ingress-nginx sets them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::IngressConfig;
use super::stats::{Outcome, RoutingState};
use super::weight::Backend;
use crate::error::Result;

/// Request bodies larger than this are refused (the API's own limit is 64 KiB).
const MAX_BODY_BYTES: usize = 1024 * 1024;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1), plus `host`,
/// which the upstream connection sets itself.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

#[derive(Clone)]
pub(super) struct Upstreams {
    client: reqwest::Client,
    stable: String,
    canary: String,
    state: Arc<Mutex<RoutingState>>,
}

impl Upstreams {
    pub(super) fn new(config: &IngressConfig, state: Arc<Mutex<RoutingState>>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy() // upstreams are loopback: never route them through $HTTP_PROXY
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.upstream_timeout)
            .build()?;
        Ok(Self {
            client,
            stable: format!("http://{}", config.stable_backend),
            canary: format!("http://{}", config.canary_backend),
            state,
        })
    }

    fn base(&self, backend: Backend) -> &str {
        match backend {
            Backend::Stable => &self.stable,
            Backend::Canary => &self.canary,
        }
    }
}

pub(super) fn router(upstreams: Upstreams) -> axum::Router {
    axum::Router::new().fallback(forward).with_state(upstreams)
}

async fn forward(
    State(upstreams): State<Upstreams>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (backend, segment) = upstreams.state.lock().unwrap_or_else(PoisonError::into_inner).route();
    let (response, outcome) = match send(&upstreams, backend, peer, request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            (response, Outcome::Status(status))
        }
        Err(failure) => {
            tracing::warn!(?backend, error = %failure.detail, "upstream request failed");
            (failure.status.into_response(), Outcome::TransportError)
        }
    };
    upstreams
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .finish(segment, backend, outcome);
    response
}

struct UpstreamFailure {
    status: StatusCode,
    detail: String,
}

impl UpstreamFailure {
    fn from_reqwest(e: &reqwest::Error) -> Self {
        let status = if e.is_timeout() {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        Self {
            status,
            detail: e.to_string(),
        }
    }
}

async fn send(
    upstreams: &Upstreams,
    backend: Backend,
    peer: SocketAddr,
    request: Request,
) -> Result<Response, UpstreamFailure> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", upstreams.base(backend));
    let body = to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| UpstreamFailure {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        detail: e.to_string(),
    })?;
    let headers = forwarded_headers(&parts.headers, peer);
    let upstream = upstreams
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| UpstreamFailure::from_reqwest(&e))?;
    let status = upstream.status();
    let mut response_headers = upstream.headers().clone();
    strip_hop_by_hop(&mut response_headers);
    let bytes = upstream.bytes().await.map_err(|e| UpstreamFailure::from_reqwest(&e))?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    Ok(response)
}

/// The downstream headers minus hop-by-hop ones, with the peer appended to `X-Forwarded-For`
/// (ingress-nginx with `compute-full-forwarded-for`) and `X-Real-IP`, `X-Forwarded-Proto`,
/// `X-Forwarded-Host` set.
pub(super) fn forwarded_headers(incoming: &HeaderMap, peer: SocketAddr) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    let peer_ip = peer.ip().to_string();
    let chain = incoming
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .chain(std::iter::once(peer_ip.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    headers.remove(&X_FORWARDED_FOR);
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if let Ok(value) = HeaderValue::from_str(&peer_ip) {
        headers.insert(X_REAL_IP, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(host) = incoming.get(header::HOST) {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    headers
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in HOP_BY_HOP.iter().copied().chain(named.iter().map(String::as_str)) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    #[test]
    fn appends_the_peer_to_an_existing_chain() {
        let mut incoming = HeaderMap::new();
        incoming.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7, 10.0.0.1"));
        incoming.insert(header::HOST, HeaderValue::from_static("api.example"));
        let out = forwarded_headers(&incoming, peer());
        assert_eq!(out[&X_FORWARDED_FOR], "203.0.113.7, 10.0.0.1, 127.0.0.1");
        assert_eq!(out[&X_REAL_IP], "127.0.0.1");
        assert_eq!(out[&X_FORWARDED_HOST], "api.example");
        assert!(out.get(header::HOST).is_none());
    }

    #[test]
    fn starts_a_chain_and_drops_hop_by_hop_headers() {
        let mut incoming = HeaderMap::new();
        incoming.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        incoming.insert("x-secret-hop", HeaderValue::from_static("1"));
        incoming.insert("x-request-id", HeaderValue::from_static("abc"));
        let out = forwarded_headers(&incoming, peer());
        assert_eq!(out[&X_FORWARDED_FOR], "127.0.0.1");
        assert!(out.get("x-secret-hop").is_none());
        assert!(out.get(header::CONNECTION).is_none());
        assert_eq!(out["x-request-id"], "abc");
    }
}

//! Ingress stand-in: a reverse proxy on a loopback port that splits traffic between the
//! stable and canary API processes the way ingress-nginx does for a canary Ingress.
//!
//! It polls the canary Ingress through the Kubernetes API (every 250 ms by default; the real
//! controller reacts to a watch within about that long) and routes each request to the canary
//! with probability `canary-weight / canary-weight-total`. Backends are loopback addresses
//! given in the config: in a cluster they would be the endpoints of the Ingresses' Services.

mod proxy;
pub mod stats;
pub mod weight;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

pub use stats::{BackendCounts, Segment, TrafficSplit};
pub use weight::{Backend, CanaryWeight};

use crate::error::{HarnessError, Result};

/// Where the stand-in listens, which Ingress it follows and where it sends traffic.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// Keep this on loopback; port 0 picks a free one.
    pub listen: SocketAddr,
    pub namespace: String,
    pub canary_ingress: String,
    pub stable_backend: SocketAddr,
    pub canary_backend: SocketAddr,
    pub poll_interval: Duration,
    /// Per-request upstream timeout (answered as 504 when exceeded).
    pub upstream_timeout: Duration,
}

impl IngressConfig {
    pub fn new(namespace: &str, canary_ingress: &str, stable_backend: SocketAddr, canary_backend: SocketAddr) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            namespace: namespace.to_owned(),
            canary_ingress: canary_ingress.to_owned(),
            stable_backend,
            canary_backend,
            poll_interval: Duration::from_millis(250),
            upstream_timeout: Duration::from_secs(10),
        }
    }
}

/// A running ingress stand-in; stops when dropped.
#[derive(Debug)]
pub struct IngressStandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<stats::RoutingState>>,
    server: JoinHandle<()>,
    poller: JoinHandle<()>,
}

impl IngressStandIn {
    /// Reads the canary Ingress once (so the first request is already routed by it), then
    /// starts serving and polling.
    pub async fn start(client: Client, config: IngressConfig) -> Result<Self> {
        let ingresses: Api<Ingress> = Api::namespaced(client, &config.namespace);
        let initial = read_weight(&ingresses, &config.canary_ingress).await?;
        let state = Arc::new(Mutex::new(stats::RoutingState::new(initial)));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(HarnessError::io(format!(
                "bind the ingress stand-in on {}",
                config.listen
            )))?;
        let addr = listener
            .local_addr()
            .map_err(HarnessError::io("ingress stand-in address"))?;
        let app = proxy::router(proxy::Upstreams::new(&config, state.clone())?);
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(error = %e, "ingress stand-in stopped serving");
            }
        });
        let poller = tokio::spawn(poll_weight(ingresses, config, state.clone()));
        tracing::info!(%addr, weight = %initial.weight, total = %initial.total, "ingress stand-in listening");
        Ok(Self {
            addr,
            state,
            server,
            poller,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn current_weight(&self) -> CanaryWeight {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).current()
    }

    /// Every weight seen, oldest first, with the requests routed under it.
    pub fn segments(&self) -> Vec<Segment> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).segments()
    }

    pub fn totals(&self) -> TrafficSplit {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).totals()
    }
}

impl Drop for IngressStandIn {
    fn drop(&mut self) {
        self.poller.abort();
        self.server.abort();
    }
}

/// The weight the canary Ingress asks for now; no Ingress means no canary traffic.
async fn read_weight(ingresses: &Api<Ingress>, name: &str) -> Result<CanaryWeight> {
    Ok(ingresses.get_opt(name).await?.map_or(CanaryWeight::NONE, |ingress| {
        CanaryWeight::from_annotations(ingress.annotations())
    }))
}

async fn poll_weight(ingresses: Api<Ingress>, config: IngressConfig, state: Arc<Mutex<stats::RoutingState>>) {
    let mut ticker = tokio::time::interval(config.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // On an API error keep routing by the last weight, as ingress-nginx keeps its last
        // configuration while the API server is unreachable.
        match read_weight(&ingresses, &config.canary_ingress).await {
            Ok(weight) => {
                let changed = state.lock().unwrap_or_else(PoisonError::into_inner).set_weight(weight);
                if changed {
                    tracing::info!(weight = weight.weight, total = weight.total, "canary weight changed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the canary Ingress; keeping the last weight"),
        }
    }
}

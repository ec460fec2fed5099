//! Traffic routers: how a canary weight becomes real traffic. Every router reads back what it
//! applied, so the weight in status is what the router carries, not what we hoped it would.

mod gateway;
mod nginx;
mod replicas;

use std::future::Future;

use canary_core::PromotionSpec;
use kube::Client;

pub use gateway::{GatewayRouter, http_route_resource as gateway_http_route_resource};
pub use nginx::{CANARY, CANARY_WEIGHT, CANARY_WEIGHT_TOTAL, NginxRouter};
pub use replicas::{ORIGINAL_REPLICAS, ReplicaRouter};

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The object the spec names does not exist: the CanaryPromotion cannot be acted on.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// The object exists but cannot carry a weight (e.g. no canary backendRef).
    #[error("{kind} {namespace}/{name}: {reason}")]
    Invalid {
        kind: &'static str,
        namespace: String,
        name: String,
        reason: String,
    },
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl RouterError {
    /// True when retrying cannot help until some object changes.
    pub fn is_invalid_object(&self) -> bool {
        matches!(self, RouterError::NotFound { .. } | RouterError::Invalid { .. })
    }
}

/// Sets and reads back the canary's share of traffic (0–100).
pub trait TrafficRouter {
    /// The weight the router carries now.
    fn weight(&self) -> impl Future<Output = Result<u32, RouterError>> + Send;
    /// Applies `weight` and returns the weight read back from the object afterwards.
    fn set_weight(&self, weight: u32) -> impl Future<Output = Result<u32, RouterError>> + Send;
    /// After promotion (stable runs the canary image): all traffic on stable and the canary
    /// route consolidated; also used by the finalizer to put traffic back on stable.
    fn consolidate(&self) -> impl Future<Output = Result<u32, RouterError>> + Send;
}

/// The router a spec selects (enum dispatch keeps the trait free of boxing).
#[derive(Clone, Debug)]
pub enum Router {
    Nginx(NginxRouter),
    Gateway(GatewayRouter),
    Replicas(ReplicaRouter),
}

impl Router {
    /// `None` when the spec names no router (the schema forbids that; `decide` reports it).
    pub fn for_spec(client: &Client, namespace: &str, spec: &PromotionSpec) -> Option<Router> {
        let t = &spec.traffic;
        if let Some(n) = &t.nginx {
            return Some(Router::Nginx(NginxRouter::new(
                client.clone(),
                namespace,
                &n.canary_ingress,
            )));
        }
        if let Some(g) = &t.gateway_api {
            return Some(Router::Gateway(GatewayRouter::new(client.clone(), namespace, g)));
        }
        t.replicas.as_ref().map(|_| {
            Router::Replicas(ReplicaRouter::new(
                client.clone(),
                namespace,
                &spec.stable.deployment,
                &spec.canary.deployment,
            ))
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Router::Nginx(_) => "nginx",
            Router::Gateway(_) => "gatewayApi",
            Router::Replicas(_) => "replicas",
        }
    }
}

impl TrafficRouter for Router {
    async fn weight(&self) -> Result<u32, RouterError> {
        match self {
            Router::Nginx(r) => r.weight().await,
            Router::Gateway(r) => r.weight().await,
            Router::Replicas(r) => r.weight().await,
        }
    }

    async fn set_weight(&self, weight: u32) -> Result<u32, RouterError> {
        match self {
            Router::Nginx(r) => r.set_weight(weight).await,
            Router::Gateway(r) => r.set_weight(weight).await,
            Router::Replicas(r) => r.set_weight(weight).await,
        }
    }

    async fn consolidate(&self) -> Result<u32, RouterError> {
        match self {
            Router::Nginx(r) => r.consolidate().await,
            Router::Gateway(r) => r.consolidate().await,
            Router::Replicas(r) => r.consolidate().await,
        }
    }
}

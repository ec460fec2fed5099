//! Shared helpers for the stand-in's integration tests.
#![allow(clippy::unwrap_used, dead_code)]

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use kube_standin::StandIn;

pub const WIDGET_CRD: &str = include_str!("../fixtures/widget-crd.yaml");

/// Every test bounds its own time.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn client(standin: &StandIn) -> Client {
    let kubeconfig = Kubeconfig::read_from(&standin.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).unwrap()
}

pub async fn create_widget_crd(client: &Client) -> CustomResourceDefinition {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &yaml(WIDGET_CRD)).await.unwrap()
}

/// Polls `f` until it returns `Some`, for at most 20 s.
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

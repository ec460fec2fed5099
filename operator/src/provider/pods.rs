//! The pods an active probe talks to: two of them, because what the probes prove (replay
//! protection, the rate limit) is shared state between pods. Addresses come from the
//! EndpointSlices of the canary Service, and of the stable Service when the canary has a
//! single ready pod.

use std::time::Duration;

use canary_core::{Reading, ScrapeSource};
use kube::Client;

use super::scrape::{self, Target};

/// What one probe run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRun {
    pub reading: Reading,
    /// HTTP requests sent (tokens, probes, metrics reads).
    pub requests: u32,
    pub took: Duration,
}

/// Where a probe finds its pods, and the port and path it requests on each.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTargets {
    pub canary_service: String,
    pub stable_service: String,
    pub request: ScrapeSource,
}

/// One probed pod.
#[derive(Debug, Clone)]
pub struct Pod {
    pub track: &'static str,
    /// `host:port`.
    pub address: String,
    /// The probed request's URL on this pod.
    pub url: String,
}

impl Pod {
    fn new(track: &'static str, target: Target) -> Pod {
        let address = target
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Pod {
            track,
            address,
            url: target.url,
        }
    }

    /// The API serves its metrics on the same port.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.address)
    }
}

impl std::fmt::Display for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} pod {}", self.track, self.address)
    }
}

/// Two canary pods, or the canary's only pod and a stable one.
pub async fn pick_two(client: &Client, namespace: &str, targets: &ProbeTargets) -> Result<(Pod, Pod), String> {
    let canary = scrape::discover(client, namespace, &targets.canary_service, &targets.request)
        .await
        .map_err(|e| e.to_string())?;
    let mut canary = canary.into_iter().map(|t| Pod::new("canary", t));
    let first = canary.next().ok_or("no ready canary endpoint")?;
    if let Some(second) = canary.next() {
        return Ok((first, second));
    }
    let stable = scrape::discover(client, namespace, &targets.stable_service, &targets.request)
        .await
        .map_err(|e| format!("the canary has one ready pod, so the probe pairs it with a stable pod, but: {e}"))?;
    stable
        .into_iter()
        .map(|t| Pod::new("stable", t))
        .find(|p| p.address != first.address)
        .map(|second| (first, second))
        .ok_or_else(|| "need two different ready pods; the canary and stable Services share their only one".into())
}

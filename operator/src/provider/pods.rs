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
    /// The pod behind the address (targetRef UID or name; the address when there is none).
    pub identity: String,
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
        let identity = match target.key.split_once('@') {
            Some((pod, _)) if !pod.is_empty() => pod.to_owned(),
            _ => address.clone(),
        };
        Pod {
            identity,
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

/// The pods behind `found`, each once: a dual-stack Service lists every pod under an IPv4 and
/// an IPv6 address, and probing one pod twice would prove nothing about sharing.
fn distinct_pods(track: &'static str, found: Vec<Target>) -> Vec<Pod> {
    let mut pods: Vec<Pod> = Vec::new();
    for pod in found.into_iter().map(|t| Pod::new(track, t)) {
        if !pods.iter().any(|p| p.identity == pod.identity) {
            pods.push(pod);
        }
    }
    pods
}

/// Two canary pods, or the canary's only pod and a stable one: always two different pods.
pub async fn pick_two(client: &Client, namespace: &str, targets: &ProbeTargets) -> Result<(Pod, Pod), String> {
    let canary = scrape::discover(client, namespace, &targets.canary_service, &targets.request)
        .await
        .map_err(|e| e.to_string())?;
    let mut canary = distinct_pods("canary", canary).into_iter();
    let first = canary.next().ok_or("no ready canary endpoint")?;
    if let Some(second) = canary.next() {
        return Ok((first, second));
    }
    let stable = scrape::discover(client, namespace, &targets.stable_service, &targets.request)
        .await
        .map_err(|e| format!("the canary has one ready pod, so the probe pairs it with a stable pod, but: {e}"))?;
    distinct_pods("stable", stable)
        .into_iter()
        .find(|p| p.identity != first.identity && p.address != first.address)
        .map(|second| (first, second))
        .ok_or_else(|| "need two different ready pods; the canary and stable Services share their only one".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pod: &str, address: &str) -> Target {
        Target {
            key: format!("{pod}@{address}"),
            url: format!("http://{address}/x"),
        }
    }

    #[test]
    fn a_dual_stack_pod_counts_once() {
        let found = vec![
            target("uid-a", "10.0.0.1:8080"),
            target("uid-a", "[fd00::1]:8080"),
            target("uid-b", "10.0.0.2:8080"),
        ];
        let pods = distinct_pods("canary", found);
        let identities: Vec<&str> = pods.iter().map(|p| p.identity.as_str()).collect();
        assert_eq!(identities, ["uid-a", "uid-b"]);
        // Without a targetRef the address is the identity.
        let pods = distinct_pods("canary", vec![target("", "10.0.0.3:8080")]);
        assert_eq!(pods[0].identity, "10.0.0.3:8080");
    }
}

//! Direct scrape, for clusters without Prometheus: the operator reads the canary pods'
//! `/metrics` itself (addresses from the EndpointSlices of the canary Service) and computes
//! the built-in SLIs from counter deltas between its own scrapes.
//!
//! The previous scrapes live in memory, per CanaryPromotion (by UID). A restarted operator
//! therefore has no baseline: its first evaluation reads as no data, which the gates'
//! `noData` policy handles (with `hold`, one interval of delay and no lost bake).

mod counters;
pub mod exposition;
mod history;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use canary_core::{Reading, ScrapeSource};
use futures::future::join_all;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams};

pub use counters::{PodCounters, WindowTotals, histogram_quantile};
pub use history::ScrapeState;

use super::{MetricProvider, Query, Readings, Wanted, unknown_metric};

/// Largest `/metrics` page read from one pod: a bound on memory, far above a real page.
const MAX_PAGE_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("listing EndpointSlices of Service {service}: {source}")]
    Kube { service: String, source: kube::Error },
    #[error(
        "no ready endpoints in the EndpointSlices of Service {service} (label kubernetes.io/service-name={service})"
    )]
    NoEndpoints { service: String },
    #[error("scraping {target}: timeout after {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    #[error("scraping {target}: {message}")]
    Http { target: String, message: String },
    #[error("scraping {target}: HTTP {status}")]
    Status { target: String, status: u16 },
    #[error("scraping {target}: page larger than {MAX_PAGE_BYTES} bytes")]
    TooLarge { target: String },
    #[error("scraping {target}: {source}")]
    Parse {
        target: String,
        source: exposition::ParseError,
    },
    #[error("scraping {target}: negative or NaN counter values")]
    Insane { target: String },
}

/// One canary pod to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Stable identity across scrapes: the pod (targetRef UID, else name) and address.
    pub key: String,
    pub url: String,
}

/// The scrape targets in a set of EndpointSlices: the first address of every ready endpoint
/// (as kube-proxy does), on the configured port number or on the slice's port of that name.
pub fn targets(slices: &[EndpointSlice], source: &ScrapeSource) -> Vec<Target> {
    let mut out: BTreeMap<String, Target> = BTreeMap::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let port = match (&source.port, &source.port_name) {
            (Some(p), _) => Some(i32::from(*p)),
            (None, Some(name)) => slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| p.port),
            (None, None) => None,
        };
        let Some(port) = port else { continue };
        for ep in &slice.endpoints {
            // An unset `ready` is "unknown", which the API says to treat as ready.
            let conditions = ep.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let Some(addr) = ep.addresses.first() else { continue };
            if !ready || terminating {
                continue;
            }
            let host = if addr.contains(':') {
                format!("[{addr}]")
            } else {
                addr.clone()
            };
            let pod = ep
                .target_ref
                .as_ref()
                .and_then(|r| r.uid.clone().or_else(|| r.name.clone()))
                .unwrap_or_default();
            let key = format!("{pod}@{host}:{port}");
            let url = format!("http://{host}:{port}{}", source.path);
            // The same endpoint can sit in two slices while they are being rebalanced.
            out.insert(key.clone(), Target { key, url });
        }
    }
    out.into_values().collect()
}

/// The ready endpoints of `service`, from its EndpointSlices; at least one.
pub async fn discover(
    client: &Client,
    namespace: &str,
    service: &str,
    source: &ScrapeSource,
) -> Result<Vec<Target>, ScrapeError> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let slices = api.list(&lp).await.map_err(|source| ScrapeError::Kube {
        service: service.to_owned(),
        source,
    })?;
    let found = targets(&slices.items, source);
    if found.is_empty() {
        return Err(ScrapeError::NoEndpoints {
            service: service.to_owned(),
        });
    }
    Ok(found)
}

/// A transport error in one line, with its causes and without the URL (the caller names the
/// target).
pub fn transport_message(e: &reqwest::Error, url: &str) -> String {
    let mut message = e.to_string().replace(url, "");
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One pod's `/metrics` page, read with a bound on time and size.
pub async fn fetch_samples(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<Vec<exposition::Sample>, ScrapeError> {
    let target = || url.to_owned();
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            ScrapeError::Timeout {
                target: target(),
                timeout,
            }
        } else {
            ScrapeError::Http {
                target: target(),
                message: transport_message(&e, url),
            }
        }
    };
    let mut response = http.get(url).timeout(timeout).send().await.map_err(transport)?;
    if !response.status().is_success() {
        return Err(ScrapeError::Status {
            target: target(),
            status: response.status().as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(ScrapeError::TooLarge { target: target() });
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    exposition::parse(&text).map_err(|source| ScrapeError::Parse {
        target: target(),
        source,
    })
}

/// Reads gates and rollback criteria of one CanaryPromotion by scraping its canary pods.
pub struct ScrapeProvider<'a> {
    pub client: Client,
    pub http: reqwest::Client,
    pub namespace: String,
    pub service: String,
    pub source: ScrapeSource,
    /// Per pod.
    pub timeout: Duration,
    /// Key of the CanaryPromotion's history (its UID).
    pub uid: String,
    pub state: &'a ScrapeState,
}

impl ScrapeProvider<'_> {
    async fn discover(&self) -> Result<Vec<Target>, ScrapeError> {
        discover(&self.client, &self.namespace, &self.service, &self.source).await
    }

    async fn scrape(&self, target: &Target) -> Result<PodCounters, ScrapeError> {
        let samples = fetch_samples(&self.http, &target.url, self.timeout).await?;
        let counters = PodCounters::from_samples(&samples);
        if !counters.is_sane() {
            return Err(ScrapeError::Insane {
                target: target.url.clone(),
            });
        }
        Ok(counters)
    }

    /// Scrapes every ready canary pod. One failing pod fails the round: judging the canary
    /// on the pods that happen to answer would hide the one that hangs.
    async fn scrape_all(&self) -> Result<BTreeMap<String, PodCounters>, ScrapeError> {
        let found = self.discover().await?;
        let pages = join_all(found.iter().map(|t| self.scrape(t))).await;
        found
            .into_iter()
            .zip(pages)
            .map(|(t, page)| page.map(|c| (t.key, c)))
            .collect()
    }
}

/// Answers one query from the window's totals.
fn resolve(q: &Query, totals: Option<&WindowTotals>) -> Reading {
    match q {
        Query::Unknown(name) => unknown_metric(name),
        Query::PromQl(_) => Reading::Error(
            "PromQL cannot be answered by spec.metrics.scrape (the operator computes only the built-in SLIs); \
             use spec.metrics.prometheus or remove the query"
                .into(),
        ),
        Query::Builtin(sli) => match totals.and_then(|t| t.value(*sli).map(|v| (v, t.samples()))) {
            Some((value, samples)) => Reading::Value { value, samples },
            None => Reading::NoData,
        },
    }
}

impl MetricProvider for ScrapeProvider<'_> {
    async fn read(&self, wanted: &Wanted, window: Duration) -> Readings {
        if wanted.is_empty() {
            return Readings::default();
        }
        let totals = match self.scrape_all().await {
            // No baseline yet (first scrape after start, or pods all new) → no data.
            Ok(pods) => Ok(self.state.record(&self.uid, Instant::now(), window, pods)),
            Err(e) => Err(Reading::Error(e.to_string())),
        };
        let answer = |q: &Query| match &totals {
            Ok(t) => resolve(q, t.as_ref()),
            // Custom PromQL stays an error about PromQL, whatever the scrape did.
            Err(e) if matches!(q, Query::Builtin(_)) => e.clone(),
            Err(_) => resolve(q, None),
        };
        Readings {
            gates: wanted.gates.iter().map(|(n, q)| (n.clone(), answer(q))).collect(),
            criteria: wanted.criteria.iter().map(|(n, q)| (n.clone(), answer(q))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::provider::Sli;
    use serde_json::json;

    fn source(port: Option<u16>, name: Option<&str>) -> ScrapeSource {
        ScrapeSource {
            port,
            port_name: name.map(str::to_owned),
            path: "/metrics".into(),
        }
    }

    #[test]
    fn targets_are_ready_endpoints_on_the_chosen_port() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "s1"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "a", "uid": "u1"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true, "terminating": true}},
                {"addresses": ["10.0.0.4"]}
            ]
        }))
        .unwrap();
        let fqdn: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "s2"}, "addressType": "FQDN",
            "endpoints": [{"addresses": ["pod.example"]}]
        }))
        .unwrap();
        let slices = [slice.clone(), fqdn, slice];
        let urls = |s: &ScrapeSource| targets(&slices, s).into_iter().map(|t| t.url).collect::<Vec<_>>();
        assert_eq!(
            urls(&source(None, Some("metrics"))),
            ["http://10.0.0.4:9090/metrics", "http://10.0.0.1:9090/metrics"]
        );
        assert_eq!(urls(&source(Some(8081), None)).len(), 2);
        assert!(urls(&source(None, Some("grpc"))).is_empty());
        assert_eq!(targets(&slices, &source(Some(1), None))[1].key, "u1@10.0.0.1:1");
    }

    #[test]
    fn promql_is_an_error_and_builtins_need_a_baseline() {
        let q = Query::PromQl("up".into());
        assert!(matches!(resolve(&q, None), Reading::Error(m) if m.contains("spec.metrics.prometheus")));
        assert_eq!(resolve(&Query::Builtin(Sli::ErrorRate5xx), None), Reading::NoData);
        let mut t = WindowTotals::default();
        t.sum.requests = 200.0;
        t.sum.requests_5xx = 2.0;
        assert_eq!(
            resolve(&Query::Builtin(Sli::ErrorRate5xx), Some(&t)),
            Reading::Value {
                value: 0.01,
                samples: 200
            }
        );
    }
}

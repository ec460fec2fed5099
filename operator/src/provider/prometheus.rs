//! The Prometheus HTTP API (`GET /api/v1/query`): built-in SLI queries on one track (the
//! canary's; the stable one during the post-promotion watch) and user PromQL. An empty result or NaN (0/0 at zero traffic) is *no data*; a timeout, an
//! HTTP error or `"status": "error"` is a provider *error*. `decide` treats the two the same
//! way by default but reports them differently, which is what an on-call person needs.

use std::collections::BTreeMap;
use std::time::Duration;

use canary_core::Reading;
use futures::future::join_all;
use serde::Deserialize;
use serde_json::Value;

use super::{MetricProvider, Query, Readings, Sli, Track, Wanted, unknown_metric};

/// The track's request count over the window: the `samples` behind every reading, so
/// `minSamples` means "at least this many requests in the window".
pub fn samples_query(series: &str, window: Duration) -> String {
    let w = range(window);
    format!(r#"sum(increase(http_requests_total{{{series}}}[{w}]))"#)
}

/// The label matchers of every built-in query: the track, then the spec's extra labels
/// (`spec.metrics.prometheus.labels`), as PromQL string literals.
pub fn series(track: Track, labels: &BTreeMap<String, String>) -> String {
    let mut matchers = format!(r#"track="{}""#, track.label());
    for (name, value) in labels {
        matchers.push_str(&format!(r#",{name}="{}""#, escape(value)));
    }
    matchers
}

/// A PromQL double-quoted string's content (Go escapes).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Built-in PromQL for an SLI on `track` over `window` (the metric contract: README.md,
/// "Metrics").
pub fn builtin_query(sli: Sli, series: &str, window: Duration) -> String {
    let w = range(window);
    let t = series;
    let req = |filter: &str| format!(r#"sum(rate(http_requests_total{{{t}{filter}}}[{w}]))"#);
    match sli {
        Sli::Availability => format!("1 - ({} or vector(0)) / {}", req(r#",status=~"5..""#), req("")),
        Sli::ErrorRate5xx => format!("({} or vector(0)) / {}", req(r#",status=~"5..""#), req("")),
        Sli::P95LatencyMs => format!(
            r#"1000 * histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{{t}}}[{w}])))"#
        ),
        Sli::RateLimited429 => format!(
            r#"(sum(rate(ratelimit_decisions_total{{{t},decision="limited",principal!="tester"}}[{w}])) or vector(0)) / sum(rate(ratelimit_decisions_total{{{t},principal!="tester"}}[{w}]))"#
        ),
        // A counter that never moved may not exist at all: absent means zero errors.
        Sli::LimiterRedisErrors => {
            format!(r#"sum(increase(limiter_redis_errors_total{{{t}}}[{w}])) or vector(0)"#)
        }
        // With the model switched off every answer is the fallback by design, not a failure;
        // `error` (the model refused, e.g. throttled) serves the fallback ranking too.
        Sli::OpenaiFallbackRate => format!(
            r#"(sum(rate(openai_requests_total{{{t},outcome=~"fallback|error"}}[{w}])) or vector(0)) / sum(rate(openai_requests_total{{{t},outcome!="disabled"}}[{w}]))"#
        ),
        Sli::DbPoolUtilization => {
            format!(
                r#"max(db_pool_connections{{{t},state="in_use"}} / ignoring(state) db_pool_max_connections{{{t}}})"#
            )
        }
        Sli::RedisP95LatencyMs => format!(
            r#"1000 * histogram_quantile(0.95, sum by (le) (rate(redis_command_duration_seconds_bucket{{{t}}}[{w}])))"#
        ),
    }
}

fn range(window: Duration) -> String {
    format!("{}s", window.as_secs().max(1))
}

#[derive(Clone, Debug)]
pub struct PrometheusProvider {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiData {
    result_type: String,
    result: Value,
}

/// A scalar from a `[timestamp, "value"]` pair.
fn sample_value(pair: &Value) -> Option<f64> {
    pair.get(1)?.as_str()?.parse().ok()
}

/// Interprets a successful query result as one reading (with one sample; the caller attaches
/// the real sample count).
fn interpret(data: &ApiData) -> Reading {
    let value = match data.result_type.as_str() {
        "scalar" => sample_value(&data.result),
        "vector" => match data.result.as_array().map(Vec::as_slice) {
            None | Some([]) => return Reading::NoData,
            Some([one]) => one.get("value").and_then(sample_value),
            Some(many) => {
                return Reading::Error(format!(
                    "query returned {} series; a gate needs exactly one (aggregate with sum/max)",
                    many.len()
                ));
            }
        },
        other => return Reading::Error(format!("unsupported result type {other:?}")),
    };
    match value {
        // NaN is 0/0: no requests in the window, the same as no data.
        Some(v) if v.is_nan() => Reading::NoData,
        Some(v) => Reading::Value { value: v, samples: 1 },
        None => Reading::Error("malformed sample in query result".into()),
    }
}

impl PrometheusProvider {
    pub fn new(http: reqwest::Client, address: &str, timeout: Duration) -> Self {
        Self {
            http,
            base: address.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// Runs one instant query.
    pub async fn query(&self, promql: &str) -> Reading {
        let url = format!("{}/api/v1/query", self.base);
        // Prometheus stops evaluating at its own `timeout`; ours covers the network as well.
        let timeout_param = format!("{}ms", self.timeout.as_millis());
        let request = self
            .http
            .get(&url)
            .query(&[("query", promql), ("timeout", timeout_param.as_str())])
            .timeout(self.timeout);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Reading::Error(format!("timeout after {:?}", self.timeout)),
            Err(e) => return Reading::Error(format!("cannot reach Prometheus: {}", without_url(&e))),
        };
        let code = response.status();
        let body: ApiResponse = match response.json().await {
            Ok(b) => b,
            Err(_) => return Reading::Error(format!("HTTP {code} without a Prometheus API body")),
        };
        if body.status != "success" {
            return Reading::Error(format!(
                "{}: {}",
                body.error_type.as_deref().unwrap_or("error"),
                body.error.as_deref().unwrap_or("query failed")
            ));
        }
        match &body.data {
            Some(data) => interpret(data),
            None => Reading::Error("success without data".into()),
        }
    }
}

/// reqwest errors carry the URL, query string included; the PromQL is noise in a message.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s = format!("{s}: {inner}");
        source = inner.source();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl MetricProvider for PrometheusProvider {
    async fn read(&self, wanted: &Wanted, window: Duration) -> Readings {
        if wanted.is_empty() {
            return Readings::default();
        }
        // One query per distinct PromQL (a gate and a criterion often share one).
        let mut unique: BTreeMap<String, Reading> = BTreeMap::new();
        let series = series(wanted.track, &wanted.labels);
        unique.insert(samples_query(&series, window), Reading::NoData);
        for (_, q) in wanted.gates.iter().chain(&wanted.criteria) {
            match q {
                Query::Builtin(s) => unique.insert(builtin_query(*s, &series, window), Reading::NoData),
                Query::PromQl(p) => unique.insert(p.clone(), Reading::NoData),
                Query::Unknown(_) => None,
            };
        }
        let keys: Vec<String> = unique.keys().cloned().collect();
        let results = join_all(keys.iter().map(|k| self.query(k))).await;
        for (k, r) in keys.into_iter().zip(results) {
            unique.insert(k, r);
        }
        let samples = match unique.get(&samples_query(&series, window)) {
            Some(Reading::Value { value, .. }) if value.is_finite() && *value > 0.0 => {
                // increase() extrapolates: round to whole requests.
                value.round() as u64
            }
            Some(Reading::Error(e)) => {
                let e = Reading::Error(format!("request count: {e}"));
                return Readings {
                    gates: wanted.gates.iter().map(|(n, _)| (n.clone(), e.clone())).collect(),
                    criteria: wanted.criteria.iter().map(|(n, _)| (n.clone(), e.clone())).collect(),
                };
            }
            _ => 0,
        };
        let resolve = |q: &Query| -> Reading {
            let key = match q {
                Query::Builtin(s) => builtin_query(*s, &series, window),
                Query::PromQl(p) => p.clone(),
                Query::Unknown(name) => return unknown_metric(name),
            };
            match unique.get(&key) {
                Some(Reading::Value { value, .. }) => Reading::Value { value: *value, samples },
                Some(other) => other.clone(),
                None => Reading::NoData,
            }
        };
        Readings {
            gates: wanted.gates.iter().map(|(n, q)| (n.clone(), resolve(q))).collect(),
            criteria: wanted.criteria.iter().map(|(n, q)| (n.clone(), resolve(q))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> ApiData {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn interprets_results() {
        let one = data(json!({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "0.25"]}]}));
        assert_eq!(
            interpret(&one),
            Reading::Value {
                value: 0.25,
                samples: 1
            }
        );
        let empty = data(json!({"resultType": "vector", "result": []}));
        assert_eq!(interpret(&empty), Reading::NoData);
        let nan = data(json!({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "NaN"]}]}));
        assert_eq!(interpret(&nan), Reading::NoData);
        let scalar = data(json!({"resultType": "scalar", "result": [1.0, "3"]}));
        assert_eq!(interpret(&scalar), Reading::Value { value: 3.0, samples: 1 });
        let two = data(json!({"resultType": "vector", "result": [
            {"metric": {"a": "1"}, "value": [1.0, "1"]}, {"metric": {"a": "2"}, "value": [1.0, "2"]}]}));
        assert!(matches!(interpret(&two), Reading::Error(_)));
    }

    #[test]
    fn builtin_queries_select_one_track_only() {
        let minute = Duration::from_secs(60);
        let none = BTreeMap::new();
        let on = |track| series(track, &none);
        for s in Sli::ALL {
            let canary = builtin_query(s, &on(Track::Canary), minute);
            assert!(
                canary.contains(r#"track="canary""#) && !canary.contains("stable"),
                "{canary}"
            );
            let stable = builtin_query(s, &on(Track::Stable), minute);
            assert_eq!(stable, canary.replace(r#"track="canary""#, r#"track="stable""#));
        }
        assert!(builtin_query(Sli::RateLimited429, &on(Track::Canary), minute).contains(r#"principal!="tester""#));
        assert!(builtin_query(Sli::P95LatencyMs, &on(Track::Canary), Duration::from_secs(90)).contains("[90s]"));
    }

    /// Every selector of every built-in query carries the spec's labels, quoted safely.
    #[test]
    fn builtin_queries_carry_the_spec_labels() {
        let labels = BTreeMap::from([
            ("namespace".to_owned(), "team-a".to_owned()),
            ("service".to_owned(), r#"a"b\c"#.to_owned()),
        ]);
        let matchers = series(Track::Canary, &labels);
        assert_eq!(matchers, r#"track="canary",namespace="team-a",service="a\"b\\c""#);
        for s in Sli::ALL {
            let q = builtin_query(s, &matchers, Duration::from_secs(60));
            assert_eq!(
                q.matches("track=").count(),
                q.matches(r#"namespace="team-a""#).count(),
                "{q}"
            );
        }
        assert!(samples_query(&matchers, Duration::from_secs(60)).contains(r#"namespace="team-a""#));
    }
}

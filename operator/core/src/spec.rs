//! The user-facing spec of a CanaryPromotion.
//!
//! These types are the single source of truth for the CRD schema: the operator crate wraps
//! them in kube's `CustomResource` derive. Field-level bounds are plain OpenAPI (`pattern`,
//! `minimum`, `maxItems`, ...); cross-field rules are CEL (`x-kubernetes-validations`). Every
//! list and string is bounded so the API server can bound the CEL cost.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DURATION_PATTERN;
use crate::threshold::THRESHOLD_PATTERN;

/// A Kubernetes object name (DNS subdomain).
const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";
/// A DNS label, used for names that become part of gate names.
const LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A metric name in the operator's vocabulary (camelCase, e.g. `p95LatencyMs`).
const METRIC_PATTERN: &str = "^[a-zA-Z][a-zA-Z0-9]*$";

/// Rollback metrics with a built-in query (the metric contract's SLIs); any other metric
/// needs `rollback[].query`. The CEL rule on `RollbackCriterion` spells the same list out.
pub const BUILTIN_METRICS: [&str; 8] = [
    "availability",
    "p95LatencyMs",
    "errorRate5xx",
    "rateLimited429",
    "limiterRedisErrors",
    "openaiFallbackRate",
    "dbPoolUtilization",
    "redisP95LatencyMs",
];

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// PromQL needs Prometheus: with the scrape provider such a gate could never be read.
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.metrics.scrape) || !has(self.gates) || !has(self.gates.custom) || size(self.gates.custom) == 0",
     "message": "spec.gates.custom: PromQL gates need spec.metrics.prometheus (the scrape provider cannot run PromQL)"},
    {"rule": "!has(self.metrics.scrape) || !has(self.rollback) || self.rollback.all(c, !has(c.query))",
     "message": "spec.rollback[].query: PromQL needs spec.metrics.prometheus (the scrape provider cannot run PromQL)"},
    {"rule": "!has(self.postPromotion) || has(self.metrics.prometheus)",
     "message": "spec.postPromotion: the watch reads the stable track from spec.metrics.prometheus", "reason": "FieldValueInvalid"},
    {"rule": "!has(self.postPromotion) || (has(self.rollback) && size(self.rollback) > 0 && self.rollback.all(c, !has(c.query)))",
     "message": "spec.postPromotion: needs rollback criteria on built-in metrics (a rollback[].query is written for the canary track)", "reason": "FieldValueInvalid"},
    {"rule": "!has(self.postPromotion) || !self.postPromotion.rollback || !has(self.promotion) || self.promotion.strategy != 'external'",
     "message": "spec.postPromotion.rollback: with promotion.strategy external the stable image belongs to your pipeline; use rollback: false", "reason": "FieldValueInvalid"},
    {"rule": "!self.steps.exists(s, has(s.redisFailoverDrill) && s.redisFailoverDrill) || (has(self.gates) && has(self.gates.redis) && has(self.gates.redis.failoverDrill))",
     "message": "spec.steps[].redisFailoverDrill: a Redis failover drill needs the opt-in spec.gates.redis.failoverDrill (and the Sentinels in its Secret)", "reason": "FieldValueInvalid"},
    {"rule": "!has(self.rollbackWithin) || (has(self.rollback) && size(self.rollback) > 0)",
     "message": "spec.rollbackWithin: needs at least one spec.rollback criterion to keep the promise", "reason": "FieldValueInvalid"},
    // `for` is a CEL keyword, escaped as __for__.
    {"rule": "!has(self.rollbackWithin) || !has(self.rollback) || self.rollback.all(c, duration(c.__for__) + duration(self.interval) <= duration(self.rollbackWithin))",
     "message": "spec.rollbackWithin: every spec.rollback[].for plus spec.interval must fit within it (a breach is seen up to one interval late)", "reason": "FieldValueInvalid"}
]))]
pub struct PromotionSpec {
    /// The Deployment that serves production traffic and receives the canary image on promotion.
    pub stable: StableRef,
    /// The Deployment that runs the new version.
    pub canary: CanaryRef,
    /// How traffic is split between stable and canary (exactly one router).
    pub traffic: Traffic,
    /// Weighted steps, walked in order. Weights strictly increase and the last one is 100.
    #[schemars(length(min = 1, max = 20))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.map(s, s.weight).isSorted() && self.all(s, self.filter(t, t.weight == s.weight).size() == 1)",
         "message": "spec.steps: weights must be strictly increasing", "reason": "FieldValueInvalid"},
        {"rule": "self[size(self) - 1].weight == 100",
         "message": "spec.steps: the last step must have weight 100", "reason": "FieldValueInvalid"}
    ]))]
    pub steps: Vec<Step>,
    /// How often gates and rollback criteria are evaluated (Go duration, at least 1s).
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "duration(self) >= duration('1s')", "message": "spec.interval: must be at least 1s"}
    ]))]
    pub interval: String,
    /// Longest a step (or the final promotion) may take beyond its bake before the
    /// promotion fails and traffic returns to stable. Unset: wait indefinitely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    pub progress_deadline: Option<String>,
    /// Where gate and rollback metrics come from.
    pub metrics: MetricSource,
    /// Go/no-go gates: all must pass continuously for a step's whole bake before it advances.
    #[serde(default)]
    pub gates: Gates,
    /// Rollback criteria: any one breached continuously for its `for` window rolls back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(c, self.filter(d, d.metric == c.metric).size() == 1)",
         "message": "spec.rollback: metric names must be unique"}
    ]))]
    pub rollback: Vec<RollbackCriterion>,
    /// What happens after the last step is green.
    #[serde(default)]
    pub promotion: Promotion,
    /// Standing pause (GitOps-friendly): weight is held, the bake clock restarts on resume.
    #[serde(default)]
    pub paused: bool,
    /// The longest a breach may last before the canary carries no traffic: a promise the API
    /// server checks (every `rollback[].for` plus `interval` must fit within it) and the
    /// operator reports (`status.rollbackBound`, which adds the metric window's lag, and the
    /// metric `canary_operator_late_rollbacks_total` when a rollback took longer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    pub rollback_within: Option<String>,
    /// Webhooks told of each transition (Started, StepAdvanced, GateFailing, RollbackStarted,
    /// RolledBack, ProgressDeadlineExceeded, Promoted, PostPromotionBreach, WatchCompleted),
    /// with the gate values behind it. Delivered in the background
    /// with bounded retries: a slow or failing receiver never delays a promotion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(n, self.filter(m, m.name == n.name).size() == 1)",
         "message": "spec.notify: names must be unique"}
    ]))]
    pub notify: Vec<NotifySink>,
    /// After the promotion, keep judging the rollback criteria against the stable track
    /// (which now runs the new image) for `watch`; a breach held for its window rolls the
    /// stable Deployment back to the image it ran before (`rollback: true`) or is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion: Option<PostPromotion>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostPromotion {
    /// How long to watch after the promotion (Go duration, e.g. 48h).
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    pub watch: String,
    /// On a breach held for its window: `true` sets the stable Deployment back to the image it
    /// ran before the promotion (phase RolledBack); `false` (default) reports it (Warning
    /// event `PostPromotionBreach`, notification, metric) and keeps watching.
    #[serde(default)]
    pub rollback: bool,
}

/// One webhook receiver.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotifySink {
    /// Names the receiver in logs and in the delivery metric (a DNS label, unique).
    #[schemars(length(min = 1, max = 63), pattern(LABEL_PATTERN))]
    pub name: String,
    /// Secret in the CanaryPromotion's namespace whose key `url` holds the webhook URL (such
    /// URLs carry tokens, so they never appear in the spec, the status or the logs).
    #[schemars(length(min = 1, max = 253), pattern(NAME_PATTERN))]
    pub secret_ref: String,
    /// `slack`: a Slack-compatible message (`text` plus an attachment with the gate values);
    /// `cloudEvents`: a CloudEvents 1.0 structured-mode JSON event.
    #[serde(default)]
    pub format: NotifyFormat,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum NotifyFormat {
    #[default]
    Slack,
    CloudEvents,
}

fn default_interval() -> String {
    "30s".to_owned()
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StableRef {
    /// Name of the stable Deployment (same namespace).
    #[schemars(length(min = 1, max = 253), pattern(NAME_PATTERN))]
    pub deployment: String,
    /// Service selecting the stable pods, whose EndpointSlices the replay probe reads when the
    /// canary has a single pod. Unset: a Service named like the stable Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(LABEL_PATTERN))]
    pub service: Option<String>,
}

impl StableRef {
    /// The stable Service: `service`, defaulting to the Deployment's name.
    pub fn service_name(&self) -> &str {
        self.service.as_deref().unwrap_or(&self.deployment)
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryRef {
    /// Name of the canary Deployment (same namespace).
    #[schemars(length(min = 1, max = 253), pattern(NAME_PATTERN))]
    pub deployment: String,
    /// Image to promote. Unset: the image the canary Deployment runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), pattern(r"^[^\s]+$"))]
    pub image: Option<String>,
    /// Service selecting the canary pods, whose EndpointSlices the scrape metric provider
    /// (`spec.metrics.scrape`) and the replay probe read. Unset: a Service named like the canary Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(LABEL_PATTERN))]
    pub service: Option<String>,
}

impl CanaryRef {
    /// The canary Service: `service`, defaulting to the Deployment's name.
    pub fn service_name(&self) -> &str {
        self.service.as_deref().unwrap_or(&self.deployment)
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.nginx) ? 1 : 0) + (has(self.gatewayApi) ? 1 : 0) + (has(self.replicas) ? 1 : 0) == 1",
     "message": "spec.traffic: exactly one of nginx, gatewayApi or replicas must be set"}
]))]
pub struct Traffic {
    /// NGINX ingress: the operator sets `nginx.ingress.kubernetes.io/canary-weight` on this Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxRouter>,
    /// Gateway API: the operator sets backend weights on this HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_api: Option<GatewayApiRouter>,
    /// No L7 router: the weight is approximated by the canary/stable replica ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasRouter>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NginxRouter {
    #[schemars(length(min = 1, max = 253), pattern(NAME_PATTERN))]
    pub canary_ingress: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouter {
    #[schemars(length(min = 1, max = 253), pattern(NAME_PATTERN))]
    pub http_route: String,
    /// Service name of the stable backendRef.
    #[schemars(length(min = 1, max = 63), pattern(LABEL_PATTERN))]
    pub stable_backend: String,
    /// Service name of the canary backendRef.
    #[schemars(length(min = 1, max = 63), pattern(LABEL_PATTERN))]
    pub canary_backend: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicasRouter {}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Percentage of traffic sent to the canary during this step.
    #[schemars(range(min = 1, max = 100))]
    pub weight: u32,
    /// How long every gate must pass continuously at this weight before advancing.
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    pub bake: String,
    /// After the bake, wait for a `resume` action (annotation) before advancing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_approval: bool,
    /// Once this step's weight is applied, fail Redis over (`SENTINEL FAILOVER`) and judge
    /// the canary through it: gate `redis.failoverDrill`. Needs the opt-in
    /// `gates.redis.failoverDrill` and the Sentinels in the Redis Secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redis_failover_drill: bool,
}

/// Where gate and rollback readings come from (exactly one source).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.prometheus) ? 1 : 0) + (has(self.scrape) ? 1 : 0) == 1",
     "message": "spec.metrics: exactly one of prometheus or scrape must be set"}
]))]
pub struct MetricSource {
    /// Query a Prometheus server (PromQL over a window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
    /// No Prometheus: the operator scrapes the canary pods' `/metrics` itself (found through
    /// the EndpointSlices of `spec.canary.service`) and computes the SLIs from counter deltas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeSource>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// Base URL of the Prometheus HTTP API.
    #[schemars(length(max = 512), pattern("^https?://[^\\s]+$"))]
    pub address: String,
    /// Label matchers added to every built-in query next to `track`, naming this promotion's
    /// workload when one Prometheus scrapes several, e.g. `{namespace: team-a, service:
    /// api-canary}`. Without them the built-in SLIs read every series with the track label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8, "additionalProperties" = {"type": "string", "maxLength": 253}, "x-kubernetes-validations" = [
        {"rule": "self.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$') && !k.startsWith('__'))",
         "message": "spec.metrics.prometheus.labels: keys must be Prometheus label names (letters, digits, _; not starting with __)"},
        {"rule": "!('track' in self)",
         "message": "spec.metrics.prometheus.labels: track is set by the operator (canary, or stable during the post-promotion watch)"}
    ]))]
    pub labels: BTreeMap<String, String>,
}

/// Direct scrape of the canary pods. The port is a number (the pods' metrics port, whether or
/// not the Service exposes it) or the name of a port of the Service's EndpointSlices.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.port) != has(self.portName)",
     "message": "spec.metrics.scrape: exactly one of port or portName must be set"}
]))]
pub struct ScrapeSource {
    /// Container port serving the metrics, e.g. 8080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Name of an EndpointSlice port (the Service port's name), e.g. `metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15), pattern(LABEL_PATTERN))]
    pub port_name: Option<String>,
    /// HTTP path of the Prometheus text exposition.
    #[serde(default = "default_scrape_path")]
    #[schemars(length(min = 1, max = 256), pattern(r"^/[^\s?#]*$"))]
    pub path: String,
}

fn default_scrape_path() -> String {
    "/metrics".to_owned()
}

/// What a gate concludes when it has no reading (or fewer samples than `minSamples`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum NoDataPolicy {
    /// Do not advance while data is missing, but do not restart the bake either.
    #[default]
    Hold,
    /// Missing data is a failure: it restarts the bake.
    Fail,
    /// Missing data counts as passing (for gates on rare events).
    Pass,
}

fn default_min_samples() -> u32 {
    1
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Gates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sli: Option<SliGates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisGates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_protection: Option<ReplayProtectionGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitGate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(g, self.filter(h, h.name == g.name).size() == 1)",
         "message": "spec.gates.custom: names must be unique"}
    ]))]
    pub custom: Vec<CustomGate>,
}

/// Service-level gates on the canary track (`track="canary"` series).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SliGates {
    /// Share of non-5xx responses, e.g. ">= 0.999".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub availability: Option<String>,
    /// p95 request latency in milliseconds, e.g. "<= 220".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub p95_latency_ms: Option<String>,
    /// Share of 5xx responses, e.g. "<= 0.005".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub error_rate5xx: Option<String>,
    /// Share of 429 responses, e.g. "<= 0.01".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub rate_limited429: Option<String>,
    /// Share of recommendation requests answered by the fallback ranking instead of the model:
    /// it timed out, answered something unusable or refused (e.g. throttled); requests with
    /// the model disabled left out. E.g. "< 0.05".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub openai_fallback_rate: Option<String>,
    /// Worst canary pod's PostgreSQL pool utilisation (in use / max), e.g. "< 0.75".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub db_pool_utilization: Option<String>,
    /// p95 of the canary's own Redis round trips in milliseconds (client side,
    /// `redis_command_duration_seconds`), e.g. "< 10".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub redis_p95_latency_ms: Option<String>,
    #[serde(default)]
    pub no_data: NoDataPolicy,
    /// Readings backed by fewer samples (requests) count as no data.
    #[serde(default = "default_min_samples")]
    #[schemars(range(max = 1_000_000))]
    pub min_samples: u32,
}

/// Redis health as the canary sees it, checked by the operator's own probe: it connects with
/// the Secret's `url` (and optional `username`, `password`, `ca.crt`, and `sentinels`,
/// `masterName`, `sentinelPassword` for the Sentinel row) every interval.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisGates {
    /// Secret with the Redis URL and credentials the probe uses.
    #[schemars(length(min = 1, max = 253), pattern(NAME_PATTERN))]
    pub secret_ref: String,
    #[serde(default)]
    pub require_tls: bool,
    #[serde(default)]
    pub require_auth: bool,
    #[serde(default)]
    pub require_replica: bool,
    /// The Sentinels in the Secret's `sentinels` all reachable-and-agreeing on one primary,
    /// and `SENTINEL CKQUORUM` answering OK (row `redis.sentinelQuorum`).
    #[serde(default)]
    pub require_sentinel_quorum: bool,
    /// The `maxmemory-policy` Redis must run with (row `redis.maxmemoryPolicy`), e.g.
    /// `noeviction`, under which replay markers are never evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmemory_policy: Option<MaxmemoryPolicy>,
    /// A port on the Redis host that must not answer plaintext Redis (row
    /// `redis.plaintextRefused`), e.g. 6379 when TLS is served on 6380.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub plaintext_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub p95_latency_ms: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub fragmentation_ratio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub evicted_keys: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub limiter_errors: Option<String>,
    /// Opt-in for steps with `redisFailoverDrill`. The Secret must then list the Sentinels
    /// (`sentinels`, `masterName`): the operator asks them to fail the primary over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_drill: Option<FailoverDrill>,
    #[serde(default)]
    pub no_data: NoDataPolicy,
    #[serde(default = "default_min_samples")]
    #[schemars(range(max = 1_000_000))]
    pub min_samples: u32,
}

/// How a failover drill is judged: after the failover, the canary's 5xx ratio must not rise
/// above both its value at the failover and the step's `sli.errorRate5xx` gate; at the end,
/// its limiter's Redis errors must be back to zero and the step's latency gates
/// (`sli.p95LatencyMs`, `sli.redisP95LatencyMs`, when set) passing.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverDrill {
    /// Go duration, at least 1s; default 30s. The verdict comes at the end of the window, and
    /// at least the metric window plus an interval after the failover, so its last readings
    /// describe the canary after the failover only.
    #[serde(default = "default_drill_window")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "duration(self) >= duration('1s')", "message": "spec.gates.redis.failoverDrill.window: must be at least 1s"}
    ]))]
    pub window: String,
}

fn default_drill_window() -> String {
    "30s".to_owned()
}

/// Redis' eviction policies (`maxmemory-policy`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MaxmemoryPolicy {
    Noeviction,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl MaxmemoryPolicy {
    /// The name Redis uses (`INFO memory`, `CONFIG GET`).
    pub fn as_str(self) -> &'static str {
        match self {
            MaxmemoryPolicy::Noeviction => "noeviction",
            MaxmemoryPolicy::AllkeysLru => "allkeys-lru",
            MaxmemoryPolicy::AllkeysLfu => "allkeys-lfu",
            MaxmemoryPolicy::AllkeysRandom => "allkeys-random",
            MaxmemoryPolicy::VolatileLru => "volatile-lru",
            MaxmemoryPolicy::VolatileLfu => "volatile-lfu",
            MaxmemoryPolicy::VolatileRandom => "volatile-random",
            MaxmemoryPolicy::VolatileTtl => "volatile-ttl",
        }
    }
}

/// JWT replay protection across pods, proven by an active probe every interval: the operator
/// gets a fresh token by OAuth2 client credentials and sends it concurrently to two pods (two
/// canary pods, or a canary and a stable pod when the canary has one). Exactly one must accept
/// it, the other must refuse it with `token_replayed`, and the refusing pod's
/// `jwt_replay_prevented_total` must rise. The gate reads 1 when all three hold, else 0 with
/// the expectation that broke as its message.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplayProtectionGate {
    pub probe: ReplayProbe,
    /// What an inconclusive probe means (token endpoint down, fewer than two ready pods, a
    /// 429 or 5xx answer).
    #[serde(default)]
    pub no_data: NoDataPolicy,
}

/// How the replay probe reaches the pods and gets its token.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.port) != has(self.portName)",
     "message": "spec.gates.replayProtection.probe: exactly one of port or portName must be set"}
]))]
pub struct ReplayProbe {
    /// Secret with the probe identity's client credentials: `tokenUrl`, `clientId`,
    /// `clientSecret`, optional `audience`, `scope` and `testerToken`.
    #[schemars(length(min = 1, max = 253), pattern(NAME_PATTERN))]
    pub secret_ref: String,
    /// Authenticated, single-use path the probe GETs, e.g.
    /// `/api/v1/applications/00000000-0000-0000-0000-000000000000` (a 404 is an acceptance:
    /// the token got past authentication).
    #[schemars(length(min = 1, max = 512), pattern(r"^/[^\s#]*$"))]
    pub path: String,
    /// Container port of the API, e.g. 8080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Name of an EndpointSlice port (the Service port's name), e.g. `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15), pattern(LABEL_PATTERN))]
    pub port_name: Option<String>,
    /// Header carrying the Secret's `testerToken`, so the API counts probe requests as tester
    /// traffic (left out of the 429 SLI).
    #[serde(default = "default_tester_header")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[A-Za-z0-9-]+$"))]
    pub tester_header: String,
}

/// The rate limit shared across pods, proven by a burst once per step (an inconclusive one is
/// tried again the next interval): the operator sends
/// requests to two pods in turn (two canary pods, or the canary's only pod and a stable one)
/// until the limit refuses them. It holds when exactly the window's remaining quota (from the
/// first answer's `RateLimit-Remaining`) was allowed across both pods, every 200 and 429
/// carried the RateLimit headers of one policy, and every 429 carried `Retry-After`. The
/// gate reads 1 then, else 0 with the expectation that broke as its message.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitGate {
    pub probe: RateLimitProbe,
    /// What an inconclusive probe means (fewer than two ready pods, a 5xx, the window
    /// rolling over mid-burst, more quota left than `maxRequests`).
    #[serde(default)]
    pub no_data: NoDataPolicy,
}

/// How the rate-limit probe reaches the pods.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.port) != has(self.portName)",
     "message": "spec.gates.rateLimit.probe: exactly one of port or portName must be set"}
]))]
pub struct RateLimitProbe {
    /// Public, rate-limited path the probe GETs, e.g. `/api/v1/scholarships?page_size=1`. The
    /// budget is the operator's own (its address), so users' budgets are untouched.
    #[schemars(length(min = 1, max = 512), pattern(r"^/[^\s#]*$"))]
    pub path: String,
    /// Container port of the API, e.g. 8080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Name of an EndpointSlice port (the Service port's name), e.g. `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15), pattern(LABEL_PATTERN))]
    pub port_name: Option<String>,
    /// Secret whose `testerToken` (the API's `--tester-token`) marks the burst as tester
    /// traffic, so its requests and 429s stay out of the canary's SLIs.
    #[schemars(length(min = 1, max = 253), pattern(NAME_PATTERN))]
    pub secret_ref: String,
    /// Header carrying the Secret's `testerToken`.
    #[serde(default = "default_tester_header")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[A-Za-z0-9-]+$"))]
    pub tester_header: String,
    /// Most requests one burst may send; the policy's quota plus a few must fit.
    #[serde(default = "default_max_requests")]
    #[schemars(range(min = 4, max = 2000))]
    pub max_requests: u32,
}

fn default_max_requests() -> u32 {
    300
}

fn default_tester_header() -> String {
    "x-canary-tester".to_owned()
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomGate {
    /// Gate name; shown as `custom.<name>` in status.
    #[schemars(length(min = 1, max = 63), pattern(LABEL_PATTERN))]
    pub name: String,
    /// PromQL returning one scalar for the canary.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// e.g. "< 0.05".
    #[schemars(length(max = 64), pattern(THRESHOLD_PATTERN))]
    pub condition: String,
    #[serde(default)]
    pub no_data: NoDataPolicy,
    #[serde(default = "default_min_samples")]
    #[schemars(range(max = 1_000_000))]
    pub min_samples: u32,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.above) != has(self.below)",
     "message": "spec.rollback[]: exactly one of above or below must be set"},
    {"rule": "has(self.query) || self.metric in ['availability', 'p95LatencyMs', 'errorRate5xx', 'rateLimited429', 'limiterRedisErrors', 'openaiFallbackRate', 'dbPoolUtilization', 'redisP95LatencyMs']",
     "message": "spec.rollback[].metric: no built-in query for this metric (built-ins: availability, p95LatencyMs, errorRate5xx, rateLimited429, limiterRedisErrors, openaiFallbackRate, dbPoolUtilization, redisP95LatencyMs); set query",
     "fieldPath": ".metric"}
]))]
pub struct RollbackCriterion {
    /// Metric name, e.g. p95LatencyMs, errorRate5xx, limiterRedisErrors, rateLimited429,
    /// openaiFallbackRate, dbPoolUtilization, redisP95LatencyMs (built-in queries), or any
    /// name with `query`.
    #[schemars(length(min = 1, max = 63), pattern(METRIC_PATTERN))]
    pub metric: String,
    /// Breached while the value is strictly above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Breached while the value is strictly below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// How long the breach must hold continuously before rolling back.
    #[serde(rename = "for")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    pub for_: String,
    /// PromQL overriding the built-in query for `metric`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub query: Option<String>,
    /// Readings backed by fewer samples neither breach nor clear the window.
    #[serde(default = "default_min_samples")]
    #[schemars(range(max = 1_000_000))]
    pub min_samples: u32,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    #[serde(default)]
    pub strategy: PromotionStrategy,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum PromotionStrategy {
    /// The operator sets the stable Deployment's image itself.
    #[default]
    Patch,
    /// Something else (GitOps) sets the stable image; the operator waits for it.
    External,
}

/// Identifies a release: the spec without the fields a running promotion takes in its stride
/// (`paused`, `notify`). Stable across builds (FNV-1a over the JSON, whose object keys are
/// sorted), so a restarted or upgraded operator computes the same digest.
pub fn release_digest(spec: &PromotionSpec) -> String {
    let mut value = serde_json::to_value(spec).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("paused");
        fields.remove("notify");
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

//! The controller: observe → decide (the pure core) → act → write status, once per object
//! per interval and whenever the object or something it references changes.

mod act;
mod observe;
mod references;
mod schedule;
mod status;
mod unreadable;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canary_core::{ACTION_ANNOTATION, Decision, Observation, Phase, Plan, SpecError, decide_plan};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{Instrument, info_span, instrument};

use crate::clock::Clock;
use crate::crd::CanaryPromotion;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::notify::{Delivery, Notifier};
use crate::provider::rate_limit::StepResults;
use crate::provider::redis::EvictionHistory;
use crate::provider::scrape::ScrapeState;
use crate::router::{RouterError, TrafficRouter, gateway_http_route_resource};
use references::Kind;

/// Put on every CanaryPromotion so deleting one mid-flight first returns traffic to stable.
pub const FINALIZER: &str = "scholarship.dev/restore-stable";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Deployment {namespace}/{name} not found")]
    MissingDeployment { namespace: String, name: String },
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("router carries weight {got} after setting {want}")]
    WeightNotApplied { want: u32, got: u32 },
    #[error("not the leader")]
    NotLeader,
    #[error("the object has no namespace")]
    NoNamespace,
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// kube's finalizer helper guards its patch with a JSON-patch `test` of the finalizer list
    /// it saw; right after our own write that view can be stale, and the API server answers 422.
    /// The retry sees the current list.
    #[error("finalizer patch raced an earlier write (stale cache); retrying")]
    StaleFinalizer,
    /// An error and the pipeline step it came from.
    #[error("{step}: {source}")]
    At { step: Step, source: Box<Error> },
}

/// The step of the reconcile pipeline an error came from, so the errors metric tells an API
/// server outage while observing from a router write conflict while acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading Deployments, the router object and the metric providers.
    Observe,
    /// Setting the router weight and the stable image.
    Act,
    /// Writing `.status`.
    Status,
    /// Adding or removing the finalizer.
    Finalizer,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Observe => "observe",
            Step::Act => "act",
            Step::Status => "status",
            Step::Finalizer => "finalizer",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// Records the step the error came from (the first one recorded wins).
    pub fn at(self, step: Step) -> Error {
        match self {
            Error::At { .. } => self,
            other => Error::At {
                step,
                source: Box::new(other),
            },
        }
    }

    /// The `step` label of the errors metric; `reconcile` for errors outside the pipeline
    /// (not the leader, an object without a namespace).
    pub fn step(&self) -> &'static str {
        match self {
            Error::At { step, .. } => step.as_str(),
            _ => "reconcile",
        }
    }

    /// kube's finalizer patch raced our own write: expected now and then, retried quietly.
    pub fn is_stale_finalizer(&self) -> bool {
        match self {
            Error::At { source, .. } => source.is_stale_finalizer(),
            other => matches!(other, Error::StaleFinalizer),
        }
    }

    /// Stable label for the errors metric.
    pub fn category(&self) -> &'static str {
        match self {
            Error::At { source, .. } => source.category(),
            Error::MissingDeployment { .. } => "missing_deployment",
            Error::Router(RouterError::NotFound { .. }) => "missing_router_target",
            Error::Router(RouterError::Invalid { .. }) => "invalid_router_target",
            Error::Router(RouterError::Kube(_)) | Error::Kube(_) => "kube_api",
            Error::WeightNotApplied { .. } => "weight_not_applied",
            Error::NotLeader => "not_leader",
            Error::NoNamespace => "invalid_object",
            Error::Finalizer(_) => "finalizer",
            Error::StaleFinalizer => "stale_finalizer",
        }
    }

    /// Errors no retry can fix until an object changes: reported, then `await_change`.
    pub fn is_invalid_object(&self) -> bool {
        match self {
            Error::At { source, .. } => source.is_invalid_object(),
            Error::MissingDeployment { .. } | Error::NoNamespace => true,
            Error::Router(r) => r.is_invalid_object(),
            _ => false,
        }
    }

    /// Condition/event reason naming the problem.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::At { source, .. } => source.reason(),
            Error::MissingDeployment { .. } => "DeploymentNotFound",
            Error::Router(RouterError::NotFound { kind: "Ingress", .. }) => "IngressNotFound",
            Error::Router(RouterError::NotFound { kind: "HTTPRoute", .. }) => "HTTPRouteNotFound",
            Error::Router(RouterError::NotFound { .. }) => "RouterTargetNotFound",
            Error::Router(RouterError::Invalid { .. }) => "RouterTargetInvalid",
            _ => "ReconcileError",
        }
    }
}

impl From<finalizer::Error<Error>> for Error {
    fn from(e: finalizer::Error<Error>) -> Self {
        match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            finalizer::Error::AddFinalizer(kube::Error::Api(s))
            | finalizer::Error::RemoveFinalizer(kube::Error::Api(s))
                if s.code == 422 =>
            {
                Error::StaleFinalizer.at(Step::Finalizer)
            }
            finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => {
                Error::Kube(e).at(Step::Finalizer)
            }
            other => Error::Finalizer(other.to_string()),
        }
    }
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
    pub prometheus_timeout: Duration,
    /// Lower bound of the metric window (the window is otherwise two intervals).
    pub min_window: Duration,
    pub leadership: Leadership,
    /// Earlier scrapes of the direct-scrape metric provider (baselines for counter deltas).
    pub scrapes: ScrapeState,
    /// Earlier `evicted_keys` counts of the Redis probe (for the increase over the window).
    pub evictions: EvictionHistory,
    /// The rate-limit probe's verdict for each promotion's current step.
    pub rate_limits: StepResults,
    /// Webhook messages for `spec.notify`, sent in the background.
    pub notifier: Notifier,
    /// Consecutive failures per object, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// When each active promotion's next evaluation is due (for the lateness histogram).
    schedule: schedule::Schedule,
    /// Which promotions name which Deployments, Ingresses and HTTPRoutes.
    references: Arc<references::References>,
}

#[derive(Debug, Clone)]
pub struct ContextSettings {
    pub prometheus_timeout: Duration,
    pub min_window: Duration,
    pub identity: String,
}

impl Context {
    pub fn new(
        client: Client,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        leadership: Leadership,
        s: &ContextSettings,
    ) -> Result<Self, reqwest::Error> {
        let reporter = Reporter {
            controller: "canary-operator".into(),
            instance: Some(s.identity.clone()),
        };
        Ok(Self {
            recorder: Recorder::new(client.clone(), reporter),
            notifier: Notifier::new(client.clone(), metrics.clone(), Delivery::default())?,
            client,
            clock,
            metrics,
            http: reqwest::Client::builder()
                .connect_timeout(s.prometheus_timeout)
                .build()?,
            prometheus_timeout: s.prometheus_timeout,
            min_window: s.min_window,
            leadership,
            scrapes: ScrapeState::default(),
            evictions: EvictionHistory::default(),
            rate_limits: StepResults::default(),
            failures: Mutex::new(HashMap::new()),
            schedule: schedule::Schedule::default(),
            references: Arc::default(),
        })
    }
}

/// A CanaryPromotion as reconcile reads it: the object, or what could be read of one this
/// version cannot deserialize (see `unreadable`).
type Watched = DeserializeGuard<CanaryPromotion>;

/// What the controller caches per CanaryPromotion: metadata only. Reconcile reads the object
/// itself, so ten thousand promotions cost their metadata, not a copy of every spec and status.
pub type Cached = PartialObjectMeta<CanaryPromotion>;

/// Keeps only what `trigger_hash` reads: managedFields and annotations such as kubectl's
/// last-applied-configuration are most of the metadata's size.
fn slim(meta: &mut Cached) {
    meta.managed_fields_mut().clear();
    meta.annotations_mut().retain(|k, _| k == ACTION_ANNOTATION);
}

fn key<K: Resource>(cp: &K) -> String {
    format!("{}/{}", cp.namespace().unwrap_or_default(), cp.name_any())
}

/// Which changes to a CanaryPromotion need a reconcile: the spec (generation), a one-off
/// action, deletion and our finalizer. Status changes are our own writes and must not
/// trigger another round, or every status write would loop straight back.
fn trigger_hash(cp: &Cached) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cp.meta().generation.hash(&mut h);
    cp.annotations().get(ACTION_ANNOTATION).hash(&mut h);
    cp.meta().deletion_timestamp.is_some().hash(&mut h);
    cp.finalizers().iter().any(|f| f == FINALIZER).hash(&mut h);
    Some(h.finish())
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shard_selector: Option<&str>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    // `Api<PartialObjectMeta<_>>` lists and watches metadata only.
    let (cps, deployments, ingresses): (Api<Cached>, Api<Deployment>, Api<Ingress>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let route_resource = gateway_http_route_resource();
    let routes: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &route_resource),
        None => Api::all_with(client.clone(), &route_resource),
    };
    // Clusters without the Gateway API CRDs: watching HTTPRoutes would only log 404s.
    let gateway_api = routes.list(&ListParams::default().limit(1)).await.is_ok();

    let (reader, writer) = reflector::store();
    let mut config = watcher::Config::default().any_semantic();
    if let Some(selector) = shard_selector {
        config = config.labels(selector);
    }
    let trigger = watcher(cps, config)
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let mut controller =
        Controller::for_stream(trigger, reader).with_config(ControllerConfig::default().concurrency(concurrency));
    let refs = ctx.references.clone();
    controller = controller.watches(deployments, watcher::Config::default(), move |d: Deployment| {
        refs.naming(Kind::Deployment, d.namespace(), d.name_any())
    });
    let refs = ctx.references.clone();
    controller = controller.watches(ingresses, watcher::Config::default(), move |i: Ingress| {
        refs.naming(Kind::Ingress, i.namespace(), i.name_any())
    });
    if gateway_api {
        let refs = ctx.references.clone();
        controller = controller.watches_with(
            routes,
            route_resource,
            watcher::Config::default(),
            move |r: DynamicObject| refs.naming(Kind::HttpRoute, r.namespace(), r.name_any()),
        );
    }
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile round ended with an error");
            }
        })
        .await;
}

#[instrument(skip_all, fields(namespace = cached.namespace().unwrap_or_default(), name = cached.name_any()))]
async fn reconcile(cached: Arc<Cached>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    if !ctx.leadership.is_leader() {
        return Err(Error::NotLeader);
    }
    let ns = cached.namespace().ok_or(Error::NoNamespace)?;
    let name = cached.name_any();
    let current: Api<Watched> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(watched) = current
        .get_opt(&name)
        .await
        .map_err(|e| Error::from(e).at(Step::Observe))?
    else {
        // Deleted since the event: nothing is left to restore.
        ctx.references.forget(&ns, &name);
        return Ok(Action::await_change());
    };
    let cp = match watched.0 {
        Ok(cp) => Arc::new(cp),
        Err(invalid) => return unreadable::report(&invalid, &ctx).await,
    };
    ctx.references.record(&ns, &name, &cp.spec.promotion);
    let api: Api<CanaryPromotion> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, cp, |event| async {
        match event {
            FinalizerEvent::Apply(cp) => apply(cp, &ctx, &ns).await,
            FinalizerEvent::Cleanup(cp) => cleanup(cp, &ctx, &ns).await,
        }
    })
    .await
    .map_err(Error::from);
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    result
}

async fn apply(cp: Arc<CanaryPromotion>, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let now = ctx.clock.now();
    let object_key = key(cp.as_ref());
    if let Some(late) = ctx.schedule.lateness(&object_key, Instant::now()) {
        ctx.metrics.evaluation_lateness.observe(late.as_secs_f64());
    }
    // Compiled once: what is read, what is decided and what is recorded all follow this plan.
    let plan = Plan::compile(&cp.spec.promotion);
    let observed = match observe::observe(&cp, plan.as_ref().ok(), ctx, ns).await {
        Ok(o) => o,
        Err(e) if e.is_invalid_object() => {
            tracing::warn!(error = %e, "cannot act on the object until it or what it references changes");
            ctx.metrics.error(e.category(), Step::Observe.as_str());
            status::report_invalid(&cp, ctx, &e, now)
                .await
                .map_err(|e| e.at(Step::Status))?;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.at(Step::Observe)),
    };
    let previous = cp.status.clone().unwrap_or_default();
    let decision = decide_plan(plan.as_ref(), &previous, &observed.obs, now);
    let mut outcome = act::act(&cp, ctx, &observed, decision)
        .await
        .map_err(|e| e.at(Step::Act))?;
    outcome.decision = confirm_rollback(plan.as_ref(), outcome.decision, &observed.obs, outcome.carried, now);
    act::record_breach_to_rollback(ctx, plan.as_ref().ok(), previous.phase, &outcome.decision);
    for gate in &outcome.decision.status.gates {
        if matches!(previous.phase, Phase::Progressing | Phase::Paused) {
            ctx.metrics.gate(gate.state);
        }
    }
    status::write(
        &cp,
        ctx,
        &previous,
        outcome.decision.status.clone(),
        observed.unresolved.as_deref(),
        now,
    )
    .await
    .map_err(|e| e.at(Step::Status))?;
    act::publish(&cp, ctx, &outcome.decision.events, outcome.decision.status.current_step).await;
    ctx.notifier
        .notify(&cp, &outcome.decision.status, &outcome.decision.events, now);
    for event in &outcome.decision.events {
        if event.reason == canary_core::Reason::PostPromotionBreach {
            ctx.metrics.post_promotion_breaches.inc();
        }
    }
    ctx.metrics.set_phase(&object_key, Some(outcome.decision.status.phase));
    ctx.metrics
        .set_progress(ns, &cp.name_any(), Some(&outcome.decision.status));
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&object_key);
    }
    Ok(match outcome.requeue_after {
        Some(after) => {
            ctx.schedule.due_at(&object_key, Instant::now() + after);
            Action::requeue(after)
        }
        None => {
            ctx.schedule.forget(&object_key);
            Action::await_change()
        }
    })
}

/// A rollback is complete once the router confirms weight 0: decide again with that reading,
/// so status says RolledBack now rather than one interval later (the events of both rounds
/// are kept, in order).
fn confirm_rollback(
    plan: Result<&Plan, &SpecError>,
    decision: Decision,
    obs: &Observation,
    carried: Option<u32>,
    now: chrono::DateTime<chrono::Utc>,
) -> Decision {
    if decision.status.phase != Phase::RollingBack || carried != Some(0) {
        return decision;
    }
    let mut obs = obs.clone();
    obs.router_weight = Some(0);
    let mut second = decide_plan(plan, &decision.status, &obs, now);
    let mut events = decision.events;
    events.append(&mut second.events);
    second.events = events;
    second
}

/// Deletion: traffic back on stable before the finalizer lets the object go.
async fn cleanup(cp: Arc<CanaryPromotion>, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let span = info_span!("cleanup");
    async {
        if let Some(router) = crate::router::Router::for_spec(&ctx.client, ns, &cp.spec.promotion) {
            match router.consolidate().await {
                Ok(0) => tracing::info!(router = router.kind(), "traffic restored to stable"),
                // The replica router waits for stable pods before removing the canary.
                Ok(w) => return Err(Error::WeightNotApplied { want: 0, got: w }),
                // Nothing to restore when the router object is gone.
                Err(e) if e.is_invalid_object() => tracing::info!(error = %e, "no router object to restore"),
                Err(e) => return Err(Error::Router(e)),
            }
        }
        let object_key = key(cp.as_ref());
        ctx.schedule.forget(&object_key);
        ctx.references.forget(ns, &cp.name_any());
        ctx.metrics.set_phase(&object_key, None);
        ctx.metrics.set_progress(ns, &cp.name_any(), None);
        ctx.scrapes.forget(&observe::history_key(cp.as_ref()));
        ctx.evictions.forget(&observe::history_key(cp.as_ref()));
        ctx.rate_limits.forget(&observe::history_key(cp.as_ref()));
        Ok(Action::await_change())
    }
    .instrument(span)
    .await
}

fn error_policy(cp: Arc<Cached>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.category(), error.step());
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(cp.as_ref())).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    // 0.5 s, 1 s, 2 s, ... capped at 30 s: quick for a blip, gentle for an outage.
    let backoff = Duration::from_millis(500).saturating_mul(1 << failures.min(6).saturating_sub(1));
    if error.is_stale_finalizer() {
        // Expected now and then, and over at the retry: not worth a warning.
        tracing::debug!(error = %error, retry_in = ?backoff, "reconcile retried");
    } else {
        tracing::warn!(error = %error, category = error.category(), step = error.step(), retry_in = ?backoff, "reconcile failed");
    }
    Action::requeue(backoff.min(Duration::from_secs(30)))
}

/// Used by `lib::run` to wait for leadership changes.
pub type ShutdownRx = watch::Receiver<bool>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_first_step_they_were_recorded_at() {
        let conflict = Error::WeightNotApplied { want: 10, got: 0 }
            .at(Step::Act)
            .at(Step::Status);
        assert_eq!((conflict.step(), conflict.category()), ("act", "weight_not_applied"));
        assert_eq!(conflict.to_string(), "act: router carries weight 0 after setting 10");
        let missing = Error::MissingDeployment {
            namespace: "team-a".into(),
            name: "api".into(),
        }
        .at(Step::Observe);
        assert!(missing.is_invalid_object());
        assert_eq!(missing.reason(), "DeploymentNotFound");
        assert_eq!(Error::NotLeader.step(), "reconcile");
    }
}

//! observe: read the world into one plain `Observation` (the only input `decide` has about it).

use std::time::{Duration, Instant};

use canary_core::{
    ACTION_ANNOTATION, CanaryPromotionStatus, DeploymentObservation, DrillEvent, Observation, Phase, Plan, Reading,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::{Context, Error};
use crate::crd::CanaryPromotion;
use crate::provider::prometheus::PrometheusProvider;
use crate::provider::scrape::ScrapeProvider;
use crate::provider::secret::SecretError;
use crate::provider::{MetricProvider, Readings, Wanted, rate_limit, redis, replay, window_for};

/// Upper bound of one pod scrape (`--prometheus-timeout` if shorter).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
use crate::router::{Router, TrafficRouter};

pub struct Observed {
    pub obs: Observation,
    /// Probe Secrets the spec names but the operator cannot use (`spec.<field>: <reason>`);
    /// `None` when no probe ran this round.
    pub unresolved: Option<Vec<String>>,
    /// `None` only for a spec without a router, which `decide` reports as invalid.
    pub router: Option<Router>,
    pub stable: Deployment,
}

/// Image of the first container (the application container by convention).
pub fn first_image(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

/// The Deployment controller has rolled out the current spec and reports `Available`.
pub fn available(d: &Deployment) -> bool {
    let Some(status) = d.status.as_ref() else {
        return false;
    };
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let rolled_out = status.observed_generation.unwrap_or(0) >= d.meta().generation.unwrap_or(0)
        && status.updated_replicas.unwrap_or(0) >= wanted
        && status.available_replicas.unwrap_or(0) >= wanted.min(1);
    let condition = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Available" && c.status == "True");
    rolled_out && condition
}

async fn deployment(api: &Api<Deployment>, ns: &str, name: &str) -> Result<Deployment, Error> {
    api.get_opt(name).await?.ok_or_else(|| Error::MissingDeployment {
        namespace: ns.to_owned(),
        name: name.to_owned(),
    })
}

/// The evaluation period: the plan's, or 30 s for a spec that does not compile (its
/// promotion is failed as invalid, and only its reconciles need a period).
pub fn interval(plan: Option<&Plan>) -> Duration {
    plan.and_then(|p| p.interval.to_std().ok())
        .unwrap_or(Duration::from_secs(30))
}

/// Key of a CanaryPromotion's scrape history: its UID, so a deleted and recreated object
/// of the same name starts without the old baselines.
pub fn history_key(cp: &CanaryPromotion) -> String {
    cp.uid()
        .unwrap_or_else(|| format!("{}/{}", cp.namespace().unwrap_or_default(), cp.name_any()))
}

/// Gate and rollback readings from the spec's metric source and the operator's own probes,
/// and what the probes need but cannot use (`spec.<field>: <reason>`).
async fn read_metrics(
    cp: &CanaryPromotion,
    ctx: &Context,
    ns: &str,
    wanted: Wanted,
    window: Duration,
    probe_budget: Duration,
) -> (Readings, Option<Vec<String>>) {
    let redis_gates = wanted
        .redis
        .as_ref()
        .map(|c| c.rows.iter().map(|r| r.gate()).collect())
        .unwrap_or_default();
    let (mut readings, redis, replay, rate_limit) = futures::join!(
        read_providers(cp, ctx, ns, &wanted, window),
        within(probe_budget, redis_gates, probe_redis(cp, ctx, ns, &wanted, window)),
        within(
            probe_budget,
            vec![canary_core::plan::REPLAY_GATE.to_owned()],
            probe_replay(ctx, ns, &wanted)
        ),
        within(
            probe_budget,
            vec![canary_core::plan::RATE_LIMIT_GATE.to_owned()],
            probe_rate_limit(cp, ctx, ns, &wanted)
        )
    );
    let mut unresolved = Vec::new();
    for probed in [redis, replay, rate_limit] {
        match probed {
            ProbeOutcome::Read(rows) => readings.gates.extend(rows),
            ProbeOutcome::Unresolved { field, gates, reason } => {
                readings
                    .gates
                    .extend(gates.into_iter().map(|g| (g, Reading::Error(reason.clone()))));
                unresolved.push(format!("spec.{field}: {reason}"));
            }
            ProbeOutcome::NotAsked => {}
        }
    }
    (readings, Some(unresolved))
}

/// A probe still running after `budget` (a slow pod, a slow Redis) is cut, and its `gates`
/// read as errors this round: the rollback criteria, read beside the probes, never wait for a
/// slow canary longer than an interval.
async fn within(budget: Duration, gates: Vec<String>, probe: impl Future<Output = ProbeOutcome>) -> ProbeOutcome {
    match tokio::time::timeout(budget, probe).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let reason = format!("the probe did not finish within the interval ({budget:?})");
            ProbeOutcome::Read(gates.into_iter().map(|g| (g, Reading::Error(reason.clone()))).collect())
        }
    }
}

/// What one of the operator's probes gave.
enum ProbeOutcome {
    NotAsked,
    Read(Vec<(String, Reading)>),
    /// Its Secret is missing or lacks a key: its gates read as errors, and status says
    /// ReferencesResolved=False naming the field.
    Unresolved {
        field: &'static str,
        gates: Vec<String>,
        reason: String,
    },
}

impl ProbeOutcome {
    /// A probe whose Secret gave no credentials: its gates read as errors, and only a Secret
    /// that is missing or incomplete (not an API server that could not answer) is reported
    /// as an unresolved reference.
    fn without_secret(field: &'static str, gates: Vec<String>, error: SecretError) -> ProbeOutcome {
        match error {
            SecretError::Unusable(reason) => ProbeOutcome::Unresolved { field, gates, reason },
            SecretError::Unavailable(reason) => {
                ProbeOutcome::Read(gates.into_iter().map(|g| (g, Reading::Error(reason.clone()))).collect())
            }
        }
    }
}

/// The rate-limit gate's reading: one burst per step, its conclusive verdict kept for the rest
/// of the step (an inconclusive one is retried next interval).
async fn probe_rate_limit(cp: &CanaryPromotion, ctx: &Context, ns: &str, wanted: &Wanted) -> ProbeOutcome {
    let Some(check) = wanted.rate_limit.as_ref() else {
        return ProbeOutcome::NotAsked;
    };
    let gate = canary_core::plan::RATE_LIMIT_GATE.to_owned();
    // Until the step has started there is no step to probe once for.
    let Some((status, started)) = cp.status.as_ref().and_then(|s| Some((s, s.step_started_at?))) else {
        return ProbeOutcome::Read(Vec::new());
    };
    let step = format!("{}@{}", status.current_step, started.to_rfc3339());
    let key = history_key(cp);
    if let Some(reading) = ctx.rate_limits.get(&key, &step, Instant::now()) {
        return ProbeOutcome::Read(vec![(gate, reading)]);
    }
    let tester = match rate_limit::tester_token(&ctx.client, ns, check).await {
        Ok(tester) => tester,
        Err(e) => return ProbeOutcome::without_secret("gates.rateLimit.probe.secretRef", vec![gate], e),
    };
    let (run, window_reset) = rate_limit::probe(&ctx.client, &ctx.http, ns, check, &tester).await;
    ctx.metrics.record_probe("rateLimit", run.took, run.requests);
    tracing::debug!(took = ?run.took, requests = run.requests, reading = ?run.reading, "rate-limit probe");
    if let Reading::Probed { value, .. } = &run.reading {
        // A pass stands for the step; a failure until its window resets, then it is retried.
        let until = (*value < 1.0).then(|| Instant::now() + window_reset.unwrap_or_default() + Duration::from_secs(1));
        ctx.rate_limits.put(&key, &step, run.reading.clone(), until);
    }
    ProbeOutcome::Read(vec![(gate, run.reading)])
}

/// The replay-protection gate's reading, from the operator's own probe of two pods.
async fn probe_replay(ctx: &Context, ns: &str, wanted: &Wanted) -> ProbeOutcome {
    let Some(check) = wanted.replay.as_ref() else {
        return ProbeOutcome::NotAsked;
    };
    let gate = canary_core::plan::REPLAY_GATE.to_owned();
    let credentials = match replay::Credentials::from_secret(&ctx.client, ns, &check.secret).await {
        Ok(c) => c,
        Err(e) => return ProbeOutcome::without_secret("gates.replayProtection.probe.secretRef", vec![gate], e),
    };
    let run = replay::probe(&ctx.client, &ctx.http, ns, check, &credentials).await;
    ctx.metrics.record_probe("replay", run.took, run.requests);
    tracing::debug!(took = ?run.took, requests = run.requests, reading = ?run.reading, "replay probe");
    ProbeOutcome::Read(vec![(gate, run.reading)])
}

/// The Redis gate's rows, probed by the operator itself (credentials from the spec's Secret).
async fn probe_redis(cp: &CanaryPromotion, ctx: &Context, ns: &str, wanted: &Wanted, window: Duration) -> ProbeOutcome {
    let Some(checks) = &wanted.redis else {
        return ProbeOutcome::NotAsked;
    };
    match redis::Target::from_secret(&ctx.client, ns, &checks.secret, checks.needs_sentinels()).await {
        Ok(target) => ProbeOutcome::Read(
            redis::probe(&target, checks, &ctx.evictions, &history_key(cp), window)
                .await
                .into_iter()
                .collect(),
        ),
        Err(e) => ProbeOutcome::without_secret(
            "gates.redis.secretRef",
            checks.rows.iter().map(|row| row.gate()).collect(),
            e,
        ),
    }
}

/// A drill step whose failover is not made yet, with the step's weight applied: the canary
/// carries its share when Redis fails over. Not in a round `decide` will spend on something
/// else (an action to apply, a new canary image), where the failover would go unrecorded.
fn drill_due(plan: &Plan, status: &CanaryPromotionStatus, observed: &Observation) -> bool {
    let step = status.current_step;
    let action_pending = observed.action.is_some() && observed.action != status.last_applied_action;
    let new_image =
        plan.canary_image.as_ref().or(observed.canary_image.as_ref()) != status.observed_canary_image.as_ref();
    status.phase == Phase::Progressing
        && plan.drill_at(step).is_some()
        && status.drill.as_ref().is_none_or(|d| d.step != step)
        && observed.router_weight == Some(status.weight)
        && !action_pending
        && !new_image
}

/// Makes the drill's failover through the Sentinels in the Redis Secret. The second value is
/// the reason when the Secret is missing or incomplete (an unresolved reference).
async fn fail_over(ctx: &Context, ns: &str, secret: &str) -> (DrillEvent, Option<String>) {
    let target = match redis::Target::from_secret(&ctx.client, ns, secret, true).await {
        Ok(target) => target,
        Err(SecretError::Unusable(reason)) => return (DrillEvent::Refused(reason.clone()), Some(reason)),
        Err(SecretError::Unavailable(reason)) => return (DrillEvent::Refused(reason), None),
    };
    // Leadership can be lost during a round: a replica that no longer leads must not fail
    // Redis over a second time.
    if !ctx.leadership.is_leader() {
        return (
            DrillEvent::Refused("this operator replica is not the leader".into()),
            None,
        );
    }
    let started = Instant::now();
    let event = match redis::failover(&target).await {
        Ok(done) => DrillEvent::FailedOver {
            from: done.from,
            to: done.to,
            at: done.at,
        },
        Err(reason) => DrillEvent::Refused(reason),
    };
    tracing::info!(?event, took = ?started.elapsed(), "failover drill");
    (event, None)
}

async fn read_providers(cp: &CanaryPromotion, ctx: &Context, ns: &str, wanted: &Wanted, window: Duration) -> Readings {
    let spec = &cp.spec.promotion;
    match (&spec.metrics.prometheus, &spec.metrics.scrape) {
        (Some(p), _) => {
            PrometheusProvider::new(ctx.http.clone(), &p.address, ctx.prometheus_timeout)
                .read(wanted, window)
                .await
        }
        (None, Some(source)) => {
            let provider = ScrapeProvider {
                client: ctx.client.clone(),
                http: ctx.http.clone(),
                namespace: ns.to_owned(),
                service: spec.canary.service_name().to_owned(),
                source: source.clone(),
                // Short: a pod that takes longer to render its metrics is itself suspect.
                timeout: ctx.prometheus_timeout.min(SCRAPE_TIMEOUT),
                uid: history_key(cp),
                state: &ctx.scrapes,
            };
            provider.read(wanted, window).await
        }
        // No source: `decide` fails the spec as invalid.
        (None, None) => Readings::default(),
    }
}

/// What the world looks like for this promotion. `plan` is its compiled spec (`None` when
/// the spec does not compile: no readings then, `decide` reports the spec).
pub async fn observe(cp: &CanaryPromotion, plan: Option<&Plan>, ctx: &Context, ns: &str) -> Result<Observed, Error> {
    let spec = &cp.spec.promotion;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let generation = cp.meta().generation.unwrap_or(0);
    let status = cp.status.clone().unwrap_or_default();
    let release = canary_core::release_digest(spec);
    // The run the status describes: this generation's, or an earlier generation's of the same
    // release (a pause, a resume, a webhook edited), which `decide` carries on.
    let current =
        status.observed_generation == Some(generation) || status.observed_release.as_deref() == Some(release.as_str());
    // After the promotion (or a rollback) the canary Deployment and the router object may be
    // cleaned up: the post-promotion watch needs only the stable track, and a finished run
    // nothing at all.
    let done = current
        && matches!(
            status.phase,
            Phase::Watching | Phase::Promoted | Phase::RolledBack | Phase::Failed
        );
    let canary = async {
        if done {
            Ok(deployments.get_opt(&spec.canary.deployment).await?)
        } else {
            deployment(&deployments, ns, &spec.canary.deployment).await.map(Some)
        }
    };
    let (stable, canary) = futures::try_join!(deployment(&deployments, ns, &spec.stable.deployment), canary)?;
    let router = Router::for_spec(&ctx.client, ns, spec);
    let router_weight = match &router {
        Some(r) if done => r.weight().await.ok(),
        Some(r) => Some(r.weight().await?),
        None => None,
    };
    let canary_image = match &canary {
        Some(c) => first_image(c),
        // Gone after the promotion: what was promoted is still the canary image.
        None => status.observed_canary_image.clone(),
    };
    // Readings matter only while a step is being judged; skipping them otherwise keeps idle
    // and finished promotions from loading Prometheus.
    let window = window_for(interval(plan), ctx.min_window);
    let mut drill_secret = None;
    let (readings, mut unresolved) = match (status.phase, plan) {
        (Phase::Progressing | Phase::Paused, Some(plan)) if current => {
            let mut wanted = Wanted::for_plan(plan, spec);
            if plan.drill_at(status.current_step).is_none() {
                wanted = wanted.without_drill();
            }
            drill_secret = wanted.drill.clone();
            read_metrics(cp, ctx, ns, wanted, window, interval(Some(plan))).await
        }
        (Phase::Watching, Some(plan)) if current => {
            read_metrics(cp, ctx, ns, Wanted::for_watch(plan, spec), window, interval(Some(plan))).await
        }
        _ => (Readings::default(), None),
    };
    let mut obs = Observation {
        drill: None,
        release: Some(release),
        generation,
        gates: readings.gates,
        criteria: readings.criteria,
        router_weight,
        stable: DeploymentObservation {
            image: first_image(&stable),
            available: available(&stable),
        },
        canary_image,
        action: cp.annotations().get(ACTION_ANNOTATION).cloned(),
        metric_window: chrono::TimeDelta::from_std(window).unwrap_or_default(),
    };
    // After the readings: this round's 5xx ratio is the drill's "before".
    if let (Some(plan), Some(secret)) = (plan, drill_secret)
        && current
        && drill_due(plan, &status, &obs)
    {
        let (event, unusable) = fail_over(ctx, ns, &secret).await;
        if let (Some(reason), Some(unresolved)) = (unusable, unresolved.as_mut()) {
            unresolved.push(format!("spec.gates.redis.secretRef: {reason}"));
        }
        obs.drill = Some(event);
    }
    Ok(Observed {
        obs,
        router,
        stable,
        unresolved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_or_incomplete_secret_is_an_unresolved_reference() {
        let gates = || vec![canary_core::plan::REPLAY_GATE.to_owned()];
        let missing = ProbeOutcome::without_secret("f", gates(), SecretError::Unusable("secret a/b not found".into()));
        assert!(matches!(missing, ProbeOutcome::Unresolved { field: "f", .. }));
        match ProbeOutcome::without_secret("f", gates(), SecretError::Unavailable("secret a/b: timeout".into())) {
            ProbeOutcome::Read(rows) => assert_eq!(
                rows,
                vec![(gates().remove(0), Reading::Error("secret a/b: timeout".into()))]
            ),
            _ => panic!("an API server that could not answer is no spec problem"),
        }
    }
}

//! act: apply a Decision — router weight (read back), stable image on promotion, Events.

use std::time::Duration;

use canary_core::conditions::ROLLED_BACK;
use canary_core::{ConditionStatus, Decision, Event, EventType, Phase, Plan};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::observe::Observed;
use super::{Context, Error};
use crate::crd::CanaryPromotion;
use crate::ownership::FIELD_MANAGER;
use crate::router::{Router, TrafficRouter};

pub struct Outcome {
    pub decision: Decision,
    pub requeue_after: Option<Duration>,
    /// The weight the router reports carrying after this round (`None` without a router).
    pub carried: Option<u32>,
}

/// While a replica router waits for pods, look again soon rather than after a full interval.
const SETTLE_REQUEUE: Duration = Duration::from_secs(2);

pub async fn act(
    cp: &CanaryPromotion,
    ctx: &Context,
    observed: &Observed,
    mut decision: Decision,
) -> Result<Outcome, Error> {
    let ns = cp.namespace().unwrap_or_default();
    let previous_phase = cp.status.as_ref().map(|s| s.phase).unwrap_or_default();
    let mut requeue_after = decision.requeue_after;
    let mut carried = observed.obs.router_weight;
    // After the promotion (during the watch, or once finished) a router object cleaned up is
    // nothing to correct: the weight stays 0 either way.
    let router_gone = carried.is_none()
        && matches!(
            previous_phase,
            Phase::Watching | Phase::Promoted | Phase::RolledBack | Phase::Failed
        );
    if let Some(router) = observed.router.as_ref().filter(|_| !router_gone) {
        let is_promoted = |phase| matches!(phase, Phase::Promoted | Phase::Watching);
        let promoted = is_promoted(decision.status.phase);
        let newly_promoted = promoted && !is_promoted(previous_phase);
        if carried != Some(decision.weight) || newly_promoted {
            let got = if promoted {
                router.consolidate().await?
            } else {
                router.set_weight(decision.weight).await?
            };
            tracing::info!(
                want = decision.weight,
                carried = got,
                router = router.kind(),
                "router weight set"
            );
            if got != decision.weight {
                if !matches!(router, Router::Replicas(_)) {
                    return Err(Error::WeightNotApplied {
                        want: decision.weight,
                        got,
                    });
                }
                requeue_after = Some(requeue_after.map_or(SETTLE_REQUEUE, |r| r.min(SETTLE_REQUEUE)));
            }
            carried = Some(got);
        }
    }
    // Status reports what the router carries, not what was asked of it.
    if let Some(w) = carried
        && w != decision.weight
    {
        decision.status.message = format!(
            "{} (router carries {w}%, waiting for {}%)",
            decision.status.message, decision.weight
        );
        decision.status.weight = w;
    }
    if let Some(image) = &decision.patch_stable_image {
        patch_stable_image(ctx, &ns, &observed.stable, image).await?;
    }
    Ok(Outcome {
        decision,
        requeue_after,
        carried,
    })
}

/// Observes breach-to-weight-0 for a rollback by a criterion that completed this round.
pub fn record_breach_to_rollback(ctx: &Context, plan: Option<&Plan>, previous: Phase, decision: &Decision) {
    let st = &decision.status;
    if previous == Phase::RolledBack || st.phase != Phase::RolledBack {
        return;
    }
    let by_criterion = st
        .conditions
        .iter()
        .any(|c| c.type_ == ROLLED_BACK && c.status == ConditionStatus::True && c.reason == "RollbackCriterion");
    let since = st.rollback.iter().filter_map(|c| c.breach_since).min();
    if let (true, Some(since)) = (by_criterion, since) {
        let took = ctx.clock.now().signed_duration_since(since);
        ctx.metrics.breach_to_rollback.observe(took.as_seconds_f64().max(0.0));
        let promised = plan.and_then(|p| p.rollback_within);
        if promised.is_some_and(|within| took > within) {
            ctx.metrics.late_rollbacks.inc();
        }
    }
}

async fn patch_stable_image(ctx: &Context, ns: &str, stable: &Deployment, image: &str) -> Result<(), Error> {
    let Some(container) = stable
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
    else {
        return Ok(());
    };
    // Strategic merge keyed by container name: only this container's image changes.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container.name, "image": image}]}}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(&stable.name_any(), &params, &Patch::Strategic(&patch))
        .await?;
    tracing::info!(deployment = %stable.name_any(), %image, "stable image set");
    Ok(())
}

/// Publishes Events; a failure is logged, never fails the reconcile (status is the record).
///
/// kube's recorder folds Events with the same reason and action into one series that keeps
/// the first note, so the action names the step the event is about: "StepAdvanced" to step 2
/// and to step 3 stay two Events, while a gate flapping at one step folds into a count.
pub async fn publish(cp: &CanaryPromotion, ctx: &Context, events: &[Event], step: u32) {
    let reference = cp.object_ref(&());
    for e in events {
        tracing::info!(reason = e.reason.as_str(), message = %e.message, "event");
        let event = KubeEvent {
            type_: match e.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: e.reason.as_str().to_owned(),
            note: Some(truncate(&e.message, 1000)),
            action: format!("Step{step}"),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %err, reason = e.reason.as_str(), "could not publish event");
        }
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

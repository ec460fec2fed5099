//! Status: written with server-side apply under one field manager, and only when it changed
//! (our own writes do not trigger reconciles, see `trigger_hash`, but they still cost a write).

use canary_core::CanaryPromotionStatus;
use canary_core::ConditionStatus;
use canary_core::conditions::set_condition;
use chrono::{DateTime, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::act::truncate;
use super::{Context, Error};
use crate::crd::CanaryPromotion;
use crate::ownership::FIELD_MANAGER;

/// Condition type set by the shell: do the objects the spec names exist and fit?
pub const REFERENCES_RESOLVED: &str = "ReferencesResolved";

async fn apply(cp: &CanaryPromotion, ctx: &Context, status: &CanaryPromotionStatus) -> Result<(), Error> {
    if !ctx.leadership.is_leader() {
        return Err(Error::NotLeader);
    }
    let api: Api<CanaryPromotion> = Api::namespaced(ctx.client.clone(), &cp.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": CanaryPromotion::api_version(&()),
        "kind": CanaryPromotion::kind(&()),
        "status": status,
    });
    api.patch_status(
        &cp.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Writes the decided status. `unresolved` lists the probe Secrets the operator cannot use
/// (`spec.<field>: <reason>`), or is `None` when no probe ran this round (then what the last
/// round found stands): the promotion goes on judging (those gates read as errors, per their
/// `noData`), and ReferencesResolved says what to fix, with one Warning event each time that
/// message changes.
pub async fn write(
    cp: &CanaryPromotion,
    ctx: &Context,
    previous: &CanaryPromotionStatus,
    mut status: CanaryPromotionStatus,
    unresolved: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let generation = cp.meta().generation.unwrap_or(0);
    let before = previous
        .conditions
        .iter()
        .find(|c| c.type_ == REFERENCES_RESOLVED)
        .map(|c| (c.reason.clone(), c.message.clone()));
    let unresolved: Vec<String> = match unresolved {
        Some(list) => list.to_vec(),
        // A finished promotion needs no probe any more.
        None if status.phase.is_terminal() => Vec::new(),
        None => match &before {
            Some((reason, message)) if reason == PROBE_SECRET_UNRESOLVED => vec![message.clone()],
            _ => Vec::new(),
        },
    };
    let (state, reason, message) = if unresolved.is_empty() {
        (
            ConditionStatus::True,
            "Resolved",
            "the Deployments and the router object exist".to_owned(),
        )
    } else {
        (ConditionStatus::False, PROBE_SECRET_UNRESOLVED, unresolved.join("; "))
    };
    let news = !unresolved.is_empty() && before != Some((reason.to_owned(), message.clone()));
    set_condition(
        &mut status.conditions,
        REFERENCES_RESOLVED,
        state,
        reason,
        &message,
        generation,
        now,
    );
    if cp.status.is_some() && *previous == status {
        return Ok(());
    }
    apply(cp, ctx, &status).await?;
    if news {
        warn(cp, ctx, PROBE_SECRET_UNRESOLVED, &message).await;
    }
    Ok(())
}

/// The ReferencesResolved reason (and Warning event reason) for an unusable probe Secret.
pub const PROBE_SECRET_UNRESOLVED: &str = "ProbeSecretUnresolved";

async fn warn(cp: &CanaryPromotion, ctx: &Context, reason: &str, message: &str) {
    let event = KubeEvent {
        type_: KubeEventType::Warning,
        reason: reason.to_owned(),
        note: Some(truncate(message, 1000)),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cp.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}

/// Records why the object cannot be acted on: a condition, the message, one Warning event
/// per distinct problem (not one per retry).
pub async fn report_invalid(
    cp: &CanaryPromotion,
    ctx: &Context,
    error: &Error,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let mut status = cp.status.clone().unwrap_or_default();
    let generation = cp.meta().generation.unwrap_or(0);
    let message = error.to_string();
    let changed = set_condition(
        &mut status.conditions,
        REFERENCES_RESOLVED,
        ConditionStatus::False,
        error.reason(),
        &message,
        generation,
        now,
    );
    if changed.is_none() && cp.status.is_some() {
        return Ok(());
    }
    status.message = format!("cannot act: {message}");
    apply(cp, ctx, &status).await?;
    warn(cp, ctx, error.reason(), &message).await;
    Ok(())
}

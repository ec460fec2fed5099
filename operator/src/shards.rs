//! Shard coverage. Operators started with `--shard-selector` split a cluster's promotions
//! between them. Each shard's leader writes its selector on its Lease, and every shard's leader
//! reads the selectors of the Leases beside its own, so it can report the promotions that no
//! shard selects (nobody reconciles them) and those that several select (two operators would
//! act on them). The API server evaluates the selectors, exactly as for the shards' watches.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::CanaryPromotion;
use crate::metrics::Metrics;

/// Annotation on a shard's Lease: the label selector of its promotions.
pub const SELECTOR_ANNOTATION: &str = "scholarship.dev/shard-selector";
/// A Lease not renewed for this long belongs to a shard that is gone: its selector no longer
/// covers anything.
const STALE: Duration = Duration::from_secs(600);
/// Page size of the metadata lists.
const PAGE: u32 = 500;
/// Promotions named in one log line.
const EXAMPLES: usize = 5;

/// What one survey found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Selectors of the live shards.
    pub selectors: BTreeSet<String>,
    /// `namespace/name` of the promotions no shard selects.
    pub unsharded: Vec<String>,
    /// `namespace/name` of the promotions more than one shard selects.
    pub overlapping: Vec<String>,
}

/// The selectors on the live Leases of `lease_namespace`.
fn live_selectors(leases: &[Lease], now: DateTime<Utc>) -> BTreeSet<String> {
    leases
        .iter()
        .filter(|lease| {
            let renewed = lease.spec.as_ref().and_then(|s| s.renew_time.as_ref());
            renewed.is_some_and(|t| {
                let at = DateTime::<Utc>::from_timestamp_micros(t.0.as_microsecond()).unwrap_or_default();
                now.signed_duration_since(at).to_std().unwrap_or_default() < STALE
            })
        })
        .filter_map(|lease| lease.annotations().get(SELECTOR_ANNOTATION).cloned())
        .collect()
}

/// `namespace/name` of every promotion `selector` selects (all of them for `None`).
async fn names(api: &Api<CanaryPromotion>, selector: Option<&str>) -> Result<Vec<String>, kube::Error> {
    let mut params = ListParams::default().limit(PAGE);
    if let Some(s) = selector {
        params = params.labels(s);
    }
    let mut names = Vec::new();
    loop {
        let page = api.list_metadata(&params).await?;
        names.extend(
            page.items
                .iter()
                .map(|m| format!("{}/{}", m.namespace().unwrap_or_default(), m.name_any())),
        );
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(names),
        }
    }
}

/// Compares the promotions in scope with the selectors of the live shards.
pub async fn survey(
    client: &Client,
    lease_namespace: &str,
    watch_namespace: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Coverage, kube::Error> {
    let leases = Api::<Lease>::namespaced(client.clone(), lease_namespace)
        .list(&ListParams::default())
        .await?;
    let selectors = live_selectors(&leases.items, now);
    let api: Api<CanaryPromotion> = match watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut selected: HashMap<String, u32> = names(&api, None).await?.into_iter().map(|n| (n, 0)).collect();
    for selector in &selectors {
        for name in names(&api, Some(selector)).await? {
            // A promotion created between the lists is left for the next survey.
            if let Some(n) = selected.get_mut(&name) {
                *n += 1;
            }
        }
    }
    let mut unsharded: Vec<String> = selected
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| k.clone())
        .collect();
    let mut overlapping: Vec<String> = selected
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k.clone())
        .collect();
    unsharded.sort_unstable();
    overlapping.sort_unstable();
    Ok(Coverage {
        selectors,
        unsharded,
        overlapping,
    })
}

/// Surveys every `period` while this replica leads, until `stop` turns true, publishing the
/// counts as metrics and naming offenders in a warning.
pub async fn report(
    client: Client,
    lease_namespace: String,
    watch_namespace: Option<String>,
    metrics: Arc<Metrics>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match survey(&client, &lease_namespace, watch_namespace.as_deref(), Utc::now()).await {
            Ok(coverage) => publish(&coverage, &metrics),
            Err(e) => tracing::warn!(error = %e, "shard survey failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = crate::shutdown::stopped(&mut stop) => return,
        }
    }
}

fn publish(c: &Coverage, metrics: &Metrics) {
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    metrics.shards.set(gauge(c.selectors.len()));
    metrics.unsharded.set(gauge(c.unsharded.len()));
    metrics.overlapping.set(gauge(c.overlapping.len()));
    let examples = |v: &[String]| v.iter().take(EXAMPLES).cloned().collect::<Vec<_>>().join(", ");
    let findings = [
        (
            &c.unsharded,
            "outside every shard's selector: no operator reconciles them",
        ),
        (
            &c.overlapping,
            "selected by more than one shard: their operators would act on them in turn",
        ),
    ];
    for (found, what) in findings {
        if !found.is_empty() {
            tracing::warn!(
                count = found.len(),
                examples = %examples(found),
                selectors = ?c.selectors,
                "CanaryPromotions {what}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lease(selector: Option<&str>, renewed: DateTime<Utc>) -> Lease {
        let mut annotations = serde_json::Map::new();
        if let Some(s) = selector {
            annotations.insert(SELECTOR_ANNOTATION.into(), s.into());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "l", "annotations": annotations},
            "spec": {"holderIdentity": "pod", "renewTime": renewed.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)}
        }))
        .unwrap()
    }

    #[test]
    fn only_live_shard_leases_count() {
        let now = Utc::now();
        let leases = [
            lease(Some("shard=a"), now),
            lease(Some("shard=b"), now - chrono::TimeDelta::minutes(11)),
            lease(None, now),
        ];
        assert_eq!(live_selectors(&leases, now), BTreeSet::from(["shard=a".to_owned()]));
    }
}

//! Replica ratio, for clusters without an L7 router: a Service selecting both tracks spreads
//! requests over ready pods, so the canary's share of ready pods approximates its weight.
//!
//! Capacity never drops below the stable's original replica count `N` (recorded on the stable
//! Deployment in [`ORIGINAL_REPLICAS`] the first time, so a restart reads it back): when the
//! canary grows it is scaled up first and stable is scaled down only once the new canary pods
//! are ready; when it shrinks stable is scaled up first. Weight 0 is the exception: a rollback
//! removes the canary at once and scales stable back to `N` in the same breath.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::{RouterError, TrafficRouter};
use crate::ownership::FIELD_MANAGER;

/// On the stable Deployment: its replica count before the canary took a share.
pub const ORIGINAL_REPLICAS: &str = "scholarship.dev/original-replicas";
/// On the canary Deployment: the weight the replica counts were last set for.
pub const APPLIED_WEIGHT: &str = "scholarship.dev/canary-weight";

#[derive(Clone)]
pub struct ReplicaRouter {
    api: Api<Deployment>,
    namespace: String,
    stable: String,
    canary: String,
}

impl std::fmt::Debug for ReplicaRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplicaRouter({}/{}, {})", self.namespace, self.stable, self.canary)
    }
}

/// (stable, canary) replica targets for `weight` with `n` original stable replicas.
pub fn targets(n: i32, weight: u32) -> (i32, i32) {
    let n = n.max(1);
    match weight {
        0 => (n, 0),
        100.. => (0, n),
        w => {
            let canary = ((i64::from(n) * i64::from(w) + 50) / 100).clamp(1, i64::from(n));
            let canary = i32::try_from(canary).unwrap_or(n);
            // Keep at least one stable pod while the canary is below 100 %.
            (n.saturating_sub(canary).max(1), canary)
        }
    }
}

fn spec_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn ready(d: &Deployment) -> i32 {
    d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

fn share(stable_ready: i32, canary_ready: i32) -> u32 {
    let total = i64::from(stable_ready.max(0)) + i64::from(canary_ready.max(0));
    if total == 0 || canary_ready <= 0 {
        return 0;
    }
    u32::try_from((i64::from(canary_ready) * 100 + total / 2) / total).unwrap_or(100)
}

impl ReplicaRouter {
    pub fn new(client: Client, namespace: &str, stable: &str, canary: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            stable: stable.to_owned(),
            canary: canary.to_owned(),
        }
    }

    async fn get(&self, name: &str) -> Result<Deployment, RouterError> {
        self.api.get_opt(name).await?.ok_or_else(|| RouterError::NotFound {
            kind: "Deployment",
            namespace: self.namespace.clone(),
            name: name.to_owned(),
        })
    }

    async fn patch(&self, name: &str, patch: Value) -> Result<Deployment, RouterError> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        Ok(self.api.patch(name, &params, &Patch::Merge(&patch)).await?)
    }

    fn original(stable: &Deployment) -> i32 {
        stable
            .annotations()
            .get(ORIGINAL_REPLICAS)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| spec_replicas(stable))
    }

    /// The applied weight if both Deployments have reached its targets, else the ready share.
    fn effective(stable: &Deployment, canary: &Deployment) -> u32 {
        let n = Self::original(stable);
        let applied: Option<u32> = canary.annotations().get(APPLIED_WEIGHT).and_then(|v| v.parse().ok());
        if let Some(w) = applied {
            let (s, c) = targets(n, w);
            let settled = spec_replicas(stable) == s && spec_replicas(canary) == c;
            if settled && ready(stable) >= s && ready(canary) >= c && (c > 0 || ready(canary) == 0) {
                return w;
            }
        }
        share(ready(stable), ready(canary))
    }
}

impl TrafficRouter for ReplicaRouter {
    async fn weight(&self) -> Result<u32, RouterError> {
        let stable = self.get(&self.stable).await?;
        let canary = self.get(&self.canary).await?;
        Ok(Self::effective(&stable, &canary))
    }

    async fn set_weight(&self, weight: u32) -> Result<u32, RouterError> {
        // Weight 0 from `decide` means rollback or abort: the canary goes at once.
        self.shift(weight, weight == 0).await
    }

    async fn consolidate(&self) -> Result<u32, RouterError> {
        // After promotion stable runs the new image: grow it back before the canary goes.
        let w = self.shift(0, false).await?;
        if w == 0 {
            // Stable is back at its original size: forget the bookkeeping.
            self.patch(
                &self.stable,
                json!({"metadata": {"annotations": {ORIGINAL_REPLICAS: null}}}),
            )
            .await?;
        }
        Ok(w)
    }
}

impl ReplicaRouter {
    /// Moves towards the replica targets of `weight`; `immediate` skips the capacity order.
    async fn shift(&self, weight: u32, immediate: bool) -> Result<u32, RouterError> {
        let mut stable = self.get(&self.stable).await?;
        let mut canary = self.get(&self.canary).await?;
        let n = Self::original(&stable);
        if !stable.annotations().contains_key(ORIGINAL_REPLICAS) {
            stable = self
                .patch(
                    &self.stable,
                    json!({"metadata": {"annotations": {ORIGINAL_REPLICAS: n.to_string()}}}),
                )
                .await?;
        }
        let (s, c) = targets(n, weight);
        // Growing either side is always safe; shrinking one waits until the other is ready
        // at its target. A rollback (weight 0) does not wait: the canary goes at once.
        let (stable_now, canary_now) = (spec_replicas(&stable), spec_replicas(&canary));
        if s > stable_now || (s < stable_now && (immediate || ready(&canary) >= c)) {
            stable = self.patch(&self.stable, json!({"spec": {"replicas": s}})).await?;
        }
        let canary_ok = c > canary_now || (c < canary_now && (immediate || ready(&stable) >= s));
        let applied = canary.annotations().get(APPLIED_WEIGHT) == Some(&weight.to_string());
        if canary_ok || !applied {
            let replicas = if canary_ok { c } else { canary_now };
            let patch = json!({
                "metadata": {"annotations": {APPLIED_WEIGHT: weight.to_string()}},
                "spec": {"replicas": replicas}
            });
            canary = self.patch(&self.canary, patch).await?;
        }
        Ok(Self::effective(&stable, &canary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_capacity() {
        assert_eq!(targets(4, 0), (4, 0));
        assert_eq!(targets(4, 5), (3, 1));
        assert_eq!(targets(4, 50), (2, 2));
        assert_eq!(targets(4, 99), (1, 4));
        assert_eq!(targets(4, 100), (0, 4));
        assert_eq!(targets(0, 50), (1, 1));
        for n in 1..10 {
            for w in 0..=100 {
                let (s, c) = targets(n, w);
                assert!(s + c >= n, "n={n} w={w}");
            }
        }
    }

    #[test]
    fn share_rounds() {
        assert_eq!(share(3, 1), 25);
        assert_eq!(share(0, 0), 0);
        assert_eq!(share(2, 0), 0);
        assert_eq!(share(0, 2), 100);
    }
}

//! ingress-nginx canary Ingress: `nginx.ingress.kubernetes.io/canary: "true"` plus
//! `canary-weight`, scaled by `canary-weight-total` when the user set one.

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{RouterError, TrafficRouter};
use crate::ownership::FIELD_MANAGER;

pub const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
pub const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";
pub const CANARY_WEIGHT_TOTAL: &str = "nginx.ingress.kubernetes.io/canary-weight-total";

#[derive(Clone)]
pub struct NginxRouter {
    api: Api<Ingress>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for NginxRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NginxRouter({}/{})", self.namespace, self.name)
    }
}

/// Canary weight in percent as ingress-nginx computes it from the annotations.
fn percent(ing: &Ingress) -> u32 {
    let a = ing.annotations();
    if a.get(CANARY).map(String::as_str) != Some("true") {
        return 0;
    }
    let total = total(ing);
    let weight: u64 = a.get(CANARY_WEIGHT).and_then(|w| w.trim().parse().ok()).unwrap_or(0);
    let pct = (weight.min(total) * 100 + total / 2) / total;
    u32::try_from(pct).unwrap_or(100)
}

fn total(ing: &Ingress) -> u64 {
    ing.annotations()
        .get(CANARY_WEIGHT_TOTAL)
        .and_then(|t| t.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

impl NginxRouter {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    async fn get(&self) -> Result<Ingress, RouterError> {
        self.api
            .get_opt(&self.name)
            .await?
            .ok_or_else(|| RouterError::NotFound {
                kind: "Ingress",
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            })
    }
}

impl TrafficRouter for NginxRouter {
    async fn weight(&self) -> Result<u32, RouterError> {
        Ok(percent(&self.get().await?))
    }

    async fn set_weight(&self, weight: u32) -> Result<u32, RouterError> {
        let ing = self.get().await?;
        let total = total(&ing);
        let scaled = (u64::from(weight.min(100)) * total + 50) / 100;
        // A merge patch of two annotations: nothing else on the Ingress is touched, so GitOps
        // only needs to ignore these two keys.
        let patch = json!({"metadata": {"annotations": {CANARY: "true", CANARY_WEIGHT: scaled.to_string()}}});
        let applied = self
            .api
            .patch(&self.name, &PatchParams::apply(FIELD_MANAGER), &Patch::Merge(&patch))
            .await?;
        Ok(percent(&applied))
    }

    async fn consolidate(&self) -> Result<u32, RouterError> {
        // The canary Ingress stays a canary (dropping `canary: "true"` would turn it into a
        // second primary for the same host) but carries nothing.
        self.set_weight(0).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ing(annotations: &[(&str, &str)]) -> Ingress {
        let mut i = Ingress::default();
        i.metadata.annotations = Some(annotations.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
        i
    }

    #[test]
    fn reads_weight_with_and_without_total() {
        assert_eq!(percent(&ing(&[(CANARY, "true"), (CANARY_WEIGHT, "25")])), 25);
        assert_eq!(
            percent(&ing(&[
                (CANARY, "true"),
                (CANARY_WEIGHT, "250"),
                (CANARY_WEIGHT_TOTAL, "1000")
            ])),
            25
        );
        assert_eq!(percent(&ing(&[(CANARY_WEIGHT, "25")])), 0, "not a canary ingress");
        assert_eq!(percent(&ing(&[(CANARY, "true")])), 0);
        assert_eq!(percent(&ing(&[(CANARY, "true"), (CANARY_WEIGHT, "junk")])), 0);
    }
}

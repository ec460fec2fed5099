//! Gateway API: the HTTPRoute's stable and canary `backendRefs` weights. The `gateway-api`
//! crate lags kube, so the route is a `DynamicObject` and only the weights are touched.

use canary_core::GatewayApiRouter;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::Value;

use super::{RouterError, TrafficRouter};
use crate::ownership::FIELD_MANAGER;

pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

#[derive(Clone)]
pub struct GatewayRouter {
    api: Api<DynamicObject>,
    namespace: String,
    name: String,
    stable: String,
    canary: String,
}

impl std::fmt::Debug for GatewayRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GatewayRouter({}/{})", self.namespace, self.name)
    }
}

/// (stable, canary) weights of the first rule that references both backends.
fn weights(route: &Value, stable: &str, canary: &str) -> Option<(u64, u64)> {
    let rules = route.pointer("/spec/rules")?.as_array()?;
    rules.iter().find_map(|rule| {
        let refs = rule.get("backendRefs")?.as_array()?;
        // An unset weight means 1 (Gateway API default).
        let weight_of = |name: &str| {
            refs.iter()
                .find(|r| r.get("name").and_then(Value::as_str) == Some(name))
                .map(|r| r.get("weight").and_then(Value::as_u64).unwrap_or(1))
        };
        Some((weight_of(stable)?, weight_of(canary)?))
    })
}

fn percent((stable, canary): (u64, u64)) -> u32 {
    let total = stable + canary;
    if total == 0 {
        return 0;
    }
    u32::try_from((canary * 100 + total / 2) / total).unwrap_or(100)
}

/// Sets the two weights in every rule that references both backends; returns how many rules.
fn set_weights(route: &mut Value, stable: &str, canary: &str, weight: u32) -> usize {
    let mut changed = 0;
    let Some(rules) = route.pointer_mut("/spec/rules").and_then(Value::as_array_mut) else {
        return 0;
    };
    for rule in rules {
        let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else {
            continue;
        };
        let has = |n: &str| refs.iter().any(|r| r.get("name").and_then(Value::as_str) == Some(n));
        if !(has(stable) && has(canary)) {
            continue;
        }
        for r in refs.iter_mut() {
            let w = match r.get("name").and_then(Value::as_str) {
                Some(n) if n == canary => weight,
                Some(n) if n == stable => 100 - weight.min(100),
                _ => continue,
            };
            if let Some(obj) = r.as_object_mut() {
                obj.insert("weight".into(), Value::from(w));
            }
        }
        changed += 1;
    }
    changed
}

impl GatewayRouter {
    pub fn new(client: Client, namespace: &str, spec: &GatewayApiRouter) -> Self {
        Self {
            api: Api::namespaced_with(client, namespace, &http_route_resource()),
            namespace: namespace.to_owned(),
            name: spec.http_route.clone(),
            stable: spec.stable_backend.clone(),
            canary: spec.canary_backend.clone(),
        }
    }

    async fn get(&self) -> Result<DynamicObject, RouterError> {
        self.api
            .get_opt(&self.name)
            .await?
            .ok_or_else(|| RouterError::NotFound {
                kind: "HTTPRoute",
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            })
    }

    fn invalid(&self) -> RouterError {
        RouterError::Invalid {
            kind: "HTTPRoute",
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            reason: format!(
                "no rule has both backendRefs {:?} (stable) and {:?} (canary)",
                self.stable, self.canary
            ),
        }
    }
}

impl TrafficRouter for GatewayRouter {
    async fn weight(&self) -> Result<u32, RouterError> {
        let route = self.get().await?;
        let w = weights(&route.data, &self.stable, &self.canary).ok_or_else(|| self.invalid())?;
        Ok(percent(w))
    }

    async fn set_weight(&self, weight: u32) -> Result<u32, RouterError> {
        let mut route = self.get().await?;
        if set_weights(&mut route.data, &self.stable, &self.canary, weight) == 0 {
            return Err(self.invalid());
        }
        // A replace carrying the resourceVersion we read: a concurrent edit makes it fail with
        // a conflict (retried) instead of being overwritten. Arrays cannot be merge-patched
        // element by element, hence no merge patch here.
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let applied = self.api.replace(&self.name, &params, &route).await?;
        let w = weights(&applied.data, &self.stable, &self.canary).ok_or_else(|| self.invalid())?;
        Ok(percent(w))
    }

    async fn consolidate(&self) -> Result<u32, RouterError> {
        self.set_weight(0).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_and_reads_weights() {
        let mut route = json!({"spec": {"rules": [
            {"backendRefs": [{"name": "api", "port": 80}, {"name": "api-canary", "port": 80, "weight": 0}]},
            {"backendRefs": [{"name": "other", "port": 80}]}
        ]}});
        assert_eq!(weights(&route, "api", "api-canary"), Some((1, 0)));
        assert_eq!(set_weights(&mut route, "api", "api-canary", 25), 1);
        assert_eq!(percent(weights(&route, "api", "api-canary").unwrap()), 25);
        assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["weight"], 75);
        assert_eq!(route["spec"]["rules"][1]["backendRefs"][0].get("weight"), None);
        assert_eq!(weights(&route, "api", "missing"), None);
    }
}

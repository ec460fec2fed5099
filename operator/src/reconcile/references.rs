//! Which CanaryPromotions name a Deployment, Ingress or HTTPRoute, so a change to one of those
//! re-evaluates exactly the promotions that use it. The controller caches only metadata, so
//! the index is filled from each reconcile's own copy of the object.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use canary_core::PromotionSpec;
use kube::runtime::reflector::ObjectRef;

use super::Cached;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Deployment,
    Ingress,
    HttpRoute,
}

/// An object a promotion names, in the promotion's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    kind: Kind,
    namespace: String,
    name: String,
}

/// `(namespace, name)` of a CanaryPromotion.
type Promotion = (String, String);

#[derive(Debug, Default)]
struct Index {
    targets: HashMap<Promotion, Vec<Target>>,
    promotions: HashMap<Target, BTreeSet<Promotion>>,
}

#[derive(Debug, Default)]
pub struct References {
    index: Mutex<Index>,
}

fn targets(namespace: &str, spec: &PromotionSpec) -> Vec<Target> {
    let t = &spec.traffic;
    let named = [
        Some((Kind::Deployment, &spec.stable.deployment)),
        Some((Kind::Deployment, &spec.canary.deployment)),
        t.nginx.as_ref().map(|n| (Kind::Ingress, &n.canary_ingress)),
        t.gateway_api.as_ref().map(|g| (Kind::HttpRoute, &g.http_route)),
    ];
    named
        .into_iter()
        .flatten()
        .map(|(kind, name)| Target {
            kind,
            namespace: namespace.to_owned(),
            name: name.clone(),
        })
        .collect()
}

impl References {
    /// The promotion `namespace/name` now names what `spec` names.
    pub fn record(&self, namespace: &str, name: &str, spec: &PromotionSpec) {
        let promotion = (namespace.to_owned(), name.to_owned());
        let new = targets(namespace, spec);
        let Ok(mut index) = self.index.lock() else { return };
        if index.targets.get(&promotion) == Some(&new) {
            return;
        }
        index.unlink(&promotion);
        for target in &new {
            index
                .promotions
                .entry(target.clone())
                .or_default()
                .insert(promotion.clone());
        }
        index.targets.insert(promotion, new);
    }

    /// The promotion is gone.
    pub fn forget(&self, namespace: &str, name: &str) {
        if let Ok(mut index) = self.index.lock() {
            index.unlink(&(namespace.to_owned(), name.to_owned()));
        }
    }

    /// The promotions naming this object.
    pub fn naming(&self, kind: Kind, namespace: Option<String>, name: String) -> Vec<ObjectRef<Cached>> {
        let target = Target {
            kind,
            namespace: namespace.unwrap_or_default(),
            name,
        };
        let Ok(index) = self.index.lock() else {
            return Vec::new();
        };
        index
            .promotions
            .get(&target)
            .into_iter()
            .flatten()
            .map(|(ns, name)| ObjectRef::new(name).within(ns))
            .collect()
    }
}

impl Index {
    fn unlink(&mut self, promotion: &Promotion) {
        for target in self.targets.remove(promotion).unwrap_or_default() {
            if let Some(set) = self.promotions.get_mut(&target) {
                set.remove(promotion);
                if set.is_empty() {
                    self.promotions.remove(&target);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(stable: &str, ingress: &str) -> PromotionSpec {
        serde_json::from_value(serde_json::json!({
            "stable": {"deployment": stable}, "canary": {"deployment": "api-canary"},
            "traffic": {"nginx": {"canaryIngress": ingress}}, "steps": [{"weight": 100, "bake": "1m"}],
            "metrics": {"prometheus": {"address": "http://p:9090"}}
        }))
        .unwrap()
    }

    fn names(refs: Vec<ObjectRef<Cached>>) -> Vec<String> {
        refs.into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap(), r.name))
            .collect()
    }

    #[test]
    fn a_change_reaches_exactly_the_promotions_naming_the_object() {
        let r = References::default();
        r.record("a", "p1", &spec("api", "ing-1"));
        r.record("a", "p2", &spec("api", "ing-2"));
        r.record("b", "p1", &spec("api", "ing-1"));
        let api = |ns: &str| names(r.naming(Kind::Deployment, Some(ns.into()), "api".into()));
        assert_eq!(api("a"), ["a/p1", "a/p2"]);
        assert_eq!(
            names(r.naming(Kind::Ingress, Some("a".into()), "ing-2".into())),
            ["a/p2"]
        );
        // An edit moves the promotion to the new objects only.
        r.record("a", "p2", &spec("api-v2", "ing-2"));
        assert_eq!(api("a"), ["a/p1"]);
        r.forget("a", "p1");
        assert!(api("a").is_empty());
        assert_eq!(
            names(r.naming(Kind::Deployment, Some("b".into()), "api".into())),
            ["b/p1"]
        );
        assert!(names(r.naming(Kind::HttpRoute, Some("a".into()), "api".into())).is_empty());
    }
}

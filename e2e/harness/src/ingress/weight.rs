//! The canary annotations of ingress-nginx, read the way the controller reads them.

use std::collections::BTreeMap;

pub const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
pub const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";
pub const CANARY_WEIGHT_TOTAL: &str = "nginx.ingress.kubernetes.io/canary-weight-total";

/// ingress-nginx's default for `canary-weight-total`.
pub const DEFAULT_TOTAL: u32 = 100;

/// The share of requests a canary Ingress takes: `weight` out of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryWeight {
    pub weight: u32,
    pub total: u32,
}

impl CanaryWeight {
    /// No canary traffic (no canary Ingress, or one without `canary: "true"`).
    pub const NONE: CanaryWeight = CanaryWeight {
        weight: 0,
        total: DEFAULT_TOTAL,
    };

    /// Reads an Ingress's annotations. As in ingress-nginx, an Ingress is a canary only with
    /// `canary: "true"`; a missing or unparsable weight is 0 and a missing, unparsable or zero
    /// total is 100, and a weight at or above the total sends everything to the canary.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        if annotations.get(CANARY).map(|v| v.trim()) != Some("true") {
            return Self::NONE;
        }
        let parse = |key: &str| annotations.get(key).and_then(|v| v.trim().parse::<u32>().ok());
        let total = parse(CANARY_WEIGHT_TOTAL).filter(|t| *t > 0).unwrap_or(DEFAULT_TOTAL);
        let weight = parse(CANARY_WEIGHT).unwrap_or(0).min(total);
        Self { weight, total }
    }

    /// Weight as a percentage, for display and for comparing with the operator's `status.weight`.
    pub fn percent(&self) -> f64 {
        f64::from(self.weight) * 100.0 / f64::from(self.total)
    }

    /// Whether a request with the uniform draw `roll` in `0..total` goes to the canary.
    pub fn routes_to_canary(&self, roll: u32) -> bool {
        roll < self.weight
    }

    /// Draws the backend for one request.
    pub fn pick(&self) -> Backend {
        if self.weight == 0 {
            return Backend::Stable;
        }
        if self.routes_to_canary(rand::random_range(0..self.total)) {
            Backend::Canary
        } else {
            Backend::Stable
        }
    }
}

/// Which upstream a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Stable,
    Canary,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn not_a_canary_without_the_canary_annotation() {
        let w = CanaryWeight::from_annotations(&annotations(&[(CANARY_WEIGHT, "50")]));
        assert_eq!(w, CanaryWeight::NONE);
        let w = CanaryWeight::from_annotations(&annotations(&[(CANARY, "false"), (CANARY_WEIGHT, "50")]));
        assert_eq!(w, CanaryWeight::NONE);
    }

    #[test]
    fn weight_out_of_the_default_total() {
        let w = CanaryWeight::from_annotations(&annotations(&[(CANARY, "true"), (CANARY_WEIGHT, "25")]));
        assert_eq!(w, CanaryWeight { weight: 25, total: 100 });
        assert!((w.percent() - 25.0).abs() < f64::EPSILON);
    }

    #[test]
    fn weight_out_of_a_custom_total_and_clamped() {
        let a = annotations(&[(CANARY, "true"), (CANARY_WEIGHT, "250"), (CANARY_WEIGHT_TOTAL, "1000")]);
        let w = CanaryWeight::from_annotations(&a);
        assert!((w.percent() - 25.0).abs() < f64::EPSILON);
        let a = annotations(&[(CANARY, "true"), (CANARY_WEIGHT, "500"), (CANARY_WEIGHT_TOTAL, "0")]);
        assert_eq!(
            CanaryWeight::from_annotations(&a),
            CanaryWeight {
                weight: 100,
                total: 100
            }
        );
    }

    #[test]
    fn unparsable_weight_means_no_canary_traffic() {
        let a = annotations(&[(CANARY, "true"), (CANARY_WEIGHT, "lots")]);
        assert_eq!(CanaryWeight::from_annotations(&a).weight, 0);
    }

    #[test]
    fn draws_split_by_weight() {
        let w = CanaryWeight { weight: 30, total: 100 };
        let canary = (0..100).filter(|roll| w.routes_to_canary(*roll)).count();
        assert_eq!(canary, 30);
        assert_eq!(CanaryWeight::NONE.pick(), Backend::Stable);
        assert_eq!(
            CanaryWeight {
                weight: 100,
                total: 100
            }
            .pick(),
            Backend::Canary
        );
    }
}

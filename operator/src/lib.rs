//! The canary-promotion operator: the imperative shell around `canary-core`.
//!
//! For now it holds the `CanaryPromotion` resource definition; the controller
//! (observe → decide → act) comes in a later issue.

pub mod crd;

pub use crd::{CanaryPromotion, CanaryPromotionSpec, crd_yaml};

//! One-off manual actions requested through the `scholarship.dev/action` annotation.
//!
//! An annotation rather than a spec field: GitOps owns `.spec`, and a one-off command
//! written there would either be reverted by the next sync or stay behind as drift. The
//! operator acknowledges an action by recording the annotation value in
//! `status.lastAppliedAction` and never edits the object, so the same value is never
//! applied twice; a suffix `@<id>` makes a repeated request distinct.

pub const ANNOTATION: &str = "scholarship.dev/action";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Roll back now: weight 0, phase RolledBack.
    Abort,
    /// Skip the remaining steps and gates and promote.
    PromoteFull,
    /// Start a Failed promotion again from step 1.
    Retry,
    /// Approve a step that has `requireApproval`.
    Resume,
}

impl Action {
    /// Parses "abort", "promote-full", "retry", "resume", optionally followed by "@<id>".
    pub fn parse(value: &str) -> Option<Action> {
        let name = value.split_once('@').map_or(value, |(name, _id)| name);
        match name.trim() {
            "abort" => Some(Action::Abort),
            "promote-full" => Some(Action::PromoteFull),
            "retry" => Some(Action::Retry),
            "resume" => Some(Action::Resume),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_id() {
        assert_eq!(Action::parse("abort"), Some(Action::Abort));
        assert_eq!(
            Action::parse("promote-full@2025-01-01T10:00"),
            Some(Action::PromoteFull)
        );
        assert_eq!(Action::parse("retry@7"), Some(Action::Retry));
        assert_eq!(Action::parse("resume"), Some(Action::Resume));
        assert_eq!(Action::parse("pause"), None);
        assert_eq!(Action::parse(""), None);
    }
}

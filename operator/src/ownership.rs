//! How the operator appears in what it writes.

/// The one field manager for everything the operator writes (status via server-side apply,
/// router annotations and weights, the stable image), so `managedFields` shows what is ours.
pub const FIELD_MANAGER: &str = "canary-operator";

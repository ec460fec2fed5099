//! `crds/canarypromotion.yaml` is generated; this fails when it no longer matches the types.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn committed_crd_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/canarypromotion.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = canary_operator::crd_yaml().unwrap();
    assert!(
        committed == generated,
        "{} is out of date with the Rust types; regenerate it with\n\n    cargo run -p canary-operator -- crd > crds/canarypromotion.yaml\n",
        path.display()
    );
}

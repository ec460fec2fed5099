#!/usr/bin/env bash
# Every check CI runs: formatting, lints, the release builds the images ship, and all tests
# (which start their own PostgreSQL, Redis, Prometheus, etcd and kube-apiserver on loopback
# ports and stop them when done, and check the Helm charts with helm, kubernetes-validate,
# promtool and Lua).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-kube-apiserver.sh
scripts/fetch-tools.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The images' build stages (api-service/Dockerfile, operator/Dockerfile) run these same lines.
cargo build --release --locked -p scholarship-api --bin scholarship-api
cargo build --release --locked -p canary-operator --bin canary-operator
# The two-shard test runs the shipped (release) binaries, at 1,000 promotions per shard; the
# replay-probe test runs the API's.
CANARY_OPERATOR_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/canary-operator" \
SCHOLARSHIP_API_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/scholarship-api" \
  cargo test --workspace --locked

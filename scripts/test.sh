#!/usr/bin/env bash
# Every check CI runs: formatting, lints, and all tests (which start their own PostgreSQL,
# Redis, Prometheus, etcd and kube-apiserver on loopback ports and stop them when done).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-kube-apiserver.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

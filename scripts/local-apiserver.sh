#!/usr/bin/env bash
# A real kube-apiserver (RBAC enforced) and etcd on loopback, with generated certificates.
#   scripts/local-apiserver.sh DIR      # prints DIR/kubeconfig once ready; Ctrl-C stops both
#   KUBECONFIG=DIR/kubeconfig kubectl get --raw /version
# Builds kube-apiserver and etcd from the Kubernetes Go modules on first use (needs Go).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
scripts/build-kube-apiserver.sh >&2
cargo build --release --quiet -p canary-e2e --bin local-apiserver
exec target/release/local-apiserver "$dir"

#!/usr/bin/env bash
# One-command local canary demo: the real canary-operator promotes scholarship-api
# v1.4.0 -> v1.5.0 through 10/30/60/100 % on a real kube-apiserver and etcd (built from the
# Kubernetes Go modules on first use), with real PostgreSQL, Redis and Prometheus, two real API
# processes, an ingress-nginx stand-in and load; the API's and the operator's objects are the
# Helm charts rendered with helm template. The API processes serve at pod addresses in a
# network namespace (root; --without-probes: loopback only) with JWT auth on, so the
# operator's replay and rate-limit probes judge them; everything else runs on loopback, and all
# of it is stopped on exit (Ctrl-C included). See docs/demo.md.
#   CANARY_DEMO_RATE=40 CANARY_DEMO_TIMEOUT_SECONDS=300 CANARY_DEMO_KEEP_LOGS=true scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-kube-apiserver.sh
scripts/fetch-tools.sh
command -v kubectl >/dev/null 2>&1 || [ -n "${KUBECTL:-}" ] || {
  echo "demo: kubectl is needed to show the CanaryPromotion (set KUBECTL=/path/to/kubectl)" >&2
  exit 1
}
cargo build --release -p scholarship-api -p canary-operator -p canary-e2e
# canary-demo finds scholarship-api and canary-operator next to itself (target/release).
exec target/release/canary-demo "$@"

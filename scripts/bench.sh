#!/usr/bin/env bash
# The API against the usual Python stack, side by side in one run (bench/side-by-side.sh):
# builds the release binary, then prints both services' req/s and latency and the ratio.
#   scripts/bench.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p scholarship-api --bin scholarship-api
echo "$(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
exec bench/side-by-side.sh "${CARGO_TARGET_DIR:-target}/release" "${1:-10}"

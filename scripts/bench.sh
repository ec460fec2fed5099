#!/usr/bin/env bash
# The API against the usual Python stack, side by side in one run (bench/side-by-side.sh):
# builds the release binary, then prints both services' req/s and latency and the ratio.
#   scripts/bench.sh [seconds per run, default 10]
# The authenticated run spends one single-use token per request from a pool of 250,000: at
# ~20,000 req/s longer runs end on 401 token_replayed (counted as non-2xx in the output).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p scholarship-api --bin scholarship-api
echo "$(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
exec bench/side-by-side.sh "${CARGO_TARGET_DIR:-target}/release" "${1:-10}"

#!/usr/bin/env bash
# Runs the scholarship API locally against a PostgreSQL and a Redis that this script starts on
# loopback ports, in a scratch directory removed on exit (Ctrl-C stops everything).
# There is no identity provider here, so authentication is off (--insecure-no-auth).
#   API_PORT=8080 PG_PORT=55432 REDIS_PORT=56379 scripts/run-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."

API_PORT=${API_PORT:-8080}
PG_PORT=${PG_PORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}

scripts/setup.sh
cargo build --release -p scholarship-api

scratch=$(mktemp -d /tmp/scholarship-local-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT INT TERM

# PostgreSQL refuses to run as root: use the postgres account then.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$scratch"
  as_pg=(runuser -u postgres --)
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
"${as_pg[@]}" "$pg_bin/initdb" -D "$scratch/pg" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
"${as_pg[@]}" "$pg_bin/postgres" -D "$scratch/pg" -h 127.0.0.1 -p "$PG_PORT" -k "$scratch" \
  -c fsync=off >"$scratch/postgres.log" 2>&1 &
pids+=($!)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$scratch" \
  >"$scratch/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atc 'select 1' >/dev/null 2>&1 && break
  sleep 0.1
done
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc 'CREATE DATABASE scholarships' >/dev/null

echo "PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"
echo "API on http://127.0.0.1:$API_PORT  (try: curl -s http://127.0.0.1:$API_PORT/api/v1/scholarships?page_size=2)"
DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/scholarships" \
REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  target/release/scholarship-api --listen "127.0.0.1:$API_PORT" --shutdown-drain-ms 0 --insecure-no-auth &
pids+=($!)
wait "${pids[-1]}"

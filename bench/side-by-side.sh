#!/usr/bin/env bash
# scholarship-api against the peer a team would otherwise write (FastAPI + uvicorn 2 workers + uvloop/httptools,
# redis-py + hiredis, asyncpg, PyJWT; bench/peer-fastapi), in ONE run on this machine, with the same PostgreSQL,
# Redis, wrk settings and token pool. Per request: public read = limiter + one scholarship; authenticated read =
# RS256 verify + limiter + jti SET NX in one Redis round trip + one record. The project answers the row from its
# in-memory catalogue / application cache (kept fresh by PostgreSQL notifications), the peer reads PostgreSQL each
# time. Absolute figures move from run to run and machine to machine; the ratio measured in one run is the result.
#
#   scripts/bench.sh [seconds]                        (builds the release binary, then runs this)
#   bench/side-by-side.sh target/release [seconds]    (from the project root, after a release build)
#
# Installs what it needs when missing: Debian postgresql redis-server wrk; a Python venv (fastapi uvicorn uvloop
# httptools redis[hiredis] asyncpg pyjwt cryptography) under $BENCH_DIR (default /tmp/side-by-side). Needs root
# (PostgreSQL runs as the postgres user).
set -euo pipefail
BIN=$(cd "${1:-target/release}" && pwd); T=${2:-10}; here=$(cd "$(dirname "$0")" && pwd)
D=${BENCH_DIR:-/tmp/side-by-side}; mkdir -p $D; chmod 777 $D
PGPORT=${PGPORT:-45432}; RPORT=${RPORT:-46379}; JPORT=${JPORT:-48090}; APORT=${APORT:-48081}; PPORT=${PPORT:-48070}
command -v wrk >/dev/null && command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk redis-server postgresql >/dev/null; }
PY=$D/venv/bin/python
[ -x $PY ] || { python3 -m venv $D/venv && $D/venv/bin/pip install -q fastapi uvicorn uvloop httptools "redis[hiredis]" asyncpg pyjwt cryptography; }
PG=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); pids=()
cleanup() { set +e; for p in "${pids[@]}"; do kill $p 2>/dev/null; done; for p in "${pids[@]}"; do wait $p 2>/dev/null; done; runuser -u postgres -- $PG/pg_ctl -D $D/pg -m fast stop >/dev/null 2>&1; }
trap cleanup EXIT
# --- PostgreSQL, Redis, a JWKS endpoint for one RSA key (kid k1)
[ -d $D/pg ] || { mkdir -p $D/pg; chown postgres $D/pg; runuser -u postgres -- $PG/initdb -D $D/pg -A trust -U postgres >/dev/null; }
runuser -u postgres -- $PG/pg_ctl -D $D/pg -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" -l $D/pg.log start >/dev/null
until psql -h 127.0.0.1 -p $PGPORT -U postgres -Atc 'select 1' >/dev/null 2>&1; do sleep 0.2; done
psql -h 127.0.0.1 -p $PGPORT -U postgres -q -c 'drop database if exists bench' -c 'create database bench' 2>/dev/null
redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no >$D/redis.log 2>&1 & pids+=($!)
[ -f $D/k1.pem ] || { openssl genrsa -out $D/k1.pem 2048 2>/dev/null; }
openssl rsa -in $D/k1.pem -pubout -out $D/k1.pub 2>/dev/null
mkdir -p $D/jwks; $PY - $D/k1.pem > $D/jwks/jwks.json <<'PYEOF'
import base64, json, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
n = load_pem_private_key(open(sys.argv[1], "rb").read(), None).public_key().public_numbers()
b = lambda i: base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": b(n.n), "e": b(n.e)}]}))
PYEOF
(cd $D/jwks && exec $PY -m http.server $JPORT --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
if [ ! -s $D/tokens.txt ] || [ $(( $(date +%s) - $(stat -c %Y $D/tokens.txt) )) -gt 2400 ]; then
  echo "minting 250,000 single-use tokens (once per 40 min)..."; $PY $here/mktokens.py $D/k1.pem 250000 $D/tokens.txt; fi
WRK="wrk -t2 -c50 -d${T}s --latency"
fresh() { redis-cli -p $RPORT flushall >/dev/null; }
report() { # label wrk-output
  local out=$2 rps p50 p99 bad total
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}'); p50=$(echo "$out" | awk '$1=="50%" {print $2}'); p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  bad=$(echo "$out" | awk '/Non-2xx/ {print $5}'); total=$(echo "$out" | awk '/requests in/ {print $1}')
  printf '%-16s %9s req/s  p50 %-8s p99 %-8s non-2xx %s of %s\n' "$1" "$rps" "$p50" "$p99" "${bad:-0}" "$total"
  echo "$rps" > $D/last.rps
}
# --- the project
start_api() {
  $BIN/scholarship-api --listen 127.0.0.1:$APORT --database-url postgres://postgres@127.0.0.1:$PGPORT/bench \
    --redis-url redis://127.0.0.1:$RPORT --jwks-url http://127.0.0.1:$JPORT/jwks.json --jwt-issuer peer-idp --jwt-audience scholarship-api \
    --rate-limits catalogue=1000000000/1m,applications=1000000000/1m,default=1000000000/1m --preauth-limit 1000000000/1s \
    --shutdown-drain-ms 0 --log-filter warn >>$D/api.log 2>&1 & API=$!; pids+=($API)
  until curl -fs 127.0.0.1:$APORT/readyz >/dev/null 2>&1; do sleep 0.2; done
}
start_api
$PY $here/prepare.py http://127.0.0.1:$APORT $D/k1.pem $D/ids.txt $D/apps.txt
fresh; report "project public" "$(PUBLIC=1 IDS=$D/ids.txt $WRK -s $here/project.lua http://127.0.0.1:$APORT)"; pp=$(cat $D/last.rps)
fresh; report "project authed" "$(IDS=$D/ids.txt TOKENS=$D/tokens.txt APPS=$D/apps.txt WRK_THREADS=2 $WRK -s $here/project.lua http://127.0.0.1:$APORT)"; pa=$(cat $D/last.rps)
# --- the same at about half of each maximum: every one of the 50 connections pauses between
# requests (wrk's delay()), so the latency is measured below saturation.
pause() { python3 -c "print(max(0, int(50 * 1000 / ($1 / 2)) - 1))"; }
# A fresh process: the tokens are used again, and its own jti cache must not remember them.
kill $API; wait $API 2>/dev/null || true; start_api
fresh; report "project public ½" "$(DELAY_MS=$(pause $pp) PUBLIC=1 IDS=$D/ids.txt $WRK -s $here/project.lua http://127.0.0.1:$APORT)"
fresh; report "project authed ½" "$(DELAY_MS=$(pause $pa) IDS=$D/ids.txt TOKENS=$D/tokens.txt APPS=$D/apps.txt WRK_THREADS=2 $WRK -s $here/project.lua http://127.0.0.1:$APORT)"
kill $API; wait $API 2>/dev/null || true
# --- the peer (the cores are free again)
psql -q -h 127.0.0.1 -p $PGPORT -U postgres -d bench <<'SQL'
create table peer_scholarships(id int primary key, name text, country text, level text, field text, amount int, deadline date);
insert into peer_scholarships select g, 'Scholarship '||g, (array['US','DE','IN','BR','KE'])[1+g%5], (array['bachelor','master','phd'])[1+g%3],
  (array['cs','math','bio','art'])[1+g%4], 1000+g*10, date '2027-01-01' + g from generate_series(1,200) g;
SQL
(cd $here/peer-fastapi && PEER_DB=postgresql://postgres@127.0.0.1:$PGPORT/bench PEER_REDIS=redis://127.0.0.1:$RPORT PEER_PUBKEY=$D/k1.pub \
  exec $D/venv/bin/uvicorn app:app --host 127.0.0.1 --port $PPORT --workers 2 --loop uvloop --http httptools --log-level warning) & pids+=($!)
until curl -fs 127.0.0.1:$PPORT/api/v1/scholarships/1 >/dev/null 2>&1; do sleep 0.2; done
fresh; report "peer public" "$($WRK -s $here/peer-fastapi/ids.lua http://127.0.0.1:$PPORT)"; qp=$(cat $D/last.rps)
fresh; report "peer authed" "$(TOKENS=$D/tokens.txt WRK_THREADS=2 $WRK -s $here/peer-fastapi/tokens.lua http://127.0.0.1:$PPORT)"; qa=$(cat $D/last.rps)
python3 -c "print(f'ratio public {$pp/$qp:.2f}x  authed {$pa/$qa:.2f}x')"

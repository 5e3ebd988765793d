#!/usr/bin/env bash
# How many callbacks/s one PostgreSQL core takes in this design: the release receiver on
# PostgreSQL under wrk (as scripts/bench-ingest.sh, dispatcher running), then until everything
# acknowledged was delivered; the CPU time every PostgreSQL server process spent meanwhile
# (from /proc), divided by the callbacks stored. For docs/SCALING.md.
#
#   OKRA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test scripts/bench-pg-per-core.sh
#
# Knobs: DURATION=10 CONNECTIONS=64 RECORDS=500. PostgreSQL must run on this machine (its
# processes are read from /proc) and nothing else should use it meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_BASE=${OKRA_BENCH_DATABASE_URL:?set OKRA_BENCH_DATABASE_URL to a PostgreSQL on this machine}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
RECORDS=${RECORDS:-500}
PORT=18082
cargo build --release --quiet --bin okra-callbacks
db="okra_percore_$$"
psql "$PG_BASE" -qc "CREATE DATABASE $db" >/dev/null
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# CPU seconds (user + system) of every postgres process, and of the receiver.
ticks() { awk '{ s += $14 + $15 } END { print s + 0 }' $(for p in "$@"; do echo "/proc/$p/stat"; done) 2>/dev/null; }
pg_ticks() { ticks $(pgrep -x postgres || pgrep -f 'postgres:|bin/postgres'); }
hz=$(getconf CLK_TCK)

target/release/okra-callbacks serve --listen "127.0.0.1:$PORT" --database-url "${PG_BASE%/*}/$db" 2>/dev/null &
pid=$!
for _ in $(seq 1 200); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz" && break; sleep 0.05; done
sleep 1
pg0=$(pg_ticks); rx0=$(ticks "$pid"); t0=$(date +%s.%N)
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s scripts/wrk-callbacks.lua \
  "http://127.0.0.1:$PORT/v1/callback" -- "percore-$$" "$RECORDS" | grep '^RESULT'
metric() {
  curl -fs "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$0 ~ "^" m { s += $NF } END { printf "%d", s }'
}
stored=$(metric 'okra_callbacks_received_total\{.*outcome="stored"')
for _ in $(seq 1 1200); do
  (( $(metric 'okra_delivery_outcomes_total\{.*outcome="delivered"') >= stored )) && break
  sleep 0.1
done
pg1=$(pg_ticks); rx1=$(ticks "$pid"); t1=$(date +%s.%N)
pg_cpu=$(echo "($pg1 - $pg0) / $hz" | bc -l)
rx_cpu=$(echo "($rx1 - $rx0) / $hz" | bc -l)
printf 'stored=%d wall_s=%.1f postgres_cpu_s=%.2f receiver_cpu_s=%.2f\n' "$stored" "$(echo "$t1 - $t0" | bc -l)" "$pg_cpu" "$rx_cpu"
printf 'postgres: %.0f us of CPU per callback (stored and delivered) = %.0f callbacks/s per PostgreSQL core\n' \
  "$(echo "$pg_cpu * 1000000 / $stored" | bc -l)" "$(echo "$stored / $pg_cpu" | bc -l)"
printf 'receiver: %.0f us of CPU per callback = %.0f callbacks/s per receiver core\n' \
  "$(echo "$rx_cpu * 1000000 / $stored" | bc -l)" "$(echo "$stored / $rx_cpu" | bc -l)"

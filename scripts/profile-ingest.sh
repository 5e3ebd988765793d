#!/usr/bin/env bash
# Where the CPU time per callback goes: the release receiver under wrk (as
# scripts/bench-ingest.sh: distinct callbacks over 500 records, dispatcher running), then until
# everything acknowledged was delivered; CPU time per thread group of the receiver (from
# /proc/PID/task) and, on PostgreSQL, of every postgres server process, each divided by the
# callbacks stored. Threads: tokio-rt-worker (HTTP, dispatcher, handlers, PostgreSQL client),
# okra-inbox (the log writer), okra-sqlite (the database thread).
#
#   scripts/profile-ingest.sh                         # SQLite
#   OKRA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test scripts/profile-ingest.sh
#   BIN=path/to/another/okra-callbacks scripts/profile-ingest.sh   # e.g. a build of an earlier commit
#
# Knobs: DURATION=8 CONNECTIONS=64 RECORDS=500.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-64}
RECORDS=${RECORDS:-500}
PG_BASE=${OKRA_BENCH_DATABASE_URL:-}
PORT=18083
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet --bin okra-callbacks
  BIN=target/release/okra-callbacks
fi
work=$(mktemp -d)
pid=
db=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  [[ -n $db ]] && psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [[ -n $PG_BASE ]]; then
  db="okra_profile_$$"
  psql "$PG_BASE" -qc "CREATE DATABASE $db" >/dev/null
  url="${PG_BASE%/*}/$db"
else
  url="sqlite://$work/profile.db"
fi
"$BIN" serve --listen "127.0.0.1:$PORT" --database-url "$url" 2>"$work/log" &
pid=$!
wait_http "http://127.0.0.1:$PORT/readyz"
sleep 1

# "name ticks" per thread of the receiver, and one "postgres ticks" line for the server.
snapshot() {
  for t in /proc/"$pid"/task/*; do
    printf '%s %s\n' "$(cat "$t/comm")" "$(awk '{ print $14 + $15 }' "$t/stat")"
  done 2>/dev/null
  if [[ -n $PG_BASE ]]; then
    local p total=0
    for p in $(pgrep -x postgres || true); do
      total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "postgres $total"
  fi
}
snapshot >"$work/before"
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s scripts/wrk-callbacks.lua \
  "http://127.0.0.1:$PORT/v1/callback" -- "profile-$$" "$RECORDS" | grep '^RESULT'
metric() {
  curl -fs "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$0 ~ "^" m { s += $NF } END { printf "%d", s }'
}
stored=$(metric 'okra_callbacks_received_total[{].*outcome="stored"')
for _ in $(seq 1 1200); do
  (( $(metric 'okra_delivery_outcomes_total[{].*outcome="delivered"') >= stored )) && break
  sleep 0.1
done
snapshot >"$work/after"
hz=$(getconf CLK_TCK)
echo "stored=$stored (all delivered); CPU per callback, load and drain together:"
awk -v hz="$hz" -v n="$stored" '
  FNR == NR { before[$1] += $2; next }
  { after[$1] += $2 }
  END {
    for (k in after) {
      us = (after[k] - before[k]) / hz * 1e6 / n
      total += (k == "postgres") ? 0 : us
      printf "  %-16s %6.1f us\n", k, us
    }
    printf "  %-16s %6.1f us\n", "receiver total", total
  }' "$work/before" "$work/after" | sort

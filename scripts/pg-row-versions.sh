#!/usr/bin/env bash
# Row versions per callback on PostgreSQL: the release receiver under wrk (as
# scripts/bench-ingest.sh: distinct callbacks over 500 records, dispatcher running), then until
# everything acknowledged was delivered; then, divided by the callbacks stored, the transactions
# (pg_stat_database) and each table's inserted, updated, HOT-updated and deleted rows
# (pg_stat_user_tables). A HOT update writes no index entry; any other update writes one in
# every index of its table.
#
#   OKRA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test scripts/pg-row-versions.sh
#   BIN=path/to/another/okra-callbacks ...   # e.g. a build of an earlier commit
#
# Knobs: DURATION=8 CONNECTIONS=64 RECORDS=500. Needs wrk, curl and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-64}
RECORDS=${RECORDS:-500}
PG_BASE=${OKRA_BENCH_DATABASE_URL:?set OKRA_BENCH_DATABASE_URL to a PostgreSQL database url}
PORT=18084
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet --bin okra-callbacks
  BIN=target/release/okra-callbacks
fi
db="okra_versions_$$"
url="${PG_BASE%/*}/$db"
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql "$PG_BASE" -qc "CREATE DATABASE $db" >/dev/null
"$BIN" serve --listen "127.0.0.1:$PORT" --database-url "$url" 2>/dev/null &
pid=$!
wait_http "http://127.0.0.1:$PORT/readyz"
sleep 1
xacts() { psql "$url" -Atc "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$db'"; }
metric() {
  curl -fs "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$0 ~ "^" m { s += $NF } END { printf "%d", s }'
}
x0=$(xacts)
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s scripts/wrk-callbacks.lua \
  "http://127.0.0.1:$PORT/v1/callback" -- "versions-$$" "$RECORDS" | grep '^RESULT'
for _ in $(seq 1 600); do
  stored=$(metric 'okra_callbacks_received_total\\{.*outcome="stored"')
  delivered=$(metric 'okra_delivery_outcomes_total\\{.*outcome="delivered"')
  (( delivered >= stored )) && break
  sleep 0.1
done
# Let the backends flush their statistics (at most once a second each, when idle).
sleep 2
echo "stored=$stored transactions_per_callback=$(echo "($(xacts) - $x0) / $stored" | bc -l | cut -c1-5)"
psql "$url" -c "SELECT relname AS table,
    round(n_tup_ins::numeric / $stored, 2) AS inserted,
    round(n_tup_upd::numeric / $stored, 2) AS updated,
    round(n_tup_hot_upd::numeric / $stored, 2) AS hot,
    round(n_tup_del::numeric / $stored, 2) AS deleted
  FROM pg_stat_user_tables WHERE relname LIKE 'okra\\_%' AND relname <> 'okra_schema_migrations'
  ORDER BY relname"

#!/usr/bin/env bash
# Row versions per callback on PostgreSQL: the release receiver under wrk (as
# scripts/bench-ingest.sh: distinct callbacks over 500 records, dispatcher running), then until
# everything acknowledged was delivered; then, divided by the callbacks stored, the transactions
# (pg_stat_database) and each table's inserted, updated, HOT-updated and deleted rows
# (pg_stat_user_tables). A HOT update writes no index entry; any other update writes one in
# every index of its table. Where the server loads pg_stat_statements
# (shared_preload_libraries = 'pg_stat_statements', then a restart), also each statement's
# calls, rows per call, execution time and WAL bytes per callback stored: which write the
# database's time goes to. (Execution time is wall time inside the server: it includes waits
# for another transaction's row locks, not the commit.)
#
#   OKRA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test scripts/pg-row-versions.sh
#   BIN=path/to/another/okra-callbacks ...   # e.g. a build of an earlier commit
#
# Knobs: DURATION=8 CONNECTIONS=64 RECORDS=500; RECEIVER_ARGS="--workers 1" passes flags to
# `serve` (that one leaves the database to the acknowledging path, nearly). Needs wrk, curl and psql.
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
# shellcheck disable=SC2086 # RECEIVER_ARGS is a list of flags
"$BIN" serve --listen "127.0.0.1:$PORT" --database-url "$url" ${RECEIVER_ARGS:-} 2>/dev/null &
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
if psql "$url" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null 2>&1 &&
  psql "$url" -qAtc "SELECT 1 FROM pg_stat_statements LIMIT 1" >/dev/null 2>&1; then
  psql "$url" -c "SELECT CASE
        WHEN query LIKE '%INSERT INTO okra_dedup%' THEN 'store callbacks'
        WHEN query LIKE '%UPDATE okra_callbacks c SET status%' THEN 'record outcomes'
        WHEN query LIKE '%FOR UPDATE SKIP LOCKED%' THEN 'claim records'
        WHEN query LIKE '%CROSS JOIN LATERAL%' THEN 'read claimed callbacks'
        WHEN query LIKE '%SET lease_until =%' THEN 'renew leases'
        WHEN query LIKE '%SET lease_owner = NULL%' THEN 'release leases'
        WHEN query LIKE 'VACUUM%' THEN 'vacuum hot tables'
        ELSE left(regexp_replace(query, '\s+', ' ', 'g'), 40) END AS statement,
      calls, round(rows::numeric / greatest(calls, 1), 1) AS rows_per_call,
      round(total_exec_time::numeric) AS ms,
      round((total_exec_time * 1000 / $stored)::numeric, 1) AS us_per_callback,
      round((wal_bytes / $stored)::numeric) AS wal_bytes_per_callback
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$db')
    ORDER BY total_exec_time DESC LIMIT 8"
else
  echo "(per statement: not shown — the server does not load pg_stat_statements)"
fi

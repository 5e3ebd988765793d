#!/usr/bin/env bash
# Upper bound of "delivery state out of every index" on PostgreSQL (docs/SCALING.md, item 1):
# the release receiver on a fresh database as migrated ("base"), alternated with the same
# receiver on a database whose okra_callbacks has no index over a column an outcome changes
# ("hot": the (record, status, seq) index becomes (record, seq), the unfinished partial index
# is dropped, fillfactor 50), so every outcome UPDATE can be HOT. The "hot" schema is for
# measuring only: its claims scan a record's delivered callbacks and the operator's pending and
# dead pages lose their index. Prints per run: requests/s, p99, and the table's updates / HOT
# updates.
#
#   OKRA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test scripts/experiments/pg-hot-outcomes.sh
#
# Knobs: ROUNDS=3 DURATION=10 CONNECTIONS=64 RECORDS=500. Needs wrk, curl, psql.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
PG_BASE=${OKRA_BENCH_DATABASE_URL:?set OKRA_BENCH_DATABASE_URL to a PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/test}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
RECORDS=${RECORDS:-500}
PORT=18097
cargo build --release --quiet --bin okra-callbacks
BIN=target/release/okra-callbacks
pid=
db=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  [[ -n $db ]] && psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

serve() {
  "$BIN" serve --listen "127.0.0.1:$PORT" --database-url "${PG_BASE%/*}/$db" 2>/dev/null &
  pid=$!
  wait_http "http://127.0.0.1:$PORT/readyz"
}

stop() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}

run_one() {
  local mode=$1 round=$2
  db="okra_hot_${mode}_${round}_$$"
  psql "$PG_BASE" -qc "CREATE DATABASE $db" >/dev/null
  serve && stop # migrates
  if [[ $mode == hot ]]; then
    psql "${PG_BASE%/*}/$db" -qc "DROP INDEX okra_callbacks_unfinished;
      DROP INDEX okra_callbacks_by_record;
      CREATE INDEX okra_callbacks_by_record ON okra_callbacks (record, seq);
      ALTER TABLE okra_callbacks SET (fillfactor = 50);" >/dev/null
  fi
  serve
  sleep 1
  local out updates
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
    -s scripts/wrk-callbacks.lua "http://127.0.0.1:$PORT/v1/callback" -- "$mode-$round-$$" "$RECORDS" | grep '^RESULT')
  updates=$(psql "${PG_BASE%/*}/$db" -Atc \
    "SELECT n_tup_upd || ' updates, ' || n_tup_hot_upd || ' HOT' FROM pg_stat_user_tables WHERE relname = 'okra_callbacks'")
  stop
  psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  db=
  echo "$mode round=$round ${out#RESULT } ($updates)"
}

for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="base hot"; else order="hot base"; fi
  for mode in $order; do run_one "$mode" "$round"; done
done

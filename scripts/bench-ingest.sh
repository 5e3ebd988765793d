#!/usr/bin/env bash
# Ingest benchmark: the release binary on its default embedded store (or PostgreSQL, when
# OKRA_BENCH_DATABASE_URL is set) under wrk over loopback, alternated in the same run with the
# bare axum baseline (examples/bare_axum.rs). Distinct callbacks over 500 records.
#
#   scripts/bench-ingest.sh                       # SQLite (default store), 3 rounds x 10 s
#   OKRA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test scripts/bench-ingest.sh
#
# Knobs (environment): ROUNDS=3 DURATION=10 CONNECTIONS=64 THREADS=2 RECORDS=500.
# COMPARE_BIN=path/to/another/okra-callbacks adds that binary (say, a build of an earlier
# commit) as a third contender, alternated with the other two: "compare" in the output.
# BIN=path/to/okra-callbacks with BIN_PREBUILT=1 measures that binary as "receiver" instead of
# building this checkout (as scripts/bench-memory.sh), e.g. to bisect between two builds; the
# bare axum baseline is then target/release/examples/bare_axum as built before.
# RECEIVER_ARGS="--workers 1" passes extra flags to the receivers' `serve` (e.g. to see the
# acknowledging path with the dispatcher nearly idle).
# Needs wrk (Debian: apt-get install -y wrk) and curl; psql for the PostgreSQL mode.
# Prints one line per run, then medians: requests/s, p50/p99 latency, idle and peak RSS, and for
# the receivers how long after the load everything was delivered (drain_s), the sustained
# rate (stored / (DURATION + drain_s)), and the receiver's own p99 (server_p99_le_ms: the upper
# bound of the bucket of its acknowledgement histogram that holds the 99th percentile; time
# outside the handler — sockets, waiting for a worker — is in wrk's p99 only).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
RECORDS=${RECORDS:-500}
PG_BASE=${OKRA_BENCH_DATABASE_URL:-}
RECV_PORT=18080
BARE_PORT=18081

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing: apt-get install -y curl" >&2; exit 1; }
[[ -n ${BIN_PREBUILT:-} ]] || cargo build --release --quiet --bin okra-callbacks --example bare_axum
BIN=${BIN:-target/release/okra-callbacks}
BARE=target/release/examples/bare_axum
COMPARE_BIN=${COMPARE_BIN:-}

work=$(mktemp -d)
pid=
pg_dbs=()
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  for db in "${pg_dbs[@]}"; do
    psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# run_one NAME ROUND: starts the target, measures idle RSS, loads it, measures peak RSS, stops it.
run_one() {
  local name=$1 round=$2 port url
  case $name in
    bare)
      port=$BARE_PORT
      "$BARE" "127.0.0.1:$port" 2>"$work/bare.log" &
      pid=$!
      wait_port "$port"
      ;;
    receiver | compare)
      port=$RECV_PORT
      local bin=$BIN
      [[ $name == compare ]] && bin=$COMPARE_BIN
      local db_url
      if [[ -n $PG_BASE ]]; then
        local db="okra_bench_${name}_${round}_$$"
        psql "$PG_BASE" -qc "CREATE DATABASE $db" >/dev/null
        pg_dbs+=("$db")
        db_url="${PG_BASE%/*}/$db"
      else
        db_url="sqlite://$work/$name-round$round.db"
      fi
      # shellcheck disable=SC2086 # RECEIVER_ARGS is a list of flags
      "$bin" serve --listen "127.0.0.1:$port" --database-url "$db_url" ${RECEIVER_ARGS:-} 2>"$work/$name.log" &
      pid=$!
      wait_http "http://127.0.0.1:$port/readyz"
      ;;
  esac
  url="http://127.0.0.1:$port/v1/callback"
  sleep 1
  local idle
  idle=$(status_kb "$pid" VmRSS)
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
    -s scripts/wrk-callbacks.lua "$url" -- "$name-$round-$$" "$RECORDS" | grep '^RESULT')
  local peak stored=""
  peak=$(status_kb "$pid" VmHWM)
  if [[ $name != bare ]]; then
    # What the receiver says it stored must match what wrk saw acknowledged.
    local metrics
    metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
    stored=$(echo "$metrics" |
      awk '/^okra_callbacks_received_total\{.*outcome="stored"/ { s += $NF } END { printf "%d", s }')
    # The receiver's own p99, from its acknowledgement histogram (as the bucket's upper bound):
    # from reading the body to the answer. wrk's p99 adds what the request spent outside that
    # (the sockets, hyper, waiting for a worker), where the stalls of a shared machine show.
    local server_p99
    server_p99=$(echo "$metrics" | awk '
      /^okra_ack_duration_seconds_count/ { total = $NF }
      /^okra_ack_duration_seconds_bucket/ { match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); n[++k] = $NF; b[k] = le }
      END { for (i = 1; i <= k; i++) if (n[i] >= 0.99 * total) { printf "%s", (b[i] == "+Inf" ? "inf" : b[i] * 1000); exit } }')
    # How long after the load everything acknowledged was delivered (applied, claimed, handed
    # to the log handler, outcome recorded): the acknowledging path defers that work, so the
    # sustained rate is what was acknowledged over the load and the drain together.
    local t0 delivered drain
    t0=$(date +%s.%N)
    for _ in $(seq 1 1200); do
      delivered=$(curl -fs "http://127.0.0.1:$port/metrics" |
        awk '/^okra_delivery_outcomes_total\{.*outcome="delivered"/ { s += $NF } END { printf "%d", s }')
      (( delivered >= stored )) && break
      sleep 0.1
    done
    drain=$(echo "$(date +%s.%N) - $t0" | bc -l)
    peak=$(status_kb "$pid" VmHWM)
    stored=" server_p99_le_ms=$server_p99 stored=$stored delivered=$delivered drain_s=$(printf %.1f "$drain") sustained_rps=$(printf %.0f "$(echo "$stored / ($DURATION + $drain)" | bc -l)")"
  fi
  if [[ $name == bare ]]; then kill -INT "$pid"; else kill -TERM "$pid"; fi
  wait "$pid" || { echo "$name exited with $? on SIGTERM" >&2; tail -5 "$work/$name.log" >&2; }
  pid=
  # run_one runs in a pipeline's subshell, so `cleanup` never sees its databases: drop this
  # run's here (cleanup still drops any left by an interrupted run it knows of).
  if [[ $name != bare && -n $PG_BASE ]]; then
    psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS okra_bench_${name}_${round}_$$ WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  echo "$name round=$round ${out#RESULT } idle_rss_kb=$idle peak_rss_kb=$peak$stored"
}

echo "# ingest: $(nproc) cores, $(uname -sr), wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $RECORDS records, store=$([[ -n $PG_BASE ]] && echo postgres || echo sqlite)"
results="$work/results"
for round in $(seq 1 "$ROUNDS"); do
  # ABBA order, so drift in the machine's load does not favour one side.
  contenders="bare receiver${COMPARE_BIN:+ compare}"
  if (( round % 2 )); then order=$contenders; else order=$(echo "$contenders" | tr ' ' '\n' | tac | tr '\n' ' '); fi
  for name in $order; do
    run_one "$name" "$round" | tee -a "$results"
  done
done


echo "# medians over $ROUNDS rounds"
for name in bare receiver${COMPARE_BIN:+ compare}; do
  printf '%-8s rps=%s p50_ms=%s p99_ms=%s idle_rss_mb=%.1f peak_rss_mb=%.1f\n' "$name" \
    "$(field "$name" rps)" "$(field "$name" p50_ms)" "$(field "$name" p99_ms)" \
    "$(echo "$(field "$name" idle_rss_kb) / 1024" | bc -l)" \
    "$(echo "$(field "$name" peak_rss_kb) / 1024" | bc -l)"
done
for name in receiver${COMPARE_BIN:+ compare}; do
  printf '%-8s drain_s=%s sustained_rps=%s server_p99_le_ms=%s\n' "$name" "$(field "$name" drain_s)" \
    "$(field "$name" sustained_rps)" "$(field "$name" server_p99_le_ms)"
done
printf 'ratio receiver/bare rps = %.3f\n' "$(echo "$(field receiver rps) / $(field bare rps)" | bc -l)"
if [[ -n $COMPARE_BIN ]]; then
  printf 'ratio compare/bare rps = %.3f\n' "$(echo "$(field compare rps) / $(field bare rps)" | bc -l)"
  printf 'ratio receiver/compare rps = %.3f\n' "$(echo "$(field receiver rps) / $(field compare rps)" | bc -l)"
fi

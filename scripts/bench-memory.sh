#!/usr/bin/env bash
# Memory benchmark of the embedded store: the receiver's resident set (RSS) under a burst of
# distinct callbacks and its drain, after the drain, and idle after a restart on a store of each
# size in SIZES, with the time from start to /readyz answering 200.
#
#   scripts/bench-memory.sh                                 # this build only
#   COMPARE_BIN=/tmp/mem-before/target/release/okra-callbacks scripts/bench-memory.sh
#
# Knobs (environment): BURST=20 (seconds of wrk), CONNECTIONS=64, THREADS=2, RECORDS=500,
# SIZES="1400000 10000000" (callbacks stored before a restart; empty to skip), ROUNDS=1 (bursts
# per build, alternated), IDLE_AFTER=30 (seconds after ready when idle RSS is read),
# RECEIVER_ARGS (extra `serve` flags). The stores of SIZES are filled by scripts/load-store.py
# (straight into the tables, at nice 19), then each build restarts on its own copy twice — the
# first start migrates and settles, the second is measured.
# Needs wrk (apt-get install -y wrk), curl, python3. Stores go to $WORK (default a temporary
# directory under /tmp; the 10 M store takes ~5 GB, twice with COMPARE_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."

BURST=${BURST:-20}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
RECORDS=${RECORDS:-500}
SIZES=${SIZES-1400000 10000000}
ROUNDS=${ROUNDS:-1}
IDLE_AFTER=${IDLE_AFTER:-30}
PORT=18082
BIN=${BIN:-target/release/okra-callbacks}
COMPARE_BIN=${COMPARE_BIN:-}

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[[ -n ${BIN_PREBUILT:-} ]] || cargo build --release --quiet --bin okra-callbacks

work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  [[ -z ${WORK:-} ]] && rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mb() { echo "scale=1; $1 / 1024" | bc; }
metric() {
  curl -fs "http://127.0.0.1:$PORT/metrics" |
    awk -v m="$1" -v o="$2" 'index($0, m "{") == 1 && index($0, "outcome=\"" o "\"") { s += $NF } END { printf "%d", s }'
}

# start BIN DB LOG: starts the receiver, waits for /readyz; sets ready_s to the seconds from
# exec to ready.
ready_s=
start() {
  local t0
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086 # RECEIVER_ARGS is a list of flags
  "$1" serve --listen "127.0.0.1:$PORT" --database-url "sqlite://$2" ${RECEIVER_ARGS:-} >>"$3" 2>&1 &
  pid=$!
  for _ in $(seq 1 6000); do
    curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz" && break
    sleep 0.01
  done
  ready_s=$(printf '%.2f' "$(echo "$(date +%s.%N) - $t0" | bc -l)")
}

stop() {
  kill -TERM "$pid"
  wait "$pid" || echo "the receiver exited with $? on SIGTERM" >&2
  pid=
}

# burst NAME BIN ROUND: a fresh store, wrk for BURST s, then the drain.
burst() {
  local name=$1 bin=$2 round=$3 db="$work/burst-$1-$3.db" log="$work/$1.log"
  rm -rf "$db" "$db"-*
  start "$bin" "$db" "$log"
  sleep 1
  local idle out end stored delivered t0 drain after
  idle=$(kb "$pid" VmRSS)
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${BURST}s" --timeout 10s \
    -s scripts/wrk-callbacks.lua "http://127.0.0.1:$PORT/v1/callback" -- "$name-$round-$$" "$RECORDS" | grep '^RESULT')
  end=$(kb "$pid" VmRSS)
  stored=$(metric okra_callbacks_received_total stored)
  t0=$(date +%s.%N)
  for _ in $(seq 1 3000); do
    delivered=$(metric okra_delivery_outcomes_total delivered)
    (( delivered >= stored )) && break
    sleep 0.1
  done
  drain=$(echo "$(date +%s.%N) - $t0" | bc -l)
  after=$(kb "$pid" VmRSS)
  sleep 10
  local after10
  after10=$(kb "$pid" VmRSS)
  sleep 20
  echo "$name burst round=$round ${out#RESULT } stored=$stored drain_s=$(printf %.1f "$drain")" \
    "sustained_rps=$(printf %.0f "$(echo "$stored / ($BURST + $drain)" | bc -l)")" \
    "idle_mb=$(mb "$idle") burst_end_mb=$(mb "$end") peak_mb=$(mb "$(kb "$pid" VmHWM)")" \
    "drained_mb=$(mb "$after") drained_10s_mb=$(mb "$after10") drained_30s_mb=$(mb "$(kb "$pid" VmRSS)")"
  stop
}

# restart NAME BIN SIZE: this build's copy of the store of SIZE callbacks, started once to
# migrate and settle, then restarted and measured.
restart() {
  local name=$1 bin=$2 size=$3 base="$work/base-$3.db" db="$work/restart-$1-$3.db" log="$work/$1-restart.log"
  rm -rf "$db" "$db"-*
  cp "$base" "$db"
  start "$bin" "$db" "$log"
  sleep 2
  stop
  local at5
  start "$bin" "$db" "$log"
  sleep 5
  at5=$(kb "$pid" VmRSS)
  sleep $((IDLE_AFTER - 5))
  echo "$name restart stored=$size ready_s=$ready_s rss_5s_mb=$(mb "$at5")" \
    "idle_${IDLE_AFTER}s_mb=$(mb "$(kb "$pid" VmRSS)") peak_mb=$(mb "$(kb "$pid" VmHWM)")" \
    "file_mb=$(($(stat -c %s "$db") >> 20))"
  stop
  rm -rf "$db" "$db"-*
}

echo "# memory: $(nproc) cores, $(uname -sr), wrk -t$THREADS -c$CONNECTIONS -d${BURST}s, $RECORDS records, sizes: ${SIZES:-none}"
contenders="after${COMPARE_BIN:+ before}"
bin_of() { if [[ $1 == before ]]; then echo "$COMPARE_BIN"; else echo "$BIN"; fi; }
for round in $(seq 1 "$ROUNDS"); do
  # ABBA order, so drift in the machine's load does not favour one side.
  order=$contenders
  (( round % 2 )) || order=$(echo "$contenders" | tr ' ' '\n' | tac | tr '\n' ' ')
  for name in $order; do burst "$name" "$(bin_of "$name")" "$round"; done
done
for size in $SIZES; do
  base="$work/base-$size.db"
  if [[ ! -f $base ]]; then
    # The schema as the oldest build writes it (each build migrates its own copy forward).
    oldest=$(bin_of "${contenders##* }")
    start "$oldest" "$base" "$work/load.log"
    stop
    nice -n 19 python3 scripts/load-store.py "$base" "$size" 2>>"$work/load.log"
  fi
  for name in $contenders; do restart "$name" "$(bin_of "$name")" "$size"; done
done

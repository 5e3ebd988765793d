#!/usr/bin/env bash
# Ingest per source: the release binary on SQLite under wrk over loopback, one contender a run,
# alternated round-robin in the same run: okra (POST /v1/callback with --hmac-secret:
# HMAC-SHA256), mono (a header secret), paystack (HMAC-SHA512), standard-webhooks (HMAC-SHA256
# of id.timestamp.body) and plaid (an ES256 JWT verified per request; its key from a local
# stand-in of Plaid's key service, asked once and cached). Every request is distinct and signed
# beforehand by scripts/bench-sources.py (Python `cryptography`), just before its run, as
# Standard Webhooks' timestamp and Plaid's `iat` must be within 5 minutes.
#
#   scripts/bench-sources.sh                      # 3 rounds x 10 s
#   ROUNDS=3 DURATION=5 scripts/bench-sources.sh
#
# Knobs (environment): ROUNDS=3 DURATION=10 CONNECTIONS=64 THREADS=2 RECORDS=500
# BIN=path/to/okra-callbacks (else the release build), REQUESTS=60000 (signed requests made per run: a run that sends more starts them again, and
# those answer `duplicate`, shown as wrapped=). CONTENDERS="okra mono paystack standard-webhooks
# plaid", okra first: the ratios are to it). Needs wrk, curl and python3 with `cryptography` (pip install cryptography).
# Prints one line a run, then the medians of each contender and their ratios to okra's.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
RECORDS=${RECORDS:-500}
REQUESTS=${REQUESTS:-60000}
CONTENDERS=${CONTENDERS:-okra mono paystack standard-webhooks plaid}
RECV_PORT=18090
KEYS_PORT=18091

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing: apt-get install -y curl" >&2; exit 1; }
python3 -c 'import cryptography' 2>/dev/null ||
  { echo "python3's cryptography is missing: pip install cryptography" >&2; exit 1; }
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet --bin okra-callbacks
  BIN=target/release/okra-callbacks
fi

work=$(mktemp -d)
pid=
keys_pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  [[ -n $keys_pid ]] && kill "$keys_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# The stand-in of Plaid's key service, with a key made for this run.
python3 scripts/bench-sources.py key "$work"
python3 scripts/bench-sources.py keyserver "$work" "$KEYS_PORT" &
keys_pid=$!
wait_port "$KEYS_PORT"

# The secrets are bench-sources.py's.
cat >"$work/sources.toml" <<EOF
[sources.mono]
preset = "mono"
secret = "bench-mono-secret"

[sources.paystack]
preset = "paystack"
secret = "sk_test_bench"

[sources.stitch]
preset = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
record = "/data/id"

[sources.plaid]
preset = "plaid"
client_id = "bench-client"
secret = "bench-plaid-secret"
api_url = "http://127.0.0.1:$KEYS_PORT"
EOF

# count NAME [PATTERN...]: the sum of the series of NAME whose line holds every PATTERN, in the
# metrics on stdin.
count() {
  local name=$1 lines
  shift
  lines=$(grep "^$name{" || true)
  for pattern in "$@"; do lines=$(echo "$lines" | grep -F "$pattern" || true); done
  echo "$lines" | awk 'NF { s += $NF } END { printf "%d", s }'
}

# run_one NAME ROUND: signs NAME's requests, starts a receiver on a new database, loads it.
run_one() {
  local name=$1 round=$2
  python3 scripts/bench-sources.py requests "$name" "$work" "$REQUESTS" "$name-$round-$$" \
    "$RECORDS" "$work/requests"
  "$BIN" serve --listen "127.0.0.1:$RECV_PORT" --database-url "sqlite://$work/$name-$round.db" \
    --sources "$work/sources.toml" --hmac-secret bench-okra-hmac 2>"$work/receiver.log" &
  pid=$!
  wait_http "http://127.0.0.1:$RECV_PORT/readyz"
  sleep 1
  local out metrics
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
    -s scripts/wrk-sources.lua "http://127.0.0.1:$RECV_PORT" -- "$work/requests" "$THREADS" |
    grep '^RESULT')
  metrics=$(curl -fs "http://127.0.0.1:$RECV_PORT/metrics")
  local source=$name
  [[ $name == standard-webhooks ]] && source=stitch
  # What the receiver counted: stored (new), and refused (there should be none).
  local stored rejected
  stored=$(echo "$metrics" | count okra_callbacks_received_total "source=\"$source\"" 'outcome="stored"')
  rejected=$(echo "$metrics" | count okra_callbacks_rejected_total)
  kill -TERM "$pid"
  wait "$pid" || { echo "$name exited with $? on SIGTERM" >&2; tail -5 "$work/receiver.log" >&2; }
  pid=
  rm -rf "$work/$name-$round.db"*
  echo "$name round=$round ${out#RESULT } stored=$stored rejected=$rejected"
}

echo "# sources ingest: $(nproc) cores, $(uname -sr), wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $RECORDS records, store=sqlite, $(date -u '+%Y-%m-%d %H:%M UTC')"
results="$work/results"
for round in $(seq 1 "$ROUNDS"); do
  # Round-robin, starting one further each round, so drift in the machine's load is shared.
  read -ra names <<<"$CONTENDERS"
  n=${#names[@]}
  for i in $(seq 0 $((n - 1))); do
    run_one "${names[$(((i + round - 1) % n))]}" "$round" | tee -a "$results"
  done
done


echo "# medians over $ROUNDS rounds; ratios to okra's medians"
printf '| %-17s | %8s | %7s | %7s | %9s | %9s |\n' source "req/s" p50_ms p99_ms "rps/okra" "p50/okra"
printf '|%s|%s:|%s:|%s:|%s:|%s:|\n' "-------------------" "---------" "--------" "--------" "----------" "----------"
okra_rps=$(field okra rps)
okra_p50=$(field okra p50_ms)
for name in $CONTENDERS; do
  printf '| %-17s | %8s | %7s | %7s | %9.3f | %9.2f |\n' "$name" "$(field "$name" rps)" \
    "$(field "$name" p50_ms)" "$(field "$name" p99_ms)" \
    "$(echo "$(field "$name" rps) / $okra_rps" | bc -l)" \
    "$(echo "$(field "$name" p50_ms) / $okra_p50" | bc -l)"
done

#!/usr/bin/env bash
# A property-based run against the served OpenAPI document: schemathesis, every check, every
# phase, bounded, against a receiver on 127.0.0.1 (embedded SQLite store in a temporary
# directory; no admin token, so the admin routes answer this loopback client).
#
#   scripts/schemathesis.sh                       # builds the debug binary
#   BIN=target/release/okra-callbacks scripts/schemathesis.sh
#
# Knobs: MAX_EXAMPLES=50 SEED=1 PORT=18090 ST=st (a schemathesis 4 `st`; `pip install schemathesis`).
# The settings schemathesis needs beyond the document are in scripts/schemathesis.toml (read it
# for why); exits non-zero when schemathesis reports a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
MAX_EXAMPLES=${MAX_EXAMPLES:-50}
SEED=${SEED:-1}
PORT=${PORT:-18090}
ST=${ST:-st}
if [[ -z ${BIN:-} ]]; then
  cargo build --quiet --bin okra-callbacks
  BIN=target/debug/okra-callbacks
fi
work=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
printf '[sources.demo]\npreset = "generic"\ntype = "/type"\nrecord = "/record"\n[sources.demo.verify]\nscheme = "none"\n' \
  >"$work/sources.toml"
DATABASE_URL="sqlite://$work/callbacks.db" OKRA_LISTEN="127.0.0.1:$PORT" RUST_LOG=error \
  OKRA_SOURCES="$work/sources.toml" "$BIN" >"$work/receiver.log" 2>&1 &
pid=$!
wait_http "http://127.0.0.1:$PORT/readyz"
set -x
"$ST" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
  --checks all --phases examples,coverage,fuzzing,stateful \
  --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 1 --no-color

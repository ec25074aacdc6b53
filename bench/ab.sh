#!/usr/bin/env bash
# What one switch costs: the same server twice, side by side, with flag sets A and B, under
# the same load, A B A B; the table gives B/A per scenario. bench/limits.sh and
# bench/metrics.sh name the switch and its two settings. With A_BIN and B_BIN, what a change
# costs: two builds (say, before and after it) with the same flags.
#
#   AB_NAME=limits A_FLAGS="..." B_FLAGS="..." bench/ab.sh
#   AB_NAME=actors A_NAME=before B_NAME=after A_BIN=/tmp/before B_BIN=target/release/authledger bench/ab.sh
#
# Env: AB_NAME (the results' name), A_NAME/B_NAME (off/on), A_FLAGS/B_FLAGS (serve flags),
# REPEATS=5 DURATION=10 WARMUP=2 CONNECTIONS=32 PORT=18281 (and the next one)
# Results: bench/.work/results/<AB_NAME>-<time>.{raw,txt}. Loopback only, bounded in time.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
WORK="$BENCH/.work"
REPEATS="${REPEATS:-5}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-18281}"
SECRET="bench-secret-0123456789abcdef-0123456"
AB_NAME="${AB_NAME:?name the switch: AB_NAME=...}"
A_NAME="${A_NAME:-off}"
B_NAME="${B_NAME:-on}"
read -r -a A_ARGS <<< "${A_FLAGS:-}"
read -r -a B_ARGS <<< "${B_FLAGS:-}"
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
say() { printf '== %s\n' "$*" >&2; }

command -v wrk >/dev/null || bench_die "wrk is missing (apt-get install wrk, or run bench/compare.sh once)"
if [ -z "${A_BIN:-}" ] || [ -z "${B_BIN:-}" ]; then
  say "building authledger (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin authledger)
fi
A_AL="${A_BIN:-$ROOT/target/release/authledger}"
B_AL="${B_BIN:-$ROOT/target/release/authledger}"

mkdir -p "$WORK/results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="$WORK/results/$AB_NAME-$STAMP.raw"
TABLE="$WORK/results/$AB_NAME-$STAMP.txt"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK/ab-a" "$WORK/ab-b"
}
trap cleanup EXIT

start() { # NAME BINARY PORT FLAGS...
  local dir="$WORK/ab-$1" AL="$2" port="$3"
  shift 3
  rm -rf "$dir"
  "$AL" init --data-dir "$dir" > /dev/null
  "$AL" client create --data-dir "$dir" --id bench --name bench --secret "$SECRET" \
    --scope read --token-format opaque --can-introspect > /dev/null
  RUST_LOG=warn "$AL" serve --bind "127.0.0.1:$port" --data-dir "$dir" "$@" > "$dir.log" 2>&1 &
  PIDS+=("$!")
  wait_for "http://127.0.0.1:$port/readyz" "$!" "$dir.log"
}
start a "$A_AL" "$PORT" "${A_ARGS[@]}"
start b "$B_AL" $((PORT + 1)) "${B_ARGS[@]}"

one() { # NAME PORT SCENARIO SECONDS
  local base="http://127.0.0.1:$2" tok
  case "$3" in
    cc_opaque)
      env SCENARIO=cc_opaque SCOPE=read CLIENT_ID=bench CLIENT_SECRET="$SECRET" TOKEN_URL_PATH=/token \
        wrk -t1 -c"$CONNECTIONS" -d"$4s" --timeout 5s -s "$BENCH/load/token.lua" "$base" ;;
    introspect_opaque)
      tok="$(curl -sS -u "bench:$SECRET" -d 'grant_type=client_credentials&scope=read' "$base/token" \
        | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
      env SCENARIO=introspect_opaque CLIENT_ID=bench CLIENT_SECRET="$SECRET" TOKEN="$tok" \
        INTROSPECT_URL_PATH=/introspect \
        wrk -t1 -c"$CONNECTIONS" -d"$4s" --timeout 5s -s "$BENCH/load/introspect.lua" "$base" ;;
  esac | grep '^scenario=' | sed "s/^/setting=$1 /"
}

machine > "$RAW"
for scenario in cc_opaque introspect_opaque; do
  for name in "$A_NAME" "$B_NAME"; do
    port="$PORT"; [ "$name" = "$B_NAME" ] && port=$((PORT + 1))
    one "$name" "$port" "$scenario" "$WARMUP" > /dev/null
  done
  for _ in $(seq "$REPEATS"); do
    for name in "$A_NAME" "$B_NAME"; do
      port="$PORT"; [ "$name" = "$B_NAME" ] && port=$((PORT + 1))
      say "$scenario, $AB_NAME $name"
      one "$name" "$port" "$scenario" "$DURATION" | tee -a "$RAW" >&2
    done
  done
done

{
  head -n 1 "$RAW"
  echo "# wrk 1 thread, $CONNECTIONS connections, $DURATION s runs, medians of $REPEATS, A B A B"
  printf '%-18s %12s %12s %8s %10s\n' scenario "$A_NAME rps" "$B_NAME rps" "$B_NAME/$A_NAME" "errors"
  for scenario in cc_opaque introspect_opaque; do
    med() { grep "setting=$1 scenario=$scenario " "$RAW" | sed -n 's/.* rps=\([0-9.]*\).*/\1/p' \
      | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
    errs="$(grep "scenario=$scenario " "$RAW" | sed -n 's/.* errors=\([0-9]*\).*/\1/p' | paste -sd+ | bc)"
    off="$(med "$A_NAME")" on="$(med "$B_NAME")"
    printf '%-18s %12s %12s %8s %10s\n' "$scenario" "$off" "$on" \
      "$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a / b }')" "$errs"
  done
} | tee "$TABLE"

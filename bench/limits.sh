#!/usr/bin/env bash
# What a rate limiter that is on but never reached costs: the same server twice, limits off
# (`--rate-limit-* 0`, how every other benchmark runs) and limits on with allowances no load
# here reaches (1e9 per second per client), side by side, A B A B.
#
#   bench/limits.sh                          cc_opaque and introspect_opaque, medians of 5 x 10 s
#   REPEATS=3 DURATION=5 bench/limits.sh
#
# Env: REPEATS=5 DURATION=10 WARMUP=2 CONNECTIONS=32 PORT=18281 (and the next one)
# Results: bench/.work/results/limits-<time>.{raw,txt}. Loopback only, bounded in time.
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
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
say() { printf '== %s\n' "$*" >&2; }

command -v wrk >/dev/null || bench_die "wrk is missing (apt-get install wrk, or run bench/compare.sh once)"
say "building authledger (release)"
(cd "$ROOT" && cargo build --release --quiet --bin authledger)
AL="$ROOT/target/release/authledger"

mkdir -p "$WORK/results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="$WORK/results/limits-$STAMP.raw"
TABLE="$WORK/results/limits-$STAMP.txt"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK/limits-off" "$WORK/limits-on"
}
trap cleanup EXIT

start() { # NAME PORT FLAGS...
  local dir="$WORK/limits-$1" port="$2"
  shift 2
  rm -rf "$dir"
  "$AL" init --data-dir "$dir" > /dev/null
  "$AL" client create --data-dir "$dir" --id bench --name bench --secret "$SECRET" \
    --scope read --token-format opaque --can-introspect > /dev/null
  RUST_LOG=warn "$AL" serve --bind "127.0.0.1:$port" --data-dir "$dir" "$@" > "$dir.log" 2>&1 &
  PIDS+=("$!")
  wait_for "http://127.0.0.1:$port/healthz" "$!" "$dir.log"
}
start off "$PORT" --rate-limit-token 0 --rate-limit-introspect 0 --rate-limit-pages 0
start on $((PORT + 1)) --rate-limit-token 1000000000 --rate-limit-introspect 1000000000 \
  --rate-limit-pages 1000000000

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
  esac | grep '^scenario=' | sed "s/^/limits=$1 /"
}

machine > "$RAW"
for scenario in cc_opaque introspect_opaque; do
  for name in off on; do
    port="$PORT"; [ "$name" = on ] && port=$((PORT + 1))
    one "$name" "$port" "$scenario" "$WARMUP" > /dev/null
  done
  for _ in $(seq "$REPEATS"); do
    for name in off on; do
      port="$PORT"; [ "$name" = on ] && port=$((PORT + 1))
      say "$scenario, limits $name"
      one "$name" "$port" "$scenario" "$DURATION" | tee -a "$RAW" >&2
    done
  done
done

{
  head -n 1 "$RAW"
  echo "# wrk 1 thread, $CONNECTIONS connections, $DURATION s runs, medians of $REPEATS, A B A B"
  printf '%-18s %12s %12s %8s %10s\n' scenario "off rps" "on rps" "on/off" "errors"
  for scenario in cc_opaque introspect_opaque; do
    med() { grep "limits=$1 scenario=$scenario " "$RAW" | sed -n 's/.* rps=\([0-9.]*\).*/\1/p' \
      | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
    errs="$(grep "scenario=$scenario " "$RAW" | sed -n 's/.* errors=\([0-9]*\).*/\1/p' | paste -sd+ | bc)"
    off="$(med off)" on="$(med on)"
    printf '%-18s %12s %12s %8s %10s\n' "$scenario" "$off" "$on" \
      "$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a / b }')" "$errs"
  done
} | tee "$TABLE"

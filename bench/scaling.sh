#!/usr/bin/env bash
# Does the cost of a request grow with what the server holds?
#  1. client_credentials tokens per second with 1, 1,000 and 100,000 registered clients:
#     all requests as one client, and the requests spread over every client in turn (each a
#     client actor of its own, started on first use);
#  2. introspection of random live tokens with about 10,000 and about 10,000,000 live tokens
#     in the index.
# Logs come from bench/generate_log.rs (a client's secret is its id); wrk with 1 thread and 32
# connections, DURATION s after a 3 s warm-up, loopback only.
#
#   bench/scaling.sh
#   BIG_EVENTS=1000000 bench/scaling.sh       a smaller "large" index
#   BIG_DIR=/path/to/generated bench/scaling.sh   reuse a generated, replayed directory
#                                              (BIG_EVENTS must then be its event count)
# Env: CLIENT_COUNTS="1 1000 100000" SMALL_EVENTS=13500 BIG_EVENTS=12500000 DURATION=10
#      PORT=18381 KEEP=1
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
WORK="$BENCH/.work"
CLIENT_COUNTS="${CLIENT_COUNTS:-1 1000 100000}"
SMALL_EVENTS="${SMALL_EVENTS:-13500}"
BIG_EVENTS="${BIG_EVENTS:-12500000}"
DURATION="${DURATION:-10}"
PORT="${PORT:-18381}"
BASE="http://127.0.0.1:$PORT"
AL="$ROOT/target/release/authledger"
EX="$ROOT/target/release/examples"
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
command -v wrk >/dev/null || { echo "scaling.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }

echo "== building (release)" >&2
(cd "$ROOT" && cargo build --release --quiet --bin authledger --example generate_log)
mkdir -p "$WORK/results"
OUT="$WORK/results/scaling-$(date -u +%Y%m%dT%H%M%SZ).txt"
PID=""
trap '[ -z "$PID" ] || { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }' EXIT

serve() { # DIR
  RUST_LOG=warn,authledger::app=info "$AL" serve --data-dir "$1" --bind "127.0.0.1:$PORT" $NO_LIMITS \
    --verify-on-start since-last > "$1/serve.log" 2>&1 &
  PID=$!
  wait_for "$BASE/healthz" "$PID" "$1/serve.log" 3600
  # A start walks the whole chain in the background (12 s of both cores at 10M events):
  # measure after it, not beside it.
  local deadline=$(( $(date +%s) + 600 ))
  until grep -q "background walk" "$1/serve.log"; do
    [ "$(date +%s)" -lt "$deadline" ] || bench_die "the background walk did not end within 600 s"
    sleep 0.2
  done
}

stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

load() { # SCRIPT SECONDS VAR=value ...: prints "rps p99_ms errors"
  local script="$1" secs="$2"
  shift 2
  env SCENARIO=scaling TOKEN_URL_PATH=/token INTROSPECT_URL_PATH=/introspect SCOPE=read "$@" \
    wrk -t1 -c32 -d"${secs}s" --timeout 5s -s "$BENCH/load/$script" "$BASE" \
    | sed -n 's/.* rps=\([^ ]*\) .* p99_ms=\([^ ]*\) errors=\([^ ]*\) .*/\1 \2 \3/p'
}

{
  echo "# $(machine); ${DURATION} s runs"
  echo "| registered clients | tokens/s, one client | p99 ms | tokens/s, every client in turn | p99 ms | errors | server RSS MB |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
} | tee "$OUT"
for n in $CLIENT_COUNTS; do
  dir="$WORK/clients-$n"
  echo "== $n clients" >&2
  generated "$dir" "$n" "$n"
  serve "$dir"
  load token.lua 3 CLIENT_ID=bench-0 CLIENT_SECRET=bench-0 > /dev/null
  read -r one one_p99 one_err < <(load token.lua "$DURATION" CLIENT_ID=bench-0 CLIENT_SECRET=bench-0)
  # As the one-client run is measured warm, so is this one: after a pass over every client
  # (each actor started once), at about 15,000 requests/s.
  load token.lua $(( n / 15000 + 3 )) CLIENT_SPREAD="$n" > /dev/null
  read -r all all_p99 all_err < <(load token.lua "$DURATION" CLIENT_SPREAD="$n")
  rss="$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status")"
  stop
  printf '| %s | %.0f | %s | %.0f | %s | %s | %s |\n' "$n" "$one" "$one_p99" "$all" "$all_p99" \
    "$((one_err + all_err))" "$rss" | tee -a "$OUT"
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
done

{
  echo
  echo "| live tokens (about) | events in the log | introspections/s, random tokens | p99 ms | errors | server RSS MB |"
  echo "|---:|---:|---:|---:|---:|---:|"
} | tee -a "$OUT"
for events in "$SMALL_EVENTS" "$BIG_EVENTS"; do
  dir="$WORK/tokens-$events"
  if [ "$events" = "$BIG_EVENTS" ] && [ -n "${BIG_DIR:-}" ]; then
    dir="$BIG_DIR"
  else
    echo "== a log of $events events" >&2
    generated "$dir" "$events" 1000
    "$AL" replay --data-dir "$dir" --format json > /dev/null
  fi
  serve "$dir"
  load introspect_many.lua 3 TOKENS=$((events - 1000)) CLIENTS=1000 > /dev/null
  read -r rps p99 errors < <(load introspect_many.lua "$DURATION" TOKENS=$((events - 1000)) CLIENTS=1000)
  rss="$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status")"
  stop
  printf '| %s | %s | %.0f | %s | %s | %s |\n' "$(( (events - 1000) * 8 / 10 ))" "$events" "$rps" "$p99" \
    "$errors" "$rss" | tee -a "$OUT"
  [ -n "${KEEP:-}" ] || [ "$dir" = "${BIG_DIR:-}" ] || rm -rf "$dir"
done
echo "results: $OUT" >&2

#!/usr/bin/env bash
# The replay benchmark: for each size, write a log (1000 clients: registrations, then 90%
# opaque tokens and 10% revocations, appended 500 at a time per client) into a fresh data
# directory, rebuild every projection from it with `authledger replay`, and report events
# per second and peak memory; then time server starts on it (the whole chain walked, and
# `--verify-on-start since-last`) and one client actor's start on a client holding a million
# events.
#
#   bench/replay.sh                         SIZES="1000000 10000000"
#   SIZES=100000 bench/replay.sh            a quick look
#
# Env: SIZES CLIENTS=1000 ACTOR_EVENTS=1000000 PORT=18281 KEEP=1 (keep the logs in
# bench/.work; a 10,000,000-event directory takes about 5 GB and 3 minutes to write).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/bench/.work"
SIZES="${SIZES:-1000000 10000000}"
CLIENTS="${CLIENTS:-1000}"
ACTOR_EVENTS="${ACTOR_EVENTS:-1000000}"
PORT="${PORT:-18281}"
AL="$ROOT/target/release/authledger"
EX="$ROOT/target/release/examples"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
command -v /usr/bin/time >/dev/null || { echo "replay.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

echo "== building (release)" >&2
(cd "$ROOT" && cargo build --release --quiet --bin authledger --example generate_log --example actor_start)
mkdir -p "$WORK/results"
OUT="$WORK/results/replay-$(date -u +%Y%m%dT%H%M%SZ).txt"

start() { # DIR MODE: seconds from launch until /healthz answers, and the RSS then (MB)
  local t0 pid secs
  t0="$(date +%s%N)"
  RUST_LOG=warn "$AL" serve --data-dir "$1" --bind "127.0.0.1:$PORT" $NO_LIMITS --verify-on-start "$2" \
    > "$1/serve.log" 2>&1 &
  pid=$!
  wait_for "http://127.0.0.1:$PORT/healthz" "$pid" "$1/serve.log" 3600
  secs="$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN { printf "%.2f", ns / 1e9 }')"
  echo "$secs $(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

{
  echo "# $(machine)"
  echo "| events | clients | replay s | events/s | replay peak RSS MB | start, whole chain s | start, since-last s | server RSS after start MB | data dir GB (log + checkpoints) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
} | tee "$OUT"
for n in $SIZES; do
  dir="$WORK/replay-$n"
  echo "== $n events: writing the log" >&2
  generated "$dir" "$n" "$CLIENTS"
  echo "== $n events: replay" >&2
  /usr/bin/time -f "%M" -o "$dir/replay.time" "$AL" replay --data-dir "$dir" --format json > "$dir/replay.json"
  secs="$(sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p' "$dir/replay.json")"
  rate="$(sed -n 's/.*"events_per_second":\([0-9.]*\).*/\1/p' "$dir/replay.json")"
  peak="$(awk '{ printf "%.0f", $1 / 1024 }' "$dir/replay.time")"
  echo "== $n events: server starts" >&2
  full="$(start "$dir" full)"
  full="${full% *}"
  since="$(start "$dir" since-last)"
  rss="${since#* }"
  since="${since% *}"
  # Sizes in 10^9 bytes, after the starts have checkpointed every projection.
  gb() { du -sb "$1" | awk '{ printf "%.2f", $1 / 1e9 }'; }
  size="$(gb "$dir") ($(gb "$dir/log") + $(gb "$dir/projections"))"
  printf '| %s | %s | %.1f | %s | %s | %s | %s | %s | %s |\n' "$n" "$CLIENTS" "$secs" "$rate" "$peak" "$full" "$since" "$rss" "$size" | tee -a "$OUT"
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
done

if [ "$ACTOR_EVENTS" -gt 0 ]; then
  echo "== a client actor's start on a client holding $ACTOR_EVENTS events" >&2
  dir="$WORK/actor-$ACTOR_EVENTS"
  generated "$dir" "$ACTOR_EVENTS" 1
  "$AL" replay --data-dir "$dir" --format json > /dev/null
  "$EX/actor_start" "$dir" bench-0 | tee -a "$OUT"
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
fi
echo "results: $OUT" >&2

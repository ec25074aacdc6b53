# What bench/compare.sh, replay.sh and scaling.sh share; sourced. Expects ROOT (the
# repository), AL (the authledger binary) and EX (the release examples) where it runs them.

# Benchmarks run with the rate limits off: one client on loopback is the whole load here
# (bench/limits.sh measures what limits cost when on).
NO_LIMITS="--rate-limit-token 0 --rate-limit-introspect 0 --rate-limit-pages 0"

bench_die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# One line: when, which commit, and the machine.
machine() {
  printf '%s authledger %s; %s x %s, %s, %s\n' "$(date -u +%FT%TZ)" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(nproc)" \
    "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)" "$(uname -sr)"
}

# Waits until URL answers; the server PID must stay alive (else its LOG is shown).
wait_for() { # URL PID LOG [SECONDS=30]
  local deadline=$(( $(date +%s) + ${4:-30} ))
  until curl -sf -o /dev/null --max-time 1 "$1"; do
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; bench_die "the server behind $1 exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$3" >&2; bench_die "$1 did not answer within ${4:-30} s"; }
    sleep 0.05
  done
}

# A data directory holding a log written by bench/generate_log.rs; with KEEP set, one written
# before with the same sizes is kept.
generated() { # DIR EVENTS CLIENTS (a kept directory is reused if this build's envelope wrote it)
  if [ -n "${KEEP:-}" ] && [ -f "$1/.generated-$2-$3-envelope2" ]; then return; fi
  rm -rf "$1"
  "$AL" init --data-dir "$1" > /dev/null
  "$EX/generate_log" "$1" "$2" "$3" >&2
  touch "$1/.generated-$2-$3-envelope2"
}

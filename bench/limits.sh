#!/usr/bin/env bash
# What a rate limiter that is on but never reached costs: the same server twice, limits off
# (`--rate-limit-* 0`, how every other benchmark runs) and limits on with allowances no load
# here reaches (1e9 per second per client), side by side, A B A B (bench/ab.sh).
#
#   bench/limits.sh                          cc_opaque and introspect_opaque, medians of 5 x 10 s
#   REPEATS=3 DURATION=5 bench/limits.sh
#
# Env: REPEATS=5 DURATION=10 WARMUP=2 CONNECTIONS=32 PORT=18281 (and the next one)
# Results: bench/.work/results/limits-<time>.{raw,txt}. Loopback only, bounded in time.
set -euo pipefail
AB_NAME=limits \
  A_FLAGS="--rate-limit-token 0 --rate-limit-introspect 0 --rate-limit-pages 0" \
  B_FLAGS="--rate-limit-token 1000000000 --rate-limit-introspect 1000000000 --rate-limit-pages 1000000000" \
  exec bash "$(dirname "$0")/ab.sh"

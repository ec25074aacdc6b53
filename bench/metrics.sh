#!/usr/bin/env bash
# What recording metrics costs the hot path: the same server twice, `--metrics false` (no
# recorder: the facade's calls do nothing) and metrics on (the default), no rate limits in
# either, side by side, A B A B (bench/ab.sh). Nothing scrapes during the runs; the recorder's
# upkeep thread drains the histograms every 5 s as it does in service.
#
#   bench/metrics.sh                         cc_opaque and introspect_opaque, medians of 5 x 10 s
#   REPEATS=3 DURATION=5 bench/metrics.sh
#
# Env: REPEATS=5 DURATION=10 WARMUP=2 CONNECTIONS=32 PORT=18281 (and the next one)
# Results: bench/.work/results/metrics-<time>.{raw,txt}. Loopback only, bounded in time.
set -euo pipefail
LIMITS="--rate-limit-token 0 --rate-limit-introspect 0 --rate-limit-pages 0"
AB_NAME=metrics \
  A_FLAGS="$LIMITS --metrics false" \
  B_FLAGS="$LIMITS --metrics true" \
  exec bash "$(dirname "$0")/ab.sh"

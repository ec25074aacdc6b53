#!/usr/bin/env bash
# Starts the server on the embedded store (./data), after installing the Debian libraries the
# build links against (scripts/deps.sh). Arguments go to `authledger serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec cargo run --release -- serve "$@"

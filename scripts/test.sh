#!/usr/bin/env bash
# Runs every test, the browser test included. Installs what the tests need first: headless
# Chromium and chromedriver from Debian (the browser test drives them over WebDriver), python3
# (the log-format page's script), and PostgreSQL's server programs (the tests of the shared
# log start a private cluster of their own in a temporary directory, as an unprivileged user,
# and stop it when they end; AUTHLEDGER_TEST_DATABASE_URL names a server to use instead).
set -euo pipefail
cd "$(dirname "$0")/.."

# python3 runs the log walk that docs/log-format.md gives, as a third party would.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
if [ -z "${AUTHLEDGER_TEST_DATABASE_URL:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing="$missing postgresql"
fi
if [ -n "$missing" ]; then
  echo "installing$missing (Debian) for the browser test, the log-format script and the PostgreSQL tests" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq $missing >/dev/null
fi

bash scripts/deps.sh

# Some black-box tests drive Python libraries (tests/clients/requirements.txt: a client library
# for PAR, DPoP and token exchange; the Prometheus text parser), from a virtual environment of
# their own under target/, installed again whenever the list changes.
if ! cmp -s tests/clients/requirements.txt target/pyenv/requirements.txt; then
  echo "making target/pyenv from tests/clients/requirements.txt (PyPI) for the Python-driven tests" >&2
  if ! python3 -m venv target/pyenv >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv target/pyenv
  fi
  target/pyenv/bin/pip install -q -r tests/clients/requirements.txt
  cp tests/clients/requirements.txt target/pyenv/requirements.txt
fi

cargo test --workspace "$@"

#!/usr/bin/env bash
# Runs every test, the browser test included. Installs what the tests need first: headless
# Chromium and chromedriver from Debian (the browser test drives them over WebDriver).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (Debian) for the browser test" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

cargo test --workspace "$@"

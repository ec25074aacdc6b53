#!/usr/bin/env bash
# Installs the Debian packages the build links against, when they are missing: the SAML
# bearer grant verifies XML signatures with libxmlsec1 (samael, ADR 0024), whose bindings are
# generated at build time with bindgen (libclang) and found with pkg-config.
set -euo pipefail
need=""
for p in libxmlsec1-dev libxml2-dev libssl-dev pkg-config libclang-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  echo "installing$need (Debian) for the SAML signature checks (libxmlsec1)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq $need >/dev/null
fi

#!/usr/bin/env bash
# Runs one sample client against a local server with one command: registers a client for it
# with the CLI (on the data directory of the running server), then runs the sample.
#
#   bash scripts/serve.sh &                         # a server on http://127.0.0.1:8080, ./data
#   examples/clients/run.sh client_credentials
#   examples/clients/run.sh code_pkce_web           # prints a URL: open it, sign in, approve
#   examples/clients/run.sh code_pkce_native        # opens the browser itself
#   examples/clients/run.sh refresh                 # the native flow, then a refresh
#   examples/clients/run.sh device_flow             # prints a code: enter it at /device
#   examples/clients/run.sh jwt_bearer
#   examples/clients/run.sh resource_server         # an API on the extractor, called with a token
#
# Env: AUTHLEDGER_ISSUER (http://127.0.0.1:8080), DATA_DIR (./data), AUTHLEDGER (the binary;
# default: cargo run). The samples use Authlib and requests-oauth2client from target/pyenv
# (made here from tests/clients/requirements.txt when missing).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/examples/clients"
ISSUER="${AUTHLEDGER_ISSUER:-http://127.0.0.1:8080}"
DATA_DIR="${DATA_DIR:-./data}"
read -r -a AL <<< "${AUTHLEDGER:-cargo run --quiet --manifest-path $ROOT/Cargo.toml --}"
PY="$ROOT/target/pyenv/bin/python"
if ! cmp -s "$ROOT/tests/clients/requirements.txt" "$ROOT/target/pyenv/requirements.txt"; then
  python3 -m venv "$ROOT/target/pyenv"
  "$ROOT/target/pyenv/bin/pip" install -q -r "$ROOT/tests/clients/requirements.txt"
  cp "$ROOT/tests/clients/requirements.txt" "$ROOT/target/pyenv/requirements.txt"
fi
suffix="$(date +%s)"
create() { # ID FLAGS...: registers a client, prints its secret (empty for public clients)
  local id="$1"
  shift
  "${AL[@]}" client create --data-dir "$DATA_DIR" --id "$id" --name "sample $id" "$@" \
    --format json | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("client_secret") or "")'
}
field() { "$PY" -c "import json,sys; print([json.loads(l) for l in sys.stdin][-1]['$1'])"; }
cd "$HERE"
case "${1:-}" in
  client_credentials)
    s="$(create "svc-$suffix" --grant-type client_credentials --scope read)"
    "$PY" client_credentials.py --issuer "$ISSUER" --client-id "svc-$suffix" --client-secret="$s" --scope read ;;
  code_pkce_web)
    s="$(create "web-$suffix" --redirect-uri http://127.0.0.1/callback --grant-type authorization_code \
      --grant-type refresh_token --scope "openid profile offline_access")"
    "$PY" code_pkce_web.py --issuer "$ISSUER" --client-id "web-$suffix" --client-secret="$s" ;;
  code_pkce_native)
    create "desktop-$suffix" --public --redirect-uri http://127.0.0.1/callback \
      --grant-type authorization_code --grant-type refresh_token --scope "openid offline_access" >/dev/null
    "$PY" code_pkce_native.py --issuer "$ISSUER" --client-id "desktop-$suffix" --open-browser ;;
  refresh)
    create "desktop-$suffix" --public --redirect-uri http://127.0.0.1/callback \
      --grant-type authorization_code --grant-type refresh_token --scope "openid offline_access" >/dev/null
    rt="$("$PY" code_pkce_native.py --issuer "$ISSUER" --client-id "desktop-$suffix" --open-browser | tee /dev/stderr | field refresh_token)"
    "$PY" refresh.py --issuer "$ISSUER" --client-id "desktop-$suffix" --refresh-token="$rt" ;;
  device_flow)
    create "tv-$suffix" --public --grant-type urn:ietf:params:oauth:grant-type:device_code --scope "openid read" >/dev/null
    "$PY" device_flow.py --issuer "$ISSUER" --client-id "tv-$suffix" ;;
  jwt_bearer)
    tmp="$(mktemp -d)"
    "$PY" keygen.py "$tmp/partner.pem" partner-1 > "$tmp/jwks.json"
    s="$(create "partner-$suffix" --grant-type urn:ietf:params:oauth:grant-type:jwt-bearer --scope read \
      --jwks "@$tmp/jwks.json" --trusted-issuer https://idp.partner.example)"
    "$PY" jwt_bearer.py --issuer "$ISSUER" --client-id "partner-$suffix" --client-secret="$s" \
      --key "$tmp/partner.pem" --kid partner-1 --assertion-issuer https://idp.partner.example \
      --subject alice@partner.example
    rm -rf "$tmp" ;;
  resource_server)
    s="$(create "svc-$suffix" --grant-type client_credentials --scope read)"
    (cd "$ROOT" && cargo run --quiet --example resource_server -- --issuer "$ISSUER" --bind 127.0.0.1:9000) &
    api=$!
    trap 'kill $api 2>/dev/null || true' EXIT
    until curl -s -o /dev/null http://127.0.0.1:9000/; do sleep 0.5; done
    tok="$(curl -s -u "svc-$suffix:$s" -d grant_type=client_credentials "$ISSUER/token" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
    curl -s -H "Authorization: Bearer $tok" http://127.0.0.1:9000/hello; echo ;;
  *)
    sed -n '2,20p' "$0"
    exit 2 ;;
esac

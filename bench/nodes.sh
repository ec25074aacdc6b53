#!/usr/bin/env bash
# Several authledger nodes on one PostgreSQL, beside the embedded log in the same run
# (issue 13). Starts a private PostgreSQL cluster of its own (initdb in bench/.work/pg, as the
# postgres user when run as root; pg_stat_statements loaded), builds authledger in release
# mode, then for the embedded log and for 1, 2 and 3 nodes on a fresh database measures:
#
#   tokens/s       client_credentials, opaque, spread over SPREAD clients (16); one wrk per
#                  node, CONNECTIONS split between them, their rates summed
#   one client     the same with every request from one client, so that every node's actor
#                  of that client races the others for its stream
#   introspect/s   introspection of one live token, split the same way
#   per token      PostgreSQL statements, rows and WAL bytes during the token run
#                  (pg_stat_statements, pg_current_wal_lsn)
#   revocation     issue on A, revoke on B, poll A until inactive: p50 and p99 (2+ nodes)
#
# Everything runs on 127.0.0.1 and on this machine's cores: PostgreSQL, every node and wrk
# share them, so compare the rows of one run, not figures of different machines.
# Env: DURATION (s, 10), CONNECTIONS (32), NODES ("1 2 3"), LAG_SAMPLES (200), PG_PORT (55499).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
WORK="$BENCH/.work/nodes"
. "$BENCH/lib.sh"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
NODES="${NODES:-1 2 3}"
LAG_SAMPLES="${LAG_SAMPLES:-200}"
SPREAD="${SPREAD:-16}"
PG_PORT="${PG_PORT:-55499}"
SECRET="bench-secret-0123456789abcdef-0123456789"
KEK="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
say() { printf '== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

command -v wrk >/dev/null || { as_root apt-get update -qq && as_root apt-get install -y -qq wrk >/dev/null; }
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$PGBIN/initdb" ] || { as_root apt-get update -qq && as_root apt-get install -y -qq postgresql >/dev/null; PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"; }

say "building authledger (release)"
(cd "$ROOT" && cargo build --release --quiet --bin authledger --example nodes_lag)
AL="$ROOT/target/release/authledger"
EX="$ROOT/target/release/examples"

rm -rf "$WORK"
mkdir -p "$WORK/results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
TABLE="$WORK/results/nodes-$STAMP.txt"
PIDS=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -A trust -U postgres -E UTF8 -D "$WORK/pg/data" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w -o \
  "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $WORK/pg -c shared_preload_libraries=pg_stat_statements -c max_connections=200" \
  start >/dev/null
PSQL=("$PGBIN/psql" -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U postgres)

port_of() { sed -n 's/.*"addr":"127.0.0.1:\([0-9]*\)".*/\1/p' "$1/server.json"; }

# Starts a node: DIR [serve flags...]; sets NODE_PORT.
start_node() {
  local dir="$1"
  shift
  mkdir -p "$dir"
  AUTHLEDGER_ENCRYPTION_KEY="$KEK" RUST_LOG=warn "$AL" serve --bind 127.0.0.1:0 $NO_LIMITS \
    --data-dir "$dir" --issuer http://nodes.bench.test --insecure-http "$@" > "$dir.log" 2>&1 &
  PIDS+=("$!")
  local deadline=$(( $(date +%s) + 60 ))
  until [ -f "$dir/server.json" ] && curl -sf -o /dev/null "http://127.0.0.1:$(port_of "$dir")/readyz"; do
    kill -0 "$!" 2>/dev/null || { cat "$dir.log" >&2; bench_die "the node in $dir exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || bench_die "the node in $dir did not start"
    sleep 0.1
  done
  NODE_PORT="$(port_of "$dir")"
}

stop_nodes() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# Runs SCRIPT against every port at once for DURATION with CONNECTIONS split between them;
# prints the summed rate and the worst p99. SCRIPT ENV... -- PORTS...
load() {
  local script="$1"
  shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local run
  run="$(printf '%s\n' "${envs[@]}" | sed -n 's/^SCENARIO=//p')"
  local per=$(( CONNECTIONS / $# )) i=0 outs=() wrks=()
  [ "$per" -ge 1 ] || per=1
  for port in "$@"; do
    env "${envs[@]}" wrk -t1 -c"$per" -d"${DURATION}s" --timeout 5s -s "$BENCH/load/$script" \
      "http://127.0.0.1:$port" > "$WORK/wrk-$run-$#-$i.out" 2>&1 &
    wrks+=("$!")
    outs+=("$WORK/wrk-$run-$#-$i.out")
    i=$((i + 1))
  done
  wait "${wrks[@]}"
  cat "${outs[@]}" | grep '^scenario=' | awk '
    { for (f = 1; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
      rps += v["rps"]; if (v["p99_ms"] > p99) p99 = v["p99_ms"]; errors += v["errors"] }
    END { printf "%.0f %.2f %d\n", rps, p99, errors }'
}

token_of() { # PORT
  curl -sS -u "bench:$SECRET" -d grant_type=client_credentials "http://127.0.0.1:$1/token" \
    | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}

measure() { # LABEL DATABASE_OR_EMPTY PORTS...
  local label="$1" db="$2"
  shift 2
  local first="$1" wal0 wal1 stats tokens
  for id in bench $(seq -f 'bench-%g' 0 $((SPREAD - 1))); do
    AUTHLEDGER_ENCRYPTION_KEY="$KEK" "$AL" client create --data-dir "$WORK/$label-0" --id "$id" \
      --name "$id" --secret "$SECRET" --scope read --token-format opaque --can-introspect > /dev/null
  done
  for port in "$@"; do
    until [ -n "$(token_of "$port")" ]; do sleep 0.05; done
  done
  if [ -n "$db" ]; then
    "${PSQL[@]}" -d "$db" -c "SELECT pg_stat_statements_reset()" > /dev/null
    wal0="$("${PSQL[@]}" -d "$db" -c "SELECT pg_current_wal_lsn()")"
  fi
  read -r tokens tok_p99 tok_err < <(load token.lua SCENARIO=tokens TOKEN_URL_PATH=/token \
    CLIENT_ID=bench CLIENT_SECRET="$SECRET" SCOPE=read CLIENT_SPREAD="$SPREAD" \
    SPREAD_SECRET="$SECRET" -- "$@")
  if [ -n "$db" ]; then
    wal1="$("${PSQL[@]}" -d "$db" -c "SELECT pg_current_wal_lsn()")"
    stats="$("${PSQL[@]}" -d "$db" -F ' ' -c "
      SELECT (SELECT count(*) FROM authledger_events e JOIN authledger_order o ON o.xid = e.xid
                WHERE e.stream LIKE 'tokens-bench-%'),
             sum(calls), sum(rows), pg_wal_lsn_diff('$wal1', '$wal0')
        FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'")"
  fi
  read -r hot hot_p99 hot_err < <(load token.lua SCENARIO=one_client TOKEN_URL_PATH=/token \
    CLIENT_ID=bench CLIENT_SECRET="$SECRET" SCOPE=read -- "$@")
  if [ -n "$db" ]; then
    "${PSQL[@]}" -d "$db" -F ' ' -c "
      SELECT regexp_replace(left(query, 60), '\s+', ' ', 'g'), calls,
             round(mean_exec_time::numeric, 3), round(total_exec_time::numeric)
        FROM pg_stat_statements WHERE calls > 10 ORDER BY total_exec_time DESC LIMIT 6" \
      | sed "s/^/# $label: /" >> "$WORK/results/statements-$STAMP.txt"
  fi
  local tok
  tok="$(token_of "$first")"
  read -r intro intro_p99 intro_err < <(load introspect.lua SCENARIO=introspect \
    INTROSPECT_URL_PATH=/introspect TOKEN="$tok" CLIENT_ID=bench CLIENT_SECRET="$SECRET" -- "$@")
  local lag="-"
  if [ "$#" -ge 2 ]; then
    lag="$("$EX/nodes_lag" "http://127.0.0.1:$1" "http://127.0.0.1:$2" bench "$SECRET" "$LAG_SAMPLES" \
      | sed -n 's/^revocation_lag samples=[0-9]* p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\).*/\1 \/ \2/p')"
  fi
  local per="-"
  if [ -n "$db" ]; then
    per="$(echo "$stats" | awk '{ if ($1 > 0) printf "%.2f statements, %.2f rows, %.0f WAL bytes", $2 / $1, $3 / $1, $4 / $1 }')"
  fi
  printf '| %s | %s | %s | %s (%s errors) | %s | %s | %s | %s |\n' "$label" "$tokens" "$tok_p99" \
    "$hot" "$hot_err" "$intro" "$intro_p99" "$lag" "$per" | tee -a "$TABLE"
  [ "$tok_err" = 0 ] && [ "$intro_err" = 0 ] || say "errors: tokens $tok_err, introspection $intro_err (see $WORK/wrk-*.out)"
}

{
  echo "# $(machine)"
  echo "# PostgreSQL $("$PGBIN/postgres" --version | awk '{ print $3 }'), wrk $CONNECTIONS connections split over the nodes, ${DURATION} s runs"
  echo "| store | tokens/s ($SPREAD clients) | token p99 ms | tokens/s, one client | introspections/s | introspection p99 ms | revocation lag p50 / p99 ms | PostgreSQL per token |"
  echo "|---|---|---|---|---|---|---|---|"
} | tee "$TABLE"

say "embedded log"
start_node "$WORK/embedded-0"
measure embedded "" "$NODE_PORT"
stop_nodes

for n in $NODES; do
  say "$n node(s) on PostgreSQL"
  db="bench_$n"
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE $db" > /dev/null
  "${PSQL[@]}" -d "$db" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" > /dev/null
  url="postgres://postgres@127.0.0.1:$PG_PORT/$db"
  ports=()
  for i in $(seq 0 $((n - 1))); do
    start_node "$WORK/postgres$n-$i" --store postgres --database-url "$url"
    ports+=("$NODE_PORT")
  done
  measure "postgres$n" "$db" "${ports[@]}"
  stop_nodes
done
say "table in $TABLE"

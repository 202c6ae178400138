#!/usr/bin/env bash
# gRPC interop matrix: grpc-core ("our") against grpc-go and grpc-java.
#
# Usage:
#   OUR_SERVER=target/release/interop-server OUR_CLIENT=target/release/interop-client \
#     tests/interop/scripts/run-matrix.sh
#
# Inputs (env):
#   OUR_SERVER   our interop server; started as: $OUR_SERVER --port N --use_tls=true|false
#                (default: target/{release,debug}/interop-server if present)
#   OUR_CLIENT   our interop client; takes grpc-go's client flags, e.g.
#                  --server_host=127.0.0.1 --server_port=N --test_case=C --use_tls=false
#                  --server_host=127.0.0.1 --server_port=N --test_case=C --use_tls=true \
#                    --use_test_ca=true --server_host_override=foo.test.google.fr
#                (default: target/{release,debug}/interop-client if present)
#   Both read the test certs from $GRPC_INTEROP_CERTS_DIR (exported here,
#   <repo>/.peers/certs: ca.pem, server1.pem, server1.key).
#
# Debug filters (env, space separated):
#   CASES='large_unary ping_pong'     only these test cases
#   PEERS='go->our java'              only cells whose "CLIENT->SERVER" matches
#                                     one of these globs; a bare name X means
#                                     X->* or *->X (peer names: go java our)
#   MODES='plain'                     plain and/or tls (default both)
#   SKIP='java->our:*compressed*'     skip cells whose "CLIENT->SERVER:CASE"
#                                     matches one of these globs
#   CELL_TIMEOUT=60  SERVER_START_TIMEOUT=60  INTEROP_LOG_DIR=target/interop-logs
#   SKIP_INSTALL=1                    do not run install-peers.sh first
#
# Binding peers (the Python, Node, Kotlin... interop programs over grpc-core):
#   EXTRA_SERVERS='py'  EXTRA_CLIENTS='py node'
#   For each name N (lower case): N_SERVER / N_CLIENT (upper case, e.g.
#   PY_SERVER) hold a command line (split on spaces). The server is started
#   as: $N_SERVER --port P --use_tls=true|false and must listen on
#   127.0.0.1:P; the client takes grpc-go's client flags, as OUR_CLIENT does.
#   N_CLIENT_CASES overrides the client's case list (default: the grpc-go
#   client's). Extra servers are tested by grpc-go's client, extra clients
#   against grpc-go's server: the cells 'go->N' and 'N->go'.
#
# Output: one line per cell,
#   PASS <client> -> <server> <plain|tls> <case>
#   FAIL <client> -> <server> <plain|tls> <case> (exit N: last lines of output)
# then 'N passed, M failed'; exit status 1 if M > 0. Full logs: $INTEROP_LOG_DIR.
#
# Each server is started once per (server, plain|tls) on a free port and the
# client cases run against it sequentially; all servers are killed on exit.
set -uo pipefail
set -f   # no pathname expansion: PEERS/SKIP/CASES hold glob patterns

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=peers.sh
source "$SCRIPT_DIR/peers.sh"
REPO_ROOT="$INTEROP_REPO_ROOT"

CELL_TIMEOUT="${CELL_TIMEOUT:-60}"
SERVER_START_TIMEOUT="${SERVER_START_TIMEOUT:-60}"
LOG_DIR="${INTEROP_LOG_DIR:-$REPO_ROOT/target/interop-logs}"
SERVER_HOST="${SERVER_HOST:-127.0.0.1}"
MODES="${MODES:-plain tls}"
CASES="${CASES:-}"
PEERS="${PEERS:-}"
EXTRA_SERVERS="${EXTRA_SERVERS:-}"
EXTRA_CLIENTS="${EXTRA_CLIENTS:-}"
SKIP="${SKIP:-}"

# ------------------------------------------------------------- test cases ----
# grpc-go v1.83.1 interop client (interop/client/client.go) implements:
#   empty_unary large_unary client_streaming server_streaming ping_pong
#   empty_stream timeout_on_sleeping_server compute_engine_creds
#   service_account_creds jwt_token_creds per_rpc_creds oauth2_auth_token
#   google_default_credentials compute_engine_channel_credentials
#   cancel_after_begin cancel_after_first_response status_code_and_message
#   special_status_message custom_metadata unimplemented_method
#   unimplemented_service pick_first_unary rpc_soak channel_soak
#   orca_per_rpc orca_oob
# grpc-java 1.79.0 TestServiceClient implements those (same names) plus:
#   cacheable_unary client_compressed_unary client_compressed_unary_noprobe
#   server_compressed_unary client_compressed_streaming
#   client_compressed_streaming_noprobe server_compressed_streaming
#   very_large_request
#
# Excluded everywhere:
#   compute_engine_creds               needs a GCE metadata server / Google OAuth
#   service_account_creds              needs a Google service-account key + OAuth endpoint
#   jwt_token_creds                    needs a Google service-account key (JWT access)
#   oauth2_auth_token                  needs a Google OAuth2 token endpoint
#   per_rpc_creds                      needs a Google OAuth2 token endpoint
#   google_default_credentials         needs Google default creds + GoogleManagedChannel/GFE
#   compute_engine_channel_credentials needs GCE (ALTS/metadata server)
#   orca_per_rpc, orca_oob             need ORCA backend-metrics support in the server and the
#                                      test_backend_metrics_load_balancer LB policy in the client
#   cacheable_unary                    needs a caching proxy (GFE) in front of the server (GET + cache)
#   pick_first_unary                   needs several backends behind one name (xds/LB setup) and
#                                      fill_server_id; neither grpc-go's nor grpc-java's server sets
#                                      server_id ("got empty server ID" even with one backend)
# Not run at all: the separate http2 negative-test clients/servers
# (interop/http2, Http2Client/Http2TestServer), grpclb/xds/alts/stress/
# soak-server binaries, which need their own infrastructure.
GO_CLIENT_CASES="empty_unary large_unary client_streaming server_streaming ping_pong
  empty_stream timeout_on_sleeping_server cancel_after_begin cancel_after_first_response
  status_code_and_message special_status_message custom_metadata unimplemented_method
  unimplemented_service rpc_soak channel_soak"
JAVA_CLIENT_CASES="empty_unary large_unary client_compressed_unary
  client_compressed_unary_noprobe server_compressed_unary client_streaming
  client_compressed_streaming client_compressed_streaming_noprobe server_streaming
  server_compressed_streaming ping_pong empty_stream custom_metadata
  status_code_and_message special_status_message unimplemented_method
  unimplemented_service cancel_after_begin cancel_after_first_response
  timeout_on_sleeping_server very_large_request rpc_soak channel_soak"
# Our client: the union of the above (override with OUR_CLIENT_CASES).
OUR_CLIENT_CASES="${OUR_CLIENT_CASES:-$JAVA_CLIENT_CASES}"
# Compression cases. Only grpc-core's own server is expected to pass all of
# them: neither reference server implements the full server side.
COMPRESSION_CASES="client_compressed_unary client_compressed_unary_noprobe
  client_compressed_streaming client_compressed_streaming_noprobe
  server_compressed_unary server_compressed_streaming"
# Not run against grpc-go's server:
#   all compression cases: grpc-go's interop server ignores expect_compressed /
#     response_compressed and does not even register a gzip decompressor
#     (UNIMPLEMENTED: Decompressor is not installed for grpc-encoding "gzip");
#   very_large_request: sends a ~10 MiB request, grpc-go's server keeps the
#     default 4 MiB receive limit (RESOURCE_EXHAUSTED); grpc-java's server
#     raises it to 16 MiB, so our server must accept >= 16 MiB messages too.
NOT_AGAINST_GO_SERVER="$COMPRESSION_CASES very_large_request"
# Not run against grpc-java's server:
#   client_compressed_unary, client_compressed_streaming: their first step
#     sends an uncompressed message with expect_compressed=true and expects
#     INVALID_ARGUMENT; grpc-java's TestServiceImpl never checks
#     expect_compressed, so the probe is accepted and the case fails even
#     java->java (the upstream interop runner skips compression cases for the
#     Java and Go servers as well). The *_noprobe variants and
#     server_compressed_* do pass against it.
NOT_AGAINST_JAVA_SERVER="client_compressed_unary client_compressed_streaming"
# Not run from our client against grpc-java's server:
#   server_compressed_streaming: grpc-java's server does not compress streamed
#     responses; grpc-java's client cannot see the per-message compressed flag
#     and passes, our client checks the flag and (rightly) fails it.
NOT_OUR_AGAINST_JAVA_SERVER="server_compressed_streaming"

# cases_for CLIENT SERVER -> prints the case list of that cell
cases_for() {
  local client="$1" server="$2" list c out=""
  case "$client" in
    go) list="$GO_CLIENT_CASES" ;;
    java) list="$JAVA_CLIENT_CASES" ;;
    our) list="$OUR_CLIENT_CASES" ;;
    *) list="$(extra_var "$client" CLIENT_CASES)"; list="${list:-$GO_CLIENT_CASES}" ;;
  esac
  for c in $list; do
    if [ "$server" = go ] && in_list "$c" $NOT_AGAINST_GO_SERVER; then continue; fi
    if [ "$server" = java ] && in_list "$c" $NOT_AGAINST_JAVA_SERVER; then continue; fi
    if [ "$client" = our ] && [ "$server" = java ] && in_list "$c" $NOT_OUR_AGAINST_JAVA_SERVER; then continue; fi
    if [ -n "$CASES" ] && ! in_list "$c" $CASES; then continue; fi
    if [ -n "$SKIP" ] && match_any "$client->$server:$c" $SKIP; then continue; fi
    out="$out $c"
  done
  echo $out
}

in_list() { local x="$1" y; shift; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }
match_any() {  # STRING GLOB...
  local s="$1" g; shift
  for g in "$@"; do
    # shellcheck disable=SC2053
    [[ $s == $g ]] && return 0
  done
  return 1
}

cell_selected() {  # CLIENT SERVER
  [ -z "$PEERS" ] && return 0
  local p
  for p in $PEERS; do
    case "$p" in
      *'->'*) [[ "$1->$2" == $p ]] && return 0 ;;
      *) { [ "$1" = "$p" ] || [ "$2" = "$p" ]; } && return 0 ;;
    esac
  done
  return 1
}

# Cells: server -> clients that run against it.
clients_of() {
  case "$1" in
    go) echo our $EXTRA_CLIENTS ;;
    java) echo our ;;
    our) echo go java our ;;
    *) echo go ;;
  esac
}

# extra_var NAME SUFFIX -> value of the variable NAME_SUFFIX (NAME upper-cased)
extra_var() { local v; v="$(echo "$1" | tr '[:lower:]-' '[:upper:]_')_$2"; printf '%s' "${!v:-}"; }
for _n in $EXTRA_SERVERS; do
  [ -n "$(extra_var "$_n" SERVER)" ] || { echo "run-matrix: $(echo "$_n" | tr '[:lower:]' '[:upper:]')_SERVER is not set" >&2; exit 2; }
  eval "${_n}_server_cmd() { local tls; tls=\"\$(_peer_tls_bool \"\${2:-plain}\")\" || return 2; read -r -a PEER_CMD <<<\"\$(extra_var $_n SERVER)\"; PEER_CMD+=(--port \"\$1\" \"--use_tls=\$tls\"); }"
done
for _n in $EXTRA_CLIENTS; do
  [ -n "$(extra_var "$_n" CLIENT)" ] || { echo "run-matrix: $(echo "$_n" | tr '[:lower:]' '[:upper:]')_CLIENT is not set" >&2; exit 2; }
  eval "${_n}_client_cmd() { read -r -a PEER_CMD <<<\"\$(extra_var $_n CLIENT)\"; PEER_CMD+=(\"\$@\"); }"
done

# ------------------------------------------------------------------ setup ----
find_our_bin() {  # NAME
  local d
  for d in release debug; do
    if [ -x "$REPO_ROOT/target/$d/$1" ]; then echo "$REPO_ROOT/target/$d/$1"; return; fi
  done
}

need_our_server=0 need_our_client=0 need_go=0 need_java=0
for server in go java our $EXTRA_SERVERS; do
  for client in $(clients_of "$server"); do
    cell_selected "$client" "$server" || continue
    [ -n "$(cases_for "$client" "$server")" ] || continue
    for p in "$client" "$server"; do
      case "$p" in
        go) need_go=1 ;; java) need_java=1 ;;
      esac
    done
    [ "$server" = our ] && need_our_server=1
    [ "$client" = our ] && need_our_client=1
  done
done

if [ "$need_our_server" = 1 ]; then
  [ -n "$OUR_SERVER" ] || OUR_SERVER="$(find_our_bin interop-server)"
  if [ -z "$OUR_SERVER" ] || [ ! -x "$OUR_SERVER" ]; then
    echo "run-matrix: OUR_SERVER is not set or not executable ('$OUR_SERVER')" >&2; exit 2
  fi
fi
if [ "$need_our_client" = 1 ]; then
  [ -n "$OUR_CLIENT" ] || OUR_CLIENT="$(find_our_bin interop-client)"
  if [ -z "$OUR_CLIENT" ] || [ ! -x "$OUR_CLIENT" ]; then
    echo "run-matrix: OUR_CLIENT is not set or not executable ('$OUR_CLIENT')" >&2; exit 2
  fi
fi
abs_path() { case "$1" in /*|"") echo "$1" ;; */*) echo "$PWD/$1" ;; *) command -v "$1" || echo "$1" ;; esac; }
OUR_SERVER="$(abs_path "$OUR_SERVER")"
OUR_CLIENT="$(abs_path "$OUR_CLIENT")"
command -v timeout >/dev/null || { echo "run-matrix: 'timeout' (coreutils) is required" >&2; exit 2; }
command -v setsid >/dev/null || { echo "run-matrix: 'setsid' (util-linux) is required" >&2; exit 2; }

mkdir -p "$LOG_DIR"
# Remove only what a previous run left there (INTEROP_LOG_DIR may be any dir).
find "$LOG_DIR" -mindepth 1 -maxdepth 1 \( -name '*-to-*' -o -name 'server-*.log' \
  -o -name install-peers.log \) -exec rm -rf {} +

if [ "${SKIP_INSTALL:-0}" != 1 ] && { [ "$need_go" = 1 ] || [ "$need_java" = 1 ]; }; then
  if ! "$SCRIPT_DIR/install-peers.sh" >"$LOG_DIR/install-peers.log" 2>&1; then
    tail -n 20 "$LOG_DIR/install-peers.log" >&2
    echo "run-matrix: install-peers.sh failed (log: $LOG_DIR/install-peers.log)" >&2
    exit 2
  fi
fi

# --------------------------------------------------------- server control ----
SERVER_PID=""
SERVER_PORT=""
SERVER_LOG=""

stop_pid() {  # PID: TERM the server's process group, then KILL if needed
  local pid="$1" i
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

CLIENT_PID=""
cleanup() {
  if [ -n "$CLIENT_PID" ]; then
    kill -TERM "$CLIENT_PID" 2>/dev/null   # timeout(1) passes it on to the client
    wait "$CLIENT_PID" 2>/dev/null
  fi
  # Only one server runs at a time; stopped servers are forgotten, so no
  # stale (possibly reused) pid is ever signalled.
  stop_pid "$SERVER_PID"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server NAME MODE -> sets SERVER_PID, SERVER_PORT; on failure returns 1
# with the reason in START_ERR.
start_server() {
  local name="$1" mode="$2" attempt rc
  SERVER_PID="" SERVER_PORT="" START_ERR=""
  SERVER_LOG="$LOG_DIR/server-$name-$mode.log"
  # Retry only if the server exits early (e.g. the free port was taken in
  # the meantime); a server that runs but never listens fails at once.
  for attempt in 1 2 3; do
    SERVER_PORT="$(free_port)" || { START_ERR="no free port"; return 1; }
    "${name}_server_cmd" "$SERVER_PORT" "$mode" || { START_ERR="bad server command"; return 1; }
    {
      echo "+ ${PEER_CMD[*]}"
      echo "+ GRPC_INTEROP_CERTS_DIR=$GRPC_INTEROP_CERTS_DIR (attempt $attempt)"
    } >>"$SERVER_LOG"
    # setsid: own process group, so wrapper scripts and their children die too.
    setsid "${PEER_CMD[@]}" </dev/null >>"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    if wait_for_port "$SERVER_PORT" "$SERVER_START_TIMEOUT" "$SERVER_PID"; then
      return 0
    fi
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      stop_pid "$SERVER_PID"
      SERVER_PID=""
      START_ERR="server $name ($mode) did not listen on port $SERVER_PORT within ${SERVER_START_TIMEOUT}s"
      return 1
    fi
    wait "$SERVER_PID" 2>/dev/null; rc=$?
    stop_pid "$SERVER_PID"   # leftovers in its process group, if any
    echo "+ server exited with code $rc" >>"$SERVER_LOG"
    SERVER_PID=""
    START_ERR="server $name ($mode) exited with code $rc before listening (3 attempts)"
  done
  return 1
}

# ------------------------------------------------------------------ cells ----
PASSED=0
FAILED=0

result() {  # PASS|FAIL client server mode case [detail]
  if [ "$1" = PASS ]; then
    PASSED=$((PASSED + 1))
    echo "PASS $2 -> $3 $4 $5"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL $2 -> $3 $4 $5 ($6)"
  fi
}

# tail_summary LOG -> one line: the first error-looking line plus the last
# two lines of LOG, skipping our '+ ' lines and Java stack frames.
tail_summary() {
  awk '
    /^\+ / || /^[ \t]+at / || /^[ \t]*\.\.\. [0-9]+ more/ || /^[ \t]*$/ { next }
    $0 == line[n - 1] { next }
    { line[n++] = $0
      if (first == "" && $0 ~ /Exception|Error|FATAL|Fatal|panic|error|fail/) first = $0 }
    END {
      out = first
      for (i = (n > 2 ? n - 2 : 0); i < n; i++)
        if (line[i] != first) out = out (out == "" ? "" : " | ") line[i]
      print (out == "" ? "(no output)" : out)
    }' "$1" 2>/dev/null | tr '\t\r' '  ' | cut -c1-400
}

run_cell() {  # client server mode case
  local client="$1" server="$2" mode="$3" tc="$4" dir log rc flags detail
  dir="$LOG_DIR/$client-to-$server-$mode"
  mkdir -p "$dir"
  log="$dir/$tc.log"
  if [ "$mode" = tls ]; then flags="$INTEROP_TLS_CLIENT_FLAGS"; else flags="$INTEROP_PLAIN_CLIENT_FLAGS"; fi
  # shellcheck disable=SC2086
  "${client}_client_cmd" "--server_host=$SERVER_HOST" "--server_port=$SERVER_PORT" \
    "--test_case=$tc" $flags
  echo "+ ${PEER_CMD[*]}" >"$log"
  local t0=$SECONDS
  # In the background + wait, so INT/TERM reach our trap at once.
  timeout -k 5 "$CELL_TIMEOUT" "${PEER_CMD[@]}" </dev/null >>"$log" 2>&1 &
  CLIENT_PID=$!
  wait "$CLIENT_PID"
  rc=$?
  CLIENT_PID=""
  echo "+ exit $rc after $((SECONDS - t0))s" >>"$log"
  if [ "$rc" = 0 ]; then
    result PASS "$client" "$server" "$mode" "$tc"
  else
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      detail="exit $rc: timeout after ${CELL_TIMEOUT}s"
    else
      detail="exit $rc"
    fi
    detail="$detail: $(tail_summary "$log")"
    if [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
      detail="$detail [server $server exited, see $(basename "$SERVER_LOG")]"
    fi
    result FAIL "$client" "$server" "$mode" "$tc" "$detail"
  fi
}

START=$SECONDS
for server in go java our $EXTRA_SERVERS; do
  for mode in $MODES; do
    # Collect the cells that run against this (server, mode).
    cells=()
    for client in $(clients_of "$server"); do
      cell_selected "$client" "$server" || continue
      for tc in $(cases_for "$client" "$server"); do
        cells+=("$client:$tc")
      done
    done
    [ "${#cells[@]}" -gt 0 ] || continue

    if ! start_server "$server" "$mode"; then
      for cell in "${cells[@]}"; do
        result FAIL "${cell%%:*}" "$server" "$mode" "${cell#*:}" \
          "$START_ERR: $(tail_summary "$SERVER_LOG")"
      done
      continue
    fi

    for cell in "${cells[@]}"; do
      # Restart the server if a previous cell crashed it, so one crash does
      # not fail every following cell.
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "+ server exited; restarting" >>"$SERVER_LOG"
        stop_pid "$SERVER_PID"
        if ! start_server "$server" "$mode"; then
          result FAIL "${cell%%:*}" "$server" "$mode" "${cell#*:}" "server restart failed: $START_ERR"
          continue
        fi
      fi
      run_cell "${cell%%:*}" "$server" "$mode" "${cell#*:}"
    done
    stop_pid "$SERVER_PID"
    SERVER_PID=""
  done
done

echo "interop matrix finished in $((SECONDS - START))s; logs in $LOG_DIR"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

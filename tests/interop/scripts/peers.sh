# shellcheck shell=bash
# Source this file (bash): defines variables and functions to start the
# interop peers installed by install-peers.sh.
#
#   source tests/interop/scripts/peers.sh
#   go_server 50051 tls &        # or: go_server 50051   (plaintext)
#   java_server 50052 &
#   go_client   --server_host=127.0.0.1 --server_port=50051 --test_case=large_unary $INTEROP_TLS_CLIENT_FLAGS
#   java_client --server_host=127.0.0.1 --server_port=50052 --test_case=large_unary --use_tls=false
#   our_server 50053 tls &       # $OUR_SERVER --port 50053 --use_tls=true
#   our_client ...               # $OUR_CLIENT ARGS...
#
# Every client function takes grpc-go style flags (--flag=value; --flag value
# also works) and translates them for its peer, so the same argument list
# can be given to go_client, java_client and our_client.
#
# When a *_server function runs in a subshell (e.g. 'go_server 1234 &') it
# exec's the server, so $! is the server's own pid. The *_server_cmd
# variants only fill the array PEER_CMD, for callers that want to wrap the
# command (setsid, timeout, ...).
#
# Peer command lines (for reference):
#   grpc-go server : server --port=N --use_tls=false
#                    server --port=N --use_tls=true --tls_cert_file=CERTS/server1.pem --tls_key_file=CERTS/server1.key
#                    (listens on all interfaces, ":N")
#   grpc-go client : client --server_host=H --server_port=N --test_case=C --use_tls=false
#                    client ... --use_tls=true --use_test_ca=true --ca_file=CERTS/ca.pem --server_host_override=foo.test.google.fr
#                    (Go 'flag' package: -x and --x are the same; bools must be
#                    written --use_tls=true, '--use_tls true' stops flag parsing)
#   grpc-java server: java -cp 'LIB/*' io.grpc.testing.integration.TestServiceServer --port=N --use_tls=false|true
#                    (flags MUST be --name=value; --use_tls DEFAULTS TO TRUE;
#                    TLS uses the server1.pem/key embedded in grpc-testing.jar,
#                    there is no cert-file flag; listens on IPv4+IPv6 wildcard)
#   grpc-java client: java -cp 'LIB/*' io.grpc.testing.integration.TestServiceClient --server_host=H --server_port=N --test_case=C --use_tls=false
#                    ... --use_tls=true --use_test_ca=true --server_host_override=foo.test.google.fr
#                    (flags MUST be --name=value; --use_tls DEFAULTS TO TRUE;
#                    --use_test_ca uses the ca.pem embedded in grpc-testing.jar,
#                    identical to CERTS/ca.pem; there is no --ca_file flag)

_peers_sh_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INTEROP_REPO_ROOT="${INTEROP_REPO_ROOT:-$(cd "$_peers_sh_dir/../../.." && pwd)}"
PEERS_DIR="${PEERS_DIR:-$INTEROP_REPO_ROOT/.peers}"

GO_SERVER_BIN="${GO_SERVER_BIN:-$PEERS_DIR/go/bin/server}"
GO_CLIENT_BIN="${GO_CLIENT_BIN:-$PEERS_DIR/go/bin/client}"
JAVA_BIN="${JAVA_BIN:-java}"
JAVA_PEER_CP="${JAVA_PEER_CP:-$PEERS_DIR/java/lib/*}"
# JVM options for the java peers. Client runs are short-lived, so favour
# start-up time.
JAVA_SERVER_OPTS="${JAVA_SERVER_OPTS:--XX:+UseSerialGC}"
JAVA_CLIENT_OPTS="${JAVA_CLIENT_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1}"

export GRPC_INTEROP_CERTS_DIR="${GRPC_INTEROP_CERTS_DIR:-$PEERS_DIR/certs}"
INTEROP_TLS_HOST_OVERRIDE="${INTEROP_TLS_HOST_OVERRIDE:-foo.test.google.fr}"
INTEROP_TLS_CLIENT_FLAGS="--use_tls=true --use_test_ca=true --server_host_override=$INTEROP_TLS_HOST_OVERRIDE"
INTEROP_PLAIN_CLIENT_FLAGS="--use_tls=false"

# OUR_SERVER / OUR_CLIENT: paths to the grpc-core interop binaries.
OUR_SERVER="${OUR_SERVER:-}"
OUR_CLIENT="${OUR_CLIENT:-}"

# _peer_tls_bool [tls|plain|true|false|""] -> true|false
_peer_tls_bool() {
  case "${1:-plain}" in
    tls|true|1|yes) echo true ;;
    plain|false|0|no|"") echo false ;;
    *) echo "peers.sh: bad tls argument '$1' (want tls|plain)" >&2; return 2 ;;
  esac
}

# Run PEER_CMD; exec when already in a subshell (so $! is the peer itself).
_peer_run() {
  if [ "${BASHPID:-$$}" != "$$" ]; then
    exec "${PEER_CMD[@]}"
  else
    "${PEER_CMD[@]}"
  fi
}

# ------------------------------------------------------------------ servers --
go_server_cmd() {  # PORT [tls|plain]
  local port="$1" tls
  tls="$(_peer_tls_bool "${2:-plain}")" || return 2
  PEER_CMD=("$GO_SERVER_BIN" "--port=$port" "--use_tls=$tls")
  if [ "$tls" = true ]; then
    PEER_CMD+=("--tls_cert_file=$GRPC_INTEROP_CERTS_DIR/server1.pem"
               "--tls_key_file=$GRPC_INTEROP_CERTS_DIR/server1.key")
  fi
}

java_server_cmd() {  # PORT [tls|plain]
  local port="$1" tls
  tls="$(_peer_tls_bool "${2:-plain}")" || return 2
  # shellcheck disable=SC2206
  PEER_CMD=("$JAVA_BIN" $JAVA_SERVER_OPTS -cp "$JAVA_PEER_CP"
            io.grpc.testing.integration.TestServiceServer
            "--port=$port" "--use_tls=$tls")
}

our_server_cmd() {  # PORT [tls|plain]   -> $OUR_SERVER --port N --use_tls=true|false
  local port="$1" tls
  tls="$(_peer_tls_bool "${2:-plain}")" || return 2
  [ -n "$OUR_SERVER" ] || { echo "peers.sh: OUR_SERVER is not set" >&2; return 2; }
  PEER_CMD=("$OUR_SERVER" --port "$port" "--use_tls=$tls")
}

go_server()   { go_server_cmd "$@"   && _peer_run; }
java_server() { java_server_cmd "$@" && _peer_run; }
our_server()  { our_server_cmd "$@"  && _peer_run; }

# ------------------------------------------------------------------ clients --
# _peer_norm_flags ARGS... -> fills _PEER_FLAGS with --name=value items.
# Accepts -name / --name, "=value" or a separate value word; bare bool flags
# become --name=true.
_peer_norm_flags() {
  _PEER_FLAGS=()
  local a name
  while [ $# -gt 0 ]; do
    a="$1"; shift
    case "$a" in
      --*=*) _PEER_FLAGS+=("$a") ;;
      -*=*)  _PEER_FLAGS+=("-$a") ;;
      -*)
        name="${a#-}"; name="${name#-}"
        case "$name" in
          use_tls|use_test_ca|use_alts|use_upgrade|use_okhttp)
            _PEER_FLAGS+=("--$name=true") ;;
          *)
            if [ $# -gt 0 ]; then _PEER_FLAGS+=("--$name=$1"); shift
            else _PEER_FLAGS+=("--$name"); fi ;;
        esac ;;
      *) _PEER_FLAGS+=("$a") ;;
    esac
  done
}

_peer_has_flag() {  # NAME -> 0 if _PEER_FLAGS contains --NAME=...
  local f
  for f in "${_PEER_FLAGS[@]}"; do
    case "$f" in "--$1="*) return 0 ;; esac
  done
  return 1
}

_peer_flag_value() {  # NAME -> prints value of --NAME=... (last wins)
  local f v=""
  for f in "${_PEER_FLAGS[@]}"; do
    case "$f" in "--$1="*) v="${f#--"$1"=}" ;; esac
  done
  printf '%s' "$v"
}

go_client_cmd() {  # grpc-go client flags
  _peer_norm_flags "$@"
  # Without --ca_file the Go client reads testdata/ca.pem relative to the
  # module source it was built from; point it at our copy explicitly.
  if [ "$(_peer_flag_value use_test_ca)" = true ] && ! _peer_has_flag ca_file; then
    _PEER_FLAGS+=("--ca_file=$GRPC_INTEROP_CERTS_DIR/ca.pem")
  fi
  PEER_CMD=("$GO_CLIENT_BIN" "${_PEER_FLAGS[@]}")
}

java_client_cmd() {  # grpc-go client flags, translated for TestServiceClient
  _peer_norm_flags "$@"
  local f out=()
  for f in "${_PEER_FLAGS[@]}"; do
    case "$f" in
      --ca_file=*) ;;  # not supported by the java client; it uses its embedded ca.pem (same file)
      *) out+=("$f") ;;
    esac
  done
  # grpc-java defaults to TLS; grpc-go defaults to plaintext.
  _PEER_FLAGS=("${out[@]}")
  _peer_has_flag use_tls || out+=("--use_tls=false")
  # shellcheck disable=SC2206
  PEER_CMD=("$JAVA_BIN" $JAVA_CLIENT_OPTS -cp "$JAVA_PEER_CP"
            io.grpc.testing.integration.TestServiceClient "${out[@]}")
}

our_client_cmd() {  # grpc-go client flags, passed through unchanged
  [ -n "$OUR_CLIENT" ] || { echo "peers.sh: OUR_CLIENT is not set" >&2; return 2; }
  PEER_CMD=("$OUR_CLIENT" "$@")
}

go_client()   { go_client_cmd "$@"   && "${PEER_CMD[@]}"; }
java_client() { java_client_cmd "$@" && "${PEER_CMD[@]}"; }
our_client()  { our_client_cmd "$@"  && "${PEER_CMD[@]}"; }

# ------------------------------------------------------------------ helpers --
# free_port -> prints a currently unused TCP port on 127.0.0.1.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    return
  fi
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# wait_for_port PORT [TIMEOUT_SECONDS] [PID] -> 0 once 127.0.0.1:PORT accepts
# connections; 1 on timeout or if PID exits first.
wait_for_port() {
  local port="$1" timeout="${2:-30}" pid="${3:-}" deadline
  deadline=$(( SECONDS + timeout ))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.1
  done
  return 1
}

#!/usr/bin/env bash
# The main demo: one Rust greeter server, clients in Rust, C, Python, Node and
# Kotlin calling it, then the Rust client over TLS. Run by `make demo`, which builds
# and installs everything first. The server is always stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/target/release
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_server() { # $1 = log file, rest = args; sets $pid and $addr
  local log=$1; shift
  "$BIN/greeter-server" --exit-after 120 "$@" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if grep -q '^listening on' "$log"; then addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log"); return 0; fi
    sleep 0.1
  done
  echo "server did not start:" >&2; cat "$log" >&2; return 1
}

echo "== one Rust greeter server, five languages of clients =="
start_server "$work/server.log"
echo "Rust server listening on $addr"
"$BIN/greeter-client" --target "$addr" --name rust
"$ROOT/target/c-examples/greeter_client" "$addr" "c"
"$ROOT/.venv-python/bin/python" examples/python/greeter_client.py "$addr" python
node examples/node/greeter_client_simple.js "$addr" node
java -XX:TieredStopAtLevel=1 -Djna.library.path="$BIN" -jar examples/kotlin/target/greeter-kotlin.jar "$addr" kotlin
echo "== what the server saw =="
grep '^server:' "$work/server.log" | sed 's/^/  /'
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

echo "== TLS: Rust client and server with a throw-away CA =="
start_server "$work/tls.log" --tls-dir "$work/certs"
echo "Rust server listening on $addr (TLS)"
"$BIN/greeter-client" --target "$addr" --ca "$work/certs/ca.pem" --name tls

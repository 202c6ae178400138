#!/usr/bin/env bash
# The Rust greeter demo: a server on a free port, plaintext then TLS, and a
# client talking to each. Servers are always stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=target/release
cargo build --release -q -p examples-rust
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start_server() { # $1 = log file, rest = args
  local log=$1; shift
  "$BIN/greeter-server" --exit-after 120 "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if grep -q '^listening on' "$log"; then
      sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log"; return 0
    fi
    sleep 0.1
  done
  echo "server did not start:" >&2; cat "$log" >&2; return 1
}

echo "== plaintext =="
addr=$(start_server "$work/plain.log")
echo "server listening on $addr"
"$BIN/greeter-client" --target "$addr" --name plaintext
echo "== TLS (demo CA, server name localhost) =="
addr=$(start_server "$work/tls.log" --tls-dir "$work/certs")
echo "server listening on $addr (TLS)"
"$BIN/greeter-client" --target "$addr" --ca "$work/certs/ca.pem" --name tls
echo "== what the servers saw =="
grep '^server:' "$work/plain.log" "$work/tls.log" | sed "s|$work/||"

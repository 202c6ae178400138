#!/usr/bin/env bash
# grpcurl (github.com/fullstorydev/grpcurl, installed with `go install`)
# against the Rust greeter server through server reflection: list, describe,
# a unary and a server-streaming call, plaintext and TLS. Exits non-zero on
# the first mismatch.
set -euo pipefail
cd "$(dirname "$0")/../.."
GRPCURL_VERSION=v1.9.4
GOBIN_DIR="$PWD/.peers/go/bin"
GRPCURL="$GOBIN_DIR/grpcurl"
# 'go install' builds report no version; a stamp records which one is there.
STAMP="$GOBIN_DIR/.grpcurl-$GRPCURL_VERSION"
if [ ! -x "$GRPCURL" ] || [ ! -f "$STAMP" ]; then
  echo "installing grpcurl $GRPCURL_VERSION (go install)"
  mkdir -p "$GOBIN_DIR"
  GOBIN="$GOBIN_DIR" GOFLAGS=-buildvcs=false go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  touch "$STAMP"
fi
cargo build --release -q -p examples-rust
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start_server() { # $1 = log file, rest = args
  local log=$1; shift
  target/release/greeter-server --exit-after 120 "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if grep -q '^listening on' "$log"; then
      sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log"; return 0
    fi
    sleep 0.1
  done
  echo "server did not start:" >&2; cat "$log" >&2; return 1
}

expect() { # $1 = what, $2 = needle, $3 = haystack
  if ! grep -qF -- "$2" <<<"$3"; then
    echo "FAIL $1: expected '$2' in:" >&2; echo "$3" >&2; exit 1
  fi
  echo "PASS $1"
}

run_checks() { # $1 = mode, $2 = address, rest = grpcurl connection flags
  local mode=$1 addr=$2; shift 2
  local out
  out=$(timeout 30 "$GRPCURL" "$@" "$addr" list)
  expect "$mode list: Greeter" helloworld.Greeter "$out"
  expect "$mode list: reflection v1" grpc.reflection.v1.ServerReflection "$out"
  expect "$mode list: health" grpc.health.v1.Health "$out"
  out=$(timeout 30 "$GRPCURL" "$@" "$addr" describe helloworld.Greeter)
  expect "$mode describe SayHello" "rpc SayHello ( .helloworld.HelloRequest ) returns ( .helloworld.HelloReply );" "$out"
  expect "$mode describe stream" "returns ( stream .helloworld.HelloReply )" "$out"
  out=$(timeout 30 "$GRPCURL" "$@" "$addr" describe helloworld.HelloRequest)
  expect "$mode describe message" "string name = 1;" "$out"
  out=$(timeout 30 "$GRPCURL" "$@" -H 'x-client: grpcurl' -d '{"name": "grpcurl"}' "$addr" helloworld.Greeter/SayHello)
  expect "$mode unary call" '"message": "Hello, grpcurl!"' "$out"
  out=$(timeout 30 "$GRPCURL" "$@" -d '{"name": "grpcurl"}' "$addr" helloworld.Greeter/SayHelloStreamReply)
  expect "$mode streaming call" '"message": "Bonjour, grpcurl!"' "$out"
  [ "$(grep -c '"message"' <<<"$out")" = 4 ] || { echo "FAIL $mode: expected 4 replies: $out" >&2; exit 1; }
  if out=$(timeout 30 "$GRPCURL" "$@" "$addr" describe helloworld.Nope 2>&1); then
    echo "FAIL $mode: describing an unknown symbol succeeded: $out" >&2; exit 1
  fi
  expect "$mode unknown symbol" "Symbol not found" "$out"
}

addr=$(start_server "$work/plain.log")
run_checks plaintext "$addr" -plaintext
addr=$(start_server "$work/tls.log" --tls-dir "$work/certs")
run_checks tls "$addr" -cacert "$work/certs/ca.pem" -authority localhost
grep -q 'from grpcurl' "$work/plain.log" || { echo "FAIL: the server did not log the grpcurl call" >&2; exit 1; }
echo "grpcurl reflection: all checks passed"

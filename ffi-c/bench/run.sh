#!/usr/bin/env bash
# The C ABI's overhead per unary call against the Rust API, same server, same
# run: the Rust greeter server on CPU 0, each client on CPU 1, sequential
# calls, ROUNDS (default 3) rounds alternating. Prints µs per call (wall and client CPU)
# and the C ABI's extra CPU per call over the blocking Rust loop (the target:
# at most 2 µs) for each way of making the call from C: the per-operation
# API (c-abi-per-op), grpc_core_channel_unary (c-abi-unary-cq) and
# grpc_core_channel_unary_blocking (c-abi-unary-blocking). N calls per round: $N (default 20000).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-20000}
CARGO=${CARGO:-cargo}
"$CARGO" build --release -q -p grpc-core-ffi -p examples-rust --example rust_unary_bench
ln -sf libgrpc_core.so target/release/libgrpc_core.so.0 # its SONAME (ffi-c/build.rs)
work=$(mktemp -d)
cc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude ffi-c/bench/unary_bench.c -o "$work/unary_bench" \
  -Ltarget/release -lgrpc_core -Wl,-rpath,"$PWD/target/release"
pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
pin 0 target/release/greeter-server --exit-after 600 >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q '^listening on' "$work/server.log" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$work/server.log")
for round in $(seq 1 "${ROUNDS:-3}"); do
  pin 1 "$work/unary_bench" "$addr" "$N"
  pin 1 target/release/examples/rust_unary_bench "$addr" "$N"
done | tee "$work/out.txt"
awk '
  { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[$1, kv[1]] += kv[2]; } n[$1]++ }
  END {
    printf "\n%-22s %12s %12s\n", "client (mean of rounds)", "wall us/call", "cpu us/call";
    for (k in n) printf "%-22s %12.2f %12.2f\n", k, v[k, "wall_us_per_call"] / n[k], v[k, "cpu_us_per_call"] / n[k];
    r = v["rust-api-blocking", "cpu_us_per_call"] / n["rust-api-blocking"];
    for (k in n) if (k ~ /^c-abi/) {
      c = v[k, "cpu_us_per_call"] / n[k];
      printf "%s: extra client CPU per call vs the blocking Rust loop: %.2f us (ratio %.2f)\n", k, c - r, c / r;
    }
  }' "$work/out.txt"

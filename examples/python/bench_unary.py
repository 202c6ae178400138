"""CPU-µs per unary call, grpc_core vs grpcio, in the same run.

Each library serves and calls itself in this one process (client and server
both in the figure), one caller thread, small messages. The CPU time is the
whole process's (every thread, the Rust runtime's included).

Run: make bench-python
"""

from __future__ import annotations

import sys
import time
from concurrent import futures
from typing import Any, Tuple

import grpc
import grpc_core

DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0


def measure(lib: Any) -> Tuple[float, float]:
    server = lib.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [lib.method_handlers_generic_handler("b.B", {"U": lib.unary_unary_rpc_method_handler(lambda r, c: r)})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with lib.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary("/b.B/U")
        payload = b"x" * 64
        for _ in range(200):  # warm up: connect, JIT-free but caches warm
            call(payload)
        n = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while time.perf_counter() - wall0 < DURATION:
            call(payload)
            n += 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    server.stop(None).wait()
    return cpu / n * 1e6, n / wall


def main() -> None:
    ours_cpu, ours_rate = measure(grpc_core)
    theirs_cpu, theirs_rate = measure(grpc)
    print(f"{'library':<10} {'CPU-µs/call':>12} {'calls/s':>10}")
    print(f"{'grpc_core':<10} {ours_cpu:>12.1f} {ours_rate:>10.0f}")
    print(f"{'grpcio':<10} {theirs_cpu:>12.1f} {theirs_rate:>10.0f}")
    print(f"grpcio/grpc_core CPU ratio: {theirs_cpu / ours_cpu:.2f}x (higher is better for grpc_core)")


if __name__ == "__main__":
    main()

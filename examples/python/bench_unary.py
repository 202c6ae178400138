"""CPU-µs per unary call, grpc_core vs grpcio, in the same run.

Each library serves and calls itself in this one process (client and server
both in the figure), small messages. The CPU time is the whole process's
(every thread, the Rust runtime's included). Three shapes: sync (one caller
thread), aio (one asyncio caller awaiting each call) and aio x16 (16 calls in
flight on the loop), the aio ones with an aio server in the same loop.

Run: make bench-python
"""

from __future__ import annotations

import asyncio
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


async def _measure_aio(lib: Any, concurrency: int) -> Tuple[float, float]:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    server = lib.aio.server()
    server.add_generic_rpc_handlers(
        [lib.method_handlers_generic_handler("b.B", {"U": lib.unary_unary_rpc_method_handler(echo)})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with lib.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary("/b.B/U")
        payload = b"x" * 64

        async def caller(stop: float) -> int:
            n = 0
            while time.perf_counter() < stop:
                await call(payload)
                n += 1
            return n

        await asyncio.gather(*(caller(time.perf_counter() + 0.3) for _ in range(concurrency)))  # warm up
        cpu0, wall0 = time.process_time(), time.perf_counter()
        counts = await asyncio.gather(*(caller(wall0 + DURATION) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await server.stop(None)
    n = sum(counts)
    return cpu / n * 1e6, n / wall


def measure_aio(lib: Any, concurrency: int) -> Tuple[float, float]:
    return asyncio.run(_measure_aio(lib, concurrency))


def main() -> None:
    rows = [
        ("sync", measure(grpc_core), measure(grpc)),
        ("aio", measure_aio(grpc_core, 1), measure_aio(grpc, 1)),
        ("aio x16", measure_aio(grpc_core, 16), measure_aio(grpc, 16)),
    ]
    print(f"{'shape':<8} {'library':<10} {'CPU-µs/call':>12} {'calls/s':>10}")
    for shape, (ours_cpu, ours_rate), (theirs_cpu, theirs_rate) in rows:
        print(f"{shape:<8} {'grpc_core':<10} {ours_cpu:>12.1f} {ours_rate:>10.0f}")
        print(f"{shape:<8} {'grpcio':<10} {theirs_cpu:>12.1f} {theirs_rate:>10.0f}")
    for shape, (ours_cpu, _), (theirs_cpu, _) in rows:
        print(f"{shape}: grpcio/grpc_core CPU ratio {theirs_cpu / ours_cpu:.2f}x (higher is better for grpc_core)")


if __name__ == "__main__":
    main()

"""grpc_core (the Python binding) against grpcio, client and server, unary and streaming,
sync and asyncio: CPU-µs per call (or per streamed message) of the measured side, from
the same run, so the ratios can be compared on a noisy machine.

    python bench/python/binding_bench.py [--duration 2] [--reps 3] [--only server,client]

Needs grpcio and grpc_core in the running Python (make python-dev; the .venv-python venv
has both) and target/release/bench-server and bench-driver (cargo build --release -p bench).

- Server side: this script serves `bench.Echo` (Unary, and the bidi Stream) with
  grpc_core's or grpcio's server, sync (a thread pool) or aio, handlers on raw bytes (no
  protobuf: the libraries' own cost); `bench-driver` (Rust, raw h2) drives it with one
  unary call in flight (`unary --size 64`), 32 unary calls in flight on one connection
  (shape `unary32`: `--streams 32`) or one stream with 64 messages in flight
  (`stream --size 64`), and reads the server's CPU time from /proc.
- Client side: this script calls grpc-core's Rust server (`bench-server`) with
  grpc_core's or grpcio's client, sync or aio: unary ping-pong (one call in flight), 32
  unary calls in flight on one channel (`unary32`: 32 threads each calling in a loop,
  or 32 asyncio tasks each awaiting in a loop), and one bidi stream fed by a request
  iterator with at most 64 messages in flight; CPU is the client process's own (every
  thread).

The measured process runs on core 0, its peer on core 1 (taskset), as in bench/run.py.
The best (lowest CPU) of `--reps` runs is kept.

With the client side, a reference row (on by default; `--no-floor` skips it) measures what no
library can go below on this machine: the same client loop over a raw TCP socket to an
echo peer (the request's 111 bytes, echoed), sync (blocking send and recv) and asyncio
(a reader callback resolving one future per call: the loop iterations every asyncio
client pays), without HTTP/2 or gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from typing import Any, Dict, Iterator, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASE = os.path.join(ROOT, "target", "release")
PAYLOAD = b"\n\x40" + b"x" * 64  # bench.Payload{data: 64 bytes}, as bench-driver sends
WINDOW = 64  # stream messages in flight
PARALLEL = 32  # unary calls in flight in the unary32 shape


def _lib(name: str) -> Any:
    if name == "grpcio":
        import grpc

        return grpc
    import grpc_core

    return grpc_core


def _taskset(core: int) -> List[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


# ---- the server under test -------------------------------------------------------------


def _handlers(lib: Any, aio: bool) -> Any:
    if aio:

        async def unary(request: bytes, context: Any) -> bytes:
            return request

        async def stream(requests: Any, context: Any) -> Any:
            async for m in requests:
                yield m

    else:

        def unary(request: bytes, context: Any) -> bytes:  # type: ignore[misc]
            return request

        def stream(requests: Any, context: Any) -> Any:  # type: ignore[misc]
            for m in requests:
                yield m

    return lib.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Unary": lib.unary_unary_rpc_method_handler(unary),
            "Stream": lib.stream_stream_rpc_method_handler(stream),
        },
    )


def serve(lib_name: str, api: str) -> None:
    lib = _lib(lib_name)

    def announce(port: int) -> None:
        sys.stdout.write(f"PORT {port}\n")
        sys.stdout.flush()

    if api == "sync":
        server = lib.server(futures.ThreadPoolExecutor(max_workers=16))
        server.add_generic_rpc_handlers([_handlers(lib, False)])
        announce(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        signal.sigwait([signal.SIGTERM, signal.SIGINT]) if hasattr(signal, "sigwait") else time.sleep(1e9)
        server.stop(None)
        return

    async def run() -> None:
        server = lib.aio.server()
        server.add_generic_rpc_handlers([_handlers(lib, True)])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        announce(port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(None)

    asyncio.run(run())


# ---- the client under test -------------------------------------------------------------


def _client_sync(lib: Any, target: str, shape: str, duration: float) -> Tuple[float, int]:
    with lib.insecure_channel(target) as ch:
        if shape == "unary32":
            ucall = ch.unary_unary("/bench.Echo/Unary")

            def calls(seconds: float) -> int:
                counts: List[int] = []
                stop = time.perf_counter() + seconds

                def loop() -> None:
                    n = 0
                    while time.perf_counter() < stop:
                        ucall(PAYLOAD)
                        n += 1
                    counts.append(n)

                threads = [threading.Thread(target=loop) for _ in range(PARALLEL)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                return sum(counts)

            calls(0.5)
            cpu0 = time.process_time()
            n = calls(duration)
            return time.process_time() - cpu0, n
        if shape == "unary":
            call = ch.unary_unary("/bench.Echo/Unary")
            for _ in range(300):
                call(PAYLOAD)
            n = 0
            cpu0, stop = time.process_time(), time.perf_counter() + duration
            while time.perf_counter() < stop:
                call(PAYLOAD)
                n += 1
            return time.process_time() - cpu0, n
        call = ch.stream_stream("/bench.Echo/Stream")

        def run(seconds: float) -> int:
            window = threading.Semaphore(WINDOW)  # at most WINDOW messages in flight, as bench-driver

            def requests() -> Iterator[bytes]:
                stop = time.perf_counter() + seconds
                while time.perf_counter() < stop:
                    window.acquire()
                    yield PAYLOAD

            n = 0
            for _ in call(requests()):
                window.release()
                n += 1
            return n

        run(0.3)
        cpu0 = time.process_time()
        n = run(duration)
        return time.process_time() - cpu0, n


async def _client_aio(lib: Any, target: str, shape: str, duration: float) -> Tuple[float, int]:
    async with lib.aio.insecure_channel(target) as ch:
        if shape == "unary32":
            acall = ch.unary_unary("/bench.Echo/Unary")

            async def loop(stop: float) -> int:
                n = 0
                while time.perf_counter() < stop:
                    await acall(PAYLOAD)
                    n += 1
                return n

            async def calls(seconds: float) -> int:
                stop = time.perf_counter() + seconds
                return sum(await asyncio.gather(*(loop(stop) for _ in range(PARALLEL))))

            await calls(0.5)
            cpu0 = time.process_time()
            n = await calls(duration)
            return time.process_time() - cpu0, n
        if shape == "unary":
            call = ch.unary_unary("/bench.Echo/Unary")
            for _ in range(300):
                await call(PAYLOAD)
            n = 0
            cpu0, stop = time.process_time(), time.perf_counter() + duration
            while time.perf_counter() < stop:
                await call(PAYLOAD)
                n += 1
            return time.process_time() - cpu0, n
        scall = ch.stream_stream("/bench.Echo/Stream")

        async def run(seconds: float) -> int:
            window = asyncio.Semaphore(WINDOW)

            async def requests() -> Any:
                stop = time.perf_counter() + seconds
                while time.perf_counter() < stop:
                    await window.acquire()
                    yield PAYLOAD

            n = 0
            async for _ in scall(requests()):
                window.release()
                n += 1
            return n

        await run(0.3)
        cpu0 = time.process_time()
        n = await run(duration)
        return time.process_time() - cpu0, n


# ---- the floor: a raw TCP echo, no HTTP/2 ---------------------------------------------

REQUEST_BYTES = 111  # what grpc_core's client writes for one unary call (HEADERS + DATA)


def echo() -> None:
    """The floor's peer: echoes every connection's bytes (a thread per connection)."""
    import socket

    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()
    sys.stdout.write(f"PORT {ls.getsockname()[1]}\n")
    sys.stdout.flush()

    def serve(c: Any) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def _floor(api: str, target: str, duration: float) -> Tuple[float, int]:
    import socket

    host, port = target.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * REQUEST_BYTES

    def call_sync() -> None:
        s.sendall(msg)
        got = 0
        while got < REQUEST_BYTES:
            got += len(s.recv(65536))

    if api == "sync":
        for _ in range(300):
            call_sync()
        n = 0
        cpu0, stop = time.process_time(), time.perf_counter() + duration
        while time.perf_counter() < stop:
            call_sync()
            n += 1
        return time.process_time() - cpu0, n

    async def run() -> Tuple[float, int]:
        loop = asyncio.get_running_loop()
        s.setblocking(False)
        state: Dict[str, Any] = {"got": 0, "fut": None}

        def readable() -> None:
            state["got"] += len(s.recv(65536))
            if state["got"] >= REQUEST_BYTES and state["fut"] is not None:
                state["got"], fut, state["fut"] = 0, state["fut"], None
                fut.set_result(None)

        async def call() -> None:
            state["fut"] = fut = loop.create_future()
            s.send(msg)
            await fut

        loop.add_reader(s.fileno(), readable)
        for _ in range(300):
            await call()
        n = 0
        cpu0, stop = time.process_time(), time.perf_counter() + duration
        while time.perf_counter() < stop:
            await call()
            n += 1
        return time.process_time() - cpu0, n

    return asyncio.run(run())


def client(lib_name: str, api: str, shape: str, target: str, duration: float) -> None:
    if lib_name == "socket":
        cpu, n = _floor(api, target, duration)
        print(json.dumps({"cpu_us_per_call": cpu / max(n, 1) * 1e6, "calls": n}))
        return
    lib = _lib(lib_name)
    if api == "sync":
        cpu, n = _client_sync(lib, target, shape, duration)
    else:
        cpu, n = asyncio.run(_client_aio(lib, target, shape, duration))
    print(json.dumps({"cpu_us_per_call": cpu / max(n, 1) * 1e6, "calls": n}))


# ---- orchestration ---------------------------------------------------------------------


def _start(cmd: List[str]) -> Tuple[subprocess.Popen, int]:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout is not None
    deadline = time.time() + 20
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith("PORT "):
            return p, int(line.split()[1])
        if not line and p.poll() is not None:
            break
    p.kill()
    raise RuntimeError(f"{cmd} did not print its port")


def _stop(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def measure_server(lib: str, api: str, shape: str, duration: float) -> float:
    srv, port = _start(_taskset(0) + [sys.executable, __file__, "serve", "--lib", lib, "--api", api])
    try:
        sub = {
            "unary": ["unary", "--size", "64"],
            "unary32": ["unary", "--size", "64", "--streams", str(PARALLEL)],
            "stream": ["stream", "--size", "64", "--window", str(WINDOW)],
        }[shape]
        out = subprocess.run(
            _taskset(1)
            + [os.path.join(RELEASE, "bench-driver"), "--target", f"127.0.0.1:{port}", "--server-pid", str(srv.pid)]
            + sub
            + ["--duration", str(duration), "--warmup", "0.5"],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
        r = json.loads(out.stdout.splitlines()[0])
        if r.get("errors"):
            raise RuntimeError(f"{lib} {api} {shape}: {r['errors']} errors")
        return float(r["server_cpu_us_per_msg"] if shape == "stream" else r["server_cpu_us_per_call"])
    finally:
        _stop(srv)


def measure_client(lib: str, api: str, shape: str, duration: float, target: str) -> float:
    out = subprocess.run(
        _taskset(0)
        + [sys.executable, __file__, "client", "--lib", lib, "--api", api, "--shape", shape, "--target", target]
        + ["--duration", str(duration)],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return float(json.loads(out.stdout.splitlines()[-1])["cpu_us_per_call"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("serve")
    s.add_argument("--lib", choices=["grpc_core", "grpcio"], required=True)
    s.add_argument("--api", choices=["sync", "aio"], required=True)
    sub.add_parser("echo")
    c = sub.add_parser("client")
    c.add_argument("--lib", choices=["grpc_core", "grpcio", "socket"], required=True)
    c.add_argument("--api", choices=["sync", "aio"], required=True)
    c.add_argument("--shape", choices=["unary", "unary32", "stream"], required=True)
    c.add_argument("--target", required=True)
    c.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=2.0, help="measured seconds per run")
    ap.add_argument("--reps", type=int, default=3, help="runs per cell, the lowest CPU kept")
    ap.add_argument("--only", default="server,client", help="server, client or both")
    ap.add_argument("--apis", default="sync,aio")
    ap.add_argument("--shapes", default="unary,unary32,stream")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--no-floor", dest="floor", action="store_false", help="skip the raw-socket reference row")
    args = ap.parse_args()
    if args.cmd == "serve":
        return serve(args.lib, args.api)
    if args.cmd == "client":
        return client(args.lib, args.api, args.shape, args.target, args.duration)
    if args.cmd == "echo":
        return echo()

    sides = args.only.split(",")
    cells = [(side, api, shape) for side in sides for api in args.apis.split(",") for shape in args.shapes.split(",")]
    best: Dict[Tuple[str, str, str, str], float] = {}
    rust: Optional[subprocess.Popen] = None
    peer: Optional[subprocess.Popen] = None
    target = echo_target = ""
    floor = args.floor and "client" in sides and "unary" in args.shapes.split(",")
    if "client" in sides:
        rust, port = _start(_taskset(1) + [os.path.join(RELEASE, "bench-server"), "--port", "0"])
        target = f"127.0.0.1:{port}"
    try:
        if floor:
            peer, port = _start(_taskset(1) + [sys.executable, __file__, "echo"])
            echo_target = f"127.0.0.1:{port}"
        for _ in range(args.reps):
            for side, api, shape in cells:
                libs = ["grpc_core", "grpcio"] + (["socket"] if floor and side == "client" and shape == "unary" else [])
                for lib in libs:  # alternated, so all see the same load
                    if side == "server":
                        v = measure_server(lib, api, shape, args.duration)
                    else:
                        v = measure_client(lib, api, shape, args.duration, echo_target if lib == "socket" else target)
                    key = (side, api, shape, lib)
                    best[key] = min(best.get(key, v), v)
    finally:
        for p in (rust, peer):
            if p is not None:
                _stop(p)
    unit = {"unary": "call", "unary32": "call", "stream": "msg"}
    print(f"| side   | api  | shape   | grpc_core CPU-µs | grpcio CPU-µs | grpcio / grpc_core |")
    print(f"|--------|------|---------|-----------------:|--------------:|-------------------:|")
    rows = []
    for side, api, shape in cells:
        ours, theirs = best[(side, api, shape, "grpc_core")], best[(side, api, shape, "grpcio")]
        rows.append({"side": side, "api": api, "shape": shape, "grpc_core": ours, "grpcio": theirs})
        print(
            f"| {side:<6} | {api:<4} | {shape:<7} | {ours:>11.1f}/{unit[shape]:<4} | {theirs:>13.1f} | {theirs / ours:>17.2f}× |"
        )
    floors = [(api, best[("client", api, "unary", "socket")]) for api in args.apis.split(",")
              if ("client", api, "unary", "socket") in best]
    if floors:
        print()
        print("Floor (same run): the client unary loop over a raw TCP echo, no HTTP/2 or gRPC.")
        print("| api  | raw socket CPU-µs/call | grpcio / 3 | grpc_core over the floor |")
        print("|------|-----------------------:|-----------:|-------------------------:|")
        for api, v in floors:
            ours, theirs = best[("client", api, "unary", "grpc_core")], best[("client", api, "unary", "grpcio")]
            rows.append({"side": "client", "api": api, "shape": "unary", "floor": v})
            print(f"| {api:<4} | {v:>22.1f} | {theirs / 3:>10.1f} | {ours - v:>24.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

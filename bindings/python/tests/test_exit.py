"""Exit while daemon threads have calls in flight: the process ends cleanly.

Before Python 3.14 a thread that re-takes the GIL after finalization began
is ended with pthread_exit, which cannot unwind through the engine's Rust
frames: glibc aborted the process ("FATAL: exception not rethrown", exit
134). grpc_core parks such threads instead."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import threading, time
    from concurrent import futures
    import grpc_core

    def slow(request, context):
        time.sleep(0.05)
        return request

    s = grpc_core.server(futures.ThreadPoolExecutor(8))
    s.add_registered_method_handlers("e.E", {"M": grpc_core.unary_unary_rpc_method_handler(slow)})
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    ch = grpc_core.insecure_channel(f"127.0.0.1:{port}")
    method = ch.unary_unary("/e.E/M")
    done = []

    def loop():
        for _ in range(10000):
            try:
                method(b"x", timeout=5)
                done.append(1)
            except grpc_core.RpcError:
                pass

    for _ in range(6):
        threading.Thread(target=loop, daemon=True).start()
    deadline = time.monotonic() + 10
    while len(done) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    print("calls", len(done), flush=True)
    # Exit now, with calls in flight on every daemon thread.
    """
)


def test_exit_with_calls_in_flight_on_daemon_threads() -> None:
    for _ in range(4):
        r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}"
        calls = int(r.stdout.split()[-1])
        assert calls >= 20, r.stdout


PLUGIN_SCRIPT = textwrap.dedent(
    """
    import threading, time
    from concurrent import futures
    import grpc_core

    s = grpc_core.server(futures.ThreadPoolExecutor(8))
    s.add_registered_method_handlers("e.E", {"M": grpc_core.unary_unary_rpc_method_handler(lambda r, c: r)})
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    done = []

    def plugin(context, callback):
        # The engine calls this on a runtime thread, with the GIL; answer later, from a timer.
        time.sleep(0.001)
        threading.Timer(0.002, callback, args=((("x-t", "1"),), None)).start()

    creds = grpc_core.composite_channel_credentials(
        grpc_core.local_channel_credentials(), grpc_core.metadata_call_credentials(plugin))
    ch = grpc_core.secure_channel(f"127.0.0.1:{port}", creds)
    method = ch.unary_unary("/e.E/M")

    def loop():
        for _ in range(10000):
            try:
                method(b"x", timeout=5)
                done.append(1)
            except grpc_core.RpcError:
                pass

    for _ in range(6):
        threading.Thread(target=loop, daemon=True).start()
    deadline = time.monotonic() + 10
    while len(done) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    print("calls", len(done), flush=True)
    # Exit now, with plugins running on engine threads.
    """
)


def test_exit_with_credential_plugins_running() -> None:
    for _ in range(4):
        r = subprocess.run([sys.executable, "-c", PLUGIN_SCRIPT], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}"
        calls = int(r.stdout.split()[-1])
        assert calls >= 20, r.stdout

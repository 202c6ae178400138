"""Fork after import: the engine's runtime starts lazily, so a child forked
after ``import grpc_core`` (before any channel or server) works."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from concurrent import futures
    import grpc_core

    pid = os.fork()
    if pid == 0:
        s = grpc_core.server(futures.ThreadPoolExecutor(2))
        s.add_registered_method_handlers(
            "f.F", {"M": grpc_core.unary_unary_rpc_method_handler(lambda r, c: b"child:" + r)})
        port = s.add_insecure_port("127.0.0.1:0")
        s.start()
        with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
            ok = ch.unary_unary("/f.F/M")(b"x", timeout=5) == b"child:x"
        s.stop(None).wait()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
    """
)


def test_fork_after_import() -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr

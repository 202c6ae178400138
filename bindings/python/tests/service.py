"""One test service, written against grpcio's API, served by either
grpc_core or grpcio (the module is a parameter)."""

from __future__ import annotations

import threading
import time
from typing import Any

SERVICE = "test.Echo"


class State:
    """What handlers saw, for tests to assert on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.callback_ran = threading.Event()
        self.cancel_seen = threading.Event()
        self.last_metadata: Any = None
        self.last_peer: str = ""
        self.last_time_remaining: Any = None


def handlers(grpc: Any, state: State) -> Any:
    def unary(request: bytes, context: Any) -> Any:
        md = dict(context.invocation_metadata())
        state.last_metadata = md
        state.last_peer = context.peer()
        state.last_time_remaining = context.time_remaining()
        cmd = request.decode(errors="replace")
        if cmd.startswith("abort:"):
            _, code, details = cmd.split(":", 2)
            context.abort(getattr(grpc.StatusCode, code), details)
        if cmd.startswith("set_code:"):
            _, code, details = cmd.split(":", 2)
            context.set_code(getattr(grpc.StatusCode, code))
            context.set_details(details)
            return b""
        if cmd == "raise":
            raise ValueError("boom")
        if cmd.startswith("sleep:"):
            context.add_callback(state.callback_ran.set)
            deadline = time.time() + float(cmd.split(":")[1])
            while time.time() < deadline:
                if not context.is_active():
                    state.cancel_seen.set()
                    return b"late"
                time.sleep(0.01)
            return b"slept"
        if cmd == "metadata":
            context.send_initial_metadata((("x-initial", "i"), ("x-initial-bin", b"\x00\x01")))
            context.set_trailing_metadata((("x-trailing", "t"), ("x-trailing-bin", b"\xff")))
            return md.get("x-echo", "none").encode()
        if cmd == "headers_then_abort":
            # Headers go out first; the failure then ends the call with trailers.
            context.send_initial_metadata((("x-initial", "sent"), ("x-initial-bin", b"\x04\x02")))
            context.set_trailing_metadata((("x-trailing", "t"),))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "after headers")
        if cmd == "abort_with_status":
            class S(grpc.Status):  # type: ignore[misc]
                code = grpc.StatusCode.PERMISSION_DENIED
                details = "nope"
                trailing_metadata = (("x-why", "because"),)

            context.abort_with_status(S())
        if cmd.startswith("big:"):
            return b"x" * int(cmd.split(":")[1])
        return b"echo:" + request

    def unary_stream(request: bytes, context: Any) -> Any:
        n, _, tail = request.decode().partition(":")
        if tail == "hfail":
            context.send_initial_metadata((("x-initial", "sent"),))
            context.set_trailing_metadata((("x-trailing", "t"),))
        for i in range(int(n)):
            if tail == "slow":
                time.sleep(0.05)
            yield f"r{i}".encode()
        if tail in ("fail", "hfail"):
            context.abort(grpc.StatusCode.DATA_LOSS, "stream failed")

    def stream_unary(requests: Any, context: Any) -> Any:
        items = [r.decode() for r in requests]
        return ",".join(items).encode()

    def stream_stream(requests: Any, context: Any) -> Any:
        for r in requests:
            if r == b"stop":
                context.abort(grpc.StatusCode.ABORTED, "stopped")
            yield b"pong:" + r

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(unary_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(stream_unary),
            "Bidi": grpc.stream_stream_rpc_method_handler(stream_stream),
        },
    )


def start_server(grpc: Any, workers: int = 8) -> Any:
    from concurrent import futures

    state = State()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((handlers(grpc, state),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, state

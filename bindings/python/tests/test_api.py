"""grpc_core client against grpc_core server: every API with real assertions."""

from __future__ import annotations

import gc
import os
import threading
import time
from concurrent import futures
from typing import Any, List

import pytest

import grpc_core
from service import SERVICE

U = f"/{SERVICE}/Unary"
SS = f"/{SERVICE}/ServerStream"
CS = f"/{SERVICE}/ClientStream"
BI = f"/{SERVICE}/Bidi"


def test_enums_match_grpcio_values() -> None:
    assert grpc_core.StatusCode.OK.value == (0, "ok")
    assert grpc_core.StatusCode.UNAVAILABLE.value == (14, "unavailable")
    assert grpc_core.StatusCode.UNAUTHENTICATED.value == (16, "unauthenticated")
    assert len(list(grpc_core.StatusCode)) == 17
    assert int(grpc_core.Compression.Gzip) == 2 and int(grpc_core.Compression.Deflate) == 1
    assert grpc_core.Compression.NoCompression == 0
    assert grpc_core.ChannelConnectivity.READY.value == (2, "ready")


def test_unary(channel: Any) -> None:
    assert channel.unary_unary(U)(b"hello") == b"echo:hello"


def test_serializers(channel: Any) -> None:
    mc = channel.unary_unary(U, request_serializer=str.encode, response_deserializer=bytes.decode)
    assert mc("text") == "echo:text"


def test_with_call_metadata(channel: Any) -> None:
    resp, call = channel.unary_unary(U).with_call(b"metadata", metadata=(("x-echo", "abc"),))
    assert resp == b"abc"
    assert call.code() is grpc_core.StatusCode.OK
    assert call.details() == ""
    initial = dict(call.initial_metadata())
    assert initial["x-initial"] == "i"
    assert initial["x-initial-bin"] == b"\x00\x01"
    trailing = dict(call.trailing_metadata())
    assert trailing["x-trailing"] == "t"
    assert trailing["x-trailing-bin"] == b"\xff"
    assert call.trailing_metadata()[0].key == "x-trailing"


def test_invocation_metadata_and_peer(channel: Any, ours: Any) -> None:
    _, state = ours
    channel.unary_unary(U)(b"x", metadata=[("x-a", "1"), ("x-b-bin", b"\x02")])
    assert state.last_metadata["x-a"] == "1"
    assert state.last_metadata["x-b-bin"] == b"\x02"
    assert state.last_peer.startswith("ipv4:127.0.0.1:")
    assert state.last_time_remaining is None
    channel.unary_unary(U)(b"x", timeout=5)
    assert 3 < state.last_time_remaining <= 5


@pytest.mark.parametrize(
    "code", [grpc_core.StatusCode.NOT_FOUND, grpc_core.StatusCode.INVALID_ARGUMENT, grpc_core.StatusCode.INTERNAL]
)
def test_abort(channel: Any, code: Any) -> None:
    with pytest.raises(grpc_core.RpcError) as ei:
        channel.unary_unary(U)(f"abort:{code.name}:went wrong".encode())
    e = ei.value
    assert isinstance(e, grpc_core.Call)
    assert e.code() is code
    assert e.details() == "went wrong"
    assert code.name in str(e)


def test_abort_with_status(channel: Any) -> None:
    with pytest.raises(grpc_core.RpcError) as ei:
        channel.unary_unary(U)(b"abort_with_status")
    assert ei.value.code() is grpc_core.StatusCode.PERMISSION_DENIED
    assert ei.value.details() == "nope"
    assert dict(ei.value.trailing_metadata())["x-why"] == "because"


def test_set_code(channel: Any) -> None:
    with pytest.raises(grpc_core.RpcError) as ei:
        channel.unary_unary(U)(b"set_code:FAILED_PRECONDITION:not yet")
    assert ei.value.code() is grpc_core.StatusCode.FAILED_PRECONDITION
    assert ei.value.details() == "not yet"


def test_handler_exception_is_unknown(channel: Any) -> None:
    with pytest.raises(grpc_core.RpcError) as ei:
        channel.unary_unary(U)(b"raise")
    assert ei.value.code() is grpc_core.StatusCode.UNKNOWN
    assert ei.value.details() == "Exception calling application: boom"


def test_unimplemented(channel: Any) -> None:
    with pytest.raises(grpc_core.RpcError) as ei:
        channel.unary_unary(f"/{SERVICE}/Nope")(b"")
    assert ei.value.code() is grpc_core.StatusCode.UNIMPLEMENTED


def test_deadline_exceeded(channel: Any) -> None:
    t0 = time.monotonic()
    with pytest.raises(grpc_core.RpcError) as ei:
        channel.unary_unary(U)(b"sleep:2", timeout=0.2)
    assert ei.value.code() is grpc_core.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 1.5


def test_server_sees_deadline_and_callbacks(ours: Any, channel: Any) -> None:
    _, state = ours
    state.callback_ran.clear()
    state.cancel_seen.clear()
    with pytest.raises(grpc_core.RpcError):
        channel.unary_unary(U)(b"sleep:3", timeout=0.2)
    assert state.cancel_seen.wait(3)
    assert state.callback_ran.wait(3)


def test_future(channel: Any) -> None:
    fut = channel.unary_unary(U).future(b"f")
    assert fut.result(timeout=5) == b"echo:f"
    assert fut.done() and not fut.running() and not fut.cancelled()
    assert fut.code() is grpc_core.StatusCode.OK
    assert fut.exception() is None
    seen = []
    fut.add_done_callback(lambda f: seen.append(f.result()))
    assert seen == [b"echo:f"]


def test_future_error_and_cancel(channel: Any, ours: Any) -> None:
    fut = channel.unary_unary(U).future(b"abort:ABORTED:x")
    exc = fut.exception(timeout=5)
    assert exc is not None and exc.code() is grpc_core.StatusCode.ABORTED
    with pytest.raises(grpc_core.RpcError):
        fut.result()
    _, state = ours
    state.cancel_seen.clear()
    slow = channel.unary_unary(U).future(b"sleep:5")
    time.sleep(0.2)
    assert slow.cancel()
    assert slow.cancelled()
    assert slow.code() is grpc_core.StatusCode.CANCELLED
    with pytest.raises(grpc_core.FutureCancelledError):
        slow.result()
    assert state.cancel_seen.wait(3)


def test_future_timeout(channel: Any) -> None:
    fut = channel.unary_unary(U).future(b"sleep:1")
    with pytest.raises(grpc_core.FutureTimeoutError):
        fut.result(timeout=0.05)
    assert fut.result(timeout=5) == b"slept"


def test_unary_stream(channel: Any) -> None:
    call = channel.unary_stream(SS)(b"5:")
    assert list(call) == [b"r0", b"r1", b"r2", b"r3", b"r4"]
    assert call.code() is grpc_core.StatusCode.OK
    assert call.trailing_metadata() == ()
    assert not call.is_active()


def test_unary_stream_error_after_messages(channel: Any) -> None:
    call = channel.unary_stream(SS)(b"2:fail")
    got = []
    with pytest.raises(grpc_core.RpcError) as ei:
        for m in call:
            got.append(m)
    assert got == [b"r0", b"r1"]
    assert ei.value is call
    assert call.code() is grpc_core.StatusCode.DATA_LOSS
    assert call.details() == "stream failed"


def test_unary_stream_cancel(channel: Any) -> None:
    call = channel.unary_stream(SS)(b"100:slow")
    assert next(call) == b"r0"
    assert call.cancel()
    with pytest.raises(grpc_core.RpcError):
        next(call)
    assert call.code() is grpc_core.StatusCode.CANCELLED
    assert call.details() == "Locally cancelled by application!"


def test_unary_stream_deadline(channel: Any) -> None:
    call = channel.unary_stream(SS)(b"100:slow", timeout=0.3)
    with pytest.raises(grpc_core.RpcError):
        list(call)
    assert call.code() is grpc_core.StatusCode.DEADLINE_EXCEEDED
    assert call.time_remaining() == 0.0


def test_stream_unary(channel: Any) -> None:
    mc = channel.stream_unary(CS)
    assert mc(iter([b"a", b"b", b"c"])) == b"a,b,c"
    resp, call = mc.with_call(iter([b"x"]))
    assert resp == b"x" and call.code() is grpc_core.StatusCode.OK
    assert mc.future(iter([b"1", b"2"])).result(5) == b"1,2"
    assert mc(iter([])) == b""


def test_stream_stream(channel: Any) -> None:
    call = channel.stream_stream(BI)(iter([b"a", b"b"]))
    assert list(call) == [b"pong:a", b"pong:b"]
    assert call.code() is grpc_core.StatusCode.OK


def test_stream_stream_ping_pong(channel: Any) -> None:
    import queue

    q: "queue.Queue[Any]" = queue.Queue()

    def requests() -> Any:
        while True:
            item = q.get()
            if item is None:
                return
            yield item

    call = channel.stream_stream(BI)(requests())
    for i in range(10):
        q.put(f"m{i}".encode())
        assert next(call) == f"pong:m{i}".encode()
    q.put(None)
    assert list(call) == []
    assert call.code() is grpc_core.StatusCode.OK


def test_stream_stream_abort(channel: Any) -> None:
    call = channel.stream_stream(BI)(iter([b"a", b"stop", b"c"]))
    assert next(call) == b"pong:a"
    with pytest.raises(grpc_core.RpcError):
        next(call)
    assert call.code() is grpc_core.StatusCode.ABORTED
    assert call.details() == "stopped"


def test_compression(channel: Any) -> None:
    assert channel.unary_unary(U)(b"z" * 1000, compression=grpc_core.Compression.Gzip) == b"echo:" + b"z" * 1000
    assert channel.unary_unary(U)(b"d", compression=grpc_core.Compression.Deflate) == b"echo:d"


def test_compressed_channel_and_server() -> None:
    s = grpc_core.server(futures.ThreadPoolExecutor(2), compression=grpc_core.Compression.Gzip)
    s.add_generic_rpc_handlers(
        [grpc_core.method_handlers_generic_handler("c.C", {"M": grpc_core.unary_unary_rpc_method_handler(
            lambda r, c: r * 2)})]
    )
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    with grpc_core.insecure_channel(f"127.0.0.1:{port}", compression=grpc_core.Compression.Gzip) as ch:
        assert ch.unary_unary("/c.C/M")(b"ab" * 500) == b"ab" * 1000
    s.stop(None).wait()


def test_max_receive_message_length(ours: Any) -> None:
    port, _ = ours
    opts = [("grpc.max_receive_message_length", 1000)]
    with grpc_core.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
        assert ch.unary_unary(U)(b"big:500") == b"x" * 500
        with pytest.raises(grpc_core.RpcError) as ei:
            ch.unary_unary(U)(b"big:5000")
        assert ei.value.code() is grpc_core.StatusCode.RESOURCE_EXHAUSTED


def test_max_send_message_length(ours: Any) -> None:
    port, _ = ours
    opts = [("grpc.max_send_message_length", 100)]
    with grpc_core.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
        with pytest.raises(grpc_core.RpcError) as ei:
            ch.unary_unary(U)(b"y" * 1000)
        assert ei.value.code() is grpc_core.StatusCode.RESOURCE_EXHAUSTED


def test_unavailable_and_wait_for_ready() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        with pytest.raises(grpc_core.RpcError) as ei:
            ch.unary_unary(U)(b"x", timeout=5)
        assert ei.value.code() is grpc_core.StatusCode.UNAVAILABLE
        with pytest.raises(grpc_core.RpcError) as ei:
            ch.unary_unary(U)(b"x", timeout=0.3, wait_for_ready=True)
        assert ei.value.code() is grpc_core.StatusCode.DEADLINE_EXCEEDED


def test_closed_channel_raises_value_error(ours: Any) -> None:
    port, _ = ours
    ch = grpc_core.insecure_channel(f"127.0.0.1:{port}")
    ch.close()
    with pytest.raises(ValueError):
        ch.unary_unary(U)(b"x")


def test_channel_ready_future(ours: Any) -> None:
    port, _ = ours
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        grpc_core.channel_ready_future(ch).result(timeout=5)
        assert ch._connectivity() is grpc_core.ChannelConnectivity.READY


def test_call_credentials(ours: Any) -> None:
    port, state = ours

    def plugin(context: Any, callback: Any) -> None:
        assert context.method_name == "Unary"
        callback((("x-plugin", "yes"),), None)

    # Plaintext carries call credentials only with local credentials (as grpcio;
    # tests/test_auth.py covers TLS and the refusal on insecure channels).
    with grpc_core.secure_channel(f"127.0.0.1:{port}", grpc_core.local_channel_credentials()) as ch:
        creds = grpc_core.composite_call_credentials(
            grpc_core.metadata_call_credentials(plugin), grpc_core.access_token_call_credentials("tok")
        )
        ch.unary_unary(U)(b"x", credentials=creds)
    assert state.last_metadata["x-plugin"] == "yes"
    assert state.last_metadata["authorization"] == "Bearer tok"


def test_bad_metadata_is_value_error(channel: Any) -> None:
    with pytest.raises(ValueError):
        channel.unary_unary(U)(b"x", metadata=(("Bad Key", "v"),))


def test_server_lifecycle() -> None:
    s = grpc_core.server(futures.ThreadPoolExecutor(2))
    gate = threading.Event()

    def slow(req: bytes, ctx: Any) -> bytes:
        gate.wait(5)
        return b"done"

    s.add_generic_rpc_handlers(
        [grpc_core.method_handlers_generic_handler("l.L", {"S": grpc_core.unary_unary_rpc_method_handler(slow)})]
    )
    port = s.add_insecure_port("[::]:0")
    assert port > 0
    s.start()
    with pytest.raises(ValueError):
        s.start()
    assert s.wait_for_termination(timeout=0.05) is True
    with grpc_core.insecure_channel(f"localhost:{port}") as ch:
        fut = ch.unary_unary("/l.L/S").future(b"")
        time.sleep(0.2)
        ev = s.stop(5)
        assert isinstance(ev, threading.Event)
        gate.set()
        assert fut.result(5) == b"done"  # in flight: finished within the grace
        assert ev.wait(5)
        assert s.wait_for_termination(timeout=1) is False
        with pytest.raises(grpc_core.RpcError) as ei:
            ch.unary_unary("/l.L/S")(b"", timeout=2)
        assert ei.value.code() is grpc_core.StatusCode.UNAVAILABLE


def test_stop_without_grace_cancels() -> None:
    s = grpc_core.server(futures.ThreadPoolExecutor(2))
    s.add_generic_rpc_handlers(
        [grpc_core.method_handlers_generic_handler(
            "l.L", {"S": grpc_core.unary_unary_rpc_method_handler(lambda r, c: time.sleep(3) or b"")})]
    )
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        fut = ch.unary_unary("/l.L/S").future(b"")
        time.sleep(0.2)
        t0 = time.monotonic()
        s.stop(None).wait(5)
        assert time.monotonic() - t0 < 2
        assert fut.exception(5).code() in (grpc_core.StatusCode.UNAVAILABLE, grpc_core.StatusCode.CANCELLED)


def test_maximum_concurrent_rpcs() -> None:
    gate = threading.Event()
    s = grpc_core.server(futures.ThreadPoolExecutor(4), maximum_concurrent_rpcs=1)
    s.add_generic_rpc_handlers(
        [grpc_core.method_handlers_generic_handler(
            "l.L", {"S": grpc_core.unary_unary_rpc_method_handler(lambda r, c: gate.wait(5) and b"ok")})]
    )
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        first = ch.unary_unary("/l.L/S").future(b"")
        time.sleep(0.2)
        with pytest.raises(grpc_core.RpcError) as ei:
            ch.unary_unary("/l.L/S")(b"")
        assert ei.value.code() is grpc_core.StatusCode.RESOURCE_EXHAUSTED
        gate.set()
        assert first.result(5) == b"ok"
    s.stop(None).wait()


def test_pool_threads_take_calls_and_stay_usable() -> None:
    """A pool thread that served a call takes the next one from the queue (for a short
    while): calls keep flowing, maximum_concurrent_rpcs still holds, work the handler
    submits to the same executor still runs, and the executor shuts down promptly."""
    pool = futures.ThreadPoolExecutor(2)
    s = grpc_core.server(pool, maximum_concurrent_rpcs=8)

    def nested(request: bytes, context: Any) -> bytes:
        return pool.submit(lambda: request + b"!").result(timeout=5)

    s.add_generic_rpc_handlers(
        [grpc_core.method_handlers_generic_handler("p.P", {
            "U": grpc_core.unary_unary_rpc_method_handler(lambda r, c: r),
            "N": grpc_core.unary_unary_rpc_method_handler(nested),
        })]
    )
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        u, n = ch.unary_unary("/p.P/U"), ch.unary_unary("/p.P/N")
        for i in range(200):
            assert u(str(i).encode(), timeout=5) == str(i).encode()
        for _ in range(5):
            assert n(b"x", timeout=5) == b"x!"
        fs = [u.future(b"c", timeout=5) for _ in range(8)]  # at most maximum_concurrent_rpcs
        assert [f.result() for f in fs] == [b"c"] * 8
    s.stop(None).wait(5)
    t0 = time.monotonic()
    pool.shutdown(wait=True)
    assert time.monotonic() - t0 < 2


def test_server_runs_while_every_pool_thread_is_in_python() -> None:
    """The sync server's pool threads drive its connections while they wait for calls;
    with its only pool thread busy in a handler (not waiting on the call), the server
    still sees the call's deadline pass and still takes the next call."""
    s = grpc_core.server(futures.ThreadPoolExecutor(1))
    seen: List[float] = []

    def hold(request: bytes, context: Any) -> bytes:
        t0 = time.monotonic()
        while context.is_active() and time.monotonic() - t0 < 10:
            time.sleep(0.005)
        seen.append(time.monotonic() - t0)
        return request

    s.add_generic_rpc_handlers(
        [grpc_core.method_handlers_generic_handler("b.B", {
            "Hold": grpc_core.unary_unary_rpc_method_handler(hold),
            "U": grpc_core.unary_unary_rpc_method_handler(lambda r, c: r),
        })]
    )
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        for _ in range(3):
            with pytest.raises(grpc_core.RpcError) as ei:
                ch.unary_unary("/b.B/Hold")(b"x", timeout=0.3)
            assert ei.value.code() is grpc_core.StatusCode.DEADLINE_EXCEEDED
            assert ch.unary_unary("/b.B/U")(b"next", timeout=10) == b"next"
    s.stop(None).wait(5)
    assert len(seen) == 3 and max(seen) < 9, seen


def test_handler_lookup_order_and_dynamic_generic_handlers() -> None:
    """Registered methods come before generic handlers, the first generic handler that
    has a method wins, handlers added after a call are seen, and a generic handler of
    the application's own still sees each call's method and metadata."""

    def reply(text: bytes) -> Any:
        return grpc_core.unary_unary_rpc_method_handler(lambda r, c: text)

    class Routed(grpc_core.GenericRpcHandler):
        def service(self, details: Any) -> Any:
            md = dict(details.invocation_metadata)
            if details.method == "/s.S/C":
                return reply(b"routed:" + md.get("x-route", "none").encode())
            return None

    for custom in (False, True):
        s = grpc_core.server(futures.ThreadPoolExecutor(2))
        first = grpc_core.method_handlers_generic_handler("s.S", {"A": reply(b"g1")})
        second = grpc_core.method_handlers_generic_handler("s.S", {"A": reply(b"g2"), "B": reply(b"g2b")})
        s.add_generic_rpc_handlers([Routed(), first, second] if custom else [first, second])
        s.add_registered_method_handlers("s.S", {"B": reply(b"registered")})
        port = s.add_insecure_port("127.0.0.1:0")
        s.start()
        with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert ch.unary_unary("/s.S/A")(b"", timeout=5) == b"g1"
            assert ch.unary_unary("/s.S/B")(b"", timeout=5) == b"registered"
            with pytest.raises(grpc_core.RpcError) as ei:
                ch.unary_unary("/s.S/D")(b"", timeout=5)
            assert ei.value.code() is grpc_core.StatusCode.UNIMPLEMENTED
            s.add_generic_rpc_handlers([grpc_core.method_handlers_generic_handler("s.S", {"D": reply(b"late")})])
            assert ch.unary_unary("/s.S/D")(b"", timeout=5) == b"late"
            s.add_registered_method_handlers("s.S", {"A": reply(b"registered late")})
            assert ch.unary_unary("/s.S/A")(b"", timeout=5) == b"registered late"
            c = ch.unary_unary("/s.S/C")
            if custom:
                assert c(b"", metadata=(("x-route", "a"),), timeout=5) == b"routed:a"
                assert c(b"", metadata=(("x-route", "b"),), timeout=5) == b"routed:b"
            else:
                with pytest.raises(grpc_core.RpcError):
                    c(b"", timeout=5)
        s.stop(None).wait(5)


def _server_driver_threads() -> int:
    """The sync servers' runtime driver threads of this process (Linux names them)."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                n += f.read().startswith("grpc-core-srv-d")
        except OSError:
            pass
    return n


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_sync_server_runtime_threads_end_with_the_server() -> None:
    """Each sync server has one runtime driver thread; it ends when the server stops,
    and when a server that never stopped is garbage-collected."""
    before = _server_driver_threads()
    stopped = grpc_core.server(futures.ThreadPoolExecutor(1))
    stopped.add_insecure_port("127.0.0.1:0")
    stopped.start()
    dropped = [grpc_core.server(futures.ThreadPoolExecutor(1)) for _ in range(3)]
    for s in dropped:
        s.add_insecure_port("127.0.0.1:0")
    assert _server_driver_threads() == before + 4
    stopped.stop(None).wait(5)
    del dropped, s
    gc.collect()
    deadline = time.monotonic() + 5
    while _server_driver_threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _server_driver_threads() == before


def test_server_interceptor() -> None:
    seen = []

    class Interceptor(grpc_core.ServerInterceptor):
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            seen.append(details.method)
            if dict(details.invocation_metadata).get("x-deny"):
                return grpc_core.unary_unary_rpc_method_handler(
                    lambda r, c: c.abort(grpc_core.StatusCode.PERMISSION_DENIED, "denied"))
            return continuation(details)

    s = grpc_core.server(futures.ThreadPoolExecutor(2), interceptors=[Interceptor()])
    s.add_registered_method_handlers("i.I", {"M": grpc_core.unary_unary_rpc_method_handler(lambda r, c: b"ok")})
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        assert ch.unary_unary("/i.I/M")(b"") == b"ok"
        with pytest.raises(grpc_core.RpcError) as ei:
            ch.unary_unary("/i.I/M")(b"", metadata=(("x-deny", "1"),))
        assert ei.value.code() is grpc_core.StatusCode.PERMISSION_DENIED
    assert seen == ["/i.I/M", "/i.I/M"]
    s.stop(None).wait()


def test_context_cancel_from_server(channel: Any) -> None:
    s = grpc_core.server(futures.ThreadPoolExecutor(2))

    def h(r: bytes, c: Any) -> bytes:
        c.cancel()
        return b"ignored"

    s.add_registered_method_handlers("k.K", {"M": grpc_core.unary_unary_rpc_method_handler(h)})
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        with pytest.raises(grpc_core.RpcError) as ei:
            ch.unary_unary("/k.K/M")(b"")
        assert ei.value.code() is grpc_core.StatusCode.CANCELLED
    s.stop(None).wait()


def test_tls_and_mtls(certs: dict) -> None:
    s = grpc_core.server(futures.ThreadPoolExecutor(2))
    s.add_registered_method_handlers(
        "t.T", {"M": grpc_core.unary_unary_rpc_method_handler(lambda r, c: str(bool(c.peer_identities())).encode())}
    )
    creds = grpc_core.ssl_server_credentials([(certs["server.key"], certs["server.pem"])])
    port = s.add_secure_port("127.0.0.1:0", creds)
    mcreds = grpc_core.ssl_server_credentials(
        [(certs["server.key"], certs["server.pem"])], root_certificates=certs["ca.pem"], require_client_auth=True
    )
    mport = s.add_secure_port("127.0.0.1:0", mcreds)
    s.start()
    ccreds = grpc_core.ssl_channel_credentials(root_certificates=certs["ca.pem"])
    with grpc_core.secure_channel(f"localhost:{port}", ccreds) as ch:
        assert ch.unary_unary("/t.T/M")(b"") == b"False"
    opts = [("grpc.ssl_target_name_override", "foo.test.example")]
    with grpc_core.secure_channel(f"127.0.0.1:{port}", ccreds, options=opts) as ch:
        assert ch.unary_unary("/t.T/M")(b"") == b"False"
    mc = grpc_core.ssl_channel_credentials(certs["ca.pem"], certs["client.key"], certs["client.pem"])
    with grpc_core.secure_channel(f"localhost:{mport}", mc) as ch:
        assert ch.unary_unary("/t.T/M")(b"") == b"True"
    with grpc_core.secure_channel(f"localhost:{mport}", ccreds) as ch:
        with pytest.raises(grpc_core.RpcError) as ei:
            ch.unary_unary("/t.T/M")(b"", timeout=5)
        assert ei.value.code() is grpc_core.StatusCode.UNAVAILABLE
    with grpc_core.secure_channel(f"localhost:{port}", grpc_core.ssl_channel_credentials()) as ch:
        with pytest.raises(grpc_core.RpcError) as ei:  # untrusted CA
            ch.unary_unary("/t.T/M")(b"", timeout=5)
        assert ei.value.code() is grpc_core.StatusCode.UNAVAILABLE
    s.stop(None).wait()


def test_gil_released_while_waiting(channel: Any) -> None:
    counter = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        before = counter[0]
        channel.unary_unary(U)(b"sleep:0.5")
        assert counter[0] - before > 1000
    finally:
        stop.set()
        t.join()


def test_many_concurrent_calls(channel: Any) -> None:
    mc = channel.unary_unary(U)
    with futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: mc(str(i).encode()), range(200)))
    assert results == [f"echo:{i}".encode() for i in range(200)]


def test_close_ends_the_calls_of_many_waiting_threads() -> None:
    """Several threads in unary calls on one channel at once (all but the first wait for
    their call as a task of the channel's runtime) all end when the channel is closed:
    an RpcError each (CANCELLED or UNAVAILABLE), none hangs, none gets a response."""
    arrived, gate = threading.Semaphore(0), threading.Event()

    def hold(request: bytes, context: Any) -> bytes:
        arrived.release()
        gate.wait(20)
        return b"late"

    s = grpc_core.server(futures.ThreadPoolExecutor(8))
    s.add_registered_method_handlers("h.H", {"Hold": grpc_core.unary_unary_rpc_method_handler(hold)})
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    try:
        ch = grpc_core.insecure_channel(f"127.0.0.1:{port}")
        mc = ch.unary_unary("/h.H/Hold")
        outcomes: List[Any] = []

        def call() -> None:
            try:
                outcomes.append(mc(b"", timeout=30))
            except grpc_core.RpcError as e:
                outcomes.append(e.code())

        threads = [threading.Thread(target=call) for _ in range(6)]
        for t in threads:
            t.start()
        for _ in threads:
            assert arrived.acquire(timeout=10), "a call did not reach the server"
        ch.close()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads), "a call did not end with the channel"
        assert len(outcomes) == 6
        assert all(o in (grpc_core.StatusCode.CANCELLED, grpc_core.StatusCode.UNAVAILABLE) for o in outcomes), outcomes
    finally:
        gate.set()
        s.stop(None).wait(10)


def test_subscribe_connectivity(ours: Any) -> None:
    port, _ = ours
    seen: list = []
    ready = threading.Event()

    def cb(state: Any) -> None:
        seen.append(state)
        if state is grpc_core.ChannelConnectivity.READY:
            ready.set()

    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        ch.subscribe(cb, try_to_connect=True)
        assert ready.wait(5)
        assert seen[0] in (grpc_core.ChannelConnectivity.IDLE, grpc_core.ChannelConnectivity.CONNECTING,
                           grpc_core.ChannelConnectivity.READY)
        ch.unsubscribe(cb)


def test_client_call_add_callback(channel: Any) -> None:
    done = threading.Event()
    call = channel.unary_stream(SS)(b"2:")
    assert call.add_callback(done.set)
    assert list(call) == [b"r0", b"r1"]
    assert done.is_set()
    assert not call.add_callback(done.set)


def test_composite_channel_credentials(certs: dict) -> None:
    s = grpc_core.server(futures.ThreadPoolExecutor(2))
    s.add_registered_method_handlers("a.A", {"M": grpc_core.unary_unary_rpc_method_handler(
        lambda r, c: dict(c.invocation_metadata()).get("authorization", "").encode())})
    port = s.add_secure_port("127.0.0.1:0", grpc_core.ssl_server_credentials([(certs["server.key"], certs["server.pem"])]))
    s.start()
    creds = grpc_core.composite_channel_credentials(
        grpc_core.ssl_channel_credentials(certs["ca.pem"]), grpc_core.access_token_call_credentials("secret"))
    with grpc_core.secure_channel(f"localhost:{port}", creds) as ch:
        assert ch.unary_unary("/a.A/M")(b"") == b"Bearer secret"
    s.stop(None).wait()

"""grpc_core.aio on the engine's completion queue: no thread per call,
streaming in both directions, metadata, statuses, cancellation, and the
aio server's context API, against our servers and grpcio's aio client."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import weakref
from typing import Any, List

import pytest

import grpc
import grpc_core
from grpc_core import aio
from service import SERVICE

U = f"/{SERVICE}/Unary"
SS = f"/{SERVICE}/ServerStream"
CS = f"/{SERVICE}/ClientStream"
BI = f"/{SERVICE}/Bidi"


async def _ctx_server() -> Any:
    """An aio server whose handlers use the context API (read/write/metadata/callbacks)."""
    seen: dict = {"callbacks": 0}

    async def unary(request: bytes, context: Any) -> bytes:
        if request == b"metadata":
            await context.send_initial_metadata((("x-i", "1"), ("x-i-bin", b"\x01\x02")))
            context.set_trailing_metadata((("x-t", "2"),))
            return b"md"
        if request == b"deadline":
            return f"{context.time_remaining():.1f}".encode()
        if request == b"callback":
            context.add_callback(lambda: seen.__setitem__("callbacks", seen["callbacks"] + 1))
            return b"cb"
        if request == b"set_code":
            context.set_code(grpc_core.StatusCode.FAILED_PRECONDITION)
            context.set_details("not yet")
            return b""
        return b"u:" + request

    async def server_stream(request: bytes, context: Any) -> None:
        # The write() style, not a generator.
        for i in range(int(request)):
            await context.write(b"w%d" % i)
        if int(request) == 2:
            await context.abort(grpc_core.StatusCode.OUT_OF_RANGE, "two is too many", (("x-why", "2"),))

    async def client_stream(requests: Any, context: Any) -> bytes:
        got: List[bytes] = []
        while True:
            m = await context.read()
            if m is aio.EOF:
                break
            got.append(m)
        return b"|".join(got)

    async def bidi(requests: Any, context: Any) -> Any:
        async for r in requests:
            if r == b"boom":
                raise RuntimeError("bidi boom")
            yield r.upper()

    s = aio.server()
    s.add_generic_rpc_handlers([grpc_core.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc_core.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc_core.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc_core.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc_core.stream_stream_rpc_method_handler(bidi),
    })])
    port = s.add_insecure_port("127.0.0.1:0")
    await s.start()
    return s, port, seen


def test_aio_calls_take_no_thread_each() -> None:
    async def main() -> None:
        s, port, _ = await _ctx_server()
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert await ch.unary_unary(U)(b"warm") == b"u:warm"
            before = threading.active_count()
            results = await asyncio.gather(*(ch.unary_unary(U)(b"%d" % i) for i in range(300)))
            assert results == [b"u:%d" % i for i in range(300)]
            async def collect() -> List[bytes]:
                return [m async for m in ch.unary_stream(SS)(b"3")]

            streams = await asyncio.gather(*(collect() for _ in range(50)))
            assert streams == [[b"w0", b"w1", b"w2"]] * 50
            assert threading.active_count() <= before, "calls started threads"
        await s.stop(None)

    asyncio.run(main())


LOOPS = ["asyncio", "uvloop"]


def _run_on(kind: str, main: Any) -> None:
    """Runs ``main()`` to completion on a new loop of ``kind``: asyncio's own, or
    uvloop's (libuv; ``add_reader`` is all the loop-driven runtimes need of a loop)."""
    if kind == "asyncio":
        asyncio.run(main())
        return
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:  # what asyncio.run does at the end: the tasks left are cancelled first
        left = asyncio.all_tasks(loop)
        for t in left:
            t.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("kind", LOOPS)
def test_aio_server_runtime_runs_in_turns_of_its_loop(kind: str) -> None:
    """The aio server's runtime is driven by the loop that started it (its epoll
    descriptor is one of the loop's readers): calls, streams and many calls at once
    are served; a deadline passes on the server while the loop only sleeps; a sync
    client in another thread is served while the loop waits on it; stop unregisters
    the descriptor. The same on uvloop's loop."""
    import time

    seen: List[Any] = []

    async def slow(request: bytes, context: Any) -> bytes:
        context.add_callback(lambda: seen.append(time.monotonic()))
        await asyncio.sleep(5)
        return request

    async def main() -> None:
        s, port, _ = await _ctx_server()
        s.add_generic_rpc_handlers([grpc_core.method_handlers_generic_handler("slow.S", {
            "Slow": grpc_core.unary_unary_rpc_method_handler(slow),
        })])
        fd = s._drive_fd
        assert isinstance(fd, int)
        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
        loop = asyncio.get_running_loop()
        # The loop runs the turns: the reader fires (counted here) and drives the queue.
        drives: List[int] = []
        queue = s._queue
        loop.remove_reader(fd)
        loop.add_reader(fd, lambda: drives.append(queue.drive()))
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            results = await asyncio.gather(*(ch.unary_unary(U)(b"%d" % i) for i in range(200)))
            assert results == [b"u:%d" % i for i in range(200)]
            assert [m async for m in ch.unary_stream(SS)(b"4")] == [b"w0", b"w1", b"w2", b"w3"]
            t0 = time.monotonic()
            with pytest.raises(aio.AioRpcError) as ei:
                await ch.unary_unary("/slow.S/Slow")(b"x", timeout=0.2)
            assert ei.value.code() is grpc_core.StatusCode.DEADLINE_EXCEEDED
        # A sync client on another thread, the loop waiting for it in an executor.
        def sync_calls() -> List[bytes]:
            with grpc_core.insecure_channel(f"127.0.0.1:{port}") as sch:
                return [sch.unary_unary(U)(b"s%d" % i, timeout=5) for i in range(20)]

        assert await loop.run_in_executor(None, sync_calls) == [b"u:s%d" % i for i in range(20)]
        while not seen and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
        assert seen and seen[0] - t0 < 3, "the server did not see the deadline pass"
        assert len(drives) > 0 and sum(drives) > 0, "the loop did not run the server's runtime"
        await s.stop(None)
        assert s._drive_fd is None

    _run_on(kind, main)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("kind", LOOPS)
def test_aio_channel_runtime_runs_in_turns_of_its_loop(ours: Any, kind: str) -> None:
    """The channels made in a running loop share that loop's runtime (its epoll
    descriptor is a reader of the loop); one made outside a loop runs on the engine's
    runtime; both serve every call kind, and closing one channel leaves the others of
    the loop working. The same on uvloop's loop."""
    port, _ = ours
    outside = aio.insecure_channel(f"127.0.0.1:{port}")
    assert outside._sync._native.runtime_fd() is None

    async def main() -> None:
        cq = aio._cq()
        fd = cq.runtime_fd()
        assert isinstance(fd, int)
        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
        # The loop runs the turns: the reader fires (counted here) and drives the runtime.
        drives: List[int] = []
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        loop.add_reader(fd, lambda: drives.append(cq.drive()))
        first, second = aio.insecure_channel(f"127.0.0.1:{port}"), aio.insecure_channel(f"127.0.0.1:{port}")
        assert first._sync._native.runtime_fd() == fd == second._sync._native.runtime_fd()
        for ch in (first, outside, second):
            got = await asyncio.gather(*(ch.unary_unary(U)(b"%d" % i, timeout=10) for i in range(100)))
            assert len(got) == 100
            assert len([m async for m in ch.unary_stream(SS)(b"3", timeout=10)]) == 3
            await ch.close()
            with pytest.raises(Exception):
                await ch.unary_unary(U)(b"closed", timeout=10)
        assert len(drives) > 0 and sum(drives) > 0, "the loop did not run the channels' runtime"

    _run_on(kind, main)


class _Ready:
    """Stands in for a loop's queue of ready callbacks: its length says "more are ready"
    on every look but each ``every``-th (0: on every look)."""

    def __init__(self, every: int) -> None:
        self.every, self.looks = every, 0

    def __len__(self) -> int:
        self.looks += 1
        return 0 if self.every and self.looks % self.every == 0 else 1


@pytest.mark.parametrize("every", [0, 1, 3])
def test_aio_calls_started_while_the_loop_is_busy_wait_for_one_turn(ours: Any, monkeypatch: Any, every: int) -> None:
    """A call started from the loop while more callbacks are ready is only queued: the
    next turn starts it with the others (one write for a gather). Here the loop's queue
    of ready callbacks is replaced by one that is never empty (every call queued, started
    by the loop's reader on the runtime's descriptor), always empty (every call starts in
    a turn of its own) or empty on every third look (the last call of a batch starts the
    queued ones in its turn): every call kind completes, each unary response the one for
    its own request; an operation cancelled at once (while queued, when it is) ends
    CANCELLED from the engine's side, the calls made with it do not; and the completion
    queue holds the loop's real queue weakly."""
    port, _ = ours
    real = aio._native.CompletionQueue
    seen: List[Any] = []
    fake = _Ready(every)

    def make(loop_driven: bool, ready: Any = None) -> Any:
        seen.append(ready)
        return real(loop_driven, lambda: fake)

    monkeypatch.setattr(aio._native, "CompletionQueue", make)

    async def main() -> None:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary(U)
            # The loop's first turn records its thread: only then are calls queued.
            assert await call(b"warm", timeout=10) == b"echo:warm"
            looks = fake.looks
            got = await asyncio.gather(*(call(b"%d" % i, timeout=10) for i in range(64)))
            assert got == [b"echo:%d" % i for i in range(64)]
            assert fake.looks >= looks + 64, "the loop's queue was not looked at"
            assert await call(b"alone", timeout=10) == b"echo:alone"
            assert len([m async for m in ch.unary_stream(SS)(b"3", timeout=10)]) == 3
            # The native operation cancelled right after it was made: queued (every
            # look says busy), its future ends CANCELLED (the engine dropped it before
            # it started), not with the response. Started at once, it may have ended
            # in the turn that started it (the server is in this process).
            fut = asyncio.get_running_loop().create_future()
            op = aio._native.channel_unary(aio._cq(), fut, ch._sync._native, U, b"doomed", 10.0)
            kept = call(b"kept", timeout=10)
            op.cancel()
            try:
                result = await fut
            except aio._native.RpcStatus as e:
                assert e.args[0] == grpc_core.StatusCode.CANCELLED.value[0]
            else:
                assert every != 0, f"a queued operation cancelled at once ended with {result!r}"
                assert result[0] == b"echo:doomed"
            assert await kept == b"echo:kept"
            assert await call(b"after", timeout=10) == b"echo:after"
        assert len(seen) == 1 and seen[0]() is asyncio.get_running_loop()._ready  # type: ignore[attr-defined]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_aio_loop_left_unclosed_is_collected(ours: Any) -> None:
    """A loop that made calls and is then dropped without being closed is collected: its
    completion queue (which looks at the loop's queue of ready callbacks) does not keep
    it alive."""
    port, _ = ours

    async def main() -> None:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert await asyncio.gather(*(ch.unary_unary(U)(b"%d" % i, timeout=10) for i in range(8)))

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    loop.call_soon(int)  # a handle left in the loop's queue (it refers to the loop)
    gone = weakref.ref(loop)
    del loop
    for _ in range(3):
        gc.collect()
    assert gone() is None, "the loop is still referenced"


def test_aio_loop_turn_with_nothing_ready_returns(ours: Any) -> None:
    """A turn the loop starts when the runtime's descriptor is no longer readable
    (another turn took its events first) returns at once: the first look skips the
    readiness check but only polls the runtime's I/O without blocking. Hundreds of such
    turns, with a connection and its timers on the runtime, all return; a turn that
    blocked would hold the loop thread (the test thread gives up on it)."""
    port, _ = ours
    done: List[int] = []

    def run() -> None:
        async def main() -> None:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                assert await ch.unary_unary(U)(b"warm", timeout=10)
                cq = aio._cq()
                for _ in range(500):
                    cq.drive()
                done.append(1)
                assert await ch.unary_unary(U)(b"after", timeout=10)
                done.append(2)

        asyncio.run(main())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert done == [1, 2]


def test_aio_server_unary_request_that_comes_after_its_headers() -> None:
    """A unary handler whose request message arrives well after the call's headers (a
    client-streaming client on a unary method) still gets it: the server waits for it."""

    async def main() -> None:
        s, port, _ = await _ctx_server()
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:

            async def late() -> Any:
                await asyncio.sleep(0.3)
                yield b"late"

            assert await ch.stream_unary(U)(late(), timeout=10) == b"u:late"
        await s.stop(None)

    asyncio.run(main())


def test_aio_client_streaming_calls_against_sync_server(ours: Any) -> None:
    port, _ = ours

    async def main() -> None:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary(U)(b"metadata", metadata=(("x-echo", "e"),))
            assert await call == b"e"
            initial = dict(await call.initial_metadata())
            assert initial["x-initial"] == "i" and initial["x-initial-bin"] == b"\x00\x01"
            trailing = dict(await call.trailing_metadata())
            assert trailing["x-trailing"] == "t" and trailing["x-trailing-bin"] == b"\xff"

            stream = ch.unary_stream(SS)(b"3:fail")
            got = []
            with pytest.raises(aio.AioRpcError) as ei:
                async for m in stream:
                    got.append(m)
            assert got == [b"r0", b"r1", b"r2"]
            assert ei.value.code() is grpc_core.StatusCode.DATA_LOSS and ei.value.details() == "stream failed"
            assert await stream.code() is grpc_core.StatusCode.DATA_LOSS

            bidi = ch.stream_stream(BI)()
            await bidi.write(b"a")
            assert await bidi.read() == b"pong:a"
            await bidi.write(b"b")
            assert await bidi.read() == b"pong:b"
            await bidi.done_writing()
            assert await bidi.read() is aio.EOF
            assert await bidi.code() is grpc_core.StatusCode.OK

            bidi = ch.stream_stream(BI)(iter([b"x", b"stop", b"y"]))
            assert await bidi.read() == b"pong:x"
            with pytest.raises(aio.AioRpcError) as ei:
                await bidi.read()
            assert ei.value.code() is grpc_core.StatusCode.ABORTED

            up = ch.stream_unary(CS)()
            await up.write(b"x")
            await up.write(b"y")
            await up.done_writing()
            assert await up == b"x,y"
            assert await ch.stream_unary(CS)([b"a", b"b"]) == b"a,b"

            with pytest.raises(aio.AioRpcError) as ei:
                await ch.unary_unary("/no.Such/Method")(b"")
            assert ei.value.code() is grpc_core.StatusCode.UNIMPLEMENTED
            with pytest.raises(aio.AioRpcError) as ei:
                async for _ in ch.unary_stream(SS)(b"100:slow", timeout=0.2):
                    pass
            assert ei.value.code() is grpc_core.StatusCode.DEADLINE_EXCEEDED

            done: List[Any] = []
            call = ch.unary_unary(U)(b"cb")
            call.add_done_callback(done.append)
            assert await call == b"echo:cb"
            assert done == [call] and call.done()
            call.add_done_callback(done.append)  # after the end: runs at once
            assert done == [call, call]
            assert call.time_remaining() is None  # no timeout, no deadline
            timed = ch.unary_unary(U)(b"t", timeout=30)
            assert 25 < timed.time_remaining() <= 30
            assert await timed == b"echo:t" and await timed.code() is grpc_core.StatusCode.OK
            assert 0 < timed.time_remaining() <= 30

    asyncio.run(main())


def test_aio_cancel_reaches_the_server(ours: Any) -> None:
    port, state = ours

    async def main() -> None:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            state.cancel_seen.clear()
            call = ch.unary_unary(U)(b"sleep:3")
            await asyncio.sleep(0.2)
            assert call.cancel()
            assert not call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert await call.code() is grpc_core.StatusCode.CANCELLED
            assert call.cancelled()
            t0 = time.monotonic()
            while not state.cancel_seen.is_set() and time.monotonic() - t0 < 2.5:
                await asyncio.sleep(0.02)
            assert state.cancel_seen.is_set(), "the server never saw the cancellation"

            # Cancelling the task that awaits a call cancels the call.
            state.cancel_seen.clear()
            task = asyncio.ensure_future(ch.unary_unary(U)(b"sleep:3"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            t0 = time.monotonic()
            while not state.cancel_seen.is_set() and time.monotonic() - t0 < 2.5:
                await asyncio.sleep(0.02)
            assert state.cancel_seen.is_set(), "the server never saw the task's cancellation"

    asyncio.run(main())


def test_aio_server_context_api_with_both_clients() -> None:
    async def main() -> None:
        s, port, seen = await _ctx_server()
        try:
            for lib in (aio, grpc.aio):
                async with lib.insecure_channel(f"127.0.0.1:{port}") as ch:
                    call = ch.unary_unary(U)(b"metadata")
                    assert await call == b"md"
                    initial = dict(await call.initial_metadata())
                    assert initial["x-i"] == "1" and initial["x-i-bin"] == b"\x01\x02"
                    assert dict(await call.trailing_metadata())["x-t"] == "2"
                    remaining = float(await ch.unary_unary(U)(b"deadline", timeout=5))
                    assert 3.0 < remaining <= 5.0
                    with pytest.raises(lib.AioRpcError) as ei:
                        await ch.unary_unary(U)(b"set_code")
                    assert ei.value.code().value[0] == grpc_core.StatusCode.FAILED_PRECONDITION.value[0]
                    assert ei.value.details() == "not yet"

                    assert [m async for m in ch.unary_stream(SS)(b"3")] == [b"w0", b"w1", b"w2"]
                    stream = ch.unary_stream(SS)(b"2")
                    assert await stream.read() == b"w0"
                    assert await stream.read() == b"w1"
                    with pytest.raises(lib.AioRpcError) as ei:
                        await stream.read()
                    assert ei.value.code().value[0] == grpc_core.StatusCode.OUT_OF_RANGE.value[0]
                    assert ei.value.details() == "two is too many"
                    assert dict(ei.value.trailing_metadata())["x-why"] == "2"

                    async def reqs() -> Any:
                        for r in (b"p", b"q", b"r"):
                            yield r

                    assert await ch.stream_unary(CS)(reqs()) == b"p|q|r"
                    assert [m async for m in ch.stream_stream(BI)(reqs())] == [b"P", b"Q", b"R"]
                    with pytest.raises(lib.AioRpcError) as ei:
                        async for _ in ch.stream_stream(BI)(iter([b"ok", b"boom"])):
                            pass
                    assert ei.value.code().value[0] == grpc_core.StatusCode.UNKNOWN.value[0]
                    assert "bidi boom" in (ei.value.details() or "")

            before = seen["callbacks"]
            async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                assert await ch.unary_unary(U)(b"callback") == b"cb"
            t0 = time.monotonic()
            while seen["callbacks"] == before and time.monotonic() - t0 < 2:
                await asyncio.sleep(0.01)
            assert seen["callbacks"] == before + 1
        finally:
            await s.stop(None)

    asyncio.run(main())


def test_aio_loops_in_several_threads_each_get_their_results(ours: Any) -> None:
    """Each event loop has its own completion queue: calls made on loops in
    four threads at once resolve on their own loop, none is lost."""
    port, _ = ours
    results: dict = {}

    def run(k: int) -> None:
        async def main() -> List[bytes]:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                unary = await asyncio.gather(*(ch.unary_unary(U)(b"%d-%d" % (k, i)) for i in range(40)))
                streamed = [m async for m in ch.unary_stream(SS)(b"3")]
                return list(unary) + streamed

        results[k] = asyncio.run(main())

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for k in range(4):
        assert results.get(k) == [b"echo:%d-%d" % (k, i) for i in range(40)] + [b"r0", b"r1", b"r2"], k


def test_aio_serializer_failures_end_the_call_internal(ours: Any) -> None:
    port, _ = ours

    def bad(_: Any) -> bytes:
        raise ValueError("cannot serialize")

    async def main() -> None:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            for call in (ch.unary_unary(U, request_serializer=bad)(b"x"), ch.unary_stream(SS, request_serializer=bad)(b"1")):
                with pytest.raises(aio.AioRpcError) as ei:
                    if hasattr(call, "read"):
                        await call.read()
                    else:
                        await call
                assert ei.value.code() is grpc_core.StatusCode.INTERNAL
                assert ei.value.details() == "Exception serializing request!"
                assert await call.code() is grpc_core.StatusCode.INTERNAL
            # The channel still works.
            assert await ch.unary_unary(U)(b"ok") == b"echo:ok"

    asyncio.run(main())


def test_aio_close_and_stop_with_calls_in_flight() -> None:
    """Closing a channel ends its calls in flight; stop(grace) lets a running
    aio handler finish within the grace and the client gets its response."""

    async def main() -> None:
        release = asyncio.Event()

        async def slow(request: bytes, context: Any) -> bytes:
            await asyncio.wait_for(release.wait(), 5)
            return b"done:" + request

        s = aio.server()
        s.add_generic_rpc_handlers([grpc_core.method_handlers_generic_handler(SERVICE, {
            "Unary": grpc_core.unary_unary_rpc_method_handler(slow),
        })])
        port = s.add_insecure_port("127.0.0.1:0")
        await s.start()

        ch = aio.insecure_channel(f"127.0.0.1:{port}")
        call = ch.unary_unary(U)(b"a", timeout=10)
        await asyncio.sleep(0.2)
        await ch.close()
        with pytest.raises((aio.AioRpcError, asyncio.CancelledError)):
            await asyncio.wait_for(call, 5)
        assert (await call.code()) in (grpc_core.StatusCode.CANCELLED, grpc_core.StatusCode.UNAVAILABLE)

        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch2:
            inflight = ch2.unary_unary(U)(b"b", timeout=10)
            await asyncio.sleep(0.2)
            stopping = asyncio.ensure_future(s.stop(3.0))
            await asyncio.sleep(0.2)
            release.set()
            assert await asyncio.wait_for(inflight, 5) == b"done:b"
            await asyncio.wait_for(stopping, 10)

    asyncio.run(main())


class _AddMetadata(aio.UnaryUnaryClientInterceptor, aio.StreamStreamClientInterceptor):
    def __init__(self, key: str, value: str, log: List[str]) -> None:
        self.key, self.value, self.log = key, value, log

    def _details(self, d: Any) -> Any:
        return d._replace(metadata=tuple(d.metadata or ()) + ((self.key, self.value),))

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        self.log.append(f"uu:{self.key}:{client_call_details.method}")
        return await continuation(self._details(client_call_details), request)

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        self.log.append(f"ss:{self.key}")
        return await continuation(self._details(client_call_details), request_iterator)


class _Cached(aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        if request == b"cached":
            return b"from cache"
        call = await continuation(client_call_details, request)
        return call


class _Upper(aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        call = await continuation(client_call_details, request)

        async def upper() -> Any:
            async for m in call:
                yield m.upper()

        return upper()


def test_aio_client_interceptors(ours: Any) -> None:
    port, state = ours
    log: List[str] = []

    async def main() -> None:
        interceptors = [_AddMetadata("x-first", "1", log), _AddMetadata("x-echo", "via", log), _Cached(), _Upper()]
        async with aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors) as ch:
            call = ch.unary_unary(U)(b"metadata")
            assert await call == b"via"
            assert await call.code() is grpc_core.StatusCode.OK
            assert dict(await call.initial_metadata())["x-initial"] == "i"
            assert state.last_metadata["x-first"] == "1"
            assert log == [f"uu:x-first:{U}", f"uu:x-echo:{U}"]

            cached = ch.unary_unary(U)(b"cached")
            assert await cached == b"from cache"
            assert await cached.code() is grpc_core.StatusCode.OK

            with pytest.raises(aio.AioRpcError) as ei:
                await ch.unary_unary(U)(b"abort:NOT_FOUND:gone")
            assert ei.value.code() is grpc_core.StatusCode.NOT_FOUND

            assert [m async for m in ch.unary_stream(SS)(b"2")] == [b"R0", b"R1"]

            bidi = ch.stream_stream(BI)()
            await bidi.write(b"q")
            assert await bidi.read() == b"pong:q"
            await bidi.done_writing()
            assert await bidi.read() is aio.EOF
            assert log[-1] == "ss:x-echo"
            # No stream-unary interceptor: the call is the plain one.
            assert await ch.stream_unary(CS)([b"a"]) == b"a"
        with pytest.raises(ValueError):
            aio.insecure_channel("127.0.0.1:1", interceptors=[object()])

    asyncio.run(main())


class _Deny(aio.ServerInterceptor):
    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        if dict(handler_call_details.invocation_metadata).get("x-deny") == "yes":
            return None
        return await continuation(handler_call_details)


class _SyncLog(grpc_core.ServerInterceptor):
    def __init__(self, log: List[str]) -> None:
        self.log = log

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        self.log.append(handler_call_details.method)
        return continuation(handler_call_details)


def test_aio_server_interceptors() -> None:
    log: List[str] = []

    async def main() -> None:
        async def unary(request: bytes, context: Any) -> bytes:
            return b"ok:" + request

        s = aio.server(interceptors=[_SyncLog(log), _Deny()])
        s.add_generic_rpc_handlers([grpc_core.method_handlers_generic_handler(SERVICE, {
            "Unary": grpc_core.unary_unary_rpc_method_handler(unary),
        })])
        port = s.add_insecure_port("127.0.0.1:0")
        await s.start()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                assert await ch.unary_unary(U)(b"1") == b"ok:1"
                with pytest.raises(aio.AioRpcError) as ei:
                    await ch.unary_unary(U)(b"2", metadata=(("x-deny", "yes"),))
                assert ei.value.code() is grpc_core.StatusCode.UNIMPLEMENTED
            assert log == [U, U]
        finally:
            await s.stop(None)

    asyncio.run(main())


def test_aio_channel_state() -> None:
    async def main() -> None:
        s, port, _ = await _ctx_server()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                assert ch.get_state() is grpc_core.ChannelConnectivity.IDLE
                state = ch.get_state(try_to_connect=True)
                seen = [state]
                for _ in range(20):
                    if state is grpc_core.ChannelConnectivity.READY:
                        break
                    await asyncio.wait_for(ch.wait_for_state_change(state), 5)
                    state = ch.get_state()
                    seen.append(state)
                assert state is grpc_core.ChannelConnectivity.READY, seen
                assert await ch.unary_unary(U)(b"s") == b"u:s"
        finally:
            await s.stop(None)

    asyncio.run(main())

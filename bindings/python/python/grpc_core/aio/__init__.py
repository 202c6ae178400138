"""``grpc_core.aio``: the basics of ``grpc.aio`` (asyncio channels, calls and
server).

This first version runs each blocking operation of the sync layer on a
shared worker pool and awaits it (``run_in_executor``); the GIL is released
while the engine waits. Batched completions straight into the event loop
are future work.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
from concurrent import futures
from typing import Any, AsyncIterator, Callable, Generator, Iterator, Optional, Sequence, Tuple

from .. import _channel, _native, _server
from .._common import (
    ChannelCredentials,
    Compression,
    GenericRpcHandler,
    RpcError,
    ServerInterceptor,
    StatusCode,
)

__all__ = [
    "AioRpcError",
    "Channel",
    "Server",
    "ServicerContext",
    "insecure_channel",
    "secure_channel",
    "server",
]

_LOGGER = logging.getLogger(__name__)
_POOL = futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc_core-aio")
_EOF = object()


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)


class AioRpcError(RpcError):
    """How a failed asyncio call ended (grpc.aio.AioRpcError)."""

    def __init__(
        self,
        code: StatusCode,
        initial_metadata: Any,
        trailing_metadata: Any,
        details: Optional[str] = None,
        debug_error_string: Optional[str] = None,
    ) -> None:
        super().__init__()
        self._code = code
        self._details = details
        self._initial = initial_metadata
        self._trailing = trailing_metadata
        self._debug = debug_error_string

    def code(self) -> StatusCode:
        return self._code

    def details(self) -> Optional[str]:
        return self._details

    def initial_metadata(self) -> Any:
        return self._initial

    def trailing_metadata(self) -> Any:
        return self._trailing

    def debug_error_string(self) -> str:
        return self._debug or ""

    def __str__(self) -> str:
        return f'<AioRpcError of RPC that terminated with:\n\tstatus = {self._code}\n\tdetails = "{self._details}"\n>'


def _aio_error(call: Any) -> AioRpcError:
    return AioRpcError(call.code(), call.initial_metadata(), call.trailing_metadata(), call.details())


class _Call:
    """What every asyncio call offers: metadata, status, cancel."""

    def __init__(self, sync_call: Any = None) -> None:
        self._sync = sync_call
        self._ready = asyncio.Event()

    async def _sync_call(self) -> Any:
        await self._ready.wait()
        return self._sync

    async def initial_metadata(self) -> Any:
        c = await self._sync_call()
        return await _run(c.initial_metadata)

    async def trailing_metadata(self) -> Any:
        c = await self._sync_call()
        return await _run(c.trailing_metadata)

    async def code(self) -> StatusCode:
        c = await self._sync_call()
        return await _run(c.code)

    async def details(self) -> str:
        c = await self._sync_call()
        return await _run(c.details)

    async def wait_for_connection(self) -> None:
        await self.initial_metadata()

    def cancel(self) -> bool:
        return bool(self._sync is not None and self._sync.cancel())

    def cancelled(self) -> bool:
        return bool(self._sync is not None and self._sync.cancelled())

    def done(self) -> bool:
        return bool(self._sync is not None and self._sync.done())

    def time_remaining(self) -> Optional[float]:
        return None if self._sync is None else self._sync.time_remaining()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._sync is not None:
            self._sync.add_done_callback(lambda _f: callback(self))


class _UnaryResponseCall(_Call):
    """``await call`` gives the response; raises AioRpcError on failure."""

    def __init__(self, start: Callable[[], Any]) -> None:
        super().__init__()
        self._task = asyncio.ensure_future(self._go(start))

    async def _go(self, start: Callable[[], Any]) -> Any:
        self._sync = await _run(start)
        self._ready.set()
        try:
            return await asyncio.wrap_future(_wrap(self._sync))
        except RpcError:
            raise _aio_error(self._sync) from None

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()


def _wrap(sync_future: Any) -> "futures.Future[Any]":
    out: "futures.Future[Any]" = futures.Future()

    def done(f: Any) -> None:
        try:
            out.set_result(f.result())
        except BaseException as e:  # noqa: BLE001 - carried into the awaiting task
            out.set_exception(e)

    sync_future.add_done_callback(done)
    return out


class _StreamResponseCall(_Call):
    """``async for`` (or ``await call.read()``) over the responses."""

    def __init__(self, start: Callable[[], Any]) -> None:
        super().__init__()
        self._start_task = asyncio.ensure_future(self._go(start))

    async def _go(self, start: Callable[[], Any]) -> None:
        self._sync = await _run(start)
        self._ready.set()

    async def read(self) -> Any:
        c = await self._sync_call()

        def step() -> Any:
            try:
                return next(c)
            except StopIteration:
                return _EOF

        try:
            return await _run(step)
        except RpcError:
            raise _aio_error(c) from None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Any]:
        while True:
            m = await self.read()
            if m is _EOF:
                return
            yield m


EOF = _EOF


def _requests(request_iterator: Any, loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """A blocking iterator over a sync or async request iterator."""
    if not hasattr(request_iterator, "__aiter__"):
        yield from request_iterator
        return
    q: "queue.Queue[Any]" = queue.Queue()

    async def pump() -> None:
        try:
            async for r in request_iterator:
                q.put(r)
        finally:
            q.put(_EOF)

    asyncio.run_coroutine_threadsafe(pump(), loop)
    while True:
        item = q.get()
        if item is _EOF:
            return
        yield item


class _MultiCallable:
    def __init__(self, sync: Any) -> None:
        self._sync = sync


class UnaryUnaryMultiCallable(_MultiCallable):
    def __call__(
        self,
        request: Any,
        *,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> _UnaryResponseCall:
        return _UnaryResponseCall(
            lambda: self._sync.future(request, timeout, metadata, credentials, wait_for_ready, compression)
        )


class UnaryStreamMultiCallable(_MultiCallable):
    def __call__(
        self,
        request: Any,
        *,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> _StreamResponseCall:
        return _StreamResponseCall(
            lambda: self._sync(request, timeout, metadata, credentials, wait_for_ready, compression)
        )


class StreamUnaryMultiCallable(_MultiCallable):
    def __call__(
        self,
        request_iterator: Any = None,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> _UnaryResponseCall:
        loop = asyncio.get_running_loop()
        reqs = _requests(request_iterator if request_iterator is not None else (), loop)
        return _UnaryResponseCall(
            lambda: self._sync.future(reqs, timeout, metadata, credentials, wait_for_ready, compression)
        )


class StreamStreamMultiCallable(_MultiCallable):
    def __call__(
        self,
        request_iterator: Any = None,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> _StreamResponseCall:
        loop = asyncio.get_running_loop()
        reqs = _requests(request_iterator if request_iterator is not None else (), loop)
        return _StreamResponseCall(
            lambda: self._sync(reqs, timeout, metadata, credentials, wait_for_ready, compression)
        )


class Channel:
    """An asyncio channel (grpc.aio.Channel)."""

    def __init__(self, sync: _channel.Channel) -> None:
        self._sync = sync

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    _registered_method: Optional[bool] = False) -> UnaryUnaryMultiCallable:
        return UnaryUnaryMultiCallable(self._sync.unary_unary(method, request_serializer, response_deserializer))

    def unary_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: Optional[bool] = False) -> UnaryStreamMultiCallable:
        return UnaryStreamMultiCallable(self._sync.unary_stream(method, request_serializer, response_deserializer))

    def stream_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: Optional[bool] = False) -> StreamUnaryMultiCallable:
        return StreamUnaryMultiCallable(self._sync.stream_unary(method, request_serializer, response_deserializer))

    def stream_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                      _registered_method: Optional[bool] = False) -> StreamStreamMultiCallable:
        return StreamStreamMultiCallable(self._sync.stream_stream(method, request_serializer, response_deserializer))

    async def channel_ready(self) -> None:
        from .. import channel_ready_future

        await asyncio.wrap_future(_wrap(channel_ready_future(self._sync)))

    async def close(self, grace: Optional[float] = None) -> None:
        self._sync.close()

    async def __aenter__(self) -> "Channel":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def insecure_channel(
    target: str,
    options: Optional[Sequence[Tuple[str, Any]]] = None,
    compression: Optional[Compression] = None,
    interceptors: Any = None,
) -> Channel:
    """An asyncio plaintext channel."""
    return Channel(_channel.Channel(target, options, None, compression))


def secure_channel(
    target: str,
    credentials: ChannelCredentials,
    options: Optional[Sequence[Tuple[str, Any]]] = None,
    compression: Optional[Compression] = None,
    interceptors: Any = None,
) -> Channel:
    """An asyncio TLS channel."""
    return Channel(_channel.Channel(target, options, credentials, compression))


class ServicerContext(_server.ServicerContext):
    """The context of an asyncio handler: ``await context.abort(...)``, ``read``, ``write``."""

    _requests: Any = None
    _serializer: Any = None

    async def abort(self, code: StatusCode, details: str = "", trailing_metadata: Any = None) -> None:  # type: ignore[override]
        if trailing_metadata:
            self.set_trailing_metadata(trailing_metadata)
        super().abort(code, details)

    async def abort_with_status(self, status: Any) -> None:  # type: ignore[override]
        self.set_trailing_metadata(status.trailing_metadata)
        super().abort(status.code, status.details)

    async def send_initial_metadata(self, initial_metadata: Any) -> None:  # type: ignore[override]
        await _run(super().send_initial_metadata, initial_metadata)

    async def read(self) -> Any:
        def step() -> Any:
            try:
                return next(self._requests)
            except StopIteration:
                return _EOF

        return await _run(step)

    async def write(self, message: Any) -> None:
        data = message if self._serializer is None else self._serializer(message)
        await _run(self._send, data)


class _AsyncRequests:
    def __init__(self, sync_iter: Any) -> None:
        self._it = sync_iter

    def __aiter__(self) -> "_AsyncRequests":
        return self

    async def __anext__(self) -> Any:
        def step() -> Any:
            try:
                return next(self._it)
            except StopIteration:
                return _EOF

        m = await _run(step)
        if m is _EOF:
            raise StopAsyncIteration
        return m


class Server(_server.Server):
    """An asyncio server (grpc.aio.Server): handlers are coroutines or async generators."""

    _loop: Optional[asyncio.AbstractEventLoop] = None

    async def start(self) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        super().start()

    async def stop(self, grace: Optional[float]) -> None:  # type: ignore[override]
        ev = super().stop(grace)
        await _run(ev.wait)

    async def wait_for_termination(self, timeout: Optional[float] = None) -> bool:  # type: ignore[override]
        return bool(await _run(super().wait_for_termination, timeout))

    def _dispatch(self) -> None:
        assert self._loop is not None
        while True:
            call = self._queue.next()
            if call is None:
                return
            asyncio.run_coroutine_threadsafe(self._serve_async(call), self._loop)

    async def _serve_async(self, call: Any) -> None:
        ctx = ServicerContext(call, self)
        try:
            handler = self._find(_server._HandlerCallDetails(call.method, ctx.invocation_metadata()))
        except Exception as e:  # noqa: BLE001
            call.finish(StatusCode.UNKNOWN.value[0], f"Exception servicing handler: {e}")
            return
        if handler is None:
            call.finish(StatusCode.UNIMPLEMENTED.value[0], "Method not found!")
            return
        deser, ser = handler.request_deserializer, handler.response_serializer
        ctx._serializer = ser
        try:
            if handler.request_streaming:
                ctx._requests = _server._RequestIterator(call, deser)
                request: Any = _AsyncRequests(ctx._requests)
            else:
                data = await _run(call.recv)
                if data is None:
                    ctx._finish(StatusCode.INTERNAL, "Missing request message")
                    return
                request = data if deser is None else deser(data)
            if handler.response_streaming:
                behavior = handler.stream_stream if handler.request_streaming else handler.unary_stream
                assert behavior is not None
                result = behavior(request, ctx)
                if inspect.isasyncgen(result):
                    async for response in result:
                        await ctx.write(response)
                elif inspect.isawaitable(result):
                    await result
                elif result is not None:
                    for response in result:
                        await ctx.write(response)
            else:
                behavior = handler.stream_unary if handler.request_streaming else handler.unary_unary
                assert behavior is not None
                response = behavior(request, ctx)
                if inspect.isawaitable(response):
                    response = await response
                if ctx._code is None or ctx._code is StatusCode.OK:
                    if response is None:
                        ctx._finish(StatusCode.INTERNAL, "Exception serializing response!")
                        return
                    await ctx.write(response)
        except _server._Abort:
            ctx._finish(ctx._code or StatusCode.UNKNOWN, ctx._details or "")
            return
        except _native.RpcStatus:
            ctx._run_callbacks()
            return
        except Exception as e:  # noqa: BLE001
            if not call.is_active():
                ctx._run_callbacks()
                return
            _LOGGER.exception("Exception calling application: %s", e)
            ctx._finish(StatusCode.UNKNOWN, f"Exception calling application: {e}")
            return
        ctx._finish(ctx._code or StatusCode.OK, ctx._details or "")


def server(
    migration_thread_pool: Optional[futures.Executor] = None,
    handlers: Optional[Sequence[GenericRpcHandler]] = None,
    interceptors: Optional[Sequence[ServerInterceptor]] = None,
    options: Optional[Sequence[Tuple[str, Any]]] = None,
    maximum_concurrent_rpcs: Optional[int] = None,
    compression: Optional[Compression] = None,
) -> Server:
    """Creates an asyncio server."""
    return Server(migration_thread_pool, handlers, interceptors, options, maximum_concurrent_rpcs, compression)


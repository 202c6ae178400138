"""``grpc_core.aio``: ``grpc.aio`` (asyncio channels, calls and server).

No thread per call: every operation (a unary call, a message sent or
received, a server call's reply) runs as a task on the engine's runtime,
and its result resolves an asyncio future through the loop's completion
queue (``_native.CompletionQueue``): a socket the loop watches with
``add_reader`` becomes readable once per batch of results, and one
``drain`` resolves them all with the GIL taken once. Handlers and request
iterators run on the loop; only ``stop`` and ``channel_ready`` wait on a
worker thread.

The server is driven by its loop: its connections live on a runtime of its
own whose epoll descriptor the loop watches (``CallQueue.drive``, a turn of
that runtime on the loop's thread: requests are read and replies written
there, and the calls a turn receives go to the loop without a wake-up), with
a thread of its own that takes over while the loop has not run a turn for
2 ms (see ``src/looprt.rs``).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import inspect
import logging
import time
import types
import weakref
from concurrent import futures
from typing import Any, AsyncIterator, Callable, Generator, Optional, Sequence, Tuple

from .. import _channel, _native, _server
from .. import observability as _observability
from .._channel import _Status, _status_from_native
from .._common import (
    ChannelConnectivity,
    ChannelCredentials,
    Compression,
    GenericRpcHandler,
    RpcError,
    StatusCode,
    compression_to_native,
    metadata_from_native,
)

__all__ = [
    "AioRpcError",
    "Channel",
    "ClientCallDetails",
    "ClientInterceptor",
    "EOF",
    "ServerInterceptor",
    "StreamStreamClientInterceptor",
    "StreamUnaryClientInterceptor",
    "UnaryStreamClientInterceptor",
    "UnaryUnaryClientInterceptor",
    "Server",
    "ServicerContext",
    "insecure_channel",
    "secure_channel",
    "server",
]

_LOGGER = logging.getLogger(__name__)
_POOL = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpc_core-aio")
_EOF = object()
EOF = _EOF


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    """For the rare blocking operations (server stop, channel readiness)."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)


def _wrap(sync_future: Any) -> "futures.Future[Any]":
    """A concurrent future that follows a grpc_core.Future (for ``asyncio.wrap_future``)."""
    out: "futures.Future[Any]" = futures.Future()

    def done(f: Any) -> None:
        try:
            out.set_result(f.result())
        except BaseException as e:  # noqa: BLE001 - carried into the awaiting task
            out.set_exception(e)

    sync_future.add_done_callback(done)
    return out


_CQS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()
_last: Optional[Tuple["weakref.ref[asyncio.AbstractEventLoop]", Any]] = None


def _cq(loop: Optional[asyncio.AbstractEventLoop] = None) -> Any:
    """The running loop's (or ``loop``'s) completion queue (created and watched on first use)."""
    global _last
    if loop is None:
        loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    cq = _CQS.get(loop)
    if cq is None:
        # Also the runtime the aio channels made in this loop share, run in
        # turns of the loop (CompletionQueue.drive, src/looprt.rs).
        # The loop's queue of ready callbacks (asyncio's own loops have one),
        # weakly (its handles refer to the loop): a call started while more
        # are ready waits for the turn that starts them all (one write; see
        # submit in src/aio.rs).
        ready = getattr(loop, "_ready", None)
        cq = _native.CompletionQueue(True, weakref.ref(ready) if isinstance(ready, collections.deque) else None)
        loop.add_reader(cq.fileno(), cq.drain)
        fd = cq.runtime_fd()
        if fd is not None:
            loop.add_reader(fd, cq.drive)
        _CQS[loop] = cq
    _last = (weakref.ref(loop), cq)
    return cq


def _op(fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
    """Starts the native operation ``fn(cq, future, *args)``; returns the future."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    fn(_cq(loop), fut, *args)
    return fut


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


_OK = _Status(StatusCode.OK, "", ())


class _Call:
    """What every asyncio call offers: metadata, status, cancel, callbacks.

    Per-call state that most calls never change (no deadline, no callbacks,
    not cancelled, no credentials) starts as class attributes, so a unary
    call object is a few attribute stores."""

    _deadline: Optional[float] = None
    _status: Optional[_Status] = None
    _initial: Optional[Tuple[Any, ...]] = None
    _callbacks: Optional[list] = None
    _cancelled = False
    _op: Any = None
    _creds: Any = None

    def __init__(self, channel: _channel.Channel, method: str, timeout: Optional[float], metadata: Any,
                 credentials: Any, wait_for_ready: Optional[bool], compression: Optional[Compression],
                 serializer: Any, deserializer: Any) -> None:
        native_ch, metadata = self._begin(channel, timeout, metadata, credentials, serializer, deserializer)
        self._args = (native_ch, method, timeout, metadata, compression_to_native(compression), bool(wait_for_ready))

    def _begin(self, channel: _channel.Channel, timeout: Optional[float], metadata: Any, credentials: Any,
               serializer: Any, deserializer: Any) -> Tuple[Any, Any]:
        """Records what every call keeps (codecs, deadline, credentials); gives
        the open native channel and the metadata to send."""
        native_ch = channel._checked()
        self._serializer = serializer
        self._deserializer = deserializer
        if timeout is not None:
            self._deadline = time.time() + timeout
        if credentials is not None:
            self._creds = credentials._native
        if channel._tracing:
            metadata = _observability._inject(metadata)
        return native_ch, metadata

    # -- ending --------------------------------------------------------------
    def _set_status(self, status: _Status) -> None:
        if self._status is not None:
            return
        self._status = status
        callbacks, self._callbacks = self._callbacks, None
        for cb in callbacks or ():
            try:
                cb(self)
            except Exception:  # noqa: BLE001 - logged like grpcio
                _LOGGER.exception("Exception in done callback %r", cb)

    def _error(self) -> BaseException:
        s = self._status
        assert s is not None
        if self._cancelled:
            return asyncio.CancelledError()
        return AioRpcError(s.code, self._initial or s.initial, s.trailing, s.details)

    async def _wait_status(self) -> _Status:
        raise NotImplementedError

    # -- the Call API --------------------------------------------------------
    async def initial_metadata(self) -> Any:
        if self._initial is None:
            await self._wait_initial()
        return self._initial or ()

    async def _wait_initial(self) -> None:
        await self._wait_status()

    async def trailing_metadata(self) -> Any:
        return (await self._wait_status()).trailing

    async def code(self) -> StatusCode:
        return (await self._wait_status()).code

    async def details(self) -> str:
        return (await self._wait_status()).details

    async def debug_error_string(self) -> str:
        s = await self._wait_status()
        return f'{{"grpc_status": {s.code.value[0]}, "grpc_message": "{s.details}"}}'

    async def wait_for_connection(self) -> None:
        await self.initial_metadata()

    def _abort_native(self) -> None:
        raise NotImplementedError

    def cancel(self) -> bool:
        if self._status is not None:
            return False
        self._cancelled = True
        self._abort_native()
        self._set_status(_Status(StatusCode.CANCELLED, _channel._CANCELLED_DETAILS, ()))
        return True

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._status is not None

    def time_remaining(self) -> Optional[float]:
        return None if self._deadline is None else max(self._deadline - time.time(), 0.0)

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._status is None:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(callback)
        else:
            callback(self)


class _UnaryResponseCall(_Call):
    """A unary-unary call: ``await call`` gives the response (one engine operation)."""

    _response: Any = None
    _fut: "Optional[asyncio.Future[Any]]" = None

    def __init__(self, request: Any, channel: _channel.Channel, method: str, timeout: Optional[float],
                 metadata: Any, credentials: Any, wait_for_ready: Optional[bool],
                 compression: Optional[Compression], serializer: Any, deserializer: Any) -> None:
        # _Call.__init__ without the argument tuple: the one operation starts here.
        native_ch, metadata = self._begin(channel, timeout, metadata, credentials, serializer, deserializer)
        try:
            payload = request if serializer is None else serializer(request)
        except Exception:  # noqa: BLE001
            _LOGGER.exception("Exception serializing request!")
            self._set_status(_Status(StatusCode.INTERNAL, "Exception serializing request!", ()))
            return
        loop = asyncio.get_running_loop()
        self._fut = fut = loop.create_future()
        self._op = _native.channel_unary(_cq(loop), fut, native_ch, method, payload, timeout, metadata,
                                         compression_to_native(compression), bool(wait_for_ready), self._creds)

    def _abort_native(self) -> None:
        if self._op is not None:
            self._op.cancel()
        if self._fut is not None and not self._fut.done():
            self._fut.cancel()

    def _resolved(self, result: Any) -> None:
        """Records the outcome of the native operation: ``(data, initial, trailing)``."""
        if self._status is None:
            data, initial, trailing = result
            self._initial = metadata_from_native(initial)
            try:
                self._response = data if self._deserializer is None else self._deserializer(data)
                status = _Status(StatusCode.OK, "", metadata_from_native(trailing)) if trailing else _OK
            except Exception:  # noqa: BLE001
                status = _Status(StatusCode.INTERNAL, "Exception deserializing response!", ())
            self._set_status(status)

    def _failed(self, e: BaseException) -> None:
        """Records how the native operation failed: an ``RpcStatus``."""
        status = _status_from_native(e.args)
        self._initial = status.initial
        self._set_status(status)

    @types.coroutine
    def _settle(self) -> Generator[Any, None, None]:
        """Waits for the native operation and records how the call ended. A
        generator (awaitable as a coroutine), so that ``await call`` runs
        with no coroutine object of its own."""
        if self._status is None:
            assert self._fut is not None
            try:
                result = yield from self._fut
            except _native.RpcStatus as e:
                self._failed(e)
            except asyncio.CancelledError:
                if self._status is None:  # the awaiting task was cancelled: so is the call
                    self.cancel()
                    raise
            else:
                self._resolved(result)

    async def _wait_status(self) -> _Status:
        await self._settle()
        assert self._status is not None
        return self._status

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self._settle()
        s = self._status
        assert s is not None
        if s.code is StatusCode.OK:
            return self._response
        raise self._error()


class _StreamCall(_Call):
    """A call with a request or a response stream: started by one engine
    operation, then one per message."""

    def __init__(self, *args: Any, first: Optional[bytes] = None) -> None:
        super().__init__(*args)
        self._native: Any = None
        self._start: "Optional[asyncio.Future[Any]]" = None
        self._writer: "Optional[asyncio.Task[Any]]" = None
        ch, method, timeout, md, comp, wfr = self._args
        self._start = fut = asyncio.get_running_loop().create_future()
        self._op = _native.channel_start(_cq(), fut, ch, method, timeout, md, comp, wfr, first, self._creds)

    def _abort_native(self) -> None:
        if self._native is not None:
            self._native.cancel()
        elif self._op is not None:
            self._op.cancel()
        if self._start is not None and not self._start.done():
            self._start.cancel()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()

    async def _call(self) -> Any:
        """The started native call; raises how the call ended if it did."""
        if self._native is None:
            if self._status is None:
                assert self._start is not None
                try:
                    self._native = await self._start
                except _native.RpcStatus as e:
                    self._set_status(_status_from_native(e.args))
                except asyncio.CancelledError:
                    if self._status is None:
                        self.cancel()
                        raise
                if self._native is not None and self._cancelled:
                    self._native.cancel()
            if self._native is None:
                raise self._error()
        return self._native

    async def _wait_initial(self) -> None:
        try:
            native = await self._call()
            self._initial = metadata_from_native(await _op(_native.call_initial_metadata, native))
        except _native.RpcStatus as e:
            self._initial = _status_from_native(e.args).initial
        except (RpcError, asyncio.CancelledError):
            self._initial = self._status.initial if self._status is not None else ()

    async def _finish(self, native: Any) -> _Status:
        if self._status is None:
            self._set_status(_status_from_native(await _op(_native.call_finish, native)))
        assert self._status is not None
        return self._status

    async def _wait_status(self) -> _Status:
        if self._status is None:
            try:
                native = await self._call()
            except (RpcError, asyncio.CancelledError):
                assert self._status is not None
                return self._status
            await self._finish(native)
        assert self._status is not None
        return self._status

    # -- responses ---------------------------------------------------------
    async def _recv(self) -> Any:
        """The next response's bytes, or _EOF after an OK end; raises the error otherwise."""
        if self._status is not None:
            if self._status.code is StatusCode.OK:
                return _EOF
            raise self._error()
        native = await self._call()
        try:
            data = await _op(_native.call_recv, native)
        except _native.RpcStatus as e:
            self._set_status(_status_from_native(e.args))
            raise self._error() from None
        if data is None:
            status = await self._finish(native)
            if status.code is StatusCode.OK:
                return _EOF
            raise self._error()
        return data

    async def read(self) -> Any:
        data = await self._recv()
        if data is _EOF or self._deserializer is None:
            return data
        try:
            return self._deserializer(data)
        except Exception:  # noqa: BLE001
            self._abort_native()
            self._set_status(_Status(StatusCode.INTERNAL, "Exception deserializing response!", ()))
            raise self._error() from None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Any]:
        while True:
            m = await self.read()
            if m is _EOF:
                return
            yield m

    # -- requests ----------------------------------------------------------
    async def write(self, request: Any) -> None:
        native = await self._call()
        payload = request if self._serializer is None else self._serializer(request)
        if not await _op(_native.call_send, native, payload, False):
            await self._wait_status()
            raise self._error() if self._status is not None and self._status.code is not StatusCode.OK else (
                asyncio.InvalidStateError("the RPC is already finished"))

    async def done_writing(self) -> None:
        native = await self._call()
        await _op(_native.call_close_send, native)

    def _send_all(self, request_iterator: Any) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._consume(request_iterator))

    async def _consume(self, request_iterator: Any) -> None:
        try:
            if hasattr(request_iterator, "__aiter__"):
                async for r in request_iterator:
                    await self.write(r)
            else:
                for r in request_iterator:
                    await self.write(r)
            await self.done_writing()
        except (RpcError, asyncio.CancelledError, asyncio.InvalidStateError):
            pass
        except Exception:  # noqa: BLE001
            _LOGGER.exception("Exception iterating requests!")
            if self._native is not None:
                self._native.cancel()
            self._set_status(_Status(StatusCode.UNKNOWN, "Exception iterating requests!", ()))


class _UnaryStreamCall(_StreamCall):
    """The request goes out with the start of the call, in the same engine task."""

    def __init__(self, request: Any, *args: Any) -> None:
        serializer = args[7]
        try:
            payload = request if serializer is None else serializer(request)
        except Exception:  # noqa: BLE001
            _LOGGER.exception("Exception serializing request!")
            super().__init__(*args)
            self._abort_native()
            self._set_status(_Status(StatusCode.INTERNAL, "Exception serializing request!", ()))
            return
        super().__init__(*args, first=payload)


class _StreamUnaryCall(_StreamCall):
    """``await call`` gives the one response."""

    def __init__(self, request_iterator: Any, *args: Any) -> None:
        super().__init__(*args)
        self._response: Any = None
        if self._status is None and request_iterator is not None:
            self._send_all(request_iterator)

    async def _result(self) -> Any:
        data = await self._recv()
        if data is _EOF:
            self._set_status(_Status(StatusCode.INTERNAL, "Received no response message for a unary call", ()))
            raise self._error()
        if await self._recv() is not _EOF:
            self._abort_native()
            self._set_status(_Status(StatusCode.INTERNAL, "Received more than one response message", ()))
            raise self._error()
        try:
            return data if self._deserializer is None else self._deserializer(data)
        except Exception:  # noqa: BLE001
            raise AioRpcError(StatusCode.INTERNAL, (), (), "Exception deserializing response!") from None

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()


class _StreamStreamCall(_StreamCall):
    def __init__(self, request_iterator: Any, *args: Any) -> None:
        super().__init__(*args)
        if self._status is None and request_iterator is not None:
            self._send_all(request_iterator)


class _MultiCallable:
    _kind = ""
    _call_class: Any = None

    def __init__(self, channel: _channel.Channel, method: str, serializer: Any, deserializer: Any,
                 interceptors: Sequence[Any] = ()) -> None:
        self._channel = channel
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer
        self._interceptors = interceptors

    def _make(self, request: Any, method: str, timeout: Optional[float], metadata: Any, credentials: Any,
              wait_for_ready: Optional[bool], compression: Optional[Compression]) -> Any:
        return self._call_class(request, self._channel, method, timeout, metadata, credentials, wait_for_ready,
                                compression, self._serializer, self._deserializer)

    def _invoke(self, request: Any, timeout: Optional[float], metadata: Any, credentials: Any,
                wait_for_ready: Optional[bool], compression: Optional[Compression]) -> Any:
        if self._interceptors:
            return _intercepted(self, self._kind, request, timeout, metadata, credentials, wait_for_ready,
                                compression)
        return self._make(request, self._method, timeout, metadata, credentials, wait_for_ready, compression)


class UnaryUnaryMultiCallable(_MultiCallable):
    _kind = "unary_unary"
    _call_class = _UnaryResponseCall

    def __call__(
        self,
        request: Any,
        *,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> Any:
        return self._invoke(request, timeout, metadata, credentials, wait_for_ready, compression)


class UnaryStreamMultiCallable(_MultiCallable):
    _kind = "unary_stream"
    _call_class = _UnaryStreamCall

    def __call__(
        self,
        request: Any,
        *,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> Any:
        return self._invoke(request, timeout, metadata, credentials, wait_for_ready, compression)


class StreamUnaryMultiCallable(_MultiCallable):
    _kind = "stream_unary"
    _call_class = _StreamUnaryCall

    def __call__(
        self,
        request_iterator: Any = None,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> Any:
        return self._invoke(request_iterator, timeout, metadata, credentials, wait_for_ready, compression)


class StreamStreamMultiCallable(_MultiCallable):
    _kind = "stream_stream"
    _call_class = _StreamStreamCall

    def __call__(
        self,
        request_iterator: Any = None,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> Any:
        return self._invoke(request_iterator, timeout, metadata, credentials, wait_for_ready, compression)


_ClientCallDetailsTuple = collections.namedtuple(
    "_ClientCallDetailsTuple", ("method", "timeout", "metadata", "credentials", "wait_for_ready")
)


class ClientCallDetails(_ClientCallDetailsTuple):
    """What a client interceptor sees of a call and may replace (grpc.aio.ClientCallDetails)."""


class ClientInterceptor(metaclass=abc.ABCMeta):
    """Base of the asyncio client interceptors."""


class UnaryUnaryClientInterceptor(ClientInterceptor, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    async def intercept_unary_unary(self, continuation: Callable[..., Any], client_call_details: ClientCallDetails,
                                    request: Any) -> Any:
        """``call = await continuation(details, request)``; return the call or a response."""


class UnaryStreamClientInterceptor(ClientInterceptor, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    async def intercept_unary_stream(self, continuation: Callable[..., Any], client_call_details: ClientCallDetails,
                                     request: Any) -> Any:
        """``call = await continuation(details, request)``; return the call or an async iterator."""


class StreamUnaryClientInterceptor(ClientInterceptor, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    async def intercept_stream_unary(self, continuation: Callable[..., Any], client_call_details: ClientCallDetails,
                                     request_iterator: Any) -> Any:
        """``call = await continuation(details, request_iterator)``; return the call or a response."""


class StreamStreamClientInterceptor(ClientInterceptor, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    async def intercept_stream_stream(self, continuation: Callable[..., Any], client_call_details: ClientCallDetails,
                                      request_iterator: Any) -> Any:
        """``call = await continuation(details, request_iterator)``; return the call or an async iterator."""


class ServerInterceptor(metaclass=abc.ABCMeta):
    """An asyncio server interceptor: ``await continuation(details)`` gives the handler."""

    @abc.abstractmethod
    async def intercept_service(self, continuation: Callable[..., Any], handler_call_details: Any) -> Any: ...


_INTERCEPTOR_KINDS = {
    "unary_unary": (UnaryUnaryClientInterceptor, "intercept_unary_unary"),
    "unary_stream": (UnaryStreamClientInterceptor, "intercept_unary_stream"),
    "stream_unary": (StreamUnaryClientInterceptor, "intercept_stream_unary"),
    "stream_stream": (StreamStreamClientInterceptor, "intercept_stream_stream"),
}


class _DoneCall:
    """What an interceptor that returned a value instead of a call yields: an OK call."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, Any]:
        if False:  # pragma: no cover - makes this a generator
            yield None
        return self._value

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._value.__aiter__()

    async def read(self) -> Any:
        try:
            return await self._value.__anext__()
        except StopAsyncIteration:
            return _EOF

    async def initial_metadata(self) -> Any:
        return ()

    async def trailing_metadata(self) -> Any:
        return ()

    async def code(self) -> StatusCode:
        return StatusCode.OK

    async def details(self) -> str:
        return ""

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def time_remaining(self) -> Optional[float]:
        return None

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        callback(self)


class _InterceptedCall:
    """A call behind client interceptors: the chain runs as a task; the call
    it ends with (or the value an interceptor returned) answers for it."""

    def __init__(self, interceptors: Sequence[Any], method_name: str, details: ClientCallDetails, request: Any,
                 invoke: Callable[[ClientCallDetails, Any], Any]) -> None:
        self._inner: Any = None
        self._callbacks: list = []
        self._task = asyncio.get_running_loop().create_task(self._run(interceptors, method_name, details, request,
                                                                      invoke))

    async def _run(self, interceptors: Sequence[Any], method_name: str, details: ClientCallDetails, request: Any,
                   invoke: Callable[[ClientCallDetails, Any], Any]) -> Any:
        async def chain(i: int, d: ClientCallDetails, r: Any) -> Any:
            if i == len(interceptors):
                return invoke(d, r)

            async def continuation(d2: ClientCallDetails, r2: Any) -> Any:
                return await chain(i + 1, d2, r2)

            return await getattr(interceptors[i], method_name)(continuation, d, r)

        result = await chain(0, details, request)
        if not isinstance(result, (_Call, _InterceptedCall, _DoneCall)):
            result = _DoneCall(result)
        self._inner = result
        for cb in self._callbacks:
            result.add_done_callback(lambda _c, cb=cb: cb(self))
        return result

    async def _call(self) -> Any:
        return await self._task

    def __await__(self) -> Generator[Any, None, Any]:
        async def result() -> Any:
            return await (await self._call())

        return result().__await__()

    def __aiter__(self) -> AsyncIterator[Any]:
        async def it() -> AsyncIterator[Any]:
            async for m in await self._call():
                yield m

        return it()

    async def read(self) -> Any:
        return await (await self._call()).read()

    async def write(self, request: Any) -> None:
        await (await self._call()).write(request)

    async def done_writing(self) -> None:
        await (await self._call()).done_writing()

    async def initial_metadata(self) -> Any:
        return await (await self._call()).initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await (await self._call()).trailing_metadata()

    async def code(self) -> StatusCode:
        return await (await self._call()).code()

    async def details(self) -> str:
        return await (await self._call()).details()

    async def wait_for_connection(self) -> None:
        await (await self._call()).initial_metadata()

    def cancel(self) -> bool:
        if self._inner is not None:
            return bool(self._inner.cancel())
        return self._task.cancel()

    def cancelled(self) -> bool:
        return self._task.cancelled() or (self._inner is not None and self._inner.cancelled())

    def done(self) -> bool:
        return self._task.cancelled() or (self._inner is not None and self._inner.done())

    def time_remaining(self) -> Optional[float]:
        return None if self._inner is None else self._inner.time_remaining()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._inner is None:
            self._callbacks.append(callback)
        else:
            self._inner.add_done_callback(lambda _c: callback(self))


def _intercepted(multi: Any, kind: str, request: Any, timeout: Optional[float], metadata: Any, credentials: Any,
                 wait_for_ready: Optional[bool], compression: Optional[Compression]) -> Any:
    """Runs the call through the channel's interceptors of this kind, if any."""
    cls, method_name = _INTERCEPTOR_KINDS[kind]
    interceptors = [i for i in multi._interceptors if isinstance(i, cls)]
    details = ClientCallDetails(multi._method, timeout, metadata, credentials, wait_for_ready)

    def invoke(d: ClientCallDetails, r: Any) -> Any:
        return multi._make(r, d.method, d.timeout, d.metadata, d.credentials, d.wait_for_ready, compression)

    if not interceptors:
        return invoke(details, request)
    return _InterceptedCall(interceptors, method_name, details, request, invoke)


def _loop_cq() -> Any:
    """The running loop's completion queue (its channels' runtime), or None outside a loop."""
    try:
        return _cq()
    except RuntimeError:
        return None


class Channel:
    """An asyncio channel (grpc.aio.Channel)."""

    def __init__(self, sync: _channel.Channel, interceptors: Optional[Sequence[Any]] = None) -> None:
        self._sync = sync
        self._interceptors = list(interceptors or ())
        for i in self._interceptors:
            if not isinstance(i, ClientInterceptor):
                raise ValueError(f"Interceptor {i} must be a grpc_core.aio.ClientInterceptor")

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    _registered_method: Optional[bool] = False) -> UnaryUnaryMultiCallable:
        return UnaryUnaryMultiCallable(self._sync, method, request_serializer, response_deserializer, self._interceptors)

    def unary_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: Optional[bool] = False) -> UnaryStreamMultiCallable:
        return UnaryStreamMultiCallable(self._sync, method, request_serializer, response_deserializer, self._interceptors)

    def stream_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: Optional[bool] = False) -> StreamUnaryMultiCallable:
        return StreamUnaryMultiCallable(self._sync, method, request_serializer, response_deserializer, self._interceptors)

    def stream_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                      _registered_method: Optional[bool] = False) -> StreamStreamMultiCallable:
        return StreamStreamMultiCallable(self._sync, method, request_serializer, response_deserializer, self._interceptors)

    async def channel_ready(self) -> None:
        from .. import channel_ready_future

        await asyncio.wrap_future(_wrap(channel_ready_future(self._sync)))

    def get_state(self, try_to_connect: bool = False) -> ChannelConnectivity:
        """The connectivity state now; ``try_to_connect`` starts connecting an idle channel."""
        if try_to_connect:
            self._sync._native.connect()
        return self._sync._connectivity()

    async def wait_for_state_change(self, last_observed_state: ChannelConnectivity) -> None:
        """Returns once the state differs from ``last_observed_state``."""
        native = self._sync._native
        want = last_observed_state.value[0]
        while native.state() == want:
            await _run(native.wait_for_state_change, want, 1.0)

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
    return Channel(
        _channel.Channel(target, options, None, compression, _caller_driven=False, _loop_cq=_loop_cq()), interceptors
    )


def secure_channel(
    target: str,
    credentials: ChannelCredentials,
    options: Optional[Sequence[Tuple[str, Any]]] = None,
    compression: Optional[Compression] = None,
    interceptors: Any = None,
) -> Channel:
    """An asyncio TLS channel."""
    return Channel(
        _channel.Channel(target, options, credentials, compression, _caller_driven=False, _loop_cq=_loop_cq()),
        interceptors,
    )


class ServicerContext(_server.ServicerContext):
    """The context of an asyncio handler: ``await context.abort(...)``, ``read``, ``write``."""

    _deserializer: Any = None
    _serializer: Any = None

    async def abort(self, code: StatusCode, details: str = "", trailing_metadata: Any = None) -> None:  # type: ignore[override]
        if trailing_metadata:
            self.set_trailing_metadata(trailing_metadata)
        super().abort(code, details)

    async def abort_with_status(self, status: Any) -> None:  # type: ignore[override]
        self.set_trailing_metadata(status.trailing_metadata)
        super().abort(status.code, status.details)

    async def send_initial_metadata(self, initial_metadata: Any) -> None:  # type: ignore[override]
        if self._initial_sent:
            raise ValueError("initial metadata already sent")
        self._initial_sent = True
        try:
            await _op(_native.scall_send_initial_metadata, self._native, initial_metadata)
        except _native.RpcStatus:
            pass

    async def read(self) -> Any:
        """The next request, or ``EOF`` once the client is done sending."""
        data = await _op(_native.scall_recv, self._native)
        if data is None:
            return _EOF
        return data if self._deserializer is None else self._deserializer(data)

    async def write(self, message: Any) -> None:
        data = message if self._serializer is None else self._serializer(message)
        compress, self._compress_next = self._compress_next, True
        await _op(_native.scall_send, self._native, data, compress)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Runs ``callback`` on the loop when the call ends."""
        with self._callback_lock:
            if self._callbacks_ran:
                return False
            self._callbacks += (callback,)
            start = not self._watching
            self._watching = True
        if start:
            _op(_native.scall_wait_done, self._native).add_done_callback(lambda _f: self._run_callbacks())
        return True


class _AsyncRequests:
    """The request stream an asyncio streaming handler iterates."""

    def __init__(self, ctx: ServicerContext) -> None:
        self._ctx = ctx

    def __aiter__(self) -> "_AsyncRequests":
        return self

    async def __anext__(self) -> Any:
        m = await self._ctx.read()
        if m is _EOF:
            raise StopAsyncIteration
        return m


class Server(_server.Server):
    """An asyncio server (grpc.aio.Server): handlers are coroutines or async
    generators, run as tasks on the loop that started the server."""

    _loop: Optional[asyncio.AbstractEventLoop] = None
    _loop_cq: Any = None
    _caller_driven = False
    _loop_driven = True
    _drive_fd: Optional[int] = None

    async def start(self) -> None:  # type: ignore[override]
        with self._state_lock:
            if self._state != "new":
                raise ValueError("Cannot start a server twice" if self._state == "started" else "server is stopped")
            self._state = "started"
        self._loop = asyncio.get_running_loop()
        self._loop_cq = _cq(self._loop)
        _native.queue_attach(self._queue, self._loop_cq, self._on_call)
        # The server's runtime runs in turns of this loop whenever it has I/O
        # or tasks ready (see CallQueue.drive); a thread of its own otherwise.
        self._drive_fd = self._queue.runtime_fd()
        if self._drive_fd is not None:
            self._loop.add_reader(self._drive_fd, self._queue.drive)
        for n in self._natives:
            n.start()

    async def stop(self, grace: Optional[float]) -> None:  # type: ignore[override]
        ev = super().stop(grace)
        await _run(ev.wait)
        if self._drive_fd is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._drive_fd)
            self._drive_fd = None

    async def wait_for_termination(self, timeout: Optional[float] = None) -> bool:  # type: ignore[override]
        return bool(await _run(super().wait_for_termination, timeout))

    async def _find_async(self, details: Any) -> Any:
        """The handler through the interceptors; ``continuation`` is a coroutine
        function (grpc.aio's), and a sync interceptor works too."""
        if not self._interceptors:
            return self._lookup(details)

        async def chain(i: int, d: Any) -> Any:
            if i == len(self._interceptors):
                return self._lookup(d)

            async def continuation(d2: Any) -> Any:
                return await chain(i + 1, d2)

            interceptor: Any = self._interceptors[i]
            r = interceptor.intercept_service(continuation, d)
            while inspect.isawaitable(r):
                r = await r
            return r

        return await chain(0, details)

    def _on_call(self, call: Any) -> None:
        assert self._loop is not None
        # Named: an unnamed task formats "Task-<n>" for itself, each call.
        self._loop.create_task(self._serve_async(call) if self._tracing else self._serve_async_in_context(call),
                               name="grpc_core.aio server call")

    async def _serve_async(self, call: Any) -> None:
        token = _observability._attach(call) if self._tracing else None
        try:
            await self._serve_async_in_context(call)
        finally:
            _observability._detach(token)

    async def _serve_async_in_context(self, call: Any) -> None:
        ctx = ServicerContext(call, self)
        try:
            handler = self._handler_for(call.method)
            if handler is None:
                details = _server._HandlerCallDetails(call.method, ctx.invocation_metadata())
                handler = self._lookup(details) if not self._interceptors else await self._find_async(details)
        except Exception as e:  # noqa: BLE001
            call.finish(StatusCode.UNKNOWN.value[0], f"Exception servicing handler: {e}")
            return
        if handler is None:
            call.finish(StatusCode.UNIMPLEMENTED.value[0], "Method not found!")
            return
        deser, ser = handler.request_deserializer, handler.response_serializer
        ctx._serializer = ser
        ctx._deserializer = deser
        try:
            if handler.request_streaming:
                request: Any = _AsyncRequests(ctx)
            else:
                # The request is usually here already (read with the headers);
                # else _op(scall_recv, call) on the loop this task runs on.
                data = call.try_recv()
                if data is False:
                    assert self._loop is not None
                    fut = self._loop.create_future()
                    _native.scall_recv(self._loop_cq, fut, call)
                    data = await fut
                if data is None:
                    ctx._finish(StatusCode.INTERNAL, "Missing request message")
                    return
                try:
                    request = data if deser is None else deser(data)
                except Exception:  # noqa: BLE001
                    _LOGGER.exception("Exception deserializing request!")
                    ctx._finish(StatusCode.INTERNAL, "Exception deserializing request!")
                    return
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
                    try:
                        data = response if ser is None else ser(response)
                    except Exception:  # noqa: BLE001
                        _LOGGER.exception("Exception serializing response!")
                        ctx._finish(StatusCode.INTERNAL, "Exception serializing response!")
                        return
                    if ctx._code is None and not ctx._details and not ctx._cancelled:
                        # What scall_reply does, without its (at once resolved)
                        # future: the reply is written in a turn of the server's
                        # runtime right here (or is one task there).
                        ctx._reply(data)
                        return
                    compress, ctx._compress_next = ctx._compress_next, True
                    await _op(_native.scall_send, call, data, compress)
        except _server._Abort:
            ctx._finish(ctx._code or StatusCode.UNKNOWN, ctx._details or "")
            return
        except _native.RpcStatus:
            ctx._run_callbacks()
            return
        except Exception as e:  # noqa: BLE001
            if ctx._cancelled or not call.is_active():
                ctx._run_callbacks()
                return
            _LOGGER.exception("Exception calling application: %s", e)
            if ctx._code is not None and ctx._code is not StatusCode.OK:
                ctx._finish(ctx._code, ctx._details or "")
            else:
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
    """Creates an asyncio server (interceptors: grpc_core.aio.ServerInterceptor, or sync ones)."""
    chain: Any = interceptors
    return Server(migration_thread_pool, handlers, chain, options, maximum_concurrent_rpcs, compression)


"""The client: channels, the four multi-callables, and call objects that are
at once iterators, ``Call``s, ``Future``s and (when failed) ``RpcError``s."""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback as _tb
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

from . import _native
from . import observability as _observability
from ._common import (
    Call,
    CallCredentials,
    ChannelConnectivity,
    ChannelCredentials,
    Compression,
    Future,
    FutureCancelledError,
    FutureTimeoutError,
    RpcError,
    StatusCode,
    code_from_int,
    compression_to_native,
    metadata_from_native,
)

_LOGGER = logging.getLogger(__name__)

_CANCELLED_DETAILS = "Locally cancelled by application!"


def _serialize(message: Any, serializer: Optional[Callable[[Any], bytes]]) -> bytes:
    return message if serializer is None else serializer(message)


def _deserialize(data: bytes, deserializer: Optional[Callable[[bytes], Any]]) -> Any:
    return data if deserializer is None else deserializer(data)


def _creds(credentials: Optional[CallCredentials]) -> Any:
    return None if credentials is None else credentials._native


class _Status:
    """How a call ended; ``initial`` holds the response headers a failed
    call received before failing (empty for a trailers-only failure)."""

    __slots__ = ("code", "details", "trailing", "initial")

    def __init__(
        self, code: StatusCode, details: str, trailing: Tuple[Any, ...], initial: Tuple[Any, ...] = ()
    ) -> None:
        self.code = code
        self.details = details
        self.trailing = trailing
        self.initial = initial


def _status_from_native(args: Sequence[Any]) -> _Status:
    """From ``RpcStatus.args`` or a finish tuple: ``(code, details, trailing, initial)``."""
    initial = metadata_from_native(args[3]) if len(args) > 3 else ()
    return _Status(code_from_int(args[0]), args[1], metadata_from_native(args[2]), initial)


class _CallBase(RpcError, Call, Future):
    """State every client call object shares: status, metadata, callbacks."""

    def __init__(self, deadline: Optional[float]) -> None:
        super().__init__()
        self._lock = threading.Condition()
        self._status: Optional[_Status] = None
        self._initial: Optional[Tuple[Any, ...]] = None
        self._callbacks: List[Callable[[], None]] = []
        self._done_callbacks: List[Callable[[Future], None]] = []
        self._deadline = deadline
        self._cancelled = False
        self._native: Any = None

    # -- completion -------------------------------------------------------
    def _terminate(self, status: _Status) -> bool:
        with self._lock:
            if self._status is not None:
                return False
            self._status = status
            callbacks, self._callbacks = self._callbacks, []
            done_callbacks, self._done_callbacks = self._done_callbacks, []
            self._lock.notify_all()
        for cb in callbacks:
            try:
                cb()
            except Exception:  # noqa: BLE001 - a callback's failure is logged like grpcio does
                _LOGGER.exception("Exception in callback %r", cb)
        for dcb in done_callbacks:
            try:
                dcb(self)
            except Exception:  # noqa: BLE001
                _LOGGER.exception("Exception in done callback %r", dcb)
        return True

    def _wait(self, timeout: Optional[float] = None) -> _Status:
        with self._lock:
            if not self._lock.wait_for(lambda: self._status is not None, timeout):
                raise FutureTimeoutError()
            assert self._status is not None
            return self._status

    # -- RpcContext -------------------------------------------------------
    def is_active(self) -> bool:
        return self._status is None

    def time_remaining(self) -> Optional[float]:
        if self._deadline is None:
            return None
        return max(self._deadline - time.time(), 0.0)

    def cancel(self) -> bool:
        with self._lock:
            if self._status is not None:
                return False
            self._cancelled = True
            native = self._native
        if native is not None:
            native.cancel()
        return self._terminate(_Status(StatusCode.CANCELLED, _CANCELLED_DETAILS, ()))

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if self._status is None:
                self._callbacks.append(callback)
                return True
        return False

    # -- Call ---------------------------------------------------------------
    def initial_metadata(self) -> Any:
        if self._initial is None:
            native = self._native
            if native is None:
                return ()
            try:
                self._initial = metadata_from_native(native.initial_metadata())
            except _native.RpcStatus as e:
                self._initial = _status_from_native(e.args).initial
        return self._initial

    def trailing_metadata(self) -> Any:
        return self._wait().trailing

    def code(self) -> StatusCode:
        return self._wait().code

    def details(self) -> str:
        return self._wait().details

    def debug_error_string(self) -> str:
        s = self._wait()
        return f'{{"grpc_status": {s.code.value[0]}, "grpc_message": "{s.details}"}}'

    # -- Future -------------------------------------------------------------
    def cancelled(self) -> bool:
        with self._lock:
            return self._cancelled

    def running(self) -> bool:
        return self._status is None

    def done(self) -> bool:
        return self._status is not None

    def result(self, timeout: Optional[float] = None) -> Any:
        raise NotImplementedError

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        s = self._wait(timeout)
        if s.code is StatusCode.OK:
            return None
        if self._cancelled:
            raise FutureCancelledError()
        return self

    def traceback(self, timeout: Optional[float] = None) -> Any:
        exc = self.exception(timeout)
        if exc is None:
            return None
        try:
            raise exc
        except RpcError:
            return _tb.extract_stack()

    def add_done_callback(self, fn: Callable[[Future], None]) -> None:
        with self._lock:
            if self._status is None:
                self._done_callbacks.append(fn)
                return
        fn(self)

    def __str__(self) -> str:
        s = self._status
        if s is None:
            return f"<{type(self).__name__} of in-flight RPC>"
        return (
            f"<{type(self).__name__} of RPC that terminated with:\n"
            f"\tstatus = {s.code}\n"
            f'\tdetails = "{s.details}"\n>'
        )

    __repr__ = __str__


class _InactiveRpcError(_CallBase):
    """A finished call: what blocking calls raise (or return with ``with_call``)."""

    def __init__(self, status: _Status, initial: Optional[Tuple[Any, ...]] = None, response: Any = None) -> None:
        super().__init__(None)
        self._initial = status.initial if initial is None else initial
        self._response = response
        self._terminate(status)

    def result(self, timeout: Optional[float] = None) -> Any:
        if self._status is not None and self._status.code is StatusCode.OK:
            return self._response
        raise self


class _UnaryFuture(_CallBase):
    """A unary response arriving later (``future()``)."""

    def __init__(self, deadline: Optional[float]) -> None:
        super().__init__(deadline)
        self._response: Any = None

    def result(self, timeout: Optional[float] = None) -> Any:
        s = self._wait(timeout)
        if s.code is StatusCode.OK:
            return self._response
        if self._cancelled:
            raise FutureCancelledError()
        raise self


class _StreamingCall(_CallBase):
    """A response stream: iterate it; it is also the ``Call`` and, when it
    fails, the ``RpcError``."""

    def __init__(self, deadline: Optional[float], deserializer: Optional[Callable[[bytes], Any]]) -> None:
        super().__init__(deadline)
        self._deserializer = deserializer

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self._next()

    def next(self) -> Any:
        return self._next()

    def _next(self) -> Any:
        if self._status is not None:
            if self._status.code is StatusCode.OK:
                raise StopIteration()
            raise self
        native = self._native
        try:
            data = native.recv()
        except _native.RpcStatus as e:
            self._terminate(_status_from_native(e.args))
            assert self._status is not None
            if self._status.code is StatusCode.OK:
                raise StopIteration() from None
            raise self from None
        if data is None:
            self.initial_metadata()
            self._terminate(_status_from_native(native.finish()))
            assert self._status is not None
            if self._status.code is StatusCode.OK:
                raise StopIteration()
            raise self
        try:
            return _deserialize(data, self._deserializer)
        except Exception:  # noqa: BLE001
            native.cancel()
            self._terminate(_Status(StatusCode.INTERNAL, "Exception deserializing response!", ()))
            raise self from None

    def result(self, timeout: Optional[float] = None) -> Any:
        s = self._wait(timeout)
        if s.code is StatusCode.OK:
            return None
        raise self


def _recv_unary(native: Any, deserializer: Optional[Callable[[bytes], Any]]) -> Tuple[Any, _Status, Tuple[Any, ...]]:
    """Reads one response and the status of a call whose send side is done."""
    response = None
    try:
        data = native.recv()
        if data is None:
            status = _status_from_native(native.finish())
            if status.code is StatusCode.OK:
                status = _Status(StatusCode.INTERNAL, "Received no response message for a unary call", status.trailing)
        else:
            extra = native.recv()
            if extra is not None:
                native.cancel()
                status = _Status(StatusCode.INTERNAL, "Received more than one response message for a unary call", ())
            else:
                status = _status_from_native(native.finish())
                if status.code is StatusCode.OK:
                    try:
                        response = _deserialize(data, deserializer)
                    except Exception:  # noqa: BLE001
                        status = _Status(StatusCode.INTERNAL, "Exception deserializing response!", ())
    except _native.RpcStatus as e:
        status = _status_from_native(e.args)
    try:
        initial = metadata_from_native(native.initial_metadata())
    except _native.RpcStatus:
        initial = status.initial
    return response, status, initial


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.time() + timeout


class _MultiCallable:
    def __init__(
        self,
        channel: "Channel",
        method: str,
        request_serializer: Optional[Callable[[Any], bytes]],
        response_deserializer: Optional[Callable[[bytes], Any]],
    ) -> None:
        self._channel = channel
        self._method = method
        self._serializer = request_serializer
        self._deserializer = response_deserializer

    def _start(
        self,
        call: _CallBase,
        timeout: Optional[float],
        metadata: Any,
        credentials: Optional[CallCredentials],
        wait_for_ready: Optional[bool],
        compression: Optional[Compression],
    ) -> bool:
        """Starts the native call into ``call``; false (and ``call`` terminated) if it failed."""
        if self._channel._tracing:
            metadata = _observability._inject(metadata)
        try:
            native = self._channel._checked().start(
                self._method, timeout, metadata, compression_to_native(compression), bool(wait_for_ready),
                _creds(credentials),
            )
        except _native.RpcStatus as e:
            call._terminate(_status_from_native(e.args))
            return False
        except RpcError as e:
            call._terminate(_Status(e.code(), e.details(), ()))  # type: ignore[attr-defined]
            return False
        with call._lock:
            call._native = native
            cancelled = call._cancelled
        if cancelled:
            native.cancel()
            return False
        return True

    def _send_requests(self, call: _CallBase, requests: Any) -> None:
        native = call._native
        try:
            for request in requests:
                if not call.is_active():
                    return
                try:
                    payload = _serialize(request, self._serializer)
                except Exception:  # noqa: BLE001
                    _LOGGER.exception("Exception serializing request!")
                    native.cancel()
                    call._terminate(_Status(StatusCode.INTERNAL, "Exception serializing request!", ()))
                    return
                if not native.send(payload):
                    return
            native.close_send()
        except Exception:  # noqa: BLE001
            _LOGGER.exception("Exception iterating requests!")
            native.cancel()
            call._terminate(_Status(StatusCode.UNKNOWN, "Exception iterating requests!", ()))


class UnaryUnaryMultiCallable(_MultiCallable):
    """Calls a unary-unary method."""

    def _blocking(
        self,
        request: Any,
        timeout: Optional[float],
        metadata: Any,
        credentials: Optional[CallCredentials],
        wait_for_ready: Optional[bool],
        compression: Optional[Compression],
    ) -> Tuple[Any, _InactiveRpcError]:
        channel = self._channel._checked()
        try:
            payload = _serialize(request, self._serializer)
        except Exception:  # noqa: BLE001
            _LOGGER.exception("Exception serializing request!")
            raise _InactiveRpcError(_Status(StatusCode.INTERNAL, "Exception serializing request!", ())) from None
        if self._channel._tracing:
            metadata = _observability._inject(metadata)
        try:
            data, initial, trailing = channel.unary(
                self._method, payload, timeout, metadata, compression_to_native(compression), bool(wait_for_ready),
                _creds(credentials),
            )
        except _native.RpcStatus as e:
            raise _InactiveRpcError(_status_from_native(e.args)) from None
        try:
            response = _deserialize(data, self._deserializer)
        except Exception:  # noqa: BLE001
            raise _InactiveRpcError(
                _Status(StatusCode.INTERNAL, "Exception deserializing response!", ()),
                metadata_from_native(initial),
            ) from None
        call = _InactiveRpcError(
            _Status(StatusCode.OK, "", metadata_from_native(trailing)), metadata_from_native(initial), response
        )
        return response, call

    def __call__(
        self,
        request: Any,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Optional[CallCredentials] = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> Any:
        if self._channel._closed:
            return self._blocking(request, timeout, metadata, credentials, wait_for_ready, compression)[0]
        # The hot path: no call object unless the call fails.
        try:
            payload = request if self._serializer is None else self._serializer(request)
        except Exception:  # noqa: BLE001
            _LOGGER.exception("Exception serializing request!")
            raise _InactiveRpcError(_Status(StatusCode.INTERNAL, "Exception serializing request!", ())) from None
        if self._channel._tracing:
            metadata = _observability._inject(metadata)
        try:
            data = self._channel._native.unary_message(
                self._method,
                payload,
                timeout,
                metadata,
                None if compression is None else int(compression),
                bool(wait_for_ready),
                None if credentials is None else credentials._native,
            )
        except _native.RpcStatus as e:
            raise _InactiveRpcError(_status_from_native(e.args)) from None
        if self._deserializer is None:
            return data
        try:
            return self._deserializer(data)
        except Exception:  # noqa: BLE001
            raise _InactiveRpcError(_Status(StatusCode.INTERNAL, "Exception deserializing response!", ())) from None

    def with_call(
        self,
        request: Any,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Optional[CallCredentials] = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> Tuple[Any, Call]:
        return self._blocking(request, timeout, metadata, credentials, wait_for_ready, compression)

    def future(
        self,
        request: Any,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Optional[CallCredentials] = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> _UnaryFuture:
        self._channel._checked()
        fut = _UnaryFuture(_deadline(timeout))

        def run() -> None:
            try:
                payload = _serialize(request, self._serializer)
            except Exception:  # noqa: BLE001
                fut._terminate(_Status(StatusCode.INTERNAL, "Exception serializing request!", ()))
                return
            if not self._start(fut, timeout, metadata, credentials, wait_for_ready, compression):
                return
            fut._native.send(payload, True)
            response, status, initial = _recv_unary(fut._native, self._deserializer)
            fut._initial = initial
            fut._response = response
            fut._terminate(status)

        threading.Thread(target=run, daemon=True, name="grpc_core-future").start()
        return fut


class UnaryStreamMultiCallable(_MultiCallable):
    """Calls a unary-stream method."""

    def __call__(
        self,
        request: Any,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Optional[CallCredentials] = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> _StreamingCall:
        self._channel._checked()
        call = _StreamingCall(_deadline(timeout), self._deserializer)
        try:
            payload = _serialize(request, self._serializer)
        except Exception:  # noqa: BLE001
            call._terminate(_Status(StatusCode.INTERNAL, "Exception serializing request!", ()))
            return call
        if self._start(call, timeout, metadata, credentials, wait_for_ready, compression):
            call._native.send(payload, True)
        return call


class StreamUnaryMultiCallable(_MultiCallable):
    """Calls a stream-unary method."""

    def _run(
        self,
        call: _UnaryFuture,
        request_iterator: Any,
        timeout: Optional[float],
        metadata: Any,
        credentials: Optional[CallCredentials],
        wait_for_ready: Optional[bool],
        compression: Optional[Compression],
    ) -> None:
        if not self._start(call, timeout, metadata, credentials, wait_for_ready, compression):
            return
        self._send_requests(call, request_iterator)
        if not call.is_active():
            return
        response, status, initial = _recv_unary(call._native, self._deserializer)
        call._initial = initial
        call._response = response
        call._terminate(status)

    def with_call(
        self,
        request_iterator: Any,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Optional[CallCredentials] = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> Tuple[Any, Call]:
        self._channel._checked()
        call = _UnaryFuture(_deadline(timeout))
        self._run(call, request_iterator, timeout, metadata, credentials, wait_for_ready, compression)
        status = call._wait()
        if status.code is not StatusCode.OK:
            raise call
        return call._response, call

    def __call__(
        self,
        request_iterator: Any,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Optional[CallCredentials] = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> Any:
        return self.with_call(request_iterator, timeout, metadata, credentials, wait_for_ready, compression)[0]

    def future(
        self,
        request_iterator: Any,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Optional[CallCredentials] = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> _UnaryFuture:
        self._channel._checked()
        call = _UnaryFuture(_deadline(timeout))
        args = (call, request_iterator, timeout, metadata, credentials, wait_for_ready, compression)
        threading.Thread(target=self._run, args=args, daemon=True, name="grpc_core-future").start()
        return call


class StreamStreamMultiCallable(_MultiCallable):
    """Calls a stream-stream method; requests are read on their own thread."""

    def __call__(
        self,
        request_iterator: Any,
        timeout: Optional[float] = None,
        metadata: Any = None,
        credentials: Optional[CallCredentials] = None,
        wait_for_ready: Optional[bool] = None,
        compression: Optional[Compression] = None,
    ) -> _StreamingCall:
        self._channel._checked()
        call = _StreamingCall(_deadline(timeout), self._deserializer)
        if self._start(call, timeout, metadata, credentials, wait_for_ready, compression):
            threading.Thread(
                target=self._send_requests, args=(call, request_iterator), daemon=True, name="grpc_core-requests"
            ).start()
        return call


_INT_OPTIONS = {
    "grpc.max_receive_message_length": "max_recv",
    "grpc.max_send_message_length": "max_send",
    "grpc.keepalive_time_ms": "keepalive_time_ms",
    "grpc.keepalive_timeout_ms": "keepalive_timeout_ms",
    "grpc.client_idle_timeout_ms": "idle_timeout_ms",
    "grpc.dns_min_time_between_resolutions_ms": "dns_refresh_ms",
}
_STR_OPTIONS = {
    "grpc.ssl_target_name_override": "server_name_override",
    "grpc.default_authority": "authority",
    "grpc.primary_user_agent": "user_agent",
}


class ManualResolver:
    """Addresses for ``manual:///name`` targets, fed by the application (grpc_core only; grpcio has none).

    Pass it as the channel option ``("grpc_core.manual_resolver", resolver)``; every
    ``update`` moves the channels on it to the new list (connections to addresses still
    listed are kept). Until the first update, calls wait (wait-for-ready) or queue."""

    def __init__(self, addresses: Optional[Sequence[str]] = None) -> None:
        self._native = _native.NativeManualResolver()
        if addresses is not None:
            self.update(addresses)

    def update(self, addresses: Sequence[str]) -> None:
        """Replaces the list: ``"ip:port"``, ``"[ipv6]:port"`` or ``"unix:/path"`` (ValueError if malformed)."""
        self._native.update(list(addresses))

    def report_error(self, message: str) -> None:
        """A resolution failure: with no usable address, calls fail UNAVAILABLE with ``message``."""
        self._native.report_error(message)

    def addresses(self) -> Optional[List[str]]:
        """The current list; None before the first update or after an error."""
        return self._native.addresses()


_RETRY_KEYS = ("retryPolicy", "hedgingPolicy")


def _service_config(config: Optional[str], lb_policy: Optional[str], enable_retries: bool) -> Optional[str]:
    """grpcio's ``grpc.service_config``, ``grpc.lb_policy_name`` and ``grpc.enable_retries`` as one
    service config for the engine. As in gRPC core, the config's own LB policy wins over
    ``grpc.lb_policy_name``; with retries disabled the retry and hedging policies are dropped."""
    if config is None and lb_policy is None:
        return None
    if config is None:  # nothing to strip
        return json.dumps({"loadBalancingConfig": [{lb_policy: {}}]})
    try:
        doc = json.loads(config) if config is not None else {}
    except ValueError as e:
        raise ValueError(f"grpc.service_config is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError("grpc.service_config must be a JSON object")
    if lb_policy is not None and "loadBalancingConfig" not in doc and "loadBalancingPolicy" not in doc:
        doc["loadBalancingConfig"] = [{lb_policy: {}}]
    if not enable_retries:
        for mc in doc.get("methodConfig") or ():
            if isinstance(mc, dict):
                for key in _RETRY_KEYS:
                    mc.pop(key, None)
        doc.pop("retryThrottling", None)
    return json.dumps(doc)


def _native_channel(
    target: str,
    options: Optional[Sequence[Tuple[str, Any]]],
    credentials: Optional[ChannelCredentials],
    compression: Optional[Compression],
    caller_driven: bool = True,
    loop_cq: Any = None,
) -> Tuple[Any, bool]:
    """The native channel, and whether it traces calls (an OpenTelemetryPlugin is registered).
    ``caller_driven``: the channel gets its own runtime, which the threads that wait on it
    drive (sync API); ``loop_cq``: the channel runs on the runtime of that asyncio loop's
    completion queue, driven by the loop's turns (``aio``, see CompletionQueue.drive);
    neither: the engine's runtime."""
    kw: dict = {"caller_driven": caller_driven, "loop_cq": loop_cq}
    config: Optional[str] = None
    lb_policy: Optional[str] = None
    enable_retries = True
    for key, value in options or ():
        if key in _INT_OPTIONS:
            kw[_INT_OPTIONS[key]] = int(value)
        elif key in _STR_OPTIONS:
            kw[_STR_OPTIONS[key]] = str(value)
        elif key == "grpc.keepalive_permit_without_calls":
            kw["keepalive_permit_without_calls"] = bool(value)
        elif key == "grpc.default_compression_algorithm":
            kw["compression"] = int(value)
        elif key == "grpc.service_config":
            config = value.decode() if isinstance(value, bytes) else str(value)
        elif key == "grpc.lb_policy_name":
            lb_policy = str(value)
        elif key == "grpc.enable_retries":
            enable_retries = bool(int(value))
        elif key == "grpc_core.manual_resolver":
            if not isinstance(value, ManualResolver):
                raise TypeError("grpc_core.manual_resolver takes a grpc_core.ManualResolver")
            kw["manual_resolver"] = value._native
        # Other grpcio options (http2 tuning, ...) are accepted and ignored.
    service_config = _service_config(config, lb_policy, enable_retries)
    if service_config is not None:
        kw["service_config"] = service_config
    if compression is not None:
        kw["compression"] = int(compression)
    if credentials is not None:
        kw["call_credentials"] = credentials._native_call_credentials()
        kw["allow_insecure_call_credentials"] = credentials._local
    if credentials is not None and not credentials._insecure and not credentials._local:
        kw["tls"] = True
        kw["root_certs"] = credentials._root_certificates
        kw["private_key"] = credentials._private_key
        kw["cert_chain"] = credentials._certificate_chain
    # dns:, ipv4:, ipv6:, unix: and manual: targets go to the engine's resolvers as they are.
    tracing = _observability._channel_kw(kw)
    return _native.NativeChannel(target, **kw), tracing


class Channel:
    """A channel to one target (grpc.Channel). Use as a context manager or ``close()`` it."""

    def __init__(
        self,
        target: str,
        options: Optional[Sequence[Tuple[str, Any]]] = None,
        credentials: Optional[ChannelCredentials] = None,
        compression: Optional[Compression] = None,
        *,
        _caller_driven: bool = True,
        _loop_cq: Any = None,
    ) -> None:
        self._target = target
        self._native, self._tracing = _native_channel(target, options, credentials, compression, _caller_driven, _loop_cq)
        self._closed = False
        self._subscriptions: List[Tuple[Callable[[ChannelConnectivity], None], threading.Event]] = []

    def _checked(self) -> Any:
        if self._closed:
            raise ValueError("Cannot invoke RPC on closed channel!")
        return self._native

    def unary_unary(
        self,
        method: str,
        request_serializer: Optional[Callable[[Any], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], Any]] = None,
        _registered_method: Optional[bool] = False,
    ) -> UnaryUnaryMultiCallable:
        return UnaryUnaryMultiCallable(self, method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Optional[Callable[[Any], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], Any]] = None,
        _registered_method: Optional[bool] = False,
    ) -> UnaryStreamMultiCallable:
        return UnaryStreamMultiCallable(self, method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str,
        request_serializer: Optional[Callable[[Any], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], Any]] = None,
        _registered_method: Optional[bool] = False,
    ) -> StreamUnaryMultiCallable:
        return StreamUnaryMultiCallable(self, method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: Optional[Callable[[Any], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], Any]] = None,
        _registered_method: Optional[bool] = False,
    ) -> StreamStreamMultiCallable:
        return StreamStreamMultiCallable(self, method, request_serializer, response_deserializer)

    def _connectivity(self) -> ChannelConnectivity:
        return list(ChannelConnectivity)[self._native.state()]

    def subchannels(self) -> List[Tuple[str, ChannelConnectivity]]:
        """grpc_core only: each resolved address and its state (READY only while healthy)."""
        states = list(ChannelConnectivity)
        return [(addr, states[st]) for addr, st in self._native.subchannels()]

    def subscribe(self, callback: Callable[[ChannelConnectivity], None], try_to_connect: bool = False) -> None:
        """Calls ``callback`` with the state now and on every change (on a watcher thread)."""
        stop = threading.Event()
        self._subscriptions.append((callback, stop))
        if try_to_connect:
            self._native.connect()

        def watch() -> None:
            state = self._native.state()
            callback(list(ChannelConnectivity)[state])
            while not stop.is_set() and state != 4:
                if self._native.wait_for_state_change(state, 0.2):
                    state = self._native.state()
                    if not stop.is_set():
                        callback(list(ChannelConnectivity)[state])

        threading.Thread(target=watch, daemon=True, name="grpc_core-connectivity").start()

    def unsubscribe(self, callback: Callable[[ChannelConnectivity], None]) -> None:
        for cb, stop in list(self._subscriptions):
            if cb == callback:
                stop.set()
                self._subscriptions.remove((cb, stop))

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        if not self._closed:
            self._closed = True
            for _, stop in self._subscriptions:
                stop.set()
            self._native.close()

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._native.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class _ReadyFuture(Future):
    """``channel_ready_future``: resolves once the channel is READY."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._event = threading.Event()
        self._cancelled = False
        self._callbacks: List[Callable[[Future], None]] = []
        self._lock = threading.Lock()
        channel._native.connect()
        threading.Thread(target=self._watch, daemon=True, name="grpc_core-ready").start()

    def _watch(self) -> None:
        native = self._channel._native
        while not self._cancelled:
            state = native.state()
            if state == 2:
                break
            if state == 4:
                return
            if state == 0:
                native.connect()
            native.wait_for_state_change(state, 0.2)
        with self._lock:
            if self._cancelled:
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)

    def cancel(self) -> bool:
        with self._lock:
            if self._event.is_set():
                return False
            self._cancelled = True
            return True

    def cancelled(self) -> bool:
        return self._cancelled

    def running(self) -> bool:
        return not self._event.is_set() and not self._cancelled

    def done(self) -> bool:
        return self._event.is_set() or self._cancelled

    def result(self, timeout: Optional[float] = None) -> None:
        if self._cancelled:
            raise FutureCancelledError()
        if not self._event.wait(timeout):
            raise FutureTimeoutError()
        return None

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        self.result(timeout)
        return None

    def traceback(self, timeout: Optional[float] = None) -> Any:
        self.result(timeout)
        return None

    def add_done_callback(self, fn: Callable[[Future], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

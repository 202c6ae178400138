"""The server: ports, handler lookup, a dispatcher thread that hands each
call to the thread pool, and the ``ServicerContext`` handlers see."""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent import futures
from concurrent.futures import thread as _futures_thread
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from . import _native
from . import observability as _observability
from ._common import (
    Compression,
    GenericRpcHandler,
    HandlerCallDetails,
    RpcMethodHandler,
    ServerCredentials,
    ServerInterceptor,
    ServiceRpcHandler,
    StatusCode,
    compression_to_native,
    metadata_from_native,
)

_LOGGER = logging.getLogger(__name__)


class _RpcMethodHandler(
    collections.namedtuple(
        "_RpcMethodHandler",
        (
            "request_streaming",
            "response_streaming",
            "request_deserializer",
            "response_serializer",
            "unary_unary",
            "unary_stream",
            "stream_unary",
            "stream_stream",
        ),
    ),
    RpcMethodHandler,
):
    pass


def unary_unary_rpc_method_handler(
    behavior: Callable[..., Any],
    request_deserializer: Optional[Callable[[bytes], Any]] = None,
    response_serializer: Optional[Callable[[Any], bytes]] = None,
) -> RpcMethodHandler:
    """A handler for a unary-unary method: ``behavior(request, context) -> response``."""
    return _RpcMethodHandler(False, False, request_deserializer, response_serializer, behavior, None, None, None)


def unary_stream_rpc_method_handler(
    behavior: Callable[..., Any],
    request_deserializer: Optional[Callable[[bytes], Any]] = None,
    response_serializer: Optional[Callable[[Any], bytes]] = None,
) -> RpcMethodHandler:
    """A handler for a unary-stream method: ``behavior(request, context) -> iterator``."""
    return _RpcMethodHandler(False, True, request_deserializer, response_serializer, None, behavior, None, None)


def stream_unary_rpc_method_handler(
    behavior: Callable[..., Any],
    request_deserializer: Optional[Callable[[bytes], Any]] = None,
    response_serializer: Optional[Callable[[Any], bytes]] = None,
) -> RpcMethodHandler:
    """A handler for a stream-unary method: ``behavior(request_iterator, context) -> response``."""
    return _RpcMethodHandler(True, False, request_deserializer, response_serializer, None, None, behavior, None)


def stream_stream_rpc_method_handler(
    behavior: Callable[..., Any],
    request_deserializer: Optional[Callable[[bytes], Any]] = None,
    response_serializer: Optional[Callable[[Any], bytes]] = None,
) -> RpcMethodHandler:
    """A handler for a stream-stream method: ``behavior(request_iterator, context) -> iterator``."""
    return _RpcMethodHandler(True, True, request_deserializer, response_serializer, None, None, None, behavior)


class _DictionaryGenericHandler(ServiceRpcHandler):
    def __init__(self, service: str, method_handlers: Dict[str, RpcMethodHandler]) -> None:
        self._name = service
        self._methods = {f"/{service}/{method}": handler for method, handler in method_handlers.items()}

    def service_name(self) -> str:
        return self._name

    def service(self, handler_call_details: HandlerCallDetails) -> Optional[RpcMethodHandler]:
        return self._methods.get(handler_call_details.method)


def method_handlers_generic_handler(service: str, method_handlers: Dict[str, RpcMethodHandler]) -> GenericRpcHandler:
    """A generic handler serving ``method_handlers`` (name → handler) under ``service``."""
    return _DictionaryGenericHandler(service, method_handlers)


class _HandlerCallDetails(
    collections.namedtuple("_HandlerCallDetails", ("method", "invocation_metadata")), HandlerCallDetails
):
    pass


class _Abort(Exception):
    """Raised by ``ServicerContext.abort`` to unwind the handler."""


def _format_peer(addr: str) -> str:
    if addr.startswith("unix:"):
        return addr
    if addr.startswith("["):
        return "ipv6:" + addr
    return "ipv4:" + addr


class ServicerContext:
    """The context of one server call (grpc.ServicerContext)."""

    # One per call: the state starts as these class attributes (an instance
    # sets only what changes), and the callback lock is shared by every
    # context (held only to update the list).
    _code: Optional[StatusCode] = None
    _details: Optional[str] = None
    _trailing: Any = ()
    _initial_sent = False
    _callbacks: Tuple[Callable[[], None], ...] = ()
    _callback_lock = threading.Lock()
    _callbacks_ran = False
    _watching = False
    _compress_next = True
    _cancelled = False
    _metadata: Optional[Tuple[Any, ...]] = None
    _defer = False

    def __init__(self, native: Any, server: "Server") -> None:
        self._native = native
        self._server = server

    # RpcContext
    def is_active(self) -> bool:
        return not self._cancelled and self._native.is_active()

    def time_remaining(self) -> Optional[float]:
        return self._native.time_remaining()

    def cancel(self) -> None:
        """Cancels the call (the client sees CANCELLED)."""
        self._cancelled = True
        self._native.finish(StatusCode.CANCELLED.value[0], "Cancelled by the server")

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Runs ``callback`` when the call ends (finished, cancelled or past its deadline)."""
        with self._callback_lock:
            if self._callbacks_ran:
                return False
            self._callbacks += (callback,)
            start = not self._watching
            self._watching = True
        if start:
            threading.Thread(target=self._watch, daemon=True, name="grpc_core-callbacks").start()
        return True

    def _watch(self) -> None:
        self._native.wait_done()
        self._run_callbacks()

    def _run_callbacks(self) -> None:
        with self._callback_lock:
            if self._callbacks_ran:
                return
            self._callbacks_ran = True
            callbacks, self._callbacks = self._callbacks, ()
        for cb in callbacks:
            try:
                cb()
            except Exception:  # noqa: BLE001 - logged like grpcio
                _LOGGER.exception("Exception calling callback %r", cb)

    # ServicerContext
    def invocation_metadata(self) -> Tuple[Any, ...]:
        if self._metadata is None:
            self._metadata = metadata_from_native(self._native.metadata())
        return self._metadata

    def peer(self) -> str:
        return _format_peer(self._native.peer)

    def peer_identities(self) -> Optional[List[bytes]]:
        """The verified client certificate's SANs (else its CN), or None."""
        return self._native.peer_identities()

    def peer_identity_key(self) -> Optional[str]:
        """``x509_subject_alternative_name`` or ``x509_common_name``, or None."""
        return self._native.peer_identity_key()

    def auth_context(self) -> Dict[str, List[bytes]]:
        """The peer's properties under gRPC core's names, each a list of bytes (as grpcio)."""
        out: Dict[str, List[bytes]] = {}
        for name, value in self._native.auth_properties():
            out.setdefault(name, []).append(value)
        # grpcio names the level of a plaintext peer too.
        out.setdefault("security_level", [b"TSI_SECURITY_NONE"])
        return out

    def set_compression(self, compression: Compression) -> None:
        self._native.set_compression(int(compression))

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        if self._initial_sent:
            raise ValueError("initial metadata already sent")
        self._initial_sent = True
        try:
            self._native.send_initial_metadata(initial_metadata)
        except _native.RpcStatus:
            pass

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailing = tuple(trailing_metadata or ())

    def trailing_metadata(self) -> Any:
        return self._trailing

    def abort(self, code: StatusCode, details: str) -> None:
        """Ends the call with ``code`` and ``details``; raises to unwind the handler."""
        if code is StatusCode.OK:
            _LOGGER.error("abort() called with StatusCode.OK; returning UNKNOWN")
            code = StatusCode.UNKNOWN
            details = ""
        self._code = code
        self._details = details
        raise _Abort()

    def abort_with_status(self, status: Any) -> None:
        self.set_trailing_metadata(status.trailing_metadata)
        self.abort(status.code, status.details)

    def set_code(self, code: StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> Optional[StatusCode]:
        return self._code

    def details(self) -> Optional[str]:
        return self._details

    def disable_next_message_compression(self) -> None:
        self._compress_next = False

    # internals
    def _send(self, data: bytes) -> None:
        compress, self._compress_next = self._compress_next, True
        self._native.send(data, compress)

    def _reply(self, data: bytes) -> None:
        compress, self._compress_next = self._compress_next, True
        # Without callbacks to run, a pool thread defers the reply to its next
        # ``pull`` (Server._serve_and_pull), which starts it as it parks.
        self._native.reply(data, compress, self._trailing, self._defer and not self._callbacks)
        self._run_callbacks()

    def _finish(self, code: StatusCode, details: str) -> None:
        if not self._cancelled:
            self._native.finish(code.value[0], details, self._trailing)
        self._run_callbacks()


class _RequestIterator:
    """The request stream a streaming handler iterates."""

    def __init__(self, native: Any, deserializer: Optional[Callable[[bytes], Any]]) -> None:
        self._native = native
        self._deserializer = deserializer

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        data = self._native.recv()
        if data is None:
            raise StopIteration()
        return data if self._deserializer is None else self._deserializer(data)

    next = __next__


_SERVER_INT_OPTIONS = {
    "grpc.max_receive_message_length": "max_recv",
    "grpc.max_send_message_length": "max_send",
    "grpc.max_concurrent_streams": "max_concurrent_streams",
    "grpc.keepalive_time_ms": "keepalive_time_ms",
    "grpc.keepalive_timeout_ms": "keepalive_timeout_ms",
    "grpc.http2.min_recv_ping_interval_without_data_ms": "keepalive_min_time_ms",
    "grpc.http2.min_ping_interval_without_data_ms": "keepalive_min_time_ms",
    "grpc.max_connection_idle_ms": "max_connection_idle_ms",
    "grpc.max_connection_age_ms": "max_connection_age_ms",
    "grpc.max_connection_age_grace_ms": "max_connection_age_grace_ms",
}


# How long a pool thread that served a call waits for the next one before it goes back to
# the pool (the dispatcher thread takes the calls then). Short: a thread waiting here is
# not free for other work submitted to the same executor.
_PULL_WAIT = 0.02


def _pool_closing(pool: Any) -> bool:
    """The executor was shut down, or the interpreter is exiting (which joins pool threads)."""
    return bool(getattr(pool, "_shutdown", False) or getattr(_futures_thread, "_shutdown", False))


class Server:
    """A gRPC server (grpc.Server). Build it with ``grpc_core.server(...)``."""

    # The pool threads waiting for their next call drive the server's connections
    # themselves (its own runtime; see CallQueue in the native module). The aio
    # server's runtime is driven by its event loop instead (_loop_driven).
    _caller_driven = True
    _loop_driven = False

    def __init__(
        self,
        thread_pool: Optional[futures.Executor],
        handlers: Optional[Sequence[GenericRpcHandler]],
        interceptors: Optional[Sequence[ServerInterceptor]],
        options: Optional[Sequence[Tuple[str, Any]]],
        maximum_concurrent_rpcs: Optional[int],
        compression: Optional[Compression],
    ) -> None:
        self._pool = thread_pool or futures.ThreadPoolExecutor(max_workers=10)
        self._generic: List[GenericRpcHandler] = list(handlers or ())
        # See _handler_for; None: not built (or handlers changed since).
        self._by_method: Optional[Dict[str, RpcMethodHandler]] = None
        self._registered: Dict[str, RpcMethodHandler] = {}
        self._interceptors = list(interceptors or ())
        self._kw: Dict[str, Any] = {}
        for key, value in options or ():
            if key in _SERVER_INT_OPTIONS:
                self._kw[_SERVER_INT_OPTIONS[key]] = int(value)
            elif key == "grpc.keepalive_permit_without_calls":
                self._kw["keepalive_permit_without_calls"] = bool(value)
            elif key == "grpc.http2.max_ping_strikes":
                pass
        if compression is not None:
            self._kw["compression"] = compression_to_native(compression)
        # An OpenTelemetryPlugin registered now records this server's calls.
        self._tracing = _observability._channel_kw(self._kw)
        self._max_rpcs = maximum_concurrent_rpcs
        self._active = 0
        self._active_lock = threading.Lock()
        self._queue = _native.CallQueue(self._caller_driven, self._loop_driven)
        self._natives: List[Any] = []
        self._ports: List[Tuple[str, Optional[ServerCredentials], int]] = []
        self._state = "new"
        self._state_lock = threading.Lock()
        self._terminated = threading.Event()
        self._dispatcher: Optional[threading.Thread] = None
        self._health: Any = None

    # configuration
    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[GenericRpcHandler]) -> None:
        for h in generic_rpc_handlers:
            if not hasattr(h, "service"):
                raise AttributeError(f'"{h}" must conform to grpc.GenericRpcHandler type but does not have "service" method!')
        self._generic.extend(generic_rpc_handlers)
        self._by_method = None

    def add_registered_method_handlers(self, service_name: str, method_handlers: Dict[str, RpcMethodHandler]) -> None:
        for method, handler in method_handlers.items():
            self._registered[f"/{service_name}/{method}"] = handler
        self._by_method = None
        if "telemetry" in self._kw and self._natives and self._state == "new":
            self._rebind()  # the engine names registered methods in its metrics (see _bind)

    def _enable_reflection(self, file_descriptor_set: bytes, methods: Sequence[str]) -> None:
        """Reflection over these descriptors for every port added from now on (see ``grpc_core.reflection``)."""
        with self._state_lock:
            if self._state != "new":
                raise RuntimeError("enable_server_reflection must be called before the server starts")
        self._kw.setdefault("reflection", []).append(file_descriptor_set)
        known = self._kw.setdefault("reflection_methods", [])
        for m in methods:
            if m not in known:
                known.append(m)
        if self._natives:
            self._rebind()

    def _enable_health(self, servicer: Any) -> None:
        """Serves ``grpc.health.v1.Health`` from ``servicer`` on every port (see ``grpc_core.health``)."""
        with self._state_lock:
            if self._state != "new":
                raise RuntimeError("add_HealthServicer_to_server must be called before the server starts")
        if self._health is servicer:
            return
        if self._health is not None:
            raise ValueError("a HealthServicer was already added to this server")
        self._health = servicer
        self._kw["health"] = True
        servicer._attach(self)
        if self._natives:
            self._rebind()

    def _health_set(self, service: str, status: int) -> None:
        for n in list(self._natives):
            n.health_set(service, status)

    def _rebind(self) -> None:
        """Rebuilds the ports added so far with the current settings, on the same port
        numbers (the engine fixes a server's methods when it is built)."""
        old, ports = self._natives, self._ports
        if any(port == 0 for _, _, port in ports):
            raise RuntimeError("enable_server_reflection and add_HealthServicer_to_server must come before a unix: port")
        self._natives, self._ports = [], []
        for n in old:
            n.shutdown(0)
        for address, credentials, port in ports:
            host = address.rsplit(":", 1)[0]
            for attempt in range(100):
                try:
                    self._bind(f"{host}:{port}", credentials)
                    break
                except RuntimeError:  # the old listener may take a moment to close
                    if attempt == 99:
                        raise
                    time.sleep(0.01)

    def _bind(self, address: str, credentials: Optional[ServerCredentials]) -> int:
        with self._state_lock:
            if self._state not in ("new", "started"):
                raise RuntimeError("server is stopped")
        kw = dict(self._kw)
        if "telemetry" in kw:
            # Registered methods are the engine's too, so that its metrics name
            # them (A66; a generic handler's calls are "other", as in grpcio).
            kw["methods"] = list(self._registered)
        if credentials is not None and not credentials._insecure:
            if not credentials._pairs:
                raise ValueError("ssl_server_credentials needs at least one (private_key, certificate_chain) pair")
            key, chain = credentials._pairs[0]
            kw.update(cert_chain=chain, private_key=key, client_ca=credentials._root_certificates)
            kw["require_client_auth"] = credentials._require_client_auth
        native = _native.NativeServer(self._queue, **kw)
        if address.startswith("[::]:"):
            address = "[::]:" + address[5:]
        elif address.startswith("0.0.0.0:") or address.startswith("localhost:"):
            pass
        elif address.startswith(":"):
            address = "[::]" + address
        port = native.bind(address)
        self._natives.append(native)
        if self._health is not None:  # after the append: a concurrent set() reaches it one way or the other
            for service, status in self._health._statuses().items():
                native.health_set(service, status)
        self._ports.append((address, credentials, port))
        if self._state == "started":
            native.start()
        return port

    def add_insecure_port(self, address: str) -> int:
        """Listens on ``address`` without TLS; returns the port (the real one for port 0)."""
        return self._bind(address, None)

    def add_secure_port(self, address: str, server_credentials: ServerCredentials) -> int:
        """Listens on ``address`` with TLS; returns the port."""
        return self._bind(address, server_credentials)

    # lifecycle
    def start(self) -> None:
        with self._state_lock:
            if self._state != "new":
                raise ValueError("Cannot start a server twice" if self._state == "started" else "server is stopped")
            self._state = "started"
        for n in self._natives:
            n.start()
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True, name="grpc_core-server")
        self._dispatcher.start()

    def stop(self, grace: Optional[float]) -> threading.Event:
        """Stops: new calls are refused; calls in flight get ``grace`` seconds
        (None: none) before they are cancelled. Returns an Event set once stopped."""
        with self._state_lock:
            if self._state in ("stopping", "stopped"):
                return self._terminated
            was_started = self._state == "started"
            self._state = "stopping"

        def shutdown() -> None:
            for n in self._natives:
                n.shutdown(grace or 0.0)
            self._queue.close()
            if self._dispatcher is not None:
                self._dispatcher.join()
            with self._state_lock:
                self._state = "stopped"
            self._terminated.set()

        if not was_started:
            shutdown()
        else:
            threading.Thread(target=shutdown, daemon=True, name="grpc_core-stop").start()
        return self._terminated

    def wait_for_termination(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the server stops; returns True on timeout (like grpcio)."""
        if timeout is None:
            while not self._terminated.wait(0.25):
                pass
            return False
        return not self._terminated.wait(timeout)

    def __enter__(self) -> "Server":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(None).wait()

    # serving
    def _lookup(self, details: HandlerCallDetails) -> Optional[RpcMethodHandler]:
        handler = self._registered.get(details.method)
        if handler is not None:
            return handler
        for g in self._generic:
            handler = g.service(details)
            if handler is not None:
                return handler
        return None

    def _handler_for(self, method: str) -> Optional[RpcMethodHandler]:
        """The handler for ``method`` when the lookup depends on the method alone (no
        interceptors, and every generic handler is a ``method_handlers_generic_handler``
        table): one dict, built once, and no HandlerCallDetails (nor metadata) per call.
        None: ask ``_find``/``_lookup`` (the handler may depend on more, or not exist)."""
        table = self._by_method
        if table is None:
            table = {}
            if not self._interceptors and all(type(g) is _DictionaryGenericHandler for g in self._generic):
                for g in reversed(self._generic):  # the first generic handler that has it wins
                    table.update(g._methods)  # type: ignore[attr-defined]
                table.update(self._registered)  # registered methods come before generic ones
            self._by_method = table
        return table.get(method)

    def _find(self, details: HandlerCallDetails) -> Optional[RpcMethodHandler]:
        if not self._interceptors:
            return self._lookup(details)
        continuation: Callable[[HandlerCallDetails], Optional[RpcMethodHandler]] = self._lookup
        for interceptor in reversed(self._interceptors):

            def make(i: ServerInterceptor, cont: Callable[..., Any]) -> Callable[[HandlerCallDetails], Any]:
                return lambda d: i.intercept_service(cont, d)

            continuation = make(interceptor, continuation)
        return continuation(details)

    def _dispatch(self) -> None:
        while True:
            call = self._queue.next()
            if call is None:
                return
            if not self._admit(call):
                continue
            try:
                self._pool.submit(self._serve_and_pull, call)
            except RuntimeError:
                call.finish(StatusCode.UNAVAILABLE.value[0], "server is shutting down")
                self._release()

    def _admit(self, call: Any) -> bool:
        if self._max_rpcs is None:
            return True
        with self._active_lock:
            if self._active >= self._max_rpcs:
                call.finish(StatusCode.RESOURCE_EXHAUSTED.value[0], "Concurrent RPC limit exceeded!")
                return False
            self._active += 1
        return True

    def _serve_and_pull(self, call: Any) -> None:
        """Serves ``call`` on this pool thread, then takes the calls that arrive within
        ``_PULL_WAIT`` seconds here too (before the dispatcher does): a busy server's
        calls then reach a pool thread directly, one thread hop fewer per call."""
        while True:
            self._serve(call, True)
            if _pool_closing(self._pool):
                call.flush()
                return  # leave the pool's thread to its shutdown (interpreter exit joins it)
            nxt = self._queue.pull(_PULL_WAIT, call)
            if nxt is None:
                return
            call = nxt
            if self._max_rpcs is not None and not self._admit(call):
                return

    def _release(self) -> None:
        if self._max_rpcs is not None:
            with self._active_lock:
                self._active -= 1

    def _serve(self, call: Any, defer: bool = False) -> None:
        token = _observability._attach(call) if self._tracing else None
        try:
            self._serve_call(call, defer)
        except Exception:  # noqa: BLE001 - never let a call kill a pool thread silently
            _LOGGER.exception("Exception serving %s", call.method)
            call.finish(StatusCode.INTERNAL.value[0], "internal error in grpc_core")
        finally:
            if token is not None:
                _observability._detach(token)
            if self._max_rpcs is not None:
                self._release()

    def _serve_call(self, call: Any, defer: bool = False) -> None:
        ctx = ServicerContext(call, self)
        ctx._defer = defer
        try:
            handler = self._handler_for(call.method) or self._find(
                _HandlerCallDetails(call.method, ctx.invocation_metadata())
            )
        except Exception as e:  # noqa: BLE001
            _LOGGER.exception("Exception servicing handler")
            call.finish(StatusCode.UNKNOWN.value[0], f"Exception servicing handler: {e}")
            return
        if handler is None:
            call.finish(StatusCode.UNIMPLEMENTED.value[0], "Method not found!")
            return
        deser = handler.request_deserializer
        ser = handler.response_serializer
        try:
            if handler.request_streaming:
                request: Any = _RequestIterator(call, deser)
            else:
                data = call.recv()
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
                behavior = handler.unary_stream if not handler.request_streaming else handler.stream_stream
                assert behavior is not None
                responses = behavior(request, ctx)
                if responses is not None:
                    for response in responses:
                        if not self._send(ctx, response, ser):
                            return
            else:
                behavior = handler.unary_unary if not handler.request_streaming else handler.stream_unary
                assert behavior is not None
                response = behavior(request, ctx)
                if ctx._code is None or ctx._code is StatusCode.OK:
                    if response is None:
                        # grpcio fails a unary method that returns None without setting a code.
                        ctx._finish(StatusCode.INTERNAL, "Exception serializing response!")
                        return
                    try:
                        data = response if ser is None else ser(response)
                    except Exception:  # noqa: BLE001
                        _LOGGER.exception("Exception serializing response!")
                        ctx._finish(StatusCode.INTERNAL, "Exception serializing response!")
                        return
                    if ctx._code is None and not ctx._details and not ctx._cancelled:
                        ctx._reply(data)
                        return
                    ctx._send(data)
        except _Abort:
            ctx._finish(ctx._code or StatusCode.UNKNOWN, ctx._details or "")
            return
        except _native.RpcStatus:
            # The call ended under the handler (cancelled, deadline): nothing to send.
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

    @staticmethod
    def _send(ctx: ServicerContext, response: Any, ser: Optional[Callable[[Any], bytes]]) -> bool:
        try:
            data = response if ser is None else ser(response)
        except Exception:  # noqa: BLE001
            _LOGGER.exception("Exception serializing response!")
            ctx._finish(StatusCode.INTERNAL, "Exception serializing response!")
            return False
        ctx._send(data)
        return True


def server(
    thread_pool: Optional[futures.Executor] = None,
    handlers: Optional[Sequence[GenericRpcHandler]] = None,
    interceptors: Optional[Sequence[ServerInterceptor]] = None,
    options: Optional[Sequence[Tuple[str, Any]]] = None,
    maximum_concurrent_rpcs: Optional[int] = None,
    compression: Optional[Compression] = None,
    xds: bool = False,
) -> Server:
    """Creates a server that runs handlers on ``thread_pool``."""
    del xds
    return Server(thread_pool, handlers, interceptors, options, maximum_concurrent_rpcs, compression)


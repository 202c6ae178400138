"""Client interceptors: ``intercept_channel`` and the four interceptor interfaces."""

from __future__ import annotations

import abc
import collections
from typing import Any, Callable, Optional, Sequence

from ._common import ClientCallDetails


class UnaryUnaryClientInterceptor(abc.ABC):
    """Intercepts unary-unary calls."""

    @abc.abstractmethod
    def intercept_unary_unary(self, continuation: Callable[..., Any], client_call_details: ClientCallDetails,
                              request: Any) -> Any: ...


class UnaryStreamClientInterceptor(abc.ABC):
    """Intercepts unary-stream calls."""

    @abc.abstractmethod
    def intercept_unary_stream(self, continuation: Callable[..., Any], client_call_details: ClientCallDetails,
                               request: Any) -> Any: ...


class StreamUnaryClientInterceptor(abc.ABC):
    """Intercepts stream-unary calls."""

    @abc.abstractmethod
    def intercept_stream_unary(self, continuation: Callable[..., Any], client_call_details: ClientCallDetails,
                               request_iterator: Any) -> Any: ...


class StreamStreamClientInterceptor(abc.ABC):
    """Intercepts stream-stream calls."""

    @abc.abstractmethod
    def intercept_stream_stream(self, continuation: Callable[..., Any], client_call_details: ClientCallDetails,
                                request_iterator: Any) -> Any: ...


class _ClientCallDetails(
    collections.namedtuple(
        "_ClientCallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    ClientCallDetails,
):
    pass


_KINDS = {
    "unary_unary": (UnaryUnaryClientInterceptor, "intercept_unary_unary"),
    "unary_stream": (UnaryStreamClientInterceptor, "intercept_unary_stream"),
    "stream_unary": (StreamUnaryClientInterceptor, "intercept_stream_unary"),
    "stream_stream": (StreamStreamClientInterceptor, "intercept_stream_stream"),
}


class _InterceptedMultiCallable:
    def __init__(self, channel: Any, kind: str, method: str, serializer: Any, deserializer: Any,
                 interceptors: Sequence[Any]) -> None:
        self._channel = channel
        self._kind = kind
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer
        iface, attr = _KINDS[kind]
        self._interceptors = [i for i in interceptors if isinstance(i, iface)]
        self._attr = attr

    def _invoke(self, request: Any, timeout: Optional[float], metadata: Any, credentials: Any,
                wait_for_ready: Optional[bool], compression: Any) -> Any:
        unary_response = self._kind in ("unary_unary", "stream_unary")

        def terminal(details: Any, req: Any) -> Any:
            mc = getattr(self._channel, self._kind)(details.method, self._serializer, self._deserializer)
            kw = dict(timeout=details.timeout, metadata=details.metadata, credentials=details.credentials,
                      wait_for_ready=details.wait_for_ready, compression=details.compression)
            return mc.future(req, **kw) if unary_response else mc(req, **kw)

        continuation: Callable[[Any, Any], Any] = terminal
        for interceptor in reversed(self._interceptors):

            def make(i: Any, cont: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
                return lambda d, r: getattr(i, self._attr)(cont, d, r)

            continuation = make(interceptor, continuation)
        details = _ClientCallDetails(self._method, timeout, metadata, credentials, wait_for_ready, compression)
        return continuation(details, request)

    def __call__(self, request: Any, timeout: Optional[float] = None, metadata: Any = None, credentials: Any = None,
                 wait_for_ready: Optional[bool] = None, compression: Any = None) -> Any:
        call = self._invoke(request, timeout, metadata, credentials, wait_for_ready, compression)
        if self._kind in ("unary_unary", "stream_unary"):
            return call.result()
        return call

    def with_call(self, request: Any, timeout: Optional[float] = None, metadata: Any = None, credentials: Any = None,
                  wait_for_ready: Optional[bool] = None, compression: Any = None) -> Any:
        call = self._invoke(request, timeout, metadata, credentials, wait_for_ready, compression)
        return call.result(), call

    def future(self, request: Any, timeout: Optional[float] = None, metadata: Any = None, credentials: Any = None,
               wait_for_ready: Optional[bool] = None, compression: Any = None) -> Any:
        return self._invoke(request, timeout, metadata, credentials, wait_for_ready, compression)


class _InterceptedChannel:
    """A channel whose calls go through interceptors (see ``intercept_channel``)."""

    def __init__(self, channel: Any, interceptors: Sequence[Any]) -> None:
        self._channel = channel
        self._interceptors = tuple(interceptors)

    def _mc(self, kind: str, method: str, request_serializer: Any, response_deserializer: Any) -> Any:
        return _InterceptedMultiCallable(self._channel, kind, method, request_serializer, response_deserializer,
                                         self._interceptors)

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    _registered_method: Optional[bool] = False) -> Any:
        return self._mc("unary_unary", method, request_serializer, response_deserializer)

    def unary_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: Optional[bool] = False) -> Any:
        return self._mc("unary_stream", method, request_serializer, response_deserializer)

    def stream_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: Optional[bool] = False) -> Any:
        return self._mc("stream_unary", method, request_serializer, response_deserializer)

    def stream_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                      _registered_method: Optional[bool] = False) -> Any:
        return self._mc("stream_stream", method, request_serializer, response_deserializer)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "_InterceptedChannel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def intercept_channel(channel: Any, *interceptors: Any) -> _InterceptedChannel:
    """``channel`` with ``interceptors`` around every call (the first is outermost)."""
    for i in interceptors:
        if not isinstance(i, tuple(k[0] for k in _KINDS.values())):
            raise TypeError(f"{i!r} is not a client interceptor")
    return _InterceptedChannel(channel, interceptors)

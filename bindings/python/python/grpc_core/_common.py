"""Types shared by the client and the server: status codes, compression,
connectivity, metadata, and the abstract interfaces grpcio defines."""

from __future__ import annotations

import abc
import collections
import enum
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple


class StatusCode(enum.Enum):
    """gRPC status codes; each value is ``(int, 'name')`` as in grpcio."""

    OK = (0, "ok")
    CANCELLED = (1, "cancelled")
    UNKNOWN = (2, "unknown")
    INVALID_ARGUMENT = (3, "invalid argument")
    DEADLINE_EXCEEDED = (4, "deadline exceeded")
    NOT_FOUND = (5, "not found")
    ALREADY_EXISTS = (6, "already exists")
    PERMISSION_DENIED = (7, "permission denied")
    RESOURCE_EXHAUSTED = (8, "resource exhausted")
    FAILED_PRECONDITION = (9, "failed precondition")
    ABORTED = (10, "aborted")
    OUT_OF_RANGE = (11, "out of range")
    UNIMPLEMENTED = (12, "unimplemented")
    INTERNAL = (13, "internal")
    UNAVAILABLE = (14, "unavailable")
    DATA_LOSS = (15, "data loss")
    UNAUTHENTICATED = (16, "unauthenticated")


_CODE_BY_INT = {c.value[0]: c for c in StatusCode}


def code_from_int(n: int) -> StatusCode:
    return _CODE_BY_INT.get(n, StatusCode.UNKNOWN)


class Compression(enum.IntEnum):
    """Compression algorithms, numbered as in grpcio."""

    NoCompression = 0
    Deflate = 1
    Gzip = 2


def compression_to_native(c: Optional[Compression]) -> Optional[int]:
    return None if c is None else int(c)


class ChannelConnectivity(enum.Enum):
    """Channel connectivity states, valued as in grpcio."""

    IDLE = (0, "idle")
    CONNECTING = (1, "connecting")
    READY = (2, "ready")
    TRANSIENT_FAILURE = (3, "transient failure")
    SHUTDOWN = (4, "shutdown")


_Metadatum = collections.namedtuple("_Metadatum", ("key", "value"))

Metadata = Tuple[Tuple[str, Any], ...]


def metadata_from_native(md: Optional[Iterable[Tuple[str, Any]]]) -> Tuple[_Metadatum, ...]:
    if not md:
        return ()
    return tuple(_Metadatum(k, v) for k, v in md)


class FutureTimeoutError(Exception):
    """Raised by Future methods when the timeout passes first."""


class FutureCancelledError(Exception):
    """Raised by Future methods when the computation was cancelled."""


class Future(abc.ABC):
    """A computation that may finish later (grpc.Future)."""

    @abc.abstractmethod
    def cancel(self) -> bool: ...

    @abc.abstractmethod
    def cancelled(self) -> bool: ...

    @abc.abstractmethod
    def running(self) -> bool: ...

    @abc.abstractmethod
    def done(self) -> bool: ...

    @abc.abstractmethod
    def result(self, timeout: Optional[float] = None) -> Any: ...

    @abc.abstractmethod
    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]: ...

    @abc.abstractmethod
    def traceback(self, timeout: Optional[float] = None) -> Any: ...

    @abc.abstractmethod
    def add_done_callback(self, fn: Callable[["Future"], None]) -> None: ...


class RpcError(Exception):
    """Raised when an RPC ends with a non-OK status."""


class RpcContext(abc.ABC):
    """What client calls and servicer contexts share."""

    @abc.abstractmethod
    def is_active(self) -> bool: ...

    @abc.abstractmethod
    def time_remaining(self) -> Optional[float]: ...

    @abc.abstractmethod
    def cancel(self) -> Any: ...

    @abc.abstractmethod
    def add_callback(self, callback: Callable[[], None]) -> bool: ...


class Call(RpcContext, metaclass=abc.ABCMeta):
    """A client call's metadata and status."""

    @abc.abstractmethod
    def initial_metadata(self) -> Metadata: ...

    @abc.abstractmethod
    def trailing_metadata(self) -> Metadata: ...

    @abc.abstractmethod
    def code(self) -> StatusCode: ...

    @abc.abstractmethod
    def details(self) -> str: ...


class Status(abc.ABC):
    """A status for ``ServicerContext.abort_with_status``: code, details, trailing_metadata."""

    code: StatusCode
    details: str
    trailing_metadata: Metadata


class ClientCallDetails(abc.ABC):
    """Describes an RPC to client interceptors."""

    method: str
    timeout: Optional[float]
    metadata: Optional[Metadata]
    credentials: Any
    wait_for_ready: Optional[bool]
    compression: Optional[Compression]


class HandlerCallDetails(abc.ABC):
    """Describes an RPC to generic handlers: method and invocation_metadata."""

    method: str
    invocation_metadata: Metadata


class RpcMethodHandler(abc.ABC):
    """How to serve one method (see the ``*_rpc_method_handler`` functions)."""

    request_streaming: bool
    response_streaming: bool
    request_deserializer: Optional[Callable[[bytes], Any]]
    response_serializer: Optional[Callable[[Any], bytes]]
    unary_unary: Optional[Callable[..., Any]]
    unary_stream: Optional[Callable[..., Any]]
    stream_unary: Optional[Callable[..., Any]]
    stream_stream: Optional[Callable[..., Any]]


class GenericRpcHandler(abc.ABC):
    """Finds the handler of a method."""

    @abc.abstractmethod
    def service(self, handler_call_details: HandlerCallDetails) -> Optional[RpcMethodHandler]: ...


class ServiceRpcHandler(GenericRpcHandler, metaclass=abc.ABCMeta):
    """A generic handler for one service."""

    @abc.abstractmethod
    def service_name(self) -> str: ...


class ServerInterceptor(abc.ABC):
    """Intercepts the lookup of method handlers."""

    @abc.abstractmethod
    def intercept_service(
        self,
        continuation: Callable[[HandlerCallDetails], Optional[RpcMethodHandler]],
        handler_call_details: HandlerCallDetails,
    ) -> Optional[RpcMethodHandler]: ...


class ChannelCredentials:
    """Credentials of a channel (see ``ssl_channel_credentials``, ``local_channel_credentials``).

    ``insecure``: plaintext, call credentials refused (``experimental.insecure_channel_credentials``);
    ``local``: plaintext to a local peer, call credentials allowed (as grpcio's local credentials).
    """

    def __init__(
        self,
        root_certificates: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        call_credentials: Sequence["CallCredentials"] = (),
        insecure: bool = False,
        local: bool = False,
    ) -> None:
        self._root_certificates = root_certificates
        self._private_key = private_key
        self._certificate_chain = certificate_chain
        self._call_credentials = tuple(call_credentials)
        self._insecure = insecure
        self._local = local

    def _native_call_credentials(self) -> Any:
        """The engine's credentials for every call of the channel, or None."""
        return compose_native(self._call_credentials)


class CallCredentials:
    """Per-call credentials: metadata added to each call, made by the engine
    (``_native`` is a ``NativeCallCredentials``)."""

    def __init__(self, native: Any) -> None:
        self._native = native


def compose_native(creds: Sequence[CallCredentials]) -> Any:
    out = None
    for c in creds:
        out = c._native if out is None else out.compose(c._native)
    return out


class ServerCredentials:
    """TLS settings of a server port (see ``ssl_server_credentials``)."""

    def __init__(
        self,
        private_key_certificate_chain_pairs: Sequence[Tuple[bytes, bytes]],
        root_certificates: Optional[bytes] = None,
        require_client_auth: bool = False,
        insecure: bool = False,
    ) -> None:
        self._pairs = tuple(private_key_certificate_chain_pairs)
        self._root_certificates = root_certificates
        self._require_client_auth = require_client_auth
        self._insecure = insecure


class AuthMetadataContext(abc.ABC):
    """What a metadata plugin learns about the call: service_url, method_name."""

    service_url: str
    method_name: str


class AuthMetadataPluginCallback(abc.ABC):
    """Called by a metadata plugin with ``(metadata, error)``."""

    @abc.abstractmethod
    def __call__(self, metadata: Metadata, error: Optional[Exception]) -> None: ...


class AuthMetadataPlugin(abc.ABC):
    """Makes the metadata of a call."""

    @abc.abstractmethod
    def __call__(self, context: AuthMetadataContext, callback: AuthMetadataPluginCallback) -> None: ...

"""grpc_core: grpcio's API on the grpc-core Rust engine.

Change ``import grpc`` to ``import grpc_core as grpc``, or call
``grpc_core.install_as_grpc()`` first so that code written for grpcio
(including grpcio-tools-generated ``*_pb2_grpc.py``) runs unchanged.
"""

from __future__ import annotations

import atexit
import collections
import enum
import logging
import sys
from typing import Any, Optional, Sequence, Tuple

from . import _native
from ._channel import (
    Channel,
    ManualResolver,
    StreamStreamMultiCallable,
    StreamUnaryMultiCallable,
    UnaryStreamMultiCallable,
    UnaryUnaryMultiCallable,
    _ReadyFuture,
)
from ._common import (
    AuthMetadataContext,
    AuthMetadataPlugin,
    AuthMetadataPluginCallback,
    Call,
    CallCredentials,
    ChannelConnectivity,
    ChannelCredentials,
    ClientCallDetails,
    Compression,
    Future,
    FutureCancelledError,
    FutureTimeoutError,
    GenericRpcHandler,
    HandlerCallDetails,
    RpcContext,
    RpcError,
    RpcMethodHandler,
    ServerCredentials,
    ServerInterceptor,
    ServiceRpcHandler,
    Status,
    StatusCode,
    compose_native,
)
from ._interceptor import (
    StreamStreamClientInterceptor,
    StreamUnaryClientInterceptor,
    UnaryStreamClientInterceptor,
    UnaryUnaryClientInterceptor,
    intercept_channel,
)
from ._logs import disable_logging, enable_logging
from ._server import (
    Server,
    ServicerContext,
    method_handlers_generic_handler,
    server,
    stream_stream_rpc_method_handler,
    stream_unary_rpc_method_handler,
    unary_stream_rpc_method_handler,
    unary_unary_rpc_method_handler,
)

__version__: str = _native.VERSION

_LOGGER = logging.getLogger(__name__)

# A daemon thread whose call completes while the interpreter finalizes must
# not re-enter it (before 3.14 that aborts the process): from here on the
# engine parks such threads instead. atexit runs after non-daemon threads
# were joined, on the finalizing thread, which is left alone.
atexit.register(_native._at_exit)

__all__ = [
    "AuthMetadataContext",
    "AuthMetadataPlugin",
    "AuthMetadataPluginCallback",
    "Call",
    "CallCredentials",
    "Channel",
    "ManualResolver",
    "ChannelConnectivity",
    "ChannelCredentials",
    "ClientCallDetails",
    "Compression",
    "Future",
    "FutureCancelledError",
    "FutureTimeoutError",
    "GenericRpcHandler",
    "HandlerCallDetails",
    "RpcContext",
    "RpcError",
    "RpcMethodHandler",
    "Server",
    "ServerCredentials",
    "ServerInterceptor",
    "ServiceRpcHandler",
    "ServicerContext",
    "Status",
    "StatusCode",
    "StreamStreamClientInterceptor",
    "StreamStreamMultiCallable",
    "StreamUnaryClientInterceptor",
    "UnaryStreamClientInterceptor",
    "UnaryUnaryClientInterceptor",
    "intercept_channel",
    "LocalConnectionType",
    "local_channel_credentials",
    "local_server_credentials",
    "enable_logging",
    "disable_logging",
    "StreamUnaryMultiCallable",
    "UnaryStreamMultiCallable",
    "UnaryUnaryMultiCallable",
    "access_token_call_credentials",
    "channel_ready_future",
    "composite_call_credentials",
    "composite_channel_credentials",
    "experimental",
    "insecure_channel",
    "install_as_grpc",
    "metadata_call_credentials",
    "method_handlers_generic_handler",
    "secure_channel",
    "server",
    "ssl_channel_credentials",
    "ssl_server_credentials",
    "stream_stream_rpc_method_handler",
    "stream_unary_rpc_method_handler",
    "unary_stream_rpc_method_handler",
    "unary_unary_rpc_method_handler",
]


def insecure_channel(
    target: str,
    options: Optional[Sequence[Tuple[str, Any]]] = None,
    compression: Optional[Compression] = None,
) -> Channel:
    """A plaintext channel to ``target`` (``host:port``, ``dns:///host:port``, ``unix:path``)."""
    return Channel(target, options, None, compression)


def secure_channel(
    target: str,
    credentials: ChannelCredentials,
    options: Optional[Sequence[Tuple[str, Any]]] = None,
    compression: Optional[Compression] = None,
) -> Channel:
    """A TLS channel to ``target``."""
    return Channel(target, options, credentials, compression)


def ssl_channel_credentials(
    root_certificates: Optional[bytes] = None,
    private_key: Optional[bytes] = None,
    certificate_chain: Optional[bytes] = None,
) -> ChannelCredentials:
    """TLS credentials: PEM roots (None: the system's), and a key and chain for mutual TLS."""
    return ChannelCredentials(root_certificates, private_key, certificate_chain)


def ssl_server_credentials(
    private_key_certificate_chain_pairs: Sequence[Tuple[bytes, bytes]],
    root_certificates: Optional[bytes] = None,
    require_client_auth: bool = False,
) -> ServerCredentials:
    """Server TLS from ``[(private_key_pem, certificate_chain_pem)]``; roots verify client certificates."""
    if not private_key_certificate_chain_pairs:
        raise ValueError("At least one private key-certificate chain pair is required!")
    if require_client_auth and root_certificates is None:
        raise ValueError("Illegal to require client auth without providing root certificates!")
    return ServerCredentials(private_key_certificate_chain_pairs, root_certificates, require_client_auth)


class _AuthMetadataContext(collections.namedtuple("AuthMetadataContext", ("service_url", "method_name")),
                           AuthMetadataContext):
    """What a plugin is told (grpcio's: ``service_url``, ``method_name``)."""


class _Invoker:
    """Called by the engine (GIL taken on a runtime thread) for each call:
    runs the plugin; its exception becomes ``callback(None, error)``, which
    ends the call UNAVAILABLE, as in grpcio."""

    def __init__(self, plugin: Any) -> None:
        self._plugin = plugin

    def __call__(self, service_url: str, method_name: str, callback: Any) -> None:
        try:
            self._plugin(_AuthMetadataContext(service_url, method_name), callback)
        except Exception as e:  # noqa: BLE001 - reported to the call, logged like grpcio
            _LOGGER.exception('AuthMetadataPluginCallback "%s" raised exception!', self._plugin)
            try:
                callback(None, e)
            except ValueError:  # it had called back already
                pass


def metadata_call_credentials(metadata_plugin: AuthMetadataPlugin, name: Optional[str] = None) -> CallCredentials:
    """Call credentials whose metadata ``metadata_plugin(context, callback)`` makes; the
    plugin may call ``callback(metadata, error)`` later, from any thread."""
    return CallCredentials(_native.NativeCallCredentials.plugin(_Invoker(metadata_plugin)))


def access_token_call_credentials(access_token: str) -> CallCredentials:
    """Call credentials sending ``authorization: Bearer <token>``."""
    return CallCredentials(_native.NativeCallCredentials.access_token(access_token))


def composite_call_credentials(*call_credentials: CallCredentials) -> CallCredentials:
    """All these call credentials together, in order."""
    if not call_credentials:
        raise ValueError("composite_call_credentials needs at least one CallCredentials")
    return CallCredentials(compose_native(call_credentials))


class LocalConnectionType(enum.Enum):
    """How a local channel or server connects (grpcio's): a Unix socket or loopback TCP."""

    UDS = 0
    LOCAL_TCP = 1


def local_channel_credentials(local_connect_type: LocalConnectionType = LocalConnectionType.LOCAL_TCP) -> ChannelCredentials:
    """Plaintext to a peer on this machine, which (unlike ``insecure_channel``) carries call credentials."""
    return ChannelCredentials(local=True)


def local_server_credentials(local_connect_type: LocalConnectionType = LocalConnectionType.LOCAL_TCP) -> ServerCredentials:
    """A plaintext port for local clients (the counterpart of ``local_channel_credentials``)."""
    return ServerCredentials((), insecure=True)


def composite_channel_credentials(
    channel_credentials: ChannelCredentials, *call_credentials: CallCredentials
) -> ChannelCredentials:
    """Channel credentials that also add these call credentials to every call."""
    return ChannelCredentials(
        channel_credentials._root_certificates,
        channel_credentials._private_key,
        channel_credentials._certificate_chain,
        channel_credentials._call_credentials + tuple(call_credentials),
        channel_credentials._insecure,
        channel_credentials._local,
    )


def channel_ready_future(channel: Channel) -> Future:
    """A future that resolves once ``channel`` is READY."""
    return _ReadyFuture(channel)


def install_as_grpc() -> None:
    """Makes ``import grpc`` (and ``grpc.aio``, ``grpc.experimental``, ``grpc._utilities``) give grpc_core."""
    from . import _utilities, aio, experimental

    this = sys.modules[__name__]
    sys.modules["grpc"] = this
    sys.modules["grpc._utilities"] = _utilities
    sys.modules["grpc.experimental"] = experimental
    sys.modules["grpc.aio"] = aio
    sys.modules["grpc.experimental.aio"] = aio


from . import aio, experimental, observability  # noqa: E402  (they need the names above)

"""``grpc.experimental``: the one-shot call helpers generated code uses."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from .._channel import Channel
from .._common import CallCredentials, ChannelCredentials, Compression

__all__ = [
    "ExperimentalApiWarning",
    "aio",
    "insecure_channel_credentials",
    "stream_stream",
    "stream_unary",
    "unary_stream",
    "unary_unary",
]


class ExperimentalApiWarning(Warning):
    """Using an experimental API."""


def insecure_channel_credentials() -> ChannelCredentials:
    """Credentials for a plaintext channel, for the ``channel_credentials`` arguments."""
    return ChannelCredentials(insecure=True)


_CHANNELS: Dict[Tuple[Any, ...], Channel] = {}
_LOCK = threading.Lock()


def _channel(
    target: str,
    options: Sequence[Tuple[str, Any]],
    channel_credentials: Optional[ChannelCredentials],
    insecure: bool,
    compression: Optional[Compression],
) -> Channel:
    if insecure:
        channel_credentials = None
    elif channel_credentials is None:
        channel_credentials = ChannelCredentials()
    key = (target, tuple(options or ()), id(channel_credentials), compression)
    with _LOCK:
        ch = _CHANNELS.get(key)
        if ch is None:
            ch = Channel(target, options, channel_credentials, compression)
            _CHANNELS[key] = ch
        return ch


def _one_shot(kind: str) -> Callable[..., Any]:
    def call(
        request: Any,
        target: str,
        method: str,
        request_serializer: Optional[Callable[[Any], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], Any]] = None,
        options: Sequence[Tuple[str, Any]] = (),
        channel_credentials: Optional[ChannelCredentials] = None,
        insecure: bool = False,
        call_credentials: Optional[CallCredentials] = None,
        compression: Optional[Compression] = None,
        wait_for_ready: Optional[bool] = None,
        timeout: Optional[float] = None,
        metadata: Optional[Sequence[Tuple[str, Any]]] = None,
        _registered_method: Optional[bool] = False,
    ) -> Any:
        ch = _channel(target, options, channel_credentials, insecure, compression)
        mc = getattr(ch, kind)(method, request_serializer, response_deserializer)
        return mc(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=call_credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )

    call.__name__ = kind
    call.__doc__ = f"A one-shot {kind} call on a cached channel to ``target``."
    return call


unary_unary = _one_shot("unary_unary")
unary_stream = _one_shot("unary_stream")
stream_unary = _one_shot("stream_unary")
stream_stream = _one_shot("stream_stream")

# grpcio's older name for grpc.aio (grpcio-reflection and others import it).
from .. import aio  # noqa: E402

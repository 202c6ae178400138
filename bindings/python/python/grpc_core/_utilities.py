"""What grpcio-tools-generated code imports from ``grpc._utilities``."""

from __future__ import annotations

from typing import Tuple

from ._server import _DictionaryGenericHandler as DictionaryGenericHandler
from ._server import _RpcMethodHandler as RpcMethodHandler

__all__ = ["DictionaryGenericHandler", "RpcMethodHandler", "first_version_is_lower"]


def _parse(version: str) -> Tuple[int, ...]:
    parts = []
    for p in version.split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def first_version_is_lower(version: str, other: str) -> bool:
    """True if ``version`` is lower than ``other``.

    Generated ``*_pb2_grpc.py`` calls this with ``grpc.__version__`` and the
    grpcio-tools version that generated it. After ``install_as_grpc()``,
    ``grpc.__version__`` is grpc_core's own version, whose numbers are not
    grpcio's: grpc_core serves every API generated code uses, so it is never
    "lower" than the generator.
    """
    from . import __version__

    if version == __version__:
        return False
    return _parse(version) < _parse(other)

"""Server reflection (``grpc.reflection.v1`` and ``v1alpha``) served by the engine,
so grpcurl, Postman and grpcio-reflection's clients can list and describe services.

grpcio's API lives in the ``grpcio-reflection`` package
(``grpc_reflection.v1alpha.reflection.enable_server_reflection``); this is the same
call, answered by the engine from the descriptors of the generated ``*_pb2``
modules (protobuf's default pool) or from a ``FileDescriptorSet`` you pass.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Set

__all__ = ["SERVICE_NAME", "SERVICE_NAME_V1", "enable_server_reflection"]

SERVICE_NAME = "grpc.reflection.v1alpha.ServerReflection"
SERVICE_NAME_V1 = "grpc.reflection.v1.ServerReflection"
_REFLECTION = (SERVICE_NAME, SERVICE_NAME_V1)


def _file_set_from_pool(service_names: Iterable[str], pool: Any) -> bytes:
    from google.protobuf import descriptor_pb2  # type: ignore[import-untyped]

    out = descriptor_pb2.FileDescriptorSet()
    seen: Set[str] = set()

    def add(fd: Any) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            add(dep)
        out.file.add().ParseFromString(fd.serialized_pb)

    for name in service_names:
        try:
            add(pool.FindServiceByName(name).file)
        except KeyError:
            continue  # not in the pool (e.g. a service with hand-written handlers)
    return out.SerializeToString()


def _methods(service_names: Iterable[str], file_descriptor_set: bytes) -> List[str]:
    from google.protobuf import descriptor_pb2  # type: ignore[import-untyped]

    wanted = set(service_names)
    fds = descriptor_pb2.FileDescriptorSet.FromString(file_descriptor_set)
    paths: List[str] = []
    for f in fds.file:
        for svc in f.service:
            full = f"{f.package}.{svc.name}" if f.package else svc.name
            if full in wanted:
                paths.extend(f"/{full}/{m.name}" for m in svc.method)
    return paths


def enable_server_reflection(
    service_names: Iterable[str],
    server: Any,
    pool: Any = None,
    file_descriptor_set: Optional[bytes] = None,
) -> None:
    """Serves reflection on ``server`` for ``service_names``, whose descriptors come from
    ``file_descriptor_set`` (an encoded ``FileDescriptorSet``, e.g. ``protoc
    --include_imports --descriptor_set_out``) or else from ``pool`` (default: protobuf's
    default pool, which every imported ``*_pb2`` module fills).

    Call it before ``start()`` (ports added before are rebuilt on the same port numbers,
    since the engine builds each port's server with its reflection index; a ``unix:``
    port must come after). The reflection services themselves are always listed, v1
    and v1alpha."""
    names = [n for n in service_names if n not in _REFLECTION]
    if file_descriptor_set is None:
        if pool is None:
            from google.protobuf import descriptor_pool  # type: ignore[import-untyped]

            pool = descriptor_pool.Default()
        file_descriptor_set = _file_set_from_pool(names, pool)
    fds = bytes(file_descriptor_set)
    server._enable_reflection(fds, _methods(names, fds))

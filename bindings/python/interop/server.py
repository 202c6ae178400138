"""The gRPC interop server over grpc_core: ``grpc.testing.TestService`` as
the "Server" section of grpc's ``doc/interop-test-descriptions.md``
describes, written against grpcio's API (grpcio-tools-generated
``test_pb2_grpc`` with ``grpc_core.install_as_grpc()``).

Flags (grpc-go's): ``--port N`` (10000) ``--use_tls=true|false`` (false);
TLS uses ``$GRPC_INTEROP_CERTS_DIR/server1.pem`` and ``server1.key`` (or
``--tls_cert_file`` / ``--tls_key_file``). Listens on ``--host``
(127.0.0.1). ``--aio`` serves the same service with ``grpc.aio`` (grpc_core.aio).
Runs until SIGTERM or SIGINT.

Not implemented (grpcio's API cannot see them, as grpc-go's server does not
either): the CompressedRequest check (``expect_compressed``), so the
``client_compressed_*`` cases with a probe fail against it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
from concurrent import futures
from typing import Any, AsyncIterator, Iterable, Iterator, Optional

import _interop

grpc, empty_pb2, messages_pb2, test_pb2_grpc, grpc_core = _interop.load()

_CODES = {c.value[0]: c for c in grpc.StatusCode}
MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # as grpc-java's interop server: very_large_request sends 10 MiB
SERVER_ID = f"grpc-core-python-interop-server-{os.getpid()}"


def _echo_metadata(context: Any) -> None:
    """The Echo Metadata feature: the request's x-grpc-test-echo-initial goes
    back in the response headers, x-grpc-test-echo-trailing-bin in the trailers."""
    initial = None
    trailing = None
    for key, value in context.invocation_metadata():
        if key == _interop.ECHO_INITIAL_KEY and initial is None:
            initial = value
        elif key == _interop.ECHO_TRAILING_KEY and trailing is None:
            trailing = value
    if initial is not None:
        context.send_initial_metadata(((_interop.ECHO_INITIAL_KEY, initial),))
    if trailing is not None:
        context.set_trailing_metadata(((_interop.ECHO_TRAILING_KEY, trailing),))


def _echo_status(status: Any, context: Any) -> None:
    """The Echo Status feature: end the call with the requested status."""
    if status.code != 0:
        code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
        context.abort(code, status.message)


def _payload(response_type: int, size: int, context: Any) -> Any:
    if response_type != messages_pb2.COMPRESSABLE:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported response payload type {response_type}")
    if size < 0:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"requested a response with invalid length {size}")
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=bytes(size))


_Servicer: Any = test_pb2_grpc.TestServiceServicer


class TestService(_Servicer):
    """grpc.testing.TestService; UnimplementedCall keeps the generated
    servicer's UNIMPLEMENTED answer."""

    def EmptyCall(self, request: Any, context: Any) -> Any:
        _echo_metadata(context)
        return empty_pb2.Empty()

    def UnaryCall(self, request: Any, context: Any) -> Any:
        _echo_metadata(context)
        if request.HasField("response_compressed") and request.response_compressed.value:
            context.set_compression(grpc.Compression.Gzip)
        _echo_status(request.response_status, context)
        resp = messages_pb2.SimpleResponse(payload=_payload(request.response_type, request.response_size, context))
        if request.fill_server_id:
            resp.server_id = SERVER_ID
            resp.hostname = socket.gethostname()
        return resp

    def CacheableUnaryCall(self, request: Any, context: Any) -> Any:
        md = [("cache-control", "max-age=60, public")]
        for key, value in context.invocation_metadata():
            if key == _interop.ECHO_INITIAL_KEY:
                md.append((key, value))
                break
        context.send_initial_metadata(md)
        body = str(time.time_ns()).encode()
        return messages_pb2.SimpleResponse(payload=messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=body))

    def _responses(self, request: Any, context: Any) -> Iterator[Any]:
        for p in request.response_parameters:
            if p.interval_us > 0:
                time.sleep(p.interval_us / 1e6)
            yield messages_pb2.StreamingOutputCallResponse(payload=_payload(request.response_type, p.size, context))

    def StreamingOutputCall(self, request: Any, context: Any) -> Iterator[Any]:
        _echo_metadata(context)
        if any(p.HasField("compressed") and p.compressed.value for p in request.response_parameters):
            context.set_compression(grpc.Compression.Gzip)
        _echo_status(request.response_status, context)
        yield from self._responses(request, context)

    def StreamingInputCall(self, request_iterator: Iterable[Any], context: Any) -> Any:
        _echo_metadata(context)
        total = sum(len(r.payload.body) for r in request_iterator)
        return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    def FullDuplexCall(self, request_iterator: Iterable[Any], context: Any) -> Iterator[Any]:
        _echo_metadata(context)
        for request in request_iterator:
            _echo_status(request.response_status, context)
            yield from self._responses(request, context)

    def HalfDuplexCall(self, request_iterator: Iterable[Any], context: Any) -> Iterator[Any]:
        _echo_metadata(context)
        requests = list(request_iterator)
        for request in requests:
            _echo_status(request.response_status, context)
            yield from self._responses(request, context)


async def _echo_metadata_aio(context: Any) -> None:
    initial = trailing = None
    for key, value in context.invocation_metadata():
        if key == _interop.ECHO_INITIAL_KEY and initial is None:
            initial = value
        elif key == _interop.ECHO_TRAILING_KEY and trailing is None:
            trailing = value
    if initial is not None:
        await context.send_initial_metadata(((_interop.ECHO_INITIAL_KEY, initial),))
    if trailing is not None:
        context.set_trailing_metadata(((_interop.ECHO_TRAILING_KEY, trailing),))


async def _echo_status_aio(status: Any, context: Any) -> None:
    if status.code != 0:
        await context.abort(_CODES.get(status.code, grpc.StatusCode.UNKNOWN), status.message)


async def _payload_aio(response_type: int, size: int, context: Any) -> Any:
    if response_type != messages_pb2.COMPRESSABLE:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported response payload type {response_type}")
    if size < 0:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"requested a response with invalid length {size}")
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=bytes(size))


class AioTestService(_Servicer):
    """grpc.testing.TestService over grpc.aio (``--aio``): coroutines and async generators."""

    async def EmptyCall(self, request: Any, context: Any) -> Any:
        await _echo_metadata_aio(context)
        return empty_pb2.Empty()

    async def UnaryCall(self, request: Any, context: Any) -> Any:
        await _echo_metadata_aio(context)
        if request.HasField("response_compressed") and request.response_compressed.value:
            context.set_compression(grpc.Compression.Gzip)
        await _echo_status_aio(request.response_status, context)
        payload = await _payload_aio(request.response_type, request.response_size, context)
        resp = messages_pb2.SimpleResponse(payload=payload)
        if request.fill_server_id:
            resp.server_id = SERVER_ID
            resp.hostname = socket.gethostname()
        return resp

    async def CacheableUnaryCall(self, request: Any, context: Any) -> Any:
        md = [("cache-control", "max-age=60, public")]
        md += [(k, v) for k, v in context.invocation_metadata() if k == _interop.ECHO_INITIAL_KEY][:1]
        await context.send_initial_metadata(md)
        body = str(time.time_ns()).encode()
        return messages_pb2.SimpleResponse(payload=messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=body))

    async def _responses(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for p in request.response_parameters:
            if p.interval_us > 0:
                await asyncio.sleep(p.interval_us / 1e6)
            payload = await _payload_aio(request.response_type, p.size, context)
            yield messages_pb2.StreamingOutputCallResponse(payload=payload)

    async def StreamingOutputCall(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await _echo_metadata_aio(context)
        await _echo_status_aio(request.response_status, context)
        async for r in self._responses(request, context):
            yield r

    async def StreamingInputCall(self, request_iterator: Any, context: Any) -> Any:
        await _echo_metadata_aio(context)
        total = 0
        async for r in request_iterator:
            total += len(r.payload.body)
        return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    async def FullDuplexCall(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        await _echo_metadata_aio(context)
        async for request in request_iterator:
            await _echo_status_aio(request.response_status, context)
            async for r in self._responses(request, context):
                yield r

    async def HalfDuplexCall(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        await _echo_metadata_aio(context)
        requests = [r async for r in request_iterator]
        for request in requests:
            await _echo_status_aio(request.response_status, context)
            async for r in self._responses(request, context):
                yield r


async def _serve_aio(address: str, creds: Any, options: Any, use_tls: bool, host: str) -> None:
    server = grpc.aio.server(options=options)
    test_pb2_grpc.add_TestServiceServicer_to_server(AioTestService(), server)
    bound = server.add_secure_port(address, creds) if creds is not None else server.add_insecure_port(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await server.start()
    print(f"grpc_core python aio interop server listening on {host}:{bound} (tls: {use_tls})", flush=True)
    await stop.wait()
    await asyncio.wait_for(server.stop(1.0), 5.0)


def main(argv: Optional[list] = None) -> int:
    flags = _interop.Flags(
        sys.argv[1:] if argv is None else argv,
        bools=("use_tls", "use_alts", "aio"),
        known=("port", "host", "tls_cert_file", "tls_key_file"),
    )
    for f in flags.unknown:
        print(f"python interop server: ignoring unknown argument {f}", file=sys.stderr)
    if flags.bool("use_alts"):
        print("python interop server: --use_alts is not supported", file=sys.stderr)
        return 2
    port = flags.int("port", 10000)
    host = flags.string("host", "127.0.0.1")
    use_tls = flags.bool("use_tls")
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
        ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
    ]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    creds = None
    if use_tls:
        d = _interop.certs_dir()
        cert = flags.opt_string("tls_cert_file") or os.path.join(d, "server1.pem")
        key = flags.opt_string("tls_key_file") or os.path.join(d, "server1.key")
        creds = grpc.ssl_server_credentials([(_interop.read(key), _interop.read(cert))])
    if flags.bool("aio"):
        asyncio.run(_serve_aio(address, creds, options, use_tls, host))
        return 0
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=options)
    test_pb2_grpc.add_TestServiceServicer_to_server(TestService(), server)
    bound = server.add_secure_port(address, creds) if creds is not None else server.add_insecure_port(address)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"grpc_core python interop server listening on {host}:{bound} (tls: {use_tls})", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(1.0).wait(5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

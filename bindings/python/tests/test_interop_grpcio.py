"""Interop with grpcio from PyPI, both directions, over the same test service."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

import grpc  # the real grpcio
import grpc_core
import service
from service import SERVICE

U = f"/{SERVICE}/Unary"
SS = f"/{SERVICE}/ServerStream"
CS = f"/{SERVICE}/ClientStream"
BI = f"/{SERVICE}/Bidi"


@pytest.fixture(scope="module")
def grpcio_server() -> Iterator[Any]:
    server, port, state = service.start_server(grpc)
    yield port, state
    server.stop(None)


@pytest.fixture()
def grpcio_channel(ours: Any) -> Iterator[Any]:
    port, _ = ours
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch


@pytest.fixture()
def our_channel(grpcio_server: Any) -> Iterator[Any]:
    port, _ = grpcio_server
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch


def test_grpc_core_is_not_grpc() -> None:
    assert grpc is not grpc_core and hasattr(grpc, "_cython")


# --- grpcio client -> grpc_core server ------------------------------------


def test_grpcio_client_unary(grpcio_channel: Any, ours: Any) -> None:
    _, state = ours
    resp, call = grpcio_channel.unary_unary(U).with_call(b"metadata", metadata=(("x-echo", "hi"),))
    assert resp == b"hi"
    assert dict(call.initial_metadata())["x-initial-bin"] == b"\x00\x01"
    assert dict(call.trailing_metadata())["x-trailing"] == "t"
    assert state.last_metadata["x-echo"] == "hi"


def test_grpcio_client_errors(grpcio_channel: Any) -> None:
    with pytest.raises(grpc.RpcError) as ei:
        grpcio_channel.unary_unary(U)(b"abort:NOT_FOUND:missing")
    assert ei.value.code() is grpc.StatusCode.NOT_FOUND
    assert ei.value.details() == "missing"
    with pytest.raises(grpc.RpcError) as ei:
        grpcio_channel.unary_unary(U)(b"raise")
    assert ei.value.code() is grpc.StatusCode.UNKNOWN
    assert ei.value.details() == "Exception calling application: boom"
    with pytest.raises(grpc.RpcError) as ei:
        grpcio_channel.unary_unary(f"/{SERVICE}/Missing")(b"")
    assert ei.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_grpcio_client_deadline(grpcio_channel: Any) -> None:
    import time

    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        grpcio_channel.unary_unary(U)(b"sleep:2", timeout=0.2)
    assert time.monotonic() - t0 < 1.5, "the call outlived its deadline"
    # Our server enforces the same deadline (grpc-timeout) and resets the
    # stream with CANCEL when it passes, as grpc-go's server does. grpcio's
    # own timer normally fires first (DEADLINE_EXCEEDED); on a loaded machine
    # it can fire late and grpcio then reports the server's RST_STREAM(CANCEL)
    # (error code 8) as CANCELLED. Either way the deadline ended the call.
    code, details = ei.value.code(), ei.value.details() or ""
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED or (
        code is grpc.StatusCode.CANCELLED and "error code 8" in details
    ), (code, details)


def test_grpcio_client_streams(grpcio_channel: Any) -> None:
    assert list(grpcio_channel.unary_stream(SS)(b"3:")) == [b"r0", b"r1", b"r2"]
    assert grpcio_channel.stream_unary(CS)(iter([b"a", b"b"])) == b"a,b"
    assert list(grpcio_channel.stream_stream(BI)(iter([b"1", b"2"]))) == [b"pong:1", b"pong:2"]
    call = grpcio_channel.unary_stream(SS)(b"2:fail")
    with pytest.raises(grpc.RpcError):
        list(call)
    assert call.code() is grpc.StatusCode.DATA_LOSS


def test_grpcio_client_cancel(grpcio_channel: Any, ours: Any) -> None:
    _, state = ours
    state.cancel_seen.clear()
    fut = grpcio_channel.unary_unary(U).future(b"sleep:5")
    import time

    time.sleep(0.2)
    fut.cancel()
    assert state.cancel_seen.wait(3)


def test_grpcio_client_compression(grpcio_channel: Any) -> None:
    assert grpcio_channel.unary_unary(U)(b"q" * 2000, compression=grpc.Compression.Gzip) == b"echo:" + b"q" * 2000


# --- grpc_core client -> grpcio server ------------------------------------


def test_our_client_unary(our_channel: Any, grpcio_server: Any) -> None:
    _, state = grpcio_server
    resp, call = our_channel.unary_unary(U).with_call(b"metadata", metadata=(("x-echo", "yo"), ("x-b-bin", b"\x01")))
    assert resp == b"yo"
    assert dict(call.initial_metadata())["x-initial"] == "i"
    assert dict(call.trailing_metadata())["x-trailing-bin"] == b"\xff"
    assert state.last_metadata["x-b-bin"] == b"\x01"


def test_our_client_errors(our_channel: Any) -> None:
    with pytest.raises(grpc_core.RpcError) as ei:
        our_channel.unary_unary(U)(b"abort:ALREADY_EXISTS:dup")
    assert ei.value.code() is grpc_core.StatusCode.ALREADY_EXISTS
    assert ei.value.details() == "dup"
    with pytest.raises(grpc_core.RpcError) as ei:
        our_channel.unary_unary(U)(b"raise")
    assert ei.value.code() is grpc_core.StatusCode.UNKNOWN
    assert ei.value.details() == "Exception calling application: boom"
    with pytest.raises(grpc_core.RpcError) as ei:
        our_channel.unary_unary(U)(b"abort_with_status")
    assert ei.value.code() is grpc_core.StatusCode.PERMISSION_DENIED
    assert dict(ei.value.trailing_metadata())["x-why"] == "because"


def test_our_client_deadline_and_cancel(our_channel: Any, grpcio_server: Any) -> None:
    with pytest.raises(grpc_core.RpcError) as ei:
        our_channel.unary_unary(U)(b"sleep:2", timeout=0.2)
    assert ei.value.code() is grpc_core.StatusCode.DEADLINE_EXCEEDED
    _, state = grpcio_server
    state.cancel_seen.clear()
    fut = our_channel.unary_unary(U).future(b"sleep:5")
    import time

    time.sleep(0.2)
    assert fut.cancel()
    assert state.cancel_seen.wait(3)


def test_our_client_streams(our_channel: Any) -> None:
    assert list(our_channel.unary_stream(SS)(b"4:")) == [b"r0", b"r1", b"r2", b"r3"]
    assert our_channel.stream_unary(CS)(iter([b"x", b"y", b"z"])) == b"x,y,z"
    call = our_channel.stream_stream(BI)(iter([b"a", b"b", b"c"]))
    assert list(call) == [b"pong:a", b"pong:b", b"pong:c"]
    assert call.code() is grpc_core.StatusCode.OK
    call = our_channel.unary_stream(SS)(b"1:fail")
    with pytest.raises(grpc_core.RpcError):
        list(call)
    assert call.code() is grpc_core.StatusCode.DATA_LOSS


def test_our_client_compression(our_channel: Any) -> None:
    for c in (grpc_core.Compression.Gzip, grpc_core.Compression.Deflate):
        assert our_channel.unary_unary(U)(b"w" * 3000, compression=c) == b"echo:" + b"w" * 3000


def test_tls_both_ways(certs: dict) -> None:
    from concurrent import futures

    # grpcio client -> our TLS server
    s = grpc_core.server(futures.ThreadPoolExecutor(2))
    s.add_registered_method_handlers("t.T", {"M": grpc_core.unary_unary_rpc_method_handler(lambda r, c: b"tls:" + r)})
    port = s.add_secure_port("127.0.0.1:0", grpc_core.ssl_server_credentials([(certs["server.key"], certs["server.pem"])]))
    s.start()
    with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(certs["ca.pem"])) as ch:
        assert ch.unary_unary("/t.T/M")(b"a") == b"tls:a"
    s.stop(None).wait()
    # our client -> grpcio TLS server
    g = grpc.server(futures.ThreadPoolExecutor(2))
    g.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("t.T", {"M": grpc.unary_unary_rpc_method_handler(lambda r, c: b"g:" + r)})]
    )
    gport = g.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(certs["server.key"], certs["server.pem"])]))
    g.start()
    with grpc_core.secure_channel(f"localhost:{gport}", grpc_core.ssl_channel_credentials(certs["ca.pem"])) as ch:
        assert ch.unary_unary("/t.T/M")(b"b") == b"g:b"
    g.stop(None)

"""A call that fails after the server sent its response headers keeps them:
``RpcError.initial_metadata()`` (sync, ``with_call``, ``future()``,
streaming) and ``AioRpcError.initial_metadata()`` return the headers,
``trailing_metadata()`` the trailers, as grpcio does. Against our server
and grpcio's (``send_initial_metadata`` then ``abort``); a trailers-only
failure has no initial metadata."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest

import grpc  # the real grpcio, as a server
import grpc_core
from grpc_core import aio
import service
from service import SERVICE

U = f"/{SERVICE}/Unary"
SS = f"/{SERVICE}/ServerStream"


@pytest.fixture(scope="module")
def grpcio_port() -> Iterator[int]:
    server, port, _ = service.start_server(grpc)
    yield port
    server.stop(None)


@pytest.fixture(params=["grpc_core", "grpcio"])
def port(request: Any, ours: Any) -> int:
    if request.param == "grpc_core":
        return int(ours[0])
    return int(request.getfixturevalue("grpcio_port"))


def _md(md: Any) -> dict:
    return {k: v for k, v in md}


def _check_headers_and_trailers(err: Any) -> None:
    assert err.code() is grpc_core.StatusCode.FAILED_PRECONDITION
    assert err.details() == "after headers"
    initial, trailing = _md(err.initial_metadata()), _md(err.trailing_metadata())
    assert initial.get("x-initial") == "sent", initial
    assert initial.get("x-initial-bin") == b"\x04\x02", initial
    assert trailing.get("x-trailing") == "t", trailing
    # Headers and trailers stay apart.
    assert "x-trailing" not in initial and "x-initial" not in trailing


def test_unary_failure_keeps_headers(port: int) -> None:
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        mc = ch.unary_unary(U)
        with pytest.raises(grpc_core.RpcError) as ei:
            mc(b"headers_then_abort", timeout=10)
        assert isinstance(ei.value, grpc_core.Call)
        _check_headers_and_trailers(ei.value)

        with pytest.raises(grpc_core.RpcError) as ei:
            mc.with_call(b"headers_then_abort", timeout=10)
        _check_headers_and_trailers(ei.value)

        fut = mc.future(b"headers_then_abort", timeout=10)
        err = fut.exception(timeout=10)
        assert err is not None
        _check_headers_and_trailers(err)
        _check_headers_and_trailers(fut)


def test_trailers_only_failure_has_no_initial_metadata(port: int) -> None:
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        mc = ch.unary_unary(U)
        with pytest.raises(grpc_core.RpcError) as ei:
            mc(b"abort:NOT_FOUND:missing", timeout=10)
        assert ei.value.code() is grpc_core.StatusCode.NOT_FOUND
        assert tuple(ei.value.initial_metadata()) == ()
        err = mc.future(b"abort:NOT_FOUND:missing", timeout=10).exception(timeout=10)
        assert err is not None and tuple(err.initial_metadata()) == ()


def test_streaming_failure_keeps_headers(port: int) -> None:
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_stream(SS)(b"1:hfail", timeout=10)
        got = []
        with pytest.raises(grpc_core.RpcError) as ei:
            for r in call:
                got.append(r)
        assert got == [b"r0"]
        assert ei.value.code() is grpc_core.StatusCode.DATA_LOSS
        initial, trailing = _md(call.initial_metadata()), _md(call.trailing_metadata())
        assert initial.get("x-initial") == "sent" and trailing.get("x-trailing") == "t"
        assert "x-trailing" not in initial and "x-initial" not in trailing


def test_aio_failure_keeps_headers(port: int) -> None:
    async def main() -> None:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(aio.AioRpcError) as ei:
                await ch.unary_unary(U)(b"headers_then_abort", timeout=10)
            _check_headers_and_trailers(ei.value)

            # The call object answers the same after the failure.
            call = ch.unary_unary(U)(b"headers_then_abort", timeout=10)
            with pytest.raises(aio.AioRpcError):
                await call
            assert _md(await call.initial_metadata()).get("x-initial") == "sent"
            assert "x-initial" not in _md(await call.trailing_metadata())

            with pytest.raises(aio.AioRpcError) as ei:
                await ch.unary_unary(U)(b"abort:NOT_FOUND:missing", timeout=10)
            assert tuple(ei.value.initial_metadata()) == ()

            scall = ch.unary_stream(SS)(b"1:hfail", timeout=10)
            with pytest.raises(aio.AioRpcError) as ei:
                async for _ in scall:
                    pass
            assert ei.value.code() is grpc_core.StatusCode.DATA_LOSS
            assert _md(ei.value.initial_metadata()).get("x-initial") == "sent"
            assert _md(ei.value.trailing_metadata()).get("x-trailing") == "t"
            assert "x-initial" not in _md(ei.value.trailing_metadata())

    asyncio.run(asyncio.wait_for(main(), 30))


def test_aio_rpc_error_takes_initial_metadata() -> None:
    err = aio.AioRpcError(grpc_core.StatusCode.ABORTED, (("h", "1"),), (("t", "2"),), "d")
    assert err.initial_metadata() == (("h", "1"),)
    assert err.trailing_metadata() == (("t", "2"),)

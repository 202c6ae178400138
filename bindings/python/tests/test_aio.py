"""grpc_core.aio basics: asyncio client and server, and against grpcio."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import grpc
import grpc_core
from grpc_core import aio
import service
from service import SERVICE

U = f"/{SERVICE}/Unary"
SS = f"/{SERVICE}/ServerStream"
CS = f"/{SERVICE}/ClientStream"
BI = f"/{SERVICE}/Bidi"


async def _aio_server() -> Any:
    async def unary(request: bytes, context: Any) -> bytes:
        if request == b"abort":
            await context.abort(grpc_core.StatusCode.NOT_FOUND, "gone")
        if request == b"raise":
            raise RuntimeError("async boom")
        await asyncio.sleep(0.01)
        md = dict(context.invocation_metadata())
        context.set_trailing_metadata((("x-t", "1"),))
        return b"aio:" + request + md.get("x-m", "").encode()

    async def server_stream(request: bytes, context: Any) -> Any:
        for i in range(int(request)):
            yield f"s{i}".encode()

    async def client_stream(requests: Any, context: Any) -> bytes:
        return b"+".join([r async for r in requests])

    async def bidi(requests: Any, context: Any) -> Any:
        async for r in requests:
            yield b"b:" + r

    s = aio.server()
    s.add_generic_rpc_handlers([grpc_core.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc_core.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc_core.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc_core.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc_core.stream_stream_rpc_method_handler(bidi),
    })])
    port = s.add_insecure_port("127.0.0.1:0")
    await s.start()
    return s, port


def test_aio_client_and_server() -> None:
    async def main() -> None:
        s, port = await _aio_server()
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            await ch.channel_ready()
            call = ch.unary_unary(U)(b"x", metadata=(("x-m", "m"),))
            assert await call == b"aio:xm"
            assert await call.code() is grpc_core.StatusCode.OK
            assert dict(await call.trailing_metadata())["x-t"] == "1"
            with pytest.raises(aio.AioRpcError) as ei:
                await ch.unary_unary(U)(b"abort")
            assert ei.value.code() is grpc_core.StatusCode.NOT_FOUND and ei.value.details() == "gone"
            with pytest.raises(grpc_core.RpcError) as ei2:
                await ch.unary_unary(U)(b"raise")
            assert ei2.value.code() is grpc_core.StatusCode.UNKNOWN
            assert ei2.value.details() == "Exception calling application: async boom"
            assert [m async for m in ch.unary_stream(SS)(b"3")] == [b"s0", b"s1", b"s2"]

            async def gen() -> Any:
                for r in (b"a", b"b", b"c"):
                    yield r

            assert await ch.stream_unary(CS)(gen()) == b"a+b+c"
            assert [m async for m in ch.stream_stream(BI)(gen())] == [b"b:a", b"b:b", b"b:c"]
            results = await asyncio.gather(*(ch.unary_unary(U)(str(i).encode()) for i in range(50)))
            assert results == [f"aio:{i}".encode() for i in range(50)]
        await s.stop(None)

    asyncio.run(main())


def test_aio_client_deadline_and_cancel(ours: Any) -> None:
    port, _ = ours

    async def main() -> None:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(aio.AioRpcError) as ei:
                await ch.unary_unary(U)(b"sleep:2", timeout=0.2)
            assert ei.value.code() is grpc_core.StatusCode.DEADLINE_EXCEEDED
            call = ch.unary_stream(SS)(b"100:slow")
            assert await call.read() == b"r0"
            assert call.cancel()
            assert await call.code() is grpc_core.StatusCode.CANCELLED

    asyncio.run(main())


def test_grpcio_aio_client_against_our_aio_server() -> None:
    async def main() -> None:
        s, port = await _aio_server()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert await ch.unary_unary(U)(b"q") == b"aio:q"
            assert [m async for m in ch.unary_stream(SS)(b"2")] == [b"s0", b"s1"]
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await ch.unary_unary(U)(b"abort")
            assert ei.value.code() is grpc.StatusCode.NOT_FOUND
        await s.stop(None)

    asyncio.run(main())


def test_our_aio_client_against_grpcio_server() -> None:
    server, port, _ = service.start_server(grpc)
    try:
        async def main() -> None:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                assert await ch.unary_unary(U)(b"z") == b"echo:z"
                assert [m async for m in ch.unary_stream(SS)(b"2:")] == [b"r0", b"r1"]

        asyncio.run(main())
    finally:
        server.stop(None)

"""grpc_core.health: the engine's grpc.health.v1.Health behind grpcio-health-checking's
HealthServicer API, checked with grpcio-health-checking's stubs over a grpcio channel
and over our own channel (sync and aio servers)."""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent import futures
from typing import Any, Iterator, Tuple

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import grpc_core
from grpc_core import health

Resp = health_pb2.HealthCheckResponse


def _server(servicer: health.HealthServicer, add_port_first: bool = False) -> Tuple[Any, int]:
    server = grpc_core.server(futures.ThreadPoolExecutor(max_workers=2))
    port = 0
    if add_port_first:  # the port is rebuilt with the health service, on the same number
        port = server.add_insecure_port("127.0.0.1:0")
    health.add_HealthServicer_to_server(servicer, server)
    if not add_port_first:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture(params=["grpcio", "grpc_core"])
def lib(request: Any) -> Any:
    return grpc if request.param == "grpcio" else grpc_core


@pytest.fixture()
def served() -> Iterator[Tuple[health.HealthServicer, Any, int]]:
    servicer = health.HealthServicer()
    server, port = _server(servicer)
    yield servicer, server, port
    server.stop(None).wait(10)


def _check(lib: Any, port: int, service: str) -> Any:
    with lib.insecure_channel(f"127.0.0.1:{port}") as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)


def test_check_serving_not_serving_unknown(lib: Any, served: Any) -> None:
    servicer, _, port = served
    assert _check(lib, port, "").status == Resp.SERVING  # the whole server starts SERVING
    servicer.set("helloworld.Greeter", Resp.SERVING)
    servicer.set("b.B", health.NOT_SERVING)
    assert _check(lib, port, "helloworld.Greeter").status == Resp.SERVING
    assert _check(lib, port, "b.B").status == Resp.NOT_SERVING
    with pytest.raises(lib.RpcError) as e:
        _check(lib, port, "nobody.Knows")
    assert e.value.code() == lib.StatusCode.NOT_FOUND


def test_ports_added_before_are_rebuilt_and_statuses_replayed(lib: Any) -> None:
    servicer = health.HealthServicer()
    servicer.set("a.A", health.NOT_SERVING)
    server, port = _server(servicer, add_port_first=True)
    try:
        assert _check(lib, port, "a.A").status == Resp.NOT_SERVING
        assert _check(lib, port, "").status == Resp.SERVING
    finally:
        server.stop(None).wait(10)


def test_watch_sees_changes(lib: Any, served: Any) -> None:
    servicer, _, port = served
    seen: "queue.Queue[int]" = queue.Queue()
    with lib.insecure_channel(f"127.0.0.1:{port}") as ch:
        stream = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service="w.W"), timeout=10)

        def read() -> None:
            try:
                for r in stream:
                    seen.put(r.status)
            except lib.RpcError:
                pass

        t = threading.Thread(target=read, daemon=True)
        t.start()
        assert seen.get(timeout=5) == Resp.SERVICE_UNKNOWN
        servicer.set("w.W", Resp.SERVING)
        assert seen.get(timeout=5) == Resp.SERVING
        servicer.set("w.W", Resp.NOT_SERVING)
        assert seen.get(timeout=5) == Resp.NOT_SERVING
        stream.cancel()
        t.join(5)


def test_graceful_shutdown_sets_not_serving(lib: Any, served: Any) -> None:
    servicer, _, port = served
    servicer.set("g.G", Resp.SERVING)
    servicer.enter_graceful_shutdown()
    assert _check(lib, port, "").status == Resp.NOT_SERVING
    assert _check(lib, port, "g.G").status == Resp.NOT_SERVING
    servicer.set("g.G", Resp.SERVING)  # ignored from now on, as grpcio's
    assert _check(lib, port, "g.G").status == Resp.NOT_SERVING


def test_other_methods_still_served(served: Any) -> None:
    _, _, port = served
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        with pytest.raises(grpc_core.RpcError) as e:
            ch.unary_unary("/x.X/Y")(b"", timeout=5)
    assert e.value.code() == grpc_core.StatusCode.UNIMPLEMENTED


def test_bad_status_and_late_add() -> None:
    servicer = health.HealthServicer()
    with pytest.raises(ValueError):
        servicer.set("x", 7)
    server, _ = _server(health.HealthServicer())
    try:
        with pytest.raises(RuntimeError):
            health.add_HealthServicer_to_server(servicer, server)
    finally:
        server.stop(None).wait(10)


def test_aio_server() -> None:
    async def main() -> None:
        servicer = health.HealthServicer()
        server = grpc_core.aio.server()
        health.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc_core.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = health_pb2_grpc.HealthStub(ch)
                watch = stub.Watch(health_pb2.HealthCheckRequest(service="s.S"), timeout=10)
                assert (await watch.read()).status == Resp.SERVICE_UNKNOWN
                servicer.set("s.S", Resp.SERVING)
                assert (await watch.read()).status == Resp.SERVING
                r = await stub.Check(health_pb2.HealthCheckRequest(service="s.S"), timeout=5)
                assert r.status == Resp.SERVING
                servicer.enter_graceful_shutdown()
                assert (await watch.read()).status == Resp.NOT_SERVING
                watch.cancel()
        finally:
            await server.stop(None)

    asyncio.run(main())

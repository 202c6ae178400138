"""grpc_core.observability: the engine's A66 metrics into an OpenTelemetry
MeterProvider and its spans into a TracerProvider, sync and asyncio."""

from __future__ import annotations

import asyncio
import time
from concurrent import futures
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import grpc_core
from grpc_core import aio
from grpc_core.observability import OpenTelemetryPlugin

SVC = "obs.S"
UNARY = f"/{SVC}/Unary"
STREAM = f"/{SVC}/Stream"
MID = f"/{SVC}/Mid"
LEAF = f"/{SVC}/Leaf"


class Telemetry:
    def __init__(self, tracing: bool = True) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider(resource=Resource.create({"service.name": "obs-test"}))
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.plugin = OpenTelemetryPlugin(self.meters, tracer_provider=self.tracers if tracing else None)

    def points(self) -> Dict[str, List[Tuple[Dict[str, Any], Any]]]:
        """metric name -> [(attributes, data point)]"""
        out: Dict[str, List[Tuple[Dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:
                        out.setdefault(m.name, []).append((dict(p.attributes), p))
        return out

    def settle(self, done: Callable[[], bool]) -> None:
        """Flushes until ``done()`` (the server records a call when it ends, which
        may be just after the client has its response); bounded."""
        deadline = time.monotonic() + 10
        while True:
            assert self.plugin.flush(5), "records not recorded within 5 s"
            if done() or time.monotonic() > deadline:
                return
            time.sleep(0.02)


@pytest.fixture()
def tel() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.plugin.shutdown()


def _check_metrics(t: Telemetry, target: str, calls: Dict[str, Tuple[int, int]]) -> None:
    """``calls``: method -> (request bytes, response bytes) of its one call."""
    n = len(calls)
    t.settle(lambda: len(t.points().get("grpc.server.call.duration", ())) == n)
    pts = t.points()
    for method, (sent, rcvd) in calls.items():
        m = method[1:]
        client = {"grpc.method": m, "grpc.target": target}
        client_st = dict(client, **{"grpc.status": "OK"})
        server = {"grpc.method": m}
        server_st = dict(server, **{"grpc.status": "OK"})
        expect = {
            "grpc.client.attempt.started": client,
            "grpc.client.attempt.duration": client_st,
            "grpc.client.call.duration": client_st,
            "grpc.client.attempt.sent_total_compressed_message_size": client_st,
            "grpc.client.attempt.rcvd_total_compressed_message_size": client_st,
            "grpc.server.call.started": server,
            "grpc.server.call.duration": server_st,
            "grpc.server.call.sent_total_compressed_message_size": server_st,
            "grpc.server.call.rcvd_total_compressed_message_size": server_st,
        }
        for name, attrs in expect.items():
            mine = [p for a, p in pts.get(name, ()) if a.get("grpc.method") == m]
            assert [a for a, _ in pts.get(name, ()) if a.get("grpc.method") == m] == [attrs], name
            (p,) = mine
            if name.endswith(".started"):
                assert p.value == 1, name
            else:
                assert p.count == 1, name
                assert len(p.explicit_bounds) == (41 if name.endswith("duration") else 14), name
        size = lambda name: [p for a, p in pts[name] if a["grpc.method"] == m][0].sum  # noqa: E731
        assert size("grpc.client.attempt.sent_total_compressed_message_size") == sent
        assert size("grpc.client.attempt.rcvd_total_compressed_message_size") == rcvd
        assert size("grpc.server.call.rcvd_total_compressed_message_size") == sent
        assert size("grpc.server.call.sent_total_compressed_message_size") == rcvd


def _sync_server(seen: Dict[str, Any]) -> Any:
    def unary(req: bytes, ctx: Any) -> bytes:
        seen["traceparent"] = dict(ctx.invocation_metadata()).get("traceparent")
        return req * 2

    def stream(req: bytes, ctx: Any) -> Iterator[bytes]:
        for i in range(3):
            yield req + str(i).encode()

    server = grpc_core.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_registered_method_handlers(SVC, {
        "Unary": grpc_core.unary_unary_rpc_method_handler(unary),
        "Stream": grpc_core.unary_stream_rpc_method_handler(stream),
    })
    return server


def test_sync_unary_and_streaming_metrics() -> None:
    t = Telemetry(tracing=False)
    seen: Dict[str, Any] = {}
    try:
        with t.plugin:
            server = _sync_server(seen)
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            target = f"127.0.0.1:{port}"
            ch = grpc_core.insecure_channel(target)
        with ch:
            assert ch.unary_unary(UNARY)(b"hello") == b"hellohello"
            assert list(ch.unary_stream(STREAM)(b"ab")) == [b"ab0", b"ab1", b"ab2"]
        server.stop(None).wait(10)
        _check_metrics(t, target, {UNARY: (5, 10), STREAM: (2, 9)})
        assert seen["traceparent"] is None, "no tracer provider: no traceparent on the wire"
        assert t.exporter.get_finished_spans() == ()
    finally:
        t.plugin.shutdown()


def test_aio_unary_and_streaming_metrics() -> None:
    t = Telemetry(tracing=False)

    async def unary(req: bytes, ctx: Any) -> bytes:
        return req * 2

    async def stream(req: bytes, ctx: Any) -> Any:
        for i in range(3):
            yield req + str(i).encode()

    async def main() -> str:
        with t.plugin:
            server = aio.server()
            server.add_registered_method_handlers(SVC, {
                "Unary": grpc_core.unary_unary_rpc_method_handler(unary),
                "Stream": grpc_core.unary_stream_rpc_method_handler(stream),
            })
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            target = f"127.0.0.1:{port}"
            ch = aio.insecure_channel(target)
        async with ch:
            assert await ch.unary_unary(UNARY)(b"hello") == b"hellohello"
            assert [r async for r in ch.unary_stream(STREAM)(b"ab")] == [b"ab0", b"ab1", b"ab2"]
        await server.stop(None)
        return target

    try:
        target = asyncio.run(main())
        _check_metrics(t, target, {UNARY: (5, 10), STREAM: (2, 9)})
    finally:
        t.plugin.shutdown()


def _check_tree(t: Telemetry, parent: Any, leaf_saw: str) -> None:
    names = ["Sent.obs.S/Mid", "Attempt.obs.S/Mid", "Recv.obs.S/Mid", "Sent.obs.S/Leaf", "Attempt.obs.S/Leaf",
             "Recv.obs.S/Leaf", "leaf-work"]
    t.settle(lambda: len(t.exporter.get_finished_spans()) >= len(names) + 1)
    spans = t.exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    assert sorted(s.name for s in spans) == sorted(names + ["test-parent"])
    trace_id = parent.trace_id
    up = parent
    for name in names:
        s = by_name[name]
        assert s.context.trace_id == trace_id, name
        assert s.parent is not None and s.parent.span_id == up.span_id, f"{name}'s parent"
        assert s.end_time >= s.start_time > 0, name
        up = s.context
    assert by_name["Sent.obs.S/Mid"].kind == trace.SpanKind.CLIENT
    assert by_name["Attempt.obs.S/Mid"].kind == trace.SpanKind.INTERNAL
    assert by_name["Recv.obs.S/Leaf"].kind == trace.SpanKind.SERVER
    assert by_name["Recv.obs.S/Leaf"].attributes["rpc.grpc.status_code"] == 0
    assert by_name["Recv.obs.S/Mid"].resource.attributes["service.name"] == "obs-test"
    assert by_name["Sent.obs.S/Mid"].status.status_code == trace.StatusCode.UNSET
    out = [e for e in by_name["Attempt.obs.S/Mid"].events if e.name == "Outbound message"]
    assert len(out) == 1 and out[0].attributes["message-size"] == 3
    # The leaf saw the leaf attempt's span as its traceparent.
    assert leaf_saw == f"00-{trace_id:032x}-{by_name['Attempt.obs.S/Leaf'].context.span_id:016x}-01"


def test_sync_span_tree_across_two_hops(tel: Telemetry) -> None:
    tracer = tel.tracers.get_tracer("test")
    with tel.plugin:
        def leaf(req: bytes, ctx: Any) -> bytes:
            with tracer.start_as_current_span("leaf-work"):
                pass
            return str(dict(ctx.invocation_metadata()).get("traceparent")).encode()

        leaf_server = grpc_core.server(futures.ThreadPoolExecutor(max_workers=4))
        leaf_server.add_generic_rpc_handlers((grpc_core.method_handlers_generic_handler(SVC, {
            "Leaf": grpc_core.unary_unary_rpc_method_handler(leaf)}),))
        leaf_port = leaf_server.add_insecure_port("127.0.0.1:0")
        leaf_server.start()
        to_leaf = grpc_core.insecure_channel(f"127.0.0.1:{leaf_port}")

        def mid(req: bytes, ctx: Any) -> bytes:
            return to_leaf.unary_unary(LEAF)(req)  # type: ignore[no-any-return]

        mid_server = grpc_core.server(futures.ThreadPoolExecutor(max_workers=4))
        mid_server.add_generic_rpc_handlers((grpc_core.method_handlers_generic_handler(SVC, {
            "Mid": grpc_core.unary_unary_rpc_method_handler(mid)}),))
        mid_port = mid_server.add_insecure_port("127.0.0.1:0")
        mid_server.start()
        ch = grpc_core.insecure_channel(f"127.0.0.1:{mid_port}")
    try:
        with tracer.start_as_current_span("test-parent") as root:
            leaf_saw = ch.unary_unary(MID)(b"abc").decode()
        _check_tree(tel, root.get_span_context(), leaf_saw)
        # Generic handlers' methods are not registered: A66's (and grpcio's) "other".
        tel.settle(lambda: len(tel.points().get("grpc.server.call.duration", ())) == 1
                   and tel.points()["grpc.server.call.duration"][0][1].count == 2)
        assert [a for a, _ in tel.points()["grpc.server.call.started"]] == [{"grpc.method": "other"}]
        assert [p.count for _, p in tel.points()["grpc.server.call.duration"]] == [2]
    finally:
        ch.close()
        to_leaf.close()
        mid_server.stop(None).wait(10)
        leaf_server.stop(None).wait(10)


def test_aio_span_tree_across_two_hops(tel: Telemetry) -> None:
    tracer = tel.tracers.get_tracer("test")

    async def main() -> Tuple[Any, str]:
        with tel.plugin:
            async def leaf(req: bytes, ctx: Any) -> bytes:
                await asyncio.sleep(0)
                with tracer.start_as_current_span("leaf-work"):
                    pass
                return str(dict(ctx.invocation_metadata()).get("traceparent")).encode()

            leaf_server = aio.server()
            leaf_server.add_generic_rpc_handlers((grpc_core.method_handlers_generic_handler(SVC, {
                "Leaf": grpc_core.unary_unary_rpc_method_handler(leaf)}),))
            leaf_port = leaf_server.add_insecure_port("127.0.0.1:0")
            await leaf_server.start()
            to_leaf = aio.insecure_channel(f"127.0.0.1:{leaf_port}")

            async def mid(req: bytes, ctx: Any) -> bytes:
                return await to_leaf.unary_unary(LEAF)(req)  # type: ignore[no-any-return]

            mid_server = aio.server()
            mid_server.add_generic_rpc_handlers((grpc_core.method_handlers_generic_handler(SVC, {
                "Mid": grpc_core.unary_unary_rpc_method_handler(mid)}),))
            mid_port = mid_server.add_insecure_port("127.0.0.1:0")
            await mid_server.start()
            ch = aio.insecure_channel(f"127.0.0.1:{mid_port}")
        try:
            with tracer.start_as_current_span("test-parent") as root:
                leaf_saw = (await ch.unary_unary(MID)(b"abc")).decode()
            return root.get_span_context(), leaf_saw
        finally:
            await ch.close()
            await to_leaf.close()
            await mid_server.stop(None)
            await leaf_server.stop(None)

    parent, leaf_saw = asyncio.run(main())
    _check_tree(tel, parent, leaf_saw)


def test_an_explicit_traceparent_wins_and_unregistered_channels_record_nothing(tel: Telemetry) -> None:
    seen: Dict[str, Any] = {}
    with tel.plugin:
        server = _sync_server(seen)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        ch = grpc_core.insecure_channel(f"127.0.0.1:{port}")
    plain = grpc_core.insecure_channel(f"127.0.0.1:{port}")
    try:
        given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        tracer = tel.tracers.get_tracer("test")
        with tracer.start_as_current_span("ignored"):
            ch.unary_unary(UNARY)(b"x", metadata=(("traceparent", given),))
        tel.settle(lambda: any(s.name == "Recv.obs.S/Unary" for s in tel.exporter.get_finished_spans()))
        sent = [s for s in tel.exporter.get_finished_spans() if s.name == "Sent.obs.S/Unary"]
        assert len(sent) == 1
        assert (sent[0].context.trace_id, sent[0].parent.span_id) == (0x4bf92f3577b34da6a3ce929d0e0e4736,
                                                                     0x00f067aa0ba902b7)
        assert sent[0].parent.is_remote
        assert seen["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")

        before = len(tel.points()["grpc.client.attempt.started"])
        plain.unary_unary(UNARY)(b"y")
        assert tel.plugin.flush(5)
        started = [a for a, _ in tel.points()["grpc.client.attempt.started"]]
        assert len(started) == before == 1, "a channel made after deregistering records nothing"
    finally:
        ch.close()
        plain.close()
        server.stop(None).wait(10)


def test_register_and_deregister(tel: Telemetry) -> None:
    other = OpenTelemetryPlugin(MeterProvider())
    tel.plugin.register_global()
    try:
        with pytest.raises(RuntimeError):
            other.register_global()
        with pytest.raises(RuntimeError):
            other.deregister_global()
    finally:
        tel.plugin.deregister_global()
    with pytest.raises(RuntimeError):
        tel.plugin.deregister_global()
    with other:
        pass
    with pytest.raises(TypeError):
        OpenTelemetryPlugin(tracer_provider=object())

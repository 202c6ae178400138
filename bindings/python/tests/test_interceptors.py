"""Client interceptors (intercept_channel)."""

from __future__ import annotations

from typing import Any

import pytest

import grpc_core
from service import SERVICE

U = f"/{SERVICE}/Unary"
SS = f"/{SERVICE}/ServerStream"
CS = f"/{SERVICE}/ClientStream"
BI = f"/{SERVICE}/Bidi"


class AddHeader(
    grpc_core.UnaryUnaryClientInterceptor,
    grpc_core.UnaryStreamClientInterceptor,
    grpc_core.StreamUnaryClientInterceptor,
    grpc_core.StreamStreamClientInterceptor,
):
    def __init__(self, key: str, value: str, log: list) -> None:
        self.key, self.value, self.log = key, value, log

    def _details(self, d: Any) -> Any:
        self.log.append((self.key, d.method))
        md = list(d.metadata or ()) + [(self.key, self.value)]
        return d._replace(metadata=md)

    def intercept_unary_unary(self, continuation: Any, d: Any, request: Any) -> Any:
        return continuation(self._details(d), request)

    def intercept_unary_stream(self, continuation: Any, d: Any, request: Any) -> Any:
        return continuation(self._details(d), request)

    def intercept_stream_unary(self, continuation: Any, d: Any, request_iterator: Any) -> Any:
        return continuation(self._details(d), request_iterator)

    def intercept_stream_stream(self, continuation: Any, d: Any, request_iterator: Any) -> Any:
        return continuation(self._details(d), request_iterator)


def test_intercept_channel(channel: Any, ours: Any) -> None:
    _, state = ours
    log: list = []
    ch = grpc_core.intercept_channel(channel, AddHeader("x-first", "1", log), AddHeader("x-echo", "via", log))
    resp, call = ch.unary_unary(U).with_call(b"metadata")
    assert resp == b"via"
    assert call.code() is grpc_core.StatusCode.OK
    assert log == [("x-first", U), ("x-echo", U)]
    assert state.last_metadata["x-first"] == "1"
    assert ch.unary_unary(U)(b"a") == b"echo:a"
    assert ch.unary_unary(U).future(b"b").result(5) == b"echo:b"
    assert list(ch.unary_stream(SS)(b"2:")) == [b"r0", b"r1"]
    assert ch.stream_unary(CS)(iter([b"p", b"q"])) == b"p,q"
    assert list(ch.stream_stream(BI)(iter([b"z"]))) == [b"pong:z"]
    with pytest.raises(grpc_core.RpcError) as ei:
        ch.unary_unary(U)(b"abort:OUT_OF_RANGE:far")
    assert ei.value.code() is grpc_core.StatusCode.OUT_OF_RANGE


def test_intercept_channel_rejects_non_interceptors(channel: Any) -> None:
    with pytest.raises(TypeError):
        grpc_core.intercept_channel(channel, object())

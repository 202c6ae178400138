"""The gRPC interop client over grpc_core: the test cases of grpc's
``doc/interop-test-descriptions.md``, written against grpcio's API
(grpcio-tools-generated ``test_pb2_grpc`` with ``grpc_core.install_as_grpc()``).

Flags (grpc-go's client): ``--server_host`` (localhost) ``--server_port``
(10000) ``--test_case`` (large_unary) ``--use_tls`` ``--use_test_ca``
``--ca_file`` (``$GRPC_INTEROP_CERTS_DIR/ca.pem``) ``--server_host_override``
``--additional_metadata`` (``k:v;k2:v2``) and the ``--soak_*`` flags. Other
flags are accepted and ignored.

``--aio`` runs the same cases over ``grpc.aio`` (grpc_core.aio).

Prints ``PASS <case>`` and exits 0, or ``FAIL <case>: <why>`` and exits 1.

Every RPC has a deadline (``RPC_TIMEOUT``, or the case's own), and every
loop is bounded, so a stuck peer fails the case instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import _interop

grpc, empty_pb2, messages_pb2, test_pb2_grpc, grpc_core = _interop.load()

REQ_SIZES = (27182, 8, 1828, 45904)
RESP_SIZES = (31415, 9, 2653, 58979)
LARGE_REQ = 271828
LARGE_RESP = 314159
RPC_TIMEOUT = 30.0
MAX_MESSAGE_SIZE = 16 * 1024 * 1024


class Failure(Exception):
    """A test case failed."""


def ensure(cond: bool, msg: str) -> None:
    if not cond:
        raise Failure(msg)


def check_payload(payload: Any, size: int, what: str = "response") -> None:
    ensure(payload.type == messages_pb2.COMPRESSABLE, f"{what}: payload type {payload.type}, want COMPRESSABLE")
    ensure(len(payload.body) == size, f"{what}: payload of {len(payload.body)} bytes, want {size}")
    ensure(payload.body == bytes(size), f"{what}: payload bytes are not all zero")


def zeros(size: int) -> Any:
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=bytes(size))


def simple_request(req_size: int, resp_size: int, **kw: Any) -> Any:
    return messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE, response_size=resp_size, payload=zeros(req_size), **kw
    )


def streaming_request(req_size: int, resp_size: int) -> Any:
    return messages_pb2.StreamingOutputCallRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_parameters=[messages_pb2.ResponseParameters(size=resp_size)],
        payload=zeros(req_size),
    )


def expect_error(fn: Callable[[], Any], code: Any, what: str) -> Any:
    """Runs ``fn``; it must raise an RpcError with ``code``. Returns the error."""
    try:
        fn()
    except grpc.RpcError as e:
        ensure(e.code() is code, f"{what}: want {code.name}, got {e.code().name}: {e.details()!r}")
        return e
    raise Failure(f"{what}: succeeded, want {code.name}")


class Pipe:
    """A request iterator fed one message at a time (for bidi cases). Its
    ``get`` waits at most RPC_TIMEOUT, so the sender thread never hangs."""

    def __init__(self) -> None:
        self._q: "queue.Queue[Any]" = queue.Queue()

    def add(self, item: Any) -> None:
        self._q.put(item)

    def close(self) -> None:
        self._q.put(None)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            item = self._q.get(timeout=RPC_TIMEOUT)
        except queue.Empty:
            raise StopIteration() from None
        if item is None:
            raise StopIteration()
        return item


def next_or_none(it: Iterator[Any]) -> Any:
    try:
        return next(it)
    except StopIteration:
        return None


class Client:
    def __init__(self, flags: _interop.Flags) -> None:
        if flags.bool("use_alts"):
            raise Failure("--use_alts is not supported")
        host = flags.string("server_host", "localhost")
        port = flags.int("server_port", 10000)
        self.target = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
        self.options: List[Tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_MESSAGE_SIZE)]
        self.credentials = None
        if flags.bool("use_tls"):
            use_test_ca = flags.bool("use_test_ca")
            root = None
            if use_test_ca:
                ca = flags.opt_string("ca_file") or os.path.join(_interop.certs_dir(), "ca.pem")
                root = _interop.read(ca)
            self.credentials = grpc.ssl_channel_credentials(root_certificates=root)
            override = flags.opt_string("server_host_override") or ("foo.test.google.fr" if use_test_ca else None)
            if override:
                self.options.append(("grpc.ssl_target_name_override", override))
        self.metadata: List[Tuple[str, Any]] = []
        for pair in (flags.opt_string("additional_metadata") or "").split(";"):
            if pair:
                k, sep, v = pair.partition(":")
                if not sep:
                    raise Failure(f"--additional_metadata: {pair!r} is not key:value")
                self.metadata.append((k, v.encode() if k.endswith("-bin") else v))
        self.soak_iterations = flags.int("soak_iterations", 10)
        self.soak_max_failures = flags.int("soak_max_failures", 0)
        self.soak_max_latency = flags.int("soak_per_iteration_max_acceptable_latency_ms", 1000) / 1e3
        self.soak_overall_timeout = float(flags.int("soak_overall_timeout_seconds", 10))
        self.soak_min_between = flags.int("soak_min_time_ms_between_rpcs", 0) / 1e3
        self.soak_request_size = flags.int("soak_request_size", LARGE_REQ)
        self.soak_response_size = flags.int("soak_response_size", LARGE_RESP)
        self.channel = self.new_channel()
        self.stub = test_pb2_grpc.TestServiceStub(self.channel)

    def new_channel(self) -> Any:
        if self.credentials is None:
            return grpc.insecure_channel(self.target, options=self.options)
        return grpc.secure_channel(self.target, self.credentials, options=self.options)

    def md(self, *extra: Tuple[str, Any]) -> List[Tuple[str, Any]]:
        return self.metadata + list(extra)

    # ----------------------------------------------------------------- cases

    def empty_unary(self) -> None:
        resp = self.stub.EmptyCall(empty_pb2.Empty(), timeout=RPC_TIMEOUT, metadata=self.md())
        ensure(isinstance(resp, empty_pb2.Empty), f"EmptyCall returned {type(resp).__name__}")
        ensure(resp.ByteSize() == 0, "EmptyCall returned a non-empty message")

    def large_unary(self) -> None:
        resp = self.stub.UnaryCall(simple_request(LARGE_REQ, LARGE_RESP), timeout=RPC_TIMEOUT, metadata=self.md())
        check_payload(resp.payload, LARGE_RESP)

    def client_streaming(self) -> None:
        reqs = (messages_pb2.StreamingInputCallRequest(payload=zeros(s)) for s in REQ_SIZES)
        resp = self.stub.StreamingInputCall(reqs, timeout=RPC_TIMEOUT, metadata=self.md())
        want = sum(REQ_SIZES)
        ensure(resp.aggregated_payload_size == want, f"aggregated_payload_size {resp.aggregated_payload_size} want {want}")

    def server_streaming(self) -> None:
        req = messages_pb2.StreamingOutputCallRequest(
            response_type=messages_pb2.COMPRESSABLE,
            response_parameters=[messages_pb2.ResponseParameters(size=s) for s in RESP_SIZES],
        )
        n = 0
        for resp in self.stub.StreamingOutputCall(req, timeout=RPC_TIMEOUT, metadata=self.md()):
            ensure(n < len(RESP_SIZES), f"more than {len(RESP_SIZES)} responses")
            check_payload(resp.payload, RESP_SIZES[n], f"response {n}")
            n += 1
        ensure(n == len(RESP_SIZES), f"got {n} responses, want {len(RESP_SIZES)}")

    def ping_pong(self) -> None:
        pipe = Pipe()
        responses = self.stub.FullDuplexCall(pipe, timeout=RPC_TIMEOUT, metadata=self.md())
        try:
            for i, (req_size, resp_size) in enumerate(zip(REQ_SIZES, RESP_SIZES)):
                pipe.add(streaming_request(req_size, resp_size))
                resp = next_or_none(responses)
                ensure(resp is not None, f"no response {i}")
                check_payload(resp.payload, resp_size, f"response {i}")
        finally:
            pipe.close()
        ensure(next_or_none(responses) is None, "a response after the last one")
        ensure(responses.code() is grpc.StatusCode.OK, f"FullDuplexCall ended {responses.code().name}")

    def empty_stream(self) -> None:
        responses = self.stub.FullDuplexCall(iter(()), timeout=RPC_TIMEOUT, metadata=self.md())
        got = list(responses)
        ensure(got == [], f"got {len(got)} responses, want none")
        ensure(responses.code() is grpc.StatusCode.OK, f"FullDuplexCall ended {responses.code().name}")

    def timeout_on_sleeping_server(self) -> None:
        # Connect first, so the 1 ms deadline is spent on the call, not the handshake.
        grpc.channel_ready_future(self.channel).result(timeout=RPC_TIMEOUT)
        pipe = Pipe()
        responses = self.stub.FullDuplexCall(pipe, timeout=0.001, metadata=self.md())
        try:
            pipe.add(messages_pb2.StreamingOutputCallRequest(payload=zeros(27182)))
            expect_error(lambda: next(responses), grpc.StatusCode.DEADLINE_EXCEEDED, "FullDuplexCall")
        finally:
            pipe.close()

    def cancel_after_begin(self) -> None:
        pipe = Pipe()
        fut = self.stub.StreamingInputCall.future(pipe, timeout=RPC_TIMEOUT, metadata=self.md())
        try:
            ensure(fut.cancel(), "cancel() returned False on a call in flight")
            ensure(fut.cancelled(), "cancelled() is False after cancel()")
            ensure(fut.code() is grpc.StatusCode.CANCELLED, f"want CANCELLED, got {fut.code().name}")
        finally:
            pipe.close()

    def cancel_after_first_response(self) -> None:
        pipe = Pipe()
        responses = self.stub.FullDuplexCall(pipe, timeout=RPC_TIMEOUT, metadata=self.md())
        try:
            pipe.add(streaming_request(27182, 31415))
            resp = next_or_none(responses)
            ensure(resp is not None, "no response")
            check_payload(resp.payload, 31415)
            responses.cancel()
            expect_error(lambda: next(responses), grpc.StatusCode.CANCELLED, "after cancel()")
        finally:
            pipe.close()

    def _echo_status(self, code: int, message: str, bidi: bool) -> None:
        status = messages_pb2.EchoStatus(code=code, message=message)

        def check(what: str, e: Any) -> None:
            ensure(
                e.code().value[0] == code and e.details() == message,
                f"{what}: want code {code} message {message!r}, got {e.code().value[0]} {e.details()!r}",
            )

        req = messages_pb2.SimpleRequest(response_status=status)
        try:
            self.stub.UnaryCall(req, timeout=RPC_TIMEOUT, metadata=self.md())
            raise Failure("UnaryCall succeeded, want an error status")
        except grpc.RpcError as e:
            check("UnaryCall", e)
        if bidi:
            reqs = iter([messages_pb2.StreamingOutputCallRequest(response_status=status)])
            responses = self.stub.FullDuplexCall(reqs, timeout=RPC_TIMEOUT, metadata=self.md())
            try:
                for _ in responses:
                    raise Failure("FullDuplexCall returned a response, want an error status")
                raise Failure("FullDuplexCall succeeded, want an error status")
            except grpc.RpcError as e:
                check("FullDuplexCall", e)

    def status_code_and_message(self) -> None:
        self._echo_status(2, "test status message", True)

    def special_status_message(self) -> None:
        self._echo_status(2, "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n", False)

    def custom_metadata(self) -> None:
        initial_value = "test_initial_metadata_value"
        trailing_value = b"\xab\xab\xab"
        md = self.md((_interop.ECHO_INITIAL_KEY, initial_value), (_interop.ECHO_TRAILING_KEY, trailing_value))

        def check(what: str, initial: Sequence[Any], trailing: Sequence[Any]) -> None:
            got_i = [v for k, v in initial if k == _interop.ECHO_INITIAL_KEY]
            ensure(got_i == [initial_value], f"{what}: initial {_interop.ECHO_INITIAL_KEY} = {got_i!r}")
            got_t = [v for k, v in trailing if k == _interop.ECHO_TRAILING_KEY]
            ensure(got_t == [trailing_value], f"{what}: trailing {_interop.ECHO_TRAILING_KEY} = {got_t!r}")

        resp, call = self.stub.UnaryCall.with_call(
            simple_request(LARGE_REQ, LARGE_RESP), timeout=RPC_TIMEOUT, metadata=md
        )
        check_payload(resp.payload, LARGE_RESP)
        check("UnaryCall", call.initial_metadata(), call.trailing_metadata())

        pipe = Pipe()
        responses = self.stub.FullDuplexCall(pipe, timeout=RPC_TIMEOUT, metadata=md)
        try:
            pipe.add(streaming_request(LARGE_REQ, LARGE_RESP))
            initial = responses.initial_metadata()
            resp = next_or_none(responses)
            ensure(resp is not None, "FullDuplexCall: no response")
            check_payload(resp.payload, LARGE_RESP)
        finally:
            pipe.close()
        ensure(next_or_none(responses) is None, "FullDuplexCall: a response after the last one")
        ensure(responses.code() is grpc.StatusCode.OK, f"FullDuplexCall ended {responses.code().name}")
        check("FullDuplexCall", initial, responses.trailing_metadata())

    def unimplemented_method(self) -> None:
        expect_error(
            lambda: self.stub.UnimplementedCall(empty_pb2.Empty(), timeout=RPC_TIMEOUT, metadata=self.md()),
            grpc.StatusCode.UNIMPLEMENTED,
            "TestService/UnimplementedCall",
        )

    def unimplemented_service(self) -> None:
        stub = test_pb2_grpc.UnimplementedServiceStub(self.channel)
        expect_error(
            lambda: stub.UnimplementedCall(empty_pb2.Empty(), timeout=RPC_TIMEOUT, metadata=self.md()),
            grpc.StatusCode.UNIMPLEMENTED,
            "UnimplementedService/UnimplementedCall",
        )

    def _soak(self, new_channel_each: bool) -> None:
        """rpc_soak (one channel) and channel_soak (a channel per RPC), as grpc-go runs them."""
        start = time.monotonic()
        overall_deadline = start + self.soak_overall_timeout
        req = simple_request(self.soak_request_size, self.soak_response_size)
        ok = failed = 0
        for i in range(self.soak_iterations):
            if time.monotonic() >= overall_deadline:
                print(f"soak: overall timeout of {self.soak_overall_timeout}s reached, stopping", file=sys.stderr)
                break
            earliest_next = time.monotonic() + self.soak_min_between
            channel = self.new_channel() if new_channel_each else self.channel
            stub = test_pb2_grpc.TestServiceStub(channel) if new_channel_each else self.stub
            t0 = time.monotonic()
            error: Optional[str] = None
            try:
                resp = stub.UnaryCall(req, timeout=max(overall_deadline - t0, 0.001), metadata=self.md())
                check_payload(resp.payload, self.soak_response_size)
            except grpc.RpcError as e:
                error = f"UnaryCall failed: {e.code().name}: {e.details()}"
            except Failure as e:
                error = str(e)
            finally:
                if new_channel_each:
                    channel.close()
            latency = time.monotonic() - t0
            if error is None and latency > self.soak_max_latency:
                error = f"elapsed {latency * 1e3:.0f} ms exceeds max acceptable latency {self.soak_max_latency * 1e3:.0f} ms"
            if error is None:
                ok += 1
                print(f"soak iteration {i}: {latency * 1e3:.1f} ms, succeeded", file=sys.stderr)
            else:
                failed += 1
                print(f"soak iteration {i} failed: {error}", file=sys.stderr)
            delay = earliest_next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        print(f"soak: {ok} / {self.soak_iterations} succeeded, {failed} failed", file=sys.stderr)
        ensure(
            ok + failed == self.soak_iterations,
            f"soak test ran out of time ({self.soak_overall_timeout}s): ran {ok + failed} of {self.soak_iterations}",
        )
        ensure(failed <= self.soak_max_failures, f"soak test: {failed} failures, max {self.soak_max_failures}")

    def rpc_soak(self) -> None:
        self._soak(False)

    def channel_soak(self) -> None:
        self._soak(True)


class AioClient(Client):
    """The same cases over ``grpc.aio`` (``--aio``): awaited calls, ``write``/``read`` streams."""

    def new_channel(self) -> Any:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.target, options=self.options)
        return grpc.aio.secure_channel(self.target, self.credentials, options=self.options)

    async def empty_unary(self) -> None:  # type: ignore[override]
        resp = await self.stub.EmptyCall(empty_pb2.Empty(), timeout=RPC_TIMEOUT, metadata=self.md())
        ensure(isinstance(resp, empty_pb2.Empty) and resp.ByteSize() == 0, f"EmptyCall returned {resp!r}")

    async def large_unary(self) -> None:  # type: ignore[override]
        resp = await self.stub.UnaryCall(simple_request(LARGE_REQ, LARGE_RESP), timeout=RPC_TIMEOUT, metadata=self.md())
        check_payload(resp.payload, LARGE_RESP)

    async def client_streaming(self) -> None:  # type: ignore[override]
        async def reqs() -> Any:
            for s in REQ_SIZES:
                yield messages_pb2.StreamingInputCallRequest(payload=zeros(s))

        resp = await self.stub.StreamingInputCall(reqs(), timeout=RPC_TIMEOUT, metadata=self.md())
        want = sum(REQ_SIZES)
        ensure(resp.aggregated_payload_size == want, f"aggregated_payload_size {resp.aggregated_payload_size} want {want}")

    async def server_streaming(self) -> None:  # type: ignore[override]
        req = messages_pb2.StreamingOutputCallRequest(
            response_type=messages_pb2.COMPRESSABLE,
            response_parameters=[messages_pb2.ResponseParameters(size=s) for s in RESP_SIZES],
        )
        n = 0
        async for resp in self.stub.StreamingOutputCall(req, timeout=RPC_TIMEOUT, metadata=self.md()):
            ensure(n < len(RESP_SIZES), f"more than {len(RESP_SIZES)} responses")
            check_payload(resp.payload, RESP_SIZES[n], f"response {n}")
            n += 1
        ensure(n == len(RESP_SIZES), f"got {n} responses, want {len(RESP_SIZES)}")

    async def ping_pong(self) -> None:  # type: ignore[override]
        call = self.stub.FullDuplexCall(timeout=RPC_TIMEOUT, metadata=self.md())
        for i, (req_size, resp_size) in enumerate(zip(REQ_SIZES, RESP_SIZES)):
            await call.write(streaming_request(req_size, resp_size))
            resp = await call.read()
            ensure(resp is not grpc.aio.EOF, f"no response {i}")
            check_payload(resp.payload, resp_size, f"response {i}")
        await call.done_writing()
        ensure(await call.read() is grpc.aio.EOF, "a response after the last one")
        ensure(await call.code() is grpc.StatusCode.OK, "FullDuplexCall did not end OK")

    async def empty_stream(self) -> None:  # type: ignore[override]
        call = self.stub.FullDuplexCall(timeout=RPC_TIMEOUT, metadata=self.md())
        await call.done_writing()
        ensure(await call.read() is grpc.aio.EOF, "got a response, want none")
        ensure(await call.code() is grpc.StatusCode.OK, "FullDuplexCall did not end OK")

    async def timeout_on_sleeping_server(self) -> None:  # type: ignore[override]
        await self.channel.channel_ready()
        call = self.stub.FullDuplexCall(timeout=0.001, metadata=self.md())
        try:
            # No half-close: the server waits for more, only the deadline ends the call.
            await call.write(messages_pb2.StreamingOutputCallRequest(payload=zeros(27182)))
            await call.read()
            raise Failure("FullDuplexCall read succeeded, want DEADLINE_EXCEEDED")
        except grpc.aio.AioRpcError as e:
            ensure(e.code() is grpc.StatusCode.DEADLINE_EXCEEDED, f"want DEADLINE_EXCEEDED, got {e.code().name}")
        ensure(await call.code() is grpc.StatusCode.DEADLINE_EXCEEDED, "code() is not DEADLINE_EXCEEDED")

    async def cancel_after_begin(self) -> None:  # type: ignore[override]
        call = self.stub.StreamingInputCall(timeout=RPC_TIMEOUT, metadata=self.md())
        ensure(call.cancel(), "cancel() returned False on a call in flight")
        ensure(call.cancelled(), "cancelled() is False after cancel()")
        ensure(await call.code() is grpc.StatusCode.CANCELLED, "code() is not CANCELLED")

    async def cancel_after_first_response(self) -> None:  # type: ignore[override]
        call = self.stub.FullDuplexCall(timeout=RPC_TIMEOUT, metadata=self.md())
        await call.write(streaming_request(27182, 31415))
        resp = await call.read()
        ensure(resp is not grpc.aio.EOF, "no response")
        check_payload(resp.payload, 31415)
        ensure(call.cancel(), "cancel() returned False")
        try:
            await call.read()
            raise Failure("read after cancel() succeeded")
        except asyncio.CancelledError:
            pass
        ensure(await call.code() is grpc.StatusCode.CANCELLED, "code() is not CANCELLED")

    async def _echo_status_aio(self, code: int, message: str, bidi: bool) -> None:
        status = messages_pb2.EchoStatus(code=code, message=message)

        def check(what: str, e: Any) -> None:
            ensure(
                e.code().value[0] == code and e.details() == message,
                f"{what}: want code {code} message {message!r}, got {e.code().value[0]} {e.details()!r}",
            )

        try:
            await self.stub.UnaryCall(messages_pb2.SimpleRequest(response_status=status), timeout=RPC_TIMEOUT,
                                      metadata=self.md())
            raise Failure("UnaryCall succeeded, want an error status")
        except grpc.aio.AioRpcError as e:
            check("UnaryCall", e)
        if bidi:
            call = self.stub.FullDuplexCall(timeout=RPC_TIMEOUT, metadata=self.md())
            try:
                await call.write(messages_pb2.StreamingOutputCallRequest(response_status=status))
                await call.done_writing()
                await call.read()
                raise Failure("FullDuplexCall succeeded, want an error status")
            except grpc.aio.AioRpcError as e:
                check("FullDuplexCall", e)

    async def status_code_and_message(self) -> None:  # type: ignore[override]
        await self._echo_status_aio(2, "test status message", True)

    async def special_status_message(self) -> None:  # type: ignore[override]
        await self._echo_status_aio(2, "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n", False)

    async def custom_metadata(self) -> None:  # type: ignore[override]
        initial_value = "test_initial_metadata_value"
        trailing_value = b"\xab\xab\xab"
        md = self.md((_interop.ECHO_INITIAL_KEY, initial_value), (_interop.ECHO_TRAILING_KEY, trailing_value))

        def check(what: str, initial: Any, trailing: Any) -> None:
            got_i = [v for k, v in initial if k == _interop.ECHO_INITIAL_KEY]
            ensure(got_i == [initial_value], f"{what}: initial {_interop.ECHO_INITIAL_KEY} = {got_i!r}")
            got_t = [v for k, v in trailing if k == _interop.ECHO_TRAILING_KEY]
            ensure(got_t == [trailing_value], f"{what}: trailing {_interop.ECHO_TRAILING_KEY} = {got_t!r}")

        call = self.stub.UnaryCall(simple_request(LARGE_REQ, LARGE_RESP), timeout=RPC_TIMEOUT, metadata=md)
        check_payload((await call).payload, LARGE_RESP)
        check("UnaryCall", await call.initial_metadata(), await call.trailing_metadata())

        call = self.stub.FullDuplexCall(timeout=RPC_TIMEOUT, metadata=md)
        await call.write(streaming_request(LARGE_REQ, LARGE_RESP))
        resp = await call.read()
        ensure(resp is not grpc.aio.EOF, "FullDuplexCall: no response")
        check_payload(resp.payload, LARGE_RESP)
        await call.done_writing()
        ensure(await call.read() is grpc.aio.EOF, "FullDuplexCall: a response after the last one")
        check("FullDuplexCall", await call.initial_metadata(), await call.trailing_metadata())

    async def _unimplemented(self, stub: Any, what: str) -> None:
        try:
            await stub.UnimplementedCall(empty_pb2.Empty(), timeout=RPC_TIMEOUT, metadata=self.md())
            raise Failure(f"{what}: succeeded, want UNIMPLEMENTED")
        except grpc.aio.AioRpcError as e:
            ensure(e.code() is grpc.StatusCode.UNIMPLEMENTED, f"{what}: want UNIMPLEMENTED, got {e.code().name}")

    async def unimplemented_method(self) -> None:  # type: ignore[override]
        await self._unimplemented(self.stub, "TestService/UnimplementedCall")

    async def unimplemented_service(self) -> None:  # type: ignore[override]
        await self._unimplemented(test_pb2_grpc.UnimplementedServiceStub(self.channel), "UnimplementedService")

    async def _soak_aio(self, new_channel_each: bool) -> None:
        start = time.monotonic()
        overall_deadline = start + self.soak_overall_timeout
        req = simple_request(self.soak_request_size, self.soak_response_size)
        ok = failed = 0
        for i in range(self.soak_iterations):
            if time.monotonic() >= overall_deadline:
                break
            earliest_next = time.monotonic() + self.soak_min_between
            channel = self.new_channel() if new_channel_each else self.channel
            stub = test_pb2_grpc.TestServiceStub(channel) if new_channel_each else self.stub
            t0 = time.monotonic()
            error: Optional[str] = None
            try:
                resp = await stub.UnaryCall(req, timeout=max(overall_deadline - t0, 0.001), metadata=self.md())
                check_payload(resp.payload, self.soak_response_size)
            except grpc.aio.AioRpcError as e:
                error = f"UnaryCall failed: {e.code().name}: {e.details()}"
            except Failure as e:
                error = str(e)
            finally:
                if new_channel_each:
                    await channel.close()
            latency = time.monotonic() - t0
            if error is None and latency > self.soak_max_latency:
                error = f"elapsed {latency * 1e3:.0f} ms exceeds {self.soak_max_latency * 1e3:.0f} ms"
            if error is None:
                ok += 1
            else:
                failed += 1
                print(f"soak iteration {i} failed: {error}", file=sys.stderr)
            delay = earliest_next - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        print(f"soak: {ok} / {self.soak_iterations} succeeded, {failed} failed", file=sys.stderr)
        ensure(ok + failed == self.soak_iterations, f"soak test ran out of time: ran {ok + failed}")
        ensure(failed <= self.soak_max_failures, f"soak test: {failed} failures, max {self.soak_max_failures}")

    async def rpc_soak(self) -> None:  # type: ignore[override]
        await self._soak_aio(False)

    async def channel_soak(self) -> None:  # type: ignore[override]
        await self._soak_aio(True)


CASES: Dict[str, Callable[[Client], None]] = {
    name: getattr(Client, name)
    for name in (
        "empty_unary",
        "large_unary",
        "client_streaming",
        "server_streaming",
        "ping_pong",
        "empty_stream",
        "timeout_on_sleeping_server",
        "cancel_after_begin",
        "cancel_after_first_response",
        "status_code_and_message",
        "special_status_message",
        "custom_metadata",
        "unimplemented_method",
        "unimplemented_service",
        "rpc_soak",
        "channel_soak",
    )
}

BOOL_FLAGS = ("use_tls", "use_test_ca", "use_alts", "aio")
KNOWN_FLAGS = (
    "server_host",
    "server_port",
    "test_case",
    "ca_file",
    "server_host_override",
    "additional_metadata",
    "soak_iterations",
    "soak_max_failures",
    "soak_per_iteration_max_acceptable_latency_ms",
    "soak_overall_timeout_seconds",
    "soak_min_time_ms_between_rpcs",
    "soak_request_size",
    "soak_response_size",
)


def main(argv: Optional[List[str]] = None) -> int:
    flags = _interop.Flags(sys.argv[1:] if argv is None else argv, BOOL_FLAGS, KNOWN_FLAGS)
    for f in flags.unknown:
        print(f"python interop client: ignoring unsupported argument {f}", file=sys.stderr)
    case = flags.string("test_case", "large_unary")
    run = CASES.get(case)
    if run is None:
        print(f"FAIL {case}: unsupported test case; supported: {' '.join(CASES)}", file=sys.stderr)
        return 1
    try:
        if flags.bool("aio"):

            async def run_aio() -> None:
                client = AioClient(flags)
                try:
                    await getattr(client, case)()
                finally:
                    await client.channel.close()

            asyncio.run(run_aio())
        else:
            client = Client(flags)
            try:
                run(client)
            finally:
                client.channel.close()
    except Failure as e:
        print(f"FAIL {case}: {e}", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"FAIL {case}: unexpected RPC error {e.code().name}: {e.details()!r}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a bug in the case is a failure, with its type
        print(f"FAIL {case}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"PASS {case}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

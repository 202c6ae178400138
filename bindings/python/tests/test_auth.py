"""Call credentials made by the engine, the server's auth context, engine logs
in Python ``logging``, and server reflection (issue 8)."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any, List

import grpc
import pytest

import grpc_core
from grpc_core import aio

WHO = "/test.Auth/Who"


def _who(request: bytes, context: Any) -> bytes:
    """Echoes what the server saw: the authorization header and the auth context."""
    md = dict(context.invocation_metadata())
    out = {
        "authorization": md.get("authorization"),
        "x-plugin": md.get("x-plugin"),
        "auth_context": context.auth_context(),
        "peer_identities": context.peer_identities(),
        "peer_identity_key": context.peer_identity_key(),
    }
    return repr(out).encode()


def _handlers(lib: Any) -> Any:
    return lib.method_handlers_generic_handler("test.Auth", {"Who": lib.unary_unary_rpc_method_handler(_who)})


def _serve(lib: Any, certs: dict, mtls: bool = False) -> Any:
    s = lib.server(futures.ThreadPoolExecutor(max_workers=4))
    s.add_generic_rpc_handlers([_handlers(lib)])
    creds = lib.ssl_server_credentials(
        [(certs["server.key"], certs["server.pem"])],
        root_certificates=certs["ca.pem"] if mtls else None,
        require_client_auth=mtls,
    )
    port = s.add_secure_port("127.0.0.1:0", creds)
    plain = s.add_insecure_port("127.0.0.1:0")
    s.start()
    return s, port, plain


def _seen(reply: bytes) -> dict:
    return eval(reply.decode())  # noqa: S307 - our own repr


class _LatePlugin(grpc_core.AuthMetadataPlugin):
    """Answers from another thread, a little later, and records the contexts it saw."""

    def __init__(self) -> None:
        self.contexts: List[Any] = []

    def __call__(self, context: Any, callback: Any) -> None:
        self.contexts.append(context)
        threading.Timer(0.05, callback, args=((("x-plugin", f"for {context.method_name}"),), None)).start()


@pytest.fixture(scope="module")
def tls_server(certs: dict) -> Any:
    s, port, plain = _serve(grpc_core, certs)
    yield port, plain
    s.stop(None).wait(10)


def test_plugin_and_token_reach_the_server_over_tls(certs: dict, tls_server: Any) -> None:
    port, _ = tls_server
    plugin = _LatePlugin()
    creds = grpc_core.composite_channel_credentials(
        grpc_core.ssl_channel_credentials(certs["ca.pem"]), grpc_core.metadata_call_credentials(plugin, name="late")
    )
    with grpc_core.secure_channel(f"localhost:{port}", creds) as ch:
        who = ch.unary_unary(WHO)
        seen = _seen(who(b"", timeout=5))
        assert seen["x-plugin"] == "for Who"
        assert seen["authorization"] is None
        # Per call, on top of the channel's: both, for every kind of call.
        tok = grpc_core.access_token_call_credentials("s3cret")
        seen = _seen(who(b"", timeout=5, credentials=tok))
        assert (seen["authorization"], seen["x-plugin"]) == ("Bearer s3cret", "for Who")
        reply, call = who.with_call(b"", timeout=5, credentials=tok)
        assert _seen(reply)["authorization"] == "Bearer s3cret"
        assert _seen(who.future(b"", timeout=5, credentials=tok).result())["authorization"] == "Bearer s3cret"
    ctx = plugin.contexts[0]
    assert ctx.service_url == f"https://localhost:{port}/test.Auth"
    assert ctx.method_name == "Who"
    assert isinstance(ctx, grpc_core.AuthMetadataContext)
    # The server's view of a TLS client without a certificate.
    assert seen["auth_context"]["transport_security_type"] == [b"ssl"]
    assert seen["auth_context"]["security_level"] == [b"TSI_PRIVACY_AND_INTEGRITY"]
    assert seen["peer_identities"] is None and seen["peer_identity_key"] is None


def test_composite_call_credentials_in_order(certs: dict, tls_server: Any) -> None:
    port, _ = tls_server
    both = grpc_core.composite_call_credentials(
        grpc_core.metadata_call_credentials(lambda c, cb: cb((("x-plugin", "p"),), None)),
        grpc_core.access_token_call_credentials("t"),
    )
    with grpc_core.secure_channel(f"localhost:{port}", grpc_core.ssl_channel_credentials(certs["ca.pem"])) as ch:
        seen = _seen(ch.unary_unary(WHO)(b"", timeout=5, credentials=both))
    assert (seen["x-plugin"], seen["authorization"]) == ("p", "Bearer t")


def test_aio_credentials_over_tls(certs: dict, tls_server: Any) -> None:
    port, _ = tls_server

    async def main() -> None:
        creds = grpc_core.composite_channel_credentials(
            grpc_core.ssl_channel_credentials(certs["ca.pem"]), grpc_core.metadata_call_credentials(_LatePlugin())
        )
        async with aio.secure_channel(f"localhost:{port}", creds) as ch:
            who = ch.unary_unary(WHO)
            seen = _seen(await who(b"", timeout=5, credentials=grpc_core.access_token_call_credentials("a")))
            assert (seen["authorization"], seen["x-plugin"]) == ("Bearer a", "for Who")
            # A plugin that fails, over asyncio.
            bad = grpc_core.metadata_call_credentials(lambda c, cb: cb(None, ValueError("nope")))
            with pytest.raises(aio.AioRpcError) as e:
                await who(b"", timeout=5, credentials=bad)
            assert e.value.code() is grpc_core.StatusCode.UNAVAILABLE
            # Streaming calls carry them too.
            stream = ch.unary_stream(WHO)
            with pytest.raises(aio.AioRpcError) as e:
                async for _ in stream(b"", timeout=5, credentials=bad):
                    pass
            assert e.value.code() is grpc_core.StatusCode.UNAVAILABLE

    asyncio.run(main())


def test_our_client_with_a_plugin_against_grpcio_server(certs: dict) -> None:
    s, port, _ = _serve(grpc, certs)
    try:
        plugin = _LatePlugin()
        creds = grpc_core.composite_channel_credentials(
            grpc_core.ssl_channel_credentials(certs["ca.pem"]),
            grpc_core.metadata_call_credentials(plugin),
            grpc_core.access_token_call_credentials("to-grpcio"),
        )
        with grpc_core.secure_channel(f"localhost:{port}", creds) as ch:
            seen = _seen(ch.unary_unary(WHO)(b"", timeout=5))
        assert (seen["authorization"], seen["x-plugin"]) == ("Bearer to-grpcio", "for Who")
        assert plugin.contexts[0].service_url == f"https://localhost:{port}/test.Auth"
    finally:
        s.stop(None).wait(10)


def test_refused_on_insecure_channels_as_grpcio(tls_server: Any) -> None:
    """grpcio: UNAUTHENTICATED, the plugin never runs; local credentials allow them."""
    _, plain = tls_server
    called = []
    plugin = grpc_core.metadata_call_credentials(lambda c, cb: (called.append(c), cb((), None)))
    tok = grpc_core.access_token_call_credentials("x")
    with grpc_core.insecure_channel(f"127.0.0.1:{plain}") as ch:
        who = ch.unary_unary(WHO)
        for creds in (tok, plugin):
            with pytest.raises(grpc_core.RpcError) as e:
                who(b"", timeout=5, credentials=creds)
            assert e.value.code() is grpc_core.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc_core.RpcError) as e:
            next(iter(ch.unary_stream(WHO)(b"", timeout=5, credentials=tok)))
        assert e.value.code() is grpc_core.StatusCode.UNAUTHENTICATED
    insecure = grpc_core.composite_channel_credentials(grpc_core.experimental.insecure_channel_credentials(), tok)
    with grpc_core.secure_channel(f"127.0.0.1:{plain}", insecure) as ch:
        with pytest.raises(grpc_core.RpcError) as e:
            ch.unary_unary(WHO)(b"", timeout=5)
        assert e.value.code() is grpc_core.StatusCode.UNAUTHENTICATED
    assert not called
    # grpcio's own client refuses the same way (the behaviour we match).
    with grpc.insecure_channel(f"127.0.0.1:{plain}") as gch:
        with pytest.raises(grpc.RpcError) as ge:
            gch.unary_unary(WHO)(b"", timeout=5, credentials=grpc.access_token_call_credentials("x"))
        assert ge.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # Local credentials: plaintext to this machine, call credentials allowed.
    local = grpc_core.composite_channel_credentials(grpc_core.local_channel_credentials(), tok)
    with grpc_core.secure_channel(f"127.0.0.1:{plain}", local) as ch:
        seen = _seen(ch.unary_unary(WHO)(b"", timeout=5))
    assert seen["authorization"] == "Bearer x"
    # What grpcio reports for a plaintext peer.
    assert seen["auth_context"] == {"transport_security_type": [b"insecure"], "security_level": [b"TSI_SECURITY_NONE"]}


def test_plugin_errors_become_unavailable_as_grpcio(certs: dict, tls_server: Any, caplog: Any) -> None:
    port, _ = tls_server

    def raises(context: Any, callback: Any) -> None:
        raise ValueError("boom")

    def reports(context: Any, callback: Any) -> None:
        threading.Thread(target=callback, args=(None, RuntimeError("nope"))).start()

    def bad_metadata(context: Any, callback: Any) -> None:
        callback((("Bad Key", "v"),), None)

    cases = [
        (raises, "Getting metadata from plugin failed with error: boom"),
        (reports, "Getting metadata from plugin failed with error: nope"),
        (bad_metadata, "Illegal metadata"),
    ]
    with grpc_core.secure_channel(f"localhost:{port}", grpc_core.ssl_channel_credentials(certs["ca.pem"])) as ch:
        for plugin, details in cases:
            creds = grpc_core.metadata_call_credentials(plugin)
            with pytest.raises(grpc_core.RpcError) as e:
                ch.unary_unary(WHO)(b"", timeout=5, credentials=creds)
            assert (e.value.code(), e.value.details()) == (grpc_core.StatusCode.UNAVAILABLE, details)
        # A plugin that keeps the callback and never calls it: the deadline ends the call.
        kept: List[Any] = []
        silent = grpc_core.metadata_call_credentials(lambda c, cb: kept.append(cb))
        t0 = time.monotonic()
        with pytest.raises(grpc_core.RpcError) as e:
            ch.unary_unary(WHO)(b"", timeout=0.5, credentials=silent)
        assert e.value.code() is grpc_core.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 3
        kept[0]((), None)  # too late: ignored
        # One that drops it uncalled: it can never answer, so the call fails at once.
        dropped = grpc_core.metadata_call_credentials(lambda c, cb: None)
        with pytest.raises(grpc_core.RpcError) as e:
            ch.unary_unary(WHO)(b"", timeout=5, credentials=dropped)
        assert e.value.code() is grpc_core.StatusCode.UNAVAILABLE
        assert "dropped its callback" in e.value.details()
    assert any("raised exception!" in r.getMessage() for r in caplog.records)


def test_mtls_auth_context(certs: dict) -> None:
    """The client certificate's CN and SAN, under gRPC core's names, sync and aio servers."""
    mc = grpc_core.ssl_channel_credentials(certs["ca.pem"], certs["client.key"], certs["client.pem"])

    def check(seen: dict) -> None:
        ac = seen["auth_context"]
        assert ac["transport_security_type"] == [b"ssl"]
        assert ac["x509_common_name"] == [b"client"]
        assert ac["x509_subject_alternative_name"] == [b"client"]
        assert ac["x509_pem_cert"][0].startswith(b"-----BEGIN CERTIFICATE-----")
        assert seen["peer_identities"] == [b"client"]
        assert seen["peer_identity_key"] == "x509_subject_alternative_name"

    s, port, _ = _serve(grpc_core, certs, mtls=True)
    try:
        with grpc_core.secure_channel(f"localhost:{port}", mc) as ch:
            ours = _seen(ch.unary_unary(WHO)(b"", timeout=5))
            check(ours)
    finally:
        s.stop(None).wait(10)
    # grpcio's server, same client certificate: the same values under the names both have.
    g, gport, _ = _serve(grpc, certs, mtls=True)
    try:
        with grpc.secure_channel(f"localhost:{gport}", grpc.ssl_channel_credentials(
                certs["ca.pem"], certs["client.key"], certs["client.pem"])) as gch:
            theirs = _seen(gch.unary_unary(WHO)(b"", timeout=5))
    finally:
        g.stop(None).wait(10)
    for key in ("transport_security_type", "security_level", "x509_common_name", "x509_subject",
                "x509_subject_alternative_name", "x509_pem_cert"):
        assert ours["auth_context"][key] == theirs["auth_context"][key], key
    assert (ours["peer_identities"], ours["peer_identity_key"]) == (theirs["peer_identities"], theirs["peer_identity_key"])

    async def main() -> None:
        async def who(request: bytes, context: Any) -> bytes:
            return _who(request, context)

        server = aio.server()
        server.add_generic_rpc_handlers([grpc_core.method_handlers_generic_handler(
            "test.Auth", {"Who": grpc_core.unary_unary_rpc_method_handler(who)})])
        creds = grpc_core.ssl_server_credentials(
            [(certs["server.key"], certs["server.pem"])], root_certificates=certs["ca.pem"], require_client_auth=True)
        port = server.add_secure_port("127.0.0.1:0", creds)
        await server.start()
        try:
            async with aio.secure_channel(f"localhost:{port}", mc) as ch:
                check(_seen(await ch.unary_unary(WHO)(b"", timeout=5)))
        finally:
            await server.stop(None)

    asyncio.run(main())


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fail_to_connect() -> None:
    with grpc_core.insecure_channel(f"127.0.0.1:{_dead_port()}") as ch:
        with pytest.raises(grpc_core.RpcError):
            ch.unary_unary(WHO)(b"", timeout=2)


def _connect_failed(h: _Collect) -> List[logging.LogRecord]:
    return [r for r in h.records if r.getMessage().startswith("connect failed")]


def test_engine_logs_reach_logging_only_when_enabled() -> None:
    h = _Collect()
    logger = logging.getLogger("grpc_core")
    logger.addHandler(h)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        _fail_to_connect()
        time.sleep(0.3)
        assert not _connect_failed(h), "engine logs arrived before enable_logging()"

        grpc_core.enable_logging(logging.DEBUG)
        _fail_to_connect()
        deadline = time.monotonic() + 5
        while not _connect_failed(h) and time.monotonic() < deadline:
            time.sleep(0.05)
        rec = _connect_failed(h)[0]
        assert rec.name == "grpc_core.client.subchannel"  # the Rust module that logged it
        assert rec.levelno == logging.DEBUG
        assert "error" in rec.grpc_fields  # type: ignore[attr-defined]

        # Above the level: nothing more.
        grpc_core.enable_logging("WARNING")
        time.sleep(0.3)
        h.records.clear()
        _fail_to_connect()
        time.sleep(0.3)
        assert not _connect_failed(h)

        grpc_core.enable_logging(logging.DEBUG)
        grpc_core.disable_logging()
        time.sleep(0.3)
        h.records.clear()
        _fail_to_connect()
        time.sleep(0.3)
        assert not _connect_failed(h)
    finally:
        grpc_core.disable_logging()
        logger.removeHandler(h)
        logger.setLevel(old)


def test_logging_thread_does_not_hang_exit(tmp_path: Path) -> None:
    """Logs flowing while the interpreter exits: a clean exit, no hang."""
    script = textwrap.dedent("""
        import logging, threading, grpc_core
        logging.basicConfig(level=logging.DEBUG)
        grpc_core.enable_logging(logging.DEBUG)
        def spin():
            while True:
                with grpc_core.insecure_channel("127.0.0.1:1") as ch:
                    try:
                        ch.unary_unary("/a.B/C")(b"", timeout=0.05)
                    except grpc_core.RpcError:
                        pass
        for _ in range(3):
            threading.Thread(target=spin, daemon=True).start()
        import time; time.sleep(0.5)
        print("bye")
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "bye" in p.stdout
    assert "grpc_core.client.subchannel" in p.stderr


PROTO = """
syntax = "proto3";
package refl.demo;
service Greeter {
  rpc SayHello (HelloRequest) returns (HelloReply) {}
}
message HelloRequest { string name = 1; }
message HelloReply { string message = 1; }
"""


def test_reflection_lists_and_describes_services(tmp_path: Path) -> None:
    from grpc_tools import protoc

    (tmp_path / "refl_demo.proto").write_text(PROTO)
    assert protoc.main(["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", str(tmp_path / "refl_demo.proto")]) == 0
    sys.path.insert(0, str(tmp_path))
    try:
        import refl_demo_pb2  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from grpc_core import reflection

    def hello(request: bytes, context: Any) -> bytes:
        req = refl_demo_pb2.HelloRequest.FromString(request)
        return refl_demo_pb2.HelloReply(message="Hello, " + req.name).SerializeToString()

    s = grpc_core.server(futures.ThreadPoolExecutor(max_workers=2))
    s.add_generic_rpc_handlers([grpc_core.method_handlers_generic_handler(
        "refl.demo.Greeter", {"SayHello": grpc_core.unary_unary_rpc_method_handler(hello)})])
    names = (refl_demo_pb2.DESCRIPTOR.services_by_name["Greeter"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, s)
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    try:
        # grpcio-reflection's own stub, over a grpcio channel.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            reqs = [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="refl.demo.Greeter"),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.Such"),
            ]
            answers = list(stub.ServerReflectionInfo(iter(reqs), timeout=5))
            listed = {sv.name for sv in answers[0].list_services_response.service}
            assert {"refl.demo.Greeter", reflection.SERVICE_NAME, reflection.SERVICE_NAME_V1} <= listed
            from google.protobuf import descriptor_pb2

            files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                     for b in answers[1].file_descriptor_response.file_descriptor_proto]
            assert [f.name for f in files] == ["refl_demo.proto"]
            assert files[0].service[0].method[0].name == "SayHello"
            assert answers[2].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
            # The reflected service still answers (through the Python handler).
            reply = ch.unary_unary("/refl.demo.Greeter/SayHello")(
                refl_demo_pb2.HelloRequest(name="refl").SerializeToString(), timeout=5)
            assert refl_demo_pb2.HelloReply.FromString(reply).message == "Hello, refl"
            # And an unknown method of it is still UNIMPLEMENTED.
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary("/refl.demo.Greeter/Nope")(b"", timeout=5)
            assert e.value.code() is grpc.StatusCode.UNIMPLEMENTED
        # grpcio-reflection's descriptor database (what its clients use) sees it too.
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            db = ProtoReflectionDescriptorDatabase(ch)
            assert "refl.demo.Greeter" in db.get_services()
            assert db.FindFileContainingSymbol("refl.demo.HelloRequest").name == "refl_demo.proto"
    finally:
        s.stop(None).wait(10)
    # After the ports were added (grpcio allows it until start): the same ports, rebuilt.
    s2 = grpc_core.server(futures.ThreadPoolExecutor(max_workers=2))
    s2.add_generic_rpc_handlers([grpc_core.method_handlers_generic_handler(
        "refl.demo.Greeter", {"SayHello": grpc_core.unary_unary_rpc_method_handler(hello)})])
    port2 = s2.add_insecure_port("127.0.0.1:0")
    reflection.enable_server_reflection(names, s2)
    s2.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port2}") as ch:
            from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
                ProtoReflectionDescriptorDatabase,
            )

            assert "refl.demo.Greeter" in ProtoReflectionDescriptorDatabase(ch).get_services()
            reply = ch.unary_unary("/refl.demo.Greeter/SayHello")(
                refl_demo_pb2.HelloRequest(name="again").SerializeToString(), timeout=5)
            assert refl_demo_pb2.HelloReply.FromString(reply).message == "Hello, again"
        # Too late once started.
        with pytest.raises(RuntimeError):
            reflection.enable_server_reflection(names, s2)
    finally:
        s2.stop(None).wait(10)


def test_grpcio_reflection_servicer_runs_after_install_as_grpc() -> None:
    """Code written for grpcio-reflection runs unchanged: its Python servicer on our server."""
    script = textwrap.dedent("""
        import grpc_core
        grpc_core.install_as_grpc()
        import grpc
        from concurrent import futures
        from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
        s = grpc.server(futures.ThreadPoolExecutor(2))
        reflection.enable_server_reflection((reflection.SERVICE_NAME, "x.Y"), s)
        port = s.add_insecure_port("127.0.0.1:0")
        s.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            req = reflection_pb2.ServerReflectionRequest(list_services="")
            (resp,) = stub.ServerReflectionInfo(iter([req]), timeout=5)
            print(sorted(sv.name for sv in resp.list_services_response.service))
        s.stop(None)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "['grpc.reflection.v1alpha.ServerReflection', 'x.Y']"

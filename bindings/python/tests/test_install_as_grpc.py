"""grpcio-tools-generated stubs run unchanged over grpc_core after install_as_grpc()."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROTO = """
syntax = "proto3";
package helloworld;
service Greeter {
  rpc SayHello (HelloRequest) returns (HelloReply) {}
  rpc SayHelloStream (HelloRequest) returns (stream HelloReply) {}
}
message HelloRequest { string name = 1; }
message HelloReply { string message = 1; }
"""

SCRIPT = """
import grpc_core
grpc_core.install_as_grpc()
import grpc
import grpc.experimental
assert grpc is grpc_core, grpc

from concurrent import futures
import helloworld_pb2, helloworld_pb2_grpc

class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        if request.name == "nobody":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "who?")
        return helloworld_pb2.HelloReply(message="Hello, " + request.name)

    def SayHelloStream(self, request, context):
        for i in range(3):
            yield helloworld_pb2.HelloReply(message=f"{request.name} {i}")

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    stub = helloworld_pb2_grpc.GreeterStub(channel)
    assert stub.SayHello(helloworld_pb2.HelloRequest(name="you")).message == "Hello, you"
    assert [r.message for r in stub.SayHelloStream(helloworld_pb2.HelloRequest(name="s"))] == ["s 0", "s 1", "s 2"]
    try:
        stub.SayHello(helloworld_pb2.HelloRequest(name="nobody"))
        raise SystemExit("expected an error")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "who?"
    # unimplemented method of the generated servicer base class
    r = helloworld_pb2_grpc.Greeter.SayHello(
        helloworld_pb2.HelloRequest(name="exp"), f"127.0.0.1:{port}", insecure=True, timeout=5)
    assert r.message == "Hello, exp"
server.stop(None).wait()
print("HELLOWORLD OK")
"""


def test_generated_stubs_run_unchanged(tmp_path: Path) -> None:
    (tmp_path / "helloworld.proto").write_text(PROTO)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", str(tmp_path / "helloworld.proto")],
        check=True,
    )
    generated = (tmp_path / "helloworld_pb2_grpc.py").read_text()
    assert "import grpc" in generated and "grpc._utilities" in generated
    (tmp_path / "run.py").write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, str(tmp_path / "run.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "HELLOWORLD OK" in r.stdout

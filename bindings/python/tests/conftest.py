from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import grpc_core  # noqa: E402
import service  # noqa: E402


@pytest.fixture(scope="module")
def ours() -> Iterator[Any]:
    """A grpc_core server with the test service: (port, state)."""
    server, port, state = service.start_server(grpc_core)
    yield port, state
    server.stop(None).wait(10)


@pytest.fixture()
def channel(ours: Any) -> Iterator[Any]:
    port, _ = ours
    with grpc_core.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch


@pytest.fixture(scope="session")
def certs(tmp_path_factory: Any) -> dict:
    """A CA, a server certificate for localhost, and a client certificate (PEM bytes)."""
    d = tmp_path_factory.mktemp("certs")

    def run(*args: str) -> None:
        subprocess.run(args, cwd=d, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=test-ca")
    for name, san in (("server", "DNS:localhost,DNS:foo.test.example,IP:127.0.0.1"), ("client", "DNS:client")):
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
        run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {p.name: p.read_bytes() for p in d.iterdir() if p.suffix in (".pem", ".key")}

"""What the Python interop client and server share: the generated
``grpc.testing`` modules, Go-style flags, the test certificates.

The protos (``protos/grpc/testing/*.proto``) are compiled at run time with
grpcio-tools into a build directory (``$GRPC_CORE_PY_INTEROP_GEN``, default
``<repo>/target/python-interop``), once per content hash of the protos and
the grpcio-tools version, and imported from there. ``grpc_core`` stands in
for ``grpc`` (``install_as_grpc()``) before the generated ``*_pb2_grpc``
modules are imported, so they run over grpc_core unchanged.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from types import ModuleType
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "protos", "grpc", "testing")
PROTOS = ("empty.proto", "messages.proto", "test.proto")
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

# The metadata keys the Echo Metadata feature of the interop spec uses.
ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"


def _gen_dir() -> str:
    """Compiles the protos (if not done for this content) and returns the directory of the modules."""
    from grpc_tools import protoc  # grpcio-tools: the generator only, no grpcio at run time

    h = hashlib.sha256()
    for name in PROTOS:
        with open(os.path.join(PROTO_DIR, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    try:
        from importlib.metadata import version

        h.update(version("grpcio-tools").encode())
    except Exception:  # noqa: BLE001 - the hash of the protos alone still works
        pass
    base = os.environ.get("GRPC_CORE_PY_INTEROP_GEN") or os.path.join(REPO_ROOT, "target", "python-interop")
    out = os.path.join(base, "gen-" + h.hexdigest()[:16])
    if os.path.isfile(os.path.join(out, "test_pb2_grpc.py")):
        return out
    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="tmp-", dir=base)
    try:
        args = ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={tmp}", f"--grpc_python_out={tmp}"]
        rc = protoc.main(args + [os.path.join(PROTO_DIR, p) for p in PROTOS])
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({rc}) on {PROTO_DIR}")
        try:
            os.rename(tmp, out)  # atomic; another process may have won the race
        except OSError:
            if not os.path.isfile(os.path.join(out, "test_pb2_grpc.py")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load() -> Tuple[ModuleType, ModuleType, ModuleType, ModuleType, ModuleType]:
    """Installs grpc_core as ``grpc`` and imports the generated modules:
    ``(grpc, empty_pb2, messages_pb2, test_pb2_grpc, grpc_core)``."""
    import grpc_core

    grpc_core.install_as_grpc()
    path = _gen_dir()
    if path not in sys.path:
        sys.path.insert(0, path)
    grpc = importlib.import_module("grpc")
    if grpc is not grpc_core:
        raise RuntimeError("import grpc did not give grpc_core")
    empty_pb2 = importlib.import_module("empty_pb2")
    messages_pb2 = importlib.import_module("messages_pb2")
    test_pb2_grpc = importlib.import_module("test_pb2_grpc")
    return grpc, empty_pb2, messages_pb2, test_pb2_grpc, grpc_core


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class Flags:
    """Command-line flags parsed like Go's ``flag`` package (grpc-go's interop
    binaries): ``-x`` and ``--x`` are the same, ``--x=v`` or ``--x v``, and a
    boolean flag alone means true. Unknown flags are kept in ``unknown``."""

    def __init__(self, argv: Sequence[str], bools: Sequence[str], known: Sequence[str]) -> None:
        self.values: Dict[str, str] = {}
        self.unknown: List[str] = []
        args = list(argv)
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if arg == "--":
                break
            body = arg[2:] if arg.startswith("--") else arg[1:] if arg.startswith("-") else ""
            if not body:
                self.unknown.append(arg)
                continue
            name, eq, value = body.partition("=")
            if not eq:
                nxt = args[i] if i < len(args) else None
                if name in bools:
                    value = "true"
                    if nxt in _TRUE or nxt in _FALSE:
                        value, i = nxt or "", i + 1
                elif nxt is not None and not nxt.startswith("-"):
                    value, i = nxt, i + 1
            if name not in bools and name not in known:
                self.unknown.append("--" + name)
            self.values[name] = value

    def string(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def opt_string(self, name: str) -> Optional[str]:
        return self.values.get(name) or None

    def bool(self, name: str, default: bool = False) -> bool:
        v = self.values.get(name)
        if v is None:
            return default
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise ValueError(f"invalid boolean value {v!r} for flag --{name}")

    def int(self, name: str, default: int) -> int:
        v = self.values.get(name)
        if v is None:
            return default
        try:
            return int(v.strip())
        except ValueError:
            raise ValueError(f"invalid integer value {v!r} for flag --{name}") from None


def certs_dir() -> str:
    """``$GRPC_INTEROP_CERTS_DIR``: ca.pem, server1.pem, server1.key."""
    d = os.environ.get("GRPC_INTEROP_CERTS_DIR")
    if not d:
        raise RuntimeError("GRPC_INTEROP_CERTS_DIR is not set (it must hold ca.pem, server1.pem, server1.key)")
    return d


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


if __name__ == "__main__":
    # `python _interop.py`: compile the protos now and print where they are.
    print(_gen_dir())

"""Calls helloworld.Greeter/SayHello on any greeter server with grpc_core.

Usage: python greeter_client.py TARGET [NAME]. The request and reply are
protobuf messages with one string (field 1), encoded by hand so the example
needs no generated code.
"""

import sys

import grpc_core as grpc


def encode(name: str) -> bytes:
    data = name.encode()
    return b"\x0a" + bytes([len(data)]) + data


def decode(reply: bytes) -> str:
    return reply[2:].decode() if reply[:1] == b"\x0a" else ""


def main() -> None:
    target = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) > 2 else "python"
    with grpc.insecure_channel(target) as channel:
        say_hello = channel.unary_unary("/helloworld.Greeter/SayHello")
        reply, call = say_hello.with_call(encode(name), timeout=10, metadata=(("x-client", "python"),))
        print(f"python client: SayHello -> {decode(reply)!r} (status {call.code().name})")


if __name__ == "__main__":
    main()

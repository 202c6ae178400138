"""A greeter server and client over grpc_core (the grpcio API on the Rust engine).

Run: make demo-python   (or: python examples/python/greeter.py after pip install ./bindings/python)
"""

from concurrent import futures

import grpc_core as grpc


def say_hello(request: bytes, context: grpc.ServicerContext) -> bytes:
    name = request.decode()
    if not name:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is empty")
    context.set_trailing_metadata((("x-served-by", "grpc_core"),))
    return f"Hello, {name}!".encode()


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("helloworld.Greeter", {
            "SayHello": grpc.unary_unary_rpc_method_handler(say_hello),
        })]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"server listening on 127.0.0.1:{port}")

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        say = channel.unary_unary(
            "/helloworld.Greeter/SayHello", request_serializer=str.encode, response_deserializer=bytes.decode
        )
        reply, call = say.with_call("world", timeout=5)
        print(f"client got: {reply!r} (status {call.code().name}, trailers {dict(call.trailing_metadata())})")
        try:
            say("", timeout=5)
        except grpc.RpcError as e:
            print(f"client got the error: {e.code().name}: {e.details()}")
    server.stop(grace=1).wait()
    print("server stopped")


if __name__ == "__main__":
    main()

"""The grpcio peers: the benchmark service on grpcio's sync server (a thread
pool) or its asyncio server, grpcio defaults, message limits raised to 64 MiB.

    python server.py --mode sync|aio [--port 0] [--workers N] [--tls-cert F --tls-key F]

Prints "PORT <n>". The generated modules are found through PYTHONPATH
(bench/.build/py, made by grpc_tools.protoc in bench/scripts/install-peers.sh).
"""

import argparse
import asyncio
import signal
import sys
import threading
from concurrent import futures

import grpc

import echo_pb2
import echo_pb2_grpc
import helloworld_pb2
import helloworld_pb2_grpc

MAX = 64 << 20
OPTIONS = [("grpc.max_receive_message_length", MAX), ("grpc.max_send_message_length", MAX)]


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message=f"Hello, {request.name}!")


class Echo(echo_pb2_grpc.EchoServicer):
    def Unary(self, request, context):
        return echo_pb2.Payload(data=request.data)

    def Stream(self, request_iterator, context):
        for m in request_iterator:
            yield echo_pb2.Payload(data=m.data)


class AioGreeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message=f"Hello, {request.name}!")


class AioEcho(echo_pb2_grpc.EchoServicer):
    async def Unary(self, request, context):
        return echo_pb2.Payload(data=request.data)

    async def Stream(self, request_iterator, context):
        async for m in request_iterator:
            yield echo_pb2.Payload(data=m.data)


def credentials(args):
    if not args.tls_cert:
        return None
    with open(args.tls_key, "rb") as k, open(args.tls_cert, "rb") as c:
        return grpc.ssl_server_credentials([(k.read(), c.read())])


def add_port(server, args):
    creds = credentials(args)
    addr = f"127.0.0.1:{args.port}"
    return server.add_secure_port(addr, creds) if creds else server.add_insecure_port(addr)


def announce(port):
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()


def run_sync(args):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers), options=OPTIONS)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    echo_pb2_grpc.add_EchoServicer_to_server(Echo(), server)
    port = add_port(server, args)
    server.start()
    announce(port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(0.2)


async def run_aio(args):
    server = grpc.aio.server(options=OPTIONS)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(AioGreeter(), server)
    echo_pb2_grpc.add_EchoServicer_to_server(AioEcho(), server)
    port = add_port(server, args)
    await server.start()
    announce(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["sync", "aio"], default="sync")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--workers", type=int, default=16, help="sync: thread pool size (a stream holds one)")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()
    if args.mode == "sync":
        run_sync(args)
    else:
        asyncio.run(run_aio(args))


if __name__ == "__main__":
    main()

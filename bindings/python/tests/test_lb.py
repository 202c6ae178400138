"""Name resolution, load balancing, client-side health checking, service config and
retries through grpcio's channel options (issue 8), against three real backends on
127.0.0.1 (two grpc_core servers and one grpcio server)."""

from __future__ import annotations

import json
import threading
import time
from concurrent import futures
from typing import Any, Callable, Dict, Iterator, List, Optional

import grpc
import pytest

import grpc_core

SERVING, NOT_SERVING = 1, 2
HEALTH_SERVICE = "grpc.health.v1.Health"


class Backend:
    """One server (grpc_core or grpcio) answering `/test.Lb/Who` with its name, with a
    `/test.Lb/Flaky` method failing its first attempts, and a hand-written
    `grpc.health.v1.Health` (Check and Watch) whose status the test switches."""

    def __init__(self, module: Any, name: str, port: int = 0) -> None:
        self.module = module
        self.name = name
        self.lock = threading.Condition()
        self.calls = 0
        self.flaky_attempts = 0
        self.flaky_failures = 0  # how many attempts fail before one succeeds
        self.flaky_code = "UNAVAILABLE"
        self.previous_attempts: List[Optional[str]] = []
        self.health = SERVING
        self.stopped = False
        self.server = module.server(futures.ThreadPoolExecutor(max_workers=16))
        self.server.add_generic_rpc_handlers(self._handlers())
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        assert self.port
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _handlers(self) -> List[Any]:
        grpc_mod = self.module

        def who(request: bytes, context: Any) -> bytes:
            with self.lock:
                self.calls += 1
            return self.name.encode()

        def flaky(request: bytes, context: Any) -> bytes:
            md = dict(context.invocation_metadata())
            with self.lock:
                self.flaky_attempts += 1
                self.previous_attempts.append(md.get("grpc-previous-rpc-attempts"))
                fail = self.flaky_attempts <= self.flaky_failures
            if fail:
                context.abort(getattr(grpc_mod.StatusCode, self.flaky_code), f"attempt {self.flaky_attempts}")
            return self.name.encode()

        def check(request: bytes, context: Any) -> bytes:
            return bytes([0x08, self.health])

        def watch(request: bytes, context: Any) -> Iterator[bytes]:
            last = None
            while context.is_active():
                with self.lock:
                    if self.stopped:
                        return
                    status = self.health
                    if status == last:
                        self.lock.wait(0.1)
                        continue
                last = status
                yield bytes([0x08, status])

        lb = grpc_mod.method_handlers_generic_handler(
            "test.Lb",
            {"Who": grpc_mod.unary_unary_rpc_method_handler(who),
             "Flaky": grpc_mod.unary_unary_rpc_method_handler(flaky)},
        )
        health = grpc_mod.method_handlers_generic_handler(
            HEALTH_SERVICE,
            {"Check": grpc_mod.unary_unary_rpc_method_handler(check),
             "Watch": grpc_mod.unary_stream_rpc_method_handler(watch)},
        )
        return [lb, health]

    def set_health(self, status: int) -> None:
        with self.lock:
            self.health = status
            self.lock.notify_all()

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            self.lock.notify_all()
        self.server.stop(None).wait(10)


@pytest.fixture()
def backends() -> Iterator[List[Backend]]:
    bs = [Backend(grpc_core, "b0"), Backend(grpc_core, "b1"), Backend(grpc, "b2")]
    yield bs
    for b in bs:
        if not b.stopped:
            b.stop()


def ipv4_target(bs: List[Backend]) -> str:
    return "ipv4:" + ",".join(b.address for b in bs)


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Polls `cond` (a channel state or subchannel list: cheap) until true."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def ready_addresses(ch: Any) -> set:
    return {a for a, s in ch.subchannels() if s == grpc_core.ChannelConnectivity.READY}


def who(ch: Any, n: int, **kw: Any) -> Dict[str, int]:
    call = ch.unary_unary("/test.Lb/Who")
    seen: Dict[str, int] = {}
    for _ in range(n):
        name = call(b"", timeout=5, **kw).decode()
        seen[name] = seen.get(name, 0) + 1
    return seen


def test_round_robin_spreads_and_survives_a_dead_backend(backends: List[Backend]) -> None:
    with grpc_core.insecure_channel(ipv4_target(backends), options=[("grpc.lb_policy_name", "round_robin")]) as ch:
        grpc_core.channel_ready_future(ch).result(timeout=10)
        wait_until(lambda: len(ready_addresses(ch)) == 3, what="three READY subchannels")
        seen = who(ch, 300)
        assert set(seen) == {"b0", "b1", "b2"}
        for name, n in seen.items():
            assert 80 <= n <= 120, seen  # each within ±20% of 100

        dead = backends[1]
        dead.stop()
        wait_until(lambda: dead.address not in ready_addresses(ch), what="the dead backend out of rotation")
        seen = who(ch, 100)  # no call may fail now
        assert set(seen) == {"b0", "b2"}, seen
        assert 40 <= seen["b0"] <= 60, seen

        # Restarted on the same port, it rejoins.
        backends[1] = Backend(grpc_core, "b1", port=dead.port)
        wait_until(lambda: len(ready_addresses(ch)) == 3, timeout=20, what="the restarted backend READY")
        seen = who(ch, 90)
        assert set(seen) == {"b0", "b1", "b2"}, seen


def test_service_config_round_robin(backends: List[Backend]) -> None:
    config = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
    # The service config's policy wins over grpc.lb_policy_name, as in gRPC core.
    options = [("grpc.service_config", config), ("grpc.lb_policy_name", "pick_first")]
    with grpc_core.insecure_channel(ipv4_target(backends), options=options) as ch:
        grpc_core.channel_ready_future(ch).result(timeout=10)
        wait_until(lambda: len(ready_addresses(ch)) == 3, what="three READY subchannels")
        assert set(who(ch, 30)) == {"b0", "b1", "b2"}


def test_pick_first_sticks_and_fails_over(backends: List[Backend]) -> None:
    with grpc_core.insecure_channel(ipv4_target(backends), options=[("grpc.lb_policy_name", "pick_first")]) as ch:
        seen = who(ch, 30, wait_for_ready=True)
        assert len(seen) == 1, seen
        first = next(b for b in backends if b.name in seen)
        first.stop()
        # Calls fail over once the policy has noticed: wait on that, then none may fail.
        wait_until(lambda: first.address not in ready_addresses(ch), what="the first backend dropped")
        seen = who(ch, 30, wait_for_ready=True)
        assert len(seen) == 1 and first.name not in seen, seen


def test_manual_resolver_moves_calls(backends: List[Backend]) -> None:
    resolver = grpc_core.ManualResolver([backends[0].address])
    assert resolver.addresses() == [backends[0].address]
    options = [("grpc_core.manual_resolver", resolver), ("grpc.lb_policy_name", "round_robin")]
    with grpc_core.insecure_channel("manual:///lb-test", options=options) as ch:
        assert who(ch, 10, wait_for_ready=True) == {"b0": 10}
        resolver.update([backends[1].address, backends[2].address])
        wait_until(lambda: ready_addresses(ch) == {backends[1].address, backends[2].address},
                   what="the new list READY")
        seen = who(ch, 40)
        assert seen == {"b1": 20, "b2": 20}, seen
    with pytest.raises(ValueError):
        resolver.update(["not an address"])
    with pytest.raises(TypeError):
        grpc_core.insecure_channel("manual:///x", options=[("grpc_core.manual_resolver", "nope")])


def test_client_health_checking_skips_not_serving(backends: List[Backend]) -> None:
    config = json.dumps({"loadBalancingConfig": [{"round_robin": {}}],
                         "healthCheckConfig": {"serviceName": "test.Lb"}})
    with grpc_core.insecure_channel(ipv4_target(backends), options=[("grpc.service_config", config)]) as ch:
        grpc_core.channel_ready_future(ch).result(timeout=10)
        wait_until(lambda: len(ready_addresses(ch)) == 3, what="three healthy subchannels")
        sick = backends[0]
        sick.set_health(NOT_SERVING)
        wait_until(lambda: sick.address not in ready_addresses(ch), what="the NOT_SERVING backend out")
        before = sick.calls
        seen = who(ch, 60)
        assert sick.calls == before and seen == {"b1": 30, "b2": 30}, seen
        sick.set_health(SERVING)
        wait_until(lambda: len(ready_addresses(ch)) == 3, what="the backend back in rotation")
        assert set(who(ch, 30)) == {"b0", "b1", "b2"}


RETRY_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{"service": "test.Lb"}],
        "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.05s", "maxBackoff": "0.2s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
})


@pytest.mark.parametrize("server_index", [0, 2], ids=["grpc_core-server", "grpcio-server"])
def test_retry_policy_retries_unavailable(backends: List[Backend], server_index: int) -> None:
    b = backends[server_index]
    b.flaky_failures = 3
    with grpc_core.insecure_channel(b.address, options=[("grpc.service_config", RETRY_CONFIG)]) as ch:
        start = time.monotonic()
        assert ch.unary_unary("/test.Lb/Flaky")(b"", timeout=10) == b.name.encode()
        elapsed = time.monotonic() - start
    assert b.flaky_attempts == 4
    assert b.previous_attempts == [None, "1", "2", "3"]
    # Backoffs are random in [0, 0.05], [0, 0.1], [0, 0.2]: no more than their sum plus slack.
    assert elapsed < 2.0


def test_retry_gives_up_after_max_attempts(backends: List[Backend]) -> None:
    b = backends[0]
    b.flaky_failures = 10
    with grpc_core.insecure_channel(b.address, options=[("grpc.service_config", RETRY_CONFIG)]) as ch:
        with pytest.raises(grpc_core.RpcError) as e:
            ch.unary_unary("/test.Lb/Flaky")(b"", timeout=10)
    assert e.value.code() == grpc_core.StatusCode.UNAVAILABLE
    assert b.flaky_attempts == 4


def test_non_retryable_code_is_not_retried(backends: List[Backend]) -> None:
    b = backends[0]
    b.flaky_failures = 3
    b.flaky_code = "INVALID_ARGUMENT"
    with grpc_core.insecure_channel(b.address, options=[("grpc.service_config", RETRY_CONFIG)]) as ch:
        with pytest.raises(grpc_core.RpcError) as e:
            ch.unary_unary("/test.Lb/Flaky")(b"", timeout=10)
    assert e.value.code() == grpc_core.StatusCode.INVALID_ARGUMENT
    assert b.flaky_attempts == 1


def test_enable_retries_zero_turns_retries_off(backends: List[Backend]) -> None:
    b = backends[0]
    b.flaky_failures = 1
    options = [("grpc.service_config", RETRY_CONFIG), ("grpc.enable_retries", 0)]
    with grpc_core.insecure_channel(b.address, options=options) as ch:
        with pytest.raises(grpc_core.RpcError) as e:
            ch.unary_unary("/test.Lb/Flaky")(b"", timeout=10)
        assert e.value.code() == grpc_core.StatusCode.UNAVAILABLE
        assert b.flaky_attempts == 1
        # The same channel's next call meets a healthy backend: only the retries were off.
        assert ch.unary_unary("/test.Lb/Flaky")(b"", timeout=10) == b"b0"


def test_retries_through_aio(backends: List[Backend]) -> None:
    import asyncio

    b = backends[1]
    b.flaky_failures = 2

    async def main() -> bytes:
        async with grpc_core.aio.insecure_channel(b.address, options=[("grpc.service_config", RETRY_CONFIG)]) as ch:
            return await ch.unary_unary("/test.Lb/Flaky")(b"", timeout=10)

    assert asyncio.run(main()) == b"b1"
    assert b.flaky_attempts == 3


def test_channel_options_are_checked_and_mapped() -> None:
    with pytest.raises(ValueError):
        grpc_core.insecure_channel("127.0.0.1:1", options=[("grpc.service_config", "{not json")])
    with pytest.raises(ValueError):  # the engine validates the config
        grpc_core.insecure_channel("127.0.0.1:1", options=[("grpc.service_config", '{"loadBalancingConfig": 3}')])
    with pytest.raises(ValueError):
        grpc_core.insecure_channel("127.0.0.1:1", options=[("grpc.lb_policy_name", "no_such_policy")])
    options = [("grpc.client_idle_timeout_ms", 60000), ("grpc.dns_min_time_between_resolutions_ms", 1000),
               ("grpc.some_unknown_option", 1)]
    for target in ("dns:///localhost:1", "dns:localhost:1", "ipv4:127.0.0.1:1", "ipv6:[::1]:1", "localhost:1"):
        grpc_core.insecure_channel(target, options=options).close()


def test_service_config_merge() -> None:
    from grpc_core._channel import _service_config

    assert _service_config(None, None, True) is None
    assert json.loads(_service_config(None, "round_robin", True) or "") == {"loadBalancingConfig": [{"round_robin": {}}]}
    hedged = json.dumps({"loadBalancingPolicy": "pick_first", "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
                         "methodConfig": [{"name": [{}], "timeout": "1s", "hedgingPolicy": {"maxAttempts": 2}},
                                          {"name": [{"service": "a"}], "retryPolicy": {"maxAttempts": 2}}]})
    assert json.loads(_service_config(hedged, "round_robin", False) or "") == {
        "loadBalancingPolicy": "pick_first",
        "methodConfig": [{"name": [{}], "timeout": "1s"}, {"name": [{"service": "a"}]}],
    }

"""The standard health service, ``grpc.health.v1.Health`` (Check and Watch), served by
the engine.

grpcio's API lives in the ``grpcio-health-checking`` package
(``grpc_health.v1.health.HealthServicer`` and
``health_pb2_grpc.add_HealthServicer_to_server``); this is the same shape::

    from grpc_core import health

    servicer = health.HealthServicer()
    health.add_HealthServicer_to_server(servicer, server)
    servicer.set("helloworld.Greeter", health.SERVING)
    ...
    servicer.enter_graceful_shutdown()   # every service NOT_SERVING, later set()s ignored

Statuses are ``grpc.health.v1.HealthCheckResponse.ServingStatus`` numbers: the
constants here, or grpcio-health-checking's ``health_pb2.HealthCheckResponse.SERVING``
(the same ints). As grpcio's servicer: ``""`` (the whole server) starts SERVING; Check
of a service never set is NOT_FOUND, Watch of one sends SERVICE_UNKNOWN and then every
change. The engine answers the calls itself (no Python runs per Check or Watch); a
stopped server also reports NOT_SERVING to its watchers.

Add the servicer before ``start()`` (ports added before are rebuilt on the same port
numbers, since the engine builds each port's server with its methods; a ``unix:`` port
must come after). One servicer may serve several servers.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Dict

__all__ = [
    "SERVICE_NAME",
    "OVERALL_HEALTH",
    "UNKNOWN",
    "SERVING",
    "NOT_SERVING",
    "SERVICE_UNKNOWN",
    "HealthServicer",
    "add_HealthServicer_to_server",
]

SERVICE_NAME = "grpc.health.v1.Health"
OVERALL_HEALTH = ""

UNKNOWN = 0
SERVING = 1
NOT_SERVING = 2
SERVICE_UNKNOWN = 3


class HealthServicer:
    """Service health for ``grpc.health.v1.Health`` (grpcio-health-checking's
    ``HealthServicer``), answered by the engine of every server it is added to."""

    def __init__(self, experimental_non_blocking: bool = True, experimental_thread_pool: Any = None) -> None:
        del experimental_non_blocking, experimental_thread_pool  # grpcio's knobs; nothing runs in Python here
        self._lock = threading.RLock()
        self._server_status: Dict[str, int] = {OVERALL_HEALTH: SERVING}
        self._gracefully_shutting_down = False
        self._servers: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def set(self, service: str, status: Any) -> None:
        """Sets ``service``'s status (``""``: the whole server); watchers see the change.
        Ignored after ``enter_graceful_shutdown()``."""
        code = int(status)
        if code not in (UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN):
            raise ValueError(f"unknown serving status {status!r}")
        with self._lock:
            if self._gracefully_shutting_down:
                return
            self._server_status[service] = code
            for server in list(self._servers):
                server._health_set(service, code)

    def enter_graceful_shutdown(self) -> None:
        """Marks every service NOT_SERVING and ignores later ``set()`` calls: clients
        (and load balancers watching) move away before the server stops."""
        with self._lock:
            if self._gracefully_shutting_down:
                return
            for service in list(self._server_status):
                self.set(service, NOT_SERVING)
            self._gracefully_shutting_down = True

    def _attach(self, server: Any) -> None:
        with self._lock:
            self._servers.add(server)

    def _statuses(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._server_status)


def add_HealthServicer_to_server(servicer: HealthServicer, server: Any) -> None:
    """Serves ``grpc.health.v1.Health`` on ``server`` (a ``grpc_core`` sync or aio server)
    from ``servicer``'s statuses (health_pb2_grpc's call)."""
    if not isinstance(servicer, HealthServicer):
        raise TypeError("add_HealthServicer_to_server takes a grpc_core.health.HealthServicer")
    server._enable_health(servicer)

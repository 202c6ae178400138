"""The engine's logs in Python's ``logging``, off until ``enable_logging()``.

Each engine record goes to the logger named after its Rust module path
(``grpc_core.client.conn``...; all under ``grpc_core``), with its structured
fields in ``record.grpc_fields``. Engine threads never run Python: they queue
the records, and one daemon thread hands them to ``logging`` in batches.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional, Union

from . import _native

_LOCK = threading.Lock()
_THREAD: Optional[threading.Thread] = None
_ENABLED = False
_ROOT = "grpc_core"


def enable_logging(level: Union[int, str, None] = None) -> None:
    """Forwards the engine's records at ``level`` and above (a ``logging`` level; default:
    the effective level of the ``grpc_core`` logger) to ``logging``. Call again to change
    the level. Raises ``RuntimeError`` if the process already has another Rust ``tracing``
    subscriber."""
    global _THREAD, _ENABLED
    if level is None:
        level = logging.getLogger(_ROOT).getEffectiveLevel()
    elif isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            raise ValueError(f"unknown logging level {level!r}")
    with _LOCK:
        _native.log_enable(int(level))
        _ENABLED = True
        if _THREAD is None:
            _THREAD = threading.Thread(target=_pump, daemon=True, name="grpc_core-logs")
            _THREAD.start()


def disable_logging() -> None:
    """Stops forwarding the engine's records (records already queued are still delivered)."""
    global _ENABLED
    with _LOCK:
        _ENABLED = False
        _native.log_disable()


def _pump() -> None:
    loggers: dict = {}
    while True:
        records, dropped = _native.log_next()
        for level, target, message, fields in records:
            name = target.replace("::", ".")
            logger = loggers.get(name)
            if logger is None:
                logger = loggers[name] = logging.getLogger(name if name.startswith(_ROOT) else f"{_ROOT}.{name}")
            if logger.isEnabledFor(level):
                logger.log(level, "%s", message, extra={"grpc_fields": dict(fields)})
        if dropped:
            logging.getLogger(_ROOT).warning("%d engine log records dropped (the queue was full)", dropped)

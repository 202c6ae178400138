"""OpenTelemetry for grpc_core, shaped like grpcio's ``grpc_observability``.

``OpenTelemetryPlugin(meter_provider, tracer_provider=...)``, registered with
``register_global()`` (or ``with plugin:``), makes every channel and server
created while it is registered (``grpc_core`` and ``grpc_core.aio``) record
the gRFC A66 metrics into ``meter_provider`` and, our extension, the per-call
spans (``Sent.<method>``, ``Attempt.<method>``, ``Recv.<method>``) into
``tracer_provider``'s span processors.

The engine measures; this module only records. Engine threads never run
Python: they queue each record, and one daemon thread per plugin records
them into the providers in batches (``flush()`` waits for it). When tracing
is on, client calls carry the current OpenTelemetry span as ``traceparent``
(unless the metadata has one) and server handlers run with the server span as
the current context, so their own spans and nested calls are its children.

The ``opentelemetry`` packages (api, and sdk for tracing) are needed only
when a plugin is created.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional

from . import _native

__all__ = ["OpenTelemetryPlugin"]

_LOGGER = logging.getLogger("grpc_core.observability")
_LOCK = threading.Lock()
_GLOBAL: "Optional[OpenTelemetryPlugin]" = None
_METER_NAME = "grpc-core"
_TRACEPARENT = "traceparent"


class OpenTelemetryPlugin:
    """Records gRPC metrics into ``meter_provider`` (an
    ``opentelemetry.metrics.MeterProvider``) and, when given, spans into
    ``tracer_provider`` (an ``opentelemetry.sdk.trace.TracerProvider``: spans
    go to its span processors). grpcio's plugin records metrics only; the
    ``tracer_provider`` is grpc_core's addition."""

    def __init__(self, meter_provider: Any = None, *, tracer_provider: Any = None) -> None:
        if tracer_provider is not None and not hasattr(tracer_provider, "_active_span_processor"):
            raise TypeError("tracer_provider must be an opentelemetry.sdk.trace.TracerProvider")
        self.meter_provider = meter_provider
        self.tracer_provider = tracer_provider
        self._native: Any = None
        self._thread: Optional[threading.Thread] = None
        self._cond = threading.Condition()
        self._recorded = 0
        self._instruments: Dict[str, Any] = {}
        self._meter: Any = None
        self._span_cls: Any = None

    # -- registration ----------------------------------------------------------
    def register_global(self) -> None:
        """Makes channels and servers created from now on record into this
        plugin's providers. Raises ``RuntimeError`` if a plugin is already
        registered."""
        global _GLOBAL
        with _LOCK:
            if _GLOBAL is not None:
                raise RuntimeError("gRPC Python observability was already initiated!")
            self._start()
            _GLOBAL = self

    def deregister_global(self) -> None:
        """Channels and servers created from now on record nothing (the ones
        created before keep recording into this plugin). Raises
        ``RuntimeError`` if this plugin is not the registered one."""
        global _GLOBAL
        with _LOCK:
            if _GLOBAL is not self:
                raise RuntimeError("This OpenTelemetryPlugin is not registered")
            _GLOBAL = None

    def __enter__(self) -> "OpenTelemetryPlugin":
        self.register_global()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.deregister_global()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until every record the engine has handed over so far is
        recorded into the providers (at most ``timeout`` seconds); true if
        it was."""
        native = self._native
        if native is None:
            return True
        target = native.received()
        with self._cond:
            return self._cond.wait_for(lambda: self._recorded >= target or native.closed, timeout)

    def shutdown(self) -> None:
        """Stops recording: the channels and servers made while this plugin was
        registered record nothing more (what is queued is dropped). Deregisters
        the plugin if it is registered."""
        global _GLOBAL
        with _LOCK:
            if _GLOBAL is self:
                _GLOBAL = None
            if self._native is not None:
                self._native.close()

    # -- recording -------------------------------------------------------------
    def _start(self) -> None:
        if self._native is not None:
            return
        if self.meter_provider is not None:
            self._meter = self.meter_provider.get_meter(_METER_NAME)
        if self.tracer_provider is not None:
            from opentelemetry.sdk.trace import ReadableSpan  # noqa: F401 - fail early without the SDK

            self._span_cls = ReadableSpan
        self._native = _native.NativeTelemetry(self.meter_provider is not None, self.tracer_provider is not None)
        self._thread = threading.Thread(target=self._pump, daemon=True, name="grpc_core-observability")
        self._thread.start()

    def _pump(self) -> None:
        native = self._native
        while not native.closed:
            records, dropped = native.next()
            for r in records:
                try:
                    if r[0] == "m":
                        self._record_metric(r)
                    else:
                        self._export_span(r)
                except Exception:  # noqa: BLE001 - a provider's error must not stop the pump
                    _LOGGER.exception("recording %s failed", r[1])
            if dropped:
                _LOGGER.warning("%d telemetry records dropped (the queue was full)", dropped)
            with self._cond:
                self._recorded += len(records) + dropped
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _instrument(self, name: str, kind: int, unit: str, description: str, boundaries: Any) -> Any:
        inst = self._instruments.get(name)
        if inst is None:
            if kind == 0:
                inst = self._meter.create_counter(name, unit=unit, description=description)
            else:
                try:
                    inst = self._meter.create_histogram(
                        name, unit=unit, description=description, explicit_bucket_boundaries_advisory=boundaries
                    )
                except TypeError:  # opentelemetry-api before 1.23: no bucket advice
                    inst = self._meter.create_histogram(name, unit=unit, description=description)
            self._instruments[name] = inst
        return inst

    def _record_metric(self, r: Any) -> None:
        _, name, kind, unit, description, boundaries, value, attributes = r
        inst = self._instrument(name, kind, unit, description, boundaries)
        if kind == 0:
            inst.add(value, dict(attributes))
        else:
            inst.record(value, dict(attributes))

    def _export_span(self, r: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import Event
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        (_, name, kind, trace_id, span_id, parent_id, parent_remote, start, end, attributes, events, code,
         description) = r
        tid = int(trace_id, 16)
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        context = trace.SpanContext(tid, int(span_id, 16), is_remote=False, trace_flags=flags)
        parent = None
        if parent_id is not None:
            parent = trace.SpanContext(tid, int(parent_id, 16), is_remote=bool(parent_remote), trace_flags=flags)
        status = trace.Status(trace.StatusCode(code), description or None) if code else trace.Status()
        provider = self.tracer_provider
        span = self._span_cls(
            name=name,
            context=context,
            parent=parent,
            resource=provider.resource,
            attributes=dict(attributes),
            events=[Event(n, dict(a), t) for n, t, a in events],
            kind=trace.SpanKind(kind),
            status=status,
            start_time=start,
            end_time=end,
            instrumentation_scope=InstrumentationScope(_METER_NAME),
        )
        provider._active_span_processor.on_end(span)


def _registered() -> Optional[OpenTelemetryPlugin]:
    return _GLOBAL


def _channel_kw(kw: Dict[str, Any]) -> bool:
    """Adds the registered plugin's sink to a channel's or server's native
    options; true if that plugin traces."""
    plugin = _GLOBAL
    if plugin is None or plugin._native is None:
        return False
    kw["telemetry"] = plugin._native
    return plugin.tracer_provider is not None


def _inject(metadata: Any) -> Any:
    """``metadata`` with the current OpenTelemetry span as ``traceparent``
    (unchanged when it has one, or when there is no valid current span)."""
    from opentelemetry import trace

    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return metadata
    items = tuple(metadata) if metadata is not None else ()
    for k, _ in items:
        if k == _TRACEPARENT:
            return metadata
    return items + ((_TRACEPARENT, f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"),)


def _attach(call: Any) -> Any:
    """Makes the server span of ``call`` the current OpenTelemetry context;
    returns the token for ``_detach`` (None if the call is not traced)."""
    tp = call.traceparent()
    if tp is None:
        return None
    from opentelemetry import context, trace

    _, tid, sid, flags = tp.split("-")
    sc = trace.SpanContext(int(tid, 16), int(sid, 16), is_remote=False, trace_flags=trace.TraceFlags(int(flags, 16)))
    return context.attach(trace.set_span_in_context(trace.NonRecordingSpan(sc)))


def _detach(token: Any) -> None:
    if token is not None:
        from opentelemetry import context

        context.detach(token)

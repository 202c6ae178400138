"""The compiled half of grpc_core (Rust, PyO3). Hand-written stubs."""

import asyncio
from typing import Any, Callable, Iterable, List, Optional, Tuple, Union, final


__all__ = ["RpcStatus", "NativeChannel", "NativeManualResolver", "NativeCall", "CallQueue", "NativeServer", "NativeServerCall", "VERSION", "_at_exit",
    "CompletionQueue", "NativeOp", "channel_unary", "channel_start", "call_send", "call_close_send",
    "call_initial_metadata", "call_recv", "call_finish", "queue_attach", "scall_recv", "scall_send",
    "scall_send_initial_metadata", "scall_reply", "scall_wait_done",
    "NativeCallCredentials", "PluginCallback", "log_enable", "log_disable", "log_next",
    "NativeTelemetry",
]

_MetadataIn = Optional[Iterable[Tuple[str, Union[str, bytes]]]]
_MetadataOut = Tuple[Tuple[str, Union[str, bytes]], ...]

VERSION: str

def _at_exit() -> None:
    """Marks the interpreter as exiting: threads whose wait ends later park instead of re-entering it."""

class RpcStatus(Exception):
    """A call ended with a non-OK status: args are (code, details, trailing, initial)."""

@final
class NativeManualResolver:
    def __new__(cls) -> NativeManualResolver: ...
    def update(self, addresses: List[str]) -> None: ...
    def report_error(self, message: str) -> None: ...
    def addresses(self) -> Optional[List[str]]: ...

@final
class NativeChannel:
    def __new__(
        cls,
        target: str,
        *,
        tls: bool = False,
        root_certs: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        cert_chain: Optional[bytes] = None,
        server_name_override: Optional[str] = None,
        authority: Optional[str] = None,
        user_agent: Optional[str] = None,
        max_recv: Optional[int] = None,
        max_send: Optional[int] = None,
        keepalive_time_ms: Optional[int] = None,
        keepalive_timeout_ms: Optional[int] = None,
        keepalive_permit_without_calls: bool = False,
        compression: Optional[int] = None,
        call_credentials: Optional[NativeCallCredentials] = None,
        allow_insecure_call_credentials: bool = False,
        service_config: Optional[str] = None,
        manual_resolver: Optional[NativeManualResolver] = None,
        idle_timeout_ms: Optional[int] = None,
        dns_refresh_ms: Optional[int] = None,
        telemetry: Optional[NativeTelemetry] = None,
        caller_driven: bool = False,
        loop_driven: bool = False,
    ) -> NativeChannel: ...
    def unary(
        self,
        method: str,
        request: bytes,
        timeout: Optional[float] = None,
        metadata: _MetadataIn = None,
        compression: Optional[int] = None,
        wait_for_ready: bool = False,
        credentials: Optional[NativeCallCredentials] = None,
    ) -> Tuple[bytes, _MetadataOut, _MetadataOut]: ...
    def unary_message(
        self,
        method: str,
        request: bytes,
        timeout: Optional[float] = None,
        metadata: _MetadataIn = None,
        compression: Optional[int] = None,
        wait_for_ready: bool = False,
        credentials: Optional[NativeCallCredentials] = None,
    ) -> bytes: ...
    def start(
        self,
        method: str,
        timeout: Optional[float] = None,
        metadata: _MetadataIn = None,
        compression: Optional[int] = None,
        wait_for_ready: bool = False,
        credentials: Optional[NativeCallCredentials] = None,
    ) -> NativeCall: ...
    def runtime_fd(self) -> Optional[int]: ...
    def drive(self) -> int: ...
    def state(self) -> int: ...
    def subchannels(self) -> List[Tuple[str, int]]: ...
    def connect(self) -> None: ...
    def wait_for_state_change(self, state: int, timeout: Optional[float] = None) -> bool: ...
    def close(self) -> None: ...

@final
class NativeCall:
    def send(self, message: bytes, last: bool = False) -> bool: ...
    def close_send(self) -> bool: ...
    def initial_metadata(self) -> _MetadataOut: ...
    def recv(self) -> Optional[bytes]: ...
    def finish(self) -> Tuple[int, str, _MetadataOut, _MetadataOut]: ...
    def cancel(self) -> None: ...

@final
class CallQueue:
    def __new__(cls, caller_driven: bool = False, loop_driven: bool = False) -> CallQueue: ...
    def runtime_fd(self) -> Optional[int]: ...
    def drive(self) -> int: ...
    def next(self, timeout: Optional[float] = None) -> Optional[NativeServerCall]: ...
    def pull(
        self, timeout: Optional[float] = None, after: Optional[NativeServerCall] = None
    ) -> Optional[NativeServerCall]: ...
    def close(self) -> None: ...

@final
class NativeServer:
    def __new__(
        cls,
        queue: CallQueue,
        *,
        cert_chain: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        client_ca: Optional[bytes] = None,
        require_client_auth: bool = False,
        max_recv: Optional[int] = None,
        max_send: Optional[int] = None,
        max_concurrent_streams: Optional[int] = None,
        keepalive_time_ms: Optional[int] = None,
        keepalive_timeout_ms: Optional[int] = None,
        keepalive_min_time_ms: Optional[int] = None,
        keepalive_permit_without_calls: Optional[bool] = None,
        max_connection_idle_ms: Optional[int] = None,
        max_connection_age_ms: Optional[int] = None,
        max_connection_age_grace_ms: Optional[int] = None,
        compression: Optional[int] = None,
        reflection: Optional[List[bytes]] = None,
        reflection_methods: Optional[List[str]] = None,
        health: bool = False,
        telemetry: Optional[NativeTelemetry] = None,
        methods: Optional[List[str]] = None,
    ) -> NativeServer: ...
    def health_set(self, service: str, status: int) -> None: ...
    def bind(self, address: str) -> int: ...
    def start(self) -> None: ...
    def shutdown(self, grace: float) -> None: ...

@final
class NativeServerCall:
    @property
    def method(self) -> str: ...
    @property
    def peer(self) -> str: ...
    def metadata(self) -> _MetadataOut: ...
    def traceparent(self) -> Optional[str]: ...
    def peer_certificates(self) -> List[bytes]: ...
    def auth_properties(self) -> List[Tuple[str, bytes]]: ...
    def peer_identities(self) -> Optional[List[bytes]]: ...
    def peer_identity_key(self) -> Optional[str]: ...
    def time_remaining(self) -> Optional[float]: ...
    def recv(self) -> Optional[bytes]: ...
    def send_initial_metadata(self, metadata: _MetadataIn) -> None: ...
    def send(self, message: bytes, compress: bool = True) -> None: ...
    def set_compression(self, compression: int) -> None: ...
    def reply(
        self, message: bytes, compress: bool = True, trailing_metadata: _MetadataIn = None, defer: bool = False
    ) -> bool: ...
    def flush(self) -> None: ...
    def finish(self, code: int, details: str, trailing_metadata: _MetadataIn = None) -> bool: ...
    def is_active(self) -> bool: ...
    def wait_done(self, timeout: Optional[float] = None) -> bool: ...


# Call credentials made by the engine; a plugin is `invoke(service_url, method_name, callback)`,
# run on a runtime thread with the GIL; it (or anyone, later) calls `callback(metadata, error)`.

@final
class NativeCallCredentials:
    @staticmethod
    def plugin(invoke: Callable[[str, str, PluginCallback], None]) -> NativeCallCredentials: ...
    @staticmethod
    def access_token(token: str) -> NativeCallCredentials: ...
    def compose(self, other: NativeCallCredentials) -> NativeCallCredentials: ...

@final
class PluginCallback:
    def __call__(self, metadata: _MetadataIn, error: Optional[BaseException] = None) -> None: ...

# The engine's log records: (python level, target, message, [(field, value)]), and how many were dropped.
def log_enable(level: int) -> None: ...
def log_disable() -> None: ...
def log_next(timeout: Optional[float] = None) -> Tuple[List[Tuple[int, str, str, List[Tuple[str, str]]]], int]: ...


# asyncio: each function starts an engine operation whose result (or
# RpcStatus) resolves the asyncio future `fut` when the loop calls
# `CompletionQueue.drain` (its reader callback for `fileno()`).

_Fut = asyncio.Future[Any]

@final
class CompletionQueue:
    def __new__(cls) -> CompletionQueue: ...
    def fileno(self) -> int: ...
    def drain(self) -> int: ...

@final
class NativeOp:
    def cancel(self) -> None: ...

def channel_unary(
    cq: CompletionQueue,
    fut: _Fut,
    channel: NativeChannel,
    method: str,
    request: bytes,
    timeout: Optional[float] = None,
    metadata: _MetadataIn = None,
    compression: Optional[int] = None,
    wait_for_ready: bool = False,
    credentials: Optional[NativeCallCredentials] = None,
) -> NativeOp: ...
def channel_start(
    cq: CompletionQueue,
    fut: _Fut,
    channel: NativeChannel,
    method: str,
    timeout: Optional[float] = None,
    metadata: _MetadataIn = None,
    compression: Optional[int] = None,
    wait_for_ready: bool = False,
    first: Optional[bytes] = None,
    credentials: Optional[NativeCallCredentials] = None,
) -> NativeOp: ...
def call_send(cq: CompletionQueue, fut: _Fut, call: NativeCall, message: bytes, last: bool = False) -> None: ...
def call_close_send(cq: CompletionQueue, fut: _Fut, call: NativeCall) -> None: ...
def call_initial_metadata(cq: CompletionQueue, fut: _Fut, call: NativeCall) -> None: ...
def call_recv(cq: CompletionQueue, fut: _Fut, call: NativeCall) -> None: ...
def call_finish(cq: CompletionQueue, fut: _Fut, call: NativeCall) -> None: ...
def queue_attach(queue: CallQueue, cq: CompletionQueue, callback: Callable[[NativeServerCall], None]) -> None: ...
def scall_recv(cq: CompletionQueue, fut: _Fut, call: NativeServerCall) -> None: ...
def scall_send(cq: CompletionQueue, fut: _Fut, call: NativeServerCall, message: bytes, compress: bool = True) -> None: ...
def scall_send_initial_metadata(cq: CompletionQueue, fut: _Fut, call: NativeServerCall, metadata: _MetadataIn) -> None: ...
def scall_reply(
    cq: CompletionQueue,
    fut: _Fut,
    call: NativeServerCall,
    message: bytes,
    compress: bool = True,
    trailing_metadata: _MetadataIn = None,
) -> None: ...
def scall_wait_done(cq: CompletionQueue, fut: _Fut, call: NativeServerCall) -> None: ...

@final
class NativeTelemetry:
    """One OpenTelemetryPlugin's sink: the engine's metric and span records, queued."""
    def __new__(cls, metrics: bool, tracing: bool) -> NativeTelemetry: ...
    def next(self, timeout: Optional[float] = None) -> Tuple[List[Tuple[Any, ...]], int]: ...
    def received(self) -> int: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...

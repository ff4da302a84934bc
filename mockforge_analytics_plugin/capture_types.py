"""The per-request facts the capture middleware hands to the recorder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["OTHER", "CapturedRequest", "RawRecorder", "error_category"]

# The value a capped dimension (endpoint, client, test run) takes past its cap.
OTHER = "__other__"


@dataclass(slots=True)
class CapturedRequest:
    """One finished HTTP request or WebSocket session, as seen by the middleware.

    Times: ``timestamp`` is the Unix start time (s); durations are milliseconds. Strings are
    already length-capped by the middleware. Absent values are ''.
    """

    timestamp: float
    protocol: str  # http | websocket | graphql
    method: str
    endpoint: str  # route template or normalised path
    path: str  # raw path (capped)
    status_code: int
    duration_ms: float  # to the last response byte (WebSocket: session duration)
    ttfb_ms: float = 0.0
    bytes_sent: int = 0  # response bytes
    bytes_received: int = 0  # request bytes
    client_id: str = ""
    user_agent: str = ""
    workspace_id: str = "default"
    environment: str = "dev"
    test_run: str = ""
    mock_route_id: str = ""
    injected_latency_ms: float = 0.0
    fault_injected: bool = False
    trace_id: str = ""
    span_id: str = ""
    error_type: str = ""
    error_message: str = ""
    request_id: str = ""
    in_flight: int = 0  # the protocol's in-flight gauge when this request started


def error_category(status_code: int, error_type: str = "") -> str:
    """Classify an error as REFERENCE.md does: client/server/network/timeout error, or other."""
    if status_code == 499 or error_type == "client_disconnected":
        return "network_error"
    if status_code in (408, 504) or "timeout" in error_type.lower():
        return "timeout_error"
    if 400 <= status_code < 500:
        return "client_error"
    if 500 <= status_code < 600:
        return "server_error"
    return "other"


class RawRecorder(Protocol):
    """What the capture middleware records into (the Recorder, or a test's stand-in).

    A protocol, not the Recorder class: the compiled middleware checks concrete annotated types
    at run time, and a stand-in is not a Recorder.
    """

    def record_raw(self, raw: Any) -> None:
        """Queue one finished request (a capture_build.RawRequest; ``raw.build()`` gives its fields)."""
        ...

"""What the recorder hands to the store on each flush: plain dataclasses, no I/O.

This module is the contract between capture (``recorder``) and storage (``store``/``flush``).
All times are Unix seconds (UTC); all durations are milliseconds (floats).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ClientDelta",
    "ClientKey",
    "DropCounters",
    "ErrorEvent",
    "RecentRequest",
    "RecorderSnapshot",
    "SeriesDelta",
    "SeriesKey",
]


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """One per-minute series: every key dimension of DESIGN.md §3. Absent values are ''."""

    minute: int  # minute start, aligned to 60 s
    source: str  # "middleware" or "prometheus"
    instance: str
    protocol: str  # http | websocket | graphql
    method: str
    endpoint: str  # route template, normalised path, or "__other__"
    status_code: int
    workspace_id: str
    environment: str
    test_run: str


@dataclass(slots=True)
class SeriesDelta:
    """Counters added to one minute row since the last flush."""

    request_count: int = 0
    error_count: int = 0
    # Latency covers HTTP/GraphQL requests only; WebSocket sessions go to session_* fields.
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_min: float | None = None
    latency_max: float | None = None
    ttfb_sum: float = 0.0  # time to first response byte
    histogram: dict[int, int] = field(default_factory=dict)  # bucket index -> count
    bytes_sent: int = 0  # response bytes (server -> client)
    bytes_received: int = 0  # request bytes (client -> server)
    injected_latency_sum: float = 0.0
    fault_count: int = 0
    session_count: int = 0  # WebSocket sessions that started in this minute (counted when they end)
    session_duration_sum: float = 0.0
    active_connections: int = 0  # highest in-flight gauge seen by a request of this series


@dataclass(frozen=True, slots=True)
class ClientKey:
    """One client in one hour."""

    hour: int  # hour start, aligned to 3600 s
    instance: str
    client_id: str
    user_agent: str
    protocol: str
    workspace_id: str
    environment: str
    test_run: str


@dataclass(slots=True)
class ClientDelta:
    """Per-client counters added since the last flush."""

    request_count: int = 0
    error_count: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    endpoints: dict[str, int] = field(default_factory=dict)  # "GET /api/users/{id}" -> count (capped)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """One sampled error (status >= 400), as stored in ``error_events``."""

    timestamp: float
    instance: str
    protocol: str
    method: str
    endpoint: str
    path: str
    status_code: int
    error_type: str  # e.g. "HTTP 404", "ZeroDivisionError", "client_disconnected"
    error_category: str  # client_error | server_error | network_error | timeout_error | other
    error_message: str
    request_id: str
    trace_id: str
    span_id: str
    client_id: str
    user_agent: str
    workspace_id: str
    environment: str
    test_run: str
    fault_injected: bool


@dataclass(frozen=True, slots=True)
class RecentRequest:
    """One entry of the in-memory ring of recent requests."""

    timestamp: float
    protocol: str
    method: str
    path: str
    endpoint: str
    status_code: int
    duration_ms: float
    ttfb_ms: float
    bytes_sent: int
    bytes_received: int
    client_id: str
    user_agent: str
    test_run: str
    workspace_id: str
    environment: str
    mock_route_id: str
    injected_latency_ms: float
    fault_injected: bool
    trace_id: str


@dataclass(slots=True)
class DropCounters:
    """What was not kept, by reason; shown on the page and in the API."""

    endpoint_overflow: int = 0  # requests counted under "__other__" endpoint
    client_overflow: int = 0
    test_run_overflow: int = 0
    error_events_sampled_out: int = 0
    buffer_dropped_requests: int = 0  # requests lost because the store was unavailable too long
    buffer_dropped_error_events: int = 0


@dataclass(slots=True)
class RecorderSnapshot:
    """Everything buffered since the last flush, swapped out of the recorder in one step."""

    series: dict[SeriesKey, SeriesDelta] = field(default_factory=dict)
    clients: dict[ClientKey, ClientDelta] = field(default_factory=dict)
    errors: list[ErrorEvent] = field(default_factory=list)

    def request_count(self) -> int:
        """Requests held in this snapshot (what a failed write would put back)."""
        return sum(d.request_count for d in self.series.values())

    def is_empty(self) -> bool:
        """True when there is nothing to write."""
        return not (self.series or self.clients or self.errors)

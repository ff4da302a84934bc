"""The record builder: turns what the capture middleware queued for a request into CapturedRequest
fields (headers, client id, endpoint, the host's scope contract).

It runs when the Recorder folds its batch, off the request's path: the middleware only queues a
:class:`RawRequest` (references and numbers). This module is compiled with mypyc (setup.py), so
its types are checked at run time: the annotations here are exact on purpose.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Mount

from .clientinfo import MAX_CLIENT_ID_CHARS, MAX_USER_AGENT_CHARS, TrustedProxies, resolve_client_id
from .config import AnalyticsConfig
from .normalise import normalise_path

__all__ = [
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_PATH_CHARS",
    "Fields",
    "InFlight",
    "RawRequest",
    "RequestBuilder",
    "parse_traceparent",
]

MAX_PATH_CHARS = 256  # raw paths and templates as recorded
MAX_METHOD_CHARS = 16
MAX_TEST_RUN_CHARS = 128
MAX_HEADER_ID_CHARS = 128  # request ids
MAX_ERROR_MESSAGE_CHARS = 512
# CapturedRequest's fields, in order: (timestamp, protocol, method, endpoint, path, status_code,
# duration_ms, ttfb_ms, bytes_sent, bytes_received, client_id, user_agent, workspace_id,
# environment, test_run, mock_route_id, injected_latency_ms, fault_injected, trace_id, span_id,
# error_type, error_message, request_id, in_flight). A fixed tuple type: compiled, it is a C struct
# until the recent-requests ring keeps it.
Fields = tuple[
    float,
    str,
    str,
    str,
    str,
    int,
    float,
    float,
    int,
    int,
    str,
    str,
    str,
    str,
    str,
    str,
    float,
    bool,
    str,
    str,
    str,
    str,
    str,
    int,
]


class InFlight:
    """Requests in flight per protocol: the capture middleware updates it in place (native
    counters when compiled: no dict operations on the request path)."""

    __slots__ = ("graphql", "http", "websocket")

    def __init__(self) -> None:
        self.http = 0
        self.graphql = 0
        self.websocket = 0

    def as_dict(self) -> dict[str, int]:
        """The gauge per protocol."""
        return {"http": self.http, "graphql": self.graphql, "websocket": self.websocket}


class RawRequest:
    """What the middleware queues for one finished request: references and numbers only; the
    builder turns it into :data:`Fields` when the recorder folds its batch.

    The queuing side sets every field before queuing (the HTTP path fills them as the request ends).
    """

    __slots__ = ("builder", "client", "client_id", "duration_ms", "endpoint", "environment",
                 "error_message", "error_type", "fault", "headers", "in_flight", "injected", "method", "mf",
                 "outer_root", "path", "protocol", "read_any", "received", "root_path", "route", "route_id",
                 "sent", "status", "test_run", "trace_id", "ts", "ttfb_ms", "user_agent",
                 "workspace")  # fmt: skip

    builder: RequestBuilder
    ts: float
    protocol: str
    path: str
    outer_root: str  # the server's root_path, stripped before templates and exclusion
    status: int
    duration_ms: float
    ttfb_ms: float
    sent: int
    received: int
    read_any: bool  # the app read the request body (else Content-Length counts)
    error_type: str
    error_message: str
    in_flight: int
    headers: Any
    client: Any
    mf: Any  # the host's scope["mockforge"]
    route: Any
    root_path: str
    method: str
    # Set by keep() when the request is folded: what the recent-requests ring shows.
    endpoint: str
    client_id: str
    user_agent: str
    workspace: str
    environment: str
    test_run: str
    route_id: str
    injected: float
    fault: bool
    trace_id: str

    def __init__(self, builder: RequestBuilder) -> None:
        self.builder = builder

    def build(self) -> Fields:
        """The CapturedRequest fields of this request."""
        return self.builder.build(self)

    def keep(self, f: Fields) -> None:
        """Become the recent ring's entry: keep the built fields it shows (the client as capped)
        and drop what they were built from. The ring keeps this object instead of a 24-field tuple
        per request: compiled, the numbers stay unboxed and there is no tuple for the GC to visit."""
        self.method = f[2]
        self.endpoint = f[3]
        self.path = f[4]
        self.received = f[9]
        self.client_id = f[10]
        self.user_agent = f[11]
        self.workspace = f[12]
        self.environment = f[13]
        self.test_run = f[14]
        self.route_id = f[15]
        self.injected = f[16]
        self.fault = f[17]
        self.trace_id = f[18]
        self.headers = self.client = self.mf = self.route = None


# W3C trace context: version-traceid-parentid-flags, lowercase hex; version ff is invalid.
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def parse_traceparent(value: bytes) -> tuple[str, str]:
    """Return (trace_id, span_id) of a valid W3C ``traceparent`` header, else ('', '')."""
    m = _TRACEPARENT.fullmatch(value.strip()[:256])
    if m is None:
        return "", ""
    version, trace_id, span_id, _flags, rest = m.groups()
    if version == b"ff" or (version == b"00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return "", ""
    return trace_id.decode("ascii"), span_id.decode("ascii")


def _text(value: object, default: str) -> str:
    """A value of the host's scope dict as text: ``default`` when empty or missing (a str is
    tested by length: compiled, no generic truth test)."""
    if type(value) is str:
        return value if value else default
    return str(value) if value else default


def _header_text(value: bytes, limit: int) -> str:
    return value[:limit].decode("latin-1").strip()


def _endpoint(route: Any, root: str, path: str, outer_root: str) -> str:
    """Without the host's template: Starlette's route joined through mounts, else the normalised
    path."""
    route_path = getattr(route, "path", None)
    if route_path is not None and not isinstance(route, Mount):
        # Inside a Mount, route.path is relative: the mounts' paths were appended to root_path.
        if outer_root and root.startswith(outer_root):
            root = root[len(outer_root) :]
        return (root + route_path)[:MAX_PATH_CHARS] or "/"
    return normalise_path(path)[:MAX_PATH_CHARS]


class RequestBuilder:
    """Builds CapturedRequest fields from a queued request; configured once per middleware."""

    __slots__ = ("_header_slots", "_trusted")

    def __init__(self, config: AnalyticsConfig) -> None:
        client_header = (config.client_id_header or "").strip().lower().encode("latin-1")
        test_run_header = (config.test_run_header or "").strip().lower().encode("latin-1")
        # Header name -> slot; one dict lookup per header instead of a chain of compares.
        slots = {b"user-agent": 0, b"traceparent": 1, b"content-length": 2, b"x-forwarded-for": 3,
                 b"x-request-id": 6}  # fmt: skip
        if test_run_header:
            slots[test_run_header] = 5
        if client_header:
            slots[client_header] = 4  # wins over a built-in name it might shadow
        self._header_slots = slots
        self._trusted = TrustedProxies(config.trusted_proxies)

    def build(self, raw: RawRequest) -> Fields:
        """CapturedRequest fields, in order, of a queued request."""
        path = raw.path
        method = raw.method
        received = raw.received
        user_agent = trace_id = span_id = test_run = request_id = ""
        client_header: str | None = None
        forwarded: str | None = None
        content_length = b""
        slots = self._header_slots
        for name, value in raw.headers or ():
            slot = slots.get(name)
            if slot is None:
                continue
            if slot == 0:
                user_agent = _header_text(value, MAX_USER_AGENT_CHARS)
            elif slot == 1:
                trace_id, span_id = parse_traceparent(value)
            elif slot == 2:
                content_length = value
            elif slot == 3:
                text = _header_text(value, 4096)
                forwarded = f"{forwarded},{text}" if forwarded else text
            elif slot == 4:
                client_header = _header_text(value, 512)
            elif slot == 5:
                test_run = _header_text(value, MAX_TEST_RUN_CHARS)
            else:
                request_id = _header_text(value, MAX_HEADER_ID_CHARS)
        if content_length and not raw.read_any and content_length.isdigit() and len(content_length) <= 18:
            received = int(content_length)  # the body arrived even though the app never read it
        client = raw.client
        peer = client[0] if client else ""
        if client_header is None and forwarded is None and type(peer) is str:
            client_id = peer if len(peer) <= MAX_CLIENT_ID_CHARS else peer[:MAX_CLIENT_ID_CHARS]
        else:
            client_id = resolve_client_id(str(peer), client_header, forwarded, self._trusted)

        mf = raw.mf
        if mf:
            # The host's scope contract (example_host/hookspecs.py); another host may leave keys
            # out. A dict (as the contract says) is read directly: compiled, that is a C lookup.
            d: dict[str, Any] = mf if isinstance(mf, dict) else dict(mf)
            value = d.get("route_template")
            template = value if type(value) is str else ""  # anything else: not a template
            workspace = _text(d.get("workspace"), "default")
            environment = _text(d.get("environment"), "dev")
            route_id = _text(d.get("route_id"), "")
            value = d.get("injected_latency_ms")
            injected = value if type(value) is float else (float(value) if value else 0.0)
            fault = bool(d.get("fault_injected"))
            if len(route_id) > MAX_PATH_CHARS:
                route_id = route_id[:MAX_PATH_CHARS]
        else:
            template = ""
            workspace, environment, route_id, injected, fault = "default", "dev", "", 0.0, False
        # Lengths are compared before slicing: most values are short, and a slice costs more.
        if template:
            endpoint = template if len(template) <= MAX_PATH_CHARS else template[:MAX_PATH_CHARS]
        else:
            endpoint = _endpoint(raw.route, raw.root_path, path, raw.outer_root)
        if len(path) > MAX_PATH_CHARS:
            path = path[:MAX_PATH_CHARS]
        if len(method) > MAX_METHOD_CHARS:
            method = method[:MAX_METHOD_CHARS]
        return (
            raw.ts, raw.protocol, method, endpoint, path, raw.status, raw.duration_ms, raw.ttfb_ms,
            raw.sent, received, client_id, user_agent, workspace, environment, test_run, route_id,
            injected, fault, trace_id, span_id, raw.error_type, raw.error_message, request_id,
            raw.in_flight,
        )  # fmt: skip

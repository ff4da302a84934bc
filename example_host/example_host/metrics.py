"""Default plugin: Prometheus metrics of every request, served at `GET /metrics` (one registry per host)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import HostContext
from .hookspecs import hookimpl

__all__ = ["DURATION_BUCKETS", "UNMATCHED_PATH", "HostMetrics", "MetricsMiddleware"]

# Fine enough for sub-millisecond mocks, up to 10 s.
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
UNMATCHED_PATH = "__unmatched__"  # raw paths of 404s would make the label set unbounded
GRAPHQL_PATHS = ("/graphql",)


@dataclass
class HostMetrics:
    """The metrics of one host, in their own CollectorRegistry."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        reg = self.registry
        self.requests = Counter(
            "mockforge_requests", "Requests handled.", ["protocol", "method", "status"], registry=reg
        )
        self.duration = Histogram(
            "mockforge_request_duration_seconds",
            "Request duration (WebSocket: session length).",
            ["protocol"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.requests_by_path = Counter(
            "mockforge_requests_by_path",
            "Requests per route template.",
            ["protocol", "method", "path", "status"],
            registry=reg,
        )
        self.duration_by_path = Histogram(
            "mockforge_request_duration_by_path_seconds",
            "Request duration per route template.",
            ["protocol", "method", "path"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "mockforge_requests_in_flight", "Requests being handled now.", ["protocol"], registry=reg
        )
        self.errors = Counter(
            "mockforge_errors",
            "Responses with status >= 400, by category (or exception).",
            ["protocol", "error_type"],
            registry=reg,
        )

    def observe(
        self, protocol: str, method: str, path: str, status: int, seconds: float, error_type: str | None
    ) -> None:
        """Count one finished request."""
        code = str(status)
        self.requests.labels(protocol, method, code).inc()
        self.duration.labels(protocol).observe(seconds)
        self.requests_by_path.labels(protocol, method, path, code).inc()
        self.duration_by_path.labels(protocol, method, path).observe(seconds)
        if error_type is not None:
            self.errors.labels(protocol, error_type).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


def error_type_of(status: int, exception: BaseException | None) -> str | None:
    """`exception` when the app raised, `server_error` for 5xx, `client_error` for 4xx, else None."""
    if exception is not None:
        return "timeout_error" if isinstance(exception, TimeoutError) else "exception"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return None


def route_path(scope: Scope, entry_root: str) -> str:
    """The label for a request: the mock's template, the plugin route's path, or `__unmatched__`."""
    info = scope.get("mockforge")
    if info and info.get("matched") and info.get("route_template"):
        return str(info["route_template"])
    route = scope.get("route")
    if route is None:
        return UNMATCHED_PATH
    root = str(scope.get("root_path", ""))[len(entry_root) :]
    if isinstance(route, Mount):  # the mount matched but nothing inside it did
        return f"{root or route.path}/*"
    return root + str(getattr(route, "path", UNMATCHED_PATH))


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP request and WebSocket session (per-request state in locals)."""

    def __init__(
        self, app: ASGIApp, metrics: HostMetrics, graphql_paths: tuple[str, ...] = GRAPHQL_PATHS
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.graphql_paths = graphql_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request, note its status, record it when the app returns or raises."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            protocol, method = "websocket", "GET"
        else:
            protocol = "graphql" if scope.get("path") in self.graphql_paths else "http"
            method = scope.get("method", "GET")
        entry_root = str(scope.get("root_path", ""))
        status: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and status is None:
                status = 403  # closed before the handshake completed
            await send(message)

        gauge = self.metrics.in_flight.labels(protocol)
        gauge.inc()
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            status = status or 499  # the client went away
            raise
        except Exception as exc:
            failure = exc
            status = 500 if status is None or status < 400 else status
            raise
        finally:
            gauge.dec()
            final = status if status is not None else 500
            self.metrics.observe(
                protocol,
                method,
                route_path(scope, entry_root),
                final,
                time.perf_counter() - start,
                error_type_of(final, failure),
            )


@hookimpl
def mockforge_configure(host: HostContext) -> None:
    """Create this host's registry and metrics."""
    host.state["metrics"] = HostMetrics()


@hookimpl
def mockforge_middleware(host: HostContext) -> list[Middleware]:
    """Count every request of the host."""
    return [Middleware(MetricsMiddleware, metrics=host.state["metrics"])]


@hookimpl
def mockforge_routes(host: HostContext) -> list[BaseRoute]:
    """`GET /metrics` as a plain Route (a Mount would answer scrapers with 307)."""
    metrics: HostMetrics = host.state["metrics"]

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics_endpoint, methods=["GET"], name="metrics")]


@hookimpl
def mockforge_links(host: HostContext) -> list[dict[str, Any]]:
    """Link the metrics from the index page."""
    return [{"title": "Prometheus metrics", "href": "/metrics"}]

"""Mock routes built from the config: responses, latency and fault injection, the 404 and 405
answers, and the log filter that shortens the tracebacks of `raise:` routes."""

from __future__ import annotations

import asyncio
import difflib
import logging
import random
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from .config import HostConfig, RouteSpec

__all__ = [
    "INJECTED_ROUTE_ATTR",
    "InjectedErrorLogFilter",
    "MockRoute",
    "MockScopeMiddleware",
    "build_mock_routes",
    "closest_route",
    "fault_rng",
    "injected_error",
    "injected_route_id",
    "install_injected_error_filter",
    "latency_rng",
    "make_method_not_allowed",
    "make_not_found",
    "substitute",
]

# Attribute a `raise:` route puts on the RuntimeError it raises: the route's id. The exception
# keeps its type (plugins record "RuntimeError"); only the host's log filter looks at the mark.
INJECTED_ROUTE_ATTR = "mockforge_raise_route"

_PLACEHOLDER = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)}")


def fault_rng(seed: int | None, route_id: str) -> random.Random:
    """The random source deciding faults for one route (seeded per route, so traffic elsewhere
    does not shift it)."""
    return random.Random(f"{seed}:{route_id}:faults") if seed is not None else random.Random()


def latency_rng(seed: int | None, route_id: str) -> random.Random:
    """The random source drawing latencies from a [min, max] range for one route."""
    return random.Random(f"{seed}:{route_id}:latency") if seed is not None else random.Random()


def substitute(value: Any, params: dict[str, Any]) -> Any:
    """Replace `{name}` in every string of a JSON value with the path parameter's value."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: str(params.get(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [substitute(item, params) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, params) for key, item in value.items()}
    return value


def initial_scope_info(workspace: str, environment: str) -> dict[str, Any]:
    """The `scope["mockforge"]` dict of a request before (or without) a mock route match."""
    return {
        "matched": False,
        "route_template": None,
        "route_id": None,
        "workspace": workspace,
        "environment": environment,
        "injected_latency_ms": 0.0,
        "fault_injected": False,
    }


def _scope_info(scope: Scope, config: HostConfig) -> dict[str, Any]:
    """The request's `scope["mockforge"]` dict, created if the app runs without MockScopeMiddleware."""
    info = scope.get("mockforge")
    if info is None:
        info = scope["mockforge"] = initial_scope_info(config.workspace, config.environment)
    return info


class MockScopeMiddleware:
    """Outermost middleware: put `scope["mockforge"]` in every HTTP/WebSocket scope."""

    def __init__(self, app: ASGIApp, workspace: str, environment: str) -> None:
        self.app = app
        self.workspace = workspace
        self.environment = environment

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set the defaults, then call the app with the same scope dict."""
        if scope["type"] in ("http", "websocket"):
            scope["mockforge"] = initial_scope_info(self.workspace, self.environment)
        await self.app(scope, receive, send)


class _MockEndpoint:
    """The handler of one HTTP mock route (per host: its random sources live here)."""

    def __init__(self, spec: RouteSpec, config: HostConfig) -> None:
        self.spec = spec
        self.config = config
        self.faults = fault_rng(config.seed, spec.id)
        self.latency = latency_rng(config.seed, spec.id)

    async def handle(self, request: Request) -> Response:
        """Decide fault and delay, record them in the scope, sleep, then answer."""
        spec = self.spec
        fault = spec.faults is not None and self.faults.random() < spec.faults.error_rate
        delay_ms = 0.0
        if spec.latency_ms is not None:
            low, high = spec.latency_ms
            delay_ms = low if low == high else self.latency.uniform(low, high)
        info = _scope_info(request.scope, self.config)
        info.update(
            matched=True,
            route_template=spec.path,
            route_id=spec.id,
            injected_latency_ms=delay_ms,
            fault_injected=fault,
        )
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)
        if fault:
            assert spec.faults is not None
            body = (
                spec.faults.body
                if spec.faults.has_body
                else {
                    "error": "injected fault",
                    "status": spec.faults.status,
                    "route": spec.id,
                }
            )
            response = _render(substitute(body, request.path_params), spec.faults.status, True)
            response.headers["X-Mockforge-Fault"] = "1"
            return response
        if spec.raise_message is not None:
            raise injected_error(spec.raise_message, spec.id)
        response = _render(substitute(spec.body, request.path_params), spec.status, spec.has_body)
        for name, value in spec.headers.items():
            response.headers[name] = substitute(value, request.path_params)
        return response


class _EchoEndpoint:
    """A WebSocket route that sends back every message it receives."""

    def __init__(self, spec: RouteSpec, config: HostConfig) -> None:
        self.spec = spec
        self.config = config
        self.latency = latency_rng(config.seed, spec.id)

    async def handle(self, websocket: WebSocket) -> None:
        """Accept, echo text and bytes until the client closes."""
        spec = self.spec
        delay_ms = 0.0
        if spec.latency_ms is not None:
            low, high = spec.latency_ms
            delay_ms = low if low == high else self.latency.uniform(low, high)
        info = _scope_info(websocket.scope, self.config)
        info.update(matched=True, route_template=spec.path, route_id=spec.id, injected_latency_ms=delay_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                elif message.get("bytes") is not None:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect:
            return


def _render(body: Any, status: int, has_body: bool) -> Response:
    """A JSON response for JSON values, text for strings, empty when no body is configured."""
    if not has_body or status in (204, 304) or status < 200:
        return Response(b"", status_code=status)
    if isinstance(body, str):
        return PlainTextResponse(body, status_code=status)
    return JSONResponse(body, status_code=status)


class MockRoute(Route):
    """An HTTP mock route; a method no mock route has for the path gets the host's JSON 405."""

    def __init__(self, spec: RouteSpec, endpoint: Any, method_not_allowed: ASGIApp) -> None:
        super().__init__(spec.path, endpoint, methods=[spec.method], name=spec.id)
        self.spec = spec
        self.method_not_allowed = method_not_allowed

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a matched request, or the 405 when only the path matched (Starlette's partial)."""
        if scope["type"] == "http" and self.methods and scope["method"] not in self.methods:
            await self.method_not_allowed(scope, receive, send)
            return
        await super().handle(scope, receive, send)


def make_method_not_allowed(config: HostConfig, routes: list[MockRoute]) -> ASGIApp:
    """The 405 answer for a path some mock route has but not with this method.

    JSON `{"error", "allowed", "closest"}` plus an `Allow` header; `scope["mockforge"]` stays
    unmatched (matched False, workspace, environment), as for the 404. `routes` is read per
    request, so the caller may fill the list after this call.
    """

    async def method_not_allowed(scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        matching = [route for route in routes if route.matches(scope)[0] is not Match.NONE]
        allowed = {route.spec.method for route in matching}
        # A host page answering GET on this path (the index at `/`) makes GET allowed too.
        probe = {**scope, "method": "GET"}
        for route in getattr(scope.get("router"), "routes", ()):
            if getattr(route, "mockforge_host_page", False) and route.matches(probe)[0] is Match.FULL:
                allowed.add("GET")
        allow = allowed | {"HEAD"} if "GET" in allowed else allowed
        info = _scope_info(scope, config)
        info.update(matched=False, route_template=None, route_id=None)
        body = {
            "error": f"no mock route matches {method} {path}",
            "allowed": sorted(allowed),
            "closest": closest_route(method, path, tuple(route.spec for route in matching)),
        }
        response = JSONResponse(body, status_code=405, headers={"Allow": ", ".join(sorted(allow))})
        await response(scope, receive, send)

    return method_not_allowed


def build_mock_routes(config: HostConfig) -> list[BaseRoute]:
    """Starlette routes for every mock route of the config, in config order."""
    routes: list[BaseRoute] = []
    http_routes: list[MockRoute] = []
    method_not_allowed = make_method_not_allowed(config, http_routes)
    for spec in config.routes:
        if spec.websocket is not None:
            routes.append(WebSocketRoute(spec.path, _EchoEndpoint(spec, config).handle, name=spec.id))
        else:
            route = MockRoute(spec, _MockEndpoint(spec, config).handle, method_not_allowed)
            http_routes.append(route)
            routes.append(route)
    return routes


def closest_route(method: str, path: str, specs: tuple[RouteSpec, ...]) -> str | None:
    """The configured route most similar to `METHOD /path` (by a character-level ratio)."""
    target = f"{method.upper()} {path}"
    best: tuple[float, str] | None = None
    for spec in specs:
        candidate = f"{spec.method} {spec.path}"
        # Compare against the template with parameters blanked, so `{id}` does not count against it.
        ratio = max(
            difflib.SequenceMatcher(None, target, candidate).ratio(),
            difflib.SequenceMatcher(None, target, _PLACEHOLDER.sub("", candidate)).ratio(),
        )
        if spec.method != method.upper():
            ratio -= 0.1
        if best is None or ratio > best[0]:
            best = (ratio, candidate)
    return best[1] if best else None


def make_not_found(config: HostConfig) -> ASGIApp:
    """The router's default app: 404 JSON naming the closest mock route (WebSocket: close 1000)."""

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000, "reason": "no mock route"})
            return
        if scope["type"] != "http":
            return
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        body = {
            "error": f"no mock route matches {method} {path}",
            "closest": closest_route(method, path, config.routes),
        }
        await JSONResponse(body, status_code=404)(scope, receive, send)

    return not_found


def injected_error(message: str, route_id: str) -> RuntimeError:
    """The RuntimeError a `raise:` route raises, marked with the route's id."""
    exc = RuntimeError(message)
    setattr(exc, INJECTED_ROUTE_ATTR, route_id)
    return exc


def injected_route_id(exc: BaseException | None) -> str | None:
    """The id of the `raise:` route that raised `exc` (for a group: that raised all of it), else None."""
    if isinstance(exc, BaseExceptionGroup):
        ids = [injected_route_id(inner) for inner in exc.exceptions]
        return ids[0] if ids and all(i is not None for i in ids) else None
    route_id = getattr(exc, INJECTED_ROUTE_ATTR, None)
    return route_id if isinstance(route_id, str) else None


class InjectedErrorLogFilter(logging.Filter):
    """Shorten a logged exception raised on purpose by a `raise:` mock route to one line.

    Any other record, including every unexpected exception, passes through unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record when its exception is an injected one; never drop a record."""
        exc = record.exc_info[1] if record.exc_info else None
        route_id = injected_route_id(exc)
        if exc is None or route_id is None:
            return True
        headline = " ".join(record.getMessage().split()) or "Exception in ASGI application"
        record.msg = "%s: mock route %r raised %s(%r) as configured by its `raise:` key (traceback omitted)"
        record.args = (headline, route_id, type(exc).__name__, str(exc))
        record.exc_info = None
        record.exc_text = None
        return True


def install_injected_error_filter(logger_name: str = "uvicorn.error") -> None:
    """Add an InjectedErrorLogFilter to the logger the server reports app exceptions on (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, InjectedErrorLogFilter) for f in logger.filters):
        logger.addFilter(InjectedErrorLogFilter())

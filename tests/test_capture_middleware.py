"""CaptureMiddleware through small Starlette apps in-process (httpx ASGITransport, raw ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, Router, WebSocketRoute
from starlette.websockets import WebSocket

from mockforge_analytics_plugin.capture_types import CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.middleware import CaptureMiddleware, parse_traceparent
from mockforge_analytics_plugin.recorder import Recorder

T0 = 1_700_000_040.0


class FakePerf:
    """A perf_counter the handlers move forward, so durations are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000.0


class Captured:
    """A Recorder stand-in that keeps every CapturedRequest (plus the real recorder behind it)."""

    def __init__(self, config: AnalyticsConfig) -> None:
        self.real = Recorder(config, instance="test:1")
        self.items: list[CapturedRequest] = []
        self.in_flight_gauge = self.real.in_flight_gauge  # the middleware updates it in place

    def record(self, rec: CapturedRequest) -> None:
        self.items.append(rec)
        self.real.record(rec)

    def record_raw(self, raw: Any) -> None:
        self.record(CapturedRequest(*raw.build()))  # build now: each test sees the request at once


def build(config: AnalyticsConfig | None = None) -> tuple[Starlette, Captured, FakePerf]:
    config = config or AnalyticsConfig()
    perf = FakePerf()
    rec = Captured(config)

    async def user(request: Request) -> Response:
        body = await request.body()
        perf.advance(12.0)
        return JSONResponse({"id": request.path_params["id"], "got": len(body)}, status_code=201)

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            perf.advance(5.0)
            yield b"a" * 10
            perf.advance(20.0)
            yield b"b" * 30

        perf.advance(3.0)
        return StreamingResponse(chunks())

    async def boom(request: Request) -> Response:
        raise ZeroDivisionError("division by zero")

    async def plain(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def host_tagged(request: Request) -> Response:
        request.scope["mockforge"] = {
            "matched": True,
            "route_template": "/mock/{name}",
            "route_id": "GET /mock/{name}",
            "workspace": "ws1",
            "environment": "staging",
            "injected_latency_ms": 250.0,
            "fault_injected": True,
        }
        return PlainTextResponse("fault", status_code=503)

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        msg = await ws.receive_text()
        perf.advance(1500.0)
        await ws.send_text(msg * 2)
        await ws.close()

    async def reject(ws: WebSocket) -> None:
        await ws.close()

    async def crash(ws: WebSocket) -> None:
        await ws.accept()
        raise KeyError("state")

    async def listen(ws: WebSocket) -> None:
        await ws.accept()
        while True:  # ends with WebSocketDisconnect when the client goes
            await ws.receive_text()

    inner = Router(routes=[Route("/items/{item_id}", plain), Route("/", plain)])
    app = Starlette(
        routes=[
            Route("/users/{id}", user, methods=["GET", "POST"]),
            Route("/stream", stream),
            Route("/boom", boom),
            Route("/graphql", plain, methods=["POST"]),
            Route("/metrics", plain),
            Route("/analytics/api/overview", plain),
            Route("/__mockforge/plugins.json", plain),
            Route("/tagged", host_tagged),
            Mount("/v2", app=Router(routes=[Mount("/shop", app=inner)])),
            Mount("/files", app=PlainTextResponse("file")),
            WebSocketRoute("/ws/echo", echo),
            WebSocketRoute("/ws/reject", reject),
            WebSocketRoute("/ws/crash", crash),
            WebSocketRoute("/ws/listen", listen),
        ],
        middleware=[
            Middleware(
                CaptureMiddleware,  # type: ignore[arg-type]
                recorder=rec,
                config=config,
                mount_path="/analytics",
                clock=lambda: T0,
                perf=perf,
            )
        ],
    )
    return app, rec, perf


def client(app: Any, peer: str = "10.1.1.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True, client=(peer, 5555))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_status_bytes_and_durations() -> None:
    app, rec, _ = build()
    async with client(app) as c:
        r = await c.post("/users/42", content=b"x" * 17, headers={"user-agent": "curl/8.5.0"})
        assert r.status_code == 201
        r2 = await c.get("/stream")
    a, b = rec.items
    assert (a.protocol, a.method, a.endpoint, a.path, a.status_code) == (
        "http", "POST", "/users/{id}", "/users/42", 201,
    )  # fmt: skip
    assert a.bytes_received == 17 and a.bytes_sent == len(r.content)
    assert a.duration_ms == pytest.approx(12.0) and a.ttfb_ms == pytest.approx(12.0)
    assert a.client_id == "10.1.1.1" and a.user_agent == "curl/8.5.0" and a.timestamp == T0
    assert a.workspace_id == "default" and a.environment == "dev" and a.in_flight == 1
    # Streaming: first byte after 3 ms, last byte 25 ms later.
    assert b.bytes_sent == 40 == len(r2.content)
    assert b.ttfb_ms == pytest.approx(3.0) and b.duration_ms == pytest.approx(28.0)
    assert rec.real.in_flight()["http"] == 0


async def test_content_length_counts_when_body_not_read() -> None:
    app, rec, _ = build()
    async with client(app) as c:
        await c.post("/graphql", content=b"{query}" * 3)
    (g,) = rec.items
    assert g.protocol == "graphql" and g.bytes_received == 21 and g.endpoint == "/graphql"


async def test_raising_handler_recorded_as_500_and_reraised() -> None:
    app, rec, _ = build()
    async with client(app) as c:
        with pytest.raises(ZeroDivisionError):
            await c.get("/boom")
    (e,) = rec.items
    assert e.status_code == 500 and e.error_type == "ZeroDivisionError"
    assert e.error_message == "division by zero"
    snap = rec.real.swap()
    assert snap.errors[0].error_type == "ZeroDivisionError"
    assert snap.errors[0].error_category == "server_error"


async def test_host_scope_contract_is_used() -> None:
    app, rec, _ = build()
    async with client(app) as c:
        await c.get("/tagged")
    (t,) = rec.items
    assert t.endpoint == "/mock/{name}" and t.mock_route_id == "GET /mock/{name}"
    assert (t.workspace_id, t.environment) == ("ws1", "staging")
    assert t.injected_latency_ms == 250.0 and t.fault_injected is True and t.status_code == 503
    (d,) = rec.real.swap().series.values()
    assert d.fault_count == 1 and d.injected_latency_sum == 250.0 and d.error_count == 1


async def test_route_template_joined_through_mounts_and_unmatched_normalised() -> None:
    app, rec, _ = build()
    async with client(app) as c:
        await c.get("/v2/shop/items/77")
        await c.get("/v2/shop/")
        await c.get("/files/a/b")
        await c.get("/nope/123e4567-e89b-12d3-a456-426614174000/x/42/deadbeefdeadbeefdead")
        await c.get("/nope//9//")
    assert [x.endpoint for x in rec.items] == [
        "/v2/shop/items/{item_id}",
        "/v2/shop/",
        "/files/a/b",  # a Mount of a plain ASGI app has no template: the normalised path
        "/nope/{id}/x/{id}/{id}",
        "/nope/{id}",
    ]
    assert [x.status_code for x in rec.items] == [200, 200, 200, 404, 404]
    assert rec.items[3].path.startswith("/nope/123e4567")


async def test_mount_and_excluded_paths_not_recorded() -> None:
    app, rec, _ = build()
    async with client(app) as c:
        for p in ("/analytics", "/analytics/api/overview", "/metrics", "/__mockforge/plugins.json"):
            await c.get(p)
        await c.get("/analyticsx")  # only the mount itself and what is under it
    assert [x.path for x in rec.items] == ["/analyticsx"]


async def test_exclude_patterns_with_leading_and_inner_wildcards() -> None:
    # Paths are checked against the patterns' literal prefixes first; a pattern that starts with
    # a wildcard (empty prefix) or has ? and [..] inside must still exclude what it matches.
    cfg = AnalyticsConfig(exclude_paths=("*.png", "/v?/health", "/files/[ab]*"))
    app, rec, _ = build(cfg)
    async with client(app) as c:
        for p in ("/users/logo.png", "/v2/health", "/files/a1", "/files/c1", "/users/7", "/analytics/x"):
            await c.get(p)
    assert [x.path for x in rec.items] == ["/files/c1", "/users/7"]


async def test_client_id_header_and_forwarded_for() -> None:
    cfg = AnalyticsConfig(client_id_header="X-Client-Id", trusted_proxies=("10.9.9.9",))
    app, rec, _ = build(cfg)
    async with client(app, peer="10.9.9.9") as trusted:
        await trusted.get("/users/1", headers={"x-forwarded-for": "6.6.6.6, 1.2.3.4"})
        await trusted.get("/users/1", headers={"x-client-id": "team-a", "x-forwarded-for": "1.2.3.4"})
    async with client(app, peer="8.8.8.8") as untrusted:
        await untrusted.get("/users/1", headers={"x-forwarded-for": "1.2.3.4"})
    assert [x.client_id for x in rec.items] == ["1.2.3.4", "team-a", "8.8.8.8"]


async def test_test_run_header_and_traceparent_and_hostile_lengths() -> None:
    app, rec, _ = build()
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with client(app) as c:
        await c.get("/users/1", headers={"x-test-run": "run-7", "traceparent": tp})
        await c.get("/users/2", headers={"traceparent": "garbage", "user-agent": "u" * 5000,
                                         "x-test-run": "r" * 5000})  # fmt: skip
        await c.get("/" + "p" * 5000)
    a, b, long = rec.items
    assert a.test_run == "run-7"
    assert (a.trace_id, a.span_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert (b.trace_id, b.span_id) == ("", "")
    assert len(b.user_agent) == 512 and len(b.test_run) == 128
    assert len(long.path) == 256 and long.endpoint == "/{id}"


def test_parse_traceparent_validation() -> None:
    good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(good) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert parse_traceparent(b"ff" + good[2:]) == ("", "")
    assert parse_traceparent(good.upper()) == ("", "")
    assert parse_traceparent(b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01") == ("", "")
    assert parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-" + b"0" * 16 + b"-01") == ("", "")
    assert parse_traceparent(good + b"-extra") == ("", "")  # version 00 has exactly four fields
    assert parse_traceparent(b"01" + good[2:] + b"-future") != ("", "")


# -- raw ASGI drives: disconnects and WebSockets ---------------------------------------------


def http_scope(path: str, method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"test")], "client": ("10.1.1.1", 5555),
        "server": ("test", 80),
    }  # fmt: skip


async def test_client_gone_before_response_is_499() -> None:
    app, rec, _ = build()
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    from starlette.requests import ClientDisconnect

    with pytest.raises(ClientDisconnect):
        await app(http_scope("/users/5", "POST"), receive, send)
    (x,) = rec.items
    assert x.status_code == 499 and x.error_type == "client_disconnected"
    assert rec.real.swap().errors[0].error_category == "network_error"


async def test_send_raising_oserror_is_499() -> None:
    app, rec, _ = build()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise ConnectionResetError("peer gone")

    with pytest.raises(OSError):
        await app(http_scope("/users/5"), receive, send)
    (x,) = rec.items
    assert x.status_code == 499 and x.error_type == "client_disconnected"


async def test_client_gone_while_headers_are_sent_is_499() -> None:
    """The start message goes to the server's send directly: its error reaches us through the app."""
    app, rec, _ = build()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        raise BrokenPipeError("peer gone")

    with pytest.raises(OSError):
        await app(http_scope("/users/5"), receive, send)
    (x,) = rec.items
    assert x.status_code == 499 and x.error_type == "client_disconnected"


async def test_an_apps_own_oserror_is_500_not_499() -> None:
    async def missing(request: Request) -> Response:
        raise FileNotFoundError("fixture.json")

    config = AnalyticsConfig()
    rec = Captured(config)
    inner = Starlette(routes=[Route("/f", missing)])
    app = CaptureMiddleware(inner, recorder=rec, config=config, mount_path="/analytics")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    with pytest.raises(FileNotFoundError):
        await app(http_scope("/f"), receive, send)
    (x,) = rec.items
    assert x.status_code == 500 and x.error_type == "FileNotFoundError"


async def test_disconnect_after_response_is_not_499() -> None:
    app, rec, _ = build()
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        return None

    await app(http_scope("/users/5"), receive, send)
    assert rec.items[0].status_code == 201


async def test_lifespan_passes_through() -> None:
    seen: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    cfg = AnalyticsConfig()
    rec = Captured(cfg)
    mw = CaptureMiddleware(inner, recorder=rec.real, config=cfg, mount_path="/analytics")
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"] and rec.real.totals["requests"] == 0


async def _ws_session(app: Any, path: str, client_msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"test")], "client": ("10.1.1.1", 5555), "server": ("test", 80),
        "subprotocols": [],
    }  # fmt: skip
    inbox = [{"type": "websocket.connect"}, *client_msgs]
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app(scope, receive, send)
    return out


async def test_websocket_session_counted_once_outside_latency() -> None:
    app, rec, _ = build()
    out = await _ws_session(app, "/ws/echo", [{"type": "websocket.receive", "text": "héllo"}])
    assert [m["type"] for m in out] == ["websocket.accept", "websocket.send", "websocket.close"]
    await _ws_session(app, "/ws/reject", [])
    ws, rejected = rec.items
    assert (ws.protocol, ws.method, ws.endpoint, ws.status_code) == ("websocket", "WS", "/ws/echo", 101)
    assert ws.bytes_received == 6 and ws.bytes_sent == 12
    assert ws.duration_ms == pytest.approx(1500.0)
    assert rejected.status_code == 403
    snap = rec.real.swap()
    ok = next(d for k, d in snap.series.items() if k.status_code == 101)
    assert ok.request_count == 1 and ok.session_count == 1
    assert ok.session_duration_sum == pytest.approx(1500.0)
    assert ok.latency_count == 0 and ok.histogram == {}
    assert rec.real.in_flight()["websocket"] == 0


async def test_capture_failure_never_breaks_the_request() -> None:
    app, rec, _ = build()

    def broken(_: Any) -> None:
        raise RuntimeError("bug")

    rec.record_raw = broken  # type: ignore[method-assign]
    async with client(app) as c:
        r = await c.get("/users/3")
    assert r.status_code == 201


async def test_websocket_app_error_is_500_but_client_close_is_not() -> None:
    from starlette.websockets import WebSocketDisconnect

    app, rec, _ = build()
    with pytest.raises(KeyError):
        await _ws_session(app, "/ws/crash", [])
    with pytest.raises(WebSocketDisconnect):
        await _ws_session(app, "/ws/listen", [{"type": "websocket.receive", "text": "abc"}])
    crash, listen = rec.items
    assert crash.status_code == 500 and crash.error_type == "KeyError"
    assert listen.status_code == 101 and listen.error_type == "" and listen.bytes_received == 3


async def test_real_recorder_builds_deferred_requests_in_batches() -> None:
    cfg = AnalyticsConfig()
    recorder = Recorder(cfg, instance="t:1")
    app = Starlette(
        routes=[Route("/users/{id}", lambda r: PlainTextResponse("x"))],
        middleware=[Middleware(CaptureMiddleware, recorder=recorder, config=cfg, mount_path="/analytics")],  # type: ignore[arg-type]
    )
    async with client(app) as c:
        for i in range(300):  # more than one batch
            await c.get(f"/users/{i}", headers={"x-test-run": "r1"})
    snap = recorder.swap()
    # One series per minute: the loop may cross a minute boundary on the real clock.
    assert {(k.endpoint, k.test_run) for k in snap.series} == {("/users/{id}", "r1")}
    assert sum(d.request_count for d in snap.series.values()) == 300
    assert recorder.totals["requests"] == 300 and recorder.recent(1)[0].path == "/users/299"


async def test_server_root_path_is_stripped_before_templates_and_exclusion() -> None:
    app, rec, _ = build()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    for path in ("/prefix/users/5", "/prefix/analytics/api/overview", "/prefix/v2/shop/items/9"):
        scope = http_scope(path)
        scope["root_path"] = "/prefix"
        await app(scope, receive, send)
    assert [(x.path, x.endpoint) for x in rec.items] == [
        ("/users/5", "/users/{id}"),
        ("/v2/shop/items/9", "/v2/shop/items/{item_id}"),
    ]


async def test_in_flight_gauge_is_the_recorders_while_requests_run() -> None:
    cfg = AnalyticsConfig()
    recorder = Recorder(cfg, instance="t:1")
    seen: list[dict[str, int]] = []

    async def slow(request: Request) -> Response:
        seen.append(recorder.in_flight())
        if len(seen) == 1:  # the first request is still in flight while the second runs
            await app(http_scope("/graphql", "POST"), request.receive, lambda m: _noop())
        return PlainTextResponse("x")

    async def _noop() -> None:
        return None

    app = Starlette(
        routes=[Route("/users/{id}", slow), Route("/graphql", slow, methods=["POST"])],
        middleware=[Middleware(CaptureMiddleware, recorder=recorder, config=cfg, mount_path="/analytics")],  # type: ignore[arg-type]
    )
    async with client(app) as c:
        await c.get("/users/1")
    assert seen == [
        {"http": 1, "graphql": 0, "websocket": 0},
        {"http": 1, "graphql": 1, "websocket": 0},
    ]
    assert recorder.in_flight() == {"http": 0, "graphql": 0, "websocket": 0}
    assert [r.status_code for r in reversed(recorder.recent())] == [200, 200]


async def test_long_host_template_route_id_and_peer_are_capped() -> None:
    long_template = "/t/" + "x" * 400
    app = Starlette(routes=[Route("/long", lambda r: _tag(r, long_template))])
    cfg = AnalyticsConfig()
    rec = Captured(cfg)
    app.add_middleware(CaptureMiddleware, recorder=rec, config=cfg, mount_path="/analytics")  # type: ignore[arg-type]
    async with client(app, peer="p" * 300) as c:
        await c.get("/long")
    (x,) = rec.items
    assert x.endpoint == long_template[:256] and x.mock_route_id == ("GET " + long_template)[:256]
    assert x.client_id == "p" * 256


def _tag(request: Request, template: str) -> Response:
    request.scope["mockforge"] = {
        "matched": True, "route_template": template, "route_id": "GET " + template,
        "workspace": "default", "environment": "dev", "injected_latency_ms": 0.0, "fault_injected": False,
    }  # fmt: skip
    return PlainTextResponse("ok")

"""The example host's index at `/`, its JSON 405 for a mock path, and the one-line log of `raise:` routes."""

from __future__ import annotations

import asyncio
import html
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest
import uvicorn
from example_host.app import build_app
from example_host.introspection import wants_html
from example_host.mock_routes import InjectedErrorLogFilter, injected_error, injected_route_id
from prometheus_client.parser import text_string_to_metric_families
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from support.hostproc import run_host, write_config
from support.scope_spy import ScopeSpyPlugin

from mockforge_analytics_plugin.capture_types import CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.middleware import CaptureMiddleware

hookimpl = pluggy.HookimplMarker("mockforge")

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"

CONFIG: dict[str, Any] = {
    "seed": 3,
    "workspace": "team-a",
    "environment": "staging",
    "routes": [
        {"method": "GET", "path": "/api/users/{id}", "body": {"id": "{id}"}},
        {"method": "DELETE", "path": "/api/users/{id}", "status": 204},
        {"method": "POST", "path": "/api/users", "status": 201, "body": {"created": True}},
        {"method": "GET", "path": "/boom", "raise": "kaboom"},
        {"method": "GET", "path": "/ws/echo", "websocket": "echo"},
    ],
}


class Sink:
    """A Recorder stand-in for the analytics CaptureMiddleware: keeps every captured request."""

    def __init__(self) -> None:
        self.items: list[CapturedRequest] = []

    def record_raw(self, raw: Any) -> None:
        """Build the request at once (the real Recorder defers it to its fold)."""
        self.items.append(CapturedRequest(*raw.build()))


class AnalyticsLike:
    """A plugin with the analytics plugin's capture middleware (default config) and link."""

    def __init__(self) -> None:
        self.sink = Sink()

    @hookimpl
    def mockforge_middleware(self, host: Any) -> list[Middleware]:
        """The real CaptureMiddleware with the plugin's default exclude_paths."""
        return [
            Middleware(
                CaptureMiddleware, recorder=self.sink, config=AnalyticsConfig(), mount_path="/analytics"
            )
        ]

    @hookimpl
    def mockforge_links(self, host: Any) -> list[dict[str, str]]:
        """The link the analytics plugin shows on the index."""
        return [{"title": "Traffic analytics", "href": "/analytics/"}]


class Exploder:
    """A plugin whose route fails for real (an unexpected exception, not a `raise:` route)."""

    @hookimpl
    def mockforge_routes(self, host: Any) -> list[BaseRoute]:
        """`GET /explode` raises ValueError."""

        async def explode(request: Request) -> Response:
            raise ValueError("a real bug")

        return [Route("/explode", explode, methods=["GET"])]


def make_client(
    config: dict[str, Any] | None = None, plugins: dict[str, Any] | None = None, root_path: str = ""
) -> httpx.AsyncClient:
    """An httpx client on a fresh in-process host; plugins get a config section each."""
    config = dict(config or CONFIG)
    plugins = plugins or {}
    config["plugins"] = {name: {} for name in plugins}
    app = build_app(config, plugins=plugins)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, root_path=root_path)
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    client.app = app  # type: ignore[attr-defined]
    return client


# --- the index at `/` -------------------------------------------------------------------------


async def test_root_answers_json_index_with_routes_and_plugin_links() -> None:
    analytics = AnalyticsLike()
    async with (
        make_client(plugins={"analytics": analytics}) as client,
        client.app.router.lifespan_context(client.app),
    ):
        r = await client.get("/")
        assert (await client.head("/")).status_code == 200
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["vary"] == "Accept"
    doc = r.json()
    assert doc["host"]["name"] == "mockforge-example-host" and doc["host"]["version"]
    assert (doc["workspace"], doc["environment"]) == ("team-a", "staging")
    assert doc["index"] == "/__mockforge/"
    assert [(x["method"], x["path"], x["status"], x["kind"]) for x in doc["routes"]] == [
        ("GET", "/api/users/{id}", 200, "http"),
        ("DELETE", "/api/users/{id}", 204, "http"),
        ("POST", "/api/users", 201, "http"),
        ("GET", "/boom", 500, "raise"),
        ("GET", "/ws/echo", 101, "websocket"),
    ]
    assert {"plugin": "analytics", "title": "Traffic analytics", "href": "/analytics/"} in doc["links"]
    assert {"plugin": "metrics", "title": "Prometheus metrics", "href": "/metrics"} in doc["links"]
    assert {p["name"] for p in doc["plugins"]} == {"metrics", "introspection", "analytics"}


@pytest.mark.parametrize("root_path", ["", "/mf"])
async def test_browsers_are_redirected_to_the_html_index(root_path: str) -> None:
    async with make_client(plugins={"analytics": AnalyticsLike()}, root_path=root_path) as client:
        r = await client.get("/", headers={"Accept": BROWSER_ACCEPT})
        assert r.status_code == 303
        assert r.headers["location"] == f"{root_path}/__mockforge/"
        assert r.headers["vary"] == "Accept"
        page = await client.get("/__mockforge/", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    text = page.text
    assert '<a href="/analytics/">Traffic analytics</a>' in text
    assert '<a href="/metrics">Prometheus metrics</a>' in text
    assert "<td>DELETE</td><td><code>/api/users/{id}</code></td><td>204</td>" in text
    assert "<td>POST</td><td><code>/api/users</code></td><td>201</td>" in text
    assert "team-a" in text and "staging" in text


async def test_index_escapes_route_ids_workspace_and_plugin_links() -> None:
    class Hostile:
        @hookimpl
        def mockforge_links(self, host: Any) -> list[dict[str, str]]:
            return [{"title": "<script>alert(1)</script>", "href": '/x" onmouseover="alert(2)'}]

    config = {
        "workspace": "<b>ws</b>",
        "environment": "e&v",
        "routes": [{"method": "GET", "path": "/a", "id": "<img src=x onerror=alert(3)>", "body": "a"}],
    }
    async with make_client(config, plugins={"hostile": Hostile()}) as client:
        text = (await client.get("/__mockforge/")).text
        doc = (await client.get("/")).json()
    for raw in ("<script>", "<img", "<b>ws</b>", '" onmouseover="', "e&v"):
        assert raw not in text
    assert html.escape("<img src=x onerror=alert(3)>") in text
    assert html.escape("<script>alert(1)</script>") in text
    assert 'href="/x&quot; onmouseover=&quot;alert(2)"' in text
    # JSON carries the values as they are (it is data, not markup).
    assert doc["routes"][0]["id"] == "<img src=x onerror=alert(3)>"
    assert doc["workspace"] == "<b>ws</b>"


async def test_index_without_mock_routes_says_so() -> None:
    async with make_client({"routes": []}) as client:
        assert (await client.get("/")).json()["routes"] == []
        assert "No mock routes configured." in (await client.get("/__mockforge/")).text


@pytest.mark.parametrize(
    "routes",
    [
        [{"method": "GET", "path": "/", "body": {"mock": True}}],
        [{"method": "GET", "path": "/{rest:path}", "body": {"mock": True}}],
    ],
)
async def test_a_mock_route_claiming_get_root_wins(routes: list[dict[str, Any]]) -> None:
    async with make_client({"routes": routes}) as client:
        for accept in ("*/*", BROWSER_ACCEPT):
            r = await client.get("/", headers={"Accept": accept})
            assert r.status_code == 200 and r.json() == {"mock": True}


async def test_other_methods_on_root_stay_with_the_mocks() -> None:
    # No mock route at `/`: POST / is a plain unmatched request (404), as before.
    async with make_client() as client:
        r = await client.post("/")
        assert r.status_code == 404
        assert r.json()["error"] == "no mock route matches POST /"
    # A POST-only mock at `/`: POST goes to it, GET still gets the index, DELETE gets the 405
    # listing both (GET because the index answers it).
    async with make_client(
        {"routes": [{"method": "POST", "path": "/", "status": 201, "body": "made"}]}
    ) as client:
        assert (await client.post("/")).text == "made"
        assert (await client.get("/")).json()["routes"][0]["path"] == "/"
        r = await client.delete("/")
        assert r.status_code == 405
        assert r.json() == {
            "error": "no mock route matches DELETE /",
            "allowed": ["GET", "POST"],
            "closest": "POST /",
        }
        assert r.headers["allow"] == "GET, HEAD, POST"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("application/xhtml+xml", True),
        ("*/*", False),
        ("", False),
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0.9, application/json;q=0.5", True),
        ("text/html;q=0", False),
        ("TEXT/HTML; Q=1", True),
        ("text/html;q=bogus", False),
    ],
)
def test_wants_html(accept: str, expected: bool) -> None:
    assert wants_html(accept) is expected


async def test_analytics_records_the_hop_at_root_but_not_the_index_page() -> None:
    analytics = AnalyticsLike()
    async with make_client(plugins={"analytics": analytics}) as client:
        r = await client.get("/", headers={"Accept": BROWSER_ACCEPT}, follow_redirects=True)
        assert r.status_code == 200 and r.url.path == "/__mockforge/"
        await client.get("/__mockforge/plugins.json")
    # The index page itself (/__mockforge/, excluded by default) is not recorded; the 303 at `/`
    # is one unmatched request, as the 404 at `/` was before the index existed.
    assert [(c.method, c.path, c.status_code, c.mock_route_id) for c in analytics.sink.items] == [
        ("GET", "/", 303, "")
    ]


# --- wrong method on a mock path ------------------------------------------------------------


async def test_wrong_method_on_a_mock_path_gets_json_405() -> None:
    config = {"routes": [{"method": "GET", "path": "/api/users/{id}", "body": {"id": "{id}"}}]}
    async with make_client(config) as client:
        r = await client.delete("/api/users/1")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "error": "no mock route matches DELETE /api/users/1",
        "allowed": ["GET"],
        "closest": "GET /api/users/{id}",
    }
    assert r.headers["allow"] == "GET, HEAD"


async def test_405_lists_every_mock_method_of_the_path_and_names_the_closest() -> None:
    async with make_client() as client:
        r = await client.put("/api/users/7")
        assert r.status_code == 405
        assert r.json()["allowed"] == ["DELETE", "GET"]
        assert r.json()["closest"] in ("GET /api/users/{id}", "DELETE /api/users/{id}")
        assert r.headers["allow"] == "DELETE, GET, HEAD"
        r = await client.get("/api/users")
        assert r.status_code == 405 and r.json()["allowed"] == ["POST"] and r.headers["allow"] == "POST"
        assert r.json()["closest"] == "POST /api/users"
        # matching methods still work; a path no mock has is still a 404
        assert (await client.delete("/api/users/7")).status_code == 204
        assert (await client.patch("/nothing")).status_code == 404


async def test_405_is_an_unmatched_call_for_plugins_and_metrics() -> None:
    analytics = AnalyticsLike()
    spy = ScopeSpyPlugin()
    seen = spy.seen

    async with make_client(plugins={"analytics": analytics, "spy": spy}) as client:
        assert (await client.put("/api/users/3")).status_code == 405
        text = (await client.get("/metrics")).text
    assert seen[0] == {
        "matched": False,
        "route_template": None,
        "route_id": None,
        "workspace": "team-a",
        "environment": "staging",
        "injected_latency_ms": 0.0,
        "fault_injected": False,
    }
    (captured,) = [c for c in analytics.sink.items if c.path == "/api/users/3"]
    assert (captured.method, captured.status_code, captured.mock_route_id) == ("PUT", 405, "")
    assert (captured.workspace_id, captured.environment) == ("team-a", "staging")
    assert captured.error_type == ""
    statuses = [
        s.labels
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mockforge_requests_by_path_total" and s.labels["status"] == "405"
    ]
    assert statuses == [{"protocol": "http", "method": "PUT", "path": "/api/users/{id}", "status": "405"}]


async def test_plugin_routes_keep_starlettes_405() -> None:
    async with make_client() as client:
        r = await client.post("/__mockforge/plugins.json")
    assert r.status_code == 405 and r.text == "Method Not Allowed"


# --- `raise:` routes log one line -------------------------------------------------------------


async def test_raise_route_still_propagates_to_plugin_middleware() -> None:
    analytics = AnalyticsLike()
    async with make_client(plugins={"analytics": analytics}) as client:
        r = await client.get("/boom")
        text = (await client.get("/metrics")).text
    assert r.status_code == 500
    (captured,) = [c for c in analytics.sink.items if c.path == "/boom"]
    assert (captured.status_code, captured.error_type, captured.error_message) == (
        500,
        "RuntimeError",
        "kaboom",
    )
    assert captured.mock_route_id == "GET /boom"
    assert 'mockforge_errors_total{error_type="exception",protocol="http"} 1.0' in text


def test_injected_errors_are_marked_runtime_errors() -> None:
    exc = injected_error("kaboom", "GET /boom")
    assert type(exc) is RuntimeError and str(exc) == "kaboom"
    assert injected_route_id(exc) == "GET /boom"
    assert injected_route_id(RuntimeError("kaboom")) is None
    assert injected_route_id(None) is None
    assert injected_route_id(ExceptionGroup("g", [exc, injected_error("x", "GET /x")])) == "GET /boom"
    assert injected_route_id(ExceptionGroup("g", [exc, ValueError("real")])) is None


def test_log_filter_shortens_only_injected_errors() -> None:
    def record_for(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            info = sys.exc_info()
        return logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application\n", (), info
        )

    flt = InjectedErrorLogFilter()
    injected = record_for(injected_error("multi\nline", "GET /boom"))
    assert flt.filter(injected) is True
    assert injected.exc_info is None
    message = logging.Formatter().format(injected)
    assert message == (
        "Exception in ASGI application: mock route 'GET /boom' raised RuntimeError('multi\\nline') "
        "as configured by its `raise:` key (traceback omitted)"
    )
    real = record_for(ValueError("a real bug"))
    assert flt.filter(real) is True
    assert real.exc_info is not None and "Traceback" in logging.Formatter().format(real)


async def test_uvicorn_logs_one_line_for_raise_routes_and_a_traceback_for_real_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = build_app({**CONFIG, "plugins": {"exploder": {}}}, plugins={"exploder": Exploder()})
    # log_config=None: leave the test process's logging alone (records reach caplog).
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/boom")).status_code == 500
            assert (await client.get("/explode")).status_code == 500
            assert (await client.get("/boom")).status_code == 500
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
    errors = [r for r in caplog.records if r.name == "uvicorn.error" and r.levelno >= logging.ERROR]
    assert len(errors) == 3
    boom = [r for r in errors if "kaboom" in r.getMessage()]
    assert len(boom) == 2
    for record in boom:
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert "mock route 'GET /boom' raised RuntimeError('kaboom')" in record.getMessage()
    (real,) = [r for r in errors if r not in boom]
    assert real.exc_info is not None and isinstance(real.exc_info[1], ValueError)


EXPLODER_MODULE = """
import pluggy
from starlette.routing import Route

hookimpl = pluggy.HookimplMarker("mockforge")


async def explode(request):
    raise ValueError("a real bug")


@hookimpl
def mockforge_routes(host):
    return [Route("/explode", explode, methods=["GET"])]
"""


@pytest.mark.slow
def test_served_host_stderr_has_one_line_per_raise_and_a_traceback_for_real_errors(tmp_path: Path) -> None:
    (tmp_path / "host_exploder.py").write_text(EXPLODER_MODULE)
    env = {"PYTHONPATH": str(tmp_path), "MOCKFORGE_EXTRA_PLUGINS": "exploder=host_exploder"}
    config = write_config(tmp_path, {**CONFIG, "plugins": {"exploder": {}}})
    with run_host(config, env=env) as host:
        for _ in range(3):
            assert httpx.get(host.url + "/boom").status_code == 500
        assert httpx.get(host.url + "/explode").status_code == 500
        assert host.stop() == 0
    err = host.stderr()
    boom_lines = [line for line in err.splitlines() if "kaboom" in line]
    assert len(boom_lines) == 3, err
    assert all("mock route 'GET /boom' raised RuntimeError('kaboom')" in line for line in boom_lines)
    assert err.count("Traceback") == 1, err
    assert "ValueError: a real bug" in err

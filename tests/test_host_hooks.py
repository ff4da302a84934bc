"""The hook contract: every hook documented and exercised, enablement, clashes, no globals."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest
from example_host.app import build_app
from example_host.context import HostContext
from example_host.plugins import PluginError, discover_plugins, load_plugins
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from example_host import hookspecs

# A plugin makes its own marker: it never imports example_host.
hookimpl = pluggy.HookimplMarker("mockforge")

HOOK_NAMES = sorted(n for n in dir(hookspecs) if n.startswith("mockforge_"))


class Recorder:
    """A test plugin implementing every hook and recording each call in order."""

    def __init__(self, name: str, log: list[tuple[str, str]], touch: Path | None = None) -> None:
        self.name = name
        self.log = log
        self.touch = touch  # a file it would create when configured (to prove "no trace")
        self.hosts: list[HostContext] = []

    @hookimpl
    def mockforge_configure(self, host: HostContext, config: dict[str, Any]) -> None:
        self.log.append((self.name, "configure"))
        self.hosts.append(host)
        section = host.plugin_config(self.name) or {}
        if "limit" in section and not isinstance(section["limit"], int):
            raise ValueError(f"limit: must be an integer, got {section['limit']!r}")
        host.state[self.name] = {"configured": True, "config_keys": sorted(config)}
        if self.touch is not None:
            self.touch.write_text("configured")

    @hookimpl
    def mockforge_middleware(self, host: HostContext) -> list[Middleware]:
        self.log.append((self.name, "middleware"))
        return [Middleware(_Tag, name=self.name, log=self.log)]

    @hookimpl
    def mockforge_routes(self, host: HostContext) -> list[Any]:
        self.log.append((self.name, "routes"))

        async def hello(request: Request) -> PlainTextResponse:
            return PlainTextResponse(f"hello from {self.name}")

        return [Mount(f"/{self.name}", routes=[Route("/hello", hello)])]

    @hookimpl
    def mockforge_lifespan(self, host: HostContext, app: Any) -> contextlib.AbstractAsyncContextManager[None]:
        self.log.append((self.name, "lifespan"))

        @contextlib.asynccontextmanager
        async def running() -> AsyncIterator[None]:
            self.log.append((self.name, "enter"))
            try:
                yield
            finally:
                self.log.append((self.name, "exit"))

        return running()

    @hookimpl
    def mockforge_links(self, host: HostContext) -> list[dict[str, str]]:
        self.log.append((self.name, "links"))
        return [{"title": f"<{self.name}> & co", "href": f"/{self.name}/hello?a=1&b=<2>"}]


class _Tag:
    """Middleware that logs the order in which plugin middleware sees a request."""

    def __init__(self, app: Any, name: str, log: list[tuple[str, str]]) -> None:
        self.app, self.name, self.log = app, name, log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.log.append((self.name, f"request {scope['path']}"))
        await self.app(scope, receive, send)


CONFIG: dict[str, Any] = {
    "routes": [{"method": "GET", "path": "/api/ping", "body": "pong"}],
    "plugins": {"first": {}, "second": {"enabled": True}},
}


def client_for(app: Any) -> httpx.AsyncClient:
    """An in-process client."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_every_hookspec_is_documented_pytest_style() -> None:
    assert HOOK_NAMES == [
        "mockforge_configure",
        "mockforge_lifespan",
        "mockforge_links",
        "mockforge_middleware",
        "mockforge_routes",
    ]
    for name in HOOK_NAMES:
        spec = getattr(hookspecs, name)
        doc = inspect.getdoc(spec) or ""
        assert len(doc.splitlines()) >= 4, name
        assert ":param host:" in doc, name
        assert ":return:" in doc, name
        assert "Fires" in doc, name
        assert not spec.mockforge_spec.get("firstresult"), name
        assert next(iter(inspect.signature(spec).parameters)) == "host"
    assert 'scope["mockforge"]' in (hookspecs.__doc__ or "")


async def test_every_hook_is_called_in_order_and_lifespans_exit_in_reverse() -> None:
    log: list[tuple[str, str]] = []
    first, second = Recorder("first", log), Recorder("second", log)
    app = build_app(CONFIG, plugins={"first": first, "second": second})
    build_calls = [entry for entry in log]
    # configure once per plugin before anything else; routes before middleware before links.
    assert [c for _, c in build_calls].count("configure") == 2
    assert {c for _, c in build_calls[:2]} == {"configure"}
    kinds = [c for _, c in build_calls]
    assert kinds.index("routes") < kinds.index("middleware") < kinds.index("links")
    log.clear()
    async with app.router.lifespan_context(app), client_for(app) as client:
        # Hooks are collected in hook-call order (last registered first), then entered in that order.
        assert log == [("second", "lifespan"), ("first", "lifespan"), ("second", "enter"), ("first", "enter")]
        log.clear()
        r = await client.get("/first/hello")
        assert r.text == "hello from first"
        assert (await client.get("/api/ping")).text == "pong"
        # Middleware in hook-call order, the first entry outermost.
        assert log == [
            ("second", "request /first/hello"),
            ("first", "request /first/hello"),
            ("second", "request /api/ping"),
            ("first", "request /api/ping"),
        ]
        log.clear()
    assert log == [("first", "exit"), ("second", "exit")]
    called = {c for _, c in build_calls} | {"lifespan"}
    exercised = {f"mockforge_{c}" for c in called}
    assert exercised == set(HOOK_NAMES)


async def test_host_context_carries_config_paths_and_listen_address(tmp_path: Path) -> None:
    log: list[tuple[str, str]] = []
    rec = Recorder("first", log)
    config_path = tmp_path / "host.yaml"
    config = {**CONFIG, "workspace": "ws", "environment": "qa", "plugins": {"first": {"limit": 3}}}
    build_app(
        config, plugins={"first": rec}, config_path=config_path, listen_host="0.0.0.0", listen_port=9123
    )
    host = rec.hosts[0]
    assert host.config is config or host.config == config
    assert host.config_path == config_path.resolve()
    assert host.data_dir == tmp_path.resolve()
    assert (host.listen_host, host.listen_port, host.loopback_only) == ("0.0.0.0", 9123, False)
    assert (host.workspace, host.environment) == ("ws", "qa")
    assert host.plugin_config("first") == {"limit": 3}
    assert host.plugin_config("absent") is None
    assert host.state["first"] == {
        "configured": True,
        "config_keys": ["environment", "plugins", "routes", "workspace"],
    }
    assert host.version == "0.1.0"
    assert host.resolve_path("a.db") == tmp_path.resolve() / "a.db"


async def test_two_hosts_in_one_process_share_nothing() -> None:
    log: list[tuple[str, str]] = []
    a_rec, b_rec = Recorder("first", log), Recorder("first", log)
    app_a = build_app({**CONFIG, "plugins": {"first": {}}}, plugins={"first": a_rec})
    app_b = build_app({**CONFIG, "plugins": {"first": {}}}, plugins={"first": b_rec})
    assert app_a.state.plugin_manager is not app_b.state.plugin_manager
    assert app_a.state.host.state["metrics"].registry is not app_b.state.host.state["metrics"].registry
    async with client_for(app_a) as a, client_for(app_b) as b:
        for _ in range(3):
            await a.get("/api/ping")
        await b.get("/api/ping")
        text_a, text_b = (await a.get("/metrics")).text, (await b.get("/metrics")).text
    line = 'mockforge_requests_by_path_total{method="GET",path="/api/ping",protocol="http",status="200"}'
    assert f"{line} 3.0" in text_a
    assert f"{line} 1.0" in text_b


@pytest.mark.parametrize("section", [None, {"enabled": False}])
async def test_disabled_or_absent_plugin_leaves_no_trace(tmp_path: Path, section: Any) -> None:
    log: list[tuple[str, str]] = []
    touch = tmp_path / "would-be-created.db"
    rec = Recorder("first", log, touch=touch)
    config = {**CONFIG, "plugins": {} if section is None else {"first": section}}
    app = build_app(config, plugins={"first": rec})
    async with app.router.lifespan_context(app), client_for(app) as client:
        assert (await client.get("/first/hello")).status_code == 404
        assert (await client.get("/api/ping")).text == "pong"
        doc = (await client.get("/__mockforge/plugins.json")).json()
    assert log == []  # no hook ran: no configure, middleware, routes, lifespan or links
    assert not touch.exists()
    assert not app.state.plugin_manager.is_registered(rec)
    entry = next(p for p in doc["plugins"] if p["name"] == "first")
    assert entry["enabled"] is False and entry["links"] == []


def test_enabled_plugin_with_empty_section_runs() -> None:
    log: list[tuple[str, str]] = []
    build_app({**CONFIG, "plugins": {"first": None}}, plugins={"first": Recorder("first", log)})
    assert ("first", "configure") in log


def test_plugin_named_in_config_but_not_installed() -> None:
    with pytest.raises(PluginError) as err:
        build_app({**CONFIG, "plugins": {"nosuch": {}}}, plugins={"first": Recorder("first", [])})
    assert str(err.value) == "plugin 'nosuch' is named in config but not installed (installed: first)"


def test_configure_error_names_the_plugin_and_key() -> None:
    rec = Recorder("first", [])
    with pytest.raises(PluginError) as err:
        build_app({**CONFIG, "plugins": {"first": {"limit": "ten"}}}, plugins={"first": rec})
    assert str(err.value) == "plugin 'first': limit: must be an integer, got 'ten'"


def test_plugin_mount_clashing_with_a_mock_route_stops_startup() -> None:
    config = {
        "routes": [{"method": "GET", "path": "/first/report", "body": "x"}],
        "plugins": {"first": {}},
    }
    with pytest.raises(PluginError) as err:
        build_app(config, plugins={"first": Recorder("first", [])})
    assert str(err.value) == (
        "plugin 'first': its route /first clashes with mock route 'GET /first/report' (routes[0])"
    )
    with pytest.raises(PluginError, match="its route /metrics clashes with mock route 'GET /metrics'"):
        build_app({"routes": [{"method": "GET", "path": "/metrics"}]}, plugins={})


def test_misspelled_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def mockforge_rotues(self, host: Any) -> list[Any]:
            return []

    with pytest.raises(PluginError, match=r"plugin 'typo'.*mockforge_rotues"):
        build_app({"plugins": {"typo": {}}}, plugins={"typo": Typo()})


def test_builtin_names_cannot_be_configured() -> None:
    with pytest.raises(PluginError, match="plugin 'metrics': built in"):
        build_app({"plugins": {"metrics": {}}}, plugins={})


async def test_index_page_escapes_links() -> None:
    app = build_app({**CONFIG, "plugins": {"first": {}}}, plugins={"first": Recorder("first", [])})
    async with client_for(app) as client:
        page = (await client.get("/__mockforge/")).text
        doc = (await client.get("/__mockforge/plugins.json")).json()
    assert "&lt;first&gt; &amp; co" in page
    assert 'href="/first/hello?a=1&amp;b=&lt;2&gt;"' in page
    assert "<first>" not in page
    first = next(p for p in doc["plugins"] if p["name"] == "first")
    assert first["links"] == [{"title": "<first> & co", "href": "/first/hello?a=1&b=<2>"}]
    assert first["hooks"] == HOOK_NAMES


def test_entry_point_discovery_finds_the_installed_analytics_plugin_without_loading_it() -> None:
    found = {c.name: c for c in discover_plugins(env={})}
    assert "analytics" in found
    assert found["analytics"].obj is None
    pm, infos = load_plugins({}, env={})
    analytics = next(i for i in infos if i.name == "analytics")
    assert analytics.enabled is False and analytics.version == "0.1.0"
    assert [p for p in pm.get_plugins() if pm.get_name(p) == "analytics"] == []


def test_extra_plugins_env_registers_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "extra_mod.py").write_text(
        "import pluggy\nhookimpl = pluggy.HookimplMarker('mockforge')\n__version__ = '1.2.3'\n"
        "@hookimpl\ndef mockforge_links(host):\n    return [{'title': 'x', 'href': '/x'}]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {"MOCKFORGE_EXTRA_PLUGINS": "extra=extra_mod"}
    _, infos = load_plugins({"extra": {}}, env=env)
    extra = next(i for i in infos if i.name == "extra")
    assert (extra.enabled, extra.version, extra.hooks) == (True, "1.2.3", ["mockforge_links"])

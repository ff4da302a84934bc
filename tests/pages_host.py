"""An in-process host for the page tests: mock routes, the real capture middleware, recorder and store.

Requests go through :class:`CaptureMiddleware` into a :class:`Recorder`; :meth:`PagesHost.flush`
writes the recorder's snapshot to a real SQLite file, as the flush task does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from mockforge_analytics_plugin.api import api_routes
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.middleware import CaptureMiddleware
from mockforge_analytics_plugin.pages import page_routes
from mockforge_analytics_plugin.recorder import Recorder
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

EVIL_PATH = "/<script>alert(1)</script>"
EVIL_UA = '<img src=x onerror="alert(2)">'
EVIL_CLIENT = "<b>client</b>"


async def _user(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["id"]})


async def _boom(request: Request) -> PlainTextResponse:
    return PlainTextResponse("boom", status_code=500)


async def _missing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("no mock here", status_code=404)


@dataclass
class PagesHost:
    """The host app, its runtime and an HTTP client bound to it."""

    app: Starlette
    runtime: Any
    client: httpx.AsyncClient
    mount: str

    async def flush(self) -> None:
        """Write what the recorder holds to the store (the flush task's job)."""
        await self.runtime.store.write_snapshot(self.runtime.recorder.swap(), now=time.time())

    async def page(self, path: str, **params: str) -> httpx.Response:
        """GET a page under the mount."""
        return await self.client.get(self.mount + path, params=params or None)

    async def close(self) -> None:
        """Close the client and the store."""
        await self.client.aclose()
        await self.runtime.store.close()


async def make_host(tmp_path: Path, mount: str = "/analytics") -> PagesHost:
    """A host with mock routes /api/users/{id}, /boom (500) and a 404 catch-all, plus the pages."""
    config = AnalyticsConfig(mount_path=mount, client_id_header="X-Client-Id")
    recorder = Recorder(config, "test:1")
    store = await SQLiteStore.open(tmp_path / "analytics.db")
    runtime = SimpleNamespace(config=config, recorder=recorder, store=store, clock=time.time, version="9.9")
    sub = Starlette(routes=[*page_routes(), Mount("/api", routes=api_routes())])
    sub.state.runtime = runtime
    app = Starlette(
        routes=[
            Mount(mount, app=sub),
            Route("/api/users/{id}", _user),
            Route("/boom", _boom),
            Route("/{path:path}", _missing),
        ],
        middleware=[Middleware(CaptureMiddleware, recorder=recorder, config=config, mount_path=mount)],
    )
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    return PagesHost(app, runtime, client, mount)


async def send_known_traffic(host: PagesHost) -> None:
    """10 x GET /api/users/{id} (200), 2 x GET /boom (500), 1 x GET <script> path (404, hostile UA)."""
    for i in range(10):
        await host.client.get(f"/api/users/{i}", headers={"X-Client-Id": "alice", "User-Agent": "curl/8"})
    for _ in range(2):
        await host.client.get("/boom", headers={"X-Client-Id": "bob", "User-Agent": "pytest"})
    await host.client.get(EVIL_PATH, headers={"X-Client-Id": EVIL_CLIENT, "User-Agent": EVIL_UA})

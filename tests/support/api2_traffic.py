"""Known traffic for the part-2 API tests: a real Recorder, flushed into a real SQLite store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from mockforge_analytics_plugin.app import all_api_routes
from mockforge_analytics_plugin.capture_types import CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.recorder import Recorder
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

# Wednesday 2024-01-03 12:30:00 UTC (2024-01-01 was a Monday).
NOW = 1704285000.0
CURL = "curl/8.4.0"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


@dataclass
class FakeRuntime:
    """What the handlers read from `app.state.runtime`."""

    config: AnalyticsConfig
    recorder: Recorder
    store: Any
    clock: Callable[[], float]
    instance: str = "test:1"
    retention: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def req(
    ts: float, method: str, endpoint: str, status: int, ms: float, client: str, ua: str, run: str, **kw: Any
) -> CapturedRequest:
    """One captured request with 100 bytes out and 10 in."""
    return CapturedRequest(
        timestamp=ts, protocol=kw.pop("protocol", "http"), method=method, endpoint=endpoint,
        path=kw.pop("path", endpoint.replace("{id}", "7")), status_code=status, duration_ms=ms,
        bytes_sent=100, bytes_received=10, client_id=client, user_agent=ua, test_run=run,
        workspace_id=kw.pop("workspace_id", "default"), environment=kw.pop("environment", "dev"), **kw,
    )  # fmt: skip


def known_traffic() -> list[CapturedRequest]:
    """12 requests: 11 in the last hour before NOW, 1 two hours earlier; oldest first."""
    a = ("10.0.0.1", CURL, "run-a")
    b = ("10.0.0.2", FIREFOX, "run-b")
    out = [req(NOW - 7200, "GET", "/api/users", 500, 50.0, *a, error_type="HTTP 500")]
    out += [req(NOW - 600 + i, "GET", "/api/users", 200, 10.0, *a) for i in range(3)]
    out += [
        req(NOW - 500 + i, "GET", "/api/users/{id}", 404, 20.0, *a, trace_id=f"t{i + 1}", span_id=f"s{i + 1}")
        for i in range(2)
    ]
    out.append(req(NOW - 400, "POST", "/api/orders", 500, 40.0, *b, error_type="ZeroDivisionError",
                   error_message="division by zero", trace_id="t3", span_id="s3"))  # fmt: skip
    out += [req(NOW - 300 + i, "GET", "/api/users", 200, 30.0, *b) for i in range(4)]
    out.append(req(NOW - 200, "GET", "/api/users", 503, 60.0, *b, environment="staging"))
    return out


async def open_store(tmp_path: Path, name: str = "a.db") -> SQLiteStore:
    """A real store file with the migrations applied."""
    return await SQLiteStore.open(tmp_path / name)


async def record_and_flush(recorder: Recorder, store: SQLiteStore, requests: list[CapturedRequest]) -> None:
    """Record the requests, then write the recorder's snapshot in one flush."""
    for r in requests:
        recorder.record(r)
    await store.write_snapshot(recorder.swap(), NOW)


def make_app(runtime: FakeRuntime) -> Starlette:
    """Every API route under /analytics/api, exactly as the plugin mounts them."""
    sub = Starlette(routes=[Mount("/api", routes=all_api_routes())])
    sub.state.runtime = runtime
    return Starlette(routes=[Mount("/analytics", app=sub)])


@contextlib.asynccontextmanager
async def api_client(
    tmp_path: Path,
    requests: list[CapturedRequest] | None = None,
    config: AnalyticsConfig | None = None,
    now: float = NOW,
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeRuntime]]:
    """An httpx client on the part-2 app over a store holding ``requests`` (default: known_traffic)."""
    config = config or AnalyticsConfig()
    store = await open_store(tmp_path)
    recorder = Recorder(config, "test:1")
    await record_and_flush(recorder, store, known_traffic() if requests is None else requests)
    runtime = FakeRuntime(config=config, recorder=recorder, store=store, clock=lambda: now)
    transport = httpx.ASGITransport(app=make_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client, runtime
    finally:
        await store.close()

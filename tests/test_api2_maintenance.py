"""POST retention/run and POST reset on the real runtime: what they delete, exactly."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from support.api2_traffic import CURL, req

from mockforge_analytics_plugin.standalone import install_analytics

DAY = 86400


def _setup(tmp_path):
    async def hello(request):
        return PlainTextResponse("hi", status_code=int(request.query_params.get("status", "200")))

    app = Starlette(routes=[Route("/hello", hello)])
    # A long flush interval: the test flushes by hand, so nothing happens behind its back.
    runtime = install_analytics(app, database_path=tmp_path / "a.db", flush_interval_seconds=3600)
    return app, runtime


@asynccontextmanager
async def _running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan started (the plugin's tasks run), and a client for it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def _counts(db) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


async def test_retention_run_deletes_what_is_past_its_limit(tmp_path):
    app, runtime = _setup(tmp_path)
    async with _running(app) as client:
        # The retention task also runs once at start-up: let it finish before adding old data.
        deadline = time.monotonic() + 5
        while runtime.retention.runs < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        old = time.time() - 10 * DAY  # past the 7-day limit of minute rows and error events
        runtime.recorder.record(req(old, "GET", "/old", 500, 5.0, "10.0.0.9", CURL, ""))
        for status in (200, 500):
            await client.get(f"/hello?status={status}")
        await runtime.flusher.flush_once()
        before = (await client.get("/analytics/api/errors?duration=1000000")).json()["data"]
        assert before["total_events"] == 2  # the old 500 and the new one
        r = await client.post("/analytics/api/retention/run")
        assert r.status_code == 200, r.text
        deleted = r.json()["data"]["deleted"]
        assert deleted["metrics_aggregates_minute"] == 1 and deleted["error_events"] == 1
        assert r.json()["data"]["total"] == sum(deleted.values())
        after = (await client.get("/analytics/api/errors?duration=1000000")).json()["data"]
        assert after["total_events"] == 1
        assert {e["endpoint"] for e in after["events"]} == {"/hello"}
        again = (await client.post("/analytics/api/retention/run")).json()["data"]
        assert again["deleted"]["metrics_aggregates_minute"] == 0 and again["deleted"]["error_events"] == 0


async def test_reset_deletes_everything_and_clears_the_recorder(tmp_path):
    app, runtime = _setup(tmp_path)
    db = tmp_path / "a.db"
    async with _running(app) as client:
        for status in (200, 404, 500):
            await client.get(f"/hello?status={status}")
        await runtime.flusher.flush_once()
        await client.get("/hello")  # buffered in the recorder, not yet flushed
        assert runtime.recorder.buffered_requests() == 1
        assert (await client.get("/analytics/api/overview")).json()["data"]["total_requests"] == 3
        r = await client.post("/analytics/api/reset", params=None)
        assert r.status_code == 200, r.text
        deleted = r.json()["data"]["deleted"]
        assert deleted["metrics_aggregates_minute"] >= 1 and deleted["error_events"] == 2
        assert deleted["series"] >= 1 and deleted["client_analytics"] == 1
        assert runtime.recorder.buffered_requests() == 0
        assert (await client.get("/analytics/api/recent-requests")).json()["data"]["count"] == 0
        await runtime.flusher.flush_once()  # nothing from before the reset comes back
        assert (await client.get("/analytics/api/overview")).json()["data"]["total_requests"] == 0
        # New traffic is recorded normally after a reset.
        await client.get("/hello")
        await runtime.flusher.flush_once()
        assert (await client.get("/analytics/api/overview")).json()["data"]["total_requests"] == 1
        assert (await client.post("/analytics/api/reset?all=1")).status_code == 400
    counts = _counts(db)
    assert counts["metrics_aggregates_minute"] == 1 and counts["error_events"] == 0
    assert counts["schema_migrations"] >= 1  # the schema bookkeeping survives

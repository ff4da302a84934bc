"""Review: GET <mount>/api/status shows every background task's failures, and refuses parameters."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mockforge_analytics_plugin.standalone import install_analytics


def _app(tmp_path):
    async def hello(request):
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/hello", hello)])
    runtime = install_analytics(app, database_path=tmp_path / "a.db", flush_interval_seconds=3600)
    return app, runtime


def test_status_shows_rollup_and_retention_failures(tmp_path):
    app, runtime = _app(tmp_path)
    with TestClient(app) as client:
        deadline = time.monotonic() + 5
        while (runtime.rollup.runs < 1 or runtime.retention.runs < 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        runtime.rollup.failures, runtime.rollup.last_error = 3, "OperationalError: database is locked"
        runtime.retention.failures, runtime.retention.last_error = 1, "OperationalError: disk I/O error"
        r = client.get("/analytics/api/status")
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["rollup"]["failures"] == 3 and "locked" in data["rollup"]["last_error"]
        assert data["rollup"]["runs"] >= 1
        assert data["retention"]["failures"] == 1 and "disk I/O" in data["retention"]["last_error"]
        assert data["prometheus"] is None  # no prometheus_url configured
        assert data["flush"]["failures"] == 0


def test_status_names_an_unknown_parameter(tmp_path):
    app, _ = _app(tmp_path)
    with TestClient(app) as client:
        r = client.get("/analytics/api/status?verbose=1")
        assert r.status_code == 400
        body = r.json()
        assert body["success"] is False and body["error"].startswith("verbose:")


async def test_a_failed_start_stops_what_it_started(tmp_path, monkeypatch):
    import asyncio
    import threading

    import pytest

    from mockforge_analytics_plugin import retention as retention_module
    from mockforge_analytics_plugin.config import AnalyticsConfig
    from mockforge_analytics_plugin.runtime import Runtime

    def broken(*args, **kwargs):
        raise RuntimeError("retention could not start")

    monkeypatch.setattr(retention_module, "Retention", broken)
    threads = threading.active_count()
    runtime = Runtime(AnalyticsConfig(database_path=str(tmp_path / "a.db")), "me:1")
    with pytest.raises(RuntimeError, match="could not start"):
        await runtime.start()
    assert runtime.store is None and not runtime._tasks  # store closed, no task left running
    for _ in range(100):  # a closed aiosqlite connection's thread ends just after close()
        if threading.active_count() == threads:
            break
        await asyncio.sleep(0.01)
    assert threading.active_count() == threads, [t.name for t in threading.enumerate()]

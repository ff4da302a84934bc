"""A million-row export streams: the process does not grow by more than ~50 MB while it runs."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time

import pytest
from query_testdata import DAY0, NOW, FakeRecorder, FakeRuntime
from starlette.applications import Starlette
from starlette.routing import Mount

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.api import api_routes
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.snapshot import DropCounters
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

SERIES, MINUTES = 1000, 1000  # 1,000,000 minute rows


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fill(path) -> None:
    """Build the rows straight in SQL (one statement, one transaction)."""
    blob = histogram.encode({300: 5, 350: 3, 420: 1})
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO series (series_id, source, instance, protocol, method, endpoint, status_code,"
            " workspace_id, environment, test_run, created_at)"
            " SELECT i + 1, 'middleware', 'a:1', 'http', 'GET', '/e/' || i, 200, '', '', '', 0 FROM n",
            (SERIES - 1,),
        )
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO metrics_aggregates_minute (timestamp, series_id, request_count, error_count,"
            " latency_count, latency_sum, latency_min, latency_max, histogram, created_at, updated_at)"
            # No latency_p50/p95/p99: minute rows store none, the export computes them.
            " SELECT ? + n.i * 60, s.series_id, 9, 1, 9, 90.0, 1.0, 30.0, ?, 0, 0"
            " FROM n CROSS JOIN series AS s",
            (MINUTES - 1, DAY0, blob),
        )
    db.close()


@pytest.mark.slow
async def test_million_row_csv_export_streams_with_flat_memory(tmp_path):
    path = tmp_path / "big.db"
    store = await SQLiteStore.open(path)
    await store.close()
    fill(path)
    store = await SQLiteStore.open(path)
    app = Starlette(routes=[Mount("/analytics/api", routes=api_routes())])
    app.state.runtime = FakeRuntime(AnalyticsConfig(), store, FakeRecorder({}, DropCounters()), lambda: NOW)
    query = f"start_time={DAY0}&end_time={DAY0 + MINUTES * 60}&granularity=minute".encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/analytics/api/export/csv", "raw_path": b"/analytics/api/export/csv", "root_path": "",
        "query_string": query, "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip
    seen = {"status": None, "lines": 0, "bytes": 0, "peak": 0, "chunks": 0}
    baseline = rss_bytes()

    requested = asyncio.Event()

    async def receive():
        # The request body once; then wait like a connected client (Starlette listens for a disconnect).
        if not requested.is_set():
            requested.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()

    async def send(message):
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            seen["lines"] += body.count(b"\r\n")
            seen["bytes"] += len(body)
            seen["chunks"] += 1
            if seen["chunks"] % 20 == 0:
                seen["peak"] = max(seen["peak"], rss_bytes())

    started = time.perf_counter()
    try:
        await app(scope, receive, send)
    finally:
        await store.close()
    elapsed = time.perf_counter() - started
    growth = (max(seen["peak"], rss_bytes()) - baseline) / 2**20
    size = seen["bytes"] / 2**20
    print(f"\n1M-row CSV export: {elapsed:.1f} s, {size:.0f} MiB, RSS growth {growth:.1f} MiB")
    assert seen["status"] == 200
    assert seen["lines"] == SERIES * MINUTES + 1  # header + every row, no limit
    assert growth < 50, f"RSS grew by {growth:.1f} MiB"

"""Exported minute rows show p50/p95/p99 although minute rows store none (computed from the histogram).

The same traffic written in one flush and spread over many flushes (so each minute row holds one
histogram segment per flush) must export the same rows, number for number, and the percentile
routes (which read the concatenated blobs with numpy) must answer the same.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import pytest
from query_testdata import DAY0, HOUR, NOW, FakeRecorder, FakeRuntime, expected, make_events, snapshot_of
from starlette.applications import Starlette
from starlette.routing import Mount

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.api import api_routes
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.snapshot import DropCounters
from mockforge_analytics_plugin.store import SQLiteStore

EVENTS = [e for e in make_events(seed=11, hours=2, n=2500) if e.ts < DAY0 + 2 * HOUR]
PARTS = 9


_ROUTES = [
    ("latency", {"granularity": "minute"}),
    ("latency", {"granularity": "minute", "group_by": "endpoint"}),
    ("top-endpoints", {"sort": "p95"}),
    ("overview", {}),
]


async def _export(path: Path, flushes: list[list]) -> tuple[list[dict[str, str]], int, list]:
    store = await SQLiteStore.open(path)
    try:
        for part in flushes:
            # `now` before every minute: nothing is due for compaction, the segments stay.
            await store.write_snapshot(snapshot_of(part), now=DAY0)
        app = Starlette(routes=[Mount("/analytics/api", routes=api_routes())])
        app.state.runtime = FakeRuntime(
            AnalyticsConfig(), store, FakeRecorder({}, DropCounters()), lambda: NOW
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            window = {"start_time": DAY0, "end_time": DAY0 + 2 * HOUR}
            r = await client.get("/analytics/api/export/csv", params={**window, "granularity": "minute"})
            answers = [
                (await client.get(f"/analytics/api/{route}", params={**window, **extra})).json()["data"]
                for route, extra in _ROUTES
            ]
        assert r.status_code == 200, r.text
        stored = await store.reader.execute_fetchall(
            "SELECT histogram, latency_p50 FROM metrics_aggregates_minute"
        )
    finally:
        await store.close()
    assert stored and all(p50 is None for _, p50 in stored)  # minute rows keep no percentiles
    several = sum(1 for blob, _ in stored if blob and blob != histogram.encode(histogram.decode(blob)))
    return list(csv.DictReader(io.StringIO(r.text))), several, answers


def _without_avg(answer: object) -> object:
    if isinstance(answer, dict):
        return {k: _without_avg(v) for k, v in answer.items() if "avg" not in k}
    if isinstance(answer, list):
        return [_without_avg(v) for v in answer]
    return answer


async def test_minute_export_is_the_same_for_one_write_and_many_flushes(tmp_path: Path) -> None:
    once, compact_rows, once_answers = await _export(tmp_path / "once.db", [EVENTS])
    spread, several, spread_answers = await _export(
        tmp_path / "spread.db", [EVENTS[i::PARTS] for i in range(PARTS)]
    )
    assert compact_rows == 0 and several > 20  # the spread rows hold one segment per flush
    for (route, _), a, b in zip(_ROUTES, once_answers, spread_answers, strict=True):
        # Latency sums add up in another order (float): averages may differ in the last digit.
        assert _without_avg(a) == _without_avg(b), route
    # Same rows (series ids, hence the order within a minute, depend on the write order).
    assert sorted(spread, key=lambda r: tuple(r.values())) == sorted(once, key=lambda r: tuple(r.values()))
    with_latency = [r for r in once if r["p95_latency_ms"]]
    assert len(with_latency) > 100
    # And they are the percentiles of the raw events' histogram (within 1 % of the exact values).
    dims = (
        "protocol",
        "method",
        "endpoint",
        "status_code",
        "workspace_id",
        "environment",
        "test_run",
        "instance",
    )
    for r in with_latency[:: max(1, len(with_latency) // 40)]:
        ts = int(r["timestamp"])
        want = tuple(r[c] for c in dims)

        def same(e, want=want):
            return (e.protocol, e.method, e.endpoint, str(e.status), e.workspace_id, e.environment,
                    e.test_run, e.instance) == want  # fmt: skip

        exp = expected(EVENTS, ts, ts + 60, same)
        for column, q in (("p50_latency_ms", "p50"), ("p95_latency_ms", "p95"), ("p99_latency_ms", "p99")):
            assert float(r[column]) == pytest.approx(exp[q], abs=1e-3), (column, r)

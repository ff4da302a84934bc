"""Queries read source=middleware unless `source` is given, so pulled rows never double-count."""

from __future__ import annotations

import csv
import dataclasses
import io

from query_testdata import DAY0, HOUR, make_api, make_events

# The same traffic twice: once as captured by the middleware, once as pulled from Prometheus.
CAPTURED = make_events(seed=11, start=DAY0, hours=3, n=400)
PULLED = [dataclasses.replace(e, source="prometheus", instance="b:2") for e in CAPTURED]
EVENTS = CAPTURED + PULLED
WINDOW = {"start_time": str(DAY0), "end_time": str(DAY0 + 3 * HOUR)}


async def _total(client, **query) -> int:
    r = await client.get("/analytics/api/overview", params={**WINDOW, **query})
    assert r.status_code == 200, r.text
    return r.json()["data"]["total_requests"]


async def test_default_reads_middleware_only_and_source_selects(tmp_path):
    client, store = await make_api(tmp_path, EVENTS)
    try:
        assert await _total(client) == len(CAPTURED)
        assert await _total(client, source="prometheus") == len(PULLED)
        assert await _total(client, source="middleware,prometheus") == len(EVENTS)
        r = await client.get("/analytics/api/top-endpoints", params=WINDOW)
        assert sum(e["request_count"] for e in r.json()["data"]) == len(CAPTURED)
        r = await client.get("/analytics/api/export/csv", params={**WINDOW, "dataset": "metrics"})
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert sum(int(row["request_count"]) for row in rows) == len(CAPTURED)
    finally:
        await client.aclose()
        await store.close()

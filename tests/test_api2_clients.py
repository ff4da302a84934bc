"""GET client-analysis and recent-requests: exact figures from known traffic, with filters."""

from __future__ import annotations

import pytest
from support.api2_traffic import NOW, api_client


def _data(r):
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_client_analysis_per_client_and_test_run(tmp_path):
    async with api_client(tmp_path) as (client, _):
        data = _data(await client.get("/analytics/api/client-analysis"))
    assert data["total_clients"] == 2 and data["total_test_runs"] == 2
    assert data["start_time"] == NOW - 5400  # the hour 11:00 that the window touches
    two, one = data["clients"]  # sort=requests: 6 before 5
    assert one == {
        "client": "10.0.0.1",
        "request_count": 5,
        "error_count": 2,
        "error_rate": 40.0,
        "avg_latency_ms": 14.0,
        "bytes_sent": 500,
        "bytes_received": 50,
        "user_agent": "curl/8.4.0",
        "user_agent_family": "curl",
        "user_agent_version": "8.4.0",
        "user_agent_count": 1,
        "top_endpoints": [
            {"endpoint": "GET /api/users", "count": 3},
            {"endpoint": "GET /api/users/{id}", "count": 2},
        ],
        "first_seen": NOW - 1800,
        "last_seen": NOW - 1800,
        "test_runs": ["run-a"],
    }
    assert two["client"] == "10.0.0.2" and two["request_count"] == 6 and two["error_count"] == 2
    assert two["avg_latency_ms"] == pytest.approx((40 + 4 * 30 + 60) / 6, abs=1e-4)
    assert two["user_agent_family"] == "Firefox" and two["user_agent_version"] == "120.0"
    assert two["top_endpoints"] == [
        {"endpoint": "GET /api/users", "count": 5},
        {"endpoint": "POST /api/orders", "count": 1},
    ]
    runs = {r["test_run"]: r for r in data["test_runs"]}
    assert runs["run-a"]["request_count"] == 5 and runs["run-a"]["client_count"] == 1
    assert runs["run-b"]["request_count"] == 6 and runs["run-b"]["error_count"] == 2
    assert [r["test_run"] for r in data["test_runs"]] == ["run-b", "run-a"]


async def test_client_analysis_sort_filters_and_window(tmp_path):
    async with api_client(tmp_path) as (client, _):
        get = client.get
        by_name = _data(await get("/analytics/api/client-analysis?sort=client"))
        assert [c["client"] for c in by_name["clients"]] == ["10.0.0.1", "10.0.0.2"]
        by_rate = _data(await get("/analytics/api/client-analysis?sort=error_rate"))
        assert [c["client"] for c in by_rate["clients"]] == ["10.0.0.1", "10.0.0.2"]
        by_latency = _data(await get("/analytics/api/client-analysis?sort=avg_latency"))
        assert [c["client"] for c in by_latency["clients"]] == ["10.0.0.2", "10.0.0.1"]
        only = _data(await get("/analytics/api/client-analysis?client=10.0.0.1"))
        assert [c["client"] for c in only["clients"]] == ["10.0.0.1"]
        assert [r["test_run"] for r in only["test_runs"]] == ["run-a"]
        staging = _data(await get("/analytics/api/client-analysis?environment=staging"))
        assert [(c["client"], c["request_count"]) for c in staging["clients"]] == [("10.0.0.2", 1)]
        wide = _data(await get("/analytics/api/client-analysis?duration=10800"))
        one = next(c for c in wide["clients"] if c["client"] == "10.0.0.1")
        assert (one["request_count"], one["error_count"], one["first_seen"]) == (6, 3, NOW - 9000)
        limited = _data(await get("/analytics/api/client-analysis?limit=1"))
        assert len(limited["clients"]) == 1 and limited["total_clients"] == 2
        for query, name in [
            ("method=GET", "method"),
            ("endpoint=/x", "endpoint"),
            ("status_code=500", "status_code"),
            ("granularity=hour", "granularity"),
            ("sort=fastest", "sort"),
        ]:
            r = await get(f"/analytics/api/client-analysis?{query}")
            assert r.status_code == 400 and r.json()["error"].startswith(name + ":"), query


async def test_recent_requests_newest_first_and_filtered(tmp_path):
    async with api_client(tmp_path) as (client, _):
        get = client.get
        everything = _data(await get("/analytics/api/recent-requests"))
        assert everything["count"] == 12 and everything["capacity"] == 1000
        ts = [r["timestamp"] for r in everything["requests"]]
        assert ts == sorted(ts, reverse=True) and ts[0] == NOW - 200
        first = everything["requests"][0]
        assert (first["status_code"], first["client"], first["environment"]) == (503, "10.0.0.2", "staging")
        assert first["user_agent"].endswith("Firefox/120.0") and first["path"] == "/api/users"
        three = _data(await get("/analytics/api/recent-requests?limit=3"))
        assert [r["timestamp"] for r in three["requests"]] == [NOW - 200, NOW - 297, NOW - 298]
        notfound = _data(await get("/analytics/api/recent-requests?status_code=4xx"))
        assert [r["trace_id"] for r in notfound["requests"]] == ["t2", "t1"]
        assert _data(await get("/analytics/api/recent-requests?client=10.0.0.2"))["count"] == 6
        assert _data(await get("/analytics/api/recent-requests?duration=3600"))["count"] == 11
        assert _data(await get("/analytics/api/recent-requests?endpoint=/api/users/*"))["count"] == 2
        assert _data(await get("/analytics/api/recent-requests?method=post"))["count"] == 1
        assert _data(await get("/analytics/api/recent-requests?test_run=run-a"))["count"] == 6
        assert _data(await get("/analytics/api/recent-requests?environment=staging"))["count"] == 1
        assert _data(await get("/analytics/api/recent-requests?protocol=websocket"))["count"] == 0
        for name in ("source", "instance", "granularity"):
            r = await get(f"/analytics/api/recent-requests?{name}=x")
            assert r.status_code == 400 and r.json()["error"].startswith(name + ":")


async def test_store_closed_is_503(tmp_path):
    async with api_client(tmp_path) as (client, runtime):
        runtime.store = None
        for path in ("errors", "top-errors", "client-analysis", "traffic-patterns"):
            r = await client.get(f"/analytics/api/{path}")
            assert r.status_code == 503 and r.json()["success"] is False, path
        # The ring lives in memory: it still answers.
        assert (await client.get("/analytics/api/recent-requests")).status_code == 200


async def test_client_analysis_survives_a_malformed_endpoint_cell(tmp_path):
    async with api_client(tmp_path) as (client, runtime):
        await runtime.store.writer.execute(
            "UPDATE client_analytics SET endpoint_counts = 'not json' WHERE client_ip = '10.0.0.1'"
        )
        data = _data(await client.get("/analytics/api/client-analysis?sort=client"))
    one, two = data["clients"]
    assert one["request_count"] == 5 and one["top_endpoints"] == []
    assert two["top_endpoints"][0] == {"endpoint": "GET /api/users", "count": 5}

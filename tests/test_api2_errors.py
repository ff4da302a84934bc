"""GET errors and top-errors: exact numbers from known traffic, with filters and pagination."""

from __future__ import annotations

from support.api2_traffic import NOW, api_client


def _data(r):
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["error"] is None
    return body["data"]


async def test_errors_summary_and_events(tmp_path):
    async with api_client(tmp_path) as (client, _):
        data = _data(await client.get("/analytics/api/errors"))
    assert data["total_events"] == 4  # the 500 two hours ago is outside the default hour
    assert data["by_category"] == [
        {"error_category": "client_error", "count": 2},
        {"error_category": "server_error", "count": 2},
    ]
    summary = {(g["error_category"], g["error_type"]): g for g in data["summary"]}
    assert set(summary) == {
        ("client_error", "HTTP 404"),
        ("server_error", "ZeroDivisionError"),
        ("server_error", "HTTP 503"),
    }
    g404 = summary[("client_error", "HTTP 404")]
    assert g404["count"] == 2
    assert g404["endpoints"] == [{"endpoint": "/api/users/{id}", "count": 2}]
    assert g404["endpoint_count"] == 1
    assert g404["last_occurrence"] == NOW - 499
    assert data["summary"][0]["error_type"] == "HTTP 404"  # most frequent first
    events = data["events"]
    assert [e["status_code"] for e in events] == [503, 500, 404, 404]  # newest first
    assert [e["trace_id"] for e in events] == ["", "t3", "t2", "t1"]
    assert [e["span_id"] for e in events][1:] == ["s3", "s2", "s1"]
    zero = events[1]
    assert zero["error_message"] == "division by zero" and zero["client"] == "10.0.0.2"
    assert zero["endpoint"] == "/api/orders" and zero["method"] == "POST"
    assert zero["fault_injected"] is False
    assert data["pagination"] == {"limit": 100, "offset": 0, "total": 4, "next_offset": None}


async def test_errors_filters(tmp_path):
    async with api_client(tmp_path) as (client, _):
        get = client.get
        assert _data(await get("/analytics/api/errors?client=10.0.0.1"))["total_events"] == 2
        assert _data(await get("/analytics/api/errors?status_code=5xx"))["total_events"] == 2
        assert _data(await get("/analytics/api/errors?status_code=404,503"))["total_events"] == 3
        assert _data(await get("/analytics/api/errors?endpoint=/api/users*"))["total_events"] == 3
        assert _data(await get("/analytics/api/errors?endpoint=/api/users"))["total_events"] == 1
        assert _data(await get("/analytics/api/errors?method=POST"))["total_events"] == 1
        assert _data(await get("/analytics/api/errors?environment=staging"))["total_events"] == 1
        assert _data(await get("/analytics/api/errors?test_run=run-b"))["total_events"] == 2
        assert _data(await get("/analytics/api/errors?instance=other"))["total_events"] == 0
        assert _data(await get("/analytics/api/errors?source=middleware"))["total_events"] == 4
        assert _data(await get("/analytics/api/errors?duration=10800"))["total_events"] == 5
        # The SQL GLOB meta-characters of a user's value are literal.
        assert _data(await get("/analytics/api/errors?endpoint=/api/user?"))["total_events"] == 0
        window = f"start_time={NOW - 450:.0f}&end_time={NOW - 300:.0f}"
        data = _data(await get(f"/analytics/api/errors?{window}"))
        assert data["total_events"] == 1 and data["events"][0]["trace_id"] == "t3"


async def test_errors_pagination(tmp_path):
    async with api_client(tmp_path) as (client, _):
        first = _data(await client.get("/analytics/api/errors?limit=2"))
        second = _data(await client.get("/analytics/api/errors?limit=2&offset=2"))
        past = _data(await client.get("/analytics/api/errors?limit=2&offset=9"))
    assert [e["status_code"] for e in first["events"]] == [503, 500]
    assert first["pagination"]["next_offset"] == 2
    assert [e["trace_id"] for e in second["events"]] == ["t2", "t1"]
    assert second["pagination"]["next_offset"] is None
    assert len(first["summary"]) == 2  # limit also caps the summary groups
    # ...but never the totals.
    assert first["total_events"] == 4 and sum(c["count"] for c in first["by_category"]) == 4
    assert past["events"] == [] and past["pagination"]["next_offset"] is None


async def test_errors_bad_parameters(tmp_path):
    async with api_client(tmp_path) as (client, _):
        for query, name in [
            ("granularity=hour", "granularity"),
            ("offset=-1", "offset"),
            ("offset=abc", "offset"),
            ("status_code=6xx", "status_code"),
            ("limit=0", "limit"),
            ("nope=1", "nope"),
        ]:
            r = await client.get(f"/analytics/api/errors?{query}")
            assert r.status_code == 400, query
            assert r.json()["success"] is False and r.json()["error"].startswith(name + ":"), r.json()


async def test_top_errors(tmp_path):
    async with api_client(tmp_path) as (client, _):
        data = _data(await client.get("/analytics/api/top-errors"))
        rows = data["top_errors"]
        assert data["total_events"] == 4
        assert [
            (r["endpoint"], r["method"], r["status_code"], r["error_type"], r["count"]) for r in rows
        ] == [
            ("/api/users/{id}", "GET", 404, "HTTP 404", 2),
            ("/api/orders", "POST", 500, "ZeroDivisionError", 1),
            ("/api/users", "GET", 503, "HTTP 503", 1),
        ]
        assert [r["share"] for r in rows] == [50.0, 25.0, 25.0]
        assert rows[0]["last_occurrence"] == NOW - 499 and rows[0]["first_occurrence"] == NOW - 500
        limited = _data(await client.get("/analytics/api/top-errors?limit=1&client=10.0.0.2"))
        # Ties (one each) are ordered by endpoint: /api/orders before /api/users.
        assert [r["error_type"] for r in limited["top_errors"]] == ["ZeroDivisionError"]
        assert limited["total_events"] == 2 and len(limited["top_errors"]) == 1
        wide = _data(await client.get("/analytics/api/top-errors?duration=10800&endpoint=/api/users"))
        assert [(r["status_code"], r["count"]) for r in wide["top_errors"]] == [(500, 1), (503, 1)]

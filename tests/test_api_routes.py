"""Core API routes against known traffic: every number checked, with and without each filter."""

from __future__ import annotations

import pytest
from query_testdata import DAY, DAY0, HOUR, expected, make_api, make_events

EVENTS = make_events()
START, END = DAY0 + 7 * 60, DAY0 + 50 * HOUR + 13 * 60  # ragged at both ends
# Hours rolled up until hour 40, day 0 rolled: the window reads day, hour and minute rows.
ROLLED = {"until_hour": DAY0 + 40 * HOUR, "until_day": DAY0 + DAY}
WINDOW = f"start_time={START}&end_time={END}"


@pytest.fixture
async def api(tmp_path):
    client, store = await make_api(tmp_path, EVENTS, **ROLLED)
    yield client
    await client.aclose()
    await store.close()


async def get(api, path, query="", status=200):
    r = await api.get(f"/analytics/api/{path}?{query}")
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is (status == 200)
    return body["data"] if status == 200 else body["error"]


def approx_ms(value):
    return pytest.approx(value, abs=1e-3) if value is not None else None


async def test_overview_numbers(api):
    d = await get(api, "overview", WINDOW)
    exp = expected(EVENTS, START, END)
    assert d["total_requests"] == exp["requests"] and d["total_errors"] == exp["errors"]
    assert d["error_rate"] == pytest.approx(100 * exp["errors"] / exp["requests"], abs=1e-4)
    assert d["avg_latency_ms"] == approx_ms(exp["avg"])
    for q in ("p50", "p95", "p99"):
        assert d[f"{q}_latency_ms"] == approx_ms(exp[q])
    raw = exp["raw"]
    exact_p95 = raw[round(0.95 * (len(raw) - 1))]
    assert abs(d["p95_latency_ms"] - exact_p95) / exact_p95 < 0.011
    assert d["requests_per_second"] == pytest.approx(exp["requests"] / (END - START), abs=1e-4)
    assert d["total_bytes_sent"] == exp["bytes_sent"] and d["total_bytes_received"] == exp["bytes_received"]
    assert d["active_connections"] == 3 and d["dropped_events"] == 5
    assert d["unique_clients"] == 4
    protos = {row["protocol"]: row["request_count"] for row in d["top_protocols"]}
    assert protos == {
        p: expected(EVENTS, START, END, lambda e, p=p: e.protocol == p)["requests"]
        for p in ("http", "graphql", "websocket")
    }
    top = d["top_endpoints"][0]
    assert (top["endpoint"], top["method"]) == ("/api/users", "GET")
    assert (
        top["request_count"]
        == expected(EVENTS, START, END, lambda e: e.endpoint == "/api/users" and e.method == "GET")[
            "requests"
        ]
    )


FILTERS = [
    ("protocol=graphql", lambda e: e.protocol == "graphql"),
    ("protocol=http,websocket", lambda e: e.protocol in ("http", "websocket")),
    ("method=post", lambda e: e.method == "POST"),
    ("endpoint=/api/users", lambda e: e.endpoint == "/api/users"),
    ("endpoint=/api/users*", lambda e: e.endpoint.startswith("/api/users")),
    ("endpoint=/a?b[c]", lambda e: e.endpoint == "/a?b[c]"),
    ("endpoint=/a*c]", lambda e: e.endpoint == "/a?b[c]"),
    ("status_code=5xx", lambda e: e.status >= 500),
    ("status_code=2xx,404", lambda e: e.status < 300 or e.status == 404),
    ("status_code=503", lambda e: e.status == 503),
    ("workspace_id=ws2", lambda e: e.workspace_id == "ws2"),
    ("environment=prod", lambda e: e.environment == "prod"),
    ("test_run=run-1", lambda e: e.test_run == "run-1"),
    ("instance=b:2", lambda e: e.instance == "b:2"),
    ("source=middleware", lambda e: True),
    ("source=prometheus", lambda e: False),
    ("protocol=http&status_code=4xx&environment=dev", lambda e: e.protocol == "http" and e.status // 100 == 4
     and e.environment == "dev"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "pred"), FILTERS, ids=[f[0] for f in FILTERS])
async def test_every_route_honours_each_filter(api, query, pred):
    exp = expected(EVENTS, START, END, pred)
    q = f"{WINDOW}&{query}"
    d = await get(api, "overview", q)
    assert (d["total_requests"], d["total_errors"]) == (exp["requests"], exp["errors"])
    assert d["p95_latency_ms"] == approx_ms(exp["p95"])
    series = await get(api, "requests", q + "&granularity=hour")
    assert sum(s["total"] for s in series) == exp["requests"]
    assert sum(pt["value"] for s in series for pt in s["data"]) == exp["requests"]
    top = await get(api, "top-endpoints", q + "&limit=1000")
    assert sum(r["request_count"] for r in top) == exp["requests"]
    protos = await get(api, "protocol-breakdown", q)
    assert sum(r["request_count"] for r in protos) == exp["requests"]
    codes = await get(api, "status-codes", q)
    assert codes["total"] == exp["requests"]
    lat = await get(api, "latency", q + "&granularity=day")
    assert sum(pt["count"] for pt in lat) == exp["latency_count"]


@pytest.mark.parametrize("granularity", ["minute", "hour", "day"])
async def test_requests_buckets_zero_filled_and_equal_minute_sums(api, granularity):
    step = {"minute": 60, "hour": HOUR, "day": DAY}[granularity]
    series = await get(api, "requests", f"{WINDOW}&granularity={granularity}&group_by=status_class")
    first = START // step * step
    expected_buckets = list(range(first, END, step))
    labels = {s["label"] for s in series}
    assert labels == {"2xx", "4xx", "5xx"}
    for s in series:
        assert [pt["timestamp"] for pt in s["data"]] == expected_buckets
        cls = int(s["label"][0])
        for pt in s["data"]:
            lo, hi = max(pt["timestamp"], START), min(pt["timestamp"] + step, END)
            n = expected(EVENTS, lo, hi, lambda e, cls=cls: e.status // 100 == cls)["requests"]
            assert pt["value"] == n, (s["label"], pt)
            assert pt["rate"] == pytest.approx(n / (hi - lo), abs=1e-4)


GROUPS = ["protocol", "endpoint", "method", "workspace_id", "environment", "test_run", "instance"]


@pytest.mark.parametrize("group_by", GROUPS)
async def test_requests_group_by(api, group_by):
    series = await get(api, "requests", f"{WINDOW}&granularity=day&group_by={group_by}")
    for s in series:
        n = expected(EVENTS, START, END, lambda e, s=s: str(getattr(e, group_by)) == s["label"])["requests"]
        assert s["total"] == n > 0


async def test_latency_per_hour_bucket(api):
    points = await get(api, "latency", f"{WINDOW}&granularity=hour")
    assert len(points) == 51
    for pt in points:
        lo, hi = max(pt["timestamp"], START), min(pt["timestamp"] + HOUR, END)
        exp = expected(EVENTS, lo, hi)
        assert pt["count"] == exp["latency_count"]
        for q in ("p50", "p95", "p99", "avg", "min", "max"):
            assert pt[q] == approx_ms(exp[q]), (pt["timestamp"], q)


async def test_latency_group_by_protocol(api):
    series = await get(api, "latency", f"{WINDOW}&granularity=day&group_by=protocol")
    by_label = {s["label"]: s["data"] for s in series}
    assert set(by_label) == {"http", "graphql", "websocket"}
    assert all(
        pt["count"] == 0 and pt["p95"] is None for pt in by_label["websocket"]
    )  # sessions have no latency
    day1 = by_label["graphql"][1]
    exp = expected(EVENTS, DAY0 + DAY, DAY0 + 2 * DAY, lambda e: e.protocol == "graphql")
    assert day1["p99"] == approx_ms(exp["p99"]) and day1["avg"] == approx_ms(exp["avg"])


@pytest.mark.parametrize("sort", ["requests", "errors", "error_rate", "avg", "p95", "p99"])
async def test_top_endpoints_sorts(api, sort):
    rows = await get(api, "top-endpoints", f"{WINDOW}&sort={sort}&limit=3")
    assert len(rows) == 3
    field = {"requests": "request_count", "errors": "error_count", "error_rate": "error_rate",
             "avg": "avg_latency_ms", "p95": "p95_latency_ms", "p99": "p99_latency_ms"}[sort]  # fmt: skip
    values = [r[field] for r in rows]
    assert values == sorted(values, reverse=True)
    for r in rows:
        exp = expected(EVENTS, START, END, lambda e, r=r: (e.endpoint, e.method, e.protocol)
                       == (r["endpoint"], r["method"], r["protocol"]))  # fmt: skip
        assert r["request_count"] == exp["requests"] and r["error_count"] == exp["errors"]
        assert r["p95_latency_ms"] == approx_ms(exp["p95"]) and r["avg_latency_ms"] == approx_ms(exp["avg"])
        assert r["bytes_sent"] == exp["bytes_sent"]
    everything = await get(api, "top-endpoints", f"{WINDOW}&sort={sort}&limit=100")
    best = max(everything, key=lambda r: r[field] if r[field] is not None else -1)
    assert rows[0][field] == best[field]


async def test_protocol_breakdown_and_status_codes(api):
    protos = await get(api, "protocol-breakdown", WINDOW)
    total = expected(EVENTS, START, END)["requests"]
    for r in protos:
        exp = expected(EVENTS, START, END, lambda e, r=r: e.protocol == r["protocol"])
        assert (r["request_count"], r["error_count"]) == (exp["requests"], exp["errors"])
        assert r["share"] == pytest.approx(100 * exp["requests"] / total, abs=1e-4)
        assert r["avg_latency_ms"] == approx_ms(exp["avg"])
    assert sum(r["share"] for r in protos) == pytest.approx(100, abs=1e-3)
    codes = await get(api, "status-codes", WINDOW)
    assert codes["total"] == total
    for r in codes["codes"]:
        assert (
            r["count"]
            == expected(EVENTS, START, END, lambda e, r=r: e.status == r["status_code"])["requests"]
        )
    classes = {r["class"]: r["count"] for r in codes["classes"]}
    assert classes["5xx"] == expected(EVENTS, START, END, lambda e: e.status >= 500)["requests"]
    assert sum(classes.values()) == total


async def test_window_whose_hours_are_not_rolled_up(tmp_path):
    client, store = await make_api(tmp_path, EVENTS)  # nothing rolled up
    try:
        d = (await client.get(f"/analytics/api/overview?{WINDOW}")).json()["data"]
        exp = expected(EVENTS, START, END)
        assert d["total_requests"] == exp["requests"] and d["p99_latency_ms"] == approx_ms(exp["p99"])
    finally:
        await client.aclose()
        await store.close()


BAD = [
    ("overview", "granularity=hour", "granularity"),
    ("overview", "client=10.0.0.1", "client"),
    ("overview", "limit=5", "limit"),
    ("overview", "group_by=protocol", "group_by"),
    ("overview", "start_time=tomorrow", "start_time"),
    ("overview", f"start_time={END}&end_time={START}", "start_time"),
    ("overview", "duration=-1", "duration"),
    ("overview", "status_code=99", "status_code"),
    ("overview", "protocl=http", "protocl"),
    ("requests", "limit=10", "limit"),
    ("requests", "group_by=client", "group_by"),
    ("requests", "granularity=fortnight", "granularity"),
    ("requests", "sort=requests", "sort"),
    ("latency", "client=x", "client"),
    ("latency", "granularity=minute&duration=31536000", "granularity"),
    ("top-endpoints", "sort=slowest", "sort"),
    ("top-endpoints", "limit=-3", "limit"),
    ("top-endpoints", "granularity=day", "granularity"),
    ("protocol-breakdown", "group_by=method", "group_by"),
    ("status-codes", "method=", "method"),
]


@pytest.mark.parametrize(("route", "query", "param"), BAD, ids=[f"{b[0]}-{b[1][:20]}" for b in BAD])
async def test_bad_parameters_are_400_naming_them(api, route, query, param):
    error = await get(api, route, query, status=400)
    assert error.startswith(f"{param}: ")


async def test_limit_is_capped_by_max_query_results(tmp_path):
    from mockforge_analytics_plugin.config import AnalyticsConfig

    client, store = await make_api(tmp_path, EVENTS, config=AnalyticsConfig(max_query_results=2))
    try:
        r = await client.get(f"/analytics/api/top-endpoints?{WINDOW}&limit=50")
        assert len(r.json()["data"]) == 2
    finally:
        await client.aclose()
        await store.close()

"""Exports: CSV/JSON/NDJSON of every dataset, documented headers, totals, neutralised formulas."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace

import pytest
from query_testdata import DAY, DAY0, HOUR, expected, make_api, make_events

from mockforge_analytics_plugin.export import (
    CLIENTS_HEADER,
    ENDPOINTS_HEADER,
    ERRORS_HEADER,
    METRICS_HEADER,
    neutralise,
)

BASE = make_events(n=1500)
HOSTILE = [
    replace(BASE[0], ts=DAY0 + 3 * HOUR + 5, endpoint="=HYPERLINK(\"http://x\")", test_run="@SUM(A1)",
            status=500, message="-2+3 cmd|' /C calc'!A0", client="+441234"),
    replace(BASE[1], ts=DAY0 + 3 * HOUR + 7, endpoint="\tTAB", environment="\rCR", status=404),
]  # fmt: skip
EVENTS = BASE + HOSTILE
START, END = DAY0 + 7 * 60, DAY0 + 50 * HOUR + 13 * 60
WINDOW = f"start_time={START}&end_time={END}"


@pytest.fixture
async def api(tmp_path):
    client, store = await make_api(tmp_path, EVENTS, until_hour=DAY0 + 40 * HOUR, until_day=DAY0 + DAY)
    yield client
    await client.aclose()
    await store.close()


async def fetch(api, path, query, status=200):
    r = await api.get(f"/analytics/api/export/{path}?{query}")
    assert r.status_code == status, r.text
    return r


def parse_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_neutralise():
    assert [neutralise(v) for v in ("=1", "+1", "-1", "@a", "\tx", "\rx", "ok", -5, 3.5, None)] == [
        "'=1", "'+1", "'-1", "'@a", "'\tx", "'\rx", "ok", -5, 3.5, None,
    ]  # fmt: skip


async def test_csv_metrics_header_totals_and_download_headers(api):
    r = await fetch(api, "csv", WINDOW + "&granularity=minute")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="mockforge-analytics-2023-11-18.csv"'
    header, rows = parse_csv(r.text)
    assert tuple(header) == METRICS_HEADER
    original = (
        "timestamp,protocol,method,endpoint,status_code,request_count,error_count,avg_latency_ms,p95_latency_ms,"
        "bytes_sent,bytes_received"
    )
    assert header[:11] == original.split(",")
    exp = expected(EVENTS, START, END)
    assert sum(int(row["request_count"]) for row in rows) == exp["requests"]
    assert sum(int(row["error_count"]) for row in rows) == exp["errors"]
    assert sum(int(row["bytes_sent"]) for row in rows) == exp["bytes_sent"]
    keys = {
        (
            e.ts // 60 * 60,
            e.endpoint,
            e.status,
            e.method,
            e.instance,
            e.test_run,
            e.workspace_id,
            e.environment,
        )
        for e in exp["events"]
    }
    assert len(rows) == len(keys)  # minute granularity: one row per minute and series


@pytest.mark.parametrize(("granularity", "step"), [("hour", HOUR), ("day", DAY)])
async def test_csv_metrics_coarser_buckets_equal_minute_sums(api, granularity, step):
    _, rows = parse_csv((await fetch(api, "csv", f"{WINDOW}&granularity={granularity}&protocol=http")).text)
    assert {int(r["timestamp"]) % step for r in rows} == {0}
    http = expected(EVENTS, START, END, lambda e: e.protocol == "http")
    assert sum(int(r["request_count"]) for r in rows) == http["requests"]
    for r in rows[:: max(1, len(rows) // 60)]:
        b = int(r["timestamp"])
        cols = (
            "protocol",
            "method",
            "endpoint",
            "status_code",
            "instance",
            "test_run",
            "workspace_id",
            "environment",
        )
        want = tuple(r[c] for c in cols)

        def same(e, want=want):
            dims = (e.protocol, e.method, e.endpoint, str(e.status), e.instance, e.test_run, e.workspace_id,
                    e.environment)  # fmt: skip
            return tuple(neutralise(v) for v in dims) == want

        exp = expected(EVENTS, max(b, START), min(b + step, END), same)
        assert int(r["request_count"]) == exp["requests"]
        if exp["p95"] is not None:
            assert float(r["p95_latency_ms"]) == pytest.approx(exp["p95"], abs=1e-3)
            assert float(r["avg_latency_ms"]) == pytest.approx(exp["avg"], abs=1e-3)


async def test_csv_formulas_neutralised(api):
    _, rows = parse_csv((await fetch(api, "csv", f"start_time={DAY0 + 3 * HOUR}&duration=60")).text)
    cells = {c for r in rows for c in r.values()}
    assert {'\'=HYPERLINK("http://x")', "'@SUM(A1)", "'\tTAB", "'\rCR"} <= cells
    assert not any(c and c[0] in "=+-@\t\r" for c in cells)
    r = await fetch(api, "csv", f"dataset=errors&start_time={DAY0 + 3 * HOUR}&duration=60")
    hostile = [row for row in parse_csv(r.text)[1] if row["endpoint"].startswith("'=")]
    assert hostile and hostile[0]["error_message"] == "'-2+3 cmd|' /C calc'!A0"
    assert hostile[0]["client_ip"] == "'+441234"


async def test_json_and_ndjson(api):
    r = await fetch(api, "json", f"{WINDOW}&granularity=day")
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-disposition"] == 'attachment; filename="mockforge-analytics-2023-11-18.json"'
    rows = r.json()
    assert list(rows[0]) == list(METRICS_HEADER)
    assert sum(row["request_count"] for row in rows) == expected(EVENTS, START, END)["requests"]
    r = await fetch(api, "json", f"{WINDOW}&format=ndjson&dataset=endpoints")
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert list(lines[0]) == list(ENDPOINTS_HEADER)
    assert sum(x["total_requests"] for x in lines) == expected(EVENTS, START, END)["requests"]
    empty = await fetch(api, "json", f"start_time={DAY0 - 5 * DAY}&duration=600")
    assert empty.json() == []


async def test_endpoints_dataset(api):
    _, rows = parse_csv((await fetch(api, "csv", f"{WINDOW}&dataset=endpoints&status_code=5xx")).text)
    for r in rows:
        key = (r["endpoint"].removeprefix("'"), r["method"], r["protocol"])
        exp = expected(
            EVENTS,
            START,
            END,
            lambda e, key=key: e.status >= 500 and (e.endpoint, e.method, e.protocol) == key,
        )
        assert (int(r["total_requests"]), int(r["total_errors"])) == (exp["requests"], exp["errors"])


async def test_errors_dataset_with_client_filter(api):
    header, rows = parse_csv((await fetch(api, "csv", f"{WINDOW}&dataset=errors&client=10.0.0.2")).text)
    assert tuple(header) == ERRORS_HEADER
    exp = expected(EVENTS, START, END, lambda e: e.is_error and e.client == "10.0.0.2")
    assert len(rows) == exp["requests"] > 0
    assert {r["client_ip"] for r in rows} == {"10.0.0.2"}


async def test_clients_dataset(api):
    header, rows = parse_csv((await fetch(api, "csv", f"{WINDOW}&dataset=clients&protocol=graphql")).text)
    assert tuple(header) == CLIENTS_HEADER
    # client rows are hourly: the window's ragged hours count whole
    lo, hi = START // HOUR * HOUR, -(-END // HOUR) * HOUR
    exp = [e for e in EVENTS if lo <= e.ts < hi and e.protocol == "graphql"]
    assert sum(int(r["request_count"]) for r in rows) == len(exp)


@pytest.mark.parametrize(
    ("path", "query", "param"),
    [
        ("csv", "dataset=logs", "dataset"),
        ("json", "format=xml", "format"),
        ("csv", "format=ndjson", "format"),
        ("csv", "client=1.2.3.4", "client"),
        ("csv", "dataset=clients&method=GET", "method"),
        ("csv", "dataset=clients&endpoint=/x", "endpoint"),
        ("json", "dataset=errors&granularity=hour", "granularity"),
        ("csv", "limit=10", "limit"),
        ("csv", "start_time=soon", "start_time"),
    ],
)
async def test_bad_export_parameters(api, path, query, param):
    r = await fetch(api, path, query, status=400)
    assert r.json()["error"].startswith(f"{param}: ")

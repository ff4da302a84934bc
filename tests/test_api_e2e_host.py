"""Known traffic through the real host (`example-host serve`), then the API's numbers checked."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import httpx
import pytest
from support.hostproc import run_host, write_config

pytestmark = pytest.mark.slow

ROUTES = [
    {"method": "GET", "path": "/api/users/{id}", "body": {"id": "{id}"}},
    {"method": "POST", "path": "/api/orders", "status": 201, "body": {"ok": True}},
    {"method": "GET", "path": "/api/admin", "status": 403, "body": {"error": "forbidden"}},
    {"method": "GET", "path": "/api/broken", "status": 503, "body": {"error": "down"}},
]
SENT = {  # (method, path template, status, test run) -> count
    ("GET", "/api/users/{id}", 200, "run-a"): 9,
    ("POST", "/api/orders", 201, "run-a"): 4,
    ("GET", "/api/admin", 403, "run-b"): 3,
    ("GET", "/api/broken", 503, "run-b"): 2,
}
TOTAL = sum(SENT.values())


def send_traffic(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        for (method, template, status, run), n in SENT.items():
            for i in range(n):
                path = template.replace("{id}", str(i))
                r = c.request(method, path, headers={"X-Test-Run": run, "X-Client-Id": f"c{i % 2}"})
                assert r.status_code == status


def api(c: httpx.Client, route: str, **params) -> dict:
    r = c.get(f"/analytics/api/{route}", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["error"] is None
    return body["data"]


def test_routes_report_what_was_sent(tmp_path: Path) -> None:
    analytics = {"database_path": "analytics.db", "instance": "e2e", "flush_interval_seconds": 0.2,
                 "client_id_header": "X-Client-Id"}  # fmt: skip
    config = write_config(tmp_path, {"seed": 1, "workspace": "ws-q", "environment": "ci", "routes": ROUTES,
                                     "plugins": {"analytics": analytics}})  # fmt: skip
    with run_host(config) as host:
        send_traffic(host.url)
        with httpx.Client(base_url=host.url, timeout=10) as c:
            deadline = time.monotonic() + 15
            while api(c, "overview")["total_requests"] < TOTAL and time.monotonic() < deadline:
                time.sleep(0.2)  # the flush runs every 0.2 s
            ov = api(c, "overview")
            assert ov["total_requests"] == TOTAL
            assert ov["total_errors"] == 5
            assert ov["error_rate"] == pytest.approx(100 * 5 / TOTAL, abs=1e-3)
            assert ov["unique_clients"] == 2
            assert ov["p50_latency_ms"] is not None and ov["avg_latency_ms"] > 0
            top = {(r["method"], r["endpoint"]): r for r in ov["top_endpoints"]}
            assert top["GET", "/api/users/{id}"]["request_count"] == 9
            assert top["GET", "/api/admin"]["error_rate"] == 100.0

            rows = api(c, "top-endpoints", sort="errors", limit=2)
            assert [(r["endpoint"], r["error_count"]) for r in rows] == [
                ("/api/admin", 3),
                ("/api/broken", 2),
            ]

            codes = api(c, "status-codes")
            assert {r["status_code"]: r["count"] for r in codes["codes"]} == {200: 9, 201: 4, 403: 3, 503: 2}
            assert {r["class"]: r["count"] for r in codes["classes"]} == {"2xx": 13, "4xx": 3, "5xx": 2}

            assert api(c, "overview", test_run="run-b")["total_requests"] == 5
            assert api(c, "overview", status_code="4xx,503")["total_requests"] == 5
            assert api(c, "overview", endpoint="/api/users/*", method="GET")["total_requests"] == 9
            assert (
                api(c, "overview", workspace_id="ws-q", environment="ci", instance="e2e")["total_requests"]
                == TOTAL
            )
            protos = api(c, "protocol-breakdown")
            assert [(r["protocol"], r["request_count"]) for r in protos] == [("http", TOTAL)]
            series = api(c, "requests", group_by="status_class", granularity="minute")
            assert {s["label"]: s["total"] for s in series} == {"2xx": 13, "4xx": 3, "5xx": 2}

            r = c.get("/analytics/api/export/csv", params={"granularity": "hour"})
            assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
            table = list(csv.DictReader(io.StringIO(r.text)))
            assert sum(int(row["request_count"]) for row in table) == TOTAL

            bad = c.get("/analytics/api/overview", params={"client": "c0"})
            assert bad.status_code == 400 and bad.json()["error"].startswith("client: ")

"""End to end through the real host over a socket: a known mix of traffic, a clean SIGINT stop,
then the SQLite file read with the standard sqlite3 module must hold exactly what was sent."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import httpx
import pytest
import websockets
from support.hostproc import run_host, write_config

pytestmark = pytest.mark.slow

ROUTES = [
    {"method": "GET", "path": "/api/users/{id}", "body": {"id": "{id}"}},
    {"method": "POST", "path": "/api/orders", "status": 201, "body": {"ok": True}},
    {"method": "GET", "path": "/api/admin", "status": 403, "body": {"error": "forbidden"}},
    {"method": "GET", "path": "/api/crash", "raise": "e2e crash: the handler raised"},
    {"method": "GET", "path": "/ws/echo", "websocket": "echo"},
]
UUIDS = [
    "9f1c2b4e-0000-4000-8000-000000000001",
    "9f1c2b4e-0000-4000-8000-000000000002",
    "0b7e6a52-1d1f-4c36-9e0c-3f0e4a1b2c3d",
]


def _traceparent(n: int) -> tuple[str, str, str]:
    trace_id = f"{n:032x}".replace("0", "a", 4)
    span_id = f"{n:016x}".replace("0", "b", 2)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def _ws_session(url: str, headers: dict[str, str]) -> str:
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send("hello")
        return str(await asyncio.wait_for(ws.recv(), 5))


def test_known_mix_is_on_disk_exactly_after_sigint(tmp_path: Path) -> None:
    analytics = {
        "database_path": "analytics.db",
        "client_id_header": "X-Client-Id",
        "instance": "e2e-host",
        "flush_interval_seconds": 0.2,
        # The mix's 9 errors may fall in one minute: keep every one as an event (default cap 6).
        "max_error_events_per_minute": 20,
    }
    config = write_config(
        tmp_path,
        {"seed": 1, "workspace": "ws-e2e", "environment": "ci", "routes": ROUTES,
         "plugins": {"analytics": analytics}},
    )  # fmt: skip
    db = tmp_path / "analytics.db"
    # What we send, counted as (method, endpoint, status, client, test_run).
    sent: Counter[tuple[str, str, int, str, str]] = Counter()
    traces: dict[str, str] = {}  # trace_id -> span_id of the error requests sent with one
    with run_host(config) as host:
        a = {"X-Client-Id": "client-a", "X-Test-Run": "run-a"}
        b = {"X-Client-Id": "client-b", "X-Test-Run": "run-b"}
        with httpx.Client(base_url=host.url, timeout=10) as c:
            for i in range(8):
                assert c.get(f"/api/users/{i % 3}", headers=a).status_code == 200
                sent["GET", "/api/users/{id}", 200, "client-a", "run-a"] += 1
            for _ in range(4):
                assert c.post("/api/orders", headers=a, content=b"{}").status_code == 201
                sent["POST", "/api/orders", 201, "client-a", "run-a"] += 1
            for i in range(3):
                header, trace_id, span_id = _traceparent(100 + i)
                assert c.get("/api/admin", headers={**a, "traceparent": header}).status_code == 403
                traces[trace_id] = span_id
                sent["GET", "/api/admin", 403, "client-a", "run-a"] += 1
            for i in range(6):
                assert c.get(f"/api/users/{100 + i}", headers=b).status_code == 200
                sent["GET", "/api/users/{id}", 200, "client-b", "run-b"] += 1
            for i in range(3):
                header, trace_id, span_id = _traceparent(200 + i)
                # A fresh connection each: after an unhandled exception uvicorn drops the connection.
                crash = httpx.get(host.url + "/api/crash", headers={**b, "traceparent": header}, timeout=10)
                assert crash.status_code == 500
                traces[trace_id] = span_id
                sent["GET", "/api/crash", 500, "client-b", "run-b"] += 1
            for uuid in UUIDS:
                assert c.get(f"/nothing/{uuid}/here", headers=b).status_code == 404
                sent["GET", "/nothing/{id}/here", 404, "client-b", "run-b"] += 1
        ws_url = host.url.replace("http://", "ws://") + "/ws/echo"
        assert asyncio.run(_ws_session(ws_url, b)) == "hello"
        assert host.stop() == 0, host.stderr()

    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT s.method, s.endpoint, s.status_code, s.protocol, s.test_run, s.instance, "
            "s.workspace_id, s.environment, s.source, SUM(m.request_count), SUM(m.session_count) "
            "FROM metrics_aggregates_minute m JOIN series s USING (series_id) "
            "GROUP BY s.series_id"
        ).fetchall()
        clients = conn.execute(
            "SELECT client_ip, test_run, protocol, SUM(request_count), SUM(error_count) "
            "FROM client_analytics GROUP BY client_ip, test_run, protocol"
        ).fetchall()
        errors = conn.execute(
            "SELECT endpoint, status_code, error_type, trace_id, span_id, client_ip, test_run, instance "
            "FROM error_events"
        ).fetchall()
    finally:
        conn.close()

    assert {(r[5], r[6], r[7], r[8]) for r in rows} == {("e2e-host", "ws-e2e", "ci", "middleware")}
    http_rows = Counter()
    ws_rows = []
    for method, endpoint, status, protocol, test_run, *_, requests, sessions in rows:
        if protocol == "websocket":
            ws_rows.append((endpoint, test_run, requests, sessions))
        else:
            assert protocol == "http"
            http_rows[method, endpoint, status, test_run] += requests
    expected = Counter()
    for (method, endpoint, status, _client, test_run), n in sent.items():
        expected[method, endpoint, status, test_run] += n
    assert http_rows == expected
    assert ws_rows == [("/ws/echo", "run-b", 1, 1)]

    by_client = {(client, run, protocol): (n, err) for client, run, protocol, n, err in clients}
    assert by_client == {
        ("client-a", "run-a", "http"): (15, 3),
        ("client-b", "run-b", "http"): (12, 6),
        ("client-b", "run-b", "websocket"): (1, 0),
    }

    # Every error request became an error event; the ones sent with a traceparent carry it.
    assert Counter((e[0], e[1]) for e in errors) == {
        ("/api/admin", 403): 3, ("/api/crash", 500): 3, ("/nothing/{id}/here", 404): 3,
    }  # fmt: skip
    with_trace = {e[3]: e[4] for e in errors if e[3]}
    assert with_trace == traces
    crash_types = {e[2] for e in errors if e[1] == 500}
    assert crash_types == {"RuntimeError"}
    assert {e[7] for e in errors} == {"e2e-host"}
    assert {(e[5], e[6]) for e in errors if e[0] == "/api/admin"} == {("client-a", "run-a")}

"""The plugin and host as a user gets them: wheels, a fresh venv, `example-host serve` on a socket."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import websockets
from support.hostproc import run_host, write_config
from support.wheels import InstalledWheels

pytestmark = pytest.mark.slow

ROUTES = [
    {
        "method": "GET",
        "path": "/api/users/{id}",
        "status": 200,
        "body": {"id": "{id}", "name": "Ada"},
        "headers": {"X-Mock": "yes"},
        "latency_ms": [5, 15],
    },
    {
        "method": "POST",
        "path": "/api/orders",
        "status": 201,
        "body": {"ok": True},
        "faults": {"error_rate": 0.3, "status": 503},
    },
    {"method": "GET", "path": "/ws/echo", "websocket": "echo"},
]


def _config(tmp_path: Path, analytics: dict | None, name: str = "host.yaml") -> Path:
    data: dict = {"seed": 7, "routes": ROUTES}
    if analytics is not None:
        data["plugins"] = {"analytics": analytics}
    return write_config(tmp_path, data, name=name)


def test_wheel_ships_migrations_and_templates(installed_wheels: InstalledWheels) -> None:
    names = installed_wheels.wheel_names()
    assert "mockforge_analytics_plugin/migrations/0001_initial.sql" in names
    assert any(n.startswith("mockforge_analytics_plugin/templates/") and n.endswith(".html") for n in names)
    assert any(n.startswith("mockforge_analytics_plugin/templates/static/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    import zipfile

    with zipfile.ZipFile(installed_wheels.plugin_wheel) as zf:
        text = zf.read(entry).decode()
    assert "[mockforge.plugins]" in text and "analytics = mockforge_analytics_plugin.plugin" in text


def test_wheel_carries_the_compiled_capture_path(installed_wheels: InstalledWheels) -> None:
    """The wheel ships mypyc extensions for the capture modules, and the installed plugin uses them."""
    names = installed_wheels.wheel_names()
    for module in ("middleware", "capture_build", "recorder", "recorder_fold"):
        assert any(n.startswith(f"mockforge_analytics_plugin/{module}.") and n.endswith(".so") for n in names)
    assert any(n.startswith("mockforge_analytics_plugin__mypyc.") for n in names)
    assert "mockforge_analytics_plugin/_compiled_sources.json" in names
    probe = (
        "from mockforge_analytics_plugin import speedups; "
        "print(speedups.compiled_modules(), speedups.stale_modules())"
    )
    out = subprocess.run(
        [str(installed_wheels.python), "-c", probe], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "['middleware', 'capture_build', 'recorder', 'recorder_fold'] []"


def test_plugins_command_lists_the_installed_plugin(
    installed_wheels: InstalledWheels, tmp_path: Path
) -> None:
    config = _config(tmp_path, {"database_path": "a.db"})
    out = subprocess.run(
        [installed_wheels.example_host, "plugins", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("analytics "))
    assert lines[at].split() == ["analytics", "0.1.0", "on"]
    assert "entry point mockforge_analytics_plugin.plugin" in lines[at + 1]
    assert "mockforge_middleware" in lines[at + 2] and "mockforge_lifespan" in lines[at + 2]


async def _ws_echo(url: str) -> str:
    async with websockets.connect(url) as ws:
        await ws.send("ping-1")
        return str(await asyncio.wait_for(ws.recv(), 5))


def test_enabled_plugin_records_traffic_and_flushes_on_sigint(
    installed_wheels: InstalledWheels, tmp_path: Path
) -> None:
    config = _config(tmp_path, {"database_path": "analytics.db", "client_id_header": "X-Client-Id"})
    db = tmp_path / "analytics.db"
    with run_host(config, executable=installed_wheels.example_host) as host:
        plugins = httpx.get(host.url + "/__mockforge/plugins.json").json()
        names = json.dumps(plugins)
        assert '"analytics"' in names
        with httpx.Client(base_url=host.url, headers={"X-Client-Id": "e2e"}) as c:
            started = time.perf_counter()
            r = c.get("/api/users/42")
            elapsed_ms = (time.perf_counter() - started) * 1000
            assert r.status_code == 200 and r.json() == {"id": "42", "name": "Ada"}
            assert r.headers["x-mock"] == "yes"
            assert elapsed_ms >= 5
            statuses = [c.post("/api/orders").status_code for _ in range(40)]
            assert set(statuses) <= {201, 503} and statuses.count(503) > 0
            assert c.get("/no/such/9f1c2b4e-0000-4000-8000-000000000001").status_code == 404
        assert asyncio.run(_ws_echo(host.url.replace("http", "ws") + "/ws/echo")) == "ping-1"
        status = httpx.get(host.url + "/analytics/api/status")
        assert status.status_code == 200
        body = status.json()
        assert body["success"] is True and body["data"]["version"] == "0.1.0"
        assert body["data"]["config"]["database_path"] == str(db)
        assert httpx.get(host.url + "/analytics/").status_code == 200
        metrics = httpx.get(host.url + "/metrics").text
        faults = (
            'mockforge_requests_by_path_total{method="POST",path="/api/orders",protocol="http",status="503"}'
        )
        assert f"{faults} {float(statuses.count(503))}" in metrics
        assert host.stop() == 0
    # A clean stop flushed everything: read the file with the standard sqlite3 module.
    with sqlite3.connect(db) as conn:
        rows = dict(
            conn.execute(
                "SELECT s.endpoint || ' ' || s.status_code, SUM(m.request_count) "
                "FROM metrics_aggregates_minute m JOIN series s USING (series_id) "
                "WHERE s.endpoint NOT LIKE '/analytics%' GROUP BY s.endpoint, s.status_code"
            ).fetchall()
        )
    assert rows["/api/users/{id} 200"] == 1
    assert rows["/api/orders 201"] == statuses.count(201)
    assert rows["/api/orders 503"] == statuses.count(503)
    assert rows["/no/such/{id} 404"] == 1
    ws_rows = {k: v for k, v in rows.items() if k.startswith("/ws/echo ")}
    assert sum(ws_rows.values()) == 1, ws_rows


@pytest.mark.parametrize("analytics", [None, {"enabled": False, "database_path": "analytics.db"}])
def test_disabled_or_absent_plugin_leaves_no_trace(
    installed_wheels: InstalledWheels, tmp_path: Path, analytics: dict | None
) -> None:
    config = _config(tmp_path, analytics)
    with run_host(config, executable=installed_wheels.example_host) as host:
        assert httpx.get(host.url + "/api/users/1").status_code == 200
        assert httpx.get(host.url + "/analytics/").status_code == 404
        assert httpx.get(host.url + "/analytics/api/status").status_code == 404
        assert host.stop() == 0
    assert not list(tmp_path.glob("*.db*"))
    assert not (tmp_path / "mockforge-analytics.db").exists()


def test_bad_plugin_config_stops_startup_naming_the_key(
    installed_wheels: InstalledWheels, tmp_path: Path
) -> None:
    config = _config(tmp_path, {"flush_interval_seconds": "soon"})
    out = subprocess.run(
        [installed_wheels.example_host, "serve", "--config", str(config), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "plugins.analytics.flush_interval_seconds" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

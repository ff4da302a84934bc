"""install_analytics on a plain Starlette app: it records and serves like the plugin does."""

from __future__ import annotations

import contextlib
import sqlite3
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mockforge_analytics_plugin.config_parse import ConfigError
from mockforge_analytics_plugin.standalone import install_analytics


def _app(events: list[str]) -> Starlette:
    async def hello(request):
        return PlainTextResponse("hi")

    async def item(request):
        return JSONResponse(
            {"id": request.path_params["id"]}, status_code=404 if request.path_params["id"] == 0 else 200
        )

    async def boom(request):
        raise ZeroDivisionError("nope")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("app start")
        yield
        events.append("app stop")

    return Starlette(
        routes=[Route("/hello", hello), Route("/items/{id:int}", item), Route("/boom", boom)],
        lifespan=lifespan,
    )


def _poll(client: TestClient, path: str, check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        data = client.get(path).json()["data"]
        if check(data) or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def test_records_and_serves_like_the_plugin(tmp_path):
    events: list[str] = []
    app = _app(events)
    db = tmp_path / "analytics.db"
    runtime = install_analytics(app, database_path=db, flush_interval_seconds=0.1, instance="demo")
    assert runtime.config.mount_path == "/analytics" and runtime.instance == "demo"
    with TestClient(app, raise_server_exceptions=False, client=("10.1.2.3", 5000)) as client:
        assert events == ["app start"]
        for _ in range(3):
            assert client.get("/hello").text == "hi"
        for i in (1, 2, 0):
            client.get(f"/items/{i}", headers={"X-Test-Run": "run-7", "User-Agent": "curl/8.4.0"})
        assert client.get("/boom").status_code == 500
        overview = _poll(client, "/analytics/api/overview", lambda d: d["total_requests"] >= 7)
        assert (overview["total_requests"], overview["total_errors"]) == (7, 2)
        top = client.get("/analytics/api/top-endpoints").json()["data"]
        assert {(r["endpoint"], r["request_count"]) for r in top} == {
            ("/hello", 3),
            ("/items/{id:int}", 3),
            ("/boom", 1),
        }
        errors = _poll(client, "/analytics/api/errors", lambda d: d["total_events"] >= 2)
        types = {(e["endpoint"], e["status_code"], e["error_type"]) for e in errors["events"]}
        assert types == {("/boom", 500, "ZeroDivisionError"), ("/items/{id:int}", 404, "HTTP 404")}
        clients = _poll(client, "/analytics/api/client-analysis", lambda d: d["total_clients"] >= 1)
        assert [c["client"] for c in clients["clients"]] == ["10.1.2.3"]
        assert {r["test_run"]: r["request_count"] for r in clients["test_runs"]} == {"": 4, "run-7": 3}
        recent = client.get("/analytics/api/recent-requests?limit=1").json()["data"]["requests"]
        assert recent[0]["path"] == "/boom"
        assert client.get("/analytics/api/openapi.json").json()["openapi"] == "3.1.0"
        assert client.get("/analytics/").status_code == 200
    assert events == ["app start", "app stop"]
    # A clean stop flushed everything; the analytics routes themselves were not recorded.
    with sqlite3.connect(db) as conn:
        rows = dict(
            conn.execute(
                "SELECT s.endpoint, SUM(m.request_count) FROM metrics_aggregates_minute m "
                "JOIN series s USING (series_id) GROUP BY s.endpoint"
            ).fetchall()
        )
        instances = {r[0] for r in conn.execute("SELECT DISTINCT instance FROM series")}
    assert rows == {"/hello": 3, "/items/{id:int}": 3, "/boom": 1}
    assert instances == {"demo"}


def test_auth_and_custom_mount(tmp_path):
    app = _app([])
    install_analytics(
        app, mount_path="/stats", database_path=tmp_path / "a.db", auth={"token": "t0ken-0123456789abcdef"}
    )
    with TestClient(app) as client:
        assert client.get("/stats/api/overview").status_code == 401
        ok = client.get("/stats/api/overview", headers={"Authorization": "Bearer t0ken-0123456789abcdef"})
        assert ok.status_code == 200 and ok.json()["success"] is True
        page = client.get("/stats/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/stats/login?next=")
        assert client.get("/hello").text == "hi"


def test_bad_key_and_clash_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="flush_intervall"):
        install_analytics(_app([]), database_path=tmp_path / "a.db", flush_intervall=1)
    with pytest.raises(ValueError, match="clashes"):
        install_analytics(_app([]), mount_path="/hello", database_path=tmp_path / "a.db")
    assert not (tmp_path / "a.db").exists()  # nothing is opened before the app starts


def test_fastapi_app(tmp_path):
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()

    @app.get("/users/{user_id}")
    async def user(user_id: int):
        return {"id": user_id}

    install_analytics(app, database_path=tmp_path / "f.db", flush_interval_seconds=0.1)
    with TestClient(app) as client:
        for i in range(4):
            assert client.get(f"/users/{i}").json() == {"id": i}
        top = _poll(client, "/analytics/api/top-endpoints", lambda d: sum(r["request_count"] for r in d) >= 4)
        assert [(r["endpoint"], r["method"], r["request_count"]) for r in top] == [
            ("/users/{user_id}", "GET", 4)
        ]
        assert client.get("/docs").status_code == 200  # the app's own routes still answer

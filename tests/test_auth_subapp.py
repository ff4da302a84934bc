"""Auth on the real sub-app (Runtime via install_analytics): API, export, stream, pages, maintenance."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mockforge_analytics_plugin.standalone import install_analytics

TOKEN = "s3cret-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
GUARDED_GETS = [
    "/analytics/api/overview",
    "/analytics/api/errors",
    "/analytics/api/client-analysis",
    "/analytics/api/traffic-patterns",
    "/analytics/api/recent-requests",
    "/analytics/api/openapi.json",
    "/analytics/api/export/csv",
    "/analytics/api/export/json?dataset=errors",
]
PAGES = ["/analytics/", "/analytics/errors"]


def _app(tmp_path, **keys) -> Starlette:
    async def hello(request):
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/hello", hello)])
    install_analytics(app, database_path=tmp_path / "a.db", **keys)
    return app


def test_auth_on_everything_needs_credentials(tmp_path):
    with TestClient(_app(tmp_path, auth={"token": TOKEN})) as client:
        assert client.get("/hello").text == "hi"  # the app itself is not guarded
        for path in GUARDED_GETS:
            r = client.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == 'Bearer realm="mockforge-analytics"'
            assert r.json()["success"] is False
            assert client.get(path, headers=BEARER).status_code == 200, path
        for path in ("/analytics/api/reset", "/analytics/api/retention/run"):
            assert client.post(path).status_code == 401, path
            r = client.post(path, headers=BEARER)
            assert r.status_code == 200 and "deleted" in r.json()["data"], path
        for page in PAGES:
            r = client.get(page, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/analytics/login?next=")
            assert client.get(page, headers=BEARER).status_code == 200
        with (
            client.websocket_connect("/analytics/api/stream") as ws,
            pytest.raises(WebSocketDisconnect) as exc,
        ):
            ws.receive_json()
        assert exc.value.code == 4401
        with client.websocket_connect("/analytics/api/stream", headers=BEARER) as ws:
            assert ws.receive_json()["type"] == "overview"


def test_login_form_of_the_pages_sets_the_cookie(tmp_path):
    with TestClient(_app(tmp_path, auth={"username": "ada", "password": "correct horse battery"})) as client:
        form = client.get("/analytics/login?next=/analytics/errors")
        assert form.status_code == 200 and 'name="password"' in form.text
        bad = client.post("/analytics/login", data={"username": "ada", "password": "nope"})
        assert bad.status_code == 401
        r = client.post(
            "/analytics/login",
            data={"username": "ada", "password": "correct horse battery", "next": "/analytics/errors"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/analytics/errors"
        assert client.get("/analytics/errors").status_code == 200
        assert client.get("/analytics/api/overview").status_code == 200
        with client.websocket_connect("/analytics/api/stream") as ws:
            assert ws.receive_json()["type"] == "overview"


def test_auth_off_on_loopback_is_open(tmp_path):
    with TestClient(_app(tmp_path)) as client:
        for path in GUARDED_GETS + PAGES:
            assert client.get(path).status_code == 200, path
        assert client.post("/analytics/api/reset").status_code == 200
        assert client.post("/analytics/api/retention/run").status_code == 200
        # ...but a cross-site browser form cannot wipe the data.
        evil = {"Origin": "https://evil.example"}
        assert client.post("/analytics/api/reset", headers=evil).status_code == 403
        assert client.post("/analytics/api/retention/run", headers=evil).status_code == 403
        with client.websocket_connect("/analytics/api/stream") as ws:
            assert ws.receive_json()["type"] == "overview"

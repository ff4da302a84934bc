"""Auth: off by default, bearer/basic/cookie with it on, 401/login-redirect/4401 without."""

from __future__ import annotations

import base64

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from mockforge_analytics_plugin.auth import (
    COOKIE_NAME,
    Authenticator,
    AuthMiddleware,
    login_routes,
    safe_next,
    startup_warning,
)
from mockforge_analytics_plugin.config import AnalyticsConfig, AuthConfig


async def _api(request):
    return JSONResponse({"success": True, "data": 1, "error": None, "timestamp": "x"})


async def _page(request):
    return PlainTextResponse("dashboard")


async def _ws(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_json({"type": "overview"})
    await websocket.close()


def _app(config: AnalyticsConfig) -> Starlette:
    routes = [
        Route("/", _page),
        Route("/api/overview", _api),
        Route("/api/export/csv", _api),
        Route("/api/reset", _api, methods=["POST"]),
        Route("/api/retention/run", _api, methods=["POST"]),
        WebSocketRoute("/api/stream", _ws),
        *login_routes(config),
    ]
    sub = Starlette(routes=routes)
    return Starlette(routes=[Mount("/analytics", app=AuthMiddleware(sub, config))])


TOKEN_CFG = AnalyticsConfig(auth=AuthConfig(token="s3cret-token"))
BASIC_CFG = AnalyticsConfig(auth=AuthConfig(username="ada", password="lovelace"))


def _basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def test_auth_off_is_open():
    client = TestClient(_app(AnalyticsConfig()))
    assert client.get("/analytics/api/overview").status_code == 200
    assert client.get("/analytics/").text == "dashboard"
    assert client.post("/analytics/api/reset").status_code == 200
    with client.websocket_connect("/analytics/api/stream") as ws:
        assert ws.receive_json() == {"type": "overview"}
    # No login routes when auth is off.
    assert client.get("/analytics/login").status_code == 404


@pytest.mark.parametrize("path", ["/analytics/api/overview", "/analytics/api/export/csv"])
def test_api_and_export_need_credentials(path):
    client = TestClient(_app(TOKEN_CFG))
    r = client.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer ")
    body = r.json()
    assert body["success"] is False and "authentication required" in body["error"]
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


@pytest.mark.parametrize("path", ["/analytics/api/reset", "/analytics/api/retention/run"])
def test_maintenance_needs_credentials(path):
    client = TestClient(_app(TOKEN_CFG))
    assert client.post(path).status_code == 401
    assert client.post(path, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_pages_redirect_to_login_then_cookie_opens_them():
    client = TestClient(_app(TOKEN_CFG))
    r = client.get("/analytics/?range=1h", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/analytics/login?next=/analytics/%3Frange%3D1h"
    form = client.get(r.headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text
    bad = client.post(
        "/analytics/login", data={"token": "nope", "next": "/analytics/"}, follow_redirects=False
    )
    assert bad.status_code == 401 and "wrong credentials" in bad.text
    ok = client.post(
        "/analytics/login",
        data={"token": "s3cret-token", "next": "/analytics/?range=1h"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/analytics/?range=1h"
    set_cookie = ok.headers["set-cookie"]
    assert COOKIE_NAME in set_cookie and "HttpOnly" in set_cookie
    assert "SameSite=strict" in set_cookie or "samesite=strict" in set_cookie.lower()
    assert "Path=/analytics" in set_cookie
    # The client now holds the cookie: pages, API and stream open.
    assert client.get("/analytics/").text == "dashboard"
    assert client.get("/analytics/api/overview").status_code == 200
    with client.websocket_connect("/analytics/api/stream") as ws:
        assert ws.receive_json() == {"type": "overview"}
    # Logging out clears it.
    client.post("/analytics/logout")
    client.cookies.clear()
    assert client.get("/analytics/api/overview").status_code == 401


def test_stream_without_credentials_is_closed_4401():
    client = TestClient(_app(TOKEN_CFG))
    with client.websocket_connect("/analytics/api/stream") as ws, pytest.raises(WebSocketDisconnect) as exc:
        ws.receive_json()
    assert exc.value.code == 4401
    with client.websocket_connect(
        "/analytics/api/stream", headers={"Authorization": "Bearer s3cret-token"}
    ) as ws:
        assert ws.receive_json() == {"type": "overview"}


def test_basic_auth():
    client = TestClient(_app(BASIC_CFG))
    r = client.get("/analytics/api/overview")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
    assert client.get("/analytics/api/overview", headers=_basic("ada", "wrong")).status_code == 401
    assert client.get("/analytics/api/overview", headers=_basic("bob", "lovelace")).status_code == 401
    assert client.get("/analytics/api/overview", headers=_basic("ada", "lovelace")).status_code == 200
    bad_b64 = {"Authorization": "Basic !!!"}
    assert client.get("/analytics/api/overview", headers=bad_b64).status_code == 401
    ok = client.post(
        "/analytics/login", data={"username": "ada", "password": "lovelace"}, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/analytics/"
    assert client.get("/analytics/").text == "dashboard"


def test_session_cookie_is_signed_and_expires():
    authn = Authenticator(AuthConfig(token="t"))
    value = authn.issue_session(now=1000.0)
    assert authn.check_session(value, now=1001.0)
    assert not authn.check_session(value, now=1000.0 + 13 * 3600)
    expiry, nonce, mac = value.split(".")
    forged = f"{int(expiry) + 10**6}.{nonce}.{mac}"
    assert not authn.check_session(forged, now=1001.0)
    # Another credential does not accept this cookie.
    assert not Authenticator(AuthConfig(token="u")).check_session(value, now=1001.0)
    assert not authn.check_session("garbage", now=1001.0)


def test_forged_cookie_is_rejected():
    client = TestClient(_app(TOKEN_CFG))
    client.cookies.set(COOKIE_NAME, "99999999999.abc.deadbeef")
    assert client.get("/analytics/api/overview").status_code == 401


def test_no_default_credentials():
    with pytest.raises(ValueError):
        Authenticator(AuthConfig())
    with pytest.raises(ValueError):
        Authenticator(AuthConfig(username="a"))
    with pytest.raises(ValueError):
        Authenticator(AuthConfig(token=""))


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/analytics/x?y=1", "/analytics/x?y=1"),
        ("//evil.example/analytics", "/analytics/"),
        ("https://evil.example/", "/analytics/"),
        ("/elsewhere", "/analytics/"),
        ("/analytics\\..", "/analytics/"),
        (None, "/analytics/"),
    ],
)
def test_safe_next(next_url, expected):
    assert safe_next(next_url, "/analytics") == expected


def test_startup_warning():
    off = AnalyticsConfig()
    assert startup_warning(off, "127.0.0.1") is None
    assert startup_warning(off, "::1") is None
    assert startup_warning(off, "localhost") is None
    msg = startup_warning(off, "0.0.0.0")
    assert msg is not None and "any network interface" in msg and "plugins.analytics.auth" in msg
    msg = startup_warning(off, "192.168.1.5")
    assert msg is not None and "192.168.1.5" in msg
    assert startup_warning(TOKEN_CFG, "0.0.0.0") is None
    assert startup_warning(AnalyticsConfig(enabled=False), "0.0.0.0") is None

"""The login page drawn by pages.render_login inside the auth module's routes, under any mount."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from mockforge_analytics_plugin.auth import Authenticator, login_routes
from mockforge_analytics_plugin.config import AnalyticsConfig, AuthConfig
from mockforge_analytics_plugin.pages import page_routes, render_login

TOKEN = "a-token-of-sixteen-chars"


def _client(auth: AuthConfig, mount: str = "/stats") -> httpx.AsyncClient:
    config = AnalyticsConfig(mount_path=mount, auth=auth)
    sub = Starlette(routes=[*login_routes(Authenticator(auth), render=render_login), *page_routes()])
    sub.state.runtime = SimpleNamespace(config=config, clock=lambda: 0.0, version="9.9")
    app = Starlette(routes=[Mount(mount, app=sub)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.mark.parametrize(
    ("auth", "fields"),
    [
        (AuthConfig(token=TOKEN), ["token"]),
        (AuthConfig(username="ada", password=TOKEN), ["username", "password"]),
    ],
)
async def test_login_form_has_the_scheme_fields_and_follows_the_mount(auth, fields):
    async with _client(auth) as c:
        r = await c.get("/stats/login", params={"next": "/stats/errors?x=1"})
    assert r.status_code == 200
    html = r.text
    assert '<form method="post" action="/stats/login">' in html
    for name in fields:
        assert f'name="{name}"' in html
    assert '<input type="hidden" name="next" value="/stats/errors?x=1">' in html
    assert '<link rel="stylesheet" href="/stats/static/app.css?v=9.9">' in html
    assert "data-ws-path" not in html  # no live stream before logging in
    assert '<form class="filters"' not in html and "Export CSV" not in html


async def test_wrong_credentials_say_so_and_hostile_next_is_neutralised():
    async with _client(AuthConfig(token=TOKEN)) as c:
        r = await c.post("/stats/login", data={"token": "nope", "next": '/stats/"><script>alert(1)</script>'})
    assert r.status_code == 401
    assert 'role="alert">wrong credentials</p>' in r.text
    assert "<script>alert(1)</script>" not in r.text


async def test_right_token_sets_the_session_and_returns_to_next():
    async with _client(AuthConfig(token=TOKEN)) as c:
        r = await c.post("/stats/login", data={"token": TOKEN, "next": "/stats/errors"})
    assert r.status_code == 303 and r.headers["location"] == "/stats/errors"
    assert "mockforge_analytics_session=" in r.headers["set-cookie"]

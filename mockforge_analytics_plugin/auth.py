"""Access control for the analytics sub-app: bearer token, basic auth or a signed login cookie.

Off unless ``auth`` is configured; there are never default credentials. ``AuthMiddleware`` wraps
the whole sub-app (pure ASGI), so the API, exports, the stream and the pages are all covered:
API/export requests get a 401 JSON envelope with ``WWW-Authenticate``, pages are redirected to
``<mount>/login?next=...``, and a WebSocket is accepted then closed with code 4401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import inspect
import ipaddress
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import AnalyticsConfig, AuthConfig

__all__ = [
    "COOKIE_NAME",
    "AuthMiddleware",
    "Authenticator",
    "login_routes",
    "safe_next",
    "startup_warning",
]

COOKIE_NAME = "mockforge_analytics_session"
SESSION_SECONDS = 12 * 3600
WS_CLOSE_UNAUTHORIZED = 4401
# Paths (relative to the mount) that never need credentials: the login form itself and the
# static assets it uses; they show no analytics data.
_PUBLIC_PREFIXES = ("/login", "/logout", "/static/")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}

RenderLogin = Callable[[Request, str, str | None], Awaitable[Response] | Response]


def _same(given: str, expected: str) -> bool:
    """Constant-time equality that does not leak the expected length (digests are fixed-size)."""
    a = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    b = hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(a, b)


def _auth_of(config: AnalyticsConfig | AuthConfig | None) -> AuthConfig | None:
    if isinstance(config, AnalyticsConfig):
        return config.auth
    return config


@dataclass(frozen=True)
class Authenticator:
    """Checks credentials and issues/verifies the HMAC-signed session cookie for one auth config."""

    config: AuthConfig

    def __post_init__(self) -> None:
        c = self.config
        if c.token is None and (c.username is None or c.password is None):
            raise ValueError("auth: set either token, or username and password")
        if c.token is not None and c.token == "":
            raise ValueError("auth.token: must not be empty")
        if c.password is not None and c.password == "" and c.token is None:
            raise ValueError("auth.password: must not be empty")

    @property
    def scheme(self) -> str:
        """The HTTP auth scheme clients should use: 'Bearer' or 'Basic'."""
        return "Bearer" if self.config.token is not None else "Basic"

    @property
    def _key(self) -> bytes:
        # Derived from the configured secret, so every Authenticator of one config (middleware,
        # login route, another worker) agrees, and changing the credential revokes all sessions.
        secret = (
            self.config.token
            if self.config.token is not None
            else (f"{self.config.username}\0{self.config.password}")
        )
        return hashlib.sha256(b"mockforge-analytics-session/v1\0" + secret.encode()).digest()

    def check_token(self, token: str) -> bool:
        """True when ``token`` equals the configured bearer token (constant time)."""
        if self.config.token is None:
            return False
        return _same(token, self.config.token)

    def check_password(self, username: str, password: str) -> bool:
        """True when username and password both match (constant time, no short-circuit)."""
        if self.config.username is None or self.config.password is None:
            return False
        user_ok = _same(username, self.config.username)
        pass_ok = _same(password, self.config.password)
        return user_ok & pass_ok

    def check_authorization(self, header: str) -> bool:
        """True when an ``Authorization`` header carries valid Bearer or Basic credentials."""
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            return self.check_token(value)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            return bool(sep) and self.check_password(user, password)
        return False

    def issue_session(self, now: float | None = None) -> str:
        """Return a new signed session value ``<expiry>.<nonce>.<mac>``."""
        expiry = int((time.time() if now is None else now) + SESSION_SECONDS)
        body = f"{expiry}.{secrets.token_urlsafe(12)}"
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def check_session(self, value: str, now: float | None = None) -> bool:
        """True when a session cookie value is correctly signed and not expired."""
        body, _, mac = value.rpartition(".")
        if not body or not mac:
            return False
        expected = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return False
        expiry_text = body.partition(".")[0]
        if not expiry_text.isdigit():
            return False
        return int(expiry_text) > (time.time() if now is None else now)

    def verify_login(self, form: Mapping[str, Any], now: float | None = None) -> str | None:
        """Check a submitted login form (token, or username+password); return a session value or None."""
        token = form.get("token")
        if self.config.token is not None:
            ok = isinstance(token, str) and self.check_token(token)
        else:
            user, password = form.get("username"), form.get("password")
            ok = isinstance(user, str) and isinstance(password, str) and self.check_password(user, password)
        return self.issue_session(now) if ok else None

    def is_authenticated(self, scope: Scope) -> bool:
        """True when an ASGI scope carries a valid Authorization header or session cookie."""
        headers = _headers(scope)
        auth = headers.get("authorization")
        if auth is not None and self.check_authorization(auth):
            return True
        cookie = _cookies(headers.get("cookie", "")).get(COOKIE_NAME)
        return cookie is not None and self.check_session(cookie)


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        out.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
    return out


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out.setdefault(name, value)
    return out


def safe_next(next_url: str | None, mount: str) -> str:
    """Return ``next_url`` if it is a local path under the mount, else the mount's root (no open redirect)."""
    root = mount.rstrip("/") or "/"
    if not next_url or not next_url.startswith("/") or next_url.startswith("//") or "\\" in next_url:
        return root + ("/" if root != "/" else "")
    if any(ord(ch) < 32 for ch in next_url):
        return root + "/"
    prefix = mount.rstrip("/")
    if prefix and not (next_url == prefix or next_url.startswith((prefix + "/", prefix + "?"))):
        return prefix + "/"
    return next_url


class AuthMiddleware:
    """Pure-ASGI guard for the analytics sub-app; a pass-through when auth is not configured."""

    def __init__(
        self, app: ASGIApp, config: AnalyticsConfig | AuthConfig | Authenticator | None = None
    ) -> None:
        self.app = app
        if isinstance(config, Authenticator) or config is None:
            self.authenticator = config
        else:
            auth = _auth_of(config)
            self.authenticator = Authenticator(auth) if auth is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let authenticated (or public) requests through; answer the rest by kind of path."""
        authn = self.authenticator
        if authn is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = get_route_path(scope)
        if scope["type"] == "http" and path.startswith(_PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        if authn.is_authenticated(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Accept first so the client sees the close code (a close before accept is an HTTP 403).
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send(
                {
                    "type": "websocket.close",
                    "code": WS_CLOSE_UNAUTHORIZED,
                    "reason": "authentication required",
                }
            )
            return
        if path == "/api" or path.startswith(("/api/", "/export")):
            await self._unauthorized(scope, receive, send, authn)
            return
        mount = scope.get("root_path", "")
        target = scope.get("path", "/")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        location = f"{mount}/login?next={quote(target, safe='/')}"
        await RedirectResponse(location, status_code=303)(scope, receive, send)

    @staticmethod
    async def _unauthorized(scope: Scope, receive: Receive, send: Send, authn: Authenticator) -> None:
        body = {
            "success": False,
            "data": None,
            "error": "authentication required: send Authorization: "
            + ("Bearer <token>" if authn.scheme == "Bearer" else "Basic credentials")
            + " or log in at the login page",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        challenge = f'{authn.scheme} realm="mockforge-analytics"'
        response = Response(
            json.dumps(body),
            status_code=401,
            media_type="application/json",
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)


def _default_login_page(request: Request, next_url: str, error: str | None) -> Response:
    """A minimal login form, used when the pages module supplies no template."""
    authn: Authenticator | None = request.scope.get("mockforge.authenticator")
    fields = (
        '<label>Token <input type="password" name="token" autocomplete="current-password"></label>'
        if authn is None or authn.scheme == "Bearer"
        else '<label>User <input name="username" autocomplete="username"></label>'
        '<label>Password <input type="password" name="password" autocomplete="current-password"></label>'
    )
    action = html.escape(request.scope.get("root_path", "") + "/login")
    err = f'<p class="error">{html.escape(error)}</p>' if error else ""
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>Analytics login</title></head><body>"
        f'<h1>MockForge analytics</h1>{err}<form method=post action="{action}">{fields}'
        f'<input type=hidden name=next value="{html.escape(next_url)}">'
        "<button type=submit>Log in</button></form></body></html>"
    )
    return HTMLResponse(page, status_code=401 if error else 200)


def login_routes(
    config: AnalyticsConfig | AuthConfig | Authenticator | None,
    render: RenderLogin | None = None,
) -> list[BaseRoute]:
    """Routes ``GET/POST /login`` and ``POST /logout`` for the sub-app ([] when auth is off).

    ``render(request, next_url, error)`` draws the form (the pages module passes its template);
    the form posts ``token`` (or ``username`` and ``password``) and ``next`` to ``<mount>/login``.
    """
    if config is None or isinstance(config, Authenticator):
        authn = config
    else:
        auth = _auth_of(config)
        authn = Authenticator(auth) if auth is not None else None
    if authn is None:
        return []
    draw = render or _default_login_page

    async def _draw(request: Request, next_url: str, error: str | None) -> Response:
        request.scope["mockforge.authenticator"] = authn
        result = draw(request, next_url, error)
        return await result if inspect.isawaitable(result) else result

    async def login_form(request: Request) -> Response:
        mount = request.scope.get("root_path", "")
        return await _draw(request, safe_next(request.query_params.get("next"), mount), None)

    async def login_submit(request: Request) -> Response:
        mount = request.scope.get("root_path", "")
        body = (await request.body())[:8192]
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        next_url = safe_next(form.get("next") or request.query_params.get("next"), mount)
        session = authn.verify_login(form)
        if session is None:
            return await _draw(request, next_url, "wrong credentials")
        response = RedirectResponse(next_url, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            session,
            max_age=SESSION_SECONDS,
            path=mount or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        mount = request.scope.get("root_path", "")
        response = RedirectResponse(f"{mount}/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path=mount or "/", httponly=True, samesite="strict")
        return response

    return [
        Route("/login", login_form, methods=["GET"], name="analytics_login_form"),
        Route("/login", login_submit, methods=["POST"], name="analytics_login"),
        Route("/logout", logout, methods=["POST"], name="analytics_logout"),
    ]


def _is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def startup_warning(config: AnalyticsConfig, listen_host: str) -> str | None:
    """Return the warning to log when analytics is served beyond loopback without auth, else None."""
    if not config.enabled or config.auth is not None or _is_loopback(listen_host):
        return None
    who = (
        "anyone who can reach this machine on any network interface"
        if listen_host.strip("[]") in ("", "0.0.0.0", "::")
        else f"anyone who can reach {listen_host}"
    )
    return (
        f"analytics: {config.mount_path} is served without auth on {listen_host or '*'}: {who} can see "
        "client addresses, request paths, user agents and error messages, and can reset the data. "
        "Set plugins.analytics.auth to {token: ...} or {username: ..., password: ...}."
    )

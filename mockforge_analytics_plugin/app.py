"""Build the Starlette sub-app mounted at `mount_path`: pages, static files and the JSON API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from .api import api_routes
from .api_part2 import api_part2_routes
from .auth import Authenticator, AuthMiddleware, login_routes
from .pages import page_routes, render_login
from .sources_api import sources_routes
from .status_api import status_routes

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["all_api_routes", "build_subapp", "subapp_routes"]


def all_api_routes() -> list[BaseRoute]:
    """Every JSON/export/stream route, as mounted under `<mount_path>/api` (and documented)."""
    return [*status_routes(), *api_routes(), *api_part2_routes(), *sources_routes()]


def subapp_routes(runtime: Runtime, authenticator: Authenticator | None = None) -> list[BaseRoute]:
    """Every route of the sub-app: `/api/...`, the login form (with auth on) and the pages."""
    return [
        Mount("/api", routes=all_api_routes(), name="api"),
        *login_routes(authenticator, render=render_login),
        *page_routes(),
    ]


def build_subapp(runtime: Runtime) -> Starlette:
    """The analytics sub-app; handlers find the runtime at `request.app.state.runtime`."""
    auth = runtime.config.auth
    authenticator = Authenticator(auth) if auth is not None else None
    app = Starlette(
        routes=subapp_routes(runtime, authenticator),
        middleware=[Middleware(AuthMiddleware, config=authenticator)],
    )
    app.state.runtime = runtime
    return app

"""Analytics on any Starlette or FastAPI app, without the MockForge host: one call.

    app = Starlette(routes=[...])
    runtime = install_analytics(app, database_path="analytics.db")

adds the capture middleware, mounts the dashboard and API at ``mount_path`` (before the app's own
routes), and hooks the app's lifespan so the store opens, the flush/roll-up/retention tasks run
and everything is flushed on shutdown together with the app. It reuses the plugin's Runtime, so
it records and serves exactly like the plugin does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Host, Mount, Route, WebSocketRoute

from .config import AnalyticsConfig, AuthConfig
from .config_parse import parse_config
from .runtime import Runtime

__all__ = ["install_analytics"]

logger = logging.getLogger("mockforge.analytics")


def _route_path(route: BaseRoute) -> str | None:
    if isinstance(route, Route | WebSocketRoute | Mount):
        return route.path
    return None


def _check_clash(app: Starlette, mount_path: str) -> None:
    """Refuse a mount that an existing route of the app already serves (named in the error)."""
    prefix = mount_path.rstrip("/")
    for route in app.router.routes:
        if isinstance(route, Host):
            continue
        path = _route_path(route)
        if path is None:
            continue
        if (
            path == prefix
            or path.startswith(prefix + "/")
            or (path and prefix.startswith(path + "/") and isinstance(route, Mount))
        ):
            raise ValueError(
                f"install_analytics: mount_path {mount_path!r} clashes with the app's route {path!r}"
            )


def _section(config_keys: Mapping[str, Any]) -> dict[str, Any]:
    section = dict(config_keys)
    auth = section.get("auth")
    if isinstance(auth, AuthConfig):  # accept the dataclass as well as the config-file mapping
        section["auth"] = {k: v for k, v in dataclasses.asdict(auth).items() if v is not None}
    return section


def install_analytics(
    app: Starlette,
    *,
    mount_path: str = "/analytics",
    database_path: str | Path = "mockforge-analytics.db",
    config: AnalyticsConfig | None = None,
    **config_keys: Any,
) -> Runtime:
    """Add capture middleware, the ``mount_path`` sub-app and lifespan hooks to ``app``; return the Runtime.

    ``config_keys`` are the keys of the plugin's config section (``auth={"token": ...}``,
    ``flush_interval_seconds=1``, ``retention={...}``...), validated the same way; a relative
    ``database_path`` is taken from the current directory. Pass ``config`` instead to use an
    AnalyticsConfig as it is. Call it before the app starts serving.
    """
    if config is None:
        section = _section({"mount_path": mount_path, "database_path": str(database_path), **config_keys})
        config = parse_config(section, data_dir=Path.cwd())
    elif config_keys:
        raise TypeError("install_analytics: pass either config= or config keys, not both")
    if not config.enabled:
        raise ValueError("install_analytics: the config has enabled=false")
    _check_clash(app, config.mount_path)
    runtime = Runtime(config=config, instance=config.instance or socket.gethostname())
    # The capture middleware wraps the whole app (the mount itself is never recorded).
    entry = runtime.middleware()
    app.add_middleware(entry.cls, *entry.args, **entry.kwargs)
    # Before the app's own routes, so a catch-all route cannot shadow the dashboard.
    app.router.routes.insert(0, runtime.mount())
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(inner_app: Any) -> AsyncIterator[Any]:
        # The store opens before the app's start-up and is flushed and closed after its shutdown.
        async with runtime.lifespan(), original(inner_app) as state:
            yield state

    app.router.lifespan_context = lifespan
    if config.auth is None:
        logger.info(
            "analytics mounted at %s without auth: fine on 127.0.0.1; set auth before listening on "
            "other interfaces (everyone who can reach the app can see client addresses and paths)",
            config.mount_path,
        )
    return runtime

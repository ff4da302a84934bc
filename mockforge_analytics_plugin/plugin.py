"""The pluggy hook implementations the host calls (entry point `analytics`, group mockforge.plugins).

This module never imports the host: the hookspecs are the contract, and pluggy matches our
implementations by name under the project name "mockforge".
"""

from __future__ import annotations

import contextlib
from typing import Any

import pluggy
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from .config_parse import parse_config
from .runtime import Runtime

__all__ = [
    "PLUGIN_NAME",
    "hookimpl",
    "mockforge_configure",
    "mockforge_lifespan",
    "mockforge_links",
    "mockforge_middleware",
    "mockforge_routes",
]

PLUGIN_NAME = "analytics"
hookimpl = pluggy.HookimplMarker("mockforge")


def _runtime(host: Any) -> Runtime | None:
    return host.state.get(PLUGIN_NAME)


@hookimpl
def mockforge_configure(host: Any, config: dict[str, Any]) -> None:
    """Validate `plugins.analytics` and create this host's runtime (nothing is opened yet)."""
    section = host.plugin_config(PLUGIN_NAME)
    if section is None:
        return
    cfg = parse_config(section, data_dir=host.data_dir)
    if not cfg.enabled:
        return
    instance = cfg.instance or f"{host.listen_host}:{host.listen_port}"
    runtime = Runtime(config=cfg, instance=instance, logger=host.logger.getChild(PLUGIN_NAME))
    host.state[PLUGIN_NAME] = runtime
    from .auth import startup_warning

    warning = startup_warning(cfg, host.listen_host)
    if warning:
        host.logger.warning(warning)


@hookimpl
def mockforge_middleware(host: Any) -> list[Middleware]:
    """The capture middleware, wrapping the whole host app."""
    runtime = _runtime(host)
    return [runtime.middleware()] if runtime else []


@hookimpl
def mockforge_routes(host: Any) -> list[BaseRoute]:
    """The sub-app with pages and API, mounted at `mount_path`."""
    runtime = _runtime(host)
    return [runtime.mount()] if runtime else []


@hookimpl
def mockforge_lifespan(host: Any, app: Any) -> contextlib.AbstractAsyncContextManager[Any] | None:
    """Open the store and run flush, roll-up and retention while the host serves."""
    runtime = _runtime(host)
    return runtime.lifespan() if runtime else None


@hookimpl
def mockforge_links(host: Any) -> list[dict[str, str]]:
    """A link to the dashboard for the host's index page."""
    runtime = _runtime(host)
    if runtime is None:
        return []
    return [{"title": "Traffic analytics", "href": runtime.config.mount_path + "/"}]

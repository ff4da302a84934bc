"""Build the host's Starlette app: validate config, load plugins, run their hooks, add mock routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Host, Mount

from . import __version__
from .config import ConfigError, HostConfig, validate_config
from .context import HostContext
from .introspection import HOST_STATE_KEY, RootIndexRoute
from .mock_routes import MockScopeMiddleware, build_mock_routes, install_injected_error_filter, make_not_found
from .plugins import PluginError, call_each, load_plugins

__all__ = ["STARTUP_ERRORS", "build_app", "is_loopback"]

# What build_app raises for a bad config or plugin: the CLI prints `error: <message>`, exits 2.
STARTUP_ERRORS = (ConfigError, PluginError)


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(
    config: dict[str, Any] | HostConfig,
    *,
    plugins: dict[str, Any] | None = None,
    discover: bool | None = None,
    config_path: Path | None = None,
    listen_host: str | None = None,
    listen_port: int | None = None,
    demo_traffic: bool = False,
    env: Mapping[str, str] | None = None,
    logger: logging.Logger | None = None,
    freeze_gc: bool = False,
) -> Starlette:
    """Build one host (its own PluginManager and metrics registry; no globals).

    `plugins` registers objects by name (tests); `discover` (default: True unless `plugins` is
    given) adds installed entry points and MOCKFORGE_EXTRA_PLUGINS. Raises ConfigError or
    PluginError with a one-line message naming the key or plugin. `freeze_gc` (the CLI sets it)
    calls gc.freeze() once every plugin has started, and gc.unfreeze() at shutdown.
    """
    cfg = config if isinstance(config, HostConfig) else validate_config(config)
    listen_host = listen_host or cfg.host or "127.0.0.1"
    listen_port = listen_port if listen_port is not None else (cfg.port if cfg.port is not None else 8080)
    config_path = Path(config_path).resolve() if config_path is not None else None
    host = HostContext(
        config=cfg.raw,
        config_path=config_path,
        data_dir=config_path.parent if config_path is not None else Path.cwd(),
        listen_host=listen_host,
        listen_port=listen_port,
        loopback_only=is_loopback(listen_host),
        workspace=cfg.workspace,
        environment=cfg.environment,
        logger=logger or logging.getLogger("mockforge.host"),
        version=__version__,
    )
    pm, infos = load_plugins(
        cfg.plugins, plugins=plugins, discover=plugins is None if discover is None else discover, env=env
    )
    by_name = {info.name: info for info in infos}
    host.state[HOST_STATE_KEY] = {"plugins": infos, "routes": cfg.routes}

    # configure: each plugin separately, so an error names it.
    for impl in pm.hook.mockforge_configure.get_hookimpls():
        name = pm.get_name(impl.plugin) or impl.plugin_name
        args = {"host": host, "config": cfg.raw}
        try:
            impl.function(**{arg: args[arg] for arg in impl.argnames})
        except Exception as exc:
            raise PluginError(f"plugin '{name}': {exc}") from None

    mock_routes = build_mock_routes(cfg)
    plugin_routes: list[BaseRoute] = []
    for name, routes in call_each(pm, "mockforge_routes", host=host):
        for route in routes or []:
            _check_clash(name, route, cfg)
            plugin_routes.append(route)

    middleware = [Middleware(MockScopeMiddleware, workspace=cfg.workspace, environment=cfg.environment)]
    for _name, entries in call_each(pm, "mockforge_middleware", host=host):
        middleware.extend(entries or [])

    for name, links in call_each(pm, "mockforge_links", host=host):
        by_name[name].links.extend(_check_links(name, links or []))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for name, manager in call_each(pm, "mockforge_lifespan", host=host, app=app):
                if manager is None:
                    continue
                host.logger.debug("entering lifespan of plugin %r", name)
                await stack.enter_async_context(manager)
            if demo_traffic:
                from .demo_traffic import run_demo_traffic

                task = asyncio.create_task(run_demo_traffic(host, cfg), name="mockforge-demo-traffic")
                stack.push_async_callback(_cancel, task)
            if freeze_gc:
                # Start-up is over: what it allocated (modules, the app, plugin state, ~50k objects)
                # moves out of the collector's reach, so a full collection walks only what was made
                # since. Unfrozen: ~26 ms a full pass on a slow VM, frozen ~3 ms
                # (`flush_bench.py --with-host [--gc-freeze]`, docs/flush.md). Process-wide: the host's call.
                gc.collect()
                gc.freeze()
                stack.callback(gc.unfreeze)
            yield

    # The index at `/` comes last: a mock route answering `GET /` (or a plugin's) wins over it.
    routes = [*plugin_routes, *mock_routes, RootIndexRoute(host)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.router.default = make_not_found(cfg)
    app.state.host = host
    app.state.plugin_manager = pm
    app.state.host_config = cfg
    # The server logs an exception a `raise:` route raised on purpose as one line, no traceback.
    install_injected_error_filter()
    return app


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Stop a background task and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _route_prefix(route: BaseRoute) -> str | None:
    """The path a plugin route or mount answers under."""
    if isinstance(route, Host):
        return None
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    return path.rstrip("/") if isinstance(route, Mount) else path


def _check_clash(plugin: str, route: BaseRoute, cfg: HostConfig) -> None:
    """A plugin route must not shadow a mock route (same path, or a mock under a plugin's mount)."""
    prefix = _route_prefix(route)
    if prefix is None:
        return
    under_mount = isinstance(route, Mount) or prefix.endswith("/")
    for i, spec in enumerate(cfg.routes):
        clash = spec.path == prefix or (
            under_mount and (spec.path.startswith(prefix.rstrip("/") + "/") or prefix == "")
        )
        if clash:
            raise PluginError(
                f"plugin '{plugin}': its route {prefix or '/'} clashes with mock route "
                f"'{spec.method} {spec.path}' (routes[{i}])"
            )


def _check_links(plugin: str, links: list[Any]) -> list[dict[str, str]]:
    """Links must be {"title": str, "href": str}."""
    out = []
    for link in links:
        ok = isinstance(link, dict) and all(isinstance(link.get(k), str) for k in ("title", "href"))
        if not ok:
            raise PluginError(f"plugin '{plugin}': mockforge_links must return {{title, href}} string dicts")
        out.append({"title": link["title"], "href": link["href"]})
    return out

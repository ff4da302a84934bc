# mypy: disable-error-code="empty-body"
"""The hook contract between the MockForge example host and its plugins.

Plugins implement these hooks with their own marker, ``pluggy.HookimplMarker("mockforge")``
(they never import ``example_host``). Every hook receives ``host``, the
:class:`example_host.context.HostContext` of the host being built; pluggy lets an
implementation omit arguments it does not use. No hook is ``firstresult``: list-returning hooks
collect from every plugin.

Order of calls while a host is built (``example_host.app.build_app``):

1. ``mockforge_configure`` once per enabled plugin (each plugin's implementation is called
   separately so that an error names the plugin);
2. ``mockforge_routes`` (placed before the mock routes);
3. ``mockforge_middleware`` (wraps the whole app);
4. ``mockforge_links`` (index page ``GET /__mockforge/`` and ``plugins.json``);
5. ``mockforge_lifespan`` when the server starts; the host enters every returned context
   manager with one ``AsyncExitStack`` inside its own lifespan and exits them in reverse order
   when it stops (SIGINT/SIGTERM lead to a clean shutdown, so the exits run).

Plugins that are disabled (``enabled: false``) or have no ``plugins.<name>`` section are
unregistered before any hook runs.

ASGI scope contract
-------------------
For every HTTP request and WebSocket session that reaches the host's router, the host sets
``scope["mockforge"]`` to a dict. For a matched mock route it is filled in by the route handler
*before* any injected sleep; middleware reads it while the response starts or after the app
returns. Starlette passes the same ``scope`` dict down the middleware stack, so the dict a
middleware passed down is the one that gets filled. Keys:

- ``matched`` (bool): a mock route matched the request;
- ``route_template`` (str | None): the mock's path template, e.g. ``/api/users/{id}``;
  ``None`` when unmatched;
- ``route_id`` (str | None): a stable id, the configured ``id`` or ``"GET /api/users/{id}"``
  (``"WS /ws/echo"`` for WebSocket routes); ``None`` when unmatched;
- ``workspace`` (str), ``environment`` (str): from the host config (set even when unmatched);
- ``injected_latency_ms`` (float): the delay actually slept, 0.0 if none;
- ``fault_injected`` (bool): the response is an injected fault.

Requests to plugin routes, ``/metrics``, ``/__mockforge/*`` and the host's index at ``/``
carry ``matched=False`` with ``route_template=None``, and so do the host's 404 (no mock route
matches) and its 405 (a mock route has the path but not the method). Starlette (>= 1.7) also
sets ``scope["route"]`` for whatever route matched (inside a ``Mount`` its path is relative to
the mount; for a 405 it is the mock route whose path matched).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import BaseRoute

    from .context import HostContext

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "mockforge"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def mockforge_configure(host: HostContext, config: dict[str, Any]) -> None:
    """Read and validate the plugin's own config section.

    Fires once per host for each enabled plugin, before the app is built and before any other
    hook. A plugin usually reads ``host.plugin_config("<name>")`` and keeps what it parsed in
    ``host.state["<name>"]``.

    :param host: the host context.
    :param config: the whole parsed host config (a dict).
    :return: ignored.
    :raises Exception: (typically ``ValueError``) when the section is invalid; the message
        should name the key. The host then prints one line
        ``error: plugin '<name>': <message>`` to stderr and exits with status 2.
    """


@hookspec
def mockforge_middleware(host: HostContext) -> list[Middleware]:
    """Return Starlette ``Middleware`` entries that wrap the whole host app.

    Fires once per host, after ``mockforge_routes``. The lists of all plugins are
    concatenated in hook-call order; the first entry is the outermost.

    :param host: the host context.
    :return: a list of ``starlette.middleware.Middleware`` (may be empty).
    """


@hookspec
def mockforge_routes(host: HostContext) -> list[BaseRoute]:
    """Return routes or mounts the plugin serves (e.g. ``Mount("/analytics", app=...)``).

    Fires once per host, after every ``mockforge_configure``. The routes are placed before the
    mock routes, in hook-call order. A route whose path prefix clashes with a mock route's (a
    mock route under ``/analytics`` while a plugin mounts ``/analytics``) stops start-up with
    an error naming both.

    :param host: the host context.
    :return: a list of ``starlette.routing.BaseRoute`` (may be empty).
    """


@hookspec
def mockforge_lifespan(
    host: HostContext, app: Starlette
) -> contextlib.AbstractAsyncContextManager[Any] | None:
    """Return an async context manager the host enters for as long as it serves.

    Fires when the host's lifespan starts. The host enters every returned manager with one
    ``AsyncExitStack`` (in hook-call order) and exits them in reverse order when it stops,
    including on SIGINT/SIGTERM, so buffered data can be flushed. A mounted sub-app never gets
    lifespan events of its own; this hook is how a plugin starts and stops background work.

    :param host: the host context.
    :param app: the host's Starlette application.
    :return: an async context manager, or ``None`` for nothing to run.
    :raises Exception: an error while entering stops start-up.
    """


@hookspec
def mockforge_links(host: HostContext) -> list[dict[str, str]]:
    """Return links the host shows on its index page and in ``plugins.json``.

    Fires once per host while the app is built. Each entry is ``{"title": str, "href": str}``;
    the index page ``GET /__mockforge/`` escapes both.

    :param host: the host context.
    :return: a list of link dicts (may be empty).
    """

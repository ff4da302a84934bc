"""Default plugin: `GET /__mockforge/plugins.json` and the host's index page `GET /__mockforge/`;
`RootIndexRoute`, which the host puts at `/` after the mock routes."""

from __future__ import annotations

import html
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from .config import RouteSpec
from .context import HostContext
from .hookspecs import hookimpl

__all__ = [
    "HOST_STATE_KEY",
    "INDEX_PATH",
    "RootIndexRoute",
    "index_document",
    "plugins_document",
    "render_index",
    "route_summaries",
    "wants_html",
]

# host.state key where the host keeps its own bookkeeping (plugin infos, mock routes).
HOST_STATE_KEY = "__host__"
INDEX_PATH = "/__mockforge/"
_HTML_TYPES = ("text/html", "application/xhtml+xml")


def plugins_document(host: HostContext) -> dict[str, Any]:
    """The plugins.json body: the host's version and every plugin's name, version, hooks, state, links."""
    infos = host.state.get(HOST_STATE_KEY, {}).get("plugins", [])
    return {
        "host": {"name": "mockforge-example-host", "version": host.version},
        "workspace": host.workspace,
        "environment": host.environment,
        "plugins": [info.as_dict() for info in infos],
    }


def route_summaries(host: HostContext) -> list[dict[str, Any]]:
    """The configured mock routes in order: id, method, path, status and kind (http/websocket/raise)."""
    specs: tuple[RouteSpec, ...] = host.state.get(HOST_STATE_KEY, {}).get("routes", ())
    out = []
    for spec in specs:
        if spec.websocket is not None:
            kind, status = "websocket", 101
        elif spec.raise_message is not None:
            kind, status = "raise", 500
        else:
            kind, status = "http", spec.status
        out.append({"id": spec.id, "method": spec.method, "path": spec.path, "status": status, "kind": kind})
    return out


def index_document(host: HostContext) -> dict[str, Any]:
    """The index as JSON: host, workspace, environment, mock routes, plugin links and plugins."""
    doc = plugins_document(host)
    links = [
        {"plugin": plugin["name"], "title": link["title"], "href": link["href"]}
        for plugin in doc["plugins"]
        for link in plugin["links"]
    ]
    return {
        "host": doc["host"],
        "workspace": doc["workspace"],
        "environment": doc["environment"],
        "index": INDEX_PATH,
        "routes": route_summaries(host),
        "links": links,
        "plugins": doc["plugins"],
    }


def render_index(host: HostContext) -> str:
    """The index page: plugin links, mock routes and plugins, every value escaped."""
    doc = index_document(host)
    links = "".join(
        f"<li>{_link(link)} <small>({html.escape(link['plugin'])})</small></li>" for link in doc["links"]
    )
    routes = "".join(
        "<tr>"
        f"<td>{html.escape(route['method'])}</td><td><code>{html.escape(route['path'])}</code></td>"
        f"<td>{route['status']}</td><td>{html.escape(route['kind'])}</td>"
        f"<td>{html.escape(route['id'])}</td>"
        "</tr>"
        for route in doc["routes"]
    )
    rows = []
    for plugin in doc["plugins"]:
        plugin_links = " ".join(_link(link) for link in plugin["links"])
        state = "on" if plugin["enabled"] else "off"
        rows.append(
            "<tr>"
            f"<td>{html.escape(plugin['name'])}</td><td>{html.escape(str(plugin['version'] or ''))}</td>"
            f"<td>{state}</td><td>{html.escape(', '.join(plugin['hooks']))}</td><td>{plugin_links}</td>"
            "</tr>"
        )
    title = f"MockForge example host {html.escape(host.version)}"
    routes_section = (
        "<table><thead><tr><th>method</th><th>path</th><th>status</th><th>kind</th><th>id</th></tr>"
        f"</thead><tbody>{routes}</tbody></table>"
        if routes
        else "<p>No mock routes configured.</p>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title></head><body>"
        f"<h1>{title}</h1>"
        f"<p>workspace {html.escape(host.workspace)}, environment {html.escape(host.environment)}</p>"
        f"<h2>Links</h2><ul>{links}</ul>"
        f"<h2>Mock routes</h2>{routes_section}"
        "<h2>Plugins</h2>"
        "<table><thead><tr><th>plugin</th><th>version</th><th>state</th><th>hooks</th><th>links</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
        '<p><a href="/__mockforge/plugins.json">plugins.json</a></p>'
        "</body></html>"
    )


def wants_html(accept: str) -> bool:
    """Whether an Accept header prefers HTML to JSON (a browser's does; `*/*` alone does not)."""
    best = {"html": 0.0, "json": 0.0}
    for part in accept.split(","):
        media, *params = part.split(";")
        media = media.strip().lower()
        kind = "html" if media in _HTML_TYPES else "json" if media == "application/json" else None
        if kind is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        best[kind] = max(best[kind], q)
    return best["html"] > 0.0 and best["html"] >= best["json"]


class RootIndexRoute(Route):
    """`GET /` for the host itself: browsers get 303 to `/__mockforge/`, other clients the index JSON.

    The host places it after the mock routes, so a mock route answering `GET /` wins. It matches
    only GET and HEAD: another method on `/` stays a question for the mock routes (their 405, or
    the 404).
    """

    # The JSON 405 of a mock route on `/` lists GET as allowed because of this route.
    mockforge_host_page = True

    def __init__(self, host: HostContext) -> None:
        async def root(request: Request) -> Response:
            headers = {"Vary": "Accept"}
            if wants_html(request.headers.get("accept", "")):
                location = request.scope.get("root_path", "").rstrip("/") + INDEX_PATH
                return RedirectResponse(location, status_code=303, headers=headers)
            return JSONResponse(index_document(host), headers=headers)

        super().__init__("/", root, methods=["GET"], name="mockforge_root")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match `/` for GET and HEAD only."""
        if scope["type"] == "http" and scope.get("method") not in ("GET", "HEAD"):
            return Match.NONE, {}
        return super().matches(scope)


def _link(link: dict[str, Any]) -> str:
    """One escaped anchor."""
    href = html.escape(str(link.get("href", "")))
    return f'<a href="{href}">{html.escape(str(link.get("title", "")))}</a>'


@hookimpl
def mockforge_routes(host: HostContext) -> list[BaseRoute]:
    """Serve the index page and plugins.json."""

    async def plugins_json(request: Request) -> Response:
        return JSONResponse(plugins_document(host))

    async def index(request: Request) -> Response:
        return HTMLResponse(render_index(host))

    return [
        Route("/__mockforge/plugins.json", plugins_json, methods=["GET"], name="mockforge_plugins"),
        Route("/__mockforge/", index, methods=["GET"], name="mockforge_index"),
    ]


@hookimpl
def mockforge_links(host: HostContext) -> list[dict[str, str]]:
    """Link plugins.json from the index page."""
    return [{"title": "Plugins (JSON)", "href": "/__mockforge/plugins.json"}]

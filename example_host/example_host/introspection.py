"""Default plugin: `GET /__mockforge/plugins.json` and the host's index page `GET /__mockforge/`."""

from __future__ import annotations

import html
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .context import HostContext
from .hookspecs import hookimpl

__all__ = ["HOST_STATE_KEY", "plugins_document", "render_index"]

# host.state key where the host keeps its own bookkeeping (plugin infos, links).
HOST_STATE_KEY = "__host__"


def plugins_document(host: HostContext) -> dict[str, Any]:
    """The plugins.json body: the host's version and every plugin's name, version, hooks, state, links."""
    infos = host.state.get(HOST_STATE_KEY, {}).get("plugins", [])
    return {
        "host": {"name": "mockforge-example-host", "version": host.version},
        "workspace": host.workspace,
        "environment": host.environment,
        "plugins": [info.as_dict() for info in infos],
    }


def render_index(host: HostContext) -> str:
    """The index page: plugins and their links, every value escaped."""
    doc = plugins_document(host)
    rows = []
    for plugin in doc["plugins"]:
        links = " ".join(_link(link) for link in plugin["links"])
        state = "on" if plugin["enabled"] else "off"
        rows.append(
            "<tr>"
            f"<td>{html.escape(plugin['name'])}</td><td>{html.escape(str(plugin['version'] or ''))}</td>"
            f"<td>{state}</td><td>{html.escape(', '.join(plugin['hooks']))}</td><td>{links}</td>"
            "</tr>"
        )
    title = f"MockForge example host {html.escape(host.version)}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title></head><body>"
        f"<h1>{title}</h1>"
        f"<p>workspace {html.escape(host.workspace)}, environment {html.escape(host.environment)}</p>"
        "<table><thead><tr><th>plugin</th><th>version</th><th>state</th><th>hooks</th><th>links</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
        '<p><a href="/__mockforge/plugins.json">plugins.json</a></p>'
        "</body></html>"
    )


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

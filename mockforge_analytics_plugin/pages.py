"""The dashboard pages under `<mount_path>`: server-rendered Jinja, filters in the URL.

Each handler validates its query through :func:`params.parse_params` (a bad value renders the page
with an error state naming the parameter, HTTP 400), reads its data through :mod:`pagedata`
and renders a template from the ``mockforge_analytics_plugin.templates`` package (autoescape on).
Static assets are served from the same package, by whitelist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from . import pagedata
from .charts import format_value
from .params import COMMON_PARAMS, ParamError, QueryParams, parse_params

__all__ = ["CSP", "STATIC_FILES", "page_routes", "render_login", "template_environment"]

log = logging.getLogger("mockforge.analytics.pages")

STATIC_FILES = {"app.css": "text/css; charset=utf-8", "live.js": "text/javascript; charset=utf-8"}
# Everything comes from the plugin itself; `connect-src 'self'` also covers ws(s) to this host.
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
RANGES = (
    ("300", "last 5 min"),
    ("900", "last 15 min"),
    ("3600", "last 1 h"),
    ("21600", "last 6 h"),
    ("86400", "last 24 h"),
    ("604800", "last 7 d"),
    ("2592000", "last 30 d"),
    ("", "custom (start/end)"),
)
TEXT_FILTERS = (
    ("endpoint", "Endpoint", "/api/users/{id} or /api/*"),
    ("status_code", "Status", "500, 5xx or 4xx,503"),
    ("workspace_id", "Workspace", ""),
    ("environment", "Environment", ""),
    ("client", "Client", "client id or address"),
    ("test_run", "Test run", ""),
)
# Shown only when a Prometheus source is configured: queries read source=middleware by default.
SOURCE_FILTER = ("source", "Source", "middleware (default), prometheus")
# The filter state carried in links between pages: the window and the filter dimensions.
_CARRIED = (*sorted(COMMON_PARAMS), "client")
_EXPORT_DATASETS = {
    "overview": "metrics",
    "endpoint": "metrics",
    "endpoints": "endpoints",
    "errors": "errors",
    "clients": "clients",
}
_VIEW_ONLY = ("duration", "start_time", "end_time", "granularity")  # the window, not a filter
_NOT_HERE = {
    "client": "The client filter applies on the Errors, Clients and Requests pages",
    "granularity": "This page shows no time series",
}


def template_environment() -> jinja2.Environment:
    """The Jinja environment for the pages: package loader, autoescape on, helpers as globals."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mockforge_analytics_plugin.templates", "."),
        autoescape=True,  # every template is HTML; request text must never be trusted
        undefined=jinja2.ChainableUndefined,
        trim_blocks=False,
    )
    env.globals.update(fmt=format_value, urlencode=urlencode, iso=_iso, clock=_clock, dict=dict)
    return env


def _iso(ts: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""


def _clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "\u2013"


@dataclass(frozen=True, slots=True)
class PageSpec:
    """What a page accepts and how it gets its data."""

    name: str
    template: str
    title: str
    path: str
    gather: Callable[[Any, QueryParams, Mapping[str, str]], Awaitable[dict[str, Any]]]
    allowed: frozenset[str] = COMMON_PARAMS
    sorts: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    group_bys: tuple[str, ...] = ()
    heading: Callable[[Mapping[str, str]], str] | None = None
    required: tuple[str, ...] = field(default=())
    in_nav: bool = True


def _clean_query(request: Request) -> dict[str, str] | ParamError:
    """The query as a dict, with blank form fields dropped (a plain GET form submits them all)."""
    out: dict[str, str] = {}
    for name in request.query_params:
        values = [v for v in request.query_params.getlist(name) if v.strip() != ""]
        if len(values) > 1:
            return ParamError(name, "given more than once; pass one value (comma lists where accepted)")
        if values:
            out[name] = values[0]
    return out


def _query_string(filters: Mapping[str, str], keep: Collection[str]) -> str:
    return urlencode([(k, v) for k, v in filters.items() if k in keep])


def _window_text(qp: QueryParams, buckets: bool) -> str:
    fmt = "%Y-%m-%d %H:%M"
    text = f"{time.strftime(fmt, time.gmtime(qp.start))} to {time.strftime(fmt, time.gmtime(qp.end))} UTC"
    return text + (f" · {qp.granularity} buckets" if buckets else "")


def _base_context(
    request: Request, spec: PageSpec, filters: Mapping[str, str], specs: Mapping[str, PageSpec]
) -> dict[str, Any]:
    runtime = request.app.state.runtime
    mount = request.scope.get("root_path", "") or runtime.config.mount_path.rstrip("/")
    # each link carries only what its target page accepts, so following a link never yields a 400
    nav = [
        (s.name, s.title, s.path, _query_string(filters, s.allowed & set(_CARRIED)))
        for s in specs.values()
        if s.in_nav
    ]
    carried = {k: v for k, v in filters.items() if k in _CARRIED and k in spec.allowed}
    live_keys = set(COMMON_PARAMS) - {"start_time", "end_time", "granularity"}
    # Reset keeps what identifies the page (the endpoint detail's endpoint and method)
    hidden = [(k, filters[k]) for k in spec.required if k in filters]
    detail = specs.get("endpoint")
    return {
        "request": request,
        "mount": mount,
        "page": spec.name,
        "path": spec.path,
        "title": spec.title,
        "heading": spec.heading(filters) if spec.heading else spec.title,
        "nav": nav,
        "nav_query": _query_string(filters, specs["overview"].allowed & set(_CARRIED))
        if "overview" in specs
        else "",
        "nav_filters": {k: v for k, v in carried.items() if k in COMMON_PARAMS},
        "detail_query": {
            k: v
            for k, v in filters.items()
            if detail and k in detail.allowed and k in _CARRIED and k not in ("endpoint", "method")
        },
        "client_query": {k: v for k, v in filters.items() if k in specs["requests"].allowed and k in _CARRIED}
        if "requests" in specs
        else {},
        "reset_query": urlencode(hidden),
        "filters": dict(filters),
        "allowed": spec.allowed,
        "not_here": _NOT_HERE,
        "ranges": RANGES,
        "text_filters": TEXT_FILTERS
        + ((SOURCE_FILTER,) if getattr(runtime.config, "prometheus_url", None) else ()),
        "client_applies": "client" in spec.allowed,
        "show_filters": True,
        "host": request.headers.get("host", "127.0.0.1"),
        "version": getattr(runtime, "version", ""),
        # live updates follow a rolling window only; a fixed start/end window does not move
        "live": not ({"start_time", "end_time"} & set(filters)),
        "live_filters_json": json.dumps({k: v for k, v in filters.items() if k in live_keys}, sort_keys=True),
        "export_dataset": _EXPORT_DATASETS.get(spec.name),
        "export_query": urlencode(carried),
        "test_run_header": runtime.config.test_run_header,
        "window_text": "",
        "active_filters": ", ".join(f"{k} {v}" for k, v in carried.items() if k not in _VIEW_ONLY),
    }


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


def _handler(
    env: jinja2.Environment, spec: PageSpec, specs: Mapping[str, PageSpec]
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        runtime = request.app.state.runtime
        query = _clean_query(request)
        filters: Mapping[str, str] = query if isinstance(query, dict) else {}
        ctx = _base_context(request, spec, filters, specs)
        status = 200
        try:
            if isinstance(query, ParamError):
                raise query
            for name in spec.required:
                if name not in filters:
                    raise ParamError(name, "is required on this page")
            qp = parse_params(
                filters,
                allowed=spec.allowed,
                now=runtime.clock(),
                config=runtime.config,
                sorts=spec.sorts,
                extras=spec.extras,
                group_bys=spec.group_bys,
            )
            ctx["window_text"] = _window_text(qp, "granularity" in spec.allowed)
            ctx.update(await spec.gather(runtime, qp, filters))
        except ParamError as exc:
            status = 400
            ctx.update(error=exc.message, error_param=exc.param)
        except pagedata.StoreUnavailableError as exc:
            status = 503
            ctx.update(error=str(exc))
        except Exception as exc:  # the page says what failed instead of a traceback
            log.exception("analytics page %s failed", spec.name)
            status = 503
            ctx.update(
                error=f"Reading the analytics data failed ({type(exc).__name__}). "
                "The mock server keeps serving; retry in a moment or check the host log."
            )
        html = env.get_template(spec.template).render(ctx)
        return HTMLResponse(html, status_code=status, headers=_headers())

    return handle


def _endpoint_heading(filters: Mapping[str, str]) -> str:
    return f"{filters.get('method', '')} {filters.get('endpoint', '')}".strip()


_WINDOW = ("duration", "start_time", "end_time")


def _clients_h(filters: Mapping[str, str]) -> str:
    return "Clients and test runs"


def _specs() -> dict[str, PageSpec]:
    """Every page, with the parameters it honours (the API route's set for the same data)."""
    no_buckets = COMMON_PARAMS - {"granularity"}
    specs = [
        PageSpec("overview", "overview.html", "Overview", "/", pagedata.overview_page,
                 allowed=COMMON_PARAMS | {"group_by"}, group_bys=pagedata.GROUP_BYS),
        PageSpec("endpoints", "endpoints.html", "Endpoints", "/endpoints", pagedata.endpoints_page,
                 allowed=no_buckets | {"sort", "limit"}, sorts=pagedata.ENDPOINT_SORTS, extras=("order",)),
        PageSpec("endpoint", "endpoint.html", "Endpoint", "/endpoint", pagedata.endpoint_page,
                 heading=_endpoint_heading, required=("endpoint", "method"), in_nav=False),
        PageSpec("errors", "errors.html", "Errors", "/errors", pagedata.errors_page,
                 allowed=no_buckets | {"client", "limit"}),
        PageSpec("clients", "clients.html", "Clients", "/clients", pagedata.clients_page, heading=_clients_h,
                 allowed=frozenset({*_WINDOW, *pagedata.CLIENT_FILTERS, "limit"})),
        PageSpec("requests", "requests.html", "Requests", "/requests", pagedata.requests_page,
                 allowed=no_buckets - {"source", "instance"} | {"client", "limit"}),
    ]  # fmt: skip
    return {s.name: s for s in specs}


def render_login(request: Request, next_url: str, error: str | None) -> Response:
    """Draw the login form (``auth.login_routes(config, render=render_login)`` calls this)."""
    env = getattr(request.app.state, "pages_env", None) or template_environment()
    request.app.state.pages_env = env
    runtime = request.app.state.runtime
    spec = PageSpec("login", "login.html", "Log in", "/login", pagedata.no_data, in_nav=False)
    ctx = _base_context(request, spec, {}, {})
    authn = request.scope.get("mockforge.authenticator")
    ctx.update(
        show_filters=False,
        live=False,
        export_dataset=None,
        nav=(),
        login_error=error,
        next_url=next_url,
        scheme=getattr(authn, "scheme", "Bearer"),
        version=getattr(runtime, "version", ""),
    )
    html = env.get_template("login.html").render(ctx)
    return HTMLResponse(html, status_code=401 if error else 200, headers=_headers())


def _static_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


async def static_file(request: Request) -> Response:
    """Serve a whitelisted asset from the templates package, with type and caching headers."""
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    body = resources.files("mockforge_analytics_plugin.templates").joinpath("static", name).read_bytes()
    etag = _static_etag(body)
    headers = {"ETag": etag, "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=STATIC_FILES[name], headers=headers)


def page_routes() -> list[BaseRoute]:
    """Routes of the pages and static assets, to mount at `<mount_path>` (login comes from auth)."""
    env = template_environment()
    specs = _specs()
    routes: list[BaseRoute] = [
        Route(spec.path, _handler(env, spec, specs), methods=["GET"], name=f"page_{spec.name}")
        for spec in specs.values()
    ]
    routes.append(Route("/static/{name}", static_file, methods=["GET"], name="static"))
    return routes

"""The OpenAPI 3.1 document of `<mount>/api`: every route of parts 1 and 2, parameters and responses.

Which parameters a route takes comes from the same constants its handler passes to
``params.parse_params`` (one registry), so the document cannot drift from what is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import __version__, params
from .openapi_schemas import DATA_SCHEMAS, ENVELOPE, ERROR_ENVELOPE, STREAM_MESSAGES

__all__ = ["RouteDoc", "build_openapi", "param_schema", "route_docs"]

_TEXT = {"type": "string", "minLength": 1, "maxLength": getattr(params, "_MAX_TEXT", 512)}
_TIME = {
    "oneOf": [
        {"type": "number", "minimum": 0, "maximum": 32503680000},
        {"type": "string", "format": "date-time"},
    ]
}
_STATUS_ITEM = "([1-5][0-9]{2}|[1-5][xX]{2})"
_PARAM_DOCS: dict[str, tuple[dict[str, Any], str]] = {
    "start_time": (_TIME, "Window start: Unix seconds or ISO 8601 (naive = UTC); rounded up to a minute."),
    "end_time": (_TIME, "Window end (exclusive), default now: Unix seconds or ISO 8601."),
    "duration": (
        {"type": "number", "exclusiveMinimum": 0, "maximum": getattr(params, "MAX_WINDOW_SECONDS", 15811200)},
        "Seconds back from end_time when start_time is absent (default 3600).",
    ),
    "granularity": (
        {"type": "string", "enum": [*params.GRANULARITIES, "auto"], "default": "auto"},
        "Bucket size; auto picks the coarsest giving at least 24 buckets.",
    ),
    "protocol": (_TEXT, "Protocol(s), comma list: http, websocket, graphql."),
    "method": (_TEXT, "HTTP method(s), comma list."),
    "endpoint": (_TEXT, "Endpoint template, exact, or a glob with '*'."),
    "status_code": (
        {"type": "string", "pattern": f"^{_STATUS_ITEM}(,{_STATUS_ITEM})*$"},
        "A code, a class such as 5xx, or a comma list such as 2xx,404.",
    ),
    "workspace_id": (_TEXT, "Workspace."),
    "environment": (_TEXT, "Environment."),
    "test_run": (_TEXT, "Test run tag (from the test-run header)."),
    "source": (_TEXT, "middleware or prometheus, comma list (default: middleware only)."),
    "instance": (_TEXT, "Host instance name(s), comma list."),
    "client": (_TEXT, "Client id (peer address, forwarded address or the client-id header)."),
    "limit": (
        {"type": "integer", "minimum": 1, "default": 100},
        "Rows of a ranked list (capped at max_query_results).",
    ),
}
_EXTRA_DOCS: dict[str, tuple[dict[str, Any], str]] = {
    "offset": (
        {"type": "integer", "minimum": 0, "maximum": 10_000_000, "default": 0},
        "Events to skip (pagination of the events list).",
    ),
    "days": ({"type": "integer", "minimum": 1, "maximum": 366, "default": 30}, "Days back from now."),
    "tz": (
        {"type": "string", "maxLength": 64, "default": "UTC", "examples": ["Europe/Berlin"]},
        "IANA time zone of the heatmap's weekdays and hours.",
    ),
    "dataset": (
        {"type": "string", "enum": ["metrics", "endpoints", "errors", "clients"], "default": "metrics"},
        "What to export.",
    ),
    "format": (
        {"type": "string", "enum": ["json", "ndjson"], "default": "json"},
        "JSON array or JSON lines.",
    ),
}
_ORDER = (*params.TIME_PARAMS, *params.FILTER_PARAMS, "limit", "sort", "group_by")


@dataclass(frozen=True)
class RouteDoc:
    """What the document says about one route."""

    path: str
    method: str
    operation_id: str
    summary: str
    allowed: frozenset[str] = frozenset()
    sorts: tuple[str, ...] = ()
    group_bys: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    media: dict[str, dict[str, Any]] | None = None  # non-envelope 200 bodies (exports)
    tag: str = "analytics"


def param_schema(name: str, sorts: tuple[str, ...] = (), group_bys: tuple[str, ...] = ()) -> dict[str, Any]:
    """An OpenAPI parameter object for a query parameter name."""
    if name == "sort":
        schema: dict[str, Any] = {"type": "string", "enum": list(sorts), "default": sorts[0]}
        desc = "Order of the ranked list."
    elif name == "group_by":
        schema, desc = (
            {"type": "string", "enum": list(group_bys or params.GROUP_BYS)},
            "One series per value.",
        )
    elif name in _EXTRA_DOCS:
        schema, desc = _EXTRA_DOCS[name]
    else:
        schema, desc = _PARAM_DOCS[name]
    return {"name": name, "in": "query", "required": False, "description": desc, "schema": schema}


def _part1() -> list[RouteDoc]:
    from . import api, query

    d = DATA_SCHEMAS
    gb = tuple(params.GROUP_BYS)
    docs = [
        RouteDoc(
            "/overview",
            "get",
            "overview",
            "Overview cards of the window",
            api.OVERVIEW_PARAMS,
            data=d["overview"],
        ),
        RouteDoc(
            "/requests",
            "get",
            "requests",
            "Request counts per bucket, one series per group",
            api.REQUESTS_PARAMS,
            group_bys=gb,
            data=d["requests"],
        ),
        RouteDoc(
            "/latency",
            "get",
            "latency",
            "p50/p95/p99/avg/min/max per bucket",
            api.LATENCY_PARAMS,
            group_bys=gb,
            data=d["latency"],
        ),
        RouteDoc(
            "/top-endpoints",
            "get",
            "top_endpoints",
            "Busiest endpoints",
            api.TOP_ENDPOINTS_PARAMS,
            sorts=tuple(query.TOP_ENDPOINT_SORTS),
            data=d["top_endpoints"],
        ),
        RouteDoc(
            "/protocol-breakdown",
            "get",
            "protocol_breakdown",
            "Per protocol",
            api.OVERVIEW_PARAMS,
            data=d["protocol_breakdown"],
        ),
        RouteDoc(
            "/status-codes",
            "get",
            "status_codes",
            "Per status code and class",
            api.OVERVIEW_PARAMS,
            data=d["status_codes"],
        ),
        RouteDoc(
            "/status", "get", "status", "Plugin status: version, config, buffers, drops", data=d["status"]
        ),
        RouteDoc(
            "/sources",
            "get",
            "sources",
            "Data sources (middleware, Prometheus): last success, lag, failures, last error",
            data=d["sources"],
        ),
    ]
    try:
        from . import export
    except ImportError:  # part 1's exports not installed yet: document what exists
        return docs
    allowed = frozenset(getattr(export, "EXPORT_PARAMS", params.COMMON_PARAMS | {"client"}))
    docs += [
        RouteDoc(
            "/export/csv",
            "get",
            "export_csv",
            "Filtered rows as CSV (streamed); filters apply per dataset (client: errors, clients)",
            allowed,
            extras=("dataset",),
            media={"text/csv": {"schema": {"type": "string"}}},
            tag="export",
        ),
        RouteDoc(
            "/export/json",
            "get",
            "export_json",
            "Filtered rows as JSON or JSON lines (streamed); filters apply per dataset",
            allowed,
            extras=("dataset", "format"),
            media={
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            tag="export",
        ),
    ]
    return docs


def _part2() -> list[RouteDoc]:
    from . import api_clients, api_errors, api_patterns

    d = DATA_SCHEMAS
    return [
        RouteDoc(
            "/errors",
            "get",
            "errors",
            "Error summary by category and type, and recent error events",
            api_errors.ERRORS_PARAMS,
            extras=("offset",),
            data=d["errors"],
        ),
        RouteDoc(
            "/top-errors",
            "get",
            "top_errors",
            "Most frequent endpoint + status + error type",
            api_errors.ERRORS_PARAMS,
            data=d["top_errors"],
        ),
        RouteDoc(
            "/traffic-patterns",
            "get",
            "traffic_patterns",
            "7 x 24 heatmap (day_of_week 0 = Monday) in a chosen time zone",
            api_patterns.PATTERN_PARAMS,
            extras=("days", "tz"),
            data=d["traffic_patterns"],
        ),
        RouteDoc(
            "/client-analysis",
            "get",
            "client_analysis",
            "Per client and per test run",
            api_clients.CLIENT_PARAMS,
            sorts=api_clients.CLIENT_SORTS,
            data=d["client_analysis"],
        ),
        RouteDoc(
            "/recent-requests",
            "get",
            "recent_requests",
            "The recent-requests ring, newest first",
            api_clients.RECENT_PARAMS,
            data=d["recent_requests"],
        ),
        RouteDoc(
            "/retention/run",
            "post",
            "retention_run",
            "Run retention now; what it deleted per table",
            data=d["deleted"],
            tag="maintenance",
        ),
        RouteDoc(
            "/reset",
            "post",
            "reset",
            "Delete all analytics data and the recorder's buffers",
            data=d["deleted"],
            tag="maintenance",
        ),
        RouteDoc(
            "/openapi.json",
            "get",
            "openapi",
            "This document",
            data={"type": "object"},
            tag="meta",
            media={"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}},
        ),
    ]


def route_docs() -> list[RouteDoc]:
    """Every documented route of `<mount>/api` (parts 1 and 2)."""
    return [*_part1(), *_part2()]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }


def _operation(doc: RouteDoc, auth: bool) -> dict[str, Any]:
    wanted = set(doc.allowed) | ({"sort"} if doc.sorts else set())
    names = sorted(wanted, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    parameters = [param_schema(n, doc.sorts, doc.group_bys) for n in names]
    parameters += [param_schema(n) for n in doc.extras]
    if doc.media is not None:
        ok = {"description": "OK", "content": doc.media}
    else:
        schema = {
            "allOf": [
                {"$ref": "#/components/schemas/Envelope"},
                {"type": "object", "properties": {"data": doc.data}},
            ]
        }
        ok = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    responses: dict[str, Any] = {"200": ok, "400": _error("A parameter is wrong or not accepted here")}
    if doc.method == "post":
        responses["403"] = _error("A cross-site browser request (Origin of another site)")
    if doc.path not in ("/openapi.json",):
        responses["503"] = _error("The store is not running (the host is starting or stopping)")
    if auth:
        responses["401"] = _error("Credentials missing or wrong (WWW-Authenticate says which scheme)")
    responses["500"] = _error("Unexpected failure (logged)")
    op: dict[str, Any] = {
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "tags": [doc.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if auth:
        op["security"] = [{"bearer": []}, {"basic": []}, {"cookie": []}]
    return op


def build_openapi(mount_path: str = "/analytics", *, auth: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document for an analytics API mounted at ``<mount_path>/api``."""
    paths: dict[str, Any] = {}
    for doc in route_docs():
        paths.setdefault(doc.path, {})[doc.method] = _operation(doc, auth)
    components: dict[str, Any] = {"schemas": {"Envelope": ENVELOPE, "ErrorEnvelope": ERROR_ENVELOPE}}
    if auth:
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "mockforge_analytics_session"},
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MockForge analytics API",
            "version": __version__,
            "description": (
                "Traffic analytics of the mock server. Times are Unix seconds (UTC); day_of_week 0 = Monday. "
                "Every response is the envelope {success, data, error, timestamp}. A parameter a route "
                "does not honour is a 400 naming it. Live stream: WebSocket at stream (see x-websocket)."
            ),
        },
        "servers": [{"url": mount_path.rstrip("/") + "/api"}],
        "paths": paths,
        "components": components,
        "x-websocket": {"/stream": STREAM_MESSAGES},
    }

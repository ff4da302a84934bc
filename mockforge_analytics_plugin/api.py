"""Core JSON routes under `<mount>/api`: overview, requests, latency, top endpoints, protocols, statuses.

Handlers take everything from `request.app.state.runtime` (config, recorder, store, clock).
Each route declares the parameters it honours; anything else is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict
from typing import Any, NamedTuple

import aiosqlite
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import query
from .envelope import api_endpoint, fail, now_of, ok
from .params import COMMON_PARAMS, GROUP_BYS, QueryParams, parse_params
from .store.queries import read_markers

__all__ = [
    "LATENCY_PARAMS",
    "OVERVIEW_PARAMS",
    "REQUESTS_PARAMS",
    "TOP_ENDPOINTS_PARAMS",
    "api_routes",
    "reader_of",
    "route_params",
]

# Routes without buckets do not honour `granularity`; ranked lists take limit and sort.
OVERVIEW_PARAMS = COMMON_PARAMS - {"granularity"}
REQUESTS_PARAMS = COMMON_PARAMS | {"group_by"}
LATENCY_PARAMS = COMMON_PARAMS | {"group_by"}
TOP_ENDPOINTS_PARAMS = OVERVIEW_PARAMS | {"limit", "sort"}


class WithMeta(NamedTuple):
    """An answer plus the envelope's `meta` (None: no meta)."""

    data: Any
    meta: dict[str, Any] | None


class StoreUnavailable(RuntimeError):
    """The store is not open (the host is starting or stopping)."""


def reader_of(request: Request) -> aiosqlite.Connection:
    """The runtime's read connection; StoreUnavailable when the store is not open."""
    store = getattr(request.app.state.runtime, "store", None)
    if store is None or getattr(store, "closed", False):
        raise StoreUnavailable("analytics store is not open")
    return store.reader


def route_params(request: Request, allowed: Collection[str], **kw: Any) -> QueryParams:
    """Parse the request's query string for a route accepting `allowed` (ParamError -> 400)."""
    runtime = request.app.state.runtime
    return parse_params(
        request.query_params, allowed=allowed, now=now_of(request), config=runtime.config, **kw
    )


def _handler(
    allowed: Collection[str],
    answer: Callable[[Request, aiosqlite.Connection, QueryParams], Awaitable[Any]],
    **parse_kw: Any,
) -> Callable[[Request], Awaitable[Response]]:
    @api_endpoint
    async def handle(request: Request) -> Response:
        p = route_params(request, allowed, **parse_kw)
        try:
            conn = reader_of(request)
        except StoreUnavailable as exc:
            return fail(503, str(exc))
        answer_ = await answer(request, conn, p)
        if isinstance(answer_, WithMeta):
            return ok(answer_.data, meta=answer_.meta)
        return ok(answer_)

    return handle


async def _overview(request: Request, conn: aiosqlite.Connection, p: QueryParams) -> Any:
    recorder = request.app.state.runtime.recorder
    markers = await read_markers(conn)
    data = await query.overview(
        conn,
        p,
        active_connections=sum(recorder.in_flight().values()),
        dropped=asdict(recorder.drops),
        markers=markers,
    )
    return WithMeta(data, query.percentile_meta(p, markers))


async def _requests(request: Request, conn: aiosqlite.Connection, p: QueryParams) -> Any:
    return await query.requests_series(conn, p)


async def _latency(request: Request, conn: aiosqlite.Connection, p: QueryParams) -> Any:
    markers = await read_markers(conn)
    data = await query.latency_series(conn, p, markers=markers)
    return WithMeta(data, query.percentile_meta(p, markers, step=p.step))


async def _top_endpoints(request: Request, conn: aiosqlite.Connection, p: QueryParams) -> Any:
    markers = await read_markers(conn)
    data = await query.top_endpoints(conn, p, markers=markers)
    return WithMeta(data, query.percentile_meta(p, markers))


async def _protocols(request: Request, conn: aiosqlite.Connection, p: QueryParams) -> Any:
    return await query.protocol_breakdown(conn, p)


async def _status_codes(request: Request, conn: aiosqlite.Connection, p: QueryParams) -> Any:
    return await query.status_codes(conn, p)


def api_routes() -> list[BaseRoute]:
    """The core API routes and the exports, to mount under `<mount_path>/api`."""
    from .export import export_routes

    return [
        Route("/overview", _handler(OVERVIEW_PARAMS, _overview), name="overview"),
        Route("/requests", _handler(REQUESTS_PARAMS, _requests, group_bys=GROUP_BYS), name="requests"),
        Route("/latency", _handler(LATENCY_PARAMS, _latency, group_bys=GROUP_BYS), name="latency"),
        Route(
            "/top-endpoints",
            _handler(TOP_ENDPOINTS_PARAMS, _top_endpoints, sorts=query.TOP_ENDPOINT_SORTS),
            name="top_endpoints",
        ),
        Route("/protocol-breakdown", _handler(OVERVIEW_PARAMS, _protocols), name="protocol_breakdown"),
        Route("/status-codes", _handler(OVERVIEW_PARAMS, _status_codes), name="status_codes"),
        *export_routes(),
    ]

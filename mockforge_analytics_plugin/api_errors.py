"""`GET <mount>/api/errors` and `GET <mount>/api/top-errors`, read from ``error_events``."""

from __future__ import annotations

from typing import Any

import aiosqlite
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .envelope import api_endpoint, fail, now_of, ok
from .params import COMMON_PARAMS, ParamError, QueryParams, parse_params
from .store.queries_errors import (
    error_events_page,
    error_summary_rows,
    top_error_rows,
)

__all__ = [
    "ERRORS_PARAMS",
    "MAX_ENDPOINTS_LISTED",
    "errors_routes",
    "parse_offset",
    "store_reader",
    "summarise",
]

# Errors are events, not buckets: granularity does not apply; clients are a dimension here.
ERRORS_PARAMS = frozenset((COMMON_PARAMS - {"granularity"}) | {"client", "limit"})
MAX_ENDPOINTS_LISTED = 20  # per summary group; endpoint_count says how many there are in all
MAX_OFFSET = 10_000_000


def store_reader(request: Request) -> aiosqlite.Connection | None:
    """The runtime's read connection, or None while the store is not open (the route answers 503)."""
    store = getattr(request.app.state.runtime, "store", None)
    if store is None or getattr(store, "closed", False):
        return None
    return store.reader


def parse_offset(p: QueryParams) -> int:
    """The `offset` of an events page (default 0)."""
    raw = p.extras.get("offset")
    if raw is None:
        return 0
    if not raw.isdigit() or int(raw) > MAX_OFFSET:
        raise ParamError("offset", f"expected an integer from 0 to {MAX_OFFSET}")
    return int(raw)


def summarise(rows: list[tuple[str, str, str, int, float]], limit: int) -> list[dict[str, Any]]:
    """Group (category, type, endpoint, count, last) rows by category and type, most frequent first."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for category, error_type, endpoint, count, last in rows:
        g = groups.setdefault(
            (category, error_type),
            {
                "error_category": category,
                "error_type": error_type,
                "count": 0,
                "endpoints": {},
                "last_occurrence": last,
            },
        )
        g["count"] += count
        g["endpoints"][endpoint] = g["endpoints"].get(endpoint, 0) + count
        g["last_occurrence"] = max(g["last_occurrence"], last)
    out = []
    for g in sorted(groups.values(), key=lambda g: (-g["count"], g["error_category"], g["error_type"])):
        ranked = sorted(g["endpoints"].items(), key=lambda kv: (-kv[1], kv[0]))
        g["endpoint_count"] = len(ranked)
        g["endpoints"] = [{"endpoint": e, "count": n} for e, n in ranked[:MAX_ENDPOINTS_LISTED]]
        out.append(g)
    return out[:limit]


@api_endpoint
async def errors(request: Request) -> Response:
    """Error summary by category and type, plus one page of recent error events (newest first)."""
    runtime = request.app.state.runtime
    p = parse_params(
        request.query_params,
        allowed=ERRORS_PARAMS,
        now=now_of(request),
        config=runtime.config,
        extras=("offset",),
    )
    offset = parse_offset(p)
    db = store_reader(request)
    if db is None:
        return fail(503, "analytics store is not open")
    rows = await error_summary_rows(db, p)
    # Totals come from the grouped rows (one scan), not from a second COUNT over the window.
    total = sum(row[3] for row in rows)
    by_category: dict[str, int] = {}
    for category, _type, _endpoint, count, _last in rows:
        by_category[category] = by_category.get(category, 0) + count
    summary = summarise(rows, p.limit)
    events = await error_events_page(db, p, p.limit, offset) if offset < total else []
    for event in events:
        event["client"] = event.pop("client_ip")
        event["fault_injected"] = bool(event["fault_injected"])
    nxt = offset + len(events)
    return ok(
        {
            "start_time": p.start,
            "end_time": p.end,
            "total_events": total,
            "by_category": [
                {"error_category": c, "count": n}
                for c, n in sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "summary": summary,
            "events": events,
            "pagination": {
                "limit": p.limit,
                "offset": offset,
                "total": total,
                "next_offset": nxt if nxt < total else None,
            },
            "sampled_out": int(
                getattr(getattr(runtime.recorder, "drops", None), "error_events_sampled_out", 0)
            ),
        }
    )


@api_endpoint
async def top_errors(request: Request) -> Response:
    """The most frequent (endpoint, method, status, error type) groups with counts and shares."""
    runtime = request.app.state.runtime
    p = parse_params(request.query_params, allowed=ERRORS_PARAMS, now=now_of(request), config=runtime.config)
    db = store_reader(request)
    if db is None:
        return fail(503, "analytics store is not open")
    rows = await top_error_rows(db, p)
    total = sum(row["count"] for row in rows)
    rows = rows[: p.limit]
    for row in rows:
        row["share"] = round(100.0 * row["count"] / total, 4) if total else 0.0
    return ok({"start_time": p.start, "end_time": p.end, "total_events": total, "top_errors": rows})


def errors_routes() -> list[BaseRoute]:
    """The error routes, mounted under `<mount>/api`."""
    return [
        Route("/errors", errors, methods=["GET"], name="errors"),
        Route("/top-errors", top_errors, methods=["GET"], name="top_errors"),
    ]

"""`GET <mount>/api/traffic-patterns`: the 7 x 24 heatmap (day 0 = Monday) in a chosen time zone.

Built from hour-level totals (hour table where rolled up, minute rows elsewhere), each UTC hour
placed in the local weekday and hour of its start in ``tz``; so it never depends on
``traffic_patterns`` having been rolled. In zones with a half-hour offset a UTC hour falls in
the local hour it starts in.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .api_errors import store_reader
from .envelope import api_endpoint, fail, now_of, ok
from .params import ParamError, QueryParams, parse_params
from .store.queries_patterns import SERIES_FILTER_COLUMNS, HourTotals, hourly_totals

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "heatmap_cells", "parse_days", "parse_tz", "patterns_routes"]

DEFAULT_DAYS = 30
MAX_DAYS = 366
PATTERN_PARAMS = frozenset(SERIES_FILTER_COLUMNS)


def parse_days(p: QueryParams) -> int:
    """The `days` parameter: whole days back from now (default 30, 1..366)."""
    raw = p.extras.get("days")
    if raw is None:
        return DEFAULT_DAYS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise ParamError("days", f"expected an integer from 1 to {MAX_DAYS}")
    return int(raw)


def parse_tz(p: QueryParams) -> tuple[str, tzinfo]:
    """The `tz` parameter: an IANA zone name such as Europe/Berlin (default UTC)."""
    name = p.extras.get("tz")
    if name is None or name == "UTC":
        return "UTC", UTC
    if len(name) > 64 or not name or name.startswith(("/", ".")) or ".." in name:
        raise ParamError("tz", "expected an IANA time zone name such as Europe/Berlin")
    try:
        return name, ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, IsADirectoryError...: all mean "no such zone"
        message = f"unknown time zone {name!r}; expected an IANA name such as Europe/Berlin"
        raise ParamError("tz", message) from None


def heatmap_cells(totals: HourTotals, zone: tzinfo) -> list[dict[str, Any]]:
    """168 cells ordered by day_of_week (0 = Monday) then hour, each hour placed in local time."""
    grid = [[0, 0, 0.0, 0] for _ in range(7 * 24)]
    for hour_start, (req, err, lsum, lcount) in totals.items():
        local = datetime.fromtimestamp(hour_start, tz=zone)
        cell = grid[local.weekday() * 24 + local.hour]
        cell[0] += req
        cell[1] += err
        cell[2] += lsum
        cell[3] += lcount
    return [
        {
            "day_of_week": i // 24,
            "hour": i % 24,
            "request_count": int(req),
            "error_count": int(err),
            "avg_latency_ms": round(lsum / lcount, 4) if lcount else None,
        }
        for i, (req, err, lsum, lcount) in enumerate(grid)
    ]


@api_endpoint
async def traffic_patterns(request: Request) -> Response:
    """Requests, errors and average latency per (local weekday, local hour) over the last `days`."""
    runtime = request.app.state.runtime
    now = now_of(request)
    p = parse_params(
        request.query_params, allowed=PATTERN_PARAMS, now=now, config=runtime.config, extras=("days", "tz")
    )
    days = parse_days(p)
    tz_name, zone = parse_tz(p)
    end = math.ceil(now / 3600) * 3600  # include the current, partial hour
    if end == now:
        end += 3600
    start = end - days * 86400
    db = store_reader(request)
    if db is None:
        return fail(503, "analytics store is not open")
    totals = await hourly_totals(db, p, start, end)
    cells = heatmap_cells(totals, zone)
    peak = max(cells, key=lambda c: c["request_count"])
    return ok(
        {
            "days": days,
            "tz": tz_name,
            "start_time": start,
            "end_time": end,
            "day_of_week_start": "monday",
            "total_requests": sum(c["request_count"] for c in cells),
            "total_errors": sum(c["error_count"] for c in cells),
            "peak": {"day_of_week": peak["day_of_week"], "hour": peak["hour"]}
            if peak["request_count"]
            else None,
            "cells": cells,
        }
    )


def patterns_routes() -> list[BaseRoute]:
    """The heatmap route, mounted under `<mount>/api`."""
    return [Route("/traffic-patterns", traffic_patterns, methods=["GET"], name="traffic_patterns")]

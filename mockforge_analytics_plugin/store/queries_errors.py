"""Read SQL over ``error_events``: the summary by category/type, top errors and the event pages.

Every value from a request is a bound parameter; column names come from fixed tables here.
"""

from __future__ import annotations

from typing import Any

import aiosqlite

from ..params import QueryParams
from .filters import column_conditions

__all__ = [
    "EVENT_COLUMNS",
    "count_error_events",
    "error_events_page",
    "error_summary_rows",
    "top_error_rows",
]

# Filter name -> column of error_events (client is the client id, kept as client_ip).
_EVENT_FILTER_COLUMNS = {
    "protocol": "protocol",
    "method": "method",
    "endpoint": "endpoint",
    "status_code": "status_code",
    "workspace_id": "workspace_id",
    "environment": "environment",
    "test_run": "test_run",
    "source": "source",
    "instance": "instance",
    "client": "client_ip",
}
EVENT_COLUMNS = (
    "id",
    "timestamp",
    "instance",
    "source",
    "protocol",
    "method",
    "endpoint",
    "path",
    "status_code",
    "error_type",
    "error_category",
    "error_message",
    "request_id",
    "trace_id",
    "span_id",
    "client_ip",
    "user_agent",
    "workspace_id",
    "environment",
    "test_run",
    "fault_injected",
)


def _where(p: QueryParams) -> tuple[str, list[Any]]:
    conds, args = column_conditions(p, _EVENT_FILTER_COLUMNS)
    sql = " AND ".join(["timestamp >= ?", "timestamp < ?", *conds])
    return sql, [p.start, p.end, *args]


SummaryRow = tuple[str, str, str, int, float]


async def error_summary_rows(db: aiosqlite.Connection, p: QueryParams) -> list[SummaryRow]:
    """Rows (category, type, endpoint, count, last timestamp) of the window, one per endpoint."""
    where, args = _where(p)
    sql = (
        "SELECT error_category, error_type, endpoint, COUNT(*), MAX(timestamp) FROM error_events "
        f"WHERE {where} GROUP BY error_category, error_type, endpoint"
    )
    async with db.execute(sql, args) as cur:
        return [tuple(r) for r in await cur.fetchall()]  # type: ignore[misc]


async def top_error_rows(db: aiosqlite.Connection, p: QueryParams) -> list[dict[str, Any]]:
    """Every (endpoint, method, status, error type) group of the window, most frequent first."""
    where, args = _where(p)
    sql = (
        "SELECT endpoint, method, protocol, status_code, error_type, error_category, COUNT(*) AS n, "
        "MAX(timestamp), MIN(timestamp), SUM(fault_injected) FROM error_events "
        f"WHERE {where} GROUP BY endpoint, method, protocol, status_code, error_type, error_category "
        "ORDER BY n DESC, endpoint, method, status_code, error_type"
    )
    keys = (
        "endpoint",
        "method",
        "protocol",
        "status_code",
        "error_type",
        "error_category",
        "count",
        "last_occurrence",
        "first_occurrence",
        "fault_injected_count",
    )
    async with db.execute(sql, args) as cur:
        return [dict(zip(keys, r, strict=True)) for r in await cur.fetchall()]


async def count_error_events(db: aiosqlite.Connection, p: QueryParams) -> int:
    """How many error events match the window and filters."""
    where, args = _where(p)
    async with db.execute(f"SELECT COUNT(*) FROM error_events WHERE {where}", args) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def error_events_page(
    db: aiosqlite.Connection, p: QueryParams, limit: int, offset: int
) -> list[dict[str, Any]]:
    """One page of matching error events, newest first (ties broken by id, newest first)."""
    where, args = _where(p)
    sql = (
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM error_events WHERE {where} "
        "ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?"
    )
    async with db.execute(sql, [*args, limit, offset]) as cur:
        return [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in await cur.fetchall()]

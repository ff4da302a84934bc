"""Read SQL for the exports of event-like tables: error events and hourly client rows.

Every value from a request is a bound parameter; column names come from the fixed maps here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import aiosqlite

from ..params import QueryParams
from .filters import column_conditions
from .queries import SERIES_COLUMNS

__all__ = [
    "CLIENT_COLUMNS",
    "CLIENT_FILTERS",
    "ERROR_EVENT_COLUMNS",
    "ERROR_EVENT_FILTERS",
    "iter_client_rows",
    "iter_error_events",
]

ERROR_EVENT_COLUMNS = (
    "timestamp", "protocol", "method", "endpoint", "status_code", "error_type", "error_category",
    "error_message", "client_ip", "trace_id", "span_id", "request_id", "path", "user_agent",
    "workspace_id", "environment", "test_run", "instance", "source", "fault_injected",
)  # fmt: skip
CLIENT_COLUMNS = (
    "timestamp", "client_ip", "user_agent", "user_agent_family", "user_agent_version", "protocol",
    "workspace_id", "environment", "test_run", "instance", "request_count", "error_count",
    "latency_count", "latency_sum", "bytes_sent", "bytes_received", "top_endpoints",
)  # fmt: skip
# Filters each table can honour (filter name -> column); the others are refused by the caller.
ERROR_EVENT_FILTERS = {
    **SERIES_COLUMNS,
    "endpoint": "endpoint",
    "status_code": "status_code",
    "client": "client_ip",
}
CLIENT_FILTERS = {
    "protocol": "protocol", "workspace_id": "workspace_id", "environment": "environment",
    "test_run": "test_run", "instance": "instance", "client": "client_ip",
}  # fmt: skip


async def iter_error_events(
    conn: aiosqlite.Connection, p: QueryParams, *, chunk: int = 2000
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """Yield chunks of error_events rows (ERROR_EVENT_COLUMNS) of the window, oldest first."""
    conds, args = column_conditions(p, ERROR_EVENT_FILTERS)
    where = " AND ".join(["timestamp >= ?", "timestamp < ?", *conds])
    sql = f"SELECT {', '.join(ERROR_EVENT_COLUMNS)} FROM error_events WHERE {where} ORDER BY timestamp, id"
    async with conn.execute(sql, [p.start, p.end, *args]) as cur:
        while rows := await cur.fetchmany(chunk):
            yield cast(list[tuple[Any, ...]], rows)


async def iter_client_rows(
    conn: aiosqlite.Connection, p: QueryParams, *, chunk: int = 2000
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """Yield chunks of client_analytics rows (CLIENT_COLUMNS) of the hours overlapping the window."""
    conds, args = column_conditions(p, CLIENT_FILTERS)
    where = " AND ".join(["timestamp >= ?", "timestamp < ?", *conds])
    sql = f"SELECT {', '.join(CLIENT_COLUMNS)} FROM client_analytics WHERE {where} ORDER BY timestamp"
    async with conn.execute(sql, [p.start // 3600 * 3600, p.end, *args]) as cur:
        while rows := await cur.fetchmany(chunk):
            yield cast(list[tuple[Any, ...]], rows)

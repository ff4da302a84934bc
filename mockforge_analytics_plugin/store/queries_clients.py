"""Read SQL over ``client_analytics`` (hourly rows per client, user agent and test run)."""

from __future__ import annotations

from typing import Any

import aiosqlite

from ..params import QueryParams
from .queries_errors import column_conditions

__all__ = ["CLIENT_FILTER_COLUMNS", "client_rows"]

# The filters client_analytics can honour (its dimensions); others are refused by the route.
CLIENT_FILTER_COLUMNS = {
    "protocol": "protocol",
    "workspace_id": "workspace_id",
    "environment": "environment",
    "test_run": "test_run",
    "instance": "instance",
    "client": "client_ip",
}
_COLUMNS = (
    "timestamp",
    "client_ip",
    "user_agent",
    "user_agent_family",
    "user_agent_version",
    "test_run",
    "request_count",
    "error_count",
    "latency_count",
    "latency_sum",
    "bytes_sent",
    "bytes_received",
    "endpoint_counts",
)


async def client_rows(db: aiosqlite.Connection, p: QueryParams) -> list[dict[str, Any]]:
    """Hourly client rows of every hour that overlaps the window, with the filters applied."""
    conds, args = column_conditions(p, CLIENT_FILTER_COLUMNS)
    # Rows are hour buckets: an hour overlapping [start, end) is included whole.
    first_hour = p.start - p.start % 3600
    where = " AND ".join(["timestamp >= ?", "timestamp < ?", *conds])
    sql = f"SELECT {', '.join(_COLUMNS)} FROM client_analytics WHERE {where}"
    async with db.execute(sql, [first_hour, p.end, *args]) as cur:
        return [dict(zip(_COLUMNS, r, strict=True)) for r in await cur.fetchall()]

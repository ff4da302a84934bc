"""Read SQL over ``client_analytics`` (hourly rows per client, user agent and test run).

Everything is summed in SQL, endpoint counts too (``json_each`` over the per-row JSON), so a
30-day window reads its rows once per statement and hands Python one row per group.
"""

from __future__ import annotations

from typing import Any

import aiosqlite

from ..params import QueryParams
from .filters import column_conditions

__all__ = ["CLIENT_FILTER_COLUMNS", "GROUP_KEYS", "agent_rows", "endpoint_rows", "link_rows", "total_rows"]

# The filters client_analytics can honour (its dimensions); others are refused by the route.
CLIENT_FILTER_COLUMNS = {
    "protocol": "protocol",
    "workspace_id": "workspace_id",
    "environment": "environment",
    "test_run": "test_run",
    "instance": "instance",
    "client": "client_ip",
}
GROUP_KEYS = ("client_ip", "test_run")  # the only column names ever formatted into the SQL below


def _where(p: QueryParams) -> tuple[str, list[Any]]:
    conds, args = column_conditions(p, CLIENT_FILTER_COLUMNS, alias="c")
    # Rows are hour buckets: an hour overlapping [start, end) is included whole.
    first_hour = p.start - p.start % 3600
    return " AND ".join(["c.timestamp >= ?", "c.timestamp < ?", *conds]), [first_hour, p.end, *args]


def _key(by: str) -> str:
    if by not in GROUP_KEYS:
        raise ValueError(f"cannot group client rows by {by!r}")
    return by


async def _fetch(db: aiosqlite.Connection, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
    async with db.execute(sql, args) as cur:
        return [tuple(r) for r in await cur.fetchall()]


async def total_rows(db: aiosqlite.Connection, p: QueryParams, by: str) -> list[tuple[Any, ...]]:
    """(key, requests, errors, latency_sum, latency_count, bytes_sent, bytes_received, first, last)."""
    key = _key(by)
    where, args = _where(p)
    sql = (
        f"SELECT c.{key}, SUM(c.request_count), SUM(c.error_count), SUM(c.latency_sum), "
        "SUM(c.latency_count), SUM(c.bytes_sent), SUM(c.bytes_received), MIN(c.timestamp), MAX(c.timestamp) "
        f"FROM client_analytics AS c WHERE {where} GROUP BY c.{key}"
    )
    return await _fetch(db, sql, args)


async def agent_rows(db: aiosqlite.Connection, p: QueryParams, by: str) -> list[tuple[Any, ...]]:
    """(key, user_agent, family, version, requests) per key and user agent."""
    key = _key(by)
    where, args = _where(p)
    sql = (
        f"SELECT c.{key}, c.user_agent, c.user_agent_family, c.user_agent_version, SUM(c.request_count) "
        f"FROM client_analytics AS c WHERE {where} "
        f"GROUP BY c.{key}, c.user_agent, c.user_agent_family, c.user_agent_version"
    )
    return await _fetch(db, sql, args)


async def link_rows(db: aiosqlite.Connection, p: QueryParams) -> list[tuple[str, str]]:
    """Distinct (client, test run) pairs of the window."""
    where, args = _where(p)
    sql = f"SELECT DISTINCT c.client_ip, c.test_run FROM client_analytics AS c WHERE {where}"
    return await _fetch(db, sql, args)  # type: ignore[return-value]


async def endpoint_rows(db: aiosqlite.Connection, p: QueryParams, by: str) -> list[tuple[str, str, int]]:
    """(key, "METHOD /endpoint", requests) summed from the rows' endpoint_counts JSON."""
    key = _key(by)
    where, args = _where(p)
    # A malformed JSON cell (never written by us) counts as empty rather than failing the route.
    sql = (
        f"SELECT c.{key}, j.key, SUM(j.value) FROM client_analytics AS c, "
        "json_each(CASE WHEN json_valid(c.endpoint_counts) AND json_type(c.endpoint_counts) = 'object' "
        "THEN c.endpoint_counts ELSE '{}' END) AS j "
        f"WHERE {where} AND j.type = 'integer' GROUP BY c.{key}, j.key"
    )
    return await _fetch(db, sql, args)  # type: ignore[return-value]

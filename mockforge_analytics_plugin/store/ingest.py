"""Replacing pulled minutes: the SQL of the Prometheus source, in one transaction per window.

Pulled rows REPLACE what an earlier pull wrote for the same minutes (the middleware adds deltas
instead), so re-ingesting a minute leaves the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import aiosqlite

from .. import histogram
from ..snapshot import SeriesDelta, SeriesKey
from .series import resolve_series_ids, series_dims
from .writes import mark_rollup_dirty, rollback_quietly

__all__ = ["read_state", "replace_source_minutes", "write_state"]

# Like the middleware's minute rows: no p50/p95/p99 (NULL), readers take them from the histogram.
_INSERT_MINUTE = """
INSERT INTO metrics_aggregates_minute (
    timestamp, series_id, request_count, error_count, latency_count, latency_sum, histogram,
    session_count, session_duration_sum, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_DELETE_MINUTES = (
    "DELETE FROM metrics_aggregates_minute WHERE timestamp = ? "
    "AND series_id IN (SELECT series_id FROM series WHERE source = ?)"
)
_UPSERT_STATE = (
    "INSERT INTO analytics_state (key, value, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)


async def read_state(db: aiosqlite.Connection, key: str) -> str | None:
    """Return the value of one analytics_state key, or None."""
    rows = await db.execute_fetchall("SELECT value FROM analytics_state WHERE key = ?", (key,))
    rows = list(rows)
    return str(rows[0][0]) if rows else None


async def write_state(db: aiosqlite.Connection, key: str, value: str, now: float) -> None:
    """Set one analytics_state key (outside a transaction this autocommits)."""
    await db.execute(_UPSERT_STATE, (key, value, int(now)))


async def replace_source_minutes(
    db: aiosqlite.Connection,
    source: str,
    minutes: Iterable[int],
    deltas: Mapping[SeriesKey, SeriesDelta],
    now: float,
    *,
    state: Mapping[str, str] | None = None,
    batch_size: int = 1000,
    before_commit: Callable[[], None] | None = None,
) -> int:
    """In ONE transaction: delete ``source``'s rows of these minutes, insert ``deltas``, mark the
    hours/days dirty and set the ``state`` markers; return rows inserted (roll back and raise on error).

    ``before_commit`` runs last inside the transaction; raising there rolls everything back.
    """
    minute_list = sorted({int(m) for m in minutes} | {k.minute for k in deltas})
    stamp = int(now)
    await db.execute("BEGIN IMMEDIATE")
    try:
        for minute in minute_list:
            await db.execute(_DELETE_MINUTES, (minute, source))
        ids = await resolve_series_ids(db, deltas.keys(), now, batch_size=batch_size)
        rows = []
        for key, d in deltas.items():
            if key.source != source:
                raise ValueError(f"series of source {key.source!r} in a {source!r} replace")
            rows.append(
                (
                    key.minute,
                    ids[series_dims(key)],
                    d.request_count,
                    d.error_count,
                    d.latency_count,
                    d.latency_sum,
                    histogram.encode(d.histogram) if d.histogram else None,
                    d.session_count,
                    d.session_duration_sum,
                    stamp,
                    stamp,
                )
            )
        step = max(1, batch_size)
        for start in range(0, len(rows), step):
            await db.executemany(_INSERT_MINUTE, rows[start : start + step])
        await mark_rollup_dirty(db, minute_list)
        for name, value in (state or {}).items():
            await db.execute(_UPSERT_STATE, (name, value, stamp))
        if before_commit is not None:
            before_commit()
        await db.execute("COMMIT")
    except BaseException:
        await rollback_quietly(db)  # also forgets series ids created in the transaction
        raise
    return len(rows)

"""Retention: delete rows older than each table's age limit, then give pages back to the file.

A row is deleted when its bucket start (or event time) is older than ``now - limit``: a row
stamped exactly at the cut-off is kept. Deletes run in time slices, each in its own short
transaction, so the flush (another connection, same file) never waits long for the write lock.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from ..config import RetentionConfig
from .series import invalidate_series_cache

__all__ = [
    "RETAINED_TABLES",
    "RetainedTable",
    "apply_retention",
    "delete_older_than",
    "delete_orphan_series",
    "incremental_vacuum",
    "reset_all",
]

DAY = 86400


@dataclass(frozen=True, slots=True)
class RetainedTable:
    """A time-based table, the RetentionConfig field that limits it, and its delete slice (s)."""

    table: str
    limit_field: str
    slice_seconds: int


RETAINED_TABLES = (
    RetainedTable("metrics_aggregates_minute", "minute_aggregates_days", 3600),
    RetainedTable("metrics_aggregates_hour", "hour_aggregates_days", DAY),
    RetainedTable("metrics_aggregates_day", "day_aggregates_days", 30 * DAY),
    RetainedTable("error_events", "error_events_days", 3600),
    RetainedTable("client_analytics", "client_analytics_days", DAY),
    RetainedTable("traffic_patterns", "traffic_patterns_days", 7 * DAY),
    RetainedTable("analytics_snapshots", "snapshots_days", 30 * DAY),
)
_NAMES = {t.table: t for t in RETAINED_TABLES}


async def delete_older_than(db: aiosqlite.Connection, table: str, cutoff: float, slice_seconds: int) -> int:
    """Delete rows of a retained table with timestamp < cutoff, slice by slice; return the count."""
    if table not in _NAMES:  # the name goes into SQL text: only our own tables
        raise ValueError(f"not a retained table: {table!r}")
    deleted = 0
    while True:
        # MIN(timestamp) is an index probe on every retained table; jumping to it skips empty slices.
        async with db.execute(f"SELECT MIN(timestamp) FROM {table}") as cur:
            row = await cur.fetchone()
        oldest = None if row is None else row[0]
        if oldest is None or oldest >= cutoff:
            break
        bound = min(oldest + slice_seconds, cutoff)
        await db.execute("BEGIN IMMEDIATE")
        try:
            cur = await db.execute(f"DELETE FROM {table} WHERE timestamp < ?", (bound,))
            deleted += max(cur.rowcount, 0)
            await db.commit()
        except BaseException:
            await db.rollback()
            raise
    return deleted


async def _forget_stale_dirty_marks(
    db: aiosqlite.Connection, minute_cutoff: float, hour_cutoff: float
) -> None:
    # An hour whose minutes are (partly) gone can no longer be recomputed: re-rolling it would
    # replace a complete hour row with a partial one. Same for a day whose hours are gone.
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute("DELETE FROM rollup_dirty WHERE tier = 'hour' AND timestamp < ?", (minute_cutoff,))
        await db.execute("DELETE FROM rollup_dirty WHERE tier = 'day' AND timestamp < ?", (hour_cutoff,))
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


async def delete_orphan_series(db: aiosqlite.Connection, created_before: float) -> int:
    """Delete series rows created before a time that no aggregate row references; return the count.

    The writer's series-id cache must be invalidated afterwards (done here for ``db``; a store
    whose writer is another connection must invalidate its own).
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        cur = await db.execute(
            "DELETE FROM series WHERE created_at < ? AND series_id NOT IN ("
            "SELECT series_id FROM metrics_aggregates_minute UNION "
            "SELECT series_id FROM metrics_aggregates_hour UNION "
            "SELECT series_id FROM metrics_aggregates_day)",
            (created_before,),
        )
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    invalidate_series_cache(db)
    return max(cur.rowcount, 0)


async def incremental_vacuum(db: aiosqlite.Connection) -> None:
    """Return free pages to the file system (needs auto_vacuum=INCREMENTAL, set by the store)."""
    # The pragma frees one page per step and has no result columns, so a cursor steps it once
    # (one page freed, whatever is fetched); executescript steps it to the end.
    cursor = await db.executescript("PRAGMA incremental_vacuum;")
    await cursor.close()


async def apply_retention(
    db: aiosqlite.Connection, limits: RetentionConfig, now: float, *, delete_series: bool = True
) -> dict[str, int]:
    """Delete what each time-based table keeps no longer, then vacuum; return {table: deleted}."""
    result: dict[str, int] = {}
    for spec in RETAINED_TABLES:
        cutoff = now - float(getattr(limits, spec.limit_field)) * DAY
        result[spec.table] = await delete_older_than(db, spec.table, cutoff, spec.slice_seconds)
    await _forget_stale_dirty_marks(
        db, now - limits.minute_aggregates_days * DAY, now - limits.hour_aggregates_days * DAY
    )
    if delete_series:
        result["series"] = await delete_orphan_series(db, now - limits.minute_aggregates_days * DAY)
    await incremental_vacuum(db)
    return result


async def reset_all(db: aiosqlite.Connection) -> dict[str, int]:
    """Delete every analytics row of every table except schema_migrations (one transaction).

    Returns {table: deleted}. Invalidates the series-id cache of ``db``.
    """
    tables = [
        name
        for (name,) in await db.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name <> 'schema_migrations' ORDER BY name"
        )
    ]
    # Children before series, so the foreign keys hold at every statement.
    tables.sort(key=lambda name: name == "series")
    result: dict[str, int] = {}
    await db.execute("BEGIN IMMEDIATE")
    try:
        for name in tables:
            quoted = '"' + name.replace('"', '""') + '"'
            cur = await db.execute(f"DELETE FROM {quoted}")
            result[name] = max(cur.rowcount, 0)
        await db.commit()
    except BaseException:
        await db.rollback()
        invalidate_series_cache(db)
        raise
    invalidate_series_cache(db)
    await incremental_vacuum(db)
    return result

"""Histogram horizons: past them a tier's rows keep their counters but lose their histograms.

Like Prometheus or Graphite downsampling, each tier keeps its latency histograms for less time
than its counters: minute rows for ``retention.minute_histograms_days`` (default 1), hour rows
for ``retention.hour_histograms_days`` (default 7). Past that a row is *slim*: histogram and
latency_p50/p95/p99 are NULL, every counter is unchanged. Percentiles of a slim period come from
the next coarser tier (store/tiers.py ``histogram_ranges``), whose rows already hold the same
histograms merged, so only the time resolution of percentiles is lost.

Slimming rewrites whole slices, one transaction each: the minute rows of one hour, the hour rows
of one day. A slice is deleted and re-inserted in key order, because setting a column to NULL in
place leaves every page as large as before (the file only shrinks when pages empty). Only slices
already rolled up are slimmed (an hour before the hour marker, a day before the day marker, none
marked dirty), so the coarser row holds the slice's full histogram first. Progress is kept in
``analytics_state`` (store/tiers.py ``MINUTE_HISTOGRAMS_FROM``, ``HOUR_HISTOGRAMS_FROM``): the
first bucket start whose rows still hold histograms. Running it again changes nothing.

Late data for a slim slice (a store outage longer than the horizon, a Prometheus backfill) lands
in the finer row as a histogram holding only that late part. :func:`carry_slim_histograms`,
called by the roll-up before it replaces a row, adds the stored coarser histogram to it and strips
the finer rows again, so the replaced hour (day) row is complete, never partial. Until then a
percentile read adds the finer rows' late histograms to the coarser row's (``histogram_ranges``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import aiosqlite

from ..config import RetentionConfig
from ..histogram import merge_into
from .tiers import HOUR_HISTOGRAMS_FROM, MINUTE_HISTOGRAMS_FROM, read_markers

__all__ = [
    "HORIZONS",
    "SLIM_COLUMNS",
    "Horizon",
    "apply_histogram_horizons",
    "carry_slim_histograms",
    "slim_tier",
]

HOUR = 3600
DAY = 86400
# What a slim row drops; everything else (every counter, min/max, timestamps) is kept.
SLIM_COLUMNS = ("latency_p50", "latency_p95", "latency_p99", "histogram")
_HEAVY = " OR ".join(f"{c} IS NOT NULL" for c in SLIM_COLUMNS)

Guard = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


@dataclass(frozen=True, slots=True)
class Horizon:
    """A tier whose rows are slimmed, the coarser tier that answers for them, and its slice."""

    tier: str  # 'minute' or 'hour'
    table: str
    coarser: str  # the Markers field vouching the slice is rolled up: 'hour' or 'day'
    coarser_table: str
    slice_seconds: int  # one hour of minute rows, one day of hour rows
    state_key: str
    days_field: str  # the RetentionConfig field of the horizon


HORIZONS = (
    Horizon("minute", "metrics_aggregates_minute", "hour", "metrics_aggregates_hour", HOUR,
            MINUTE_HISTOGRAMS_FROM, "minute_histograms_days"),
    Horizon("hour", "metrics_aggregates_hour", "day", "metrics_aggregates_day", DAY,
            HOUR_HISTOGRAMS_FROM, "hour_histograms_days"),
)  # fmt: skip
_BY_COARSER = {h.coarser: h for h in HORIZONS}


async def _state(db: aiosqlite.Connection, key: str) -> int:
    async with db.execute("SELECT value FROM analytics_state WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    try:
        return int(float(row[0])) if row else 0
    except ValueError:  # a corrupt value: start again from the oldest row (slimming is idempotent)
        return 0


async def _set_state(db: aiosqlite.Connection, key: str, value: int, now: float) -> None:
    await db.execute(
        "INSERT INTO analytics_state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, str(value), int(now)),
    )


async def _kept_columns(db: aiosqlite.Connection, table: str) -> list[str]:
    """The table's columns minus SLIM_COLUMNS, in table order (migrations may add columns)."""
    async with db.execute(f"PRAGMA table_info({table})") as cur:
        return [row[1] for row in await cur.fetchall() if row[1] not in SLIM_COLUMNS]


async def _rewrite_slice(db: aiosqlite.Connection, h: Horizon, cols: str, start: int) -> int:
    """Delete the slice's rows and insert them back slim, in key order; return rows that were not slim."""
    end = start + h.slice_seconds
    async with db.execute(
        f"SELECT COUNT(*) FROM {h.table} WHERE timestamp >= ? AND timestamp < ? AND ({_HEAVY})", (start, end)
    ) as cur:
        row = await cur.fetchone()
    heavy = int(row[0]) if row else 0
    if not heavy:
        return 0
    await db.execute(
        f"INSERT INTO temp.slim_rows SELECT {cols} FROM {h.table} WHERE timestamp >= ? AND timestamp < ?",
        (start, end),
    )
    await db.execute(f"DELETE FROM {h.table} WHERE timestamp >= ? AND timestamp < ?", (start, end))
    await db.execute(
        f"INSERT INTO {h.table} ({cols}) SELECT {cols} FROM temp.slim_rows ORDER BY timestamp, series_id"
    )
    await db.execute("DELETE FROM temp.slim_rows")
    return heavy


async def slim_tier(
    db: aiosqlite.Connection, h: Horizon, cutoff: int, now: float, guard: Guard | None = None
) -> int:
    """Slim every rolled-up slice of `h` that ends at or before `cutoff`; return the rows slimmed.

    One transaction per slice, each under `guard()` (the store's write lock) when given, so the
    flush waits for one slice at most. Stops at the first slice that is not rolled up.
    """
    guard = guard or contextlib.nullcontext
    step = h.slice_seconds
    cutoff = cutoff // step * step
    cols = ", ".join(await _kept_columns(db, h.table))
    slimmed = 0
    done = False
    while not done:
        async with guard():
            await db.execute("BEGIN IMMEDIATE")
            try:
                # The scratch table lives in this transaction only (the connection may be the flush's).
                await db.execute(f"CREATE TEMP TABLE slim_rows AS SELECT {cols} FROM {h.table} WHERE 0")
                done, rows = await _slim_next(db, h, cols, cutoff, now)
                await db.execute("DROP TABLE temp.slim_rows")
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
        slimmed += rows
    return slimmed


async def _slim_next(
    db: aiosqlite.Connection, h: Horizon, cols: str, cutoff: int, now: float
) -> tuple[bool, int]:
    """Inside a transaction: slim the next slice, or move the state to the limit; (finished, rows)."""
    step = h.slice_seconds
    markers = await read_markers(db)  # read under the write lock: no flush can mark a slice dirty now
    limit = min(cutoff, getattr(markers, h.coarser) // step * step)
    start = await _state(db, h.state_key) // step * step
    if start >= limit:
        return True, 0
    # Jump to the oldest row at or after the state: empty slices need no transaction each.
    async with db.execute(f"SELECT MIN(timestamp) FROM {h.table} WHERE timestamp >= ?", (start,)) as cur:
        row = await cur.fetchone()
    oldest = None if row is None or row[0] is None else int(row[0]) // step * step
    if oldest is None or oldest >= limit:
        await _set_state(db, h.state_key, limit, now)
        return True, 0
    rows = await _rewrite_slice(db, h, cols, oldest)
    await _set_state(db, h.state_key, oldest + step, now)
    return False, rows


async def apply_histogram_horizons(
    db: aiosqlite.Connection, limits: RetentionConfig, now: float, guard: Guard | None = None
) -> dict[str, int]:
    """Slim minute rows past the minute horizon, then hour rows past the hour one; {table: rows}.

    The hour horizon never passes the minute one (a slim hour row must not be recomputed from
    minutes that still hold histograms), whatever the limits say.
    """
    minute, hour = HORIZONS
    result = {
        minute.table: await slim_tier(db, minute, int(now - limits.minute_histograms_days * DAY), now, guard)
    }
    minute_from = await _state(db, minute.state_key)
    hour_cutoff = min(int(now - limits.hour_histograms_days * DAY), minute_from)
    result[hour.table] = await slim_tier(db, hour, hour_cutoff, now, guard)
    return result


async def carry_slim_histograms(
    db: aiosqlite.Connection, tier: str, start: int, hists: MutableMapping[int, Any]
) -> None:
    """Before the roll-up replaces the `tier` ('hour' or 'day') rows of `start`: keep them complete.

    When the finer rows of that bucket are slim, `hists` (series_id -> merged histogram of the
    finer rows, a dict or a blob) holds only late data: add the stored row's histogram to it and
    strip the finer rows' histograms, inside the caller's transaction. Otherwise does nothing.
    """
    h = _BY_COARSER[tier]
    if start >= await _state(db, h.state_key):
        return
    async with db.execute(
        f"SELECT series_id, histogram FROM {h.coarser_table} WHERE timestamp = ? AND histogram IS NOT NULL",
        (start,),
    ) as cur:
        stored = await cur.fetchall()
    for series_id, blob in stored:
        current = hists.get(series_id)
        if isinstance(current, bytes | bytearray):
            hists[series_id] = bytes(current) + blob  # segments: concatenation is the sum
        else:
            hists[series_id] = merge_into(current if current is not None else {}, blob)
    sets = ", ".join(f"{c} = NULL" for c in SLIM_COLUMNS)
    await db.execute(
        f"UPDATE {h.table} SET {sets} WHERE timestamp >= ? AND timestamp < ? AND ({_HEAVY})",
        (start, start + h.slice_seconds),
    )

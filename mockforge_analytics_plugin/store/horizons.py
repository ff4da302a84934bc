"""Histogram horizons: past them a tier's rows keep their counters but lose their histograms.

Like Prometheus or Graphite downsampling, each tier keeps its latency distribution for less time
than its counters: minute rows for ``retention.minute_histograms_days`` (default 1), hour rows
for ``retention.hour_histograms_days`` (default 7). Past that a row is *slim*: histogram,
latency_p50/p95/p99 and latency_min/max are NULL, every counter (counts, sums) is unchanged (a
slim minute row also drops the flush's write times, created_at/updated_at = 0: nothing reads
them, and 0 takes no bytes). Percentiles, min and max of a slim period come from the next coarser
tier (store/tiers.py ``histogram_ranges``), whose rows already hold the same histograms merged
and the same extremes, so only their time resolution is lost.

Slimming rewrites whole slices, one transaction each: the minute rows of one hour, the hour rows
of one day. A slice is deleted and re-inserted in key order, because setting a column to NULL in
place leaves every page as large as before (the file only shrinks when pages empty). Only slices
already rolled up are slimmed (an hour before the hour marker, a day before the day marker, none
marked dirty), so the coarser row holds the slice's full histogram first. Progress is kept in
``analytics_state`` (store/tiers.py ``MINUTE_HISTOGRAMS_FROM``, ``HOUR_HISTOGRAMS_FROM``): the
first bucket start whose rows still hold histograms. Running it again changes nothing.

The same rewrite re-packs the minute rows of each closed hour once (:func:`repack_closed_minutes`):
the flush leaves them on mostly empty pages, and they would stay so until slimmed.

Late data for a slim slice (a store outage longer than the horizon, a Prometheus backfill) lands
in the finer row as a histogram holding only that late part. :func:`carry_slim_histograms`,
called by the roll-up before it replaces a row, adds the stored coarser histogram (and min, max)
to it and strips the finer rows again, so the replaced hour (day) row is complete, never partial.
Until then a read adds the finer rows' late histograms and extremes to the coarser row's
(``histogram_ranges``).
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
    "MINUTE_PACKED_FROM",
    "PACK_MINUTES",
    "REPACK_DELAY_SECONDS",
    "SLIM_COLUMNS",
    "SLIM_HOURS",
    "SLIM_MINUTES",
    "Rewrite",
    "apply_histogram_horizons",
    "carry_slim_histograms",
    "repack_closed_minutes",
    "run_rewrite",
]

HOUR = 3600
DAY = 86400
# What a slim row drops: the latency distribution (histogram, its percentiles, its min and max);
# every counter (sums, counts) stays.
SLIM_COLUMNS = ("latency_p50", "latency_p95", "latency_p99", "histogram", "latency_min", "latency_max")
_HEAVY = " OR ".join(f"{c} IS NOT NULL" for c in SLIM_COLUMNS)
# analytics_state key: minute rows of hours before it were re-packed (or slimmed) since written.
MINUTE_PACKED_FROM = "minute_packed_from"
# A closed hour is re-packed once it ended this long ago: the flush's compaction of its last
# minutes (store/compaction.py, within ~10 minutes) has then shrunk every row it will shrink.
REPACK_DELAY_SECONDS = 900

Guard = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


@dataclass(frozen=True, slots=True)
class Rewrite:
    """A pass that deletes and re-inserts a table's rows slice by slice, progress in analytics_state."""

    table: str
    slice_seconds: int  # one hour of minute rows, one day of hour rows
    state_key: str  # the first slice start not rewritten yet
    rolled_up_by: str  # the Markers field a slice must lie before: 'hour' or 'day'
    slim: bool  # drop SLIM_COLUMNS; else re-pack the rows unchanged
    # Set to 0 in slim rows: the flush's write times, which nothing reads (0 takes no bytes).
    zeroed: tuple[str, ...] = ()
    coarser_table: str = ""  # slim passes: the table whose rows answer for the slimmed ones


SLIM_MINUTES = Rewrite(
    "metrics_aggregates_minute", HOUR, MINUTE_HISTOGRAMS_FROM, "hour", True,
    ("created_at", "updated_at"), "metrics_aggregates_hour",
)  # fmt: skip
SLIM_HOURS = Rewrite(
    "metrics_aggregates_hour", DAY, HOUR_HISTOGRAMS_FROM, "day", True, (), "metrics_aggregates_day"
)
PACK_MINUTES = Rewrite("metrics_aggregates_minute", HOUR, MINUTE_PACKED_FROM, "hour", False)
_CARRIED = {"hour": SLIM_MINUTES, "day": SLIM_HOURS}  # roll-up tier -> the pass slimming its source


async def _state(db: aiosqlite.Connection, key: str) -> int:
    async with db.execute("SELECT value FROM analytics_state WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    try:
        return int(float(row[0])) if row else 0
    except ValueError:  # a corrupt value: start again from the oldest row (rewriting is idempotent)
        return 0


async def _set_state(db: aiosqlite.Connection, key: str, value: int, now: float) -> None:
    await db.execute(
        "INSERT INTO analytics_state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, str(value), int(now)),
    )


async def _columns(db: aiosqlite.Connection, r: Rewrite) -> tuple[list[str], list[str]]:
    """(columns written back, the expressions selecting them) for a pass, in table order."""
    async with db.execute(f"PRAGMA table_info({r.table})") as cur:
        names = [row[1] for row in await cur.fetchall()]  # read each time: migrations add columns
    if r.slim:
        names = [n for n in names if n not in SLIM_COLUMNS]
    return names, [f"0 AS {n}" if n in r.zeroed else n for n in names]


async def _rewrite_slice(db: aiosqlite.Connection, r: Rewrite, cols: str, select: str, start: int) -> int:
    """Delete one slice's rows and insert them back (slim, or as they are) in key order; count them.

    A slim pass counts (and rewrites only when there are) rows still holding a histogram.
    """
    span = (start, start + r.slice_seconds)
    where = "timestamp >= ? AND timestamp < ?"
    todo = f"{where} AND ({_HEAVY})" if r.slim else where
    async with db.execute(f"SELECT COUNT(*) FROM {r.table} WHERE {todo}", span) as cur:
        row = await cur.fetchone()
    count = int(row[0]) if row else 0
    if count:
        await db.execute(f"INSERT INTO temp.rewrite SELECT {select} FROM {r.table} WHERE {where}", span)
        await db.execute(f"DELETE FROM {r.table} WHERE {where}", span)
        await db.execute(
            f"INSERT INTO {r.table} ({cols}) SELECT {cols} FROM temp.rewrite ORDER BY timestamp, series_id"
        )
        await db.execute("DELETE FROM temp.rewrite")
    return count


async def run_rewrite(
    db: aiosqlite.Connection,
    r: Rewrite,
    cutoff: int,
    now: float,
    guard: Guard | None = None,
    *,
    floor: int = 0,
) -> int:
    """Rewrite every rolled-up slice of `r` ending at or before `cutoff`; return the rows rewritten.

    Starts at the stored progress (or `floor`, whichever is later). One transaction per slice,
    each under `guard()` (the store's write lock) when given, so the flush waits for one slice
    at most. Stops at the first slice that is not rolled up.
    """
    guard = guard or contextlib.nullcontext
    step = r.slice_seconds
    names, exprs = await _columns(db, r)
    cols, select = ", ".join(names), ", ".join(exprs)
    rewritten = 0
    done = False
    while not done:
        async with guard():
            await db.execute("BEGIN IMMEDIATE")
            try:
                # The scratch table lives in this transaction only (the connection may be the flush's).
                await db.execute(f"CREATE TEMP TABLE rewrite AS SELECT {select} FROM {r.table} WHERE 0")
                done, rows = await _rewrite_next(db, r, cols, select, cutoff // step * step, floor, now)
                await db.execute("DROP TABLE temp.rewrite")
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
        rewritten += rows
    return rewritten


async def _rewrite_next(
    db: aiosqlite.Connection, r: Rewrite, cols: str, select: str, cutoff: int, floor: int, now: float
) -> tuple[bool, int]:
    """Inside a transaction: rewrite the next slice, or move the state to the limit; (finished, rows)."""
    step = r.slice_seconds
    markers = await read_markers(db)  # read under the write lock: no flush can mark a slice dirty now
    limit = min(cutoff, getattr(markers, r.rolled_up_by) // step * step)
    start = max(await _state(db, r.state_key), floor) // step * step
    if start >= limit:
        return True, 0
    # Jump to the oldest row at or after the state: empty slices need no transaction each.
    async with db.execute(f"SELECT MIN(timestamp) FROM {r.table} WHERE timestamp >= ?", (start,)) as cur:
        row = await cur.fetchone()
    oldest = None if row is None or row[0] is None else int(row[0]) // step * step
    if oldest is None or oldest >= limit:
        await _set_state(db, r.state_key, limit, now)
        return True, 0
    rows = await _rewrite_slice(db, r, cols, select, oldest)
    await _set_state(db, r.state_key, oldest + step, now)
    return False, rows


async def apply_histogram_horizons(
    db: aiosqlite.Connection, limits: RetentionConfig, now: float, guard: Guard | None = None
) -> dict[str, int]:
    """Slim minute rows past the minute horizon, then hour rows past the hour one; {table: rows}.

    The hour horizon never passes the minute one (a slim hour row must not be recomputed from
    minutes that still hold histograms), whatever the limits say.
    """
    minute_cutoff = int(now - limits.minute_histograms_days * DAY)
    result = {SLIM_MINUTES.table: await run_rewrite(db, SLIM_MINUTES, minute_cutoff, now, guard)}
    hour_cutoff = min(int(now - limits.hour_histograms_days * DAY), await _state(db, SLIM_MINUTES.state_key))
    result[SLIM_HOURS.table] = await run_rewrite(db, SLIM_HOURS, hour_cutoff, now, guard)
    return result


async def repack_closed_minutes(db: aiosqlite.Connection, now: float, guard: Guard | None = None) -> int:
    """Re-pack the minute rows of closed, rolled-up hours not re-packed yet; return the rows.

    The flush grows a row while its minute is open and the compaction then shrinks it in place,
    which leaves its pages mostly empty (measured: 63 % of the minute pages unused as flushed,
    12 % re-packed). Deleting and re-inserting an hour in key order fills them again. Hours past
    the minute horizon are left to the slim pass.
    """
    floor = await _state(db, SLIM_MINUTES.state_key)
    return await run_rewrite(db, PACK_MINUTES, int(now) - REPACK_DELAY_SECONDS, now, guard, floor=floor)


async def carry_slim_histograms(
    db: aiosqlite.Connection,
    tier: str,
    start: int,
    hists: MutableMapping[int, Any],
    rows: list[Any] | None = None,
    minmax_at: int = 0,
) -> None:
    """Before the roll-up replaces the `tier` ('hour' or 'day') rows of `start`: keep them complete.

    When the finer rows of that bucket are slim, what the roll-up read from them is only late
    data: add the stored row's histogram to `hists` (series_id -> merged histogram, a dict or a
    blob) and, when `rows` (the roll-up's per-series aggregates, series_id first, MIN(latency_min)
    and MAX(latency_max) at `minmax_at`) is given, its min and max to them; then strip the finer
    rows, inside the caller's transaction. Otherwise does nothing.
    """
    h = _CARRIED[tier]
    if start >= await _state(db, h.state_key):
        return
    async with db.execute(
        f"SELECT series_id, histogram, latency_min, latency_max FROM {h.coarser_table} WHERE timestamp = ?",
        (start,),
    ) as cur:
        stored = {row[0]: row[1:] for row in await cur.fetchall()}
    for series_id, (blob, _, _) in stored.items():
        if not blob:
            continue
        current = hists.get(series_id)
        if isinstance(current, bytes | bytearray):
            hists[series_id] = bytes(current) + blob  # segments: concatenation is the sum
        else:
            hists[series_id] = merge_into(current if current is not None else {}, blob)
    for i, row in enumerate(rows or ()):
        if row[0] in stored:
            _, lo, hi = stored[row[0]]
            rows[i] = (  # type: ignore[index]
                *row[:minmax_at],
                _fold(min, row[minmax_at], lo),
                _fold(max, row[minmax_at + 1], hi),
                *row[minmax_at + 2 :],
            )
    sets = ", ".join(f"{c} = NULL" for c in SLIM_COLUMNS)
    await db.execute(
        f"UPDATE {h.table} SET {sets} WHERE timestamp >= ? AND timestamp < ? AND ({_HEAVY})",
        (start, start + h.slice_seconds),
    )


def _fold(pick: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    """min or max of two values either of which may be missing (NULL)."""
    if a is None:
        return b
    return a if b is None else pick(a, b)

"""Roll-ups minute -> hour -> day: recompute and REPLACE whole rows of closed, dirty buckets.

Every function takes the writer connection (autocommit mode, explicit transactions) and is
idempotent: a bucket is recomputed from the finer tier only when `rollup_dirty` says its
minutes (or hours) changed, its rows are deleted and re-inserted in one transaction, and its
dirty mark is cleared in that same transaction. A minute flushed after its hour was rolled up
marks the hour (and the day) dirty again, so the next run picks it up.

Decisions (documented for the query layer):
- Only CLOSED buckets are rolled up (an hour when ``hour_start + 3600 <= now``, a day when
  ``day_start + 86400 <= now`` and none of its hours is still dirty). The open hour changes every
  second, so rolling it would be wasted work; the query layer reads it from minute rows.
- ``analytics_state['rolled_up_until_hour']`` is the start of the first hour not known
  complete: ``min(first dirty hour, start of the current hour)``. Every hour before it is exactly
  the sum of its minutes. Same for ``rolled_up_until_day`` (a dirty hour also makes its day not
  complete). When a late minute marks an already rolled-up hour dirty, the triggers of
  ``migrations/0002_rollup_marker_triggers.sql`` lower the stored markers in the flush's own
  transaction, so readers of ``analytics_state`` never take a stale row as complete;
  :func:`rolled_up_until` computes the same value from the dirty marks directly.
- Hour ``active_connections_avg`` is the mean of the minute rows' ``active_connections`` over the
  minutes present (minutes with no row for the series are not counted); ``_max`` the maximum.
  Day ``active_connections_avg`` is the mean of the hour rows' averages over the hours present.
- Day ``unique_clients``: the number of distinct client ids in ``client_analytics`` during that
  UTC day with the series' instance, protocol, workspace_id, environment and test_run. Clients are
  not kept per endpoint/method/status, so every series sharing those five dimensions reports the
  same figure (series from Prometheus have no client rows: 0).
- Day ``peak_hour``: the UTC hour (0-23) with the most requests for that series; ties go to
  the earliest hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import aiosqlite

from ..histogram import encode, merge_into, quantiles
from .horizons import carry_slim_histograms

__all__ = [
    "DAY",
    "HOUR",
    "SUM_COLUMNS",
    "dirty_buckets",
    "mark_dirty",
    "rolled_up_until",
    "rollup_day",
    "rollup_days",
    "rollup_hour",
    "rollup_hours",
    "utc_date",
]

HOUR = 3600
DAY = 86400
_TABLE = {
    "minute": "metrics_aggregates_minute",
    "hour": "metrics_aggregates_hour",
    "day": "metrics_aggregates_day",
}
_WIDTH = {"hour": HOUR, "day": DAY}
_MARKER = {"hour": "rolled_up_until_hour", "day": "rolled_up_until_day"}

# Counters that add up exactly from a finer tier to a coarser one.
SUM_COLUMNS = (
    "request_count",
    "error_count",
    "latency_count",
    "latency_sum",
    "ttfb_sum",
    "bytes_sent",
    "bytes_received",
    "injected_latency_sum",
    "fault_count",
    "session_count",
    "session_duration_sum",
)
_SUMS = ", ".join(f"SUM({c})" for c in SUM_COLUMNS)
_COLS = ", ".join(SUM_COLUMNS)
_QS = (0.5, 0.95, 0.99)


def utc_date(ts: int) -> str:
    """Return the UTC calendar date (YYYY-MM-DD) of a Unix timestamp."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


async def _begin(db: aiosqlite.Connection) -> None:
    # IMMEDIATE takes the write lock up front, so the reads below see exactly what we replace.
    await db.execute("BEGIN IMMEDIATE")


async def mark_dirty(db: aiosqlite.Connection, tier: str, bucket_start: int) -> None:
    """Mark one hour or day as needing a roll-up (no transaction of its own)."""
    await db.execute(
        "INSERT INTO rollup_dirty (tier, timestamp) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (tier, int(bucket_start)),
    )


async def dirty_buckets(db: aiosqlite.Connection, tier: str) -> list[int]:
    """Return the starts of every dirty bucket of a tier, oldest first."""
    rows = await db.execute_fetchall(
        "SELECT timestamp FROM rollup_dirty WHERE tier = ? ORDER BY timestamp", (tier,)
    )
    return [int(r[0]) for r in rows]


async def rolled_up_until(db: aiosqlite.Connection, tier: str, now: float) -> int:
    """Return the start of the first hour/day not known complete in its roll-up table (live)."""
    width = _WIDTH[tier]
    until = int(now) // width * width
    first_hour = await _first_dirty(db, "hour")
    if first_hour is not None:
        # A dirty hour makes its own day incomplete too (its day row is stale).
        until = min(until, first_hour // width * width)
    if tier == "day":
        first_day = await _first_dirty(db, "day")
        if first_day is not None:
            until = min(until, first_day)
    return until


async def _first_dirty(db: aiosqlite.Connection, tier: str) -> int | None:
    async with db.execute("SELECT MIN(timestamp) FROM rollup_dirty WHERE tier = ?", (tier,)) as cur:
        row = await cur.fetchone()
    return None if row is None or row[0] is None else int(row[0])


async def _store_marker(db: aiosqlite.Connection, tier: str, value: int, now: float) -> None:
    # Written only when it moves, so a run that changes nothing leaves analytics_state untouched.
    await db.execute(
        "INSERT INTO analytics_state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at "
        "WHERE analytics_state.value <> excluded.value",
        (_MARKER[tier], str(value), int(now)),
    )


def _percentiles(hist: dict[int, int]) -> list[float | None]:
    return quantiles(hist, _QS) if hist else [None, None, None]


async def _histograms(
    db: aiosqlite.Connection, table: str, start: int, end: int
) -> tuple[dict[int, dict[int, int]], dict[int, list[tuple[int, int]]]]:
    """Merge the histograms of [start, end) per series; also return (ts, requests) per series."""
    hists: dict[int, dict[int, int]] = {}
    counts: dict[int, list[tuple[int, int]]] = {}
    async with db.execute(
        f"SELECT series_id, timestamp, request_count, histogram FROM {table} "
        "WHERE timestamp >= ? AND timestamp < ?",
        (start, end),
    ) as cur:
        async for series_id, ts, requests, blob in cur:
            if blob:
                merge_into(hists.setdefault(series_id, {}), blob)
            counts.setdefault(series_id, []).append((ts, requests))
    return hists, counts


async def rollup_hour(db: aiosqlite.Connection, hour: int, now: float) -> int:
    """Recompute and replace every row of one hour from its minutes in one transaction.

    Clears the hour's dirty mark and marks its day dirty. Returns the number of hour rows written.
    """
    hour = int(hour) // HOUR * HOUR
    end = hour + HOUR
    await _begin(db)
    try:
        rows = await db.execute_fetchall(
            f"SELECT series_id, {_SUMS}, MIN(latency_min), MAX(latency_max), "
            "AVG(active_connections), MAX(active_connections) "
            "FROM metrics_aggregates_minute WHERE timestamp >= ? AND timestamp < ? GROUP BY series_id",
            (hour, end),
        )
        hists, _ = await _histograms(db, _TABLE["minute"], hour, end)
        # Minutes past their histogram horizon (horizons.py): keep the hour's histogram, min and max.
        await carry_slim_histograms(db, "hour", hour, hists, rows, 1 + len(SUM_COLUMNS))
        created = int(now)
        out = []
        for row in rows:
            series_id = row[0]
            hist = hists.get(series_id, {})
            out.append(
                (
                    hour,
                    series_id,
                    *row[1 : 1 + len(SUM_COLUMNS) + 2],
                    *_percentiles(hist),
                    encode(hist) if hist else None,
                    row[-2] or 0.0,
                    row[-1] or 0,
                    created,
                )
            )
        await db.execute("DELETE FROM metrics_aggregates_hour WHERE timestamp = ?", (hour,))
        await db.executemany(
            f"INSERT INTO metrics_aggregates_hour (timestamp, series_id, {_COLS}, latency_min, "
            "latency_max, latency_p50, latency_p95, latency_p99, histogram, active_connections_avg, "
            f"active_connections_max, created_at) VALUES ({', '.join('?' * (len(SUM_COLUMNS) + 11))})",
            out,
        )
        await db.execute("DELETE FROM rollup_dirty WHERE tier = 'hour' AND timestamp = ?", (hour,))
        await mark_dirty(db, "day", hour // DAY * DAY)
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    return len(out)


async def _unique_clients(db: aiosqlite.Connection, day: int, series_ids: Sequence[int]) -> dict[int, int]:
    """Distinct clients of the day per series, matched on instance/protocol/workspace/env/test_run."""
    by_dims: dict[tuple, int] = {}
    async with db.execute(
        "SELECT instance, protocol, workspace_id, environment, test_run, COUNT(DISTINCT client_ip) "
        "FROM client_analytics WHERE timestamp >= ? AND timestamp < ? "
        "GROUP BY instance, protocol, workspace_id, environment, test_run",
        (day, day + DAY),
    ) as cur:
        async for *dims, n in cur:
            by_dims[tuple(dims)] = n
    if not by_dims:
        return {}
    out: dict[int, int] = {}
    async with db.execute(
        "SELECT series_id, instance, protocol, workspace_id, environment, test_run FROM series "
        "WHERE series_id IN (SELECT DISTINCT series_id FROM metrics_aggregates_hour "
        "WHERE timestamp >= ? AND timestamp < ?)",
        (day, day + DAY),
    ) as cur:
        async for series_id, *dims in cur:
            out[series_id] = by_dims.get(tuple(dims), 0)
    return out


async def rollup_day(db: aiosqlite.Connection, day: int, now: float) -> int:
    """Recompute and replace every row of one UTC day from its hour rows in one transaction.

    Clears the day's dirty mark. Returns the number of day rows written.
    """
    day = int(day) // DAY * DAY
    end = day + DAY
    await _begin(db)
    try:
        rows = await db.execute_fetchall(
            f"SELECT series_id, {_SUMS}, MIN(latency_min), MAX(latency_max), "
            "AVG(active_connections_avg), MAX(active_connections_max) "
            "FROM metrics_aggregates_hour WHERE timestamp >= ? AND timestamp < ? GROUP BY series_id",
            (day, end),
        )
        hists, counts = await _histograms(db, _TABLE["hour"], day, end)
        # Hours past their histogram horizon (horizons.py): keep the day's histogram, min and max.
        await carry_slim_histograms(db, "day", day, hists, rows, 1 + len(SUM_COLUMNS))
        clients = await _unique_clients(db, day, [r[0] for r in rows])
        date = utc_date(day)
        created = int(now)
        out = []
        for row in rows:
            series_id = row[0]
            hist = hists.get(series_id, {})
            # Peak hour: most requests, earliest on a tie (min over (-requests, ts)).
            hour_counts = counts.get(series_id) or [(day, 0)]
            peak_ts = min(hour_counts, key=lambda tc: (-tc[1], tc[0]))[0]
            out.append(
                (
                    day,
                    series_id,
                    date,
                    *row[1 : 1 + len(SUM_COLUMNS) + 2],
                    *_percentiles(hist),
                    encode(hist) if hist else None,
                    row[-2] or 0.0,
                    row[-1] or 0,
                    clients.get(series_id, 0),
                    (peak_ts - day) // HOUR,
                    created,
                )
            )
        await db.execute("DELETE FROM metrics_aggregates_day WHERE timestamp = ?", (day,))
        await db.executemany(
            f"INSERT INTO metrics_aggregates_day (timestamp, series_id, date, {_COLS}, latency_min, "
            "latency_max, latency_p50, latency_p95, latency_p99, histogram, active_connections_avg, "
            "active_connections_max, unique_clients, peak_hour, created_at) "
            f"VALUES ({', '.join('?' * (len(SUM_COLUMNS) + 14))})",
            out,
        )
        await db.execute("DELETE FROM rollup_dirty WHERE tier = 'day' AND timestamp = ?", (day,))
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    return len(out)


async def rollup_hours(db: aiosqlite.Connection, now: float) -> list[int]:
    """Roll up every dirty, closed hour (each in its own transaction); update the hour marker.

    Returns the starts of the hours recomputed, oldest first.
    """
    done = []
    for hour in await dirty_buckets(db, "hour"):
        if hour + HOUR > now:
            break  # dirty_buckets is sorted: every later hour is open too
        await rollup_hour(db, hour, now)
        done.append(hour)
    await _store_marker(db, "hour", await rolled_up_until(db, "hour", now), now)
    return done


async def rollup_days(db: aiosqlite.Connection, now: float) -> list[int]:
    """Roll up every dirty, closed day whose hours are all rolled up; update the day marker.

    Returns the starts of the days recomputed, oldest first.
    """
    dirty_hours = await dirty_buckets(db, "hour")
    blocked = {h // DAY * DAY for h in dirty_hours}
    done = []
    for day in await dirty_buckets(db, "day"):
        if day + DAY > now or day in blocked:
            continue  # still open, or an hour of it still waits for its roll-up
        await rollup_day(db, day, now)
        done.append(day)
    await _store_marker(db, "day", await rolled_up_until(db, "day", now), now)
    return done

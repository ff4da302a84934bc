"""Read SQL over the metric tiers: series filters, counter sums, histograms and rows of a window.

Which tier answers which part of a window (the minute/hour/day split, the roll-up markers and
the histogram horizons) is decided in store/tiers.py; the names are re-exported here.

Filters become ``m.series_id IN (SELECT series_id FROM series WHERE ...)`` with bound values.
Query plans (checked in tests/test_query_store.py): every tier read is
``SEARCH m USING PRIMARY KEY (timestamp>? AND timestamp<?)`` and the filter a
``LIST SUBQUERY`` over ``series`` evaluated once per statement.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Any, cast

import aiosqlite

from ..params import QueryParams
from .filters import column_conditions
from .tiers import (
    HOUR_HISTOGRAMS_FROM,
    MINUTE_HISTOGRAMS_FROM,
    TIER_TABLES,
    Markers,
    TierRange,
    coarsest_for,
    histogram_ranges,
    percentile_bucket,
    read_markers,
    split_window,
    widened_ranges,
)

__all__ = [
    "COUNTER_COLUMNS",
    "DIMENSIONS",
    "HOUR_HISTOGRAMS_FROM",
    "MINUTE_HISTOGRAMS_FROM",
    "SERIES_COLUMNS",
    "TIER_TABLES",
    "Counters",
    "Markers",
    "TierRange",
    "coarsest_for",
    "histogram_ranges",
    "iter_histograms",
    "iter_rows",
    "percentile_bucket",
    "read_markers",
    "series_filter",
    "series_lookup",
    "split_window",
    "sum_counters",
    "unique_clients",
    "widened_ranges",
]

# Columns that add up across rows and tiers (latency_min/max are folded with min/max).
COUNTER_COLUMNS = (
    "request_count",
    "error_count",
    "latency_count",
    "latency_sum",
    "bytes_sent",
    "bytes_received",
    "fault_count",
    "injected_latency_sum",
    "session_count",
    "session_duration_sum",
)
# Group-by name -> SQL expression over `series AS s` (status_class: 2 for 2xx).
DIMENSIONS = {
    "series_id": "m.series_id",  # no join needed
    "protocol": "s.protocol",
    "method": "s.method",
    "endpoint": "s.endpoint",
    "status_code": "s.status_code",
    "status_class": "s.status_code / 100",
    "workspace_id": "s.workspace_id",
    "environment": "s.environment",
    "test_run": "s.test_run",
    "instance": "s.instance",
    "source": "s.source",
}
SERIES_COLUMNS = {
    "protocol": "protocol",
    "method": "method",
    "workspace_id": "workspace_id",
    "environment": "environment",
    "test_run": "test_run",
    "source": "source",
    "instance": "instance",
}
_SUMS = ", ".join(f"SUM(m.{c})" for c in COUNTER_COLUMNS) + ", MIN(m.latency_min), MAX(m.latency_max)"
_ROW_COLUMNS = ", ".join(f"m.{c}" for c in COUNTER_COLUMNS) + ", m.latency_min, m.latency_max"


class Counters:
    """Summed counters of some rows; `add` folds another row or Counters in."""

    __slots__ = (*COUNTER_COLUMNS, "latency_max", "latency_min")
    # Declared for type checkers; the slots above hold them (sums start at 0).
    request_count: int
    error_count: int
    latency_count: int
    latency_sum: float
    bytes_sent: int
    bytes_received: int
    fault_count: int
    injected_latency_sum: float
    session_count: int
    session_duration_sum: float
    latency_min: float | None
    latency_max: float | None

    def __init__(self, values: Sequence[Any] | None = None) -> None:
        vals = values or (0,) * len(COUNTER_COLUMNS) + (None, None)
        for name, value in zip(COUNTER_COLUMNS, vals, strict=False):
            setattr(self, name, value or 0)
        self.latency_min = vals[len(COUNTER_COLUMNS)]
        self.latency_max = vals[len(COUNTER_COLUMNS) + 1]

    def add(self, values: Sequence[Any]) -> None:
        """Add a row shaped like COUNTER_COLUMNS + (latency_min, latency_max)."""
        for name, value in zip(COUNTER_COLUMNS, values, strict=False):
            if value:
                setattr(self, name, getattr(self, name) + value)
        lo, hi = values[len(COUNTER_COLUMNS)], values[len(COUNTER_COLUMNS) + 1]
        if lo is not None and (self.latency_min is None or lo < self.latency_min):
            self.latency_min = lo
        if hi is not None and (self.latency_max is None or hi > self.latency_max):
            self.latency_max = hi

    def merge(self, other: Counters) -> None:
        """Fold another Counters in."""
        self.add([*(getattr(other, c) for c in COUNTER_COLUMNS), other.latency_min, other.latency_max])

    @property
    def avg_latency(self) -> float | None:
        """Mean latency (ms) over the requests that have one: latency_sum / latency_count."""
        return self.latency_sum / self.latency_count if self.latency_count else None


def series_filter(p: QueryParams, column: str = "m.series_id") -> tuple[str, list[Any]]:
    """The filters of `p` as ` AND <column> IN (SELECT series_id FROM series WHERE ...)` plus its values."""
    conds, args = _series_conditions(p)
    if not conds:
        return "", []
    return f" AND {column} IN (SELECT series_id FROM series WHERE {' AND '.join(conds)})", args


DEFAULT_SOURCE = "middleware"


def _series_conditions(p: QueryParams) -> tuple[list[str], list[Any]]:
    conds: list[str] = []
    args: list[Any] = []
    if p.source is None:
        # Pulled (Prometheus) rows may describe the same traffic the middleware captured, so a
        # query reads one source unless asked (docs/prometheus.md, "Counting the same traffic twice").
        conds.append("source = ?")
        args.append(DEFAULT_SOURCE)
    more, more_args = column_conditions(
        p, {**SERIES_COLUMNS, "endpoint": "endpoint", "status_code": "status_code"}
    )
    return conds + more, args + more_args


async def series_lookup(
    conn: aiosqlite.Connection, p: QueryParams, dims: Sequence[str]
) -> dict[int, tuple[Any, ...]]:
    """Map series_id -> the values of `dims` for every series passing the filters of `p`."""
    conds, args = _series_conditions(p)
    exprs = ", ".join(DIMENSIONS[d] for d in dims) or "NULL"
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    async with conn.execute(f"SELECT s.series_id, {exprs} FROM series AS s{where}", args) as cur:
        rows = await cur.fetchall()
    return {row[0]: tuple(row[1:]) if dims else () for row in rows}


async def sum_counters(
    conn: aiosqlite.Connection,
    p: QueryParams,
    markers: Markers,
    *,
    dims: Sequence[str] = (),
    step: int | None = None,
    fields: Collection[str] | None = None,
) -> dict[tuple[Any, ...], Counters]:
    """Sum the counters of the window per key (bucket start if `step`, then the `dims` values).

    `fields` (COUNTER_COLUMNS, latency_min, latency_max) limits what is summed; the others stay
    0/None. Each aggregate costs a few ms per 100k rows, so routes ask only for what they show.
    """
    coarsest = coarsest_for(step)
    out: dict[tuple[Any, ...], Counters] = {}
    flt, fargs = series_filter(p)
    needs_join = any(d != "series_id" for d in dims)
    join = " JOIN series AS s ON s.series_id = m.series_id" if needs_join else ""
    sums = _select_sums(fields)
    nkeys = len(dims) + (step is not None)
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(nkeys))}" if nkeys else ""
    dim_keys = "".join(DIMENSIONS[d] + ", " for d in dims)
    for piece in split_window(p.start, p.end, markers, coarsest):
        kargs: list[Any] = []
        bucket = ""
        if step is not None and TIER_TABLES[piece.tier][1] == step:
            bucket = "m.timestamp, "  # already the bucket start: grouping follows the index order
        elif step is not None:
            bucket = "(m.timestamp / ?) * ?, "
            kargs = [step, step]
        sql = (
            f"SELECT {bucket}{dim_keys}{sums} FROM {piece.table} AS m{join}"
            f" WHERE m.timestamp >= ? AND m.timestamp < ?{flt}{group}"
        )
        async with conn.execute(sql, [*kargs, piece.start, piece.end, *fargs]) as cur:
            async for row in cur:
                if not row[-1]:  # COUNT(*) = 0: an ungrouped query over no rows
                    continue
                values = row[nkeys:-1]
                key = tuple(row[:nkeys])
                acc = out.get(key)
                if acc is None:
                    out[key] = Counters(values)
                else:
                    acc.add(values)
    if fields is None or "latency_min" in fields or "latency_max" in fields:
        extremes = await _widened_extremes(conn, p, markers, step, f"{dim_keys}", join, flt, fargs, nkeys)
        if extremes:
            bucket_of = percentile_bucket(p.start, p.end, step, markers) if step else None
            counted = fields is None or "latency_count" in fields
            _fold_extremes(out, extremes, bucket_of, counted)
    return out


async def _widened_extremes(
    conn: aiosqlite.Connection,
    p: QueryParams,
    markers: Markers,
    step: int | None,
    dim_keys: str,
    join: str,
    flt: str,
    fargs: list[Any],
    nkeys: int,
) -> dict[tuple[Any, ...], tuple[Any, Any]]:
    """MIN(latency_min), MAX(latency_max) of the widened parts, keyed like the sums (wider buckets).

    Slim rows keep no min or max; like percentiles these come from the enclosing hours or days
    (every tier over them: the finer ones hold late data not rolled up yet).
    """
    out: dict[tuple[Any, ...], tuple[Any, Any]] = {}
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(nkeys))}" if nkeys else ""
    for piece in histogram_ranges(p.start, p.end, markers, coarsest_for(step)):
        if not piece.widened:
            continue
        width = max(step, piece.widened) if step is not None else 0
        bucket = f"(m.timestamp / {width}) * {width}, " if step is not None else ""
        sql = (
            f"SELECT {bucket}{dim_keys}MIN(m.latency_min), MAX(m.latency_max) FROM {piece.table} AS m{join}"
            f" WHERE m.timestamp >= ? AND m.timestamp < ?{flt} AND m.latency_max IS NOT NULL{group}"
        )
        async with conn.execute(sql, [piece.start, piece.end, *fargs]) as cur:
            async for row in cur:
                if row[-1] is None:
                    continue
                key = tuple(row[:nkeys])
                lo, hi = out.get(key, (None, None))
                out[key] = (_pick(min, lo, row[-2]), _pick(max, hi, row[-1]))
    return out


def _fold_extremes(
    out: dict[tuple[Any, ...], Counters],
    extremes: dict[tuple[Any, ...], tuple[Any, Any]],
    bucket_of: Callable[[int], int] | None,
    counted: bool,
) -> None:
    """Fold widened min/max into every key they cover (each step bucket inside a wider one).

    With `counted` (latency_count was summed) a key without latencies (WebSocket sessions only)
    gets none: the extremes describe the latencies of a bucket's traffic.
    """
    for key, acc in out.items():
        if counted and not acc.latency_count:
            continue
        wide = key if bucket_of is None else (bucket_of(key[0]), *key[1:])
        found = extremes.get(wide)
        if found is not None:
            acc.latency_min = _pick(min, acc.latency_min, found[0])
            acc.latency_max = _pick(max, acc.latency_max, found[1])


def _pick(choose: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    """min or max of two values either of which may be None."""
    if a is None:
        return b
    return a if b is None else choose(a, b)


def _select_sums(fields: Collection[str] | None) -> str:
    """The aggregate list in Counters order (constants for fields not asked for) plus COUNT(*)."""
    if fields is None:
        return _SUMS + ", COUNT(*)"
    parts = [f"SUM(m.{c})" if c in fields else "0" for c in COUNTER_COLUMNS]
    parts.append("MIN(m.latency_min)" if "latency_min" in fields else "NULL")
    parts.append("MAX(m.latency_max)" if "latency_max" in fields else "NULL")
    return ", ".join(parts) + ", COUNT(*)"


async def iter_histograms(
    conn: aiosqlite.Connection,
    p: QueryParams,
    markers: Markers,
    *,
    step: int | None = None,
    series_ids: Iterable[int] | None = None,
    chunk: int = 10000,
) -> AsyncIterator[list[tuple[int, int, bytes]]]:
    """Yield chunks of (bucket start or 0, series_id, histogram blob) over the window.

    Past a histogram horizon the rows come from the coarser tier (:func:`histogram_ranges`),
    keyed by the hour or day start when that is wider than `step`.
    """
    coarsest = coarsest_for(step)
    flt, fargs = series_filter(p)
    if series_ids is not None:
        flt += " AND m.series_id IN (SELECT value FROM json_each(?))"
        fargs = [*fargs, json.dumps(sorted(series_ids))]
    bucket = "(m.timestamp / ?) * ?" if step is not None else "0"
    for piece in histogram_ranges(p.start, p.end, markers, coarsest):
        # A widened piece is keyed by its own (hour or day) buckets when they are wider than
        # the step: its percentile then stands for every step bucket inside (see widened_ranges).
        width = max(step, piece.widened) if step is not None else 0
        bargs = [width, width] if step is not None else []
        sql = (
            f"SELECT {bucket}, m.series_id, m.histogram FROM {piece.table} AS m"
            f" WHERE m.timestamp >= ? AND m.timestamp < ?{flt} AND m.histogram IS NOT NULL"
        )
        async with conn.execute(sql, [*bargs, piece.start, piece.end, *fargs]) as cur:
            while True:
                rows = await cur.fetchmany(chunk)
                if not rows:
                    break
                yield cast(list[tuple[int, int, bytes]], rows)


async def iter_rows(
    conn: aiosqlite.Connection, p: QueryParams, markers: Markers, *, chunk: int = 2000
) -> AsyncIterator[tuple[str, list[tuple[Any, ...]]]]:
    """Yield (tier, rows) chunks, time-ordered; a row is ROW_COLUMNS (stored p50/p95/p99, histogram).

    Tiers no coarser than `p.granularity` are read, so every row falls inside one bucket.
    """
    flt, fargs = series_filter(p)
    for piece in split_window(p.start, p.end, markers, p.granularity):
        sql = (
            f"SELECT m.timestamp, m.series_id, {_ROW_COLUMNS}, m.latency_p50, m.latency_p95, m.latency_p99,"
            f" m.histogram FROM {piece.table} AS m"
            f" WHERE m.timestamp >= ? AND m.timestamp < ?{flt} ORDER BY m.timestamp, m.series_id"
        )
        async with conn.execute(sql, [piece.start, piece.end, *fargs]) as cur:
            while True:
                rows = await cur.fetchmany(chunk)
                if not rows:
                    break
                yield piece.tier, cast(list[tuple[Any, ...]], rows)


async def unique_clients(conn: aiosqlite.Connection, p: QueryParams) -> int | None:
    """Distinct clients seen in the hours overlapping the window; None when a filter cannot apply.

    client_analytics is hourly and has no method, endpoint, status or source, so those filters
    make the figure unknowable rather than silently wider.
    """
    if any(getattr(p, n) is not None for n in ("method", "endpoint", "status_code", "source")):
        return None
    conds = ["timestamp >= ?", "timestamp < ?"]
    args: list[Any] = [p.start // 3600 * 3600, p.end]
    for name in ("protocol", "instance", "workspace_id", "environment", "test_run"):
        value = getattr(p, name)
        if value is None:
            continue
        values = value if isinstance(value, tuple) else (value,)
        conds.append(f"{name} IN ({', '.join('?' * len(values))})")
        args.extend(values)
    sql = f"SELECT COUNT(DISTINCT client_ip) FROM client_analytics WHERE {' AND '.join(conds)}"
    async with conn.execute(sql, args) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0

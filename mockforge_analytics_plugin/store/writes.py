"""Writing one recorder snapshot: minute rows add deltas, clients upsert-add, errors append.

Free async functions taking a connection, so a PostgreSQL store can mirror them one by one.
Histograms are merged in Python (read the touched rows' blobs in one query per minute, add
counts, write the merged blob and the row's p50/p95/p99 from it): one decode per row, and the
percentile columns come out of the same merge. Measured against a SQL function hist_add()
merging inside the upsert (`python benchmarks/flush_bench.py --compare-merge`): the Python merge
took 183 ms against 481 ms for a 10k-row update on the loaded 2-core CI box. Rows whose merged
histogram is one samples segment (few observations: the common many-series case) skip the dicts:
histogram.merge_encode_samples sorts the observations and reads p50/p95/p99 by position (same
blob and values); `python benchmarks/flush_bench.py` update rounds 126-141 -> 85-92 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import aiosqlite

from .. import histogram
from ..snapshot import ErrorEvent, RecorderSnapshot, SeriesDelta, SeriesKey
from .client_writes import upsert_clients
from .series import invalidate_series_cache, resolve_series_ids, series_dims

__all__ = [
    "WriteResult",
    "insert_error_events",
    "mark_rollup_dirty",
    "pack_with_quantiles",
    "rollback_quietly",
    "upsert_minutes",
    "write_snapshot",
]

_IN_CHUNK = 900  # ids per "IN (...)" list


@dataclass(slots=True)
class WriteResult:
    """What one snapshot write did: rows written per table and how long it took."""

    rows: dict[str, int] = field(default_factory=dict)
    duration_ms: float = 0.0
    requests: int = 0  # requests carried by the snapshot

    @property
    def total_rows(self) -> int:
        """Rows written across all tables."""
        return sum(self.rows.values())


async def write_snapshot(
    db: aiosqlite.Connection,
    snapshot: RecorderSnapshot,
    now: float,
    *,
    batch_size: int = 1000,
    before_commit: Callable[[], None] | None = None,
) -> WriteResult:
    """Write a snapshot in ONE transaction (BEGIN IMMEDIATE ... COMMIT); on any error roll back and raise.

    ``before_commit`` runs last inside the transaction; raising there rolls everything back.
    """
    started = time.perf_counter()
    result = WriteResult(requests=snapshot.request_count())
    if snapshot.is_empty():
        return result
    await db.execute("BEGIN IMMEDIATE")
    try:
        touched: set[int] = set()
        if snapshot.series:
            result.rows["metrics_aggregates_minute"] = await upsert_minutes(
                db, snapshot.series, now, batch_size=batch_size
            )
            touched.update(key.minute for key in snapshot.series)
        if snapshot.clients:
            result.rows["client_analytics"] = await upsert_clients(
                db, snapshot.clients, now, batch_size=batch_size
            )
            touched.update(key.hour for key in snapshot.clients)
        if snapshot.errors:
            result.rows["error_events"] = await insert_error_events(
                db, snapshot.errors, now, batch_size=batch_size
            )
        result.rows["rollup_dirty"] = await mark_rollup_dirty(db, touched)
        if before_commit is not None:
            before_commit()
        await db.execute("COMMIT")
    except BaseException:
        await rollback_quietly(db)
        raise
    result.duration_ms = (time.perf_counter() - started) * 1000.0
    return result


async def rollback_quietly(db: aiosqlite.Connection) -> None:
    """Roll back the open transaction (if any) and forget series ids created in it; never raises."""
    invalidate_series_cache(db)
    try:
        if db.in_transaction:
            await db.execute("ROLLBACK")
    except Exception:  # the original error is what the caller needs
        pass


_MINUTE_COLUMNS = (
    "timestamp, series_id, request_count, error_count, latency_count, latency_sum, latency_min, "
    "latency_max, latency_p50, latency_p95, latency_p99, ttfb_sum, histogram, bytes_sent, "
    "bytes_received, injected_latency_sum, fault_count, session_count, session_duration_sum, "
    "active_connections, created_at, updated_at"
)
_UPSERT_MINUTE = f"""
INSERT INTO metrics_aggregates_minute ({_MINUTE_COLUMNS})
VALUES ({", ".join("?" * 22)})
ON CONFLICT (timestamp, series_id) DO UPDATE SET
    request_count = request_count + excluded.request_count,
    error_count = error_count + excluded.error_count,
    latency_count = latency_count + excluded.latency_count,
    latency_sum = latency_sum + excluded.latency_sum,
    latency_min = COALESCE(MIN(latency_min, excluded.latency_min), latency_min, excluded.latency_min),
    latency_max = COALESCE(MAX(latency_max, excluded.latency_max), latency_max, excluded.latency_max),
    latency_p50 = COALESCE(excluded.latency_p50, latency_p50),
    latency_p95 = COALESCE(excluded.latency_p95, latency_p95),
    latency_p99 = COALESCE(excluded.latency_p99, latency_p99),
    ttfb_sum = ttfb_sum + excluded.ttfb_sum,
    histogram = COALESCE(excluded.histogram, histogram),
    bytes_sent = bytes_sent + excluded.bytes_sent,
    bytes_received = bytes_received + excluded.bytes_received,
    injected_latency_sum = injected_latency_sum + excluded.injected_latency_sum,
    fault_count = fault_count + excluded.fault_count,
    session_count = session_count + excluded.session_count,
    session_duration_sum = session_duration_sum + excluded.session_duration_sum,
    active_connections = MAX(active_connections, excluded.active_connections),
    updated_at = excluded.updated_at
"""


async def upsert_minutes(
    db: aiosqlite.Connection,
    series: Mapping[SeriesKey, SeriesDelta],
    now: float,
    *,
    batch_size: int = 1000,
) -> int:
    """Add deltas into minute rows; histograms merged exactly, percentiles recomputed; return rows."""
    items = list(series.items())
    stamp = int(now)
    step = max(1, batch_size)
    # Series created from here on (ids numbered max + 1 under our write lock) have no stored
    # minute rows yet (foreign key; retention deletes only unreferenced series), so their blobs
    # are not looked up: a round of new series skips every SELECT below.
    rows = await db.execute_fetchall("SELECT coalesce(max(series_id), 0) FROM series")
    known_max = int(next(iter(rows))[0])
    # Chunk by chunk (ids, stored blobs, upsert), so the event loop never runs more than one
    # chunk's worth of Python (~1 ms per 1000 series) between two awaits.
    for start in range(0, len(items), step):
        chunk = items[start : start + step]
        dims_list = [series_dims(key) for key, _ in chunk]
        ids = await resolve_series_ids(db, dims_list, now, batch_size=step)
        series_ids = [ids[dims] for dims in dims_list]
        # Stored blobs of the rows whose histogram changes (none on a minute's first flush).
        wanted: dict[int, list[int]] = {}
        for (key, delta), series_id in zip(chunk, series_ids, strict=True):
            if delta.histogram and series_id <= known_max:
                wanted.setdefault(key.minute, []).append(series_id)
        existing = await _existing_histograms(db, wanted)
        # A generator: sqlite3's executemany pulls the rows on aiosqlite's thread, so merging,
        # packing and percentiles run there, between the per-row sqlite3_step calls that release
        # the GIL, instead of blocking the event loop.
        await db.executemany(_UPSERT_MINUTE, _minute_rows(chunk, series_ids, existing, stamp))
    return len(items)


def _minute_rows(
    items: list[tuple[SeriesKey, SeriesDelta]],
    series_ids: list[int],
    existing: Mapping[tuple[int, int], bytes],
    stamp: int,
) -> Iterator[tuple]:
    """Yield one upsert parameter tuple per series (histogram merged with the stored one)."""
    decode = histogram.decode
    merge_into = histogram.merge_into
    fast = histogram.merge_encode_samples
    get_old = existing.get
    for (key, delta), series_id in zip(items, series_ids, strict=True):
        blob = p50 = p95 = p99 = None
        if delta.histogram:
            old = get_old((key.minute, series_id))
            # Sparse rows (one samples segment): a sorted list instead of dicts, same answer.
            packed = fast(old, delta.histogram)
            if packed is None:
                merged = merge_into(decode(old), delta.histogram) if old else delta.histogram
                packed = pack_with_quantiles(merged)
            blob, p50, p95, p99 = packed
        yield (
            key.minute, series_id, delta.request_count, delta.error_count, delta.latency_count,
            delta.latency_sum, delta.latency_min, delta.latency_max, p50, p95, p99,
            delta.ttfb_sum, blob, delta.bytes_sent, delta.bytes_received,
            delta.injected_latency_sum, delta.fault_count, delta.session_count,
            delta.session_duration_sum, delta.active_connections, stamp, stamp,
        )  # fmt: skip


def pack_with_quantiles(hist: Mapping[int, int]) -> tuple[bytes, float | None, float | None, float | None]:
    """Encode a histogram and read p50/p95/p99 in one sorted pass (answers equal histogram.quantiles)."""
    return histogram.encode_with_quantiles(hist)


async def _existing_histograms(
    db: aiosqlite.Connection, wanted: Mapping[int, list[int]]
) -> dict[tuple[int, int], bytes]:
    """Return {(minute, series_id): blob} for the given rows that exist with a histogram."""
    found: dict[tuple[int, int], bytes] = {}
    for minute, series_ids in wanted.items():
        for start in range(0, len(series_ids), _IN_CHUNK):
            chunk = series_ids[start : start + _IN_CHUNK]
            sql = (
                "SELECT series_id, histogram FROM metrics_aggregates_minute "
                f"WHERE timestamp = ? AND series_id IN ({', '.join('?' * len(chunk))}) "
                "AND histogram IS NOT NULL"
            )
            for series_id, blob in await db.execute_fetchall(sql, (minute, *chunk)):
                found[(minute, series_id)] = blob
    return found


async def mark_rollup_dirty(db: aiosqlite.Connection, timestamps: Iterable[int]) -> int:
    """Mark the hour and day of every given timestamp for the roll-up; return rows marked."""
    marks = set()
    for ts in timestamps:
        marks.add(("hour", ts - ts % 3600))
        marks.add(("day", ts - ts % 86400))
    if marks:
        await db.executemany(
            "INSERT INTO rollup_dirty (tier, timestamp) VALUES (?, ?) ON CONFLICT DO NOTHING", sorted(marks)
        )
    return len(marks)


_INSERT_ERROR = """
INSERT INTO error_events (timestamp, source, instance, protocol, method, endpoint, path, status_code,
    error_type, error_message, error_category, request_id, trace_id, span_id, client_ip, user_agent,
    workspace_id, environment, test_run, fault_injected, metadata, created_at)
VALUES (?, 'middleware', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', ?)
"""


async def insert_error_events(
    db: aiosqlite.Connection, errors: Iterable[ErrorEvent], now: float, *, batch_size: int = 1000
) -> int:
    """Append error events (executemany in batches); return rows."""
    stamp = int(now)
    rows = 0
    batch: list[tuple] = []
    for e in errors:
        batch.append(
            (
                e.timestamp, e.instance, e.protocol, e.method, e.endpoint, e.path, e.status_code,
                e.error_type, e.error_message, e.error_category, e.request_id, e.trace_id, e.span_id,
                e.client_id, e.user_agent, e.workspace_id, e.environment, e.test_run,
                int(e.fault_injected), stamp,
            )
        )  # fmt: skip
        if len(batch) >= batch_size:
            await db.executemany(_INSERT_ERROR, batch)
            rows += len(batch)
            batch = []
    if batch:
        await db.executemany(_INSERT_ERROR, batch)
        rows += len(batch)
    return rows

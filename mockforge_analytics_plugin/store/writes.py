"""Writing one recorder snapshot: minute rows add deltas, clients upsert-add, errors append.

Free async functions taking a connection, so a PostgreSQL store can mirror them one by one.
Histograms are appended in SQL: a blob is a sequence of self-delimiting segments and the
concatenation of two blobs is their sum (see ``histogram``), so the upsert sets
``histogram = stored || delta`` and no stored blob is read, merged or re-encoded on a flush.
Minute rows therefore carry no p50/p95/p99 (NULL; readers compute them from the histogram, hour
and day rows keep theirs from the roll-up). Rows that took several flushes are rewritten in
compact form once their minute is closed (``compaction``), a bounded number per flush, in the
same transaction. The previous design read every touched row's blob and merged it in Python,
so an update cost grew with the row (`python benchmarks/flush_bench.py --rounds 60`, 10k rows
updated every second, CPU on a slow 2-core box: update 1 ~310 ms, update 60 ~1,620 ms); appending
keeps every update at its first one's cost (~150-190 ms on that box), an open row's blob grows
by one small segment per flush (mean 458 bytes after 61 writes, 232 once compacted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import aiosqlite

from ..histogram_numpy import encode_all
from ..snapshot import ErrorEvent, RecorderSnapshot, SeriesDelta, SeriesKey
from .client_writes import upsert_clients
from .compaction import append_log, compact_closed_minutes, compaction_budget, seed_append_log
from .series import invalidate_series_cache, resolve_series_ids, series_dims

__all__ = [
    "WriteResult",
    "insert_error_events",
    "mark_rollup_dirty",
    "rollback_quietly",
    "upsert_minutes",
    "write_snapshot",
]

logger = logging.getLogger("mockforge.analytics.store")

_LOOP_SLICE = 250  # series whose ids are resolved between two turns of the event loop


@dataclass(slots=True)
class WriteResult:
    """What one snapshot write did: rows written per table and how long it took."""

    rows: dict[str, int] = field(default_factory=dict)
    duration_ms: float = 0.0
    requests: int = 0  # requests carried by the snapshot
    compacted: int = 0  # closed minute rows checked for compaction (rewritten when not compact)

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
    appended: dict[int, list[int]] = {}
    await db.execute("BEGIN IMMEDIATE")
    try:
        await seed_append_log(db)  # once per connection: what a previous process left uncompacted
        touched: set[int] = set()
        if snapshot.series:
            result.rows["metrics_aggregates_minute"] = await upsert_minutes(
                db, snapshot.series, now, batch_size=batch_size, appended=appended
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
        compacted = await _compact_quietly(db, now)
        if before_commit is not None:
            before_commit()
        await db.execute("COMMIT")
    except BaseException:
        await rollback_quietly(db)
        raise
    # Committed: what was compacted leaves the log first, then this write's appends count (a
    # row compacted above already holds this write's segment, so it starts again at one).
    log = append_log(db)
    log.forget(compacted)
    log.record(appended, now)
    result.compacted = sum(map(len, compacted.values()))
    result.duration_ms = (time.perf_counter() - started) * 1000.0
    return result


async def _compact_quietly(db: aiosqlite.Connection, now: float) -> dict[int, list[int]]:
    """Compact due minute rows inside a savepoint: a failure there costs the compaction only."""
    budget = compaction_budget(append_log(db), now)
    if not budget:
        return {}  # the common case: no round trip at all
    await db.execute("SAVEPOINT compact_minutes")
    try:
        done = await compact_closed_minutes(db, now, budget=budget)
    except Exception:
        logger.exception("analytics: compacting closed minute rows failed; the flush goes on")
        await db.execute("ROLLBACK TO compact_minutes")
        append_log(db).give_up(now)  # not retried each second; the rows stay exact, only larger
        done = {}
    await db.execute("RELEASE compact_minutes")
    return done


async def rollback_quietly(db: aiosqlite.Connection) -> None:
    """Roll back the open transaction (if any) and forget series ids created in it; never raises."""
    invalidate_series_cache(db)
    try:
        if db.in_transaction:
            await db.execute("ROLLBACK")
    except Exception:  # the original error is what the caller needs
        pass


# p50/p95/p99 are left out (NULL); created_at and updated_at share the last parameter (?18).
_MINUTE_COLUMNS = (
    "timestamp, series_id, request_count, error_count, latency_count, latency_sum, latency_min, "
    "latency_max, ttfb_sum, histogram, bytes_sent, bytes_received, injected_latency_sum, fault_count, "
    "session_count, session_duration_sum, active_connections, created_at, updated_at"
)
# The histogram is appended (concatenation = sum; CAST because || yields TEXT); a delta without
# latencies leaves it as it is. Minute rows keep p50/p95/p99 NULL: a row appended to drops the
# values an older version stored, since they no longer describe its histogram.
_UPSERT_MINUTE = f"""
INSERT INTO metrics_aggregates_minute ({_MINUTE_COLUMNS})
VALUES ({", ".join("?" * 18)}, ?18)
ON CONFLICT (timestamp, series_id) DO UPDATE SET
    request_count = request_count + excluded.request_count,
    error_count = error_count + excluded.error_count,
    latency_count = latency_count + excluded.latency_count,
    latency_sum = latency_sum + excluded.latency_sum,
    latency_min = COALESCE(MIN(latency_min, excluded.latency_min), latency_min, excluded.latency_min),
    latency_max = COALESCE(MAX(latency_max, excluded.latency_max), latency_max, excluded.latency_max),
    latency_p50 = CASE WHEN excluded.histogram IS NULL THEN latency_p50 END,
    latency_p95 = CASE WHEN excluded.histogram IS NULL THEN latency_p95 END,
    latency_p99 = CASE WHEN excluded.histogram IS NULL THEN latency_p99 END,
    ttfb_sum = ttfb_sum + excluded.ttfb_sum,
    histogram = COALESCE(CAST(histogram || excluded.histogram AS BLOB), histogram, excluded.histogram),
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
    appended: dict[int, list[int]] | None = None,
) -> int:
    """Add deltas into minute rows (histograms appended in SQL); return rows.

    ``appended`` (when given) collects {minute: series ids} of the rows given a histogram segment.
    """
    items = list(series.items())
    stamp = int(now)
    step = max(1, batch_size)
    # Chunk by chunk: ids are resolved on the event loop in slices of _LOOP_SLICE series (the
    # loop gets a turn between slices), then the chunk's upsert runs on aiosqlite's thread. Not
    # overlapped with the next chunk's slices: both halves are Python, and sharing the GIL cost
    # more than the overlap won (`flush_bench.py --rounds 10`: update CPU ~110-150 -> ~180-190 ms).
    for start in range(0, len(items), step):
        chunk = items[start : start + step]
        series_ids: list[int] = []
        for first in range(0, len(chunk), _LOOP_SLICE):
            part = chunk[first : first + _LOOP_SLICE]
            dims_list = [series_dims(key) for key, _ in part]
            ids = await resolve_series_ids(db, dims_list, now, batch_size=step)
            series_ids += [ids[dims] for dims in dims_list]
            if appended is not None:
                _note_appends(appended, part, series_ids[first:])
            await asyncio.sleep(0)
        # A generator: sqlite3's executemany pulls the rows on aiosqlite's thread, so encoding
        # the deltas runs there, between the per-row sqlite3_step calls that release the GIL.
        await db.executemany(_UPSERT_MINUTE, _minute_rows(chunk, series_ids, stamp))
    return len(items)


def _note_appends(
    appended: dict[int, list[int]], part: list[tuple[SeriesKey, SeriesDelta]], series_ids: list[int]
) -> None:
    """Add {minute: series ids} of the rows in ``part`` that get a histogram segment."""
    for (key, delta), series_id in zip(part, series_ids, strict=True):
        if delta.histogram:
            minute = appended.get(key.minute)
            if minute is None:
                minute = appended[key.minute] = []
            minute.append(series_id)


def _minute_rows(
    items: list[tuple[SeriesKey, SeriesDelta]], series_ids: list[int], stamp: int
) -> Iterator[tuple]:
    """Yield one upsert parameter tuple per series (the deltas' histograms encoded in one pass)."""
    blobs = encode_all([delta.histogram for _, delta in items])
    for (key, delta), series_id, blob in zip(items, series_ids, blobs, strict=True):
        yield (
            key.minute, series_id, delta.request_count, delta.error_count, delta.latency_count,
            delta.latency_sum, delta.latency_min, delta.latency_max, delta.ttfb_sum, blob or None,
            delta.bytes_sent, delta.bytes_received, delta.injected_latency_sum, delta.fault_count,
            delta.session_count, delta.session_duration_sum, delta.active_connections, stamp,
        )  # fmt: skip


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

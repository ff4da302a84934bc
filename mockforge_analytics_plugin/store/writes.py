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
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

import aiosqlite

from ..snapshot import ErrorEvent, RecorderSnapshot, SeriesDelta, SeriesKey
from .client_writes import upsert_clients
from .compaction import append_log, compact_closed_minutes, compaction_budget, seed_append_log
from .delta_encode import encode_deltas
from .series import SeriesCache, invalidate_series_cache, resolve_series_ids, series_cache, series_dims

__all__ = [
    "MinuteTally",
    "WriteResult",
    "insert_error_events",
    "mark_rollup_dirty",
    "rollback_quietly",
    "upsert_minutes",
    "write_snapshot",
]

logger = logging.getLogger("mockforge.analytics.store")


@dataclass(slots=True)
class MinuteTally:
    """The requests and minutes of the rows :func:`upsert_minutes` wrote.

    Read off each chunk's flat parameters in C (a slice and a sum or set update), not from the
    deltas: attrgetter over 10k keys and deltas cost ~870 instructions a series.
    """

    requests: int = 0
    minutes: set[int] = field(default_factory=set)


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
    result = WriteResult()
    if snapshot.is_empty():
        return result
    appended: dict[int, list[int]] = {}
    await db.execute("BEGIN IMMEDIATE")
    try:
        await seed_append_log(db)  # once per connection: what a previous process left uncompacted
        tally = MinuteTally()
        if snapshot.series:
            result.rows["metrics_aggregates_minute"] = await upsert_minutes(
                db, snapshot.series, now, batch_size=batch_size, appended=appended, tally=tally
            )
        result.requests = tally.requests
        touched = tally.minutes
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


# p50/p95/p99 are left out (NULL); created_at and updated_at share a row's last parameter.
_MINUTE_COLUMNS = (
    "timestamp, series_id, request_count, error_count, latency_count, latency_sum, latency_min, "
    "latency_max, ttfb_sum, histogram, bytes_sent, bytes_received, injected_latency_sum, fault_count, "
    "session_count, session_duration_sum, active_connections, created_at, updated_at"
)
_ROW_PARAMS = 18  # parameters per minute row (see _add_minute_params)
# The histogram is appended (concatenation = sum; CAST because || yields TEXT); a delta without
# latencies leaves it as it is. Minute rows keep p50/p95/p99 NULL: a row appended to drops the
# values an older version stored, since they no longer describe its histogram.
_ON_CONFLICT = """
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


def _upsert_sql(rows: int) -> str:
    """The minute upsert for ``rows`` rows in one statement (numbered parameters, 18 a row)."""
    values = ", ".join(
        "("
        + ", ".join(f"?{_ROW_PARAMS * j + c}" for c in range(1, _ROW_PARAMS + 1))
        + f", ?{_ROW_PARAMS * (j + 1)})"
        for j in range(rows)
    )
    return f"INSERT INTO metrics_aggregates_minute ({_MINUTE_COLUMNS})\nVALUES {values}{_ON_CONFLICT}"


# Rows per statement: each sqlite3 statement execution costs a fixed ~2-3 us on a slow core
# (reset, bind, step, the sqlite3 module's per-row work) besides the row itself, so many rows
# per statement cut the floor of a 10k-row update by ~20% (`flush_bench.py --floor`). Rows
# of one statement must have distinct keys (true: one row per SeriesKey), which PostgreSQL's
# ON CONFLICT also requires. A chunk's rows go ROWS_PER_STATEMENT to a statement and the rest
# (a chunk of fewer rows, or not a multiple) in one statement of their own.
ROWS_PER_STATEMENT = 100
_UPSERT_MINUTES = _upsert_sql(ROWS_PER_STATEMENT)
_STATEMENT_PARAMS = _ROW_PARAMS * ROWS_PER_STATEMENT
# Rows prepared on the event loop between two of its turns (~1-1.5 ms on a slow core, most of it
# encoding their histograms).
_LOOP_SLICE = 250


@functools.lru_cache(maxsize=ROWS_PER_STATEMENT)
def _upsert_sql_for(rows: int) -> str:
    """The upsert statement for a chunk's last ``rows`` rows (fewer than ROWS_PER_STATEMENT)."""
    return _upsert_sql(rows)


async def upsert_minutes(
    db: aiosqlite.Connection,
    series: Mapping[SeriesKey, SeriesDelta],
    now: float,
    *,
    batch_size: int = 1000,
    appended: dict[int, list[int]] | None = None,
    tally: MinuteTally | None = None,
) -> int:
    """Add deltas into minute rows (histograms appended in SQL); return rows.

    ``appended`` (when given) collects {minute: series ids} of the rows given a histogram segment,
    ``tally`` the requests and minutes of the rows.
    """
    # Keys and deltas as two lists, not a list of (key, delta) pairs: 10k pairs would be GC-tracked
    # objects living through the whole flush (promoted, they bring the next full collection nearer).
    keys = list(series)
    deltas = list(series.values())
    step = max(1, batch_size)
    cache = series_cache(db)
    width = _STATEMENT_PARAMS
    # Chunk by chunk: everything Python does for a row (id lookup, histogram encoding, the
    # parameters) runs on the event loop in slices of _LOOP_SLICE rows, then the chunk's
    # statements run on aiosqlite's thread with their parameters ready. That thread then holds the
    # GIL only to bind parameters (it releases it in every sqlite3_step); Python work there made
    # the loop wait for the GIL up to the switch interval (5 ms), often twice a tick. Serial, not
    # overlapped with the next chunk's slices: measured no faster (each side waits for the GIL
    # the other holds) and with more ticks late by over 5 ms (6 of 15 rounds against 2 of 15).
    for start in range(0, len(keys), step):
        params = await _prepare_chunk(
            db, cache, keys[start : start + step], deltas[start : start + step], now, step, appended
        )
        if tally is not None:
            tally.requests += sum(params[2::_ROW_PARAMS])
            tally.minutes.update(params[0::_ROW_PARAMS])
        whole = len(params) - len(params) % width
        statements = [params[i : i + width] for i in range(0, whole, width)]
        rest = params[whole:]
        del params
        # What came due during the last slice runs before the writer starts: a loop that wants
        # the GIL back while the writer binds and steps can lose it for the writer's whole run.
        await _yield_to_loop()
        if statements:
            await db.executemany(_UPSERT_MINUTES, statements)
        if rest:
            await db.execute(_upsert_sql_for(len(rest) // _ROW_PARAMS), rest)
    return len(keys)


async def _prepare_chunk(
    db: aiosqlite.Connection,
    cache: SeriesCache,
    keys: list[SeriesKey],
    deltas: list[SeriesDelta],
    now: float,
    batch_size: int,
    appended: dict[int, list[int]] | None,
) -> list[Any]:
    """The parameters of a chunk's rows in one flat list (_ROW_PARAMS a row), built on the event
    loop in slices."""
    stamp = int(now)
    params: list[Any] = []
    for first in range(0, len(keys), _LOOP_SLICE):
        await _yield_to_loop()
        part_keys = keys[first : first + _LOOP_SLICE]
        part_deltas = deltas[first : first + _LOOP_SLICE]
        series_ids = await _series_ids(db, cache, part_keys, now, batch_size)
        hists = [delta.histogram for delta in part_deltas]
        mark = len(params)
        _add_minute_params(params, part_keys, part_deltas, series_ids, encode_deltas(hists), stamp)
        if appended is not None:
            _note_appends(appended, params[mark::_ROW_PARAMS], hists, series_ids)
    return params


async def _yield_to_loop() -> None:
    """Let every callback and coroutine that is due run before we go on.

    ``sleep(0)`` is not enough: it puts this task back at the end of the ready queue, where a
    timer that fired meanwhile is still one turn away from waking its coroutine, so that one
    would wait for our next slice too (measured: loop busy 5-7 ms between two ticks of a 1 ms
    ticker with 2.5 ms slices). A timer of our own comes due after those already due, so their
    coroutines run first.
    """
    await asyncio.sleep(1e-6)


async def _series_ids(
    db: aiosqlite.Connection, cache: SeriesCache, keys: list[SeriesKey], now: float, batch_size: int
) -> list[int]:
    """Series ids of ``keys`` in order: from the cache, the missing ones read or created."""
    ids = cache.ids_of(keys)
    if None not in ids:
        return ids  # type: ignore[return-value]
    missing = [key for key, series_id in zip(keys, ids, strict=True) if series_id is None]
    found = await resolve_series_ids(db, missing, now, batch_size=batch_size)
    return [
        found[series_dims(key)] if series_id is None else series_id
        for key, series_id in zip(keys, ids, strict=True)
    ]


def _note_appends(
    appended: dict[int, list[int]], minutes: list[int], hists: list[dict[int, int]], series_ids: list[int]
) -> None:
    """Add {minute: series ids} of the rows that get a histogram segment (a non-empty histogram)."""
    first = minutes[0] if minutes else 0
    if minutes.count(first) == len(minutes):  # the usual case: one minute in the slice
        appended.setdefault(first, []).extend(compress(series_ids, hists))
        return
    for minute, series_id in compress(zip(minutes, series_ids, strict=True), hists):
        appended.setdefault(minute, []).append(series_id)


def _add_minute_params(
    params: list[Any],
    keys: list[SeriesKey],
    deltas: list[SeriesDelta],
    series_ids: list[int],
    blobs: list[bytes | bytearray],
    stamp: int,
) -> None:
    """Append each row's upsert parameters to ``params`` (flat: what a statement of many rows binds).

    One flat list, not a tuple a row chained into a tuple a statement: a row's tuple comes from
    the interpreter's free list and is copied into the list in C, with nothing left to free.
    """
    for key, delta, series_id, blob in zip(keys, deltas, series_ids, blobs, strict=True):
        params += (
            key.minute, series_id, delta.request_count, delta.error_count, delta.latency_count,
            delta.latency_sum, delta.latency_min, delta.latency_max, delta.ttfb_sum, blob or None,
            delta.bytes_sent, delta.bytes_received, delta.injected_latency_sum, delta.fault_count,
            delta.session_count, delta.session_duration_sum, delta.active_connections, stamp,
        )  # fmt: skip


def _minute_params(
    keys: list[SeriesKey], deltas: list[SeriesDelta], series_ids: list[int], stamp: int
) -> list[Any]:
    """The flat upsert parameters of these rows, histograms encoded (for the flush bench's floor)."""
    params: list[Any] = []
    hists = [delta.histogram for delta in deltas]
    _add_minute_params(params, keys, deltas, series_ids, encode_deltas(hists), stamp)
    return params


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

"""Compacting closed minute rows: one histogram segment per flush becomes the single encoding.

The flush appends each delta's histogram to the stored blob in SQL (a blob is a sequence of
segments and a concatenation is the sum, see ``histogram``), so a minute row written by 60
flushes holds 60 segments. Once its minute has been closed for ``GRACE_SECONDS`` (late requests
and put-back snapshots land within that), :func:`compact_closed_minutes` rewrites such rows as
``encode(decode(blob))``: the exact bytes one write of all their observations would have stored,
so no count and no quantile changes.

Which rows need it is known without reading a blob: every flush reports the (minute, series)
rows it appended to, and a row appended to twice or more holds several segments. A bounded
number of rows is compacted per flush, so a minute of 10k busy series is spread over many
flushes instead of landing on one. The bookkeeping lives in memory per writer connection; what
a restart forgets is found again by :func:`seed_append_log` on the first write: the rows of the
last ``SEED_SECONDS`` of stored minutes are looked at once (and rewritten only if not compact).
A row appended to after its minute was due (late data) counts as several segments at once.

Measured (`python benchmarks/flush_bench.py --rounds 60 --compact-at-once`, 10k rows written by
61 flushes, CPU on a slow 2-core box): their blobs average 458 bytes open, 232 compacted; all
of them in one transaction cost ~480 ms (~48 us a row: SELECT, numpy decode + encode, UPDATE),
so they are spread instead (334 rows a flush here, ~+20-30 ms on each of 30 flushes). Doing it
in the hour roll-up would cost the same per row but 60 times the rows in one transaction (every
minute of the hour, holding the write lock for tens of seconds on that box) and leave every
minute of the open hour at full size for queries and on disk until then.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import aiosqlite

from ..histogram import _count_elements
from ..histogram_numpy import compact

__all__ = [
    "CHUNK_ROWS",
    "GRACE_SECONDS",
    "SEED_SECONDS",
    "AppendLog",
    "append_log",
    "compact_closed_minutes",
    "compaction_budget",
    "seed_append_log",
    "warm_up",
]

logger = logging.getLogger("mockforge.analytics.store")

GRACE_SECONDS = 120  # a minute is compacted once it ended this long ago
CHUNK_ROWS = 100  # rows per SELECT / compact / UPDATE step (0.5-0.75 ms of numpy a chunk, measured on a 2-core VM)
MIN_BUDGET = 250  # rows compacted per flush at least, when that many wait
DRAIN_FLUSHES = 30  # ... and enough that a backlog is gone within this many flushes
# A previous process left uncompacted at most its open minutes, those within the grace period
# and what its last DRAIN_FLUSHES flushes had not reached: well inside ten minutes.
SEED_SECONDS = 600

_SELECT = (
    "SELECT series_id, histogram FROM metrics_aggregates_minute WHERE timestamp = ? "
    "AND series_id IN (SELECT value FROM json_each(?)) AND histogram IS NOT NULL"
)
_SEED = (
    "SELECT timestamp, series_id FROM metrics_aggregates_minute WHERE timestamp >= ? "
    "AND histogram IS NOT NULL"
)
_UPDATE = "UPDATE metrics_aggregates_minute SET histogram = ? WHERE timestamp = ? AND series_id = ?"


@dataclass(slots=True)
class AppendLog:
    """Histogram appends seen per (minute, series) since this process started writing."""

    minutes: dict[int, dict[int, int]] = field(default_factory=dict)
    seeded: bool = False  # rows written before this process started have been looked up
    rate: int = 0  # rows per flush while a backlog drains (kept until it is gone)

    def record(self, touched: Mapping[int, Iterable[int]], now: float) -> None:
        """Count one committed append for each (minute, series_id) in ``touched``.

        A row of a minute already due (late data: a put-back snapshot) may have been compacted
        and forgotten, so one append there counts as two: the row is looked at again.
        """
        cutoff = int(now) - 60 - GRACE_SECONDS
        for minute, series_ids in touched.items():
            counts = self.minutes.get(minute)
            if counts is None:
                counts = self.minutes[minute] = {}
            if minute > cutoff:
                _count_elements(counts, series_ids)
            else:
                for series_id in series_ids:
                    counts[series_id] = counts.get(series_id, 0) + 2

    def forget(self, done: Mapping[int, Iterable[int]]) -> None:
        """Drop rows a committed compaction rewrote (or found gone)."""
        for minute, series_ids in done.items():
            counts = self.minutes.get(minute)
            if counts is None:
                continue
            for series_id in series_ids:
                counts.pop(series_id, None)
            if not counts:
                del self.minutes[minute]

    def due(self, now: float) -> Iterator[tuple[int, list[int]]]:
        """Yield (minute, series ids of several segments) for minutes closed long enough, oldest
        first; rows of one segment are dropped from the log on the way (nothing to do)."""
        cutoff = int(now) - 60 - GRACE_SECONDS
        for minute in sorted(m for m in self.minutes if m <= cutoff):
            counts = self.minutes[minute]
            wanted = sorted(sid for sid, n in counts.items() if n >= 2)
            if len(wanted) < len(counts):
                self.minutes[minute] = counts = {sid: counts[sid] for sid in wanted}
            if not counts:
                del self.minutes[minute]
                continue
            yield minute, wanted

    def give_up(self, now: float) -> None:
        """Forget every due minute (after a failed compaction: not retried on every flush)."""
        cutoff = int(now) - 60 - GRACE_SECONDS
        for minute in [m for m in self.minutes if m <= cutoff]:
            del self.minutes[minute]

    def pending(self, now: float) -> int:
        """Rows of closed minutes that may still need compaction (an upper bound)."""
        cutoff = int(now) - 60 - GRACE_SECONDS
        return sum(len(c) for m, c in self.minutes.items() if m <= cutoff)


# One log per writer connection, like the series-id cache.
_logs: weakref.WeakKeyDictionary[aiosqlite.Connection, AppendLog] = weakref.WeakKeyDictionary()


def append_log(db: aiosqlite.Connection) -> AppendLog:
    """Return the append log of a writer connection (created on first use)."""
    log = _logs.get(db)
    if log is None:
        log = _logs[db] = AppendLog()
    return log


async def seed_append_log(db: aiosqlite.Connection) -> int:
    """Once per connection, before its first write: put the rows of the last SEED_SECONDS of
    stored minutes in the log as "maybe several segments" (a previous process may have appended
    to them and stopped before compacting). Returns the rows added."""
    log = append_log(db)
    if log.seeded:
        return 0
    rows = await db.execute_fetchall("SELECT max(timestamp) FROM metrics_aggregates_minute")
    latest = next(iter(rows))[0]
    found = [] if latest is None else await db.execute_fetchall(_SEED, (int(latest) - SEED_SECONDS,))
    for minute, series_id in found:
        counts = log.minutes.get(minute)
        if counts is None:
            counts = log.minutes[minute] = {}
        counts[series_id] = counts.get(series_id, 0) + 2
    log.seeded = True
    return len(found)


def compaction_budget(log: AppendLog, now: float) -> int:
    """Rows to compact in this flush: at least MIN_BUDGET, and a backlog gone in DRAIN_FLUSHES.

    The rate set when a backlog appears holds until it is drained (recomputing it from what is
    left would slow down as the backlog shrinks).
    """
    pending = log.pending(now)
    if not pending:
        log.rate = 0
        return 0
    log.rate = max(log.rate, MIN_BUDGET, -(-pending // DRAIN_FLUSHES))
    return min(pending, log.rate)


async def compact_closed_minutes(
    db: aiosqlite.Connection, now: float, *, budget: int | None = None
) -> dict[int, list[int]]:
    """Inside the caller's transaction, rewrite up to ``budget`` due minute rows in compact form.

    Returns {minute: series ids} of the rows handled (rewritten, already compact or gone), for
    :meth:`AppendLog.forget` once the transaction has committed.
    """
    log = append_log(db)
    if budget is None:
        budget = compaction_budget(log, now)
    done: dict[int, list[int]] = {}
    if budget <= 0:
        return done
    for minute, series_ids in log.due(now):
        for start in range(0, len(series_ids), CHUNK_ROWS):
            chunk = series_ids[start : start + min(CHUNK_ROWS, budget)]
            rows = await db.execute_fetchall(_SELECT, (minute, json.dumps(chunk)))
            if rows:
                # A generator: the numpy work runs on aiosqlite's thread when executemany pulls
                # the first row, not on the event loop.
                await db.executemany(_UPDATE, _compacted(minute, list(rows)))
            done.setdefault(minute, []).extend(chunk)
            budget -= len(chunk)
            if budget <= 0:
                return done
    return done


def warm_up() -> None:
    """Run the compaction's numpy path once on a tiny blob.

    Its first call in a process costs ~14 ms (numpy's first use of the functions it calls, on a
    slow VM; ~0.6 ms a call after that), and compaction runs on aiosqlite's thread in the middle of
    a flush, where Python work keeps the event loop waiting for the GIL. SQLiteStore.open calls
    this, so that cost is paid at start-up instead.
    """
    compact([b"\x12\x2c\x01\x00\x12\x2d\x01\x00"])  # two one-observation segments


def _compacted(minute: int, rows: list[tuple[int, bytes]]) -> Iterator[tuple[bytes, int, int]]:
    """UPDATE parameters for the rows whose compact blob differs from the stored one."""
    blobs = [blob for _, blob in rows]
    try:
        packed = compact(blobs)
    except ValueError:  # a malformed blob: leave the rows as they are (queries will say so)
        logger.warning("analytics: minute %d holds a malformed histogram; not compacted", minute)
        return
    for (series_id, blob), new in zip(rows, packed, strict=True):
        if new != blob:  # a bytearray: sqlite3 binds bytes through its adapter lookup (delta_encode)
            yield bytearray(new), minute, series_id

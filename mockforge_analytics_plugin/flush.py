"""The flush task: swap the recorder's buffers and write them to the store in one transaction.

A failed write (locked past busy_timeout, read-only, folder removed, disk I/O error, store
closed) never raises into the caller: the snapshot goes back into the recorder, which applies
``max_buffered_events`` and counts what it has to drop; a warning is logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .config import AnalyticsConfig
from .snapshot import DropCounters, RecorderSnapshot
from .store.writes import WriteResult

__all__ = ["FlushResult", "Flusher", "RecorderLike", "SnapshotStore"]

WARN_INTERVAL_SECONDS = 60.0
RELEASE_SLICE = 2000  # series of a written snapshot freed between two turns of the event loop


async def _release(series: dict[Any, Any]) -> None:
    """Empty ``series`` RELEASE_SLICE entries at a time, yielding to the loop in between."""
    pop = series.popitem
    while series:
        for _ in range(min(RELEASE_SLICE, len(series))):
            pop()
        await asyncio.sleep(1e-6)  # a timer: coroutines woken meanwhile run first (store/writes.py)


class RecorderLike(Protocol):
    """What the flusher needs from the recorder."""

    @property
    def drops(self) -> DropCounters:
        """What the recorder had to drop or fold (read-only)."""
        ...

    def swap(self) -> RecorderSnapshot:
        """Take everything buffered and start fresh buffers."""
        ...

    def restore(self, snapshot: RecorderSnapshot) -> None:
        """Put back a snapshot whose write failed (bounded, drops counted)."""
        ...

    def buffered_requests(self) -> int:
        """Requests waiting in memory."""
        ...


class SnapshotStore(Protocol):
    """What the flusher needs from a store (SQLite today, PostgreSQL later)."""

    async def write_snapshot(self, snapshot: RecorderSnapshot, now: float) -> WriteResult:
        """Write a snapshot in one transaction, or raise having written nothing (the result
        counts the snapshot's requests: the flusher does not walk its series again)."""
        ...


@dataclass(slots=True)
class FlushResult:
    """The outcome of one flush: written or put back, with what and how long."""

    ok: bool
    requests: int = 0  # requests carried by the snapshot
    rows: dict[str, int] = field(default_factory=dict)
    duration_ms: float = 0.0
    error: str | None = None
    compacted: int = 0  # closed minute rows the write compacted (see store.compaction)

    @property
    def total_rows(self) -> int:
        """Rows written across all tables."""
        return sum(self.rows.values())


class Flusher:
    """Owns the flush loop: one flush at a time, failures put data back, status for the API."""

    def __init__(
        self,
        recorder: RecorderLike,
        store: SnapshotStore,
        config: AnalyticsConfig,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        *,
        warn_interval: float = WARN_INTERVAL_SECONDS,
    ) -> None:
        self.recorder = recorder
        self.store = store
        self.config = config
        self.clock = clock
        self.logger = logger or logging.getLogger("mockforge.analytics.flush")
        self.warn_interval = warn_interval
        self._lock = asyncio.Lock()  # one writer connection: transactions must never interleave
        self.flush_count = 0  # successful writes (empty snapshots not counted)
        self.failures = 0  # failed writes, data put back
        self.loop_errors = 0  # unexpected exceptions caught by run()
        self.consecutive_failures = 0
        self.suppressed_warnings = 0
        self.last_flush_at: float | None = None
        self.last_flush_duration_ms: float | None = None
        self.last_flush_rows: int = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._last_warning_at: float | None = None
        self._releasing: set[asyncio.Future[None]] = set()  # written snapshots being freed
        self.closed = False

    async def flush_once(self, now: float | None = None) -> FlushResult:
        """Swap the buffers and write them in one transaction; on failure put them back (never raises)."""
        async with self._lock:
            stamp = self.clock() if now is None else now
            snapshot = self.recorder.swap()
            if snapshot.is_empty():
                return FlushResult(ok=True)
            started = time.perf_counter()
            # Shielded: a cancel (shutdown) must not leave us unsure whether COMMIT happened.
            write = asyncio.ensure_future(self.store.write_snapshot(snapshot, stamp))
            try:
                written = await asyncio.shield(write)
            except asyncio.CancelledError:
                await self._settle(write, snapshot, stamp, started)
                raise
            except Exception as exc:
                return self._failed(snapshot, exc, stamp, started)
            result = self._succeeded(snapshot, written, stamp, started)
            self._release_later(snapshot)
            return result

    def _release_later(self, snapshot: RecorderSnapshot) -> None:
        """Free a written snapshot a slice of series at a time, in a task of its own.

        10k series are ~30k objects (key, delta, histogram); dropped at once when flush_once
        returned, their deallocation held the event loop for 4-8 ms on a slow VM.
        """
        if len(snapshot.series) <= RELEASE_SLICE:
            return
        task = asyncio.ensure_future(_release(snapshot.series))
        snapshot.series = {}
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _settle(
        self, write: asyncio.Future[WriteResult], snapshot: RecorderSnapshot, stamp: float, started: float
    ) -> FlushResult:
        """Wait for a write whose caller was cancelled, and account for it either way."""
        try:
            written = await asyncio.wait_for(asyncio.shield(write), timeout=30.0)
        except BaseException as exc:  # includes a second cancel: the data must go back
            if not write.done():
                write.cancel()
            return self._failed(snapshot, exc, stamp, started)
        return self._succeeded(snapshot, written, stamp, started)

    def _succeeded(
        self, snapshot: RecorderSnapshot, written: WriteResult, stamp: float, started: float
    ) -> FlushResult:
        duration_ms = (time.perf_counter() - started) * 1000.0
        if self.consecutive_failures:
            self.logger.info(
                "analytics store writable again after %d failed flushes", self.consecutive_failures
            )
        self.consecutive_failures = 0
        self.flush_count += 1
        self.last_flush_at = stamp
        self.last_flush_duration_ms = duration_ms
        self.last_flush_rows = written.total_rows
        return FlushResult(
            True, written.requests, dict(written.rows), duration_ms, compacted=written.compacted
        )

    def _failed(
        self, snapshot: RecorderSnapshot, exc: BaseException, stamp: float, started: float
    ) -> FlushResult:
        self.recorder.restore(snapshot)
        self.failures += 1
        self.consecutive_failures += 1
        message = f"{type(exc).__name__}: {exc}"
        self.last_error = message
        self.last_error_at = stamp
        if self._last_warning_at is None or stamp - self._last_warning_at >= self.warn_interval:
            self._last_warning_at = stamp
            self.logger.warning(
                "analytics flush failed (%s); %d requests buffered, %d dropped so far; retrying"
                " (this warning repeats at most once a minute; %d suppressed)",
                message,
                self.recorder.buffered_requests(),
                self.recorder.drops.buffer_dropped_requests,
                self.suppressed_warnings,
            )
            self.suppressed_warnings = 0
        else:
            self.suppressed_warnings += 1
        duration_ms = (time.perf_counter() - started) * 1000.0
        return FlushResult(False, snapshot.request_count(), {}, duration_ms, message)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold off every flush (a swap and its write) for the block, e.g. ``POST /reset``.

        A flush that already swapped the buffers finishes its write first, so nothing taken
        from the recorder before the block is written after it.
        """
        async with self._lock:
            yield

    async def run(self) -> None:
        """Flush every ``flush_interval_seconds`` until cancelled; errors are logged and counted."""
        interval = max(0.01, float(self.config.flush_interval_seconds))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in swap/restore must not end the loop
                self.loop_errors += 1
                self.logger.exception("analytics flush loop error (%d so far)", self.loop_errors)

    async def close(self, attempts: int = 5, retry_delay: float = 0.1) -> FlushResult:
        """Final flush on shutdown, retried briefly; returns the last attempt's result."""
        result = FlushResult(ok=True)
        for attempt in range(max(1, attempts)):
            try:
                result = await self.flush_once()
            except Exception as exc:  # same policy as run(): never raise out of shutdown
                self.loop_errors += 1
                result = FlushResult(False, error=f"{type(exc).__name__}: {exc}")
            if result.ok and self.recorder.buffered_requests() == 0:
                break
            if not result.ok and attempt + 1 < attempts:
                await asyncio.sleep(retry_delay)
        self.closed = True
        if not result.ok:
            self.logger.warning(
                "analytics final flush failed (%s); %d requests not written",
                result.error,
                self.recorder.buffered_requests(),
            )
        return result

    def status(self) -> dict[str, Any]:
        """Figures for `GET <mount>/api/status`: buffered, dropped and last-flush numbers."""
        return {
            "buffered_requests": self.recorder.buffered_requests(),
            "dropped": asdict(self.recorder.drops),
            "last_flush_at": self.last_flush_at,
            "last_flush_duration_ms": (
                None if self.last_flush_duration_ms is None else round(self.last_flush_duration_ms, 3)
            ),
            "last_flush_rows": self.last_flush_rows,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "flush_count": self.flush_count,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "loop_errors": self.loop_errors,
        }

"""The retention task: per-table age limits every retention.cleanup_interval_hours, then vacuum.

Between those runs it applies the histogram horizons every hour (store/horizons.py), so minute
rows hold histograms for minute_histograms_days plus at most an hour, not plus a cleanup interval,
and re-packs the minute rows of the hours closed since.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .config import AnalyticsConfig
from .periodic import repeat
from .rollup import maintenance_connection
from .store import horizons
from .store import retention as store_retention
from .store.series import invalidate_series_cache
from .store.sqlite import writing

__all__ = ["HORIZON_INTERVAL_SECONDS", "Retention", "RetentionReport"]

HORIZON_INTERVAL_SECONDS = 3600.0  # histogram horizons move by whole hours


class RetentionReport(dict[str, int]):
    """{table: rows deleted} (plus 'series' orphans); `slimmed` is {table: rows slimmed}."""

    def __init__(self, deleted: dict[str, int], slimmed: dict[str, int], repacked: int = 0) -> None:
        super().__init__(deleted)
        self.slimmed = dict(slimmed)
        self.repacked = repacked  # minute rows of closed hours re-packed onto full pages


class Retention:
    """Deletes rows past each table's limit on a schedule or on demand; failures never kill it."""

    def __init__(
        self,
        store: Any,
        config: AnalyticsConfig,
        clock: Callable[[], float] = time.time,
        *,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_seconds: float = 60.0,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._sleep = sleep  # injectable so tests drive the loop without waiting
        self.retry_seconds = retry_seconds  # after a failure (store locked, disk full) retry sooner
        self.logger = logger or logging.getLogger("mockforge.analytics.retention")
        self.runs = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_result: RetentionReport | None = None
        self.last_slimmed: dict[str, int] | None = None
        self.last_repacked = 0
        self._lock = asyncio.Lock()  # POST /retention/run and the loop never overlap

    async def retention_once(self, now: float | None = None) -> RetentionReport:
        """Apply every table's limit, then the histogram horizons; report rows deleted and slimmed."""
        async with self._lock:
            stamp = self.clock() if now is None else now
            async with maintenance_connection(self.store) as db:
                async with writing(self.store):
                    deleted = await store_retention.apply_retention(db, self.config.retention, stamp)
                    if deleted.get("series") and getattr(self.store, "writer", None) is not None:
                        # The flush's connection caches series ids; some of them may be gone now.
                        invalidate_series_cache(self.store.writer)
                slimmed = await self._slim(db, stamp)
            self.runs += 1
            self.last_result = RetentionReport(deleted, slimmed, self.last_repacked)
            return self.last_result

    async def horizons_once(self, now: float | None = None) -> dict[str, int]:
        """Apply the histogram horizons only; return {table: rows slimmed}."""
        async with self._lock:
            stamp = self.clock() if now is None else now
            async with maintenance_connection(self.store) as db:
                slimmed = await self._slim(db, stamp)
            self.last_slimmed = slimmed
            return slimmed

    async def _slim(self, db: Any, now: float) -> dict[str, int]:

        def guard() -> Any:  # each slice takes the write lock anew: the flush waits for one at most
            return writing(self.store)

        slimmed = await horizons.apply_histogram_horizons(db, self.config.retention, now, guard=guard)
        repacked = await horizons.repack_closed_minutes(db, now, guard=guard)
        if any(slimmed.values()) or repacked:
            async with writing(self.store):
                await store_retention.incremental_vacuum(db)
        self.last_slimmed = slimmed
        self.last_repacked = repacked
        return slimmed

    async def reset(self) -> dict[str, int]:
        """Delete all analytics data (POST /reset), keeping schema_migrations; return {table: rows}."""
        async with self._lock:
            async with writing(self.store):
                async with maintenance_connection(self.store) as db:
                    result = await store_retention.reset_all(db)
                if getattr(self.store, "writer", None) is not None:
                    # Every cached series id of the flush's connection is gone now.
                    invalidate_series_cache(self.store.writer)
            return result

    async def run(self) -> None:
        """Run at start-up, then every cleanup_interval_hours, the horizons every hour between.

        Failures are logged and counted, never fatal; a failed run is retried sooner.
        """
        interval = max(1.0, float(self.config.retention.cleanup_interval_hours) * 3600.0)
        next_cleanup = self.clock()

        async def step() -> float:
            nonlocal next_cleanup
            now = self.clock()
            if now >= next_cleanup:
                result = await self.retention_once(now)
                next_cleanup = now + interval
                if any(result.values()) or any(result.slimmed.values()):
                    self.logger.info("analytics retention deleted %s, slimmed %s", result, result.slimmed)
            else:
                slimmed = await self.horizons_once(now)
                if any(slimmed.values()):
                    self.logger.info("analytics histogram horizons slimmed %s", slimmed)
            return max(1.0, min(HORIZON_INTERVAL_SECONDS, next_cleanup - self.clock()))

        await repeat(
            step,
            name="retention",
            owner=self,
            interval=min(interval, HORIZON_INTERVAL_SECONDS),
            retry_seconds=self.retry_seconds,
            logger=self.logger,
            sleep=self._sleep,
        )

    def status(self) -> dict[str, Any]:
        """Runs, failures, last error, what the last run deleted and the last horizon pass slimmed."""
        return {
            "runs": self.runs,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_deleted": None if self.last_result is None else dict(self.last_result),
            "last_slimmed": self.last_slimmed,
            "last_repacked": self.last_repacked,
        }

"""The retention task: per-table age limits every retention.cleanup_interval_hours, then vacuum."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .config import AnalyticsConfig
from .periodic import repeat
from .rollup import maintenance_connection
from .store import retention as store_retention
from .store.series import invalidate_series_cache
from .store.sqlite import writing

__all__ = ["Retention"]


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
        self.last_result: dict[str, int] | None = None
        self._lock = asyncio.Lock()  # POST /retention/run and the loop never overlap

    async def retention_once(self, now: float | None = None) -> dict[str, int]:
        """Apply every table's limit now; return {table: rows deleted} (plus 'series' orphans)."""
        async with self._lock:
            stamp = self.clock() if now is None else now
            async with writing(self.store):
                async with maintenance_connection(self.store) as db:
                    result = await store_retention.apply_retention(db, self.config.retention, stamp)
                if result.get("series") and getattr(self.store, "writer", None) is not None:
                    # The flush's connection caches series ids; some of them may be gone now.
                    invalidate_series_cache(self.store.writer)
            self.runs += 1
            self.last_result = result
            return result

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
        """Run once at start-up, then every cleanup_interval_hours; log and count failures."""
        interval = max(1.0, float(self.config.retention.cleanup_interval_hours) * 3600.0)

        async def step() -> float:
            deleted = await self.retention_once()
            if any(deleted.values()):
                self.logger.info("analytics retention deleted %s", deleted)
            return interval

        await repeat(
            step, name="retention", owner=self, interval=interval,
            retry_seconds=self.retry_seconds, logger=self.logger, sleep=self._sleep,
        )

    def status(self) -> dict[str, Any]:
        """Runs, failures, last error and what the last run deleted."""
        return {
            "runs": self.runs,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_deleted": self.last_result,
        }

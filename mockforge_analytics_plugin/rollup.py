"""The roll-up task: hours, days, derived tables and the hourly snapshot, every rollup_interval_hours.

It writes through its own connection to the database file (not the store's writer), so its
transactions can never interleave with the flush's on one connection; SQLite's file lock and
busy_timeout serialise the two, and each transaction is one hour or one day (tens of ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from .config import AnalyticsConfig
from .periodic import repeat
from .store import derived, rollups
from .store.own_connection import open_existing
from .store.sqlite import writing

__all__ = ["Rollup", "RollupResult", "maintenance_connection"]

_MEMORY = ":memory:"
_GRACE_SECONDS = 30.0


@contextlib.asynccontextmanager
async def maintenance_connection(store: Any) -> AsyncIterator[aiosqlite.Connection]:
    """A writer connection for background maintenance: its own for a file, the store's for :memory:."""
    path = str(getattr(store, "path", _MEMORY))
    if path == _MEMORY:
        yield store.writer  # a second ":memory:" connection would be another database (tests only)
        return
    if not Path(path).expanduser().resolve().parent.is_dir():
        # Say which folder is missing (sqlite would only say "unable to open database file").
        raise FileNotFoundError(f"analytics database folder does not exist: {Path(path).parent}")
    db = await open_existing(path, int(getattr(store, "busy_timeout_ms", 5000)))
    try:
        yield db
    finally:
        await db.close()


@dataclass(slots=True)
class RollupResult:
    """What one roll-up pass recomputed."""

    hours: list[int] = field(default_factory=list)  # hour starts replaced in the hour table
    days: list[int] = field(default_factory=list)  # day starts replaced in the day table
    traffic_pattern_rows: int = 0
    endpoint_stats_rows: int = 0
    snapshot_hour: int | None = None  # the hour of the 'hourly' snapshot written
    rolled_up_until_hour: int = 0
    rolled_up_until_day: int = 0
    duration_ms: float = 0.0


class Rollup:
    """Runs roll-ups and derived tables on a schedule; failures are logged and counted, never fatal."""

    def __init__(
        self,
        store: Any,
        config: AnalyticsConfig,
        clock: Callable[[], float] = time.time,
        snapshot_source: Callable[[], dict[str, Any]] | None = None,
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
        self.snapshot_source = snapshot_source
        self.logger = logger or logging.getLogger("mockforge.analytics.rollup")
        self.sampler = derived.ProcessSampler()
        self.endpoint_cache = derived.EndpointStatsCache()
        self.started_at = clock()
        self.runs = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_result: RollupResult | None = None
        self._lock = asyncio.Lock()  # a manual run and the loop never overlap

    async def rollup_once(self, now: float | None = None) -> RollupResult:
        """Roll up every closed dirty hour and day, refresh derived tables and the snapshot."""
        async with self._lock:
            stamp = self.clock() if now is None else now
            started = time.perf_counter()
            result = RollupResult()
            async with writing(self.store), maintenance_connection(self.store) as db:
                result.hours = await rollups.rollup_hours(db, stamp)
                result.days = await rollups.rollup_days(db, stamp)
                result.rolled_up_until_hour = await rollups.rolled_up_until(db, "hour", stamp)
                result.rolled_up_until_day = await rollups.rolled_up_until(db, "day", stamp)
                result.traffic_pattern_rows = await derived.update_traffic_patterns(db, result.hours, stamp)
                result.endpoint_stats_rows = await derived.recompute_endpoint_stats(
                    db,
                    stamp,
                    hour_until=result.rolled_up_until_hour,
                    day_until=result.rolled_up_until_day,
                    cache=self.endpoint_cache,
                )
                last_closed = int(stamp) // rollups.HOUR * rollups.HOUR - rollups.HOUR
                figures = dict(self.snapshot_source() if self.snapshot_source else {})
                figures.setdefault("uptime_seconds", stamp - self.started_at)
                instance = str(figures.get("instance") or self.config.instance or "")
                await derived.write_hourly_snapshot(
                    db, last_closed, stamp, process=self.sampler.sample(), figures=figures, instance=instance
                )
                result.snapshot_hour = last_closed
            result.duration_ms = (time.perf_counter() - started) * 1000.0
            self.runs += 1
            self.last_result = result
            return result

    async def run(self) -> None:
        """Run at start-up, then just after every rollup_interval_hours boundary; failures never kill it."""
        interval = max(1.0, float(self.config.rollup_interval_hours) * 3600.0)

        async def step() -> float:
            await self.rollup_once()
            # Wake just after the next interval boundary (e.g. hh:00:30), once the flush has
            # written the closing minute, so a closed hour reaches the hour table promptly.
            return interval - (self.clock() % interval) + _GRACE_SECONDS

        await repeat(
            step,
            name="roll-up",
            owner=self,
            interval=interval,
            retry_seconds=self.retry_seconds,
            logger=self.logger,
            sleep=self._sleep,
        )

    def status(self) -> dict[str, Any]:
        """Runs, failures, last error and the last result, for the status API."""
        last = self.last_result
        return {
            "runs": self.runs,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_duration_ms": None if last is None else round(last.duration_ms, 1),
            "rolled_up_until_hour": None if last is None else last.rolled_up_until_hour,
            "rolled_up_until_day": None if last is None else last.rolled_up_until_day,
        }

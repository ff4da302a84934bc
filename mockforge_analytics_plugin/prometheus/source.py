"""PrometheusSource: the supervised pull task that ingests complete minutes from a Prometheus server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from ..config import AnalyticsConfig
from ..config_parse import redact_url
from ..store.ingest import read_state, replace_source_minutes
from ..store.own_connection import open_existing
from ..store.series import invalidate_series_cache
from ..store.sqlite import writing
from .client import PrometheusClient, PrometheusError
from .ingest import SOURCE, build_deltas, fetch_window, minutes_of, split_minutes
from .presets import Preset, PresetError, resolve_preset, validate_selector

__all__ = ["STATE_LAST_MINUTE", "IngestResult", "PrometheusSource"]

STATE_LAST_MINUTE = "prometheus:last_ingested_minute"
PERCENTILE_NOTE = (
    "Percentiles pulled from Prometheus are bounded by the exporter's histogram bucket layout: "
    "a percentile reads as the upper bound of the Prometheus bucket it falls in (+Inf as the "
    "largest finite bound); min/max latency are unknown."
)
MINUTE = 60


class EmptyResultError(PrometheusError):
    """Prometheus answered, but no series matched the preset's metrics and the selector."""


@dataclass(slots=True)
class IngestResult:
    """What one ``ingest_once`` did: minutes replaced, rows and requests written, or the error."""

    minutes: list[int] = field(default_factory=list)
    rows: int = 0
    requests: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the run raised nothing (an empty run with nothing due is ok)."""
        return self.error is None


class PrometheusSource:
    """Pull per-minute request counts and latency histograms of a fleet from Prometheus."""

    name = SOURCE

    def __init__(
        self,
        config: AnalyticsConfig,
        store: Any,
        clock: Callable[[], float] = time.time,
        client: PrometheusClient | None = None,
        logger: logging.Logger | None = None,
        *,
        settle_seconds: float = 5.0,
        chunk_minutes: int = 240,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.logger = logger or logging.getLogger("mockforge.analytics.prometheus")
        self.url = config.prometheus_url or ""
        # A boundary's sample is final once Prometheus has stored the scrapes stamped before it.
        self.settle_seconds = settle_seconds
        self.chunk_minutes = max(1, chunk_minutes)
        self._own_client = client is None
        self.client = client or PrometheusClient(self.url)
        self.preset: Preset | None = None
        self.selector = ""
        self._config_error: str | None = None
        try:
            self.preset = resolve_preset(config.prometheus_preset, config.prometheus_mapping)
            self.selector = validate_selector(config.prometheus_selector)
        except PresetError as exc:
            self._config_error = str(exc)
        self._db: aiosqlite.Connection | None = None
        self._own_db = False
        self.last_ingested_minute: int | None = None
        self._marker_loaded = False
        self.last_success_time: float | None = None
        self.last_error: dict[str, Any] | None = None
        self.minutes_ingested = 0
        self.runs = 0
        self.failures = 0

    # -- one pull -------------------------------------------------------------------------------
    async def ingest_once(self, now: float) -> IngestResult:
        """Ingest every complete minute not yet ingested (bounded by the backfill); never raises."""
        self.runs += 1
        result = IngestResult()
        try:
            await self._ingest(now, result)
        except PrometheusError as exc:
            self._fail(now, str(exc), result)
        except Exception as exc:  # the task must outlive a broken store or a bug in one window
            self.logger.exception("prometheus ingest failed")
            self._fail(now, f"{type(exc).__name__}: {exc}", result)
        return result

    async def _ingest(self, now: float, result: IngestResult) -> None:
        if self._config_error is not None or self.preset is None:
            raise PresetError(self._config_error or "prometheus preset not resolved")
        db = await self._connection()
        if not self._marker_loaded:
            stored = await read_state(db, STATE_LAST_MINUTE)
            self.last_ingested_minute = int(stored) if stored else None
            self._marker_loaded = True
        # The last complete minute: its end boundary is at least settle_seconds in the past.
        last = int((now - self.settle_seconds) // MINUTE) * MINUTE - MINUTE
        backfill = max(1, int(self.config.prometheus_backfill_minutes))
        first = last - (backfill - 1) * MINUTE
        if self.last_ingested_minute is not None:
            first = max(first, self.last_ingested_minute + MINUTE)
        for lo, hi in split_minutes(first, last, self.chunk_minutes):
            window = await fetch_window(self.client, self.preset, self.selector, lo, hi)
            if window.is_empty():
                raise EmptyResultError(
                    "empty result: no series matched; check prometheus_preset "
                    f"({self.preset.name}) and prometheus_selector",
                    url=redact_url(self.url) or "",
                    query=" ; ".join(window.queries),
                )
            deltas = build_deltas(self.preset, window, max_endpoints=self.config.max_endpoints)
            minutes = minutes_of(window)
            # The store's write lock: on a ":memory:" store ``db`` IS the flush's connection, and
            # our transaction must not interleave with a flush, roll-up, retention or reset.
            async with writing(self.store):
                # Another writer (retention, reset) may have deleted series: resolve ids afresh.
                invalidate_series_cache(db)
                # Our connection would keep writing into a removed (unlinked) database file and
                # count it as ingested: check the store's file before and at COMMIT, as the flush does.
                check_file = getattr(self.store, "check_file", None)
                if check_file is not None:
                    check_file()
                result.rows += await replace_source_minutes(
                    db,
                    SOURCE,
                    minutes,
                    deltas,
                    now,
                    state={STATE_LAST_MINUTE: str(hi)},
                    before_commit=check_file,
                )
            result.minutes.extend(minutes)
            result.requests += sum(d.request_count for d in deltas.values())
            self.last_ingested_minute = hi
            self.minutes_ingested += len(minutes)
        self.last_success_time = now
        if result.minutes:
            self.logger.debug(
                "prometheus: ingested %d minutes, %d rows, %d requests",
                len(result.minutes),
                result.rows,
                result.requests,
            )

    def _fail(self, now: float, message: str, result: IngestResult) -> None:
        self.failures += 1
        self.last_error = {"message": message, "time": now}
        result.error = message
        self.logger.warning("prometheus ingest failed: %s", message)

    async def _connection(self) -> aiosqlite.Connection:
        # A file store gets a connection of our own, so our transaction never interleaves with
        # the flusher's on the shared writer (WAL + busy_timeout serialise the two writers).
        if self._db is not None:
            return self._db
        path = str(getattr(self.store, "path", "") or "")
        if not path or path == ":memory:":
            self._db = self.store.writer
            return self._db
        db = await open_existing(path, int(getattr(self.store, "busy_timeout_ms", 5000)))
        self._db, self._own_db = db, True
        return db

    # -- the background task --------------------------------------------------------------------
    async def run(self) -> None:
        """Ingest every ``aggregation_interval_seconds`` until cancelled; failures are logged and counted."""
        interval = max(0.01, float(self.config.aggregation_interval_seconds))
        while True:
            try:
                await self.ingest_once(self.clock())
            except asyncio.CancelledError:
                raise
            except Exception:  # ingest_once catches everything; this is the last guard
                self.failures += 1
                self.logger.exception("prometheus task iteration failed")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Close the HTTP client and our own database connection."""
        if self._own_client:
            await self.client.aclose()
        if self._own_db and self._db is not None:
            await self._db.close()
        self._db = None
        self._own_db = False

    def status(self) -> dict[str, Any]:
        """What ``GET <mount>/api/sources`` shows for this source."""
        now = self.clock()
        lag = None
        if self.last_ingested_minute is not None:
            lag = round(max(0.0, now - (self.last_ingested_minute + MINUTE)), 3)
        return {
            "name": self.name,
            "kind": "prometheus",
            "url": redact_url(self.url),
            "preset": self.preset.name if self.preset else self.config.prometheus_preset,
            "selector": self.selector,
            "interval_seconds": self.config.aggregation_interval_seconds,
            "backfill_minutes": self.config.prometheus_backfill_minutes,
            "last_success_time": self.last_success_time,
            "last_ingested_minute": self.last_ingested_minute,
            "last_error": dict(self.last_error) if self.last_error else None,
            "lag_seconds": lag,
            "minutes_ingested": self.minutes_ingested,
            "runs": self.runs,
            "failures": self.failures,
            "percentile_note": PERCENTILE_NOTE,
        }

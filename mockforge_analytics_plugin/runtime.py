"""One analytics runtime per host: recorder, store, background tasks and the mounted sub-app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Match, Mount
from starlette.types import Scope

from . import __version__
from .config import AnalyticsConfig
from .middleware import CaptureMiddleware, PrefixMatcher
from .recorder import Recorder

__all__ = ["Runtime"]


# What _PrefixMount answers for every other path: one shared tuple (the router only reads it).
_NO_MATCH: tuple[Match, Scope] = (Match.NONE, {})


class _PrefixMount(Mount):
    """A Mount that turns away, without its regex, every path not containing `<mount>/`.

    The host tries plugin routes before the mock routes, so every mock request passes here;
    a full match needs `<mount>/` in the path anyway (the trailing-slash redirect included).
    The test is a compiled callable set on the instance (middleware.PrefixMatcher): the router
    calls ``route.matches(scope)``, and an instance attribute wins over the class's method.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.matches = PrefixMatcher(self.path + "/", super().matches, _NO_MATCH)  # type: ignore[method-assign]


@dataclass
class Runtime:
    """Everything one host's analytics needs; created at configure, started in the lifespan."""

    config: AnalyticsConfig
    instance: str
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("mockforge.analytics"))
    clock: Callable[[], float] = time.time
    version: str = __version__
    recorder: Recorder = field(init=False)
    store: Any = None
    flusher: Any = None
    rollup: Any = None
    retention: Any = None
    prometheus: Any = None
    started_at: float = 0.0
    task_failures: dict[str, int] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.recorder = Recorder(self.config, self.instance)
        self.started_at = self.clock()

    # -- wiring -------------------------------------------------------------------------------
    def middleware(self) -> Middleware:
        """The capture middleware entry for the host app."""
        return Middleware(
            CaptureMiddleware,
            recorder=self.recorder,
            config=self.config,
            mount_path=self.config.mount_path,
        )

    def mount(self) -> Mount:
        """The sub-app mounted at `mount_path`: pages, static files and the JSON API."""
        return _PrefixMount(self.config.mount_path, app=self.build_app(), name="analytics")

    def build_app(self) -> Starlette:
        """Build the Starlette sub-app serving pages and API for this runtime."""
        from .app import build_subapp

        return build_subapp(self)

    # -- lifecycle ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[Runtime]:
        """Open the store and run the background tasks for as long as the host serves."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    def _log_capture_build(self) -> None:
        """Say whether the capture path runs compiled, and warn when the build is stale."""
        from . import speedups

        compiled = speedups.compiled_modules()
        if compiled:
            self.logger.info("analytics capture path: compiled with mypyc (%s)", ", ".join(compiled))
        else:
            self.logger.info("analytics capture path: pure Python")
        stale = speedups.stale_modules()
        if stale and compiled:
            self.logger.warning(
                "analytics: compiled modules %s were built from older source; reinstall the plugin "
                "(pip install -e .) or set %s=1",
                ", ".join(stale),
                speedups.PURE_ENV,
            )

    async def start(self) -> None:
        """Open the store and start flush, roll-up, retention (and Prometheus) tasks."""
        from .flush import Flusher
        from .retention import Retention
        from .rollup import Rollup
        from .store.sqlite import SQLiteStore

        self.started_at = self.clock()
        self._log_capture_build()
        self.store = await SQLiteStore.open(self.config.database_path, batch_size=self.config.batch_size)
        try:
            self.flusher = Flusher(
                self.recorder, self.store, self.config, clock=self.clock, logger=self.logger
            )
            self.rollup = Rollup(
                self.store, self.config, clock=self.clock, snapshot_source=self.snapshot_figures
            )
            self.retention = Retention(self.store, self.config, clock=self.clock)
            self._spawn("flush", self.flusher.run)
            self._spawn("rollup", self.rollup.run)
            self._spawn("retention", self.retention.run)
            if self.config.prometheus_url:
                from .prometheus.source import PrometheusSource

                self.prometheus = PrometheusSource(
                    self.config, self.store, clock=self.clock, logger=self.logger
                )
                self._spawn("prometheus", self.prometheus.run)
        except BaseException:
            # The lifespan's `finally` never runs when start() raises: stop what did start (the
            # tasks, the store's connections and their threads) before the host reports the error.
            await self.stop()
            raise

    async def stop(self) -> None:
        """Cancel the loops, flush what is buffered, close the store."""
        for task in self._tasks.values():
            task.cancel()
        for name, task in list(self._tasks.items()):
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await task
                except Exception:  # a loop that died already was logged by _supervise
                    self.logger.debug("task %s ended with an error", name)
        self._tasks.clear()
        try:
            if self.flusher is not None:
                await self.flusher.close()
        finally:
            if self.prometheus is not None and hasattr(self.prometheus, "close"):
                await self.prometheus.close()
            if self.store is not None:
                await self.store.close()
                self.store = None

    def _spawn(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        self._tasks[name] = asyncio.create_task(self._supervise(name, loop), name=f"analytics-{name}")

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop; if it ever raises, log, count and restart it after a pause."""
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.task_failures[name] = self.task_failures.get(name, 0) + 1
                self.logger.exception("analytics %s task failed; restarting in 1 s", name)
                await asyncio.sleep(1.0)

    # -- figures ------------------------------------------------------------------------------
    def snapshot_figures(self) -> dict[str, Any]:
        """Buffered and dropped counts (and this instance's name) for the hourly snapshot rows."""
        drops = self.recorder.drops
        return {
            "instance": self.instance,
            "buffered_requests": self.recorder.buffered_requests(),
            "dropped_requests": drops.buffer_dropped_requests,
            "uptime_seconds": self.clock() - self.started_at,
        }

    def status(self) -> dict[str, Any]:
        """What `GET <mount>/api/status` reports."""
        from dataclasses import asdict

        from .config_parse import redacted

        flush = self.flusher.status() if self.flusher is not None else None
        return {
            "plugin": "analytics",
            "version": self.version,
            "instance": self.instance,
            "uptime_seconds": round(self.clock() - self.started_at, 3),
            "config": redacted(self.config),
            "store": {"kind": "sqlite", "path": self.config.database_path, "open": self.store is not None},
            "buffered_requests": self.recorder.buffered_requests(),
            "dropped": asdict(self.recorder.drops),
            "flush": flush,
            # Roll-up, retention and Prometheus count their failures; show them (and last errors).
            "rollup": self.rollup.status() if self.rollup is not None else None,
            "retention": self.retention.status() if self.retention is not None else None,
            "prometheus": self.prometheus.status() if self.prometheus is not None else None,
            "tasks": {name: not task.done() for name, task in self._tasks.items()},
            "task_failures": dict(self.task_failures),
        }

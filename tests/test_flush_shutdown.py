"""Flush lifecycle: a clean close() writes everything, the loop survives errors, a cancel loses nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from mockforge_analytics_plugin.capture_types import CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.flush import Flusher
from mockforge_analytics_plugin.recorder import Recorder
from mockforge_analytics_plugin.snapshot import RecorderSnapshot
from mockforge_analytics_plugin.store import SQLiteStore
from mockforge_analytics_plugin.store.writes import WriteResult

T0 = 1_700_000_040.0


def _record(recorder: Any, n: int, ts: float, endpoint: str = "/a") -> None:
    for i in range(n):
        recorder.record(
            CapturedRequest(timestamp=ts, protocol="http", method="GET", endpoint=endpoint, path=endpoint,
                            status_code=200 if i % 4 else 404, duration_ms=2.0 + i, client_id=f"c{i % 3}")
        )  # fmt: skip


def _sum(path: Path, table: str = "metrics_aggregates_minute") -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT coalesce(sum(request_count), 0) FROM {table}").fetchone()[0]


async def test_close_writes_everything(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    cfg = AnalyticsConfig(max_error_events_per_minute=60)  # every error of the minute kept as an event
    recorder = Recorder(cfg, "inst")
    store = await SQLiteStore.open(path)
    flusher = Flusher(recorder, store, cfg, clock=lambda: T0 + 5)
    _record(recorder, 37, T0)
    _record(recorder, 5, T0 + 3600, endpoint="/b")  # the next hour too
    result = await flusher.close()
    await store.close()
    assert result.ok and result.requests == 42
    assert flusher.status()["flush_count"] == 1 and flusher.status()["last_flush_at"] == T0 + 5
    assert _sum(path) == 42
    assert _sum(path, "client_analytics") == 42
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM error_events").fetchone()[0] == 10 + 2
        marks = conn.execute("SELECT count(*) FROM rollup_dirty WHERE tier = 'hour'").fetchone()[0]
    assert marks == 2


async def test_close_retries_a_briefly_locked_database(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    cfg = AnalyticsConfig()
    recorder = Recorder(cfg, "inst")
    store = await SQLiteStore.open(path, busy_timeout_ms=20)
    flusher = Flusher(recorder, store, cfg, clock=lambda: T0)
    _record(recorder, 9, T0)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    # Release the lock while close() is between attempts.
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, blocker.execute, "COMMIT")
    result = await flusher.close(attempts=10, retry_delay=0.03)
    blocker.close()
    await store.close()
    assert result.ok
    assert flusher.failures >= 1
    assert _sum(path) == 9


class _FlakyRecorder:
    """A recorder whose swap() raises once: the loop must log, count and carry on.

    Wraps a Recorder rather than subclassing it: the compiled Recorder takes no Python subclasses.
    """

    def __init__(self, config: AnalyticsConfig, instance: str) -> None:
        self.inner = Recorder(config, instance)
        self.raised = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def swap(self) -> RecorderSnapshot:
        if not self.raised:
            self.raised = True
            raise RuntimeError("boom")
        return self.inner.swap()


async def test_run_loop_survives_errors_and_keeps_flushing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    cfg = AnalyticsConfig(flush_interval_seconds=0.01)
    recorder = _FlakyRecorder(cfg, "inst")
    store = await SQLiteStore.open(path)
    flusher = Flusher(recorder, store, cfg, clock=lambda: T0)
    _record(recorder, 6, T0)
    task = asyncio.create_task(flusher.run())
    for _ in range(300):
        if flusher.flush_count >= 1:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await flusher.close()
    await store.close()
    assert flusher.loop_errors == 1
    assert _sum(path) == 6


class _SlowStore:
    """Wraps a store so a test can cancel the flush while the write is in flight."""

    def __init__(self, inner: SQLiteStore, fail: bool) -> None:
        self.inner = inner
        self.fail = fail
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def write_snapshot(self, snapshot: RecorderSnapshot, now: float) -> WriteResult:
        self.started.set()
        await self.release.wait()
        if self.fail:
            raise OSError("disk I/O error")
        return await self.inner.write_snapshot(snapshot, now)


async def _cancel_mid_write(tmp_path: Path, fail: bool) -> tuple[Recorder, Flusher, Path]:
    path = tmp_path / "s.db"
    cfg = AnalyticsConfig()
    recorder = Recorder(cfg, "inst")
    inner = await SQLiteStore.open(path)
    slow = _SlowStore(inner, fail)
    flusher = Flusher(recorder, slow, cfg, clock=lambda: T0)
    _record(recorder, 8, T0)
    task = asyncio.create_task(flusher.flush_once())
    await slow.started.wait()
    task.cancel()
    await asyncio.sleep(0)
    slow.release.set()
    results = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    flusher.store = inner
    await flusher.close()
    await inner.close()
    return recorder, flusher, path


async def test_cancel_during_a_successful_write_counts_once(tmp_path: Path) -> None:
    _, flusher, path = await _cancel_mid_write(tmp_path, fail=False)
    assert _sum(path) == 8  # written by the cancelled flush, not written again by close()
    assert flusher.flush_count == 1 and flusher.failures == 0


async def test_cancel_during_a_failing_write_puts_data_back(tmp_path: Path) -> None:
    recorder, flusher, path = await _cancel_mid_write(tmp_path, fail=True)
    assert flusher.failures == 1 and "disk I/O" in (flusher.last_error or "")
    assert _sum(path) == 8  # restored, then written by close()
    assert recorder.buffered_requests() == 0


async def test_paused_waits_for_a_swapped_write_and_holds_off_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    cfg = AnalyticsConfig()
    recorder = Recorder(cfg, "inst")
    store = await SQLiteStore.open(path)
    flusher = Flusher(recorder, store, cfg, clock=lambda: T0 + 5)
    try:
        _record(recorder, 7, T0)
        await store.write_lock.acquire()  # the flush below swaps, then waits to write
        in_flight = asyncio.ensure_future(flusher.flush_once())
        await asyncio.sleep(0.02)
        assert recorder.buffered_requests() == 0  # swapped out: clearing the recorder misses it
        entered = asyncio.Event()

        async def reset() -> None:
            async with flusher.paused():
                entered.set()
                assert _sum(path) == 7  # the swapped write landed before the block
                _record(recorder, 3, T0)  # arrives during the block
                await asyncio.sleep(0.05)
                assert _sum(path) == 7  # no flush ran inside the block

        job = asyncio.ensure_future(reset())
        await asyncio.sleep(0.02)
        assert not entered.is_set()
        store.write_lock.release()
        await asyncio.gather(in_flight, job)
        assert (await flusher.flush_once()).requests == 3
        assert _sum(path) == 10
    finally:
        await store.close()

"""Flush under faults: a locked database, the buffer cap, a removed folder, rate-limited warnings."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from mockforge_analytics_plugin.capture_types import CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.flush import Flusher
from mockforge_analytics_plugin.recorder import Recorder
from mockforge_analytics_plugin.store import SQLiteStore

T0 = 1_700_000_040.0


def _record(recorder: Recorder, n: int, ts: float, *, status: int = 200, client: str = "c1") -> None:
    for i in range(n):
        recorder.record(
            CapturedRequest(timestamp=ts, protocol="http", method="GET", endpoint=f"/e{i % 7}",
                            path=f"/e{i % 7}", status_code=status, duration_ms=1.0 + i % 13, client_id=client,
                            trace_id=f"{i:032x}" if status >= 500 else "")
        )  # fmt: skip


def _totals(path: Path) -> tuple[int, int, int]:
    with sqlite3.connect(path) as conn:
        requests = conn.execute(
            "SELECT coalesce(sum(request_count), 0) FROM metrics_aggregates_minute"
        ).fetchone()
        clients = conn.execute("SELECT coalesce(sum(request_count), 0) FROM client_analytics").fetchone()
        errors = conn.execute("SELECT count(*) FROM error_events").fetchone()
    return requests[0], clients[0], errors[0]


async def _setup(tmp_path: Path, **config: object) -> tuple[Recorder, SQLiteStore, Flusher, Path]:
    cfg = AnalyticsConfig(**config)  # type: ignore[arg-type]
    path = tmp_path / "db" / "analytics.db"
    path.parent.mkdir()
    recorder = Recorder(cfg, "inst")
    store = await SQLiteStore.open(path, busy_timeout_ms=30)
    return recorder, store, Flusher(recorder, store, cfg, clock=lambda: T0), path


async def test_locked_database_keeps_everything_until_released(tmp_path: Path) -> None:
    recorder, store, flusher, path = await _setup(tmp_path, max_buffered_events=10_000)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        _record(recorder, 100, T0)
        _record(recorder, 5, T0, status=500)
        first = await flusher.flush_once(now=T0 + 1)
        assert not first.ok and first.requests == 105
        assert "locked" in (flusher.last_error or "")
        _record(recorder, 50, T0 + 61)  # the next minute arrives while locked
        second = await flusher.flush_once(now=T0 + 62)
        assert not second.ok
        assert recorder.buffered_requests() == 155
        assert recorder.buffered_error_events() == 5
        assert recorder.drops.buffer_dropped_requests == 0
        status = flusher.status()
        assert status["failures"] == 2 and status["flush_count"] == 0 and status["buffered_requests"] == 155
        blocker.execute("COMMIT")
        third = await flusher.flush_once(now=T0 + 63)
        assert third.ok and third.requests == 155
        assert recorder.buffered_requests() == 0
        assert flusher.status()["consecutive_failures"] == 0
        assert flusher.status()["last_flush_rows"] == third.total_rows > 0
    finally:
        blocker.close()
        await store.close()
    assert _totals(path) == (155, 155, 5)


async def test_past_the_cap_drops_are_counted_exactly(tmp_path: Path) -> None:
    recorder, store, flusher, path = await _setup(tmp_path, max_buffered_events=100)
    blocker = sqlite3.connect(path, isolation_level=None)
    sent = 0
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        for minute in range(6):  # 6 minutes x 40 requests, all while locked
            _record(recorder, 40, T0 + 60 * minute)
            sent += 40
            result = await flusher.flush_once(now=T0 + 60 * minute + 1)
            assert not result.ok
            assert recorder.buffered_requests() <= 100
        dropped = recorder.drops.buffer_dropped_requests
        buffered = recorder.buffered_requests()
        assert dropped > 0
        assert buffered + dropped == sent
        blocker.execute("COMMIT")
        assert (await flusher.flush_once(now=T0 + 400)).ok
    finally:
        blocker.close()
        await store.close()
    written = _totals(path)[0]
    assert written == buffered
    assert written + recorder.drops.buffer_dropped_requests == sent
    with sqlite3.connect(path) as conn:
        # The oldest minutes were dropped, the newest kept.
        minutes = [r[0] for r in conn.execute("SELECT DISTINCT timestamp FROM metrics_aggregates_minute")]
    assert max(minutes) == T0 + 300


async def test_removed_folder_fails_cleanly_and_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder, store, flusher, path = await _setup(
        tmp_path, max_buffered_events=1000, flush_interval_seconds=0.01
    )
    _record(recorder, 10, T0)
    assert (await flusher.flush_once(now=T0 + 1)).ok
    shutil.rmtree(path.parent)
    _record(recorder, 20, T0 + 2)
    with caplog.at_level(logging.WARNING, logger="mockforge.analytics.flush"):
        result = await flusher.flush_once(now=T0 + 3)
        assert not result.ok and "removed" in (result.error or "")
        assert recorder.buffered_requests() == 20
        # The loop keeps going through failures without raising.
        loop = asyncio.create_task(flusher.run())
        for _ in range(200):
            if flusher.failures >= 3:
                break
            await asyncio.sleep(0.01)
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
        final = await flusher.close(attempts=2, retry_delay=0)
    assert not final.ok
    assert flusher.failures >= 3 and flusher.loop_errors == 0
    assert recorder.buffered_requests() == 20  # still held, not silently lost
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("analytics flush failed") for m in messages) == 1  # one minute of the clock
    assert sum(m.startswith("analytics final flush failed") for m in messages) == 1
    await store.close()  # closing a store whose folder is gone does not raise


async def test_warning_logged_at_most_once_a_minute(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder, store, flusher, path = await _setup(tmp_path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.WARNING, logger="mockforge.analytics.flush"):
            for t in (0, 10, 59.9, 60, 61, 119, 125, 126):
                _record(recorder, 1, T0)
                assert not (await flusher.flush_once(now=T0 + t)).ok
    finally:
        blocker.close()
        await store.close()
    warnings = [r for r in caplog.records if "flush failed" in r.getMessage()]
    assert [w.getMessage().split(";")[-1] for w in warnings] == [
        " 0 suppressed)",  # +0
        " 2 suppressed)",  # +60 (after +10, +59.9)
        " 2 suppressed)",  # +125 (after +61, +119)
    ]
    assert flusher.failures == 8

"""The roll-up and retention loops: run at start-up, then every interval; failures counted, never fatal."""

from __future__ import annotations

import asyncio

import pytest
from support.rollup_data import Traffic, key, open_store, write

from mockforge_analytics_plugin.config import AnalyticsConfig, RetentionConfig
from mockforge_analytics_plugin.retention import Retention
from mockforge_analytics_plugin.rollup import Rollup

T0 = 1795392000


class _Sleeps:
    """A fake sleep that records intervals and stops the loop after `stop_after` calls."""

    def __init__(self, stop_after: int) -> None:
        self.calls: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if len(self.calls) >= self.stop_after:
            raise asyncio.CancelledError


class _BrokenStore:
    path = "/nonexistent-folder/for/analytics.db"  # every connect fails
    writer = None


async def test_rollup_loop_survives_failures_and_keeps_its_interval():
    sleeps = _Sleeps(stop_after=3)
    rollup = Rollup(_BrokenStore(), AnalyticsConfig(rollup_interval_hours=2), clock=lambda: T0, sleep=sleeps)
    with pytest.raises(asyncio.CancelledError):
        await rollup.run()
    assert rollup.failures == 3 and rollup.runs == 0
    assert sleeps.calls == [60.0] * 3  # a failed run is retried after a minute, not an interval
    assert (rollup.last_error or "").startswith("FileNotFoundError: analytics database folder")


async def test_retention_loop_survives_failures():
    sleeps = _Sleeps(stop_after=2)
    config = AnalyticsConfig(retention=RetentionConfig(cleanup_interval_hours=6))
    task = Retention(_BrokenStore(), config, clock=lambda: T0, sleep=sleeps)
    with pytest.raises(asyncio.CancelledError):
        await task.run()
    assert task.failures == 2 and sleeps.calls == [60.0, 60.0]


async def test_rollup_loop_runs_at_start_up_on_a_real_store(tmp_path):
    store = await open_store(tmp_path / "t.db")
    try:
        t = Traffic()
        for m in range(90):
            t.add(key(T0 + 60 * m), 12.0)
        await write(store.writer, t, T0)
        clock = [T0 + 2 * 3600 + 5.0]
        sleeps = _Sleeps(stop_after=1)
        rollup = Rollup(store, AnalyticsConfig(), clock=lambda: clock[0], sleep=sleeps)
        with pytest.raises(asyncio.CancelledError):
            await rollup.run()
        assert sleeps.calls == [3600.0 - 5.0 + 30.0]  # just after the next hour boundary
        assert rollup.runs == 1 and rollup.failures == 0
        result = rollup.last_result
        assert result is not None and result.hours == [T0, T0 + 3600]
        assert result.rolled_up_until_hour == T0 + 2 * 3600 and result.rolled_up_until_day == T0
        rows = await store.reader.execute_fetchall(
            "SELECT timestamp, request_count FROM metrics_aggregates_hour ORDER BY timestamp"
        )
        assert rows == [(T0, 60), (T0 + 3600, 30)]
        assert rollup.status()["rolled_up_until_hour"] == T0 + 2 * 3600
    finally:
        await store.close()

"""Histogram horizons: slim rows keep every counter, pages are given back, only rolled-up slices."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from support.horizon_data import DAY, HOUR, HOUR_FROM, MINUTE_FROM, NOW, T0, TABLES, config, filled, heavy
from support.rollup_data import Traffic, dump, key, lognormal_traffic, write

from mockforge_analytics_plugin.config import AnalyticsConfig, RetentionConfig
from mockforge_analytics_plugin.retention import Retention
from mockforge_analytics_plugin.store.horizons import SLIM_COLUMNS, SLIM_MINUTES
from mockforge_analytics_plugin.store.queries import read_markers


async def _kept(db, table: str) -> list[tuple]:
    """Every column a slim row keeps, per row (counters; the hour rows' write times too)."""
    dropped = (*SLIM_COLUMNS, *(SLIM_MINUTES.zeroed if table == SLIM_MINUTES.table else ()))
    cols = [r[1] for r in await db.execute_fetchall(f"PRAGMA table_info({table})") if r[1] not in dropped]
    return await db.execute_fetchall(f"SELECT {', '.join(cols)} FROM {table} ORDER BY timestamp, series_id")


async def _pages(db, table: str) -> tuple[int, int]:
    """(pages, unused bytes in them) of a table."""
    rows = await db.execute_fetchall("SELECT COUNT(*), SUM(unused) FROM dbstat WHERE name = ?", (table,))
    return rows[0][0], rows[0][1]


async def test_slimming_drops_histograms_past_the_horizons_and_keeps_every_counter(tmp_path):
    store = await filled(tmp_path / "h.db", lognormal_traffic(9000, T0, 3 * DAY))
    db = store.writer
    try:
        before = {t: await _kept(db, t) for t in TABLES}
        minute_heavy = await heavy(db, TABLES[0], f"timestamp < {MINUTE_FROM}")
        hour_heavy = await heavy(db, TABLES[1], f"timestamp < {HOUR_FROM}")
        newer = {
            TABLES[0]: await heavy(db, TABLES[0], f"timestamp >= {MINUTE_FROM}"),
            TABLES[1]: await heavy(db, TABLES[1], f"timestamp >= {HOUR_FROM}"),
            TABLES[2]: await heavy(db, TABLES[2], "1"),
        }
        pages = await _pages(db, TABLES[0])
        assert minute_heavy > 2000 and hour_heavy > 100 and all(newer.values())

        task = Retention(store, config(), clock=lambda: NOW)
        result = await task.retention_once()

        assert result.slimmed == {TABLES[0]: minute_heavy, TABLES[1]: hour_heavy}
        assert task.status()["last_slimmed"] == result.slimmed
        assert {t: await _kept(db, t) for t in TABLES} == before  # counters identical
        assert await heavy(db, TABLES[0], f"timestamp < {MINUTE_FROM}") == 0
        times = await db.execute_fetchall(
            f"SELECT DISTINCT created_at, updated_at FROM {TABLES[0]} WHERE timestamp < {MINUTE_FROM}"
        )
        assert times == [(0, 0)]  # the flush's write times: nothing reads them, 0 takes no bytes
        assert await heavy(db, TABLES[1], f"timestamp < {HOUR_FROM}") == 0
        # Newer rows keep their histograms; day rows always do.
        assert await heavy(db, TABLES[0], f"timestamp >= {MINUTE_FROM}") == newer[TABLES[0]]
        assert await heavy(db, TABLES[1], f"timestamp >= {HOUR_FROM}") == newer[TABLES[1]]
        assert await heavy(db, TABLES[2], "1") == newer[TABLES[2]]
        markers = await read_markers(store.reader)
        assert (markers.minute_histograms, markers.hour_histograms) == (MINUTE_FROM, HOUR_FROM)
        # Deleted and re-inserted slim, so pages are given back and the rest stay full (setting
        # NULL in place keeps every page and leaves the freed bytes unused inside them).
        after = await _pages(db, TABLES[0])
        assert after[0] < pages[0] and after[1] <= pages[1]

        snapshot = await dump(db, (*TABLES, "analytics_state"))
        again = await task.retention_once()
        assert again.slimmed == dict.fromkeys(TABLES[:2], 0)
        assert await dump(db, (*TABLES, "analytics_state")) == snapshot
    finally:
        await store.close()


async def test_hours_not_rolled_up_are_not_slimmed(tmp_path):
    store = await filled(tmp_path / "h.db", lognormal_traffic(3000, T0, 3 * DAY))
    db = store.writer
    try:
        late = Traffic()
        late.add(key(T0 + 10 * HOUR + 120, "/late"), 40.0)
        await write(db, late, NOW)  # marks hour T0+10h dirty: its hour row is stale until a roll-up
        result = await Retention(store, config(), clock=lambda: NOW).retention_once()
        markers = await read_markers(db)
        assert markers.minute_histograms == T0 + 10 * HOUR
        assert markers.hour_histograms == T0  # no day after the first dirty hour is complete either
        assert await heavy(db, TABLES[0], f"timestamp < {T0 + 10 * HOUR}") == 0
        assert await heavy(db, TABLES[0], f"timestamp >= {T0 + 10 * HOUR} AND timestamp < {MINUTE_FROM}") > 0
        assert result.slimmed[TABLES[1]] == 0
    finally:
        await store.close()


class _Sleeps:
    """A fake sleep that advances the fake clock and stops the loop after `stop_after` calls."""

    def __init__(self, clock: list[float], stop_after: int) -> None:
        self.clock = clock
        self.calls: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock[0] += seconds
        if len(self.calls) >= self.stop_after:
            raise asyncio.CancelledError


async def test_the_loop_applies_the_horizons_every_hour_between_cleanups(tmp_path):
    store = await filled(tmp_path / "h.db", lognormal_traffic(3000, T0, 3 * DAY))
    try:
        clock = [float(NOW - HOUR)]
        sleeps = _Sleeps(clock, stop_after=2)
        cfg = AnalyticsConfig(retention=RetentionConfig(cleanup_interval_hours=24, **_horizons()))
        task = Retention(store, cfg, clock=lambda: clock[0], sleep=sleeps)
        with pytest.raises(asyncio.CancelledError):
            await task.run()
        assert sleeps.calls == [3600.0, 3600.0]
        assert task.runs == 1  # the cleanup at start-up; an hour later a horizon pass only
        markers = await read_markers(store.reader)
        assert markers.minute_histograms == MINUTE_FROM  # moved by one hour by the later pass
        assert task.status()["last_slimmed"][TABLES[0]] > 0
    finally:
        await store.close()


def _horizons() -> dict[str, float]:
    return {"minute_histograms_days": 1, "hour_histograms_days": 2}


async def test_retention_run_route_reports_rows_slimmed(tmp_path):
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from mockforge_analytics_plugin.api_maintenance import maintenance_routes

    store = await filled(tmp_path / "h.db", lognormal_traffic(3000, T0, 3 * DAY))
    try:
        app = Starlette(routes=[Mount("/analytics/api", routes=maintenance_routes())])
        app.state.runtime = SimpleNamespace(
            store=store, retention=Retention(store, config(), clock=lambda: NOW), clock=lambda: NOW
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            data = (await client.post("/analytics/api/retention/run")).json()["data"]
        assert data["slimmed"][TABLES[0]] > 0 and data["slimmed"][TABLES[1]] > 0
        assert data["total"] == sum(data["deleted"].values())  # slimmed rows are not deleted rows
    finally:
        await store.close()


async def test_closed_hours_are_repacked_once_with_every_column_unchanged(tmp_path):
    from support.rollup_data import open_store

    from mockforge_analytics_plugin.rollup import Rollup
    from mockforge_analytics_plugin.store.horizons import MINUTE_PACKED_FROM, REPACK_DELAY_SECONDS

    store = await open_store(tmp_path / "p.db")
    db = store.writer
    try:
        traffic = lognormal_traffic(6000, T0, 2 * DAY)
        for _ in range(4):  # every row written four times, growing as the flush's rows do
            await write(db, traffic, T0)
        now = T0 + 2 * DAY + REPACK_DELAY_SECONDS - 60  # the last hour ended less than the delay ago
        far = AnalyticsConfig(retention=RetentionConfig(minute_histograms_days=7, hour_histograms_days=7))
        await Rollup(store, far, clock=lambda: now).rollup_once(now)
        rows = await db.execute_fetchall(f"SELECT * FROM {TABLES[0]} ORDER BY timestamp, series_id")
        pages = await _pages(db, TABLES[0])

        task = Retention(store, far, clock=lambda: now)
        assert await task.horizons_once() == dict.fromkeys(TABLES[:2], 0)  # nothing past a horizon
        last_hour = await db.execute_fetchall(
            f"SELECT COUNT(*) FROM {TABLES[0]} WHERE timestamp >= {T0 + 2 * DAY - HOUR}"
        )
        assert task.last_repacked == len(rows) - last_hour[0][0]  # every closed hour but the last
        assert await db.execute_fetchall(f"SELECT * FROM {TABLES[0]} ORDER BY timestamp, series_id") == rows
        after = await _pages(db, TABLES[0])
        assert after[0] < pages[0] and after[1] < pages[1]
        state = await db.execute_fetchall(
            "SELECT value FROM analytics_state WHERE key = ?", (MINUTE_PACKED_FROM,)
        )
        assert state == [(str(T0 + 2 * DAY - HOUR),)]
        await task.horizons_once()
        assert task.last_repacked == 0
    finally:
        await store.close()

"""Retention: exactly the rows older than each table's limit go, with counts; reset keeps migrations."""

from __future__ import annotations

import threading

import pytest
from support.rollup_data import Traffic, key, open_store, write

from mockforge_analytics_plugin.config import AnalyticsConfig, RetentionConfig
from mockforge_analytics_plugin.retention import Retention
from mockforge_analytics_plugin.snapshot import RecorderSnapshot
from mockforge_analytics_plugin.store.retention import apply_retention, reset_all

DAY = 86400
NOW = 1795392000 + 400 * DAY  # day-aligned, so every cut-off is aligned too
LIMITS = {  # table -> default limit in days (DESIGN.md §7)
    "metrics_aggregates_minute": 7,
    "metrics_aggregates_hour": 30,
    "metrics_aggregates_day": 365,
    "error_events": 7,
    "client_analytics": 30,
    "traffic_patterns": 90,
    "analytics_snapshots": 90,
}
# Offsets from each table's cut-off: negative ones are older than the limit and must go.
OFFSETS = (-200 * DAY, -3 * DAY, -3600, -60, 0, 60, 3600)


async def _insert(db, table: str, ts: int, n: int) -> None:
    if table.startswith("metrics_aggregates_"):
        await db.execute(
            "INSERT OR IGNORE INTO series (series_id, source, instance, protocol, method, endpoint, "
            "status_code, workspace_id, environment, test_run, created_at) "
            "VALUES (?, 'middleware', 'i1', 'http', 'GET', ?, 200, '', '', '', ?)",
            (n, f"/e{n}", ts),
        )
    sql = {
        "metrics_aggregates_minute": "INSERT INTO metrics_aggregates_minute (timestamp, series_id, "
        "request_count, created_at, updated_at) VALUES (?1, ?2, 1, ?1, ?1)",
        "metrics_aggregates_hour": "INSERT INTO metrics_aggregates_hour (timestamp, series_id, "
        "request_count, created_at) VALUES (?1, ?2, 1, ?1)",
        "metrics_aggregates_day": "INSERT INTO metrics_aggregates_day (timestamp, series_id, date, "
        "request_count, created_at) VALUES (?1, ?2, 'x', 1, ?1)",
        "error_events": "INSERT INTO error_events (timestamp, instance, protocol, method, endpoint, "
        "path, status_code, error_type, error_category, workspace_id, environment, created_at) "
        "VALUES (?1 + 0.5, 'i1', 'http', 'GET', '/e', '/e', 500, 'HTTP 500', 'server_error', '', '', ?1)",
        "client_analytics": "INSERT INTO client_analytics (timestamp, instance, client_ip, user_agent, "
        "protocol, workspace_id, environment, test_run, created_at, updated_at) "
        "VALUES (?1, 'i1', 'c' || ?2, 'ua', 'http', '', '', '', ?1, ?1)",
        "traffic_patterns": "INSERT INTO traffic_patterns (timestamp, date, hour, day_of_week, protocol, "
        "workspace_id, environment, created_at) VALUES (?1, 'd' || ?2, 0, 0, 'http', '', '', ?1)",
        "analytics_snapshots": "INSERT INTO analytics_snapshots (timestamp, snapshot_type, created_at) "
        "VALUES (?1, 'hourly', ?1)",
    }[table]
    await db.execute(sql, (ts, n) if "?2" in sql else (ts,))


async def _fill(db) -> None:
    await db.execute("BEGIN")
    n = 0
    for table, days in LIMITS.items():
        for off in OFFSETS:
            n += 1
            await _insert(db, table, NOW - days * DAY + off, n)
    await db.execute("COMMIT")


@pytest.fixture
async def store(tmp_path):
    s = await open_store(tmp_path / "r.db")
    yield s
    await s.close()


async def test_deletes_exactly_rows_older_than_each_limit_and_reports_counts(store):
    db = store.writer
    await _fill(db)
    result = await apply_retention(db, RetentionConfig(), NOW)
    older = sum(1 for off in OFFSETS if off < 0)
    assert {t: result[t] for t in LIMITS} == dict.fromkeys(LIMITS, older)
    for table, days in LIMITS.items():
        cutoff = NOW - days * DAY
        rows = await db.execute_fetchall(f"SELECT CAST(timestamp AS INTEGER) FROM {table} ORDER BY 1")
        assert [r[0] - cutoff for r in rows] == [o for o in OFFSETS if o >= 0], table
    # Series whose aggregate rows all went (the old minute/hour/day ones) are orphans: deleted too.
    assert result["series"] == 3 * older
    assert await apply_retention(db, RetentionConfig(), NOW) == dict.fromkeys([*LIMITS, "series"], 0)


async def test_custom_limits_apply_per_table(store):
    db = store.writer
    await _fill(db)
    limits = RetentionConfig(minute_aggregates_days=1, error_events_days=400, snapshots_days=1000)
    result = await apply_retention(db, limits, NOW)
    minute_rows = await db.execute_fetchall("SELECT timestamp FROM metrics_aggregates_minute")
    assert result["metrics_aggregates_minute"] == len(OFFSETS)  # all of them are older than 1 day
    assert minute_rows == []
    assert result["error_events"] == 0
    assert result["analytics_snapshots"] == 0
    assert result["metrics_aggregates_hour"] == 4


async def test_retention_task_uses_its_own_connection_and_the_flush_keeps_working(store):
    db = store.writer
    old = Traffic()
    old.add(key(NOW - 10 * DAY, "/gone"), 5.0, client="c1")
    await write(db, old, NOW - 10 * DAY)  # the writer now caches the series id of "/gone"
    task = Retention(store, AnalyticsConfig(), clock=lambda: NOW)
    result = await task.retention_once()
    assert result["metrics_aggregates_minute"] == 1
    assert result["series"] == 1
    assert await db.execute_fetchall("SELECT * FROM rollup_dirty WHERE tier = 'hour'") == []
    again = Traffic()
    again.add(key(NOW - 60, "/gone"), 7.0)
    await store.write_snapshot(RecorderSnapshot(series=again.series), NOW)
    rows = await db.execute_fetchall(
        "SELECT s.endpoint, m.request_count FROM metrics_aggregates_minute m JOIN series s USING (series_id)"
    )
    assert rows == [("/gone", 1)]
    assert task.runs == 1 and task.status()["last_deleted"] == result


async def test_reset_all_empties_every_table_but_keeps_migrations(store):
    db = store.writer
    await _fill(db)
    await db.execute("INSERT INTO analytics_state VALUES ('rolled_up_until_hour', '5', 0)")
    migrations = await db.execute_fetchall("SELECT * FROM schema_migrations")
    result = await reset_all(db)
    assert result["series"] == 21 and result["error_events"] == len(OFFSETS)
    assert result["analytics_state"] == 1
    assert "schema_migrations" not in result
    for table in result:
        assert await db.execute_fetchall(f"SELECT COUNT(*) FROM {table}") == [(0,)]
    assert await db.execute_fetchall("SELECT * FROM schema_migrations") == migrations
    assert migrations


async def test_reset_through_the_task_then_the_flush_writes_new_series(store):
    t = Traffic()
    t.add(key(NOW - 120, "/x"), 5.0, client="c1")
    await write(store.writer, t, NOW - 60)  # caches the id of "/x" on the writer
    deleted = await Retention(store, AnalyticsConfig(), clock=lambda: NOW).reset()
    assert deleted["metrics_aggregates_minute"] == 1 and deleted["series"] == 1
    assert deleted["client_analytics"] == 1 and deleted["rollup_dirty"] == 2
    await store.write_snapshot(RecorderSnapshot(series=t.series), NOW)
    rows = await store.writer.execute_fetchall(
        "SELECT s.endpoint, m.request_count FROM metrics_aggregates_minute m JOIN series s USING (series_id)"
    )
    assert rows == [("/x", 1)]


async def test_maintenance_connection_never_creates_a_removed_database(tmp_path):
    """If the store's file is gone, maintenance fails instead of writing into a new empty file."""
    import pytest

    from mockforge_analytics_plugin.rollup import maintenance_connection

    class _Store:
        path = str(tmp_path / "gone.db")
        busy_timeout_ms = 100

    threads = threading.active_count()
    with pytest.raises(Exception, match="unable to open"):
        async with maintenance_connection(_Store()):
            pass
    assert not (tmp_path / "gone.db").exists()
    # Refused before aiosqlite starts a worker thread: a failed aiosqlite connect leaves one
    # stopping on its own, which raises in its thread if the event loop has closed by then.
    assert threading.active_count() == threads


async def test_retention_gives_every_free_page_back_to_the_file_system(store):
    db = store.writer
    await db.execute("BEGIN")
    for m in range(3000):
        await _insert(db, "metrics_aggregates_minute", NOW - 30 * DAY + 60 * m, 10_000 + m)
    await db.execute("COMMIT")
    await store.close()  # fold the WAL in: the file holds every page
    from pathlib import Path

    path = Path(store.path)
    full = path.stat().st_size
    reopened = await open_store(path)
    try:
        result = await apply_retention(reopened.writer, RetentionConfig(), NOW)
        assert result["metrics_aggregates_minute"] == 3000
        assert await reopened.writer.execute_fetchall("PRAGMA freelist_count") == [(0,)]
    finally:
        await reopened.close()
    assert path.stat().st_size < full / 2

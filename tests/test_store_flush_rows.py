"""The flush's minute upsert: rows grouped many to a statement store exactly what one row a
statement stores, whatever the chunking; the loop gets its turn between slices."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

import pytest

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.snapshot import RecorderSnapshot, SeriesDelta, SeriesKey
from mockforge_analytics_plugin.store import SQLiteStore, writes

MINUTE = 1_700_000_040


def _snapshot(seed: int, n: int) -> RecorderSnapshot:
    """n of 400 possible series over three minutes; HTTP and WebSocket deltas, some without latencies."""
    rng = random.Random(seed)
    series: dict[SeriesKey, SeriesDelta] = {}
    for i in rng.sample(range(400), n):
        protocol = "websocket" if i % 7 == 0 else "http"
        key = SeriesKey(MINUTE + 60 * (i % 3), "middleware", "h:1", protocol, "GET", f"/e{i % 50}",
                        200 + i % 4, "w", "dev", f"r{i % 2}")  # fmt: skip
        d = SeriesDelta(request_count=rng.randint(1, 3), error_count=rng.randint(0, 1))
        d.fault_count, d.active_connections = rng.randint(0, 1), rng.randint(0, 5)
        d.bytes_sent, d.injected_latency_sum, d.ttfb_sum = rng.randint(0, 999), rng.random(), rng.random()
        if protocol == "websocket":
            d.session_count, d.session_duration_sum = 1, rng.random() * 1000
        for _ in range(rng.randint(0, 4) if protocol == "http" else 0):
            v = rng.lognormvariate(2, 1)
            d.latency_count += 1
            d.latency_sum += v
            d.latency_min = v if d.latency_min is None else min(v, d.latency_min)
            d.latency_max = v if d.latency_max is None else max(v, d.latency_max)
            b = histogram.bucket_index(v)
            d.histogram[b] = d.histogram.get(b, 0) + rng.choice([1, 1, 300])
        series[key] = d
    return RecorderSnapshot(series=series)


def _rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT m.*, s.endpoint, s.status_code, s.protocol, s.test_run FROM metrics_aggregates_minute m "
            "JOIN series s USING (series_id) ORDER BY m.timestamp, s.endpoint, s.status_code, s.protocol, "
            "s.test_run"
        ).fetchall()
    finally:
        conn.close()


async def _write_all(path: Path, batch_size: int) -> list[tuple]:
    store = await SQLiteStore.open(path, batch_size=batch_size)
    try:
        # New series appear in later flushes too (cache misses in the middle of a chunk).
        for i, n in enumerate([350, 333, 7, 1, 260, 399]):
            await store.write_snapshot(_snapshot(i, n), now=MINUTE + 30 + i)
    finally:
        await store.close()
    return [row[:1] + row[2:] for row in _rows(path)]  # series ids depend on creation order


async def test_grouped_statements_store_what_one_row_a_statement_stores(tmp_path: Path) -> None:
    one_a_statement = await _write_all(tmp_path / "one.db", batch_size=1)
    assert len(one_a_statement) == len({(r[0], *r[-4:]) for r in one_a_statement}) > 300
    for batch_size in (7, 100, 250, 1000):
        assert await _write_all(tmp_path / f"b{batch_size}.db", batch_size) == one_a_statement, batch_size


def test_the_grouped_statement_is_the_single_one_repeated() -> None:
    sql = writes._upsert_sql(3)
    assert sql.count("(?") == 3 and "?54)" in sql and "?55" not in sql
    assert writes._upsert_sql(1).split("ON CONFLICT")[1] == sql.split("ON CONFLICT")[1]


async def test_yield_lets_a_coroutine_woken_meanwhile_run_first() -> None:
    order: list[str] = []

    async def timer() -> None:
        await asyncio.sleep(0.001)
        order.append("timer")

    task = asyncio.create_task(timer())
    await asyncio.sleep(0)  # the timer is armed
    end = time.perf_counter() + 0.005
    while time.perf_counter() < end:  # a slice of work: the timer comes due meanwhile
        pass
    await writes._yield_to_loop()
    order.append("next slice")
    await task
    assert order == ["timer", "next slice"]


@pytest.mark.parametrize("n", [0, 1, 99, 100, 101, 250, 251])
async def test_every_row_is_written_once_around_the_group_size(tmp_path: Path, n: int) -> None:
    rng = random.Random(n)
    snap = RecorderSnapshot(
        series={
            SeriesKey(MINUTE, "middleware", "h:1", "http", "GET", f"/e{i}", 200, "w", "dev", ""): SeriesDelta(
                request_count=rng.randint(1, 9)
            )
            for i in range(n)
        }
    )
    store = await SQLiteStore.open(tmp_path / "n.db")
    try:
        await store.write_snapshot(snap, now=MINUTE + 1)
        await store.write_snapshot(snap, now=MINUTE + 2)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "n.db")
    try:
        counts = dict(
            conn.execute(
                "SELECT s.endpoint, m.request_count FROM metrics_aggregates_minute m "
                "JOIN series s USING (series_id)"
            ).fetchall()
        )
    finally:
        conn.close()
    assert counts == {k.endpoint: 2 * d.request_count for k, d in snap.series.items()}


async def test_the_writer_keeps_a_larger_cache_and_checkpoints_less_often(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "p.db")
    try:
        settings = {}
        for name in ("cache_size", "wal_autocheckpoint", "synchronous", "journal_mode"):
            rows = await store.writer.execute_fetchall(f"PRAGMA {name}")
            settings[name] = next(iter(rows))[0]
        reader_cache = next(iter(await store.reader.execute_fetchall("PRAGMA cache_size")))[0]
    finally:
        await store.close()
    assert settings == {
        "cache_size": -16384,
        "wal_autocheckpoint": 4000,
        "synchronous": 1,
        "journal_mode": "wal",
    }
    assert reader_cache == -2000  # the reader keeps SQLite's default


@pytest.mark.parametrize(("n", "expected"), [(1000, 10), (1050, 11), (260, 3)])
async def test_rows_go_a_hundred_to_a_statement_and_the_rest_in_one(
    tmp_path: Path, n: int, expected: int
) -> None:
    # Slices of 250 rows used to leave 50 rows a slice for one-row statements (2,000 of 10k).
    snap = RecorderSnapshot(
        series={
            SeriesKey(MINUTE, "middleware", "h:1", "http", "GET", f"/e{i}", 200, "w", "dev", ""): SeriesDelta(
                request_count=1, latency_count=1, latency_sum=2.0, histogram={40 + i % 7: 1}
            )
            for i in range(n)
        }
    )
    store = await SQLiteStore.open(tmp_path / "s.db", batch_size=1000)
    upserts: list[int] = []  # rows of each minute upsert executed (the trace shows bound values)

    def trace(sql: str) -> None:
        if "INTO metrics_aggregates_minute" in sql:
            upserts.append(sql.split("ON CONFLICT")[0].count("), (") + 1)

    try:
        await store.writer.set_trace_callback(trace)
        await store.write_snapshot(snap, now=MINUTE + 1)
    finally:
        await store.close()
    assert len(upserts) == expected
    assert sum(upserts) == n


async def test_requests_and_rollup_marks_come_from_every_chunk(tmp_path: Path) -> None:
    # Read off the rows' parameters chunk by chunk (MinuteTally), not off the snapshot.
    hour = MINUTE - MINUTE % 3600
    minutes = [hour - 60, hour, hour + 3540, hour + 3600 * 24]  # three hours, two days
    snap = RecorderSnapshot(
        series={
            SeriesKey(m, "middleware", "h:1", "http", "GET", f"/e{i}", 200, "w", "dev", ""): SeriesDelta(
                request_count=i + 1
            )
            for i in range(23)
            for m in minutes[i % 4 : i % 4 + 1]
        }
    )
    store = await SQLiteStore.open(tmp_path / "t.db", batch_size=7)
    try:
        result = await store.write_snapshot(snap, now=MINUTE)
        marks = await store.reader.execute_fetchall("SELECT tier, timestamp FROM rollup_dirty ORDER BY 1, 2")
    finally:
        await store.close()
    assert result.requests == sum(range(1, 24))
    assert [tuple(m) for m in marks] == sorted(
        {("hour", m - m % 3600) for m in minutes} | {("day", m - m % 86400) for m in minutes}
    )

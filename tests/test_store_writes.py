"""Snapshot writes: deltas add up exactly, percentiles from stored blobs, clients, errors, restart."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

from support.deltas import series_delta

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.capture_types import CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.recorder import Recorder
from mockforge_analytics_plugin.snapshot import (
    ClientDelta,
    ClientKey,
    ErrorEvent,
    RecorderSnapshot,
    SeriesDelta,
    SeriesKey,
)
from mockforge_analytics_plugin.store import SQLiteStore
from mockforge_analytics_plugin.store.series import invalidate_series_cache, resolve_series_ids, series_cache

MINUTE = 1_700_000_040  # aligned to 60 s
KEY = SeriesKey(MINUTE, "middleware", "inst", "http", "GET", "/users/{id}", 200, "ws", "dev", "run-1")


def _minute_row(path: Path, minute: int = MINUTE) -> sqlite3.Row:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "SELECT m.*, s.endpoint FROM metrics_aggregates_minute m JOIN series s USING (series_id) "
            "WHERE m.timestamp = ?",
            (minute,),
        ).fetchone()
    finally:
        conn.close()


async def test_two_snapshots_into_one_minute_add_up(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = await SQLiteStore.open(path)
    first = [5.0, 7.5, 100.0]
    second = [2.5, 9.0]
    try:
        r1 = await store.write_snapshot(
            RecorderSnapshot(series={KEY: series_delta(first, errors=1, sent=10, received=3)}), now=MINUTE + 1
        )
        assert r1.rows["metrics_aggregates_minute"] == 1
        await store.write_snapshot(
            RecorderSnapshot(series={KEY: series_delta(second, errors=2, sent=5, received=4)}), now=MINUTE + 2
        )
        # A delta without latencies (e.g. only a WebSocket session) keeps histogram and percentiles.
        ws_only = SeriesDelta(request_count=1, session_count=1, session_duration_sum=1500.0)
        await store.write_snapshot(RecorderSnapshot(series={KEY: ws_only}), now=MINUTE + 3)
    finally:
        await store.close()
    row = _minute_row(path)
    assert row["request_count"] == 6
    assert row["error_count"] == 3
    assert row["latency_count"] == 5
    assert row["latency_sum"] == sum(first + second)
    assert row["latency_min"] == 2.5
    assert row["latency_max"] == 100.0
    assert row["bytes_sent"] == 15 and row["bytes_received"] == 7
    assert row["session_count"] == 1 and row["session_duration_sum"] == 1500.0
    assert row["created_at"] == MINUTE + 1 and row["updated_at"] == MINUTE + 3
    hist = histogram.decode(row["histogram"])
    assert sum(hist.values()) == 5
    expected = {}
    for v in first + second:
        expected[histogram.bucket_index(v)] = expected.get(histogram.bucket_index(v), 0) + 1
    assert hist == expected
    # Minute rows keep no percentiles: readers take them from the histogram.
    assert (row["latency_p50"], row["latency_p95"], row["latency_p99"]) == (None, None, None)
    p50, _, p99 = histogram.quantiles(hist, (0.5, 0.95, 0.99))
    assert abs(p50 - 7.5) / 7.5 <= 0.01
    # Rank rule floor(q * (n - 1)): of 5 values p99 is the 4th smallest, 9.0.
    assert abs(p99 - 9.0) / 9.0 <= 0.01


async def test_min_max_null_handling(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = await SQLiteStore.open(path)
    try:
        await store.write_snapshot(RecorderSnapshot(series={KEY: SeriesDelta(request_count=1)}), now=MINUTE)
        await store.write_snapshot(RecorderSnapshot(series={KEY: series_delta([3.0])}), now=MINUTE)
        await store.write_snapshot(RecorderSnapshot(series={KEY: SeriesDelta(request_count=1)}), now=MINUTE)
    finally:
        await store.close()
    row = _minute_row(path)
    assert (row["latency_min"], row["latency_max"], row["request_count"]) == (3.0, 3.0, 3)


def _exact_quantile(sorted_values: list[float], q: float) -> float:
    # The same rank rule as histogram.quantiles: the value at index floor(q * (n - 1)).
    return sorted_values[int(q * (len(sorted_values) - 1))]


async def test_percentiles_from_stored_blobs_within_one_percent(tmp_path: Path) -> None:
    rng = random.Random(20240607)
    latencies = [rng.lognormvariate(3.0, 1.0) for _ in range(100_000)]  # median ~20 ms, long tail
    recorder = Recorder(AnalyticsConfig(max_buffered_events=1_000_000), "inst")
    path = tmp_path / "p.db"
    store = await SQLiteStore.open(path)
    try:
        # Three flushes into the same minute: the stored blob must merge them exactly.
        for part in range(3):
            for v in latencies[part::3]:
                recorder.record(
                    CapturedRequest(timestamp=MINUTE + 5, protocol="http", method="GET", endpoint="/x",
                                    path="/x", status_code=200, duration_ms=v)
                )  # fmt: skip
            await store.write_snapshot(recorder.swap(), now=MINUTE + 10 + part)
    finally:
        await store.close()
    row = _minute_row(path)
    assert row["request_count"] == 100_000
    hist = histogram.decode(row["histogram"])
    assert sum(hist.values()) == 100_000
    ordered = sorted(latencies)
    for q in (0.5, 0.95, 0.99):
        exact = _exact_quantile(ordered, q)
        stored = histogram.quantile(hist, q)
        assert abs(stored - exact) / exact <= 0.01, (q, stored, exact)
    assert row["latency_min"] == min(latencies) and row["latency_max"] == max(latencies)


async def test_clients_errors_and_rollup_marks(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    hour = MINUTE - MINUTE % 3600
    ckey = ClientKey(hour, "inst", "10.0.0.1", "curl/8.5.0", "http", "ws", "dev", "run-1")
    error = ErrorEvent(
        timestamp=MINUTE + 1.5, instance="inst", protocol="http", method="GET", endpoint="/boom",
        path="/boom?x='; DROP TABLE series; --", status_code=500, error_type="ZeroDivisionError",
        error_category="server_error", error_message="division by zero", request_id="r1",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7", client_id="10.0.0.1",
        user_agent="curl/8.5.0", workspace_id="ws", environment="dev", test_run="run-1", fault_injected=True,
    )  # fmt: skip
    store = await SQLiteStore.open(path)
    try:
        snap1 = RecorderSnapshot(
            series={KEY: series_delta([1.0])},
            clients={ckey: ClientDelta(2, 1, 2, 30.0, 100, 10, {"GET /a": 1, "GET /b": 1})},
            errors=[error],
        )
        result = await store.write_snapshot(snap1, now=MINUTE + 2)
        assert result.rows == {
            "metrics_aggregates_minute": 1, "client_analytics": 1, "error_events": 1, "rollup_dirty": 2,
        }  # fmt: skip
        snap2 = RecorderSnapshot(clients={ckey: ClientDelta(3, 0, 2, 10.0, 1, 1, {"GET /b": 3})})
        await store.write_snapshot(snap2, now=MINUTE + 3)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        c = conn.execute("SELECT * FROM client_analytics").fetchone()
        assert (c["request_count"], c["error_count"], c["latency_count"]) == (5, 1, 4)
        assert c["avg_latency_ms"] == 40.0 / 4
        assert (c["bytes_sent"], c["bytes_received"]) == (101, 11)
        assert json.loads(c["endpoint_counts"]) == {"GET /a": 1, "GET /b": 4}
        assert json.loads(c["top_endpoints"])[0] == "GET /b"
        e = conn.execute("SELECT * FROM error_events").fetchone()
        assert e["trace_id"] == error.trace_id and e["span_id"] == error.span_id
        assert e["path"] == error.path and e["fault_injected"] == 1 and e["client_ip"] == "10.0.0.1"
        marks = conn.execute("SELECT tier, timestamp FROM rollup_dirty ORDER BY tier").fetchall()
        assert [tuple(m) for m in marks] == [("day", MINUTE - MINUTE % 86400), ("hour", hour)]
        assert conn.execute("SELECT count(*) FROM series").fetchone()[0] == 1
    finally:
        conn.close()


async def test_series_ids_are_reused_and_cache_is_per_connection(tmp_path: Path) -> None:
    a = await SQLiteStore.open(tmp_path / "a.db")
    b = await SQLiteStore.open(tmp_path / "b.db")
    other = SeriesKey(MINUTE, "middleware", "inst", "http", "POST", "/users", 201, "ws", "dev", "")
    try:
        await a.writer.execute("BEGIN")
        ids_a = await resolve_series_ids(a.writer, [KEY, other], now=MINUTE)
        await a.writer.execute("COMMIT")
        assert sorted(ids_a.values()) == [1, 2]
        await b.writer.execute("BEGIN")
        ids_b = await resolve_series_ids(b.writer, [other], now=MINUTE)
        await b.writer.execute("COMMIT")
        assert list(ids_b.values()) == [1]  # b's own numbering, not a's cached id
        assert len(series_cache(a.writer)) == 2
        # Same dims in a later minute resolve to the same id.
        later = SeriesKey(MINUTE + 60, *[getattr(KEY, f) for f in KEY.__slots__[1:]])
        await a.write_snapshot(RecorderSnapshot(series={later: series_delta([1.0])}), now=MINUTE + 61)
        rows = await a.reader.execute_fetchall("SELECT DISTINCT series_id FROM metrics_aggregates_minute")
        assert [r[0] for r in rows] == [ids_a[tuple(getattr(KEY, f) for f in KEY.__slots__[1:])]]
    finally:
        await a.close()
        await b.close()


async def test_restart_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = await SQLiteStore.open(path)
    await store.write_snapshot(RecorderSnapshot(series={KEY: series_delta([4.0, 6.0])}), now=MINUTE)
    await store.close()
    store = await SQLiteStore.open(path)
    try:
        assert store.applied == []
        await store.write_snapshot(RecorderSnapshot(series={KEY: series_delta([8.0])}), now=MINUTE + 5)
        rows = await store.reader.execute_fetchall(
            "SELECT request_count, latency_sum FROM metrics_aggregates_minute"
        )
        assert [tuple(r) for r in rows] == [(3, 18.0)]
    finally:
        await store.close()


async def test_memory_store_shares_one_connection() -> None:
    store = await SQLiteStore.open(":memory:")
    try:
        assert store.reader is store.writer
        await store.write_snapshot(RecorderSnapshot(series={KEY: series_delta([1.0])}), now=MINUTE)
        rows = await store.reader.execute_fetchall("SELECT request_count FROM metrics_aggregates_minute")
        assert [r[0] for r in rows] == [1]
    finally:
        await store.close()


async def test_resolve_after_cache_loss_finds_existing_ids(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "a.db")
    keys = [
        SeriesKey(MINUTE, "middleware", "inst", "http", "GET", f"/r{i}", 200, "", "", "'; DROP TABLE x; --")
        for i in range(1200)
    ]
    try:
        first = await resolve_series_ids(store.writer, keys, now=MINUTE)  # opens its own transaction
        assert not store.writer.in_transaction
        invalidate_series_cache(store.writer)
        second = await resolve_series_ids(store.writer, keys[::-1] + keys[:5], now=MINUTE)
        assert second == first
        assert sorted(first.values()) == list(range(1, 1201))
        rows = await store.reader.execute_fetchall("SELECT count(*) FROM series")
        assert next(iter(rows))[0] == 1200
    finally:
        await store.close()

"""Derived tables against known traffic: traffic_patterns, endpoint_stats, hourly snapshots."""

from __future__ import annotations

import json

import pytest
from support.rollup_data import Traffic, dump, key, open_store, write

from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.rollup import Rollup

DAY, HOUR = 86400, 3600
T0 = 1795392000  # 2026-11-23 00:00 UTC, a Monday
SUNDAY_23 = T0 + 6 * DAY + 23 * HOUR


def _known_traffic() -> Traffic:
    t = Traffic()
    dims = {"ws": "ws1", "env": "prod"}
    for i, (lat, client) in enumerate([(10.0, "c1"), (20.0, "c2"), (30.0, "c1")]):
        t.add(key(T0 + 60 * i, "/users", **dims), lat, bytes_sent=1000, client=client)
    t.add(key(T0 + 600, "/users", status=500, **dims), 100.0, bytes_sent=50, client="c1")
    t.add(key(T0 + 1200, "/orders", method="POST", status=201, **dims), 5.0, client="c3")
    t.add(key(T0 + 1260, "/orders", method="POST", status=201, **dims), 5.0, client="c3")
    t.add(key(T0 + 1800, "/graphql", method="POST", protocol="graphql", **dims), 50.0, client="c1")
    t.add(key(SUNDAY_23 + 120, "/users", **dims), 40.0, bytes_sent=1000, client="c4")
    return t


@pytest.fixture
async def store(tmp_path):
    s = await open_store(tmp_path / "d.db")
    await write(s.writer, _known_traffic(), T0)
    yield s
    await s.close()


def _rollup(store, figures=None):
    return Rollup(store, AnalyticsConfig(instance="inst-a"), clock=lambda: 0.0,
                  snapshot_source=(lambda: dict(figures)) if figures else None)  # fmt: skip


async def test_traffic_patterns_per_hour_with_monday_as_day_zero(store):
    result = await _rollup(store).rollup_once(T0 + 7 * DAY)
    assert result.traffic_pattern_rows == 3
    rows = await store.writer.execute_fetchall(
        "SELECT date, hour, day_of_week, protocol, workspace_id, environment, request_count, error_count, "
        "latency_sum, latency_count, avg_latency_ms, unique_clients FROM traffic_patterns "
        "ORDER BY timestamp, protocol"
    )
    assert rows == [
        ("2026-11-23", 0, 0, "graphql", "ws1", "prod", 1, 0, 50.0, 1, 50.0, 1),
        ("2026-11-23", 0, 0, "http", "ws1", "prod", 6, 1, 170.0, 6, pytest.approx(170 / 6), 3),
        ("2026-11-29", 23, 6, "http", "ws1", "prod", 1, 0, 40.0, 1, 40.0, 1),
    ]


async def test_endpoint_stats_cumulative_and_idempotent_across_tiers(store):
    rollup = _rollup(store)
    # Day 0 closed and rolled; Sunday 23:xx still open: it comes from minute rows.
    await rollup.rollup_once(SUNDAY_23 + 30 * 60)
    rows = await store.writer.execute_fetchall(
        "SELECT endpoint, protocol, method, workspace_id, environment, total_requests, total_errors, "
        "avg_latency_ms, min_latency_ms, max_latency_ms, p95_latency_ms, status_codes, total_bytes_sent, "
        "first_seen, last_seen FROM endpoint_stats ORDER BY endpoint"
    )
    graphql, orders, users = rows
    assert users[:7] == ("/users", "http", "GET", "ws1", "prod", 5, 1)
    assert users[7] == pytest.approx(40.0)  # (10+20+30+100+40)/5, divided by requests
    assert (users[8], users[9]) == (10.0, 100.0)
    assert users[10] == pytest.approx(40.0, rel=0.01)  # exact p95 of [10,20,30,40,100] is 40
    assert json.loads(users[11]) == {"200": 4, "500": 1}
    assert users[12] == 4050
    assert (users[13], users[14]) == (T0, SUNDAY_23 + 120)  # first from the day tier, last a minute
    assert orders[5:7] == (2, 0) and json.loads(orders[11]) == {"201": 2}
    assert graphql[1:3] == ("graphql", "POST")
    before = await dump(store.writer, ["endpoint_stats"])
    # Once Sunday is rolled up too, the same traffic read from the day tier gives the same rows.
    await rollup.rollup_once(SUNDAY_23 + 30 * 60)
    assert await dump(store.writer, ["endpoint_stats"]) == before
    result = await rollup.rollup_once(T0 + 8 * DAY)
    assert result.days == [T0 + 6 * DAY]
    after = await dump(store.writer, ["endpoint_stats"])
    # Same rows but for updated_at (the last column: the run's clock).
    assert [r[:-1] for r in after["endpoint_stats"]] == [r[:-1] for r in before["endpoint_stats"]]


async def test_hourly_snapshot_has_traffic_totals_and_process_figures(store):
    figures = {"buffered_requests": 12, "dropped_requests": 3, "uptime_seconds": 99.0}
    result = await _rollup(store, figures).rollup_once(T0 + HOUR + 10)
    assert result.snapshot_hour == T0
    cur = await store.writer.execute("SELECT * FROM analytics_snapshots")
    cols = [d[0] for d in cur.description]
    (row,) = [dict(zip(cols, r, strict=True)) for r in await cur.fetchall()]
    assert row["timestamp"] == T0 and row["snapshot_type"] == "hourly" and row["instance"] == "inst-a"
    assert (row["total_requests"], row["total_errors"]) == (7, 1)
    assert row["avg_latency_ms"] == pytest.approx(220 / 7)
    assert row["active_connections"] == 1
    assert json.loads(row["protocol_stats"]) == {
        "graphql": {"request_count": 1, "error_count": 0, "avg_latency_ms": 50.0},
        "http": {"request_count": 6, "error_count": 1, "avg_latency_ms": pytest.approx(170 / 6)},
    }
    top = json.loads(row["top_endpoints"])
    assert [(e["method"], e["endpoint"], e["request_count"], e["error_count"]) for e in top] == [
        ("GET", "/users", 4, 1),
        ("POST", "/orders", 2, 0),
        ("POST", "/graphql", 1, 0),
    ]
    assert (row["buffered_requests"], row["dropped_requests"], row["uptime_seconds"]) == (12, 3, 99.0)
    assert row["memory_usage_bytes"] > 10_000_000  # a Python process with sqlite loaded
    assert row["thread_count"] >= 2  # the main thread plus aiosqlite's
    assert row["cpu_usage_percent"] is not None and row["cpu_usage_percent"] >= 0


async def test_endpoint_stats_pick_up_a_late_minute_in_an_already_rolled_day(store):
    rollup = _rollup(store)
    await rollup.rollup_once(T0 + 8 * DAY)
    late = Traffic()
    late.add(key(T0 + 3 * HOUR, "/users", ws="ws1", env="prod", status=503), 7.0)
    await write(store.writer, late, T0 + 8 * DAY + 1)
    result = await rollup.rollup_once(T0 + 8 * DAY + 2)
    assert result.days == [T0]
    rows = await store.writer.execute_fetchall(
        "SELECT total_requests, total_errors, min_latency_ms, status_codes FROM endpoint_stats "
        "WHERE endpoint = '/users'"
    )
    assert rows == [(6, 2, 7.0, '{"200":4,"500":1,"503":1}')]

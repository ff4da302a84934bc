"""Roll-ups minute -> hour -> day: sums per key, idempotence, late minutes, markers, percentiles."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from support.rollup_data import Traffic, dump, key, lognormal_traffic, open_store, write

from mockforge_analytics_plugin.histogram import decode, merge_into
from mockforge_analytics_plugin.store.queries import Markers, read_markers
from mockforge_analytics_plugin.store.rollups import (
    DAY,
    HOUR,
    SUM_COLUMNS,
    rolled_up_until,
    rollup_days,
    rollup_hours,
)

T0 = 1795392000  # 2026-11-23 00:00:00 UTC, a Monday
AGG_TABLES = ("metrics_aggregates_minute", "metrics_aggregates_hour", "metrics_aggregates_day",
              "rollup_dirty", "analytics_state", "series")  # fmt: skip


async def _rows(db, table):
    cur = await db.execute(f"SELECT * FROM {table}")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in await cur.fetchall()]


def _sum_up(rows, width):
    """Aggregate finer rows into (bucket_start, series_id) like a roll-up must (reference impl)."""
    out: dict[tuple[int, int], dict] = {}
    for r in rows:
        k = (r["timestamp"] // width * width, r["series_id"])
        a = out.setdefault(k, {c: 0 for c in SUM_COLUMNS} | {"min": None, "max": None, "hist": {},
                                                              "by_ts": defaultdict(int)})  # fmt: skip
        for c in SUM_COLUMNS:
            a[c] += r[c]
        if r["latency_min"] is not None:
            a["min"] = r["latency_min"] if a["min"] is None else min(a["min"], r["latency_min"])
            a["max"] = r["latency_max"] if a["max"] is None else max(a["max"], r["latency_max"])
        merge_into(a["hist"], r["histogram"])
        a["by_ts"][r["timestamp"]] += r["request_count"]
    return out


def _assert_equal_sums(expected, rows):
    got = {(r["timestamp"], r["series_id"]): r for r in rows}
    assert set(got) == set(expected)
    for k, e in expected.items():
        g = got[k]
        for c in SUM_COLUMNS:
            assert g[c] == pytest.approx(e[c], rel=1e-12), (k, c)
        assert (g["latency_min"], g["latency_max"]) == (e["min"], e["max"])
        assert decode(g["histogram"]) == e["hist"]


@pytest.fixture
async def db(tmp_path):
    store = await open_store(tmp_path / "a.db")
    yield store.writer
    await store.close()


async def test_hour_sums_equal_minute_sums_and_day_sums_equal_hour_sums(db):
    traffic = lognormal_traffic(20_000, T0, 2 * DAY + 5 * HOUR)
    await write(db, traffic, T0)
    now = T0 + 3 * DAY
    hours = await rollup_hours(db, now)
    days = await rollup_days(db, now)
    assert days == [T0, T0 + DAY, T0 + 2 * DAY]
    assert len(hours) == 53

    minutes = await _rows(db, "metrics_aggregates_minute")
    hour_rows = await _rows(db, "metrics_aggregates_hour")
    day_rows = await _rows(db, "metrics_aggregates_day")
    _assert_equal_sums(_sum_up(minutes, HOUR), hour_rows)
    _assert_equal_sums(_sum_up(hour_rows, DAY), day_rows)
    # Day rows also equal the minutes directly (exact integer merges, every key kept).
    _assert_equal_sums(_sum_up(minutes, DAY), day_rows)
    assert sum(r["request_count"] for r in day_rows) == 20_000

    # active connections: mean over the minutes present, and the max.
    per_hour = defaultdict(list)
    for r in minutes:
        per_hour[(r["timestamp"] // HOUR * HOUR, r["series_id"])].append(r["active_connections"])
    for r in hour_rows:
        acts = per_hour[(r["timestamp"], r["series_id"])]
        assert r["active_connections_avg"] == pytest.approx(sum(acts) / len(acts))
        assert r["active_connections_max"] == max(acts)

    by_day = _sum_up(minutes, DAY)
    for r in day_rows:
        assert (
            r["date"]
            == {T0: "2026-11-23", T0 + DAY: "2026-11-24", T0 + 2 * DAY: "2026-11-25"}[r["timestamp"]]
        )
        per_hour_counts = defaultdict(int)
        for ts, n in by_day[(r["timestamp"], r["series_id"])]["by_ts"].items():
            per_hour_counts[(ts - r["timestamp"]) // HOUR] += n
        best = max(per_hour_counts.values())
        assert r["peak_hour"] == min(h for h, n in per_hour_counts.items() if n == best)


async def test_unique_clients_per_day_match_instance_protocol_workspace_environment_test_run(db):
    t = Traffic()
    t.add(key(T0 + 60, "/a", ws="w1"), 5.0, client="c1")
    t.add(key(T0 + 3 * HOUR, "/b", ws="w1", status=404), 5.0, client="c2")
    t.add(key(T0 + 5 * HOUR, "/a", ws="w1"), 5.0, client="c1")
    t.add(key(T0 + 120, "/a", ws="w2"), 5.0, client="c3")
    t.add(key(T0 + 180, "/a", ws="w1", test_run="r1"), 5.0, client="c9")
    t.add(key(T0 + DAY + 60, "/a", ws="w1"), 5.0, client="c7")  # next day: not counted on day 0
    await write(db, t, T0)
    await rollup_hours(db, T0 + 2 * DAY)
    await rollup_days(db, T0 + 2 * DAY)
    rows = await db.execute_fetchall(
        "SELECT s.endpoint, s.workspace_id, s.test_run, d.unique_clients, d.peak_hour "
        "FROM metrics_aggregates_day d JOIN series s USING (series_id) WHERE d.timestamp = ?",
        (T0,),
    )
    got = {(ep, ws, tr): (n, peak) for ep, ws, tr, n, peak in rows}
    assert got == {
        ("/a", "w1", ""): (2, 0),  # c1 and c2 (same instance/protocol/ws/env/test_run)
        ("/b", "w1", ""): (2, 3),
        ("/a", "w2", ""): (1, 0),
        ("/a", "w1", "r1"): (1, 0),
    }


async def test_running_each_rollup_twice_changes_nothing(db):
    await write(db, lognormal_traffic(5_000, T0, DAY + 2 * HOUR), T0)
    now = T0 + DAY + 3 * HOUR + 17
    await rollup_hours(db, now)
    await rollup_days(db, now)
    first = await dump(db, AGG_TABLES)
    assert await rollup_hours(db, now) == []
    assert await rollup_days(db, now) == []
    assert await rollup_hours(db, now + 60) == []  # a later clock with no new data: nothing either
    assert await rollup_days(db, now + 60) == []
    assert await dump(db, AGG_TABLES) == first
    # Forcing a recompute of every bucket gives byte-identical rows (replace, never add).
    await db.execute(
        "INSERT INTO rollup_dirty SELECT DISTINCT 'hour', timestamp FROM metrics_aggregates_hour"
    )
    await db.execute("INSERT INTO rollup_dirty SELECT DISTINCT 'day', timestamp FROM metrics_aggregates_day")
    assert len(await rollup_hours(db, now)) == 26
    assert len(await rollup_days(db, now)) == 1
    assert await dump(db, AGG_TABLES) == first


async def test_open_hours_and_days_wait_and_markers_say_what_is_complete(db):
    t = Traffic()
    for m in range(0, 3 * 60 + 30):  # 00:00 .. 03:29 on day 0
        t.add(key(T0 + m * 60), 10.0)
    await write(db, t, T0)
    now = T0 + 3 * HOUR + 30 * 60
    assert await rollup_hours(db, now) == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert await rollup_days(db, now) == []  # the day is still open
    state = dict(await db.execute_fetchall("SELECT key, value FROM analytics_state"))
    assert state == {"rolled_up_until_hour": str(T0 + 3 * HOUR), "rolled_up_until_day": str(T0)}
    assert await rolled_up_until(db, "hour", now) == T0 + 3 * HOUR
    rows = await db.execute_fetchall("SELECT timestamp, request_count FROM metrics_aggregates_hour")
    assert sorted(rows) == [(T0, 60), (T0 + HOUR, 60), (T0 + 2 * HOUR, 60)]


async def test_late_minute_is_reflected_after_the_next_run(db):
    t = Traffic()
    for m in range(120):
        t.add(key(T0 + m * 60, "/a"), 10.0)
    await write(db, t, T0)
    now = T0 + DAY + 10
    await rollup_hours(db, now)
    await rollup_days(db, now)
    late = Traffic()
    late.add(key(T0 + 59 * 60, "/a"), 1000.0)  # hour 0, minute 59, after hour 0 was rolled up
    late.add(key(T0 + 30 * 60, "/new"), 3.0)  # a series that hour 0 never had
    await write(db, late, now + 5)
    # Neither the live marker nor the stored one (lowered by the 0002 triggers in the flush's own
    # transaction) vouches for hour 0 or day 0 until the roll-up runs again.
    assert await rolled_up_until(db, "hour", now + 5) == T0
    assert await rolled_up_until(db, "day", now + 5) == T0
    assert await read_markers(db) == Markers(hour=T0, day=T0)
    assert await rollup_hours(db, now + 10) == [T0]
    assert await rollup_days(db, now + 10) == [T0]
    hour0 = await db.execute_fetchall(
        "SELECT s.endpoint, h.request_count, h.latency_max FROM metrics_aggregates_hour h "
        "JOIN series s USING (series_id) WHERE h.timestamp = ? ORDER BY s.endpoint",
        (T0,),
    )
    assert hour0 == [("/a", 61, 1000.0), ("/new", 1, 3.0)]
    day0 = await db.execute_fetchall(
        "SELECT request_count FROM metrics_aggregates_day d JOIN series s USING (series_id) "
        "WHERE d.timestamp = ? ORDER BY s.endpoint",
        (T0,),
    )
    assert day0 == [(121,), (1,)]
    assert await rolled_up_until(db, "hour", now + 10) == T0 + DAY
    assert await rolled_up_until(db, "day", now + 10) == T0 + DAY
    assert await read_markers(db) == Markers(hour=T0 + DAY, day=T0 + DAY)


def _exact(values, q):
    s = sorted(values)
    return s[math.floor(q * (len(s) - 1))]


async def test_percentiles_after_rollup_within_one_percent_of_exact(db):
    traffic = lognormal_traffic(100_000, T0, 2 * DAY, seed=11)
    await write(db, traffic, T0)
    await rollup_hours(db, T0 + 2 * DAY)
    await rollup_days(db, T0 + 2 * DAY)
    ids = {}
    for sid, *dims in await db.execute_fetchall(
        "SELECT series_id, source, instance, protocol, method, endpoint, status_code, workspace_id, "
        "environment, test_run FROM series"
    ):
        ids[tuple(dims)] = sid
    exact_hour: dict[tuple[int, int], list[float]] = defaultdict(list)
    exact_day: dict[tuple[int, int], list[float]] = defaultdict(list)
    for k, values in traffic.latencies.items():
        sid = ids[(k.source, k.instance, k.protocol, k.method, k.endpoint, k.status_code,
                   k.workspace_id, k.environment, k.test_run)]  # fmt: skip
        exact_hour[(k.minute // HOUR * HOUR, sid)].extend(values)
        exact_day[(k.minute // DAY * DAY, sid)].extend(values)
    worst = 0.0
    for table, exact in (("metrics_aggregates_hour", exact_hour), ("metrics_aggregates_day", exact_day)):
        rows = await db.execute_fetchall(
            f"SELECT timestamp, series_id, latency_p50, latency_p95, latency_p99 FROM {table}"
        )
        assert len(rows) == len(exact)
        for ts, sid, *ps in rows:
            values = exact[(ts, sid)]
            for q, p in zip((0.5, 0.95, 0.99), ps, strict=True):
                err = abs(p - _exact(values, q)) / _exact(values, q)
                worst = max(worst, err)
    assert worst <= 0.01

"""store.queries: the tier split, filters -> SQL, exact totals whatever has been rolled up, query plans."""

from __future__ import annotations

import pytest
from query_testdata import DAY, DAY0, HOUR, expected, make_events, open_store, rollup

from mockforge_analytics_plugin.params import COMMON_PARAMS, parse_params
from mockforge_analytics_plugin.store.filters import glob_pattern
from mockforge_analytics_plugin.store.queries import (
    Markers,
    TierRange,
    read_markers,
    series_filter,
    split_window,
    sum_counters,
)

NOW = DAY0 + 3 * DAY


def params(now=NOW, **query):
    return parse_params({k: str(v) for k, v in query.items()}, allowed=COMMON_PARAMS, now=now)


def test_split_uses_days_hours_then_minutes():
    m = Markers(hour=DAY0 + DAY + 5 * HOUR, day=DAY0 + DAY)
    start, end = DAY0 - 2 * HOUR + 300, DAY0 + DAY + 7 * HOUR + 120
    assert split_window(start, end, m) == [
        TierRange("minute", start, DAY0 - HOUR),
        TierRange("hour", DAY0 - HOUR, DAY0),
        TierRange("day", DAY0, DAY0 + DAY),
        TierRange("hour", DAY0 + DAY, DAY0 + DAY + 5 * HOUR),
        TierRange("minute", DAY0 + DAY + 5 * HOUR, end),
    ]


def test_split_without_rollups_or_coarser_than_allowed():
    assert split_window(DAY0, DAY0 + 2 * DAY, Markers()) == [TierRange("minute", DAY0, DAY0 + 2 * DAY)]
    m = Markers(hour=DAY0 + 2 * DAY, day=DAY0 + 2 * DAY)
    assert split_window(DAY0, DAY0 + 2 * DAY, m, "hour") == [TierRange("hour", DAY0, DAY0 + 2 * DAY)]
    assert split_window(DAY0, DAY0 + 2 * DAY, m, "minute") == [TierRange("minute", DAY0, DAY0 + 2 * DAY)]
    # An unaligned marker only vouches for whole hours before it.
    assert split_window(DAY0, DAY0 + 3 * HOUR, Markers(hour=DAY0 + HOUR + 1800)) == [
        TierRange("hour", DAY0, DAY0 + HOUR),
        TierRange("minute", DAY0 + HOUR, DAY0 + 3 * HOUR),
    ]


def test_glob_pattern_escapes_metacharacters():
    assert glob_pattern("/a?b[c]/*") == "/a[?]b[[]c]/*"


def test_series_filter_binds_values():
    sql, args = series_filter(
        params(protocol="http", endpoint="/x'; DROP TABLE series; --*", status_code="5xx,404")
    )
    assert "DROP" not in sql and "?" in sql
    assert args == ["middleware", "http", "/x'; DROP TABLE series; --*", 404, 500, 600]


MARKER_CASES = [
    ("none", 0, 0),
    ("hours only", DAY0 + 30 * HOUR, 0),
    ("hours and a day", DAY0 + 30 * HOUR, DAY0 + DAY),
    ("everything", DAY0 + 60 * HOUR, DAY0 + 2 * DAY),
]
WINDOWS = [
    (DAY0 - HOUR, DAY0 + 60 * HOUR),  # everything
    (DAY0 + 17 * 60, DAY0 + 2 * DAY + 7 * 60),  # ragged both ends, spans a whole day
    (DAY0 + 29 * HOUR + 600, DAY0 + 31 * HOUR + 60),  # crosses the hour marker
    (DAY0 + 5 * HOUR, DAY0 + 5 * HOUR + 60),  # one minute
]


@pytest.mark.parametrize(("name", "hour_m", "day_m"), MARKER_CASES)
async def test_totals_equal_minute_sums_whatever_is_rolled_up(tmp_path, name, hour_m, day_m):
    events = make_events()
    store = await open_store(tmp_path / "q.db", events)
    try:
        await rollup(store.writer, until_hour=hour_m, until_day=day_m)
        markers = await read_markers(store.reader)
        assert markers == Markers(hour=hour_m, day=day_m)
        for start, end in WINDOWS:
            p = params(start_time=start, end_time=end)
            got = (await sum_counters(store.reader, p, markers)).get(())
            exp = expected(events, start, end)
            assert got is not None and got.request_count == exp["requests"], (name, start, end)
            assert got.error_count == exp["errors"]
            assert got.latency_count == exp["latency_count"]
            assert got.latency_sum == pytest.approx(exp["latency_sum"])
            assert (got.latency_min, got.latency_max) == (exp["min"], exp["max"])
            assert got.bytes_sent == exp["bytes_sent"] and got.bytes_received == exp["bytes_received"]
    finally:
        await store.close()


async def test_grouped_and_bucketed_sums(tmp_path):
    events = make_events()
    store = await open_store(tmp_path / "q.db", events)
    try:
        await rollup(store.writer, until_hour=DAY0 + 40 * HOUR, until_day=DAY0 + DAY)
        markers = await read_markers(store.reader)
        p = params(start_time=DAY0 + 600, end_time=DAY0 + 50 * HOUR, status_code="4xx,503", endpoint="/api/*")
        sums = await sum_counters(store.reader, p, markers, dims=("protocol", "status_class"), step=HOUR)
        for (bucket, protocol, cls), c in sums.items():
            lo, hi = max(bucket, p.start), min(bucket + HOUR, p.end)
            exp = expected(
                events, lo, hi,
                lambda e, protocol=protocol, cls=cls: e.protocol == protocol and e.status // 100 == cls
                and (e.status // 100 == 4 or e.status == 503) and e.endpoint.startswith("/api/"),
            )  # fmt: skip
            assert c.request_count == exp["requests"]
        total = sum(c.request_count for c in sums.values())
        exp_all = expected(
            events,
            p.start,
            p.end,
            lambda e: (e.status // 100 == 4 or e.status == 503) and e.endpoint.startswith("/api/"),
        )
        assert total == exp_all["requests"] > 0
    finally:
        await store.close()


async def test_query_plans_use_the_key_or_the_covering_counter_index(tmp_path):
    from mockforge_analytics_plugin.store.queries import _SUMS

    store = await open_store(tmp_path / "q.db", make_events(n=200))
    try:
        p = params(start_time=DAY0, end_time=DAY0 + DAY, protocol="http", endpoint="/api/*")
        flt, fargs = series_filter(p)
        for table in ("metrics_aggregates_minute", "metrics_aggregates_hour", "metrics_aggregates_day"):
            where = f"FROM {table} AS m WHERE m.timestamp >= ? AND m.timestamp < ?{flt}"
            counters = f"SELECT {_SUMS} {where}"
            hists = f"SELECT m.series_id, m.histogram {where}"
            plans = []
            for sql in (counters, hists):
                async with store.reader.execute(
                    "EXPLAIN QUERY PLAN " + sql, [DAY0, DAY0 + DAY, *fargs]
                ) as cur:
                    plans.append(" | ".join(row[-1] for row in await cur.fetchall()))
            counter_access = (
                "PRIMARY KEY" if table.endswith("minute") else f"COVERING INDEX {table}_counters"
            )  # migrations/0003: counters of roll-up rows without their blobs
            assert f"SEARCH m USING {counter_access} (timestamp>? AND timestamp<?)" in plans[0], plans[0]
            assert "SEARCH m USING PRIMARY KEY (timestamp>? AND timestamp<?)" in plans[1], plans[1]
            for plan in plans:
                assert "LIST SUBQUERY" in plan and "SCAN m" not in plan, plan
    finally:
        await store.close()


async def test_late_minute_in_a_rolled_up_hour_is_still_counted(tmp_path):
    from query_testdata import snapshot_of

    events = make_events()
    store = await open_store(tmp_path / "q.db", events)
    try:
        await rollup(store.writer, until_hour=DAY0 + 48 * HOUR, until_day=DAY0 + 2 * DAY)
        late = [e for e in make_events(seed=99, start=DAY0 + 10 * HOUR, hours=1, n=5)]
        await store.write_snapshot(snapshot_of(late), now=DAY0 + 3 * DAY)  # marks hour 10 dirty
        markers = await read_markers(store.reader)
        assert markers == Markers(hour=DAY0 + 10 * HOUR, day=DAY0)
        p = params(start_time=DAY0, end_time=DAY0 + 2 * DAY)
        got = (await sum_counters(store.reader, p, markers)).get(())
        assert got.request_count == expected(events + late, DAY0, DAY0 + 2 * DAY)["requests"]
    finally:
        await store.close()

"""Percentiles past the histogram horizons: widened to the next coarser tier, said in `meta`.

The store holds 52 h of traffic from DAY0, rolled up; the horizons are then applied at NOW with
one day of minute histograms and two of hour histograms, so minute rows before DAY0 + 48 h and
hour rows before DAY0 + 24 h are slim. Counters never widen; percentiles must equal the merged
histogram of the widened window exactly (and so stay within 1 % of its raw values).
"""

from __future__ import annotations

import pytest
from query_testdata import DAY, DAY0, HOUR, NOW, expected, make_api, make_events

from mockforge_analytics_plugin.config import RetentionConfig
from mockforge_analytics_plugin.store.horizons import apply_histogram_horizons
from mockforge_analytics_plugin.store.queries import Markers, TierRange, histogram_ranges, widened_ranges

EVENTS = make_events()
ROLLED = {"until_hour": DAY0 + 52 * HOUR, "until_day": DAY0 + 2 * DAY}
LIMITS = RetentionConfig(minute_histograms_days=1, hour_histograms_days=2)
MINUTE_FROM, HOUR_FROM = DAY0 + 48 * HOUR, DAY0 + DAY


@pytest.fixture
async def api(tmp_path):
    client, store = await make_api(tmp_path, EVENTS, **ROLLED)
    slimmed = await apply_histogram_horizons(store.writer, LIMITS, NOW)
    assert all(slimmed.values())
    yield client
    await client.aclose()
    await store.close()


async def get(api, path, start, end, extra=""):
    r = await api.get(f"/analytics/api/{path}?start_time={start}&end_time={end}{extra}")
    assert r.status_code == 200, r.text
    return r.json()


def ms(value):
    return None if value is None else round(value, 3)


def within_one_percent(got, raw, q):
    exact = raw[int(q * (len(raw) - 1))]  # the rank the histograms use: first past q(n-1)
    return abs(got - exact) / exact <= 0.0101


def resolution(start, end, seconds):
    return {"percentile_resolution": [{"start": start, "end": end, "seconds": seconds}]}


async def test_overview_widens_an_old_ragged_edge_to_its_hour(api):
    start, end = DAY0 + 30 * HOUR + 600, DAY0 + 40 * HOUR
    body = await get(api, "overview", start, end)
    d, exact = body["data"], expected(EVENTS, start, end)
    assert d["total_requests"] == exact["requests"]  # counters keep the window
    assert d["avg_latency_ms"] == pytest.approx(exact["avg"], abs=1e-3)
    wide = expected(EVENTS, DAY0 + 30 * HOUR, end)  # percentiles: the whole first hour
    for q, level in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert d[f"{q}_latency_ms"] == ms(wide[q])
        assert within_one_percent(d[f"{q}_latency_ms"], wide["raw"], level)
    # Slim rows keep no min or max either: those widen like the percentiles.
    assert (d["min_latency_ms"], d["max_latency_ms"]) == (ms(wide["min"]), ms(wide["max"]))
    assert body["meta"] == resolution(DAY0 + 30 * HOUR, DAY0 + 31 * HOUR, 3600)


async def test_a_recent_window_has_exact_percentiles_and_no_meta(api):
    start, end = DAY0 + 48 * HOUR + 420, DAY0 + 51 * HOUR + 60
    body = await get(api, "overview", start, end)
    assert "meta" not in body
    assert body["data"]["p95_latency_ms"] == ms(expected(EVENTS, start, end)["p95"])


async def test_minute_buckets_past_both_horizons_show_their_day(api):
    start, end = DAY0 + 10 * HOUR, DAY0 + 10 * HOUR + 1800
    body = await get(api, "latency", start, end, "&granularity=minute")
    day = expected(EVENTS, DAY0, DAY0 + DAY)
    assert body["meta"] == resolution(DAY0, DAY0 + DAY, 86400)
    assert len(body["data"]) == 30
    for point in body["data"]:
        minute = expected(EVENTS, point["timestamp"], point["timestamp"] + 60)
        assert point["count"] == minute["latency_count"]  # counters stay per minute
        if not minute["latency_count"]:  # a minute without traffic shows no latency at all
            assert (point["avg"], point["p95"], point["min"]) == (None, None, None)
            continue
        assert point["avg"] == pytest.approx(minute["avg"], abs=1e-3)
        assert (point["p50"], point["p95"], point["p99"]) == (ms(day["p50"]), ms(day["p95"]), ms(day["p99"]))
        assert (point["min"], point["max"]) == (ms(day["min"]), ms(day["max"]))


async def test_hour_buckets_past_the_hour_horizon_show_their_day(api):
    start, end = DAY0 + 20 * HOUR, DAY0 + 30 * HOUR
    body = await get(api, "latency", start, end, "&granularity=hour")
    assert body["meta"] == resolution(DAY0, DAY0 + DAY, 86400)
    day = expected(EVENTS, DAY0, DAY0 + DAY)
    for point in body["data"]:
        ts = point["timestamp"]
        own = day if ts < HOUR_FROM else expected(EVENTS, ts, ts + HOUR)
        assert (point["min"], point["max"]) == (ms(own["min"]), ms(own["max"])), ts
        assert point["p95"] == ms(own["p95"]), ts
        assert point["count"] == expected(EVENTS, ts, ts + HOUR)["latency_count"]


async def test_top_endpoints_and_grouped_latency_widen_per_endpoint(api):
    start, end = DAY0 + 47 * HOUR + 1800, DAY0 + 50 * HOUR

    def is_users(e):
        return e.endpoint == "/api/users" and e.method == "GET"

    body = await get(api, "top-endpoints", start, end, "&limit=3")
    top = body["data"][0]
    assert (top["endpoint"], top["method"]) == ("/api/users", "GET")
    assert top["request_count"] == expected(EVENTS, start, end, is_users)["requests"]
    assert top["p95_latency_ms"] == ms(expected(EVENTS, DAY0 + 47 * HOUR, end, is_users)["p95"])
    assert body["meta"] == resolution(DAY0 + 47 * HOUR, MINUTE_FROM, 3600)
    grouped = await get(api, "latency", start, end, "&granularity=minute&group_by=endpoint")
    users = next(s for s in grouped["data"] if s["label"] == "/api/users")
    hour47 = expected(EVENTS, DAY0 + 47 * HOUR, MINUTE_FROM, lambda e: e.endpoint == "/api/users")
    old = [p for p in users["data"] if p["timestamp"] < MINUTE_FROM]
    assert {p["p95"] for p in old if p["count"]} == {ms(hour47["p95"])}
    assert {p["p95"] for p in old if not p["count"]} <= {None}


def test_widened_ranges_fold_and_stop_at_the_horizons():
    m = Markers(
        hour=DAY0 + 3 * DAY,
        day=DAY0 + 2 * DAY,
        minute_histograms=DAY0 + 50 * HOUR,
        hour_histograms=DAY0 + DAY,
    )
    # A ragged window over everything: the hours of day 0 and its minute edge fold into one day.
    start, end = DAY0 + 5 * HOUR + 120, DAY0 + 51 * HOUR + 300
    assert widened_ranges(start, end, m) == [TierRange("day", DAY0, DAY0 + DAY, 86400)]
    # Minute resolution: minutes before the minute horizon widen to hours, older ones to days.
    assert widened_ranges(DAY0 + 23 * HOUR + 60, DAY0 + 49 * HOUR + 60, m, "minute") == [
        TierRange("day", DAY0, DAY0 + DAY, 86400),
        TierRange("hour", DAY0 + DAY, DAY0 + 50 * HOUR, 3600),
    ]
    assert widened_ranges(DAY0 + 50 * HOUR, DAY0 + 51 * HOUR, m, "minute") == []
    # The reads: each widened span from its tier and every finer one (late data), nothing twice.
    pieces = histogram_ranges(DAY0 + 49 * HOUR + 600, DAY0 + 50 * HOUR + 120, m, "minute")
    assert sorted(pieces, key=lambda t: (t.start, t.tier)) == [
        TierRange("hour", DAY0 + 49 * HOUR, DAY0 + 50 * HOUR, 3600),
        TierRange("minute", DAY0 + 49 * HOUR, DAY0 + 50 * HOUR, 3600),
        TierRange("minute", DAY0 + 50 * HOUR, DAY0 + 50 * HOUR + 120),
    ]


async def test_exported_slim_minute_rows_show_no_latency_distribution(api):
    import csv
    import io

    async def export(start, end):
        query = f"dataset=metrics&granularity=minute&start_time={start}&end_time={end}"
        r = await api.get(f"/analytics/api/export/csv?{query}")
        assert r.status_code == 200
        return list(csv.DictReader(io.StringIO(r.text)))

    slim = await export(DAY0 + 10 * HOUR, DAY0 + 11 * HOUR)
    exact = expected(EVENTS, DAY0 + 10 * HOUR, DAY0 + 11 * HOUR)
    assert sum(int(r["request_count"]) for r in slim) == exact["requests"]  # counters as ever
    cols = ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "min_latency_ms", "max_latency_ms")
    assert {r[c] for r in slim for c in cols} == {""}
    assert any(r["p95_latency_ms"] for r in await export(MINUTE_FROM, MINUTE_FROM + HOUR))

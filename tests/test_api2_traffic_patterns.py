"""GET traffic-patterns: the 7 x 24 heatmap in UTC, in +5:30 and across a New York DST change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support.api2_traffic import CURL, NOW, api_client, req

from mockforge_analytics_plugin.store.rollups import rollup_hours


def _cells(data) -> dict[tuple[int, int], dict]:
    assert len(data["cells"]) == 168
    assert [(c["day_of_week"], c["hour"]) for c in data["cells"]] == [
        (d, h) for d in range(7) for h in range(24)
    ]
    return {(c["day_of_week"], c["hour"]): c for c in data["cells"] if c["request_count"]}


async def _get(client, query=""):
    r = await client.get(f"/analytics/api/traffic-patterns{query}")
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_heatmap_utc(tmp_path):
    async with api_client(tmp_path) as (client, _):
        data = await _get(client)
    cells = _cells(data)
    # 2024-01-03 is a Wednesday: day_of_week 2 (0 = Monday).
    assert set(cells) == {(2, 12), (2, 10)}
    assert cells[(2, 12)]["request_count"] == 11 and cells[(2, 12)]["error_count"] == 4
    assert cells[(2, 12)]["avg_latency_ms"] == pytest.approx(290 / 11, abs=1e-4)
    assert (cells[(2, 10)]["request_count"], cells[(2, 10)]["error_count"]) == (1, 1)
    assert cells[(2, 10)]["avg_latency_ms"] == pytest.approx(50.0)
    assert data["tz"] == "UTC" and data["days"] == 30 and data["total_requests"] == 12
    assert data["peak"] == {"day_of_week": 2, "hour": 12}
    assert data["end_time"] == NOW + 1800 and data["start_time"] == NOW + 1800 - 30 * 86400
    empty = next(c for c in data["cells"] if (c["day_of_week"], c["hour"]) == (0, 0))
    assert empty == {
        "day_of_week": 0,
        "hour": 0,
        "request_count": 0,
        "error_count": 0,
        "avg_latency_ms": None,
    }


async def test_heatmap_half_hour_zone_and_filters(tmp_path):
    async with api_client(tmp_path) as (client, _):
        kolkata = _cells(await _get(client, "?tz=Asia/Kolkata"))
        # UTC 12:00 starts at 17:30 IST, UTC 10:00 at 15:30: each hour goes where it starts.
        assert {k: v["request_count"] for k, v in kolkata.items()} == {(2, 17): 11, (2, 15): 1}
        five = _cells(await _get(client, "?status_code=5xx"))
        assert {k: v["request_count"] for k, v in five.items()} == {(2, 12): 2, (2, 10): 1}
        posts = _cells(await _get(client, "?method=POST&tz=America/New_York"))
        assert {k: v["request_count"] for k, v in posts.items()} == {(2, 7): 1}  # EST: UTC-5
        staging = _cells(await _get(client, "?environment=staging"))
        assert {k: v["request_count"] for k, v in staging.items()} == {(2, 12): 1}
        assert _cells(await _get(client, "?days=1")).keys() == {(2, 12), (2, 10)}


async def test_heatmap_bad_parameters(tmp_path):
    async with api_client(tmp_path) as (client, _):
        for query, name in [
            ("tz=Mars/Olympus", "tz"),
            ("tz=../../etc/passwd", "tz"),
            ("tz=", "tz"),
            ("days=0", "days"),
            ("days=367", "days"),
            ("days=1.5", "days"),
            ("client=a", "client"),
            ("granularity=hour", "granularity"),
            ("limit=5", "limit"),
        ]:
            r = await client.get(f"/analytics/api/traffic-patterns?{query}")
            assert r.status_code == 400, (query, r.text)
            assert r.json()["error"].startswith(name + ":"), r.json()


def _ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


async def test_heatmap_new_york_across_dst(tmp_path):
    # US DST began 2024-03-10 at 07:00 UTC (02:00 EST -> 03:00 EDT).
    traffic = [
        req(_ts(2024, 3, 9, 12, 10), "GET", "/a", 200, 5.0, "c", CURL, ""),  # Sat 07:10 EST
        req(_ts(2024, 3, 10, 6, 10), "GET", "/a", 200, 5.0, "c", CURL, ""),  # Sun 01:10 EST
        req(_ts(2024, 3, 10, 7, 10), "GET", "/a", 200, 5.0, "c", CURL, ""),  # Sun 03:10 EDT
        req(_ts(2024, 3, 11, 12, 10), "GET", "/a", 200, 5.0, "c", CURL, ""),  # Mon 08:10 EDT
    ]
    now = _ts(2024, 3, 12, 0, 0)
    async with api_client(tmp_path, traffic, now=now) as (client, _):
        utc = _cells(await _get(client, "?days=7"))
        assert set(utc) == {(5, 12), (6, 6), (6, 7), (0, 12)}
        ny = _cells(await _get(client, "?days=7&tz=America/New_York"))
        # Same UTC hour of day (12:00) lands at 07 before the change and 08 after it;
        # the skipped local hour 02 on Sunday stays empty.
        assert set(ny) == {(5, 7), (6, 1), (6, 3), (0, 8)}
        assert all(c["request_count"] == 1 for c in ny.values())


async def test_heatmap_same_before_and_after_rollup(tmp_path):
    async with api_client(tmp_path) as (client, runtime):
        before = await _get(client, "?tz=Asia/Kolkata")
        db = runtime.store.writer
        rolled = await rollup_hours(db, NOW)
        assert rolled == [NOW - 9000]  # 10:00 is closed; 12:00 (open) stays in minute rows
        after = await _get(client, "?tz=Asia/Kolkata")
        assert after["cells"] == before["cells"]
        # Prove the closed hour is now read from the hour table: drop its minute rows.
        await db.execute("DELETE FROM metrics_aggregates_minute WHERE timestamp < ?", (NOW - 5400,))
        await db.commit()
        again = await _get(client, "?tz=Asia/Kolkata")
        assert again["cells"] == before["cells"]


async def test_heatmap_new_york_repeated_hour_in_autumn(tmp_path):
    # 2024-11-03: 01:00-02:00 happens twice in New York (EDT, then EST after 06:00 UTC).
    traffic = [
        req(_ts(2024, 11, 3, 5, 10), "GET", "/a", 200, 5.0, "c", CURL, ""),  # Sun 01:10 EDT
        req(_ts(2024, 11, 3, 6, 10), "GET", "/a", 200, 5.0, "c", CURL, ""),  # Sun 01:10 EST
        req(_ts(2024, 11, 3, 7, 10), "GET", "/a", 200, 5.0, "c", CURL, ""),  # Sun 02:10 EST
    ]
    async with api_client(tmp_path, traffic, now=_ts(2024, 11, 4, 0, 0)) as (client, _):
        ny = _cells(await _get(client, "?days=2&tz=America/New_York"))
    assert {k: v["request_count"] for k, v in ny.items()} == {(6, 1): 2, (6, 2): 1}

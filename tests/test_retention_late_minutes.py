"""A late minute for an hour past the minute horizon never leaves a partial hour or day histogram."""

from __future__ import annotations

import pytest
from support.horizon_data import DAY, HOUR, HOUR_FROM, NOW, T0, TABLES, config, filled, heavy
from support.rollup_data import Traffic, key, lognormal_traffic, write

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.params import COMMON_PARAMS, parse_params
from mockforge_analytics_plugin.retention import Retention
from mockforge_analytics_plugin.rollup import Rollup
from mockforge_analytics_plugin.store.queries import iter_histograms, read_markers


def _hist(latencies: list[float]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in latencies:
        b = histogram.bucket_index(v)
        out[b] = out.get(b, 0) + 1
    return out


def _latencies(traffic: Traffic, start: int, end: int) -> list[float]:
    return [v for k, vs in traffic.latencies.items() if start <= k.minute < end for v in vs]


async def _stored(db, table: str, ts: int) -> tuple[dict[int, int], int, list]:
    rows = await db.execute_fetchall(
        "SELECT histogram, request_count, latency_p50, latency_p95, latency_p99 "
        f"FROM {table} WHERE timestamp = ?",
        (ts,),
    )
    hist = histogram.merge_blobs(r[0] for r in rows)
    return hist, sum(r[1] for r in rows), [r[2:] for r in rows]


async def _widened_percentiles(db, start: int, end: int) -> list[float | None]:
    p = parse_params({"start_time": str(start), "end_time": str(end)}, allowed=COMMON_PARAMS, now=NOW)
    blobs = [b async for rows in iter_histograms(db, p, await read_markers(db)) for _, _, b in rows]
    return histogram.quantiles(histogram.merge_blobs(blobs), (0.5, 0.95, 0.99))


@pytest.mark.parametrize(
    ("hour", "tier"),
    [(T0 + DAY + 6 * HOUR, "hour row keeps its histogram"), (T0 + 5 * HOUR, "hour row slim too")],
)
async def test_a_late_minute_in_a_slim_hour_never_leaves_a_partial_histogram(tmp_path, hour, tier):
    traffic = lognormal_traffic(9000, T0, 3 * DAY)
    store = await filled(tmp_path / "h.db", traffic)
    db = store.writer
    try:
        await Retention(store, config(), clock=lambda: NOW).retention_once()
        late = Traffic()
        for v in (3.0, 250.0, 900.0, 4000.0):
            late.add(key(hour + 600, "/users"), v)  # e.g. a Prometheus backfill after an outage
        await write(db, late, NOW)
        everything = _latencies(traffic, hour, hour + HOUR) + _latencies(late, hour, hour + HOUR)
        day = hour // DAY * DAY
        day_all = _latencies(traffic, day, day + DAY) + _latencies(late, day, day + DAY)
        qs = (0.5, 0.95, 0.99)

        # Before the roll-up: the hour (day) row is stale, the late part sits in a minute row;
        # a widened percentile read adds the two.
        assert await _widened_percentiles(db, hour + 60, hour + 120) == histogram.quantiles(
            _hist(day_all if hour < HOUR_FROM else everything), qs
        )

        await Rollup(store, config(), clock=lambda: NOW + 60).rollup_once(NOW + 60)

        assert await heavy(db, TABLES[0], f"timestamp >= {hour} AND timestamp < {hour + HOUR}") == 0
        hour_hist, hour_requests, hour_pcts = await _stored(db, TABLES[1], hour)
        assert hour_requests == len(everything)
        day_extremes = await db.execute_fetchall(
            f"SELECT MIN(latency_min), MAX(latency_max) FROM {TABLES[2]} WHERE timestamp = ?", (day,)
        )
        assert day_extremes == [(min(day_all), max(day_all))]
        day_hist, day_requests, _ = await _stored(db, TABLES[2], day)
        assert day_requests == len(day_all)
        assert day_hist == _hist(day_all)  # the day is complete either way
        if hour >= HOUR_FROM:
            assert hour_hist == _hist(everything)  # old hour histogram + the late minute
            extremes = await db.execute_fetchall(
                f"SELECT MIN(latency_min), MAX(latency_max) FROM {TABLES[1]} WHERE timestamp = ?", (hour,)
            )
            assert extremes == [(min(everything), max(everything))]
        else:
            # The hour row is past its own horizon: the late part went on into the day row.
            assert hour_hist == {} and all(p == (None, None, None) for p in hour_pcts)
        assert await _widened_percentiles(db, hour + 60, hour + 120) == histogram.quantiles(
            _hist(day_all if hour < HOUR_FROM else everything), qs
        )
        # The next horizon pass finds nothing to do.
        again = await Retention(store, config(), clock=lambda: NOW + 60).horizons_once()
        assert again == dict.fromkeys(TABLES[:2], 0)
    finally:
        await store.close()

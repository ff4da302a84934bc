"""Ingest math: counter differencing, first-seen series, resets, bucket mapping, idempotent replace."""

from __future__ import annotations

import pytest

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.prometheus.ingest import (
    RawSeries,
    Window,
    build_deltas,
    counter_increases,
    parse_series,
)
from mockforge_analytics_plugin.prometheus.presets import PRESETS
from mockforge_analytics_plugin.snapshot import SeriesKey
from mockforge_analytics_plugin.store.ingest import read_state, replace_source_minutes
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

T0 = 1_800_000_000 - 1_800_000_000 % 3600  # an hour start
B = [T0 + 60 * i for i in range(5)]  # 5 boundaries -> 4 minutes


def test_counter_difference_is_exact():
    points = {B[0]: 10.0, B[1]: 13.0, B[2]: 13.0, B[3]: 20.0, B[4]: 21.0}
    assert counter_increases(points, B) == {B[0]: 3.0, B[2]: 7.0, B[3]: 1.0}


def test_series_first_seen_counts_from_zero():
    # Absent at B0 and B1: its first sample (at B2) is all new traffic, in the minute before it.
    points = {B[2]: 4.0, B[3]: 6.0}
    assert counter_increases(points, B) == {B[1]: 4.0, B[2]: 2.0}


def test_counter_reset_counts_the_new_value():
    points = {B[0]: 100.0, B[1]: 110.0, B[2]: 3.0, B[3]: 5.0, B[4]: 5.0}
    assert counter_increases(points, B) == {B[0]: 10.0, B[1]: 3.0, B[2]: 2.0}


def test_gap_in_samples_lands_where_the_series_reappears():
    points = {B[0]: 1.0, B[3]: 9.0}
    assert counter_increases(points, B) == {B[2]: 8.0}


def _labels(path: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "instance": "h1:8000",
        "protocol": "http",
        "method": "GET",
        "path": path,
        "status": status,
        **extra,
    }


def _hist_labels(path: str, le: str, instance: str = "h1:8000") -> dict[str, str]:
    return {"instance": instance, "protocol": "http", "method": "get", "path": path, "le": le}


def test_build_deltas_sums_raw_series_and_counts_errors():
    window = Window(
        boundaries=B[:3],
        counter=[
            RawSeries(_labels("/a", "200"), {B[0]: 5.0, B[1]: 8.0, B[2]: 8.0}),
            # Same key from a second job scraping the same instance: summed after differencing.
            RawSeries(_labels("/a", "200", job="other"), {B[1]: 2.0, B[2]: 2.0}),
            RawSeries(_labels("/a", "503"), {B[1]: 1.0, B[2]: 4.0}),
        ],
    )
    deltas = build_deltas(PRESETS["mockforge"], window)
    got = {(k.minute, k.endpoint, k.status_code): (d.request_count, d.error_count) for k, d in deltas.items()}
    assert got == {(B[0], "/a", 200): (5, 0), (B[0], "/a", 503): (1, 1), (B[1], "/a", 503): (3, 3)}
    key = next(iter(deltas))
    assert key.source == "prometheus" and key.instance == "h1:8000" and key.protocol == "http"


def test_histogram_buckets_map_to_log_buckets_at_their_upper_bound():
    les = ["0.005", "0.01", "0.05", "0.1", "+Inf"]
    # Cumulative at B0 then B1: in the minute, 2 obs <= 5 ms, 1 in (5, 10] ms, 6 in (10, 50] ms,
    # 0 in (50, 100] ms and 1 above 100 ms (+Inf).
    before = {"0.005": 1, "0.01": 1, "0.05": 1, "0.1": 1, "+Inf": 1}
    after = {"0.005": 3, "0.01": 4, "0.05": 10, "0.1": 10, "+Inf": 11}
    buckets = [RawSeries(_hist_labels("/a", le), {B[0]: before[le], B[1]: after[le]}) for le in les]
    hist_base = {"instance": "h1:8000", "protocol": "http", "method": "GET", "path": "/a"}
    window = Window(
        boundaries=B[:2],
        counter=[RawSeries(_labels("/a", "200"), {B[0]: 1.0, B[1]: 11.0})],
        buckets=buckets,
        sums=[RawSeries(dict(hist_base), {B[0]: 0.5, B[1]: 0.75})],
        counts=[RawSeries(dict(hist_base), {B[0]: 1.0, B[1]: 11.0})],
    )
    deltas = build_deltas(PRESETS["mockforge"], window)
    # The mockforge histogram has no status label: latencies sit on a status-0 row of the endpoint.
    lat_key = SeriesKey(B[0], "prometheus", "h1:8000", "http", "GET", "/a", 0, "", "", "")
    count_key = SeriesKey(B[0], "prometheus", "h1:8000", "http", "GET", "/a", 200, "", "", "")
    assert set(deltas) == {lat_key, count_key}
    assert deltas[count_key].request_count == 10 and deltas[count_key].latency_count == 0
    lat = deltas[lat_key]
    assert lat.request_count == 0 and lat.latency_count == 10
    assert lat.latency_sum == pytest.approx(250.0)
    assert lat.histogram == {
        histogram.bucket_index(5.0): 2,
        histogram.bucket_index(10.0): 1,
        histogram.bucket_index(50.0): 6,
        histogram.bucket_index(100.0): 1,  # the +Inf observation, at the largest finite bound
    }
    p10, p50, p100 = histogram.quantiles(lat.histogram, (0.1, 0.5, 1.0))
    assert p10 == pytest.approx(5.0, rel=0.01)
    assert p50 == pytest.approx(50.0, rel=0.01)  # the upper bound of the (10, 50] ms bucket
    assert p100 == pytest.approx(100.0, rel=0.01)


def test_opentelemetry_counts_come_from_the_histogram_count():
    labels = {
        "instance": "h2:9000",
        "http_route": "/items/{id}",
        "http_request_method": "POST",
        "http_response_status_code": "201",
    }
    counts = [RawSeries(dict(labels), {B[0]: 2.0, B[1]: 7.0})]
    window = Window(
        boundaries=B[:2],
        counter=counts,
        counts=counts,
        buckets=[
            RawSeries({**labels, "le": "0.25"}, {B[0]: 2.0, B[1]: 7.0}),
            RawSeries({**labels, "le": "+Inf"}, {B[0]: 2.0, B[1]: 7.0}),
        ],
        sums=[RawSeries(dict(labels), {B[0]: 0.1, B[1]: 0.6})],
    )
    deltas = build_deltas(PRESETS["opentelemetry"], window)
    ((key, d),) = deltas.items()
    assert (key.endpoint, key.method, key.status_code, key.protocol) == ("/items/{id}", "POST", 201, "http")
    assert (d.request_count, d.latency_count, d.histogram) == (5, 5, {histogram.bucket_index(250.0): 5})
    assert d.latency_sum == pytest.approx(500.0)


def test_status_classes_and_websocket_sessions():
    labels = {"instance": "i", "handler": "/x", "method": "GET", "status": "4xx"}
    window = Window(boundaries=B[:2], counter=[RawSeries(labels, {B[1]: 3.0})])
    ((key, d),) = build_deltas(PRESETS["fastapi_instrumentator"], window).items()
    assert (key.status_code, d.request_count, d.error_count) == (400, 3, 3)

    ws = {"instance": "i", "protocol": "websocket", "method": "GET", "path": "/ws"}
    window = Window(
        boundaries=B[:2],
        counter=[RawSeries({**ws, "status": "101"}, {B[1]: 2.0})],
        buckets=[RawSeries({**ws, "le": "+Inf"}, {B[1]: 2.0})],
        sums=[RawSeries(dict(ws), {B[1]: 30.0})],
        counts=[RawSeries(dict(ws), {B[1]: 2.0})],
    )
    deltas = build_deltas(PRESETS["mockforge"], window)
    session = deltas[SeriesKey(B[0], "prometheus", "i", "websocket", "GET", "/ws", 0, "", "", "")]
    assert (session.session_count, session.session_duration_sum) == (2, 30000.0)
    assert session.latency_count == 0 and not session.histogram


def test_parse_series_reads_a_matrix_and_rejects_garbage():
    data = {
        "resultType": "matrix",
        "result": [
            {
                "metric": {"__name__": "m", "path": "/a"},
                "values": [[B[0], "1"], [B[1] + 0.0, "NaN"], [B[2], "4"]],
            }
        ],
    }
    (series,) = parse_series(data)
    assert series.labels == {"path": "/a"} and series.points == {B[0]: 1.0, B[2]: 4.0}
    from mockforge_analytics_plugin.prometheus.client import PrometheusMalformedResponse

    with pytest.raises(PrometheusMalformedResponse, match="query=q1"):
        parse_series({"resultType": "matrix", "result": [{"values": []}]}, url="http://p", query="q1")


async def _minute_rows(store: SQLiteStore) -> list[tuple]:
    return list(
        await store.reader.execute_fetchall(
            "SELECT m.timestamp, s.source, s.instance, s.endpoint, s.status_code, m.request_count, "
            "m.error_count, m.latency_count, m.histogram FROM metrics_aggregates_minute m "
            "JOIN series s USING (series_id) ORDER BY 1, 2, 3, 4, 5"
        )
    )


async def test_replace_twice_leaves_the_same_rows_and_marks_rollups(tmp_path):
    store = await SQLiteStore.open(tmp_path / "a.db")
    try:
        window = Window(
            boundaries=B[:3],
            counter=[
                RawSeries(_labels("/a", "200"), {B[0]: 5.0, B[1]: 8.0, B[2]: 9.0}),
                RawSeries(_labels("/a", "500"), {B[1]: 2.0, B[2]: 2.0}),
            ],
        )
        deltas = build_deltas(PRESETS["mockforge"], window)
        for _ in range(2):
            rows = await replace_source_minutes(
                store.writer, "prometheus", B[:2], deltas, T0 + 500, state={"prometheus:x": str(B[1])}
            )
            assert rows == 3
            first = await _minute_rows(store)
        assert [r[:8] for r in first] == [
            (B[0], "prometheus", "h1:8000", "/a", 200, 3, 0, 0),
            (B[0], "prometheus", "h1:8000", "/a", 500, 2, 2, 0),
            (B[1], "prometheus", "h1:8000", "/a", 200, 1, 0, 0),
        ]
        # A re-ingest with different numbers replaces, never adds; a minute now empty is cleared.
        smaller = {k: d for k, d in deltas.items() if k.minute == B[0] and k.status_code == 200}
        await replace_source_minutes(store.writer, "prometheus", B[:2], smaller, T0 + 600)
        assert [r[:6] for r in await _minute_rows(store)] == [(B[0], "prometheus", "h1:8000", "/a", 200, 3)]
        dirty = await store.reader.execute_fetchall("SELECT tier, timestamp FROM rollup_dirty ORDER BY 1")
        assert [tuple(r) for r in dirty] == [("day", T0 - T0 % 86400), ("hour", T0)]
        assert await read_state(store.reader, "prometheus:x") == str(B[1])
    finally:
        await store.close()


async def test_replace_leaves_middleware_rows_alone(tmp_path):
    from mockforge_analytics_plugin.snapshot import RecorderSnapshot, SeriesDelta

    store = await SQLiteStore.open(tmp_path / "b.db")
    try:
        mw = SeriesKey(B[0], "middleware", "me", "http", "GET", "/a", 200, "", "", "")
        await store.write_snapshot(RecorderSnapshot(series={mw: SeriesDelta(request_count=7)}), T0 + 70)
        prom = SeriesKey(B[0], "prometheus", "h1:8000", "http", "GET", "/a", 200, "", "", "")
        await replace_source_minutes(
            store.writer, "prometheus", [B[0]], {prom: SeriesDelta(request_count=4)}, T0
        )
        await replace_source_minutes(
            store.writer, "prometheus", [B[0]], {prom: SeriesDelta(request_count=4)}, T0
        )
        assert [(r[1], r[5]) for r in await _minute_rows(store)] == [("middleware", 7), ("prometheus", 4)]
    finally:
        await store.close()


def test_endpoint_cap_folds_the_quietest_into_other():
    counter = [RawSeries(_labels(f"/raw/{i}", "200"), {B[0]: 0.0, B[1]: float(10 - i)}) for i in range(5)] + [
        RawSeries(_labels("/raw/4", "500"), {B[0]: 0.0, B[1]: 1.0})
    ]
    deltas = build_deltas(PRESETS["mockforge"], Window(boundaries=B[:2], counter=counter), max_endpoints=3)
    got = {(k.endpoint, k.status_code): d.request_count for k, d in deltas.items()}
    assert got == {
        ("/raw/0", 200): 10,
        ("/raw/1", 200): 9,
        ("__other__", 200): 8 + 7 + 6,
        ("__other__", 500): 1,
    }
    assert sum(got.values()) == 41


async def test_a_failed_replace_rolls_back_everything_and_forgets_new_series_ids(tmp_path):
    from mockforge_analytics_plugin.snapshot import SeriesDelta
    from mockforge_analytics_plugin.store.series import series_cache

    store = await SQLiteStore.open(tmp_path / "c.db")
    try:
        good = SeriesKey(B[0], "prometheus", "h1:8000", "http", "GET", "/a", 200, "", "", "")
        await replace_source_minutes(
            store.writer, "prometheus", [B[0]], {good: SeriesDelta(request_count=4)}, T0
        )
        new = SeriesKey(B[0], "prometheus", "h1:8000", "http", "GET", "/new", 200, "", "", "")
        stray = SeriesKey(B[0], "middleware", "me", "http", "GET", "/a", 200, "", "", "")  # wrong source
        deltas = {new: SeriesDelta(request_count=9), stray: SeriesDelta(request_count=1)}
        with pytest.raises(ValueError, match="middleware"):
            await replace_source_minutes(store.writer, "prometheus", [B[0]], deltas, T0, state={"k": "v"})
        assert not store.writer.in_transaction and len(series_cache(store.writer)) == 0
        assert [(r[3], r[5]) for r in await _minute_rows(store)] == [("/a", 4)]  # the delete rolled back too
        names = await store.reader.execute_fetchall("SELECT endpoint FROM series ORDER BY 1")
        assert [r[0] for r in names] == ["/a"] and await read_state(store.reader, "k") is None
    finally:
        await store.close()

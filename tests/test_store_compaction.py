"""Minute rows: histograms appended in SQL on every flush, compacted once their minute is closed.

A row updated by many flushes must hold exactly what one write of all its observations would
(same counts, same p50/p95/p99), before compaction (as concatenated segments) and after (as the
single encoding); compaction is bounded per flush, survives a restart and never fails a flush.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.deltas import series_delta

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.snapshot import RecorderSnapshot, SeriesDelta, SeriesKey
from mockforge_analytics_plugin.store import SQLiteStore, compaction

MINUTE = 1_700_000_040  # aligned to 60 s
DUE = MINUTE + 60 + compaction.GRACE_SECONDS  # the first `now` at which MINUTE is compacted
QS = (0.5, 0.95, 0.99)


def key(i: int = 0, minute: int = MINUTE) -> SeriesKey:
    return SeriesKey(minute, "middleware", "inst", "http", "GET", f"/r{i}", 200, "", "", "")


def hist_of(latencies: list[float]) -> dict[int, int]:
    return series_delta(latencies).histogram


async def stored(store: SQLiteStore, minute: int = MINUTE) -> dict[int, tuple]:
    """{series_id: (histogram, p50, p95, p99, request_count)} of one minute."""
    rows = await store.reader.execute_fetchall(
        "SELECT series_id, histogram, latency_p50, latency_p95, latency_p99, request_count "
        "FROM metrics_aggregates_minute WHERE timestamp = ? ORDER BY series_id",
        (minute,),
    )
    return {r[0]: tuple(r[1:]) for r in rows}


async def write(store: SQLiteStore, series: dict[SeriesKey, SeriesDelta], now: float):
    return await store.write_snapshot(RecorderSnapshot(series=series), now=now)


async def test_flushes_append_segments_byte_for_byte(tmp_path: Path) -> None:
    # Bucket 0 and 256 put NUL bytes in the headers, 0x80+ bytes are not UTF-8 on their own:
    # the append (|| then CAST AS BLOB) must keep every byte.
    parts = [{0: 1, 3: 2}, {256: 1, 300: 200}, {0x80 + 1024: 7, 65535: 1}, {400: 1}]
    store = await SQLiteStore.open(tmp_path / "a.db")
    try:
        for n, part in enumerate(parts):
            d = SeriesDelta(request_count=1, latency_count=sum(part.values()), histogram=dict(part))
            await write(store, {key(): d}, MINUTE + n)
        # A delta without latencies (a WebSocket session) leaves the histogram as it is.
        await write(store, {key(): SeriesDelta(request_count=1, session_count=1)}, MINUTE + 9)
        (blob, p50, p95, p99, requests), *_ = (await stored(store)).values()
    finally:
        await store.close()
    assert blob == b"".join(histogram.encode(p) for p in parts)
    assert (p50, p95, p99, requests) == (None, None, None, 5)
    total: dict[int, int] = {}
    for p in parts:
        histogram.merge_into(total, p)
    assert histogram.decode(blob) == total


async def test_many_flushes_equal_one_write_before_and_after_compaction(tmp_path: Path) -> None:
    rng = random.Random(3)
    flushes = [[rng.lognormvariate(3.0, 1.0) for _ in range(rng.randint(1, 9))] for _ in range(70)]
    everything = [v for part in flushes for v in part]
    assert len(everything) > 255  # past the old sparse fast path
    store = await SQLiteStore.open(tmp_path / "a.db")
    try:
        for n, part in enumerate(flushes):
            await write(store, {key(0): series_delta(part)}, MINUTE + n % 60)
        await write(store, {key(1): series_delta(everything)}, MINUTE + 59)  # the same, in one write
        rows = await stored(store)
        many, once = rows[1][0], rows[2][0]
        assert many != once and histogram.decode(many) == histogram.decode(once)
        qs = histogram.quantiles(histogram.decode(many), QS)
        assert qs == histogram.quantiles(hist_of(everything), QS)
        ordered = sorted(everything)
        for q, got in zip(QS, qs, strict=True):
            exact = ordered[int(q * (len(ordered) - 1))]
            assert abs(got - exact) / exact <= 0.01
        # Not yet due (closed less than GRACE_SECONDS ago): nothing is rewritten.
        result = await write(store, {key(5, MINUTE + 120): series_delta([1.0])}, DUE - 1)
        assert result.compacted == 0 and (await stored(store))[1][0] == many
        result = await write(store, {key(5, MINUTE + 180): series_delta([1.0])}, DUE)
        assert result.compacted == 1  # the row written once is already compact: not even read
        rows = await stored(store)
        assert rows[1][0] == once == histogram.encode(hist_of(everything))
        assert histogram.quantiles(histogram.decode(rows[1][0]), QS) == qs
        assert rows[1][1:] == (None, None, None, len(everything))
    finally:
        await store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(
            st.one_of(st.integers(0, 30_000), st.integers(300, 700)),  # beyond: float overflow
            st.one_of(st.integers(1, 3), st.integers(1, 70_000)),
            min_size=1,
            max_size=12,
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_flush_sequence_compacts_to_the_single_encoding(parts: list[dict[int, int]]) -> None:
    async def run() -> None:
        store = await SQLiteStore.open(":memory:")
        try:
            for n, part in enumerate(parts):
                d = SeriesDelta(request_count=1, latency_count=1, histogram=dict(part))
                await write(store, {key(): d}, MINUTE + n)
            total: dict[int, int] = {}
            for p in parts:
                histogram.merge_into(total, p)
            (before, *_), *_ = (await stored(store)).values()
            assert histogram.decode(before) == total
            await write(store, {key(1, DUE): series_delta([1.0])}, DUE)
            (after, *_), *_ = (await stored(store)).values()
            assert after == histogram.encode(total)
            assert histogram.quantiles(histogram.decode(after), QS) == histogram.quantiles(total, QS)
        finally:
            await store.close()

    asyncio.run(run())


async def test_compaction_is_bounded_per_flush_and_drains(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(compaction, "MIN_BUDGET", 50)
    monkeypatch.setattr(compaction, "DRAIN_FLUSHES", 4)
    monkeypatch.setattr(compaction, "CHUNK_ROWS", 30)
    store = await SQLiteStore.open(tmp_path / "a.db")
    try:
        for n in range(3):  # 600 rows of three segments each
            await write(
                store, {key(i): series_delta([1.0 + i % 7, 40.0 + n]) for i in range(600)}, MINUTE + n
            )
        before = await stored(store)
        log = compaction.append_log(store.writer)
        assert log.pending(DUE) == 600
        done = []
        now = DUE
        while log.pending(now):
            result = await write(store, {key(0, now // 60 * 60): series_delta([2.0])}, now)
            done.append(result.compacted)
            now += 1
        assert done == [150, 150, 150, 150]  # max(MIN_BUDGET, pending / DRAIN_FLUSHES), not all at once
        after = await stored(store)
        assert after.keys() == before.keys()
        for sid, row in after.items():
            assert row[0] == histogram.encode(histogram.decode(before[sid][0]))
            assert row[1:] == before[sid][1:]
        assert not log.minutes.get(MINUTE)  # nothing of the minute is kept once compacted
    finally:
        await store.close()


async def test_late_write_into_a_compacted_minute_is_compacted_again(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "a.db")
    try:
        await write(store, {key(): series_delta([5.0])}, MINUTE)
        await write(store, {key(): series_delta([6.0])}, MINUTE + 1)
        assert (await write(store, {key(1, DUE): series_delta([1.0])}, DUE)).compacted == 1
        # A put-back snapshot lands minutes later: one more segment on a compact row.
        await write(store, {key(): series_delta([7.0, 8.0])}, DUE + 5)
        (blob, *_), *_ = (await stored(store)).values()
        assert blob == histogram.encode(hist_of([5.0, 6.0])) + histogram.encode(hist_of([7.0, 8.0]))
        assert (await write(store, {key(1, DUE): series_delta([1.0])}, DUE + 6)).compacted == 1
        (blob, *_), *_ = (await stored(store)).values()
        assert blob == histogram.encode(hist_of([5.0, 6.0, 7.0, 8.0]))
    finally:
        await store.close()


async def test_rows_left_by_a_previous_process_are_compacted_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = await SQLiteStore.open(path)
    await write(store, {key(0): series_delta([5.0]), key(1): series_delta([9.0])}, MINUTE)
    await write(store, {key(0): series_delta([6.0])}, MINUTE + 1)
    await store.close()  # stopped before the minute was due
    store = await SQLiteStore.open(path)
    try:
        result = await write(store, {key(2, DUE): series_delta([1.0])}, DUE)
        assert result.compacted == 2  # the seed found both rows; only the appended one changed
        rows = await stored(store)
        assert [r[0] for r in rows.values()] == [
            histogram.encode(hist_of([5.0, 6.0])),
            histogram.encode(hist_of([9.0])),
        ]
    finally:
        await store.close()


async def test_rows_of_an_older_version_lose_stale_percentiles_when_appended(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = await SQLiteStore.open(path)
    try:
        await write(store, {key(0): series_delta([5.0]), key(1): series_delta([5.0])}, MINUTE)
        # What an older version stored: percentiles next to the histogram.
        await store.writer.execute(
            "UPDATE metrics_aggregates_minute SET latency_p50 = 5, latency_p95 = 5, latency_p99 = 5"
        )
        await write(store, {key(0): series_delta([50.0])}, MINUTE + 1)
        await write(store, {key(1): SeriesDelta(request_count=1, session_count=1)}, MINUTE + 1)
        rows = await stored(store)
    finally:
        await store.close()
    assert rows[1][1:4] == (None, None, None)  # appended to: the stored values no longer hold
    assert rows[2][1:4] == (5.0, 5.0, 5.0)  # histogram untouched: still right


async def test_a_failing_compaction_never_fails_the_flush(tmp_path: Path, monkeypatch, caplog) -> None:
    store = await SQLiteStore.open(tmp_path / "a.db")
    try:
        await write(store, {key(0): series_delta([5.0])}, MINUTE)
        await write(store, {key(0): series_delta([6.0])}, MINUTE + 1)

        def broken(blobs):
            raise RuntimeError("boom")

        monkeypatch.setattr(compaction, "compact", broken)
        with caplog.at_level(logging.ERROR, logger="mockforge.analytics.store"):
            result = await write(store, {key(1, DUE): series_delta([1.0])}, DUE)
        assert result.compacted == 0 and "compacting closed minute rows failed" in caplog.text
        assert compaction.append_log(store.writer).pending(DUE) == 0  # given up, not retried every flush
        rows = await stored(store)
        assert rows[1][0] == histogram.encode(hist_of([5.0])) + histogram.encode(hist_of([6.0]))
        assert (await stored(store, DUE // 60 * 60))[2][4] == 1  # the flush itself was written
    finally:
        await store.close()


async def test_a_rolled_back_write_leaves_the_append_log_alone(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "a.db")
    try:
        await write(store, {key(0): series_delta([5.0])}, MINUTE)

        def refuse() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        from mockforge_analytics_plugin.store.writes import write_snapshot

        with pytest.raises(sqlite3.OperationalError):
            await write_snapshot(
                store.writer,
                RecorderSnapshot(series={key(0): series_delta([6.0])}),
                MINUTE + 1,
                before_commit=refuse,
            )
        assert compaction.append_log(store.writer).minutes == {MINUTE: {1: 1}}
    finally:
        await store.close()


async def test_prometheus_minutes_carry_no_percentiles(tmp_path: Path) -> None:
    from mockforge_analytics_plugin.store.ingest import replace_source_minutes

    store = await SQLiteStore.open(tmp_path / "a.db")
    k = SeriesKey(MINUTE, "prometheus", "h1:8000", "http", "GET", "/a", 200, "", "", "")
    try:
        await replace_source_minutes(
            store.writer, "prometheus", [MINUTE], {k: series_delta([3.0, 4.0])}, MINUTE + 90
        )
        (blob, p50, p95, p99, requests), *_ = (await stored(store)).values()
    finally:
        await store.close()
    assert blob == histogram.encode(hist_of([3.0, 4.0]))
    assert (p50, p95, p99, requests) == (None, None, None, 2)


def test_a_compacted_blob_is_bound_as_a_bytearray() -> None:
    # sqlite3 (3.11) sends bytes through its adapter lookup; a bytearray is bound directly.
    two_segments = histogram.encode({300: 1}) + histogram.encode({301: 1})
    ((blob, minute, series_id),) = compaction._compacted(60, [(7, two_segments)])
    assert type(blob) is bytearray
    assert (blob, minute, series_id) == (histogram.encode({300: 1, 301: 1}), 60, 7)

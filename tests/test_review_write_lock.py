"""Review: every writer through the store's writer connection is serialised by ``store.write_lock``.

A ":memory:" store has ONE connection for everything; a flush and a Prometheus ingest on it must
never interleave their BEGIN ... COMMIT (the second BEGIN fails, and its rollback would undo the
other writer's half-done transaction).
"""

from __future__ import annotations

import asyncio

from test_prom_source import T0, FakePrometheus, _client, _config, _fleet

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.prometheus.source import PrometheusSource
from mockforge_analytics_plugin.snapshot import RecorderSnapshot, SeriesDelta, SeriesKey
from mockforge_analytics_plugin.store.sqlite import SQLiteStore


def _snapshot(minute: int, n: int) -> RecorderSnapshot:
    series = {}
    for i in range(n):
        key = SeriesKey(minute, "middleware", "inst", "http", "GET", f"/e{i}", 200, "", "", "")
        d = SeriesDelta(request_count=1, latency_count=1, latency_sum=5.0, latency_min=5.0, latency_max=5.0)
        d.histogram[histogram.bucket_index(5.0)] = 1
        series[key] = d
    return RecorderSnapshot(series=series)


async def _count(store: SQLiteStore, source: str) -> int:
    rows = await store.reader.execute_fetchall(
        "SELECT coalesce(sum(m.request_count), 0) FROM metrics_aggregates_minute m "
        "JOIN series s USING (series_id) WHERE s.source = ?",
        (source,),
    )
    return int(next(iter(rows))[0])


async def test_flush_and_prometheus_ingest_on_a_memory_store_never_interleave() -> None:
    fake = FakePrometheus()
    _fleet(fake)
    store = await SQLiteStore.open(":memory:")
    source = PrometheusSource(_config(), store, client=_client(fake, cache_ttl=0))
    try:
        results = await asyncio.gather(
            source.ingest_once(T0 + 190.0),
            *(store.write_snapshot(_snapshot(T0 + 60 * i, 200), T0 + 190.0) for i in range(3)),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert results[0].error is None
        assert await _count(store, "prometheus") == 13
        assert await _count(store, "middleware") == 600
        assert not store.writer.in_transaction
    finally:
        await source.close()
        await store.close()


async def test_write_snapshot_waits_for_the_write_lock(tmp_path) -> None:
    store = await SQLiteStore.open(tmp_path / "w.db")
    try:
        async with store.write_lock:
            write = asyncio.ensure_future(store.write_snapshot(_snapshot(T0, 3), T0 + 1.0))
            await asyncio.sleep(0.05)
            assert not write.done() and not store.writer.in_transaction
        await write
        assert await _count(store, "middleware") == 3
    finally:
        await store.close()


async def test_close_waits_for_the_write_in_progress_and_refuses_queued_ones(tmp_path) -> None:
    from mockforge_analytics_plugin.store.sqlite import StoreClosedError

    store = await SQLiteStore.open(tmp_path / "c.db")
    await store.write_lock.acquire()  # a writer mid-transaction
    queued = asyncio.ensure_future(store.write_snapshot(_snapshot(T0, 2), T0 + 1.0))
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # the connection stays open while a writer holds the lock
    store.write_lock.release()
    await closing
    try:
        await queued
    except StoreClosedError:
        pass
    else:
        raise AssertionError("a write queued behind close() must raise StoreClosedError")


async def test_writing_is_the_stores_lock_or_a_no_op_for_a_store_without_one() -> None:
    from types import SimpleNamespace

    from mockforge_analytics_plugin.store import writing

    store = await SQLiteStore.open(":memory:")
    try:
        async with writing(store):
            assert store.write_lock.locked()
        assert not store.write_lock.locked()
        async with writing(SimpleNamespace()):  # a test double without a lock
            pass
    finally:
        await store.close()

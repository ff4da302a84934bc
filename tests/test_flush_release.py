"""A written snapshot is freed a slice at a time after the flush, not in one piece on return."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mockforge_analytics_plugin import flush
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.flush import Flusher
from mockforge_analytics_plugin.snapshot import DropCounters, RecorderSnapshot, SeriesDelta, SeriesKey
from mockforge_analytics_plugin.store import SQLiteStore

MINUTE = 1_700_000_040


class _OneSnapshot:
    def __init__(self, snapshot: RecorderSnapshot) -> None:
        self.snapshot = snapshot
        self.drops = DropCounters()

    def swap(self) -> RecorderSnapshot:
        snap, self.snapshot = self.snapshot, RecorderSnapshot()
        return snap

    def restore(self, snapshot: RecorderSnapshot) -> None:
        self.snapshot = snapshot

    def buffered_requests(self) -> int:
        return self.snapshot.request_count()


def _series(n: int) -> dict[SeriesKey, SeriesDelta]:
    return {
        SeriesKey(MINUTE, "middleware", "h:1", "http", "GET", f"/e{i}", 200, "w", "dev", ""): SeriesDelta(
            request_count=1
        )
        for i in range(n)
    }


async def test_a_large_snapshot_is_emptied_in_slices_after_the_write(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "r.db")
    try:
        series = _series(2 * flush.RELEASE_SLICE + 1)
        flusher = Flusher(_OneSnapshot(RecorderSnapshot(series=series)), store, AnalyticsConfig())
        result = await flusher.flush_once(now=MINUTE + 1)
        assert result.ok and result.requests == len(_series(2 * flush.RELEASE_SLICE + 1))
        sizes = [len(series)]
        while flusher._releasing:
            await asyncio.sleep(0)  # one turn of the loop at a time
            sizes.append(len(series))
        assert sizes[0] > flush.RELEASE_SLICE and sizes[-1] == 0
        assert len(set(sizes)) >= 3  # emptied over several turns of the loop, not at once
    finally:
        await store.close()


async def test_a_small_or_failed_snapshot_needs_no_task(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    try:
        small = _series(10)
        flusher = Flusher(_OneSnapshot(RecorderSnapshot(series=small)), store, AnalyticsConfig())
        assert (await flusher.flush_once(now=MINUTE + 1)).ok
        assert not flusher._releasing and len(small) == 10
    finally:
        await store.close()
    large = _series(flush.RELEASE_SLICE + 5)
    recorder = _OneSnapshot(RecorderSnapshot(series=large))
    flusher = Flusher(recorder, store, AnalyticsConfig())  # closed store: the write fails
    assert not (await flusher.flush_once(now=MINUTE + 2)).ok
    assert (
        not flusher._releasing and recorder.snapshot.series is large and len(large) == flush.RELEASE_SLICE + 5
    )

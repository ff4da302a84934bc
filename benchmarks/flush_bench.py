"""Flush benchmark: 10k distinct series into a real SQLite file, and the event-loop stall it causes.

Run: python benchmarks/flush_bench.py [--series 10000] [--rounds 3] [--dir /tmp] [--compact-at-once]
Rounds: an insert of 10k new series into one minute, --rounds updates of the same 10k rows (one
flush a second for a minute is --rounds 60; each update appends one histogram segment per row),
a next minute, then "later update" rounds: the same series updated in a minute that starts once
the first minute is due for compaction, each flush also compacting its bounded share of the
first minute's rows (store/compaction.py), until none is left. It prints the histogram bytes of
the first minute's rows while open and after compaction; --compact-at-once first times
compacting all of them in one transaction (the once-a-minute alternative).
Prints per round: the write's wall time, the process CPU time and the event-loop thread's CPU
time it cost (ms; CPU figures are less sensitive to other load on the machine), the worst
lateness of a 1 ms asyncio ticker running beside it (ms), the ticker's p99 lateness,
"loop-busy max": the most event-loop-thread CPU spent between two ticks (the share of a stall
that our code on the loop causes, whatever else the machine runs), and the rows compacted. The
"idle" row is the ticker with nothing flushing: the machine's own noise floor.
Targets (issue 3): <= 100 ms per 10k-series flush, <= 5 ms stall. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.flush import Flusher
from mockforge_analytics_plugin.snapshot import (
    ClientDelta,
    ClientKey,
    DropCounters,
    RecorderSnapshot,
    SeriesDelta,
    SeriesKey,
)
from mockforge_analytics_plugin.store import SQLiteStore, compaction

MINUTE = 1_700_000_040


def make_snapshot(n_series: int, minute: int, seed: int) -> RecorderSnapshot:
    """n distinct series in one minute, each with a handful of requests spread over a few buckets."""
    rng = random.Random(seed)
    series: dict[SeriesKey, SeriesDelta] = {}
    for i in range(n_series):
        key = SeriesKey(minute, "middleware", "bench:8000", "http", ("GET", "POST")[i % 2],
                        f"/api/r{i // 10}/{{id}}", (200, 201, 404, 500, 503)[i % 5], "default", "dev",
                        f"run-{i % 3}")  # fmt: skip
        d = SeriesDelta()
        for _ in range(rng.randint(1, 8)):
            v = rng.lognormvariate(2.5, 0.8)
            d.request_count += 1
            d.latency_count += 1
            d.latency_sum += v
            d.latency_min = v if d.latency_min is None else min(d.latency_min, v)
            d.latency_max = v if d.latency_max is None else max(d.latency_max, v)
            b = histogram.bucket_index(v)
            d.histogram[b] = d.histogram.get(b, 0) + 1
            d.bytes_sent += 120
        series[key] = d
    hour = minute - minute % 3600
    endpoints = {f"GET /api/r{j}/{{id}}": 10 for j in range(10)}
    clients = {
        ClientKey(hour, "bench:8000", f"10.0.0.{c}", "bench/1.0", "http", "default", "dev", ""):
        ClientDelta(100, 1, 100, 500.0, 1000, 100, dict(endpoints))
        for c in range(20)
    }  # fmt: skip
    return RecorderSnapshot(series=series, clients=clients)


class OneShotRecorder:
    """Hands out one prepared snapshot; restore() keeps it (a failed flush would show here)."""

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


async def ticker(stop: asyncio.Event, lateness: list[float], busy: list[float]) -> None:
    """Sleep 1 ms at a time; record how late each wake-up is (ms) and how much CPU the loop
    thread spent on other callbacks meanwhile (ms): the part of a stall that is our own code."""
    while not stop.is_set():
        start = time.perf_counter()
        cpu = time.thread_time()
        await asyncio.sleep(0.001)
        lateness.append((time.perf_counter() - start) * 1000.0 - 1.0)
        busy.append((time.thread_time() - cpu) * 1000.0)


async def one_round(
    store: SQLiteStore, snapshot: RecorderSnapshot | None, cfg: AnalyticsConfig, *, now: float
) -> dict[str, float]:
    """Flush one snapshot through a Flusher while the ticker runs; return the figures."""
    flusher = Flusher(OneShotRecorder(snapshot or RecorderSnapshot()), store, cfg)
    stop = asyncio.Event()
    lateness: list[float] = []
    busy: list[float] = []
    tick = asyncio.create_task(ticker(stop, lateness, busy))
    await asyncio.sleep(0.02)  # ticker warm
    baseline = len(lateness)
    cpu0, loop_cpu0 = time.process_time(), time.thread_time()
    started = time.perf_counter()
    result = await flusher.flush_once(now=now) if snapshot is not None else None
    if snapshot is None:  # idle round: the ticker's lateness with nothing flushing (machine noise)
        await asyncio.sleep(0.2)
    wall = (time.perf_counter() - started) * 1000.0
    cpu = (time.process_time() - cpu0) * 1000.0
    loop_cpu = (time.thread_time() - loop_cpu0) * 1000.0
    await asyncio.sleep(0.005)
    stop.set()
    await tick
    during = lateness[baseline:] or [0.0]
    if result is not None and not result.ok:
        raise SystemExit(f"flush failed: {result.error}")
    return {
        "wall_ms": wall,
        "cpu_ms": cpu,
        "loop_cpu_ms": loop_cpu,
        "rows": float(result.total_rows if result else 0),
        "compacted": float(result.compacted if result else 0),
        "stall_max_ms": max(during),
        "loop_busy_max_ms": max(busy[baseline:] or [0.0]),
        "stall_p99_ms": (
            statistics.quantiles(during, n=100, method="inclusive")[98] if len(during) >= 2 else during[0]
        ),
    }


async def blob_sizes(store: SQLiteStore, minute: int) -> str:
    """Mean and max histogram bytes of one minute's rows."""
    rows = await store.reader.execute_fetchall(
        "SELECT avg(length(histogram)), max(length(histogram)), count(*) FROM metrics_aggregates_minute "
        "WHERE timestamp = ?",
        (minute,),
    )
    mean, top, n = next(iter(rows))
    return f"{n} rows, histogram bytes mean {mean or 0:.0f}, max {top or 0}"


async def compact_all_at_once(store: SQLiteStore, minute: int) -> str:
    """Compact every due row of the log in one transaction (the once-a-minute alternative)."""
    db = store.writer
    due = compaction.append_log(db).pending(minute + 60 + compaction.GRACE_SECONDS)
    cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    await db.execute("BEGIN IMMEDIATE")
    done = await compaction.compact_closed_minutes(db, minute + 60 + compaction.GRACE_SECONDS, budget=due)
    await db.execute("COMMIT")
    compaction.append_log(db).forget(done)
    wall = (time.perf_counter() - wall0) * 1000.0
    cpu = (time.process_time() - cpu0) * 1000.0
    loop = (time.thread_time() - loop0) * 1000.0
    rows = sum(map(len, done.values()))
    return f"{rows} rows in one transaction: wall {wall:.1f} ms, cpu {cpu:.1f} ms, loop cpu {loop:.1f} ms"


async def main() -> None:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="update rounds after the first insert")
    parser.add_argument("--dir", default=None, help="folder for the database file (default: a temp dir)")
    parser.add_argument(
        "--compact-at-once",
        action="store_true",
        help="compact the updated minute in one transaction instead of a bounded number per flush",
    )
    args = parser.parse_args()
    cfg = AnalyticsConfig()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        store = await SQLiteStore.open(Path(folder) / "bench.db")
        try:
            print(f"flush of {args.series} distinct series (one minute), batch_size={cfg.batch_size}")
            print(
                f"{'round':<28}{'rows':>7}{'wall ms':>9}{'cpu ms':>8}{'loop cpu ms':>12}"
                f"{'stall max ms':>13}{'stall p99 ms':>13}{'loop-busy max':>14}{'compacted':>10}"
            )
            labels = ["idle (no flush)", "insert (new series)"]
            labels += [f"update {i} (same rows)" for i in range(1, args.rounds + 1)]
            labels.append("next minute (cached ids)")
            for i, label in enumerate(labels):
                minute = MINUTE + 60 if label.startswith("next") else MINUTE
                snap = None if label.startswith("idle") else make_snapshot(args.series, minute, seed=i)
                print_round(label, await one_round(store, snap, cfg, now=MINUTE + 30))
            print(f"open minute after {args.rounds} updates: {await blob_sizes(store, MINUTE)}")
            if args.compact_at_once:
                print(f"compaction, all at once: {await compact_all_at_once(store, MINUTE)}")
            # A later minute, updated every second like the first one, once the first minute is
            # due: each flush also compacts a bounded share of its rows.
            later = MINUTE + 60 + compaction.GRACE_SECONDS
            log = compaction.append_log(store.writer)
            k = 0
            while k == 0 or log.pending(later + k):
                snap = make_snapshot(args.series, later // 60 * 60, seed=1000 + k)
                fig = await one_round(store, snap, cfg, now=later + k)
                print_round(f"later update {k + 1} (compacts)", fig)
                k += 1
            print(f"closed minute after compaction: {await blob_sizes(store, MINUTE)}")
        finally:
            await store.close()


def print_round(label: str, fig: dict[str, float]) -> None:
    """One table row."""
    print(
        f"{label:<28}{int(fig['rows']):>7}{fig['wall_ms']:>9.1f}{fig['cpu_ms']:>8.1f}"
        f"{fig['loop_cpu_ms']:>12.1f}{fig['stall_max_ms']:>13.2f}{fig['stall_p99_ms']:>13.2f}"
        f"{fig['loop_busy_max_ms']:>14.2f}{int(fig['compacted']):>10}"
    )


if __name__ == "__main__":
    asyncio.run(main())

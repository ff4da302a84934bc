"""Flush benchmark: 10k distinct series into a real SQLite file, and the event-loop stall it causes.

Run: python benchmarks/flush_bench.py [--series 10000] [--rounds 3] [--dir /tmp]
Prints per round: the write's wall time, the process CPU time and the event-loop thread's CPU
time it cost (ms; CPU figures are less sensitive to other load on the machine), the worst
lateness of a 1 ms asyncio ticker running beside it (ms), the ticker's p99 lateness, and
"loop-busy max": the most event-loop-thread CPU spent between two ticks (the share of a stall
that our code on the loop causes, whatever else the machine runs). The "idle" row is the
ticker with nothing flushing: the machine's own noise floor.
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
from mockforge_analytics_plugin.store import SQLiteStore
from mockforge_analytics_plugin.store.migrations import discover_migrations

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
    store: SQLiteStore, snapshot: RecorderSnapshot | None, cfg: AnalyticsConfig
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
    result = await flusher.flush_once(now=MINUTE + 30) if snapshot is not None else None
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
        "stall_max_ms": max(during),
        "loop_busy_max_ms": max(busy[baseline:] or [0.0]),
        "stall_p99_ms": (
            statistics.quantiles(during, n=100, method="inclusive")[98] if len(during) >= 2 else during[0]
        ),
    }


def compare_merge(n_series: int, folder: str, repeats: int = 3) -> None:
    """Update 10k stored rows both ways, synchronously: Python merge (read blobs, merge, write the
    merged blob and percentiles) against a SQL function hist_add() merging inside the upsert."""
    import sqlite3

    from mockforge_analytics_plugin.store import writes

    path = Path(folder) / "merge.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for m in discover_migrations():
        conn.executescript(m.sql)
    snap = make_snapshot(n_series, MINUTE, seed=0)
    items = list(snap.series.items())
    ids = list(range(1, len(items) + 1))
    conn.executemany(
        "INSERT INTO series VALUES (?, 'm', 'i', 'http', 'GET', ?, 200, '', '', '', 0)",
        [(i, f"/x{i}") for i in ids],
    )
    conn.executemany(writes._UPSERT_MINUTE, writes._minute_rows(items, ids, {}, 1))

    def hist_add(a: bytes | None, b: bytes | None) -> bytes | None:
        if not a or not b:
            return a or b
        return histogram.encode(histogram.merge_into(histogram.decode(a), b))

    def hist_q(blob: bytes | None, q: float) -> float | None:
        return histogram.quantile(histogram.decode(blob), q) if blob else None

    conn.create_function("hist_add", 2, hist_add, deterministic=True)
    conn.create_function("hist_q", 2, hist_q, deterministic=True)
    sql_merge = writes._UPSERT_MINUTE.replace(
        "histogram = COALESCE(excluded.histogram, histogram)",
        "histogram = hist_add(histogram, excluded.histogram)",
    )
    for q, col in ((0.5, "latency_p50"), (0.95, "latency_p95"), (0.99, "latency_p99")):
        sql_merge = sql_merge.replace(
            f"{col} = COALESCE(excluded.{col}, {col})",
            f"{col} = hist_q(hist_add(histogram, excluded.histogram), {q})",
        )
    plain = [(k.minute, i, *_delta_params(d)) for (k, d), i in zip(items, ids, strict=True)]

    def python_merge() -> None:
        conn.execute("BEGIN IMMEDIATE")
        existing: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            q = ", ".join("?" * len(chunk))
            for sid, blob in conn.execute(
                f"SELECT series_id, histogram FROM metrics_aggregates_minute WHERE timestamp = ? "
                f"AND series_id IN ({q})",
                (MINUTE, *chunk),
            ):
                existing[(MINUTE, sid)] = blob
        conn.executemany(writes._UPSERT_MINUTE, writes._minute_rows(items, ids, existing, 2))
        conn.execute("COMMIT")

    def sql_function_merge() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql_merge, plain)
        conn.execute("COMMIT")

    best = {"python merge": 1e9, "sql hist_add()": 1e9}
    for _ in range(repeats):
        for label, fn in (("python merge", python_merge), ("sql hist_add()", sql_function_merge)):
            started = time.perf_counter()
            fn()
            best[label] = min(best[label], (time.perf_counter() - started) * 1000.0)
    conn.close()
    for label, ms in best.items():
        print(f"update of {n_series} rows, histogram merged by {label:<16} best of {repeats}: {ms:.1f} ms")


def _delta_params(d: SeriesDelta) -> tuple:
    """Upsert parameters after (timestamp, series_id) with the raw delta histogram and no percentiles."""
    return (
        d.request_count, d.error_count, d.latency_count, d.latency_sum, d.latency_min, d.latency_max,
        None, None, None, d.ttfb_sum, histogram.encode(d.histogram), d.bytes_sent, d.bytes_received,
        d.injected_latency_sum, d.fault_count, d.session_count, d.session_duration_sum,
        d.active_connections, 1, 2,
    )  # fmt: skip


async def main() -> None:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="update rounds after the first insert")
    parser.add_argument("--dir", default=None, help="folder for the database file (default: a temp dir)")
    parser.add_argument("--compare-merge", action="store_true", help="also time Python vs SQL-function merge")
    args = parser.parse_args()
    cfg = AnalyticsConfig()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        store = await SQLiteStore.open(Path(folder) / "bench.db")
        try:
            print(f"flush of {args.series} distinct series (one minute), batch_size={cfg.batch_size}")
            print(
                f"{'round':<28}{'rows':>7}{'wall ms':>9}{'cpu ms':>8}{'loop cpu ms':>12}"
                f"{'stall max ms':>13}{'stall p99 ms':>13}{'loop-busy max':>14}"
            )
            labels = ["idle (no flush)", "insert (new series)"]
            labels += [f"update {i} (same rows)" for i in range(1, args.rounds + 1)]
            labels.append("next minute (cached ids)")
            for i, label in enumerate(labels):
                minute = MINUTE + 60 if label.startswith("next") else MINUTE
                snap = None if label.startswith("idle") else make_snapshot(args.series, minute, seed=i)
                fig = await one_round(store, snap, cfg)
                print(
                    f"{label:<28}{int(fig['rows']):>7}{fig['wall_ms']:>9.1f}{fig['cpu_ms']:>8.1f}"
                    f"{fig['loop_cpu_ms']:>12.1f}{fig['stall_max_ms']:>13.2f}{fig['stall_p99_ms']:>13.2f}"
                    f"{fig['loop_busy_max_ms']:>14.2f}"
                )
        finally:
            await store.close()
        if args.compare_merge:
            compare_merge(args.series, folder)


if __name__ == "__main__":
    asyncio.run(main())

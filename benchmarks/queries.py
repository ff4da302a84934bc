"""Benchmark of the query layer on realistic sparse traffic (issue 5).

Fills a SQLite store straight in SQL: 200 endpoints with Zipf-shaped volume (s = 1.5, most
quiet), a few methods and statuses each (375 series, 82 req/s on average, working-hours shaped),
7 days of minute rows, 30 days of hour rows and 365 days of day rows, with the roll-up markers
set. Then times each route's query
function (warm, median of --runs) over 24 h, 7 d and 30 d windows (granularity auto) and prints
a table, once with numpy histogram merging and once in pure Python.

    python benchmarks/queries.py            # fills /tmp/mockforge-bench-queries-<key>.db once
    python benchmarks/queries.py --runs 7 --fresh

The rows are synthetic: each histogram comes from a pool keyed by the row's request count
rounded to two significant digits, so it is realistic in size, not exact per row.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mockforge_analytics_plugin import histogram, query
from mockforge_analytics_plugin.params import COMMON_PARAMS, parse_params
from mockforge_analytics_plugin.store.queries import read_markers
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

NOW = 1_767_225_600 + 30 * 60 + 17  # 2026-01-01T00:30:17Z: ragged on purpose
ENDPOINTS = 200
RATE = 82.0  # requests per second over all series
MINUTE_DAYS, HOUR_DAYS, DAY_DAYS = 7, 30, 365
ZIPF_S = 1.5


def diurnal(ts: np.ndarray) -> np.ndarray:
    """Working-hours traffic: 2.2x the mean rate 08-18 UTC, 0.16x at night (mean 1.0)."""
    hour = (ts % 86400) // 3600
    return np.where((hour >= 8) & (hour < 18), 2.2, 0.16)


def series_plan(rng: np.random.Generator) -> list[tuple[tuple[Any, ...], float]]:
    """(series dims, requests per second) for ~360 series with Zipf-shaped endpoint volume."""
    weights = 1.0 / np.arange(1, ENDPOINTS + 1) ** ZIPF_S
    weights /= weights.sum()
    out = []
    for rank in range(ENDPOINTS):
        protocol = "graphql" if rank % 40 == 7 else ("websocket" if rank % 50 == 9 else "http")
        methods = ["GET"] if rank % 3 else ["GET", "POST"]
        statuses = [(200, 0.93), (404, 0.05), (500, 0.02)] if rank < 40 else [(200, 1.0)]
        for method in methods:
            for status, share in statuses:
                rate = RATE * weights[rank] * share / len(methods)
                dims = (
                    "middleware",
                    "bench:1",
                    protocol,
                    method,
                    f"/api/r{rank}/{{id}}",
                    status,
                    "ws",
                    "prod",
                    "",
                )
                out.append((dims, rate))
    return out


class BlobPool:
    """Histogram blobs by request count class (two significant digits), lognormal latencies."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.cache: dict[int, tuple[bytes, float, float, float]] = {}

    def get(self, n: int) -> tuple[bytes, float, float, float]:
        """(blob, latency_sum, min, max) for about n requests."""
        digits = max(0, int(math.log10(n)) - 1)
        key = round(n, -digits)
        if key not in self.cache:
            lat = self.rng.lognormal(mean=2.3, sigma=0.7, size=max(1, key))
            idx = np.ceil(np.log(lat * 1000.0) / math.log(histogram.GAMMA)).astype(np.int64)
            counts = np.bincount(idx)
            hist = {int(i): int(c) for i, c in enumerate(counts) if c}
            self.cache[key] = (
                histogram.encode(hist),
                float(lat.sum()) * n / key,
                float(lat.min()),
                float(lat.max()),
            )
        return self.cache[key]


def fill(path: Path, seed: int = 5) -> dict[str, int]:
    """Write every tier in one transaction with executemany; return row counts."""
    rng = np.random.default_rng(seed)
    plan = series_plan(rng)
    pool = BlobPool(rng)
    db = sqlite3.connect(path)
    counts = {}
    with db:
        db.executemany(
            "INSERT INTO series (series_id, source, instance, protocol, method, endpoint, status_code,"
            " workspace_id, environment, test_run, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            [(i + 1, *dims) for i, (dims, _) in enumerate(plan)],
        )
        today = NOW // 86400 * 86400
        this_hour = NOW // 3600 * 3600
        tiers = [
            ("metrics_aggregates_minute", 60, NOW // 60 * 60 + 60 - MINUTE_DAYS * 86400, NOW // 60 * 60 + 60),
            ("metrics_aggregates_hour", 3600, this_hour - HOUR_DAYS * 86400, this_hour),
            ("metrics_aggregates_day", 86400, today - DAY_DAYS * 86400, today),
        ]
        for table, step, start, end in tiers:
            buckets = np.arange(start, end, step)
            shape = diurnal(buckets) if step < 86400 else np.ones(len(buckets))
            rows = []
            for sid, (dims, rate) in enumerate(plan, start=1):
                n = rng.poisson(rate * step * shape)
                for ts, k in zip(buckets[n > 0].tolist(), n[n > 0].tolist(), strict=True):
                    blob, lsum, lo, hi = pool.get(k)
                    errors = k if dims[5] >= 400 else 0
                    if dims[2] == "websocket":  # sessions carry no HTTP latency
                        rows.append((ts, sid, k, errors, 0, 0.0, None, None, None, k * 800, k * 120))
                    else:
                        rows.append((ts, sid, k, errors, k, lsum, lo, hi, blob, k * 800, k * 120))
            rows.sort()
            extra_col, extra_val = (
                (", date", ", strftime('%Y-%m-%d', ?, 'unixepoch')") if step == 86400 else ("", "")
            )
            sql = (
                f"INSERT INTO {table} (timestamp, series_id, request_count, error_count, latency_count,"
                f" latency_sum, latency_min, latency_max, histogram, bytes_sent, bytes_received,"
                f" created_at{extra_col}"
                f"{', updated_at' if step == 60 else ''})"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0{extra_val}{', 0' if step == 60 else ''})"
            )
            db.executemany(sql, [(*r, r[0]) for r in rows] if step == 86400 else rows)
            counts[table] = len(rows)
        for key, value in (("rolled_up_until_hour", this_hour), ("rolled_up_until_day", today)):
            db.execute(
                "INSERT OR REPLACE INTO analytics_state (key, value, updated_at) VALUES (?, ?, 0)",
                (key, value),
            )
    db.execute("ANALYZE")
    db.close()
    counts["series"] = len(plan)
    return counts


async def prepare(fresh: bool) -> Path:
    """The cached database for these parameters (built when missing or --fresh)."""
    key = hashlib.sha1(  # v3: histogram blob format 2
        f"{NOW}-{ENDPOINTS}-{RATE}-{MINUTE_DAYS}-{HOUR_DAYS}-{DAY_DAYS}-{ZIPF_S}-v3".encode()
    ).hexdigest()[:10]
    path = Path(f"/tmp/mockforge-bench-queries-{key}.db")
    if path.exists() and not fresh:
        return path
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = await SQLiteStore.open(path)  # the real migrations
    await store.close()
    started = time.perf_counter()
    counts = fill(path)
    took, size = time.perf_counter() - started, path.stat().st_size / 2**20
    print(f"filled {path} in {took:.1f} s: {counts}, {size:.0f} MiB")
    return path


ROUTES: dict[str, tuple[str, Callable[..., Awaitable[Any]], dict[str, str]]] = {
    "overview": ("pct", query.overview, {}),
    "requests (per protocol)": ("count", query.requests_series, {}),
    "latency": ("pct", query.latency_series, {}),
    "top-endpoints (requests)": ("pct", query.top_endpoints, {"sort": "requests", "limit": "10"}),
    "top-endpoints (p95)": ("pct", query.top_endpoints, {"sort": "p95", "limit": "10"}),
    "protocol-breakdown": ("count", query.protocol_breakdown, {}),
    "status-codes": ("count", query.status_codes, {}),
    "overview, endpoint=/api/r1*": ("pct", query.overview, {"endpoint": "/api/r1*"}),
    "latency, status_code=5xx": ("pct", query.latency_series, {"status_code": "5xx"}),
}
WINDOWS = {"24 h": 86400, "7 d": 7 * 86400, "30 d": 30 * 86400}


async def time_routes(path: Path, runs: int) -> list[tuple[str, str, dict[str, tuple[float, float]]]]:
    """(median, min) milliseconds per route and window (after one warm-up call)."""
    store = await SQLiteStore.open(path)
    results = []
    try:
        for name, (kind, fn, extra) in ROUTES.items():
            timings = {}
            for label, seconds in WINDOWS.items():
                allowed = COMMON_PARAMS | {"limit", "sort", "group_by"}
                p = parse_params(
                    {"duration": str(seconds), **extra},
                    allowed=allowed,
                    now=NOW,
                    sorts=query.TOP_ENDPOINT_SORTS,
                )
                await fn(store.reader, p)  # warm
                samples = []
                for _ in range(runs):
                    started = time.perf_counter()
                    await fn(store.reader, p)
                    samples.append((time.perf_counter() - started) * 1000.0)
                timings[label] = (statistics.median(samples), min(samples))
            results.append((name, kind, timings))
        markers = await read_markers(store.reader)
        print(f"markers: hour={markers.hour} day={markers.day}")
    finally:
        await store.close()
    return results


def print_table(title: str, results: list[tuple[str, str, dict[str, tuple[float, float]]]]) -> None:
    """A plain-text table: route, target, `median (min)` per window; '!' marks a median over target."""
    print(f"\n{title}")
    print(f"{'route':30} {'target':>7} " + " ".join(f"{w:>15}" for w in WINDOWS))
    for name, kind, timings in results:
        target = 50 if kind == "count" else 150
        cells = " ".join(
            f"{med:7.1f}{'!' if med > target else ' '}({low:5.1f})"
            for med, low in (timings[w] for w in WINDOWS)
        )
        print(f"{name:30} {target:4} ms {cells}")


def main() -> None:
    """Fill (or reuse) the store, then time the routes with numpy and with pure-Python merging."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached database")
    args = parser.parse_args()
    path = asyncio.run(prepare(args.fresh))
    env = f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, numpy {np.__version__}"
    print(
        f"{env}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f};"
        f" median (min) of {args.runs} warm runs, ms"
    )
    for use_numpy in (True, False):
        query.USE_NUMPY = use_numpy
        results = asyncio.run(time_routes(path, args.runs))
        print_table("histogram merge: " + ("numpy" if use_numpy else "pure Python"), results)


if __name__ == "__main__":
    main()

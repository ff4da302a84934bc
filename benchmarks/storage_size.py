"""Bytes on disk per million requests, and the projection over the retention windows.

Run: python benchmarks/storage_size.py [--rates 100,1000] [--hours 2] [--flush-seconds 1]

For each rate it fills a fresh SQLite file through the real write path (CapturedRequest ->
Recorder.record -> Recorder.swap -> SQLiteStore.write_snapshot, one flush every --flush-seconds
of simulated time; an injected clock, no sleeping), then runs the roll-up (hours, the day,
derived tables, snapshot) and retention, checkpoints the WAL and measures every table with the
``dbstat`` virtual table. The simulated span ends at midnight UTC so the day roll-up runs too.

Mix: 200 endpoint templates (two thirds take an id) with Zipf(1.1) popularity, one or two methods
each; each answers its method's success status (200/201/204), 404 for 4% of requests with an id,
500 for 1.5% and 503 for 0.5%; 12 clients (Zipf), 2 test runs; log-normal latency (median 20 ms,
sigma 0.8); 1 in 20 requests carry a body.

Projection: each time-based table's bytes per simulated hour times the hours its retention
keeps (minute 7 d, hour 30 d, errors 7 d, clients 30 d, patterns 90 d, snapshots 90 d), the day
table's bytes per day times 365, plus the series table. The original estimated 2.4 GB at
1000 req/s over its windows; the target is <= 240 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from mockforge_analytics_plugin.capture_types import CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig, RetentionConfig
from mockforge_analytics_plugin.recorder import Recorder
from mockforge_analytics_plugin.retention import Retention
from mockforge_analytics_plugin.rollup import Rollup
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

DAY = 86400
END = 1795392000 + 2 * DAY  # a midnight UTC: the simulated span ends there
ORIGINAL_1000 = 2.4e9
TARGET_1000 = 240e6
WINDOW_FIELDS = {  # table -> the RetentionConfig field that limits it (days)
    "metrics_aggregates_minute": "minute_aggregates_days",
    "metrics_aggregates_hour": "hour_aggregates_days",
    "error_events": "error_events_days",
    "client_analytics": "client_analytics_days",
    "traffic_patterns": "traffic_patterns_days",
    "analytics_snapshots": "snapshots_days",
}
# An endpoint answers its method's success status, 404 when it takes an id, 500/503 rarely.
SUCCESS = {"GET": 200, "POST": 201, "PUT": 200, "DELETE": 204}


class Mix:
    """The realistic request mix, drawn in batches (random.choices) to keep the driver cheap."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        methods = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
        self.endpoints = []
        for i in range(200):
            template = f"/api/v1/resource{i}/{{id}}" if i % 3 else f"/api/v1/resource{i}"
            for method in {self.rng.choice(methods), "GET"} if i % 4 == 0 else {self.rng.choice(methods)}:
                self.endpoints.append((method, template))
        self.ep_weights = [1.0 / (i + 1) ** 1.1 for i in range(len(self.endpoints))]
        self.clients = [(f"10.0.0.{i}", f"k6/0.{i}") for i in range(12)]
        self.client_weights = [1.0 / (i + 1) for i in range(12)]

    @staticmethod
    def status(method: str, template: str, u: float) -> int:
        """The status of one request to an endpoint, from a uniform draw u."""
        if u < 0.015:
            return 500
        if u < 0.02:
            return 503
        if u < 0.06 and template.endswith("{id}"):
            return 404
        return SUCCESS[method]

    def batch(self, start: float, n: int, width: float) -> list[CapturedRequest]:
        """n requests spread evenly over [start, start + width)."""
        rng = self.rng
        eps = rng.choices(self.endpoints, self.ep_weights, k=n)
        clients = rng.choices(self.clients, self.client_weights, k=n)
        lognorm = rng.lognormvariate
        out = []
        for i in range(n):
            method, template = eps[i]
            client, ua = clients[i]
            status = self.status(method, template, rng.random())
            out.append(
                CapturedRequest(
                    timestamp=start + width * i / n, protocol="http", method=method, endpoint=template,
                    path=template, status_code=status, duration_ms=lognorm(2.9957, 0.8), ttfb_ms=1.0,
                    bytes_sent=0 if status == 204 else 700, bytes_received=300 if i % 20 == 0 else 0,
                    client_id=client, user_agent=ua, test_run="run-a" if i % 2 else "run-b",
                    error_type=f"HTTP {status}" if status >= 400 else "", in_flight=1 + i % 4,
                )
            )  # fmt: skip
        return out


def precreate(path: Path, page_size: int) -> None:
    """Fix the file's page size before the store creates its tables (the store keeps the default)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA page_size = {int(page_size)}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("CREATE TABLE _page_size (x)")  # the first write fixes the page size
        conn.execute("DROP TABLE _page_size")
        conn.commit()
    finally:
        conn.close()


async def fill(
    path: Path, rate: int, hours: float, flush_seconds: float, seed: int, page_size: int, max_errors: int
) -> dict:
    """Fill one database at `rate` req/s for `hours`, roll up, retain; return the measurements."""
    config = AnalyticsConfig(instance="bench:1", max_error_events_per_minute=max_errors)
    if page_size:
        precreate(path, page_size)
    store = await SQLiteStore.open(path)
    recorder = Recorder(config, "bench:1")
    mix = Mix(seed)
    start = END - int(hours * 3600)
    requests = 0
    t = float(start)
    started = time.perf_counter()
    write_s = 0.0
    while t < END:
        n = int(rate * flush_seconds)
        for rec in mix.batch(t, n, flush_seconds):
            recorder.record(rec)
        requests += n
        t += flush_seconds
        w = time.perf_counter()
        await store.write_snapshot(recorder.swap(), t)
        write_s += time.perf_counter() - w
    fill_s = time.perf_counter() - started
    r = time.perf_counter()
    result = await Rollup(store, config, clock=lambda: END + 60).rollup_once(END + 60)
    rollup_s = time.perf_counter() - r
    await Retention(store, config, clock=lambda: END + 60).retention_once(END + 60)
    await store.close()  # checkpoints the WAL into the file
    sizes = table_sizes(path)
    return {
        "rate": rate,
        "hours": hours,
        "requests": requests,
        "file_bytes": path.stat().st_size,
        "tables": sizes,
        "fill_s": fill_s,
        "write_s": write_s,
        "rollup_s": rollup_s,
        "hours_rolled": len(result.hours),
        "days_rolled": len(result.days),
    }


def table_sizes(path: Path) -> dict[str, int]:
    """Bytes of every table including its indexes (dbstat), keyed by table name.

    A table of a few pages is counted by the bytes it uses, not by its pages: one mostly empty
    16 KB page times 2160 hours would otherwise project tens of MB that never exist.
    """
    conn = sqlite3.connect(path)
    try:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type <> 'view'"))
        out: dict[str, int] = {}
        for name, size, unused, pages in conn.execute(
            "SELECT name, SUM(pgsize), SUM(unused), COUNT(*) FROM dbstat GROUP BY name"
        ):
            table = owner.get(name, name)
            out[table] = out.get(table, 0) + (size if pages > 8 else size - unused)
        return out
    finally:
        conn.close()


def projection(m: dict, limits: RetentionConfig) -> dict[str, float]:
    """Bytes each table holds at steady state over its retention window, at the measured rate."""
    per_hour = 1.0 / m["hours"]
    tables = m["tables"]
    out = {t: tables.get(t, 0) * per_hour * 24 * getattr(limits, f) for t, f in WINDOW_FIELDS.items()}
    # One day's row set (from the simulated hours: a full day's histograms are a little wider).
    out["metrics_aggregates_day"] = tables.get("metrics_aggregates_day", 0) * limits.day_aggregates_days
    out["endpoint_stats"] = tables.get("endpoint_stats", 0)
    out["series"] = tables.get("series", 0)
    return out


def report(m: dict, limits: RetentionConfig) -> float:
    """Print one rate's figures; return the projected total in bytes."""
    mb = 1e6
    per_million = m["file_bytes"] / (m["requests"] / 1e6)
    print(f"\n== {m['rate']} req/s for {m['hours']} h simulated: {m['requests']:,} requests")
    print(f"   file {m['file_bytes'] / mb:.1f} MB -> {per_million / mb:.2f} MB per million requests "
          f"(fill {m['fill_s']:.1f} s of which store writes {m['write_s']:.1f} s; roll-up "
          f"{m['hours_rolled']} h + {m['days_rolled']} d in {m['rollup_s']:.2f} s)")  # fmt: skip
    proj = projection(m, limits)
    for table, size in sorted(m["tables"].items(), key=lambda kv: -kv[1]):
        if size > 4096 * 2:
            print(
                f"   {table:28s} {size / mb:8.2f} MB measured, {proj.get(table, size) / mb:9.1f} MB projected"
            )
    total = sum(proj.values())
    print(f"   projected over the retention windows: {total / mb:.0f} MB")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,1000", help="comma-separated req/s")
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours per rate")
    parser.add_argument("--flush-seconds", type=float, default=5.0, help="simulated seconds per flush")
    parser.add_argument("--page-size", type=int, default=0, help="e.g. 16384 (default: the store's)")
    parser.add_argument("--minute-days", type=float, default=7.0, help="minute retention to project")
    parser.add_argument("--error-days", type=float, default=7.0, help="error_events retention to project")
    parser.add_argument(
        "--max-errors-per-minute", type=int, default=AnalyticsConfig().max_error_events_per_minute
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", help="folder to keep the databases in (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mockforge-storage-"))
    limits = RetentionConfig(minute_aggregates_days=args.minute_days, error_events_days=args.error_days)
    print(f"projection windows (days): {limits}")
    totals = {}
    for rate in (int(r) for r in args.rates.split(",")):
        path = folder / f"storage-{rate}.db"
        path.unlink(missing_ok=True)
        m = asyncio.run(
            fill(
                path,
                rate,
                args.hours,
                args.flush_seconds,
                args.seed,
                args.page_size,
                args.max_errors_per_minute,
            )
        )
        totals[rate] = report(m, limits)
    if 1000 in totals:
        t = totals[1000]
        verdict = "meets" if t <= TARGET_1000 else "MISSES"
        print(f"\n1000 req/s: {t / 1e6:.0f} MB vs the original's 2.4 GB estimate "
              f"({t / ORIGINAL_1000:.1%} of it); target <= 240 MB: {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

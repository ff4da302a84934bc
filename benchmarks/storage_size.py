"""Bytes on disk per million requests, and the projection over the retention windows.

Run: python benchmarks/storage_size.py [--mixes load-test,sparse] [--rates 100,1000] [--hours 1]
     [--flush-seconds 5] [--page-size 16384] [--max-errors-per-minute 60] [--row-cost] [--keep DIR]

For each mix and rate it fills a fresh SQLite file through the real write path (CapturedRequest
-> Recorder.record -> Recorder.swap -> SQLiteStore.write_snapshot, one flush every
--flush-seconds of simulated time; an injected clock, no sleeping), then runs the roll-up (the
hour, the day, derived tables, snapshot) and retention, checkpoints the WAL and measures every
table (rows, and bytes with the ``dbstat`` virtual table, indexes included, free space inside
pages included). The simulated span ends at midnight UTC so the day roll-up runs too.

Mixes (both: one instance, workspace "default", environment "dev"; paths carry real ids):

  load-test  30 endpoints (two thirds take an id; GET/POST/PUT/DELETE), mildly skewed popularity
             (weight 1/sqrt(rank)); each answers its success status, 500 for 0.5 % of requests
             and, when it takes an id, 404 for 3 %: 2-3 statuses per endpoint; 2 concurrent test
             runs (the upper end of 1-2); 5 clients (k6); log-normal latency, a median of 5-80 ms
             per endpoint, sigma 0.5. About 160 series per minute at 1000 req/s.
  sparse     the first mix of this benchmark: 200 endpoints with Zipf(1.1) popularity, one or
             two methods each, 404 for 4 % of requests with an id, 500 for 1.5 %, 503 for 0.5 %;
             12 clients (Zipf), 2 test runs; log-normal latency (median 20 ms, sigma 0.8). About
             1,000 series per minute and 1,665 per hour at 1000 req/s: most series see a handful
             of requests a minute, the worst case for per-row overhead.

Projection model, printed for every run (steady state, the default retention windows):

  minute tier    series per minute  x minutes retained (7 d)  x bytes per minute row
  hour tier      series per hour    x hours retained (30 d)   x bytes per hour row
  day tier       series per day     x days retained (365 d)   x bytes per day row
  error_events   min(errors per minute, max_error_events_per_minute) x minutes (7 d) x bytes/row
  client_analytics, traffic_patterns, analytics_snapshots: rows per hour x hours retained
  series, endpoint_stats: as measured (they do not grow with time for a fixed mix)

Rates, bytes per row and rows per unit are measured; "series per day" is taken as the series of
the simulated hour (the mixes are stationary), and a day row's histogram is measured from one
hour of data (a full day's is ~15 % wider: see benchmarks/histogram_bench.py). The original
estimated 2.4 GB over its windows at 1000 req/s; the target is <= 240 MB (a tenth).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
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
MB = 1e6
SUCCESS = {"GET": 200, "POST": 201, "PUT": 200, "DELETE": 204}
REASONS = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of a mix: its statuses as cumulative thresholds of a uniform draw."""

    method: str
    template: str
    errors: tuple[tuple[float, int], ...]  # (cumulative probability, status), ascending
    median_ms: float
    sigma: float


class Mix:
    """A request mix, drawn in batches (random.choices) to keep the driver cheap."""

    name = ""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.endpoints: list[Endpoint] = []
        self.weights: list[float] = []
        self.clients: list[tuple[str, str]] = []
        self.client_weights: list[float] = []
        self.test_runs: list[str] = []
        self.run_weights: list[float] = []

    def batch(self, start: float, n: int, width: float) -> list[CapturedRequest]:
        """n requests spread evenly over [start, start + width)."""
        rng = self.rng
        eps = rng.choices(self.endpoints, self.weights, k=n)
        clients = rng.choices(self.clients, self.client_weights, k=n)
        runs = rng.choices(self.test_runs, self.run_weights, k=n)
        lognorm = rng.lognormvariate
        rand = rng.random
        out = []
        for i in range(n):
            ep = eps[i]
            u = rand()
            status = SUCCESS[ep.method]
            for p, code in ep.errors:
                if u < p:
                    status = code
                    break
            client, ua = clients[i]
            path = ep.template.replace("{id}", str(1 + int(rand() * 99999)))
            out.append(
                CapturedRequest(
                    timestamp=start + width * i / n, protocol="http", method=ep.method,
                    endpoint=ep.template, path=path, status_code=status,
                    duration_ms=lognorm(ep.median_ms, ep.sigma), ttfb_ms=1.0,
                    bytes_sent=0 if status == 204 else 700, bytes_received=300 if i % 20 == 0 else 0,
                    client_id=client, user_agent=ua, test_run=runs[i],
                    error_type=f"HTTP {status}" if status >= 400 else "",
                    error_message=REASONS.get(status, ""), in_flight=1 + i % 4,
                )
            )  # fmt: skip
        return out


class LoadTestMix(Mix):
    """30 endpoints, 2-3 statuses each, 2 test runs, 5 clients (see the module docstring)."""

    name = "load-test"

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        methods = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
        names = ["users", "orders", "items", "carts", "payments", "sessions", "search", "reviews"]
        for i in range(30):
            method = self.rng.choice(methods)
            has_id = i % 3 != 0
            template = f"/api/v2/{names[i % len(names)]}{i}" + ("/{id}" if has_id else "")
            errors = ((0.005, 500), (0.035, 404)) if has_id else ((0.005, 500),)
            median = math.log(self.rng.uniform(5.0, 80.0))  # lognormvariate takes log(median)
            self.endpoints.append(Endpoint(method, template, errors, median, 0.5))
        self.weights = [1.0 / math.sqrt(i + 1) for i in range(30)]
        self.clients = [(f"10.1.0.{i}", "k6/0.49.0 (https://k6.io/)") for i in range(5)]
        self.client_weights = [1.0] * 5
        self.test_runs = ["load-a", "load-b"]
        self.run_weights = [1.0, 1.0]


class SparseMix(Mix):
    """200 Zipf endpoints, 12 clients, 2 test runs (see the module docstring)."""

    name = "sparse"

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        methods = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
        for i in range(200):
            template = f"/api/v1/resource{i}/{{id}}" if i % 3 else f"/api/v1/resource{i}"
            for method in {self.rng.choice(methods), "GET"} if i % 4 == 0 else {self.rng.choice(methods)}:
                errors: tuple[tuple[float, int], ...] = ((0.015, 500), (0.02, 503))
                if template.endswith("{id}"):
                    errors = (*errors, (0.06, 404))
                self.endpoints.append(Endpoint(method, template, errors, 2.9957, 0.8))
        self.weights = [1.0 / (i + 1) ** 1.1 for i in range(len(self.endpoints))]
        self.clients = [(f"10.0.0.{i}", f"k6/0.{i}") for i in range(12)]
        self.client_weights = [1.0 / (i + 1) for i in range(12)]
        self.test_runs = ["run-a", "run-b"]
        self.run_weights = [1.0, 1.0]


HOURLY = ("metrics_aggregates_hour", "client_analytics", "traffic_patterns", "analytics_snapshots")
MIXES: dict[str, type[Mix]] = {"load-test": LoadTestMix, "sparse": SparseMix}


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


async def fill(path: Path, mix: Mix, rate: int, args: argparse.Namespace) -> dict:
    """Fill one database at `rate` req/s for `hours`, roll up, retain; return the measurements."""
    config = AnalyticsConfig(instance="bench:1", max_error_events_per_minute=args.max_errors_per_minute)
    if args.page_size:
        precreate(path, args.page_size)
    store = await SQLiteStore.open(path)
    recorder = Recorder(config, "bench:1")
    start = END - int(args.hours * 3600)
    requests = errors = 0
    t = float(start)
    started = time.perf_counter()
    write_s = 0.0
    while t < END:
        n = int(rate * args.flush_seconds)
        for rec in mix.batch(t, n, args.flush_seconds):
            errors += rec.status_code >= 400
            recorder.record(rec)
        requests += n
        t += args.flush_seconds
        w = time.perf_counter()
        await store.write_snapshot(recorder.swap(), t)
        write_s += time.perf_counter() - w
    fill_s = time.perf_counter() - started
    r = time.perf_counter()
    await Rollup(store, config, clock=lambda: END + 60).rollup_once(END + 60)
    rollup_s = time.perf_counter() - r
    await Retention(store, config, clock=lambda: END + 60).retention_once(END + 60)
    await store.close()  # checkpoints the WAL into the file
    rows, sizes = table_sizes(path)
    return {
        "mix": mix.name, "rate": rate, "hours": args.hours, "requests": requests, "errors": errors,
        "file_bytes": path.stat().st_size, "rows": rows, "tables": sizes, "fill_s": fill_s,
        "write_s": write_s, "rollup_s": rollup_s, "page_size": page_size_of(path),
    }  # fmt: skip


def page_size_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def table_sizes(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(rows, bytes) of every table, its indexes included (dbstat), keyed by table name.

    A table of a few pages is counted by the bytes it uses, not by its pages: one mostly empty
    page times 2160 hours would otherwise project megabytes that never exist.
    """
    conn = sqlite3.connect(path)
    try:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type <> 'view'"))
        sizes: dict[str, int] = {}
        pages: dict[str, int] = {}
        unused: dict[str, int] = {}
        for name, size, free, count in conn.execute(
            "SELECT name, SUM(pgsize), SUM(unused), COUNT(*) FROM dbstat GROUP BY name"
        ):
            table = owner.get(name, name)
            sizes[table] = sizes.get(table, 0) + size
            unused[table] = unused.get(table, 0) + free
            pages[table] = pages.get(table, 0) + count
        for table in sizes:
            if pages[table] <= 8:
                sizes[table] -= unused[table]
        rows = {
            t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
            for t in sizes
            if t in owner.values() and not t.startswith("sqlite_")
        }
        # Hourly tables: rows per hour bucket present (a partial simulated hour is one bucket).
        for t in HOURLY:
            if rows.get(t):
                sql = f'SELECT COUNT(DISTINCT timestamp) FROM "{t}"'
                rows[t + "@buckets"] = conn.execute(sql).fetchone()[0]
        return rows, sizes
    finally:
        conn.close()


def row_cost(path: Path) -> None:
    """Print what a minute row is made of, by experiment on a copy (--row-cost).

    Rewrites the copy's minute rows step by step (VACUUM after each) and measures the table:
    free space left by the flush's growing rows, the stored p50/p95/p99, created_at/updated_at
    and the histogram.
    """
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        shutil.copy(path, copy)
        conn = sqlite3.connect(copy)
        try:
            table = "metrics_aggregates_minute"
            n = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            if not n:
                return
            blob = conn.execute(f"SELECT AVG(LENGTH(histogram)) FROM {table}").fetchone()[0] or 0

            def measure(label: str) -> None:
                disk, payload, free = conn.execute(
                    "SELECT SUM(pgsize), SUM(payload), SUM(unused) FROM dbstat WHERE name = ?", (table,)
                ).fetchone()
                print(f"     {label:44s} {disk / n:6.1f} B/row on disk, payload {payload / n:6.1f}, "
                      f"free {free / disk:4.0%}")  # fmt: skip

            print(f"   minute row cost ({n:,} rows, mean histogram {blob:.0f} B):")
            measure("as written")
            for label, sql in (
                ("VACUUM (no free space from growing rows)", None),
                ("+ latency_p50/p95/p99 NULL", "latency_p50 = NULL, latency_p95 = NULL, latency_p99 = NULL"),
                ("+ created_at = updated_at = 0", "created_at = 0, updated_at = 0"),
                ("+ histogram NULL", "histogram = NULL"),
            ):
                if sql:
                    conn.execute(f"UPDATE {table} SET {sql}")
                    conn.commit()
                conn.execute("VACUUM")
                measure(label)
        finally:
            conn.close()


@dataclass
class Tier:
    """One line of the projection: rows per unit x units retained x bytes per row."""

    table: str
    rows_per_unit: float
    unit: str
    units: float
    bytes_per_row: float
    note: str = ""

    @property
    def bytes(self) -> float:
        return self.rows_per_unit * self.units * self.bytes_per_row


def projection(m: dict, limits: RetentionConfig, cap: int) -> tuple[list[Tier], float]:
    """The projection model's lines and the bytes of the tables that do not grow with time."""
    rows, sizes = m["rows"], m["tables"]
    minutes = m["hours"] * 60.0

    def per_row(table: str) -> float:
        return sizes.get(table, 0) / rows[table] if rows.get(table) else 0.0

    def per_hour(table: str) -> float:
        return rows.get(table, 0) / rows.get(table + "@buckets", 1)

    errors_per_minute = m["errors"] / minutes
    tiers = [
        Tier("metrics_aggregates_minute", rows.get("metrics_aggregates_minute", 0) / minutes, "min",
             limits.minute_aggregates_days * 1440, per_row("metrics_aggregates_minute")),
        Tier("metrics_aggregates_hour", per_hour("metrics_aggregates_hour"), "h",
             limits.hour_aggregates_days * 24, per_row("metrics_aggregates_hour")),
        Tier("metrics_aggregates_day", rows.get("metrics_aggregates_day", 0), "d",
             limits.day_aggregates_days, per_row("metrics_aggregates_day")),
        Tier("error_events", min(errors_per_minute, cap), "min", limits.error_events_days * 1440,
             per_row("error_events"), f"the mix makes {errors_per_minute:,.0f}/min, cap {cap}"),
        Tier("client_analytics", per_hour("client_analytics"), "h",
             limits.client_analytics_days * 24, per_row("client_analytics")),
        Tier("traffic_patterns", per_hour("traffic_patterns"), "h",
             limits.traffic_patterns_days * 24, per_row("traffic_patterns")),
        Tier("analytics_snapshots", per_hour("analytics_snapshots"), "h",
             limits.snapshots_days * 24, per_row("analytics_snapshots")),
    ]  # fmt: skip
    fixed = sum(sizes.get(t, 0) for t in ("series", "endpoint_stats"))
    return tiers, fixed


def report(m: dict, limits: RetentionConfig, cap: int) -> dict:
    """Print one run's figures and its projection; return the summary row."""
    per_million = m["file_bytes"] / (m["requests"] / 1e6)
    print(f"\n== {m['mix']} mix at {m['rate']} req/s, {m['hours']:g} h simulated: "
          f"{m['requests']:,} requests, page size {m['page_size']}")  # fmt: skip
    print(f"   file {m['file_bytes'] / MB:.1f} MB -> {per_million / MB:.2f} MB per million requests "
          f"(fill {m['fill_s']:.1f} s, of which store writes {m['write_s']:.1f} s; "
          f"roll-up {m['rollup_s']:.2f} s)")  # fmt: skip
    tiers, fixed = projection(m, limits, cap)
    print(f"   {'table':27s} {'rows per unit':>15s}   {'units retained':>16s}   "
          f"{'bytes/row':>9s}   {'projected':>10s}")  # fmt: skip
    for t in tiers:
        note = f"  ({t.note})" if t.note else ""
        print(f"   {t.table:27s} {t.rows_per_unit:11,.1f}/{t.unit:3s} x {t.units:9,.0f} {t.unit:4s} x "
              f"{t.bytes_per_row:7,.0f} B = {t.bytes / MB:7,.1f} MB{note}")  # fmt: skip
    print(f"   {'series + endpoint_stats':27s} {'':33s}   {'as measured':>9s} = {fixed / MB:7,.1f} MB")
    total = sum(t.bytes for t in tiers) + fixed
    print(f"   projected over the retention windows: {total / MB:,.0f} MB "
          f"({total / ORIGINAL_1000:.1%} of the original's 2.4 GB)")  # fmt: skip
    return {
        "mix": m["mix"], "rate": m["rate"], "minute_row": tiers[0].bytes_per_row,
        "series_per_min": tiers[0].rows_per_unit, "per_million": per_million, "total": total,
        "tiers": {t.table: t.bytes for t in tiers},
    }  # fmt: skip


def summary(rows: list[dict]) -> None:
    """The table across mixes and rates."""
    print("\nSummary, MB projected over the default retention windows "
          "(the original estimated 2.4 GB at 1000 req/s; target <= 240 MB)")  # fmt: skip
    head = (f"{'mix':10s} {'req/s':>6s} {'series/min':>10s} {'B/minute row':>12s} {'MB/M req':>9s} "
            f"{'minute':>8s} {'hour':>8s} {'day':>8s} {'errors':>8s} {'total MB':>9s} "
            f"{'of 2.4 GB':>9s}  target")  # fmt: skip
    print(head + "\n" + "-" * len(head))
    for r in rows:
        t = r["tiers"]
        verdict = "meets" if r["total"] <= TARGET_1000 else "MISSES"
        print(f"{r['mix']:10s} {r['rate']:6d} {r['series_per_min']:10,.0f} {r['minute_row']:12,.0f} "
              f"{r['per_million'] / MB:9.2f} {t['metrics_aggregates_minute'] / MB:8,.0f} "
              f"{t['metrics_aggregates_hour'] / MB:8,.0f} {t['metrics_aggregates_day'] / MB:8,.0f} "
              f"{t['error_events'] / MB:8,.0f} {r['total'] / MB:9,.0f} "
              f"{r['total'] / ORIGINAL_1000:9.1%}  {verdict}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixes", default="load-test,sparse", help=f"comma-separated, of {', '.join(MIXES)}")
    parser.add_argument("--rates", default="100,1000", help="comma-separated req/s")
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours per run")
    parser.add_argument("--flush-seconds", type=float, default=5.0, help="simulated seconds per flush")
    parser.add_argument("--page-size", type=int, default=0, help="e.g. 16384 (default: the store's)")
    parser.add_argument(
        "--max-errors-per-minute", type=int, default=AnalyticsConfig().max_error_events_per_minute
    )
    parser.add_argument("--row-cost", action="store_true", help="also break a minute row down (slower)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", help="folder to keep the databases in (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mockforge-storage-"))
    folder.mkdir(parents=True, exist_ok=True)
    limits = RetentionConfig()
    print(f"retention windows (days): minute {limits.minute_aggregates_days:g}, "
          f"hour {limits.hour_aggregates_days:g}, day {limits.day_aggregates_days:g}, "
          f"error_events {limits.error_events_days:g}, clients {limits.client_analytics_days:g}, "
          f"patterns {limits.traffic_patterns_days:g}, snapshots {limits.snapshots_days:g}; "
          f"max_error_events_per_minute {args.max_errors_per_minute}")  # fmt: skip
    rows = []
    for name in args.mixes.split(","):
        for rate in (int(r) for r in args.rates.split(",")):
            path = folder / f"storage-{name}-{rate}.db"
            path.unlink(missing_ok=True)
            m = asyncio.run(fill(path, MIXES[name](args.seed), rate, args))
            rows.append(report(m, limits, args.max_errors_per_minute))
            if args.row_cost:
                row_cost(path)
    summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

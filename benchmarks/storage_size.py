"""Bytes on disk over the retention windows: a measured hour replicated to full windows.

Run: python benchmarks/storage_size.py [--mixes load-test,sparse] [--rates 100,1000] [--hours 1]
     [--flush-seconds 5] [--page-size 16384] [--max-errors-per-minute 6] [--row-cost]
     [--no-replicate] [--keep-histograms] [--keep DIR]

For each mix and rate it fills a fresh SQLite file through the real write path (CapturedRequest
-> Recorder.record -> Recorder.swap -> SQLiteStore.write_snapshot, one flush every
--flush-seconds of simulated time; an injected clock, no sleeping), then runs the roll-up (the
hour, the day, derived tables, snapshot) and retention. The simulated span ends at midnight UTC
(END) so the day roll-up runs too.

Then it replicates that hour to the full default retention windows in the same file (unless
--no-replicate): each time-keyed table's measured bucket is taken out and copied back, oldest
copy first, in key order, with shifted timestamps (168 copies of the hour of minute rows and of
error events, 720 hour rows and 720 hours of client rows per series, 365 day rows, 2160 hours of
traffic patterns and snapshots). It reopens the store and runs the real retention at END: limits,
histogram horizons (minute rows older than a day and hour rows older than seven lose histogram,
p50/p95/p99, min and max), the re-packing of closed hours and the incremental vacuum. It reports
the file's size and every table's bytes (``dbstat``: indexes, interior and overflow pages and the
free space inside pages included), plus:

- the newest two hours of minute rows as the flush leaves them (its pages mostly empty until the
  hour is re-packed), from the simulated hour's bytes as flushed and re-packed;
- what a cleanup interval adds at the peak (a window holds up to one interval past its limit).

Beside it, the per-row projection of earlier versions (the simulated hour's bytes per row x rows
over the windows, histograms kept throughout), which overstates tables of few rows (mostly empty
pages) and knows nothing of the horizons.

Caveats: the copies are stationary (the same series every hour); a day row's histogram comes from
one hour of data (a real day's is ~15 % wider: see benchmarks/histogram_bench.py). Time on the
2-core box: load test about 1.5 minutes per rate; the sparse mix at 1000 req/s about 4.5 minutes
(replicating and slimming ~10 M minute rows); --no-replicate prints the projection only.

Mixes (both: one instance, workspace "default", environment "dev"; paths carry real ids):

  load-test  30 endpoints (two thirds take an id; GET/POST/PUT/DELETE), mildly skewed popularity
             (weight 1/sqrt(rank)); each answers its success status, 500 for 0.5 % of requests
             and, when it takes an id, 404 for 3 %: 2-3 statuses per endpoint; 2 concurrent test
             runs (the upper end of 1-2); 5 clients (k6); log-normal latency, a median of 5-80 ms
             per endpoint, sigma 0.5, time to first byte 0.9 of it. About 160 series per minute.
  sparse     200 endpoints with Zipf(1.1) popularity, one or two methods each, 404 for 4 % of
             requests with an id, 500 for 1.5 %, 503 for 0.5 %; 12 clients (Zipf), 2 test runs;
             log-normal latency (median 20 ms, sigma 0.8). About 1,000 series per minute and
             1,665 per hour at 1000 req/s: most series see a handful of requests a minute, the
             worst case for per-row overhead.

The original estimated 2.4 GB over its windows at 1000 req/s; the target is <= 240 MB (a tenth)
for the load-test mix. docs/storage.md explains the model and the knobs.
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
from dataclasses import dataclass, replace
from pathlib import Path

from mockforge_analytics_plugin.capture_types import CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig, RetentionConfig
from mockforge_analytics_plugin.recorder import Recorder
from mockforge_analytics_plugin.retention import Retention
from mockforge_analytics_plugin.rollup import Rollup
from mockforge_analytics_plugin.store.horizons import MINUTE_PACKED_FROM
from mockforge_analytics_plugin.store.sqlite import SQLiteStore
from mockforge_analytics_plugin.store.tiers import HOUR_HISTOGRAMS_FROM, MINUTE_HISTOGRAMS_FROM

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
            duration = lognorm(ep.median_ms, ep.sigma)
            out.append(
                CapturedRequest(
                    timestamp=start + width * i / n, protocol="http", method=ep.method,
                    endpoint=ep.template, path=path, status_code=status,
                    duration_ms=duration, ttfb_ms=duration * 0.9,  # fractional sums, as real ones
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
    config = AnalyticsConfig(
        instance="bench:1", max_error_events_per_minute=args.max_errors_per_minute, retention=limits_of(args)
    )
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
    await Retention(store, config, clock=lambda: END).retention_once(END)
    await store.close()  # checkpoints the WAL into the file
    rows, sizes = table_sizes(path)
    measured = {
        "mix": mix.name, "rate": rate, "hours": args.hours, "requests": requests, "errors": errors,
        "file_bytes": path.stat().st_size, "rows": rows, "tables": sizes, "fill_s": fill_s,
        "write_s": write_s, "rollup_s": rollup_s, "page_size": page_size_of(path),
        "minute_unused": unused_share(path, "metrics_aggregates_minute"),
        "minute_packed": packed_bytes(path, "metrics_aggregates_minute"),
    }  # fmt: skip
    if args.replicate:
        measured["real"] = await replicate_and_retain(path, config)
    return measured


def limits_of(args: argparse.Namespace) -> RetentionConfig:
    """The default retention, or with --keep-histograms every histogram kept for its tier's window."""
    limits = RetentionConfig()
    if args.keep_histograms:
        return replace(
            limits,
            minute_histograms_days=limits.minute_aggregates_days,
            hour_histograms_days=limits.hour_aggregates_days,
        )
    return limits


def unused_share(path: Path, table: str) -> float:
    """The share of a table's page bytes left unused (free space inside its pages)."""
    conn = sqlite3.connect(path)
    try:
        size, unused = conn.execute(
            "SELECT SUM(pgsize), SUM(unused) FROM dbstat WHERE name = ?", (table,)
        ).fetchone()
        return (unused or 0) / size if size else 0.0
    finally:
        conn.close()


def packed_bytes(path: Path, table: str) -> int:
    """A table's bytes once its rows are deleted and re-inserted in key order (on a copy)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "packed.db"
        shutil.copy(path, copy)
        conn = sqlite3.connect(copy, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute(f"CREATE TEMP TABLE src AS SELECT * FROM {table}")
            conn.execute(f"DELETE FROM {table}")
            conn.execute(f"INSERT INTO {table} SELECT * FROM temp.src ORDER BY timestamp, series_id")
            conn.execute("COMMIT")
            return int(conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name = ?", (table,)).fetchone()[0])
        finally:
            conn.close()


@dataclass(frozen=True)
class Copies:
    """One table's replication: the measured bucket (`unit` s wide, ending at END) copied back."""

    table: str
    unit: int
    limit_field: str  # the RetentionConfig field: copies cover that many days


COPIES = (
    Copies("metrics_aggregates_minute", 3600, "minute_aggregates_days"),
    Copies("metrics_aggregates_hour", 3600, "hour_aggregates_days"),
    Copies("metrics_aggregates_day", DAY, "day_aggregates_days"),
    Copies("error_events", 3600, "error_events_days"),
    Copies("client_analytics", 3600, "client_analytics_days"),
    Copies("traffic_patterns", 3600, "traffic_patterns_days"),
    Copies("analytics_snapshots", 3600, "snapshots_days"),
)
# Columns derived from the timestamp, recomputed for each copy (UTC).
_DERIVED = {
    "date": "strftime('%Y-%m-%d', {ts}, 'unixepoch')",
    "hour": "CAST(strftime('%H', {ts}, 'unixepoch') AS INTEGER)",
    "day_of_week": "(CAST(strftime('%w', {ts}, 'unixepoch') AS INTEGER) + 6) % 7",
}


def replicate(path: Path, limits: RetentionConfig) -> dict[str, int]:
    """Copy each table's measured bucket back over its retention window, oldest copy first.

    The measured rows are taken out and every copy (the original last) is inserted in key order
    with its timestamps shifted, as a store that ran that long would hold them; the roll-up
    markers already cover every copied hour and day. Returns {table: rows now}.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for c in COPIES:
            info = conn.execute(f"PRAGMA table_info({c.table})").fetchall()
            cols = [r[1] for r in info if not (r[1] == "id" and r[5])]  # a rowid alias numbers itself
            key = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
            # Rowid tables: time order, then the order the rows were written in.
            order = ", ".join(key) if key and key != ["id"] else "timestamp, rowid"
            copies = round(getattr(limits, c.limit_field) * DAY / c.unit)
            conn.execute(
                f"CREATE TEMP TABLE src AS SELECT * FROM {c.table} WHERE timestamp >= ?", (END - c.unit,)
            )
            older = conn.execute(
                f"SELECT COUNT(*) FROM {c.table} WHERE timestamp < ?", (END - c.unit,)
            ).fetchone()[0]
            if older:
                raise RuntimeError(f"{c.table}: {older} rows outside the measured bucket")
            conn.execute(f"DELETE FROM {c.table}")
            for k in range(copies - 1, -1, -1):
                shift = k * c.unit
                exprs = []
                for col in cols:
                    if col in ("timestamp", "created_at", "updated_at"):
                        exprs.append(f"{col} - {shift}")
                    elif col in _DERIVED:
                        exprs.append(_DERIVED[col].format(ts=f"CAST(timestamp AS INTEGER) - {shift}"))
                    else:
                        exprs.append(col)
                conn.execute(
                    f"INSERT INTO {c.table} ({', '.join(cols)}) "
                    f"SELECT {', '.join(exprs)} FROM temp.src ORDER BY {order}"
                )
            conn.execute("DROP TABLE temp.src")
        # The store that ran this long had slimmed as it went: let the horizon pass start at the
        # oldest copy (the measuring run's pass had moved the horizon over hours then empty).
        conn.execute(
            "DELETE FROM analytics_state WHERE key IN (?, ?, ?)",
            (MINUTE_HISTOGRAMS_FROM, HOUR_HISTOGRAMS_FROM, MINUTE_PACKED_FROM),
        )
        conn.execute("COMMIT")
        return {c.table: conn.execute(f"SELECT COUNT(*) FROM {c.table}").fetchone()[0] for c in COPIES}
    finally:
        conn.close()


async def replicate_and_retain(path: Path, config: AnalyticsConfig) -> dict:
    """Replicate to the full windows, run the real retention (limits, horizons), measure the file."""
    started = time.perf_counter()
    copied = replicate(path, config.retention)
    replicate_s = time.perf_counter() - started
    store = await SQLiteStore.open(path)
    r = time.perf_counter()
    report = await Retention(store, config, clock=lambda: END).retention_once(END)
    retention_s = time.perf_counter() - r
    await store.close()
    rows, sizes = table_sizes(path, exact=True)
    return {
        "copied": copied, "rows": rows, "tables": sizes, "file_bytes": path.stat().st_size,
        "replicate_s": replicate_s, "retention_s": retention_s, "deleted": dict(report),
        "slimmed": report.slimmed, "repacked": report.repacked,
        "minute_unused": unused_share(path, "metrics_aggregates_minute"),
    }  # fmt: skip


def page_size_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def table_sizes(path: Path, *, exact: bool = False) -> tuple[dict[str, int], dict[str, int]]:
    """(rows, bytes) of every table, its indexes included (dbstat), keyed by table name.

    Unless `exact`, a table of a few pages is counted by the bytes it uses, not by its pages:
    one mostly empty page times 2160 hours would otherwise project megabytes that never exist.
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
            if pages[table] <= 8 and not exact:
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
    """Print one run's figures: the per-row projection, then the replicated file; return the summary row."""
    per_million = m["file_bytes"] / (m["requests"] / 1e6)
    print(f"\n== {m['mix']} mix at {m['rate']} req/s, {m['hours']:g} h simulated: "
          f"{m['requests']:,} requests, page size {m['page_size']}")  # fmt: skip
    print(f"   file {m['file_bytes'] / MB:.1f} MB -> {per_million / MB:.2f} MB per million requests "
          f"(fill {m['fill_s']:.1f} s, of which store writes {m['write_s']:.1f} s; "
          f"roll-up {m['rollup_s']:.2f} s)")  # fmt: skip
    tiers, fixed = projection(m, limits, cap)
    print(
        "   per-row projection (the simulated hour's bytes per row x rows over the windows, "
        "histograms kept throughout):"
    )
    print(f"   {'table':27s} {'rows per unit':>15s}   {'units retained':>16s}   "
          f"{'bytes/row':>9s}   {'projected':>10s}")  # fmt: skip
    for t in tiers:
        note = f"  ({t.note})" if t.note else ""
        print(f"   {t.table:27s} {t.rows_per_unit:11,.1f}/{t.unit:3s} x {t.units:9,.0f} {t.unit:4s} x "
              f"{t.bytes_per_row:7,.0f} B = {t.bytes / MB:7,.1f} MB{note}")  # fmt: skip
    print(f"   {'series + endpoint_stats':27s} {'':33s}   {'as measured':>9s} = {fixed / MB:7,.1f} MB")
    projected = sum(t.bytes for t in tiers) + fixed
    print(f"   per-row projection over the retention windows: {projected / MB:,.0f} MB")
    row = {
        "mix": m["mix"], "rate": m["rate"], "series_per_min": tiers[0].rows_per_unit,
        "per_million": per_million, "projected": projected, "total": projected,
        "tiers": {t.table: t.bytes for t in tiers}, "real": False,
    }  # fmt: skip
    if "real" in m:
        row.update(report_real(m, limits))
    return row


def report_real(m: dict, limits: RetentionConfig) -> dict:
    """Print the replicated file by table (dbstat, exact) and what just before a cleanup adds."""
    real = m["real"]
    rows, sizes = real["rows"], real["tables"]
    print(f"   replicated to the full windows ({real['replicate_s']:.1f} s), then the real retention "
          f"({real['retention_s']:.1f} s; slimmed {real['slimmed']}, "
          f"re-packed {real['repacked']:,}):")  # fmt: skip
    print(f"   {'table':27s} {'rows':>12s} {'MB':>9s} {'B/row':>7s}")
    windows = {c.table: getattr(limits, c.limit_field) for c in COPIES}
    overhang = 0.0
    for table, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        n = rows.get(table, 0)
        per_row = f"{size / n:7,.0f}" if n else f"{'':7s}"
        print(f"   {table:27s} {n:12,d} {size / MB:9,.1f} {per_row}")
        if table in windows:
            overhang += size * limits.cleanup_interval_hours / (windows[table] * 24)
    total = real["file_bytes"]
    print(f"   file {total / MB:,.1f} MB ({sum(sizes.values()) / MB:,.1f} MB in table and index pages)")
    # The copies are packed; the store re-packs an hour's minute rows only once it has been closed
    # for REPACK_DELAY_SECONDS and the hourly pass came by: up to two hours stay as flushed.
    flushed = m["tables"].get("metrics_aggregates_minute", 0)
    slack = 2 * max(0, flushed - m["minute_packed"]) / m["hours"]
    print(f"   minute pages unused: {m['minute_unused']:.0%} as flushed (the simulated hour: "
          f"{flushed / MB:.1f} MB, {m['minute_packed'] / MB:.1f} MB re-packed), "
          f"{real['minute_unused']:.0%} replicated, re-packed and slimmed")  # fmt: skip
    print(f"   + the newest two hours of minute rows as flushed, not yet re-packed: +{slack / MB:.1f} MB")
    total = total + slack
    print(f"   just before a cleanup (deletes run every {limits.cleanup_interval_hours:g} h; horizons "
          f"every hour) each window holds up to that much more: about +{overhang / MB:,.0f} MB")  # fmt: skip
    print(f"   over the retention windows: {total / MB:,.1f} MB ({total / ORIGINAL_1000:.1%} of the "
          "original's 2.4 GB)")  # fmt: skip
    tiers = {t: sizes.get(t, 0) for t in (c.table for c in COPIES)}
    tiers["metrics_aggregates_minute"] += slack
    return {"real": True, "total": total, "overhang": overhang, "tiers": tiers}


def summary(rows: list[dict]) -> None:
    """The table across mixes and rates."""
    print("\nSummary, MB over the default retention windows: the replicated file where measured "
          "(else the per-row projection); the original estimated 2.4 GB at 1000 req/s, "
          "target <= 240 MB")  # fmt: skip
    head = (f"{'mix':10s} {'req/s':>6s} {'series/min':>10s} {'MB/M req':>9s} {'minute':>7s} {'hour':>6s} "
            f"{'day':>6s} {'errors':>7s} {'clients':>8s} {'total MB':>9s} {'of 2.4 GB':>9s} "
            f"{'per-row proj.':>13s}  target")  # fmt: skip
    print(head + "\n" + "-" * len(head))
    for r in rows:
        t = r["tiers"]
        verdict = "meets" if r["total"] <= TARGET_1000 else "MISSES"
        kind = "file" if r["real"] else "proj."
        print(f"{r['mix']:10s} {r['rate']:6d} {r['series_per_min']:10,.0f} {r['per_million'] / MB:9.2f} "
              f"{t['metrics_aggregates_minute'] / MB:7,.0f} {t['metrics_aggregates_hour'] / MB:6,.0f} "
              f"{t['metrics_aggregates_day'] / MB:6,.0f} {t['error_events'] / MB:7,.0f} "
              f"{t['client_analytics'] / MB:8,.0f} {r['total'] / MB:5,.0f} {kind:3s} "
              f"{r['total'] / ORIGINAL_1000:9.1%} {r['projected'] / MB:13,.0f}  {verdict}")  # fmt: skip


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
    parser.add_argument(
        "--no-replicate", dest="replicate", action="store_false",
        help="skip replicating to the full windows (print the per-row projection only)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-histograms", action="store_true",
        help="histogram horizons at the tiers' windows (nothing slimmed): the figure without them",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", help="folder to keep the databases in (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mockforge-storage-"))
    folder.mkdir(parents=True, exist_ok=True)
    limits = limits_of(args)
    print(f"retention windows (days): minute {limits.minute_aggregates_days:g}, "
          f"hour {limits.hour_aggregates_days:g}, day {limits.day_aggregates_days:g}, "
          f"error_events {limits.error_events_days:g}, clients {limits.client_analytics_days:g}, "
          f"patterns {limits.traffic_patterns_days:g}, snapshots {limits.snapshots_days:g}; "
          f"histograms: minute {limits.minute_histograms_days:g}, hour {limits.hour_histograms_days:g}; "
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

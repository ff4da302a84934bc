"""Derived tables: endpoint_stats, traffic_patterns and analytics_snapshots, rebuilt from roll-ups.

Every function is idempotent (it replaces what it computes, it never adds to it), so the roll-up
task can run them again after a crash or for late data without double counting.

- ``traffic_patterns``: one row per rolled-up hour and (protocol, workspace_id, environment),
  from the hour table; ``day_of_week`` is 0 = Monday (ISO); ``unique_clients`` is the number of
  distinct client ids in ``client_analytics`` for that hour with the same protocol, workspace
  and environment.
- ``endpoint_stats``: cumulative per (endpoint, protocol, method, workspace_id, environment) over
  everything retained, recomputed each run from the three tiers without overlap: day rows before
  ``rolled_up_until_day``, hour rows up to ``rolled_up_until_hour``, minute rows after it.
  ``first_seen`` is the start of the oldest bucket with traffic (and never moves later, so it
  survives retention); ``last_seen`` the start of the newest (minute precision for recent traffic).
- ``analytics_snapshots``: one 'hourly' row per run for the last closed hour: traffic totals of
  that hour over all series, plus this process's figures at the moment of the snapshot.
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from ..histogram import merge_into, quantiles

__all__ = [
    "TOP_ENDPOINTS",
    "EndpointStatsCache",
    "ProcessSampler",
    "recompute_endpoint_stats",
    "rss_bytes",
    "thread_count",
    "update_traffic_patterns",
    "write_hourly_snapshot",
]

HOUR = 3600
TOP_ENDPOINTS = 10


async def _in_transaction(db: aiosqlite.Connection, statements: Iterable[tuple[str, Any]]) -> None:
    """Run (sql, params | list-of-params) pairs in one transaction; executemany for lists."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            if isinstance(params, list):
                await db.executemany(sql, params)
            else:
                await db.execute(sql, params)
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


async def update_traffic_patterns(db: aiosqlite.Connection, hours: Iterable[int], now: float) -> int:
    """Replace the traffic_patterns rows of each given (rolled-up) hour; return rows written."""
    written = 0
    for hour in sorted(set(hours)):
        rows = await db.execute_fetchall(
            "SELECT s.protocol, s.workspace_id, s.environment, SUM(h.request_count), SUM(h.error_count), "
            "SUM(h.latency_sum), SUM(h.latency_count) FROM metrics_aggregates_hour h "
            "JOIN series s USING (series_id) WHERE h.timestamp = ? "
            "GROUP BY s.protocol, s.workspace_id, s.environment",
            (hour,),
        )
        clients = {
            (p, w, e): n
            for p, w, e, n in await db.execute_fetchall(
                "SELECT protocol, workspace_id, environment, COUNT(DISTINCT client_ip) FROM client_analytics "
                "WHERE timestamp = ? GROUP BY protocol, workspace_id, environment",
                (hour,),
            )
        }
        moment = datetime.fromtimestamp(hour, UTC)
        date, hod, dow = moment.strftime("%Y-%m-%d"), moment.hour, moment.weekday()  # weekday(): Monday = 0
        out = [
            (hour, date, hod, dow, p, w, e, req, err, lsum, lcount, lsum / lcount if lcount else None,
             clients.get((p, w, e), 0), int(now))
            for p, w, e, req, err, lsum, lcount in rows
        ]  # fmt: skip
        await _in_transaction(
            db,
            [
                ("DELETE FROM traffic_patterns WHERE timestamp = ?", (hour,)),
                (
                    "INSERT INTO traffic_patterns (timestamp, date, hour, day_of_week, protocol, "
                    "workspace_id, environment, request_count, error_count, latency_sum, latency_count, "
                    "avg_latency_ms, unique_clients, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    out,
                ),
            ],
        )
        written += len(out)
    return written


@dataclass(slots=True)
class _EndpointAcc:
    requests: int = 0
    errors: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_min: float | None = None
    latency_max: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    first_seen: int | None = None
    last_seen: int | None = None
    statuses: dict[int, int] = field(default_factory=dict)
    hist: dict[int, int] = field(default_factory=dict)


_TIER_SQL = (
    "SELECT s.endpoint, s.protocol, s.method, s.workspace_id, s.environment, s.status_code, t.timestamp, "
    "t.request_count, t.error_count, t.latency_count, t.latency_sum, t.latency_min, t.latency_max, "
    "t.bytes_sent, t.bytes_received, t.histogram FROM {table} t JOIN series s USING (series_id) "
    "WHERE t.timestamp >= ? AND t.timestamp < ?"
)


async def _accumulate(
    db: aiosqlite.Connection, table: str, start: int, end: int, acc: dict[tuple, _EndpointAcc]
) -> None:
    if start >= end:
        return
    async with db.execute(_TIER_SQL.format(table=table), (start, end)) as cur:
        async for ep, proto, method, ws, env, status, ts, req, err, lc, ls, lmin, lmax, bs, br, blob in cur:
            a = acc.get((ep, proto, method, ws, env))
            if a is None:
                a = acc[(ep, proto, method, ws, env)] = _EndpointAcc()
            a.requests += req
            a.errors += err
            a.latency_count += lc
            a.latency_sum += ls
            if lmin is not None:
                a.latency_min = lmin if a.latency_min is None else min(a.latency_min, lmin)
            if lmax is not None:
                a.latency_max = lmax if a.latency_max is None else max(a.latency_max, lmax)
            a.bytes_sent += bs
            a.bytes_received += br
            if req:
                a.statuses[status] = a.statuses.get(status, 0) + req
                a.first_seen = ts if a.first_seen is None else min(a.first_seen, ts)
                a.last_seen = ts if a.last_seen is None else max(a.last_seen, ts)
            if blob:
                merge_into(a.hist, blob)


@dataclass(slots=True)
class EndpointStatsCache:
    """The day-tier part of endpoint_stats, kept between runs: it changes about once a day.

    Merging a year of day-row histograms costs seconds, so it is redone only when the day rows
    it was built from change (a new complete day, a late day re-rolled, retention).
    """

    key: tuple | None = None
    acc: dict[tuple, _EndpointAcc] = field(default_factory=dict)


def _copy_acc(src: Mapping[tuple, _EndpointAcc]) -> dict[tuple, _EndpointAcc]:
    out = {}
    for k, a in src.items():
        out[k] = _EndpointAcc(
            a.requests, a.errors, a.latency_count, a.latency_sum, a.latency_min, a.latency_max,
            a.bytes_sent, a.bytes_received, a.first_seen, a.last_seen, dict(a.statuses), dict(a.hist),
        )  # fmt: skip
    return out


async def recompute_endpoint_stats(
    db: aiosqlite.Connection,
    now: float,
    *,
    hour_until: int,
    day_until: int,
    cache: EndpointStatsCache | None = None,
) -> int:
    """Recompute endpoint_stats from day, hour and minute rows (no overlap); return rows upserted."""
    cache = cache if cache is not None else EndpointStatsCache()
    # What the day part was built from: any re-roll bumps created_at, retention moves MIN/COUNT.
    async with db.execute(
        "SELECT COUNT(*), MIN(timestamp), MAX(created_at), SUM(request_count) "
        "FROM metrics_aggregates_day WHERE timestamp < ?",
        (day_until,),
    ) as cur:
        version = tuple(await cur.fetchone() or ())
    if cache.key != (day_until, *version):
        cache.acc = {}
        await _accumulate(db, "metrics_aggregates_day", 0, day_until, cache.acc)
        cache.key = (day_until, *version)
    acc = _copy_acc(cache.acc)
    end = int(now) + 1
    await _accumulate(db, "metrics_aggregates_hour", day_until, hour_until, acc)
    await _accumulate(db, "metrics_aggregates_minute", hour_until, end, acc)
    stamp = int(now)
    out = []
    for (ep, proto, method, ws, env), a in acc.items():
        if a.first_seen is None:
            continue  # rows without requests (sessions only) say nothing about an endpoint
        p95 = quantiles(a.hist, (0.95,))[0] if a.hist else None
        avg = a.latency_sum / a.latency_count if a.latency_count else None
        statuses = json.dumps({str(k): v for k, v in sorted(a.statuses.items())}, separators=(",", ":"))
        out.append(
            (ep, proto, method, ws, env, a.requests, a.errors, avg, a.latency_min, a.latency_max, p95,
             statuses, a.bytes_sent, a.bytes_received, a.first_seen, a.last_seen, stamp, stamp)
        )  # fmt: skip
    await _in_transaction(
        db,
        [
            (
                "INSERT INTO endpoint_stats (endpoint, protocol, method, workspace_id, environment, "
                "total_requests, total_errors, avg_latency_ms, min_latency_ms, max_latency_ms, "
                "p95_latency_ms, status_codes, total_bytes_sent, total_bytes_received, first_seen, "
                "last_seen, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (endpoint, protocol, method, workspace_id, environment) DO UPDATE SET "
                "total_requests = excluded.total_requests, total_errors = excluded.total_errors, "
                "avg_latency_ms = excluded.avg_latency_ms, min_latency_ms = excluded.min_latency_ms, "
                "max_latency_ms = excluded.max_latency_ms, p95_latency_ms = excluded.p95_latency_ms, "
                "status_codes = excluded.status_codes, total_bytes_sent = excluded.total_bytes_sent, "
                "total_bytes_received = excluded.total_bytes_received, "
                "first_seen = MIN(first_seen, excluded.first_seen), "
                "last_seen = MAX(last_seen, excluded.last_seen), updated_at = excluded.updated_at",
                out,
            )
        ],
    )
    return len(out)


class ProcessSampler:
    """This process's memory, CPU, threads: CPU percent is measured between two samples."""

    def __init__(self) -> None:
        self._cpu = _cpu_seconds()
        self._wall = time.monotonic()

    def sample(self) -> dict[str, float | int | None]:
        """Return memory_usage_bytes (RSS), cpu_usage_percent (since the last sample), thread_count."""
        cpu, wall = _cpu_seconds(), time.monotonic()
        elapsed = wall - self._wall
        percent = (cpu - self._cpu) / elapsed * 100.0 if elapsed > 0 else None
        self._cpu, self._wall = cpu, wall
        return {
            "memory_usage_bytes": rss_bytes(),
            "cpu_usage_percent": percent,
            "thread_count": thread_count(),
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    """Resident set size of this process in bytes (/proc/self/statm; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def thread_count() -> int:
    """OS threads of this process (/proc/self/stat, so aiosqlite's threads count too)."""
    try:
        with open("/proc/self/stat", encoding="ascii", errors="replace") as f:
            # Field 20 (num_threads), counted after the ")" that closes the command name.
            return int(f.read().rsplit(")", 1)[1].split()[17])
    except (OSError, ValueError, IndexError):
        return threading.active_count()


async def write_hourly_snapshot(
    db: aiosqlite.Connection,
    hour: int,
    now: float,
    *,
    process: Mapping[str, Any],
    figures: Mapping[str, Any],
    instance: str = "",
) -> dict[str, Any]:
    """Replace the 'hourly' snapshot row of one hour (traffic from the hour table); return it."""
    rows = await db.execute_fetchall(
        "SELECT s.protocol, s.endpoint, s.method, SUM(h.request_count), SUM(h.error_count), "
        "SUM(h.latency_sum), SUM(h.latency_count), MAX(h.active_connections_max) "
        "FROM metrics_aggregates_hour h JOIN series s USING (series_id) WHERE h.timestamp = ? "
        "GROUP BY s.protocol, s.endpoint, s.method",
        (hour,),
    )
    protocols: dict[str, list[float]] = {}
    total = [0, 0, 0.0, 0]
    active = 0
    for proto, _ep, _m, req, err, lsum, lcount, act in rows:
        p = protocols.setdefault(proto, [0, 0, 0.0, 0])
        for vals in (p, total):
            vals[0] += req
            vals[1] += err
            vals[2] += lsum
            vals[3] += lcount
        active = max(active, act or 0)
    protocol_stats = {
        proto: {"request_count": v[0], "error_count": v[1], "avg_latency_ms": _avg(v[2], v[3])}
        for proto, v in sorted(protocols.items())
    }
    ranked = sorted(rows, key=lambda r: (-r[3], r[1], r[2], r[0]))[:TOP_ENDPOINTS]
    top = [
        {"endpoint": ep, "method": m, "protocol": proto, "request_count": req, "error_count": err,
         "avg_latency_ms": _avg(lsum, lcount)}
        for proto, ep, m, req, err, lsum, lcount, _ in ranked
    ]  # fmt: skip
    row = {
        "timestamp": hour,
        "snapshot_type": "hourly",
        "instance": instance,
        "total_requests": total[0],
        "total_errors": total[1],
        "avg_latency_ms": _avg(total[2], total[3]),
        "active_connections": active,
        "protocol_stats": json.dumps(protocol_stats, separators=(",", ":")),
        "top_endpoints": json.dumps(top, separators=(",", ":")),
        "memory_usage_bytes": process.get("memory_usage_bytes"),
        "cpu_usage_percent": process.get("cpu_usage_percent"),
        "thread_count": process.get("thread_count"),
        "uptime_seconds": figures.get("uptime_seconds"),
        "buffered_requests": int(figures.get("buffered_requests") or 0),
        "dropped_requests": int(figures.get("dropped_requests") or 0),
        "workspace_id": "",
        "environment": "",
        "created_at": int(now),
    }
    cols = ", ".join(row)
    updates = ", ".join(f"{c} = excluded.{c}" for c in row if c not in _SNAPSHOT_KEY)
    await _in_transaction(
        db,
        [
            (
                f"INSERT INTO analytics_snapshots ({cols}) VALUES ({', '.join('?' * len(row))}) "
                "ON CONFLICT (timestamp, snapshot_type, instance, workspace_id, environment) "
                f"DO UPDATE SET {updates}",
                tuple(row.values()),
            )
        ],
    )
    return row


_SNAPSHOT_KEY = ("timestamp", "snapshot_type", "instance", "workspace_id", "environment")


def _avg(total: float, count: float) -> float | None:
    return total / count if count else None

"""Helpers for the roll-up, derived-table and retention tests: a real SQLite file and known traffic.

Traffic is built with the recorder's own dataclasses and written through the store's real flush
path (deltas added to minute rows, hours and days marked dirty).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from mockforge_analytics_plugin.histogram import bucket_index
from mockforge_analytics_plugin.snapshot import (
    ClientDelta,
    ClientKey,
    RecorderSnapshot,
    SeriesDelta,
    SeriesKey,
)
from mockforge_analytics_plugin.store.sqlite import SQLiteStore
from mockforge_analytics_plugin.store.writes import write_snapshot


async def open_store(path: Path) -> SQLiteStore:
    """Open a fresh store file with every migration applied."""
    return await SQLiteStore.open(path)


def key(minute: int, endpoint: str = "/a", *, status: int = 200, method: str = "GET",
        protocol: str = "http", ws: str = "", env: str = "", test_run: str = "",
        instance: str = "i1", source: str = "middleware") -> SeriesKey:  # fmt: skip
    """Build a SeriesKey with defaults for the dimensions a test does not care about."""
    return SeriesKey(minute, source, instance, protocol, method, endpoint, status, ws, env, test_run)


@dataclass
class Traffic:
    """Known traffic: per (minute key) deltas and the raw latencies behind them."""

    series: dict[SeriesKey, SeriesDelta] = field(default_factory=dict)
    clients: dict[ClientKey, ClientDelta] = field(default_factory=dict)
    latencies: dict[SeriesKey, list[float]] = field(default_factory=dict)

    def add(self, k: SeriesKey, latency_ms: float, *, bytes_sent: int = 100, bytes_received: int = 10,
            active: int = 1, client: str | None = None) -> None:  # fmt: skip
        """Record one request into the delta of its minute (as the recorder would)."""
        d = self.series.setdefault(k, SeriesDelta())
        d.request_count += 1
        if k.status_code >= 400:
            d.error_count += 1
        d.latency_count += 1
        d.latency_sum += latency_ms
        d.latency_min = latency_ms if d.latency_min is None else min(d.latency_min, latency_ms)
        d.latency_max = latency_ms if d.latency_max is None else max(d.latency_max, latency_ms)
        d.ttfb_sum += latency_ms / 2
        b = bucket_index(latency_ms)
        d.histogram[b] = d.histogram.get(b, 0) + 1
        d.bytes_sent += bytes_sent
        d.bytes_received += bytes_received
        d.active_connections = max(d.active_connections, active)
        self.latencies.setdefault(k, []).append(latency_ms)
        if client is not None:
            ck = ClientKey(k.minute // 3600 * 3600, k.instance, client, "ua", k.protocol,
                           k.workspace_id, k.environment, k.test_run)  # fmt: skip
            c = self.clients.setdefault(ck, ClientDelta())
            c.request_count += 1
            c.error_count += int(k.status_code >= 400)
            c.latency_count += 1
            c.latency_sum += latency_ms
            c.bytes_sent += bytes_sent
            c.bytes_received += bytes_received
            ep = f"{k.method} {k.endpoint}"
            c.endpoints[ep] = c.endpoints.get(ep, 0) + 1


async def write(db: aiosqlite.Connection, traffic: Traffic, now: float) -> None:
    """Write the traffic through the store's real flush path (one transaction, marks dirty)."""
    await write_snapshot(db, RecorderSnapshot(series=traffic.series, clients=traffic.clients), now)


async def dump(db: aiosqlite.Connection, tables: Iterable[str]) -> dict[str, list[tuple]]:
    """Every row of each table, in a stable order (for 'a second run changes nothing')."""
    out = {}
    for table in tables:
        out[table] = sorted(await db.execute_fetchall(f"SELECT * FROM {table}"), key=repr)
    return out


def lognormal_traffic(n: int, start: int, span_s: int, *, seed: int = 7) -> Traffic:
    """n requests spread uniformly over [start, start + span_s) on a few series, lognormal latency."""
    rng = random.Random(seed)
    traffic = Traffic()
    endpoints = ["/users", "/users/{id}", "/orders", "/health"]
    for _ in range(n):
        ts = start + rng.randrange(span_s)
        minute = ts // 60 * 60
        ep = rng.choice(endpoints)
        status = 500 if rng.random() < 0.03 else (404 if rng.random() < 0.05 else 200)
        k = key(minute, ep, status=status, test_run=rng.choice(["", "run-1"]),
                ws=rng.choice(["ws1", "ws2"]))  # fmt: skip
        traffic.add(k, rng.lognormvariate(3.0, 0.8), active=rng.randint(0, 9),
                    client=f"10.0.0.{rng.randint(1, 12)}")  # fmt: skip
    return traffic

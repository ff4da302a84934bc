"""Known traffic for the query/API/export tests: raw events, written through the store, rolled up.

The events are kept so each test computes the expected figure by brute force from them.
Roll-ups here are a small local reference (sum of minutes per hour/day, histograms merged) that
sets the markers the query layer reads; the real roll-up task is tested by its own module.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.snapshot import (
    ClientDelta,
    ClientKey,
    DropCounters,
    ErrorEvent,
    RecorderSnapshot,
    SeriesDelta,
    SeriesKey,
)
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

DAY0 = 1_700_006_400  # 2023-11-15T00:00:00Z
HOUR = 3600
DAY = 86400


@dataclass(frozen=True)
class Event:
    """One request as the recorder would have seen it."""

    ts: int
    protocol: str
    method: str
    endpoint: str
    status: int
    latency: float | None  # None for a WebSocket session
    bytes_sent: int
    bytes_received: int
    workspace_id: str = "ws1"
    environment: str = "dev"
    test_run: str = ""
    instance: str = "a:1"
    source: str = "middleware"
    client: str = "10.0.0.1"
    message: str = "boom"

    @property
    def is_error(self) -> bool:
        return self.status >= 400


ENDPOINTS = [
    ("http", "GET", "/api/users"),
    ("http", "GET", "/api/users/{id}"),
    ("http", "POST", "/api/users"),
    ("http", "GET", "/api/orders/{id}"),
    ("graphql", "POST", "/graphql"),
    ("websocket", "GET", "/ws"),
    ("http", "GET", "/a?b[c]"),  # GLOB metacharacters in a template
]


def make_events(seed: int = 7, start: int = DAY0, hours: int = 52, n: int = 3000) -> list[Event]:
    """Deterministic sparse traffic over `hours` hours from `start`."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        protocol, method, endpoint = rng.choices(ENDPOINTS, weights=[40, 20, 8, 10, 8, 3, 2])[0]
        status = rng.choices([200, 201, 404, 500, 503], weights=[80, 5, 8, 5, 2])[0]
        latency = None if protocol == "websocket" else round(rng.lognormvariate(2.5, 0.8), 3)
        out.append(
            Event(
                ts=start + rng.randrange(hours * HOUR),
                protocol=protocol,
                method=method,
                endpoint=endpoint,
                status=status,
                latency=latency,
                bytes_sent=rng.randrange(100, 5000),
                bytes_received=rng.randrange(0, 500),
                workspace_id=rng.choice(["ws1", "ws2"]),
                environment=rng.choice(["dev", "prod"]),
                test_run=rng.choice(["", "", "run-1", "run-2"]),
                instance=rng.choice(["a:1", "b:2"]),
                source="middleware",
                client=rng.choice(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]),
            )
        )
    return out


def snapshot_of(events: Iterable[Event]) -> RecorderSnapshot:
    """Aggregate events into per-minute deltas, as the recorder does."""
    snap = RecorderSnapshot()
    for e in events:
        key = SeriesKey(
            e.ts // 60 * 60, e.source, e.instance, e.protocol, e.method, e.endpoint, e.status,
            e.workspace_id, e.environment, e.test_run,
        )  # fmt: skip
        d = snap.series.setdefault(key, SeriesDelta())
        d.request_count += 1
        d.error_count += e.is_error
        d.bytes_sent += e.bytes_sent
        d.bytes_received += e.bytes_received
        if e.latency is None:
            d.session_count += 1
            d.session_duration_sum += 1000.0
        else:
            d.latency_count += 1
            d.latency_sum += e.latency
            d.latency_min = e.latency if d.latency_min is None else min(d.latency_min, e.latency)
            d.latency_max = e.latency if d.latency_max is None else max(d.latency_max, e.latency)
            idx = histogram.bucket_index(e.latency)
            d.histogram[idx] = d.histogram.get(idx, 0) + 1
        ck = ClientKey(
            e.ts // HOUR * HOUR,
            e.instance,
            e.client,
            "ua",
            e.protocol,
            e.workspace_id,
            e.environment,
            e.test_run,
        )
        cd = snap.clients.setdefault(ck, ClientDelta())
        cd.request_count += 1
        cd.error_count += e.is_error
        if e.is_error:
            snap.errors.append(
                ErrorEvent(
                    timestamp=e.ts + 0.5, instance=e.instance, protocol=e.protocol, method=e.method,
                    endpoint=e.endpoint, path=e.endpoint, status_code=e.status, error_type=f"HTTP {e.status}",
                    error_category="server_error" if e.status >= 500 else "client_error",
                    error_message=e.message, request_id="", trace_id="t", span_id="s", client_id=e.client,
                    user_agent="ua", workspace_id=e.workspace_id, environment=e.environment,
                    test_run=e.test_run, fault_injected=False,
                )
            )  # fmt: skip
    return snap


async def open_store(path, events: list[Event]) -> SQLiteStore:
    """A fresh store holding `events` as minute rows (no roll-ups yet)."""
    store = await SQLiteStore.open(path)
    await store.write_snapshot(snapshot_of(events), now=DAY0)
    return store


_SUM_COLS = (
    "request_count, error_count, latency_count, latency_sum, ttfb_sum, bytes_sent, bytes_received,"
    " injected_latency_sum, fault_count, session_count, session_duration_sum"
)


async def rollup(db: aiosqlite.Connection, *, until_hour: int, until_day: int) -> None:
    """Reference roll-up: every hour < until_hour and day < until_day replaced by its minutes; markers set."""
    await db.execute("DELETE FROM metrics_aggregates_hour")
    await db.execute("DELETE FROM metrics_aggregates_day")
    for table, step, until in (
        ("metrics_aggregates_hour", HOUR, until_hour),
        ("metrics_aggregates_day", DAY, until_day),
    ):
        sums = ", ".join(f"SUM({c.strip()})" for c in _SUM_COLS.split(","))
        async with db.execute(
            f"SELECT (timestamp / {step}) * {step}, series_id, {sums}, MIN(latency_min), MAX(latency_max),"
            f" GROUP_CONCAT(hex(histogram), '') FROM metrics_aggregates_minute WHERE timestamp < ?"
            " GROUP BY 1, 2",
            (until,),
        ) as cur:
            rows = await cur.fetchall()
        extra_cols = ", date" if step == DAY else ""
        for row in rows:
            blob = histogram.encode(histogram.merge_blobs([bytes.fromhex(row[-1] or "")]))
            extra = (_date(row[0]),) if step == DAY else ()
            await db.execute(
                f"INSERT INTO {table} (timestamp, series_id, {_SUM_COLS}, latency_min, latency_max, histogram,"  # noqa: E501
                f" created_at{extra_cols}) VALUES ({', '.join('?' * (len(row) + 1 + len(extra)))})",
                (*row[:-1], blob or None, 0, *extra),
            )
    await db.execute("DELETE FROM rollup_dirty WHERE tier = 'hour' AND timestamp < ?", (until_hour,))
    await db.execute("DELETE FROM rollup_dirty WHERE tier = 'day' AND timestamp < ?", (until_day,))
    for key, value in (("rolled_up_until_hour", until_hour), ("rolled_up_until_day", until_day)):
        await db.execute(
            "INSERT OR REPLACE INTO analytics_state (key, value, updated_at) VALUES (?, ?, 0)",
            (key, str(value)),
        )
    await db.commit()


def _date(ts: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d")


def expected(
    events: Iterable[Event], start: int, end: int, pred: Callable[[Event], bool] = lambda e: True
) -> dict:
    """Brute-force figures of the events whose minute starts in [start, end) and that pass `pred`."""
    sel = [e for e in events if start <= e.ts // 60 * 60 < end and pred(e)]
    lat = [e.latency for e in sel if e.latency is not None]
    hist: dict[int, int] = {}
    for v in lat:
        i = histogram.bucket_index(v)
        hist[i] = hist.get(i, 0) + 1
    p50, p95, p99 = histogram.quantiles(hist, (0.5, 0.95, 0.99))
    return {
        "events": sel,
        "requests": len(sel),
        "errors": sum(e.is_error for e in sel),
        "latency_sum": sum(lat),
        "latency_count": len(lat),
        "avg": sum(lat) / len(lat) if lat else None,
        "min": min(lat) if lat else None,
        "max": max(lat) if lat else None,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "bytes_sent": sum(e.bytes_sent for e in sel),
        "bytes_received": sum(e.bytes_received for e in sel),
        "raw": sorted(lat),
    }


@dataclass
class FakeRecorder:
    """What the API reads from the recorder: the in-flight gauge and the drop counters."""

    in_flight_now: dict[str, int]
    drops: DropCounters

    def in_flight(self) -> dict[str, int]:
        return dict(self.in_flight_now)


@dataclass
class FakeRuntime:
    """The attributes of runtime.Runtime that the API handlers use."""

    config: AnalyticsConfig
    store: SQLiteStore
    recorder: FakeRecorder
    clock: Callable[[], float]
    instance: str = "a:1"
    started_at: float = 0.0
    version: str = "test"


_TEMPLATES: dict[tuple[int, int, int], Path] = {}
NOW = DAY0 + 3 * DAY + 1234  # "now" for the API tests: everything is in the past


async def make_api(tmp_path, events: list[Event], *, until_hour: int = 0, until_day: int = 0, config=None):
    """An httpx client on a Starlette app mounting api_routes() at /analytics/api, and its store."""
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from mockforge_analytics_plugin.api import api_routes

    key = (id(events), until_hour, until_day)
    template = _TEMPLATES.get(key)
    if template is None or not template.exists():
        # Built once per event set and roll-up state, then copied: each test gets its own file.
        template = Path(tempfile.mkdtemp(prefix="mf-query-")) / "template.db"
        built = await open_store(template, events)
        if until_hour or until_day:
            await rollup(built.writer, until_hour=until_hour, until_day=until_day)
        await built.close()
        _TEMPLATES[key] = template
    shutil.copy(template, tmp_path / "api.db")
    store = await SQLiteStore.open(tmp_path / "api.db")
    app = Starlette(routes=[Mount("/analytics/api", routes=api_routes())])
    app.state.runtime = FakeRuntime(
        config=config or AnalyticsConfig(),
        store=store,
        recorder=FakeRecorder({"http": 2, "websocket": 1}, DropCounters(buffer_dropped_requests=5)),
        clock=lambda: NOW,
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
    return client, store

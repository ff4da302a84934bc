"""The Recorder folds requests into cells and sums them into series and clients when read: the
result must equal adding every request to its series and client one at a time (the model below),
caps, overflow counts, error sampling and the ring included."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import pytest

from mockforge_analytics_plugin.capture_types import OTHER, CapturedRequest, error_category
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.histogram import bucket_index
from mockforge_analytics_plugin.recorder import MAX_CLIENT_ENDPOINTS, Recorder
from mockforge_analytics_plugin.recorder_merge import merge_client_delta, merge_series_delta, merged
from mockforge_analytics_plugin.snapshot import ClientDelta, ClientKey, SeriesDelta, SeriesKey

T0 = 1_700_000_040.0


class Model:
    """Per request: caps of the request's minute, then its series, its client hour, ring, errors."""

    def __init__(self, config: AnalyticsConfig, instance: str) -> None:
        self.config = config
        self.instance = instance
        self.caps: dict[int, dict[str, Any]] = {}
        self.series: dict[SeriesKey, SeriesDelta] = {}
        self.clients: dict[ClientKey, ClientDelta] = {}
        self.errors: list[tuple[Any, ...]] = []
        self.ring: list[tuple[str, str, str]] = []
        self.drops = {"endpoint": 0, "client": 0, "test_run": 0, "sampled_out": 0}

    def add(self, r: CapturedRequest) -> None:
        cfg = self.config
        minute = int(r.timestamp // 60) * 60
        caps = self.caps.setdefault(minute, {"e": set(), "c": set(), "t": set(), "errors": 0})
        endpoint, test_run, client, agent = r.endpoint, r.test_run, r.client_id, r.user_agent
        if endpoint not in caps["e"]:
            if len(caps["e"]) < cfg.max_endpoints:
                caps["e"].add(endpoint)
            else:
                endpoint = OTHER
                self.drops["endpoint"] += 1
        if test_run and test_run not in caps["t"]:
            if len(caps["t"]) < cfg.max_test_runs:
                caps["t"].add(test_run)
            else:
                test_run = OTHER
                self.drops["test_run"] += 1
        if (client, agent) not in caps["c"]:
            if len(caps["c"]) < cfg.max_clients:
                caps["c"].add((client, agent))
            else:
                client = agent = OTHER
                self.drops["client"] += 1
        key = SeriesKey(minute, "middleware", self.instance, r.protocol, r.method, endpoint,
                        r.status_code, r.workspace_id, r.environment, test_run)  # fmt: skip
        d = self.series.setdefault(key, SeriesDelta())
        d.request_count += 1
        d.error_count += r.status_code >= 400
        if r.protocol == "websocket":
            d.session_count += 1
            d.session_duration_sum += r.duration_ms
        else:
            d.latency_count += 1
            d.latency_sum += r.duration_ms
            d.latency_min = r.duration_ms if d.latency_min is None else min(d.latency_min, r.duration_ms)
            d.latency_max = r.duration_ms if d.latency_max is None else max(d.latency_max, r.duration_ms)
            d.ttfb_sum += r.ttfb_ms
            b = bucket_index(r.duration_ms)
            d.histogram[b] = d.histogram.get(b, 0) + 1
        d.bytes_sent += r.bytes_sent
        d.bytes_received += r.bytes_received
        d.injected_latency_sum += r.injected_latency_ms
        d.fault_count += r.fault_injected
        d.active_connections = max(d.active_connections, r.in_flight)
        ckey = ClientKey(minute // 3600 * 3600, self.instance, client, agent, r.protocol, r.workspace_id,
                         r.environment, test_run)  # fmt: skip
        c = self.clients.setdefault(ckey, ClientDelta())
        c.request_count += 1
        c.error_count += r.status_code >= 400
        if r.protocol != "websocket":
            c.latency_count += 1
            c.latency_sum += r.duration_ms
        c.bytes_sent += r.bytes_sent
        c.bytes_received += r.bytes_received
        ep = f"{r.method} {endpoint}"
        if ep not in c.endpoints and len(c.endpoints) >= MAX_CLIENT_ENDPOINTS:
            ep = OTHER
        c.endpoints[ep] = c.endpoints.get(ep, 0) + 1
        self.ring.append((r.path, client, agent))
        if r.status_code >= 400:
            if caps["errors"] < cfg.max_error_events_per_minute:
                caps["errors"] += 1
                error_type = r.error_type or f"HTTP {r.status_code}"
                self.errors.append((r.timestamp, r.path, endpoint, test_run, client, agent, error_type,
                                    error_category(r.status_code, error_type)))  # fmt: skip
            else:
                self.drops["sampled_out"] += 1


def requests(n: int, seed: int) -> list[CapturedRequest]:
    """A mix with many distinct values (caps overflow), errors, WebSockets, late requests."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        ws = rnd.random() < 0.05
        late = rnd.random() < 0.02
        out.append(CapturedRequest(
            timestamp=T0 + (i * 400.0 / n) - (90.0 if late else 0.0),
            protocol="websocket" if ws else rnd.choice(["http", "http", "graphql"]),
            method="WS" if ws else rnd.choice(["GET", "GET", "POST"]),
            endpoint=f"/e{int(rnd.paretovariate(0.8)) % 40}",
            path=f"/p/{i}",
            status_code=101 if ws else rnd.choice([200, 200, 200, 201, 404, 500, 503]),
            duration_ms=rnd.lognormvariate(1.0, 1.5),
            ttfb_ms=rnd.random(),
            bytes_sent=rnd.randrange(1000),
            bytes_received=rnd.randrange(100),
            client_id=f"10.0.0.{rnd.randrange(12)}",
            user_agent=rnd.choice(["curl/8", "k6/0.49", ""]),
            workspace_id=rnd.choice(["default", "w2"]),
            test_run=rnd.choice(["", "", "run-a", f"run-{rnd.randrange(9)}"]),
            injected_latency_ms=rnd.choice([0.0, 0.0, 5.0]),
            fault_injected=rnd.random() < 0.1,
            in_flight=rnd.randrange(1, 20),
        ))  # fmt: skip
    return out


def same_delta(a: Any, b: Any) -> bool:
    """Field by field; float sums may differ in the last bits (cells add in another order)."""
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cells_sum_to_what_per_request_adding_gives(seed: int) -> None:
    cfg = AnalyticsConfig(max_endpoints=12, max_clients=15, max_test_runs=4, max_error_events_per_minute=25,
                          recent_requests=10_000)  # fmt: skip
    rec = Recorder(cfg, instance="h:1")
    model = Model(cfg, "h:1")
    snaps = []
    for i, r in enumerate(requests(6000, seed)):
        rec.record(r)
        model.add(r)
        if i % 1700 == 1699:  # a flush now and then: cells are summed, caps carry on
            snaps.append(rec.swap())
    snaps.append(rec.swap())
    series: dict[SeriesKey, SeriesDelta] = {}
    clients: dict[ClientKey, ClientDelta] = {}
    errors = []
    for snap in snaps:
        series = merged(series, snap.series, merge_series_delta)
        clients = merged(clients, snap.clients, merge_client_delta)
        errors.extend(snap.errors)
    assert series.keys() == model.series.keys()
    assert all(same_delta(series[k], model.series[k]) for k in series)
    assert clients.keys() == model.clients.keys()
    assert all(same_delta(clients[k], model.clients[k]) for k in clients)
    got = [(e.timestamp, e.path, e.endpoint, e.test_run, e.client_id, e.user_agent, e.error_type,
            e.error_category) for e in errors]  # fmt: skip
    assert got == model.errors
    drops = rec.drops
    assert (drops.endpoint_overflow, drops.client_overflow, drops.test_run_overflow,
            drops.error_events_sampled_out) == tuple(model.drops.values())  # fmt: skip
    assert min(model.drops.values()) > 0  # every cap was really hit
    ring = [(x.path, x.client_id, x.user_agent) for x in reversed(rec.recent())]
    assert ring == model.ring
    assert rec.totals["requests"] == 6000

"""Recorder: series, caps and overflow counts, error sampling, ring, swap/restore bounds."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from mockforge_analytics_plugin.capture_build import RawRequest, RequestBuilder
from mockforge_analytics_plugin.capture_types import OTHER, CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.histogram import bucket_index, quantiles
from mockforge_analytics_plugin.recorder import Recorder, error_category, merge_series_delta
from mockforge_analytics_plugin.snapshot import SeriesDelta, SeriesKey

T0 = 1_700_000_040.0  # a minute start (1_700_000_040 % 60 == 0)


def req(**kw: object) -> CapturedRequest:
    base: dict[str, object] = dict(
        timestamp=T0 + 1.5,
        protocol="http",
        method="GET",
        endpoint="/api/users/{id}",
        path="/api/users/1",
        status_code=200,
        duration_ms=10.0,
        ttfb_ms=2.0,
        bytes_sent=100,
        bytes_received=7,
        client_id="10.0.0.1",
        user_agent="curl/8.5.0",
    )
    base.update(kw)
    return CapturedRequest(**base)  # type: ignore[arg-type]


def test_minute_aligned_series_with_all_counters() -> None:
    r = Recorder(AnalyticsConfig(), instance="h:1")
    r.record(req(duration_ms=10.0, in_flight=3, injected_latency_ms=5.0, fault_injected=True))
    r.record(req(duration_ms=30.0, status_code=200, timestamp=T0 + 59.9))
    r.record(req(status_code=503, timestamp=T0 + 60.0))  # next minute
    snap = r.swap()
    key = SeriesKey(
        minute=int(T0), source="middleware", instance="h:1", protocol="http", method="GET",
        endpoint="/api/users/{id}", status_code=200, workspace_id="default", environment="dev",
        test_run="",
    )  # fmt: skip
    d = snap.series[key]
    assert d.request_count == 2 and d.error_count == 0
    assert d.latency_count == 2 and d.latency_sum == 40.0
    assert d.latency_min == 10.0 and d.latency_max == 30.0
    assert d.ttfb_sum == 4.0 and d.bytes_sent == 200 and d.bytes_received == 14
    assert d.injected_latency_sum == 5.0 and d.fault_count == 1 and d.active_connections == 3
    assert d.histogram == {bucket_index(10.0): 1, bucket_index(30.0): 1}
    (k2,) = [k for k in snap.series if k.minute == int(T0) + 60]
    assert k2.status_code == 503 and snap.series[k2].error_count == 1
    assert len(snap.errors) == 1 and snap.errors[0].error_type == "HTTP 503"
    assert snap.errors[0].error_category == "server_error"
    assert snap.request_count() == 3
    assert r.buffered_requests() == 0 and r.swap().is_empty()
    assert r.totals == {"requests": 3, "errors": 1, "websocket_sessions": 0}


def test_clients_are_hourly_with_endpoint_counts() -> None:
    r = Recorder(AnalyticsConfig(), instance="h:1")
    for i in range(3):
        r.record(req(timestamp=T0 + i * 600, status_code=404 if i == 2 else 200))
    r.record(req(client_id="10.0.0.2", method="POST", endpoint="/x", bytes_sent=5))
    snap = r.swap()
    by_client = {(k.client_id, k.hour): d for k, d in snap.clients.items()}
    hour = int(T0) // 3600 * 3600
    a = by_client[("10.0.0.1", hour)]
    assert a.request_count == 3 and a.error_count == 1 and a.latency_count == 3
    assert a.endpoints == {"GET /api/users/{id}": 3}
    b = by_client[("10.0.0.2", hour)]
    assert b.request_count == 1 and b.bytes_sent == 5 and b.endpoints == {"POST /x": 1}


def test_websocket_session_never_enters_latency() -> None:
    r = Recorder(AnalyticsConfig(), instance="h:1")
    r.record(req(protocol="websocket", status_code=101, duration_ms=5000.0, ttfb_ms=0.0))
    r.record(req(protocol="websocket", status_code=101, duration_ms=1000.0, ttfb_ms=0.0))
    snap = r.swap()
    (d,) = snap.series.values()
    assert d.request_count == 2 and d.session_count == 2 and d.session_duration_sum == 6000.0
    assert d.latency_count == 0 and d.latency_sum == 0.0 and d.histogram == {}
    assert d.latency_min is None and d.latency_max is None
    (c,) = snap.clients.values()
    assert c.request_count == 2 and c.latency_count == 0
    assert r.totals["websocket_sessions"] == 2


def test_100k_distinct_paths_capped_with_exact_overflow() -> None:
    r = Recorder(AnalyticsConfig(max_endpoints=50), instance="h:1")
    for i in range(100_000):
        r.record(req(endpoint=f"/raw/{i}", timestamp=T0 + (i % 60)))
    snap = r.swap()
    endpoints = {k.endpoint for k in snap.series}
    assert len(endpoints) == 51 and OTHER in endpoints
    other = sum(d.request_count for k, d in snap.series.items() if k.endpoint == OTHER)
    assert other == 100_000 - 50
    assert r.drops.endpoint_overflow == 100_000 - 50
    assert snap.request_count() == 100_000


def test_caps_reset_each_minute() -> None:
    r = Recorder(AnalyticsConfig(max_endpoints=2), instance="h:1")
    for minute in range(3):
        for e in ("/a", "/b", "/c"):
            r.record(req(endpoint=e, timestamp=T0 + minute * 60))
    snap = r.swap()
    assert r.drops.endpoint_overflow == 3
    assert sorted(k.endpoint for k in snap.series if k.minute == int(T0) + 120) == sorted([OTHER, "/a", "/b"])


def test_test_run_and_client_caps() -> None:
    r = Recorder(AnalyticsConfig(max_test_runs=3, max_clients=4), instance="h:1")
    for i in range(10):
        r.record(req(test_run=f"run-{i}", client_id=f"c{i}"))
    r.record(req(test_run="", client_id="c0"))  # an untagged request never counts against the cap
    snap = r.swap()
    runs = {k.test_run for k in snap.series}
    assert runs == {"run-0", "run-1", "run-2", OTHER, ""}
    assert r.drops.test_run_overflow == 7
    clients = {k.client_id for k in snap.clients}
    assert clients == {"c0", "c1", "c2", "c3", OTHER}
    assert r.drops.client_overflow == 6
    assert sum(d.request_count for k, d in snap.clients.items() if k.client_id == OTHER) == 6


def test_client_endpoint_map_is_capped() -> None:
    r = Recorder(AnalyticsConfig(), instance="h:1")
    for i in range(150):
        r.record(req(endpoint=f"/e{i}"))
    (c,) = r.swap().clients.values()
    assert len(c.endpoints) == 101 and c.endpoints[OTHER] == 50


def test_error_events_sampled_per_minute_and_counted() -> None:
    r = Recorder(AnalyticsConfig(max_error_events_per_minute=10), instance="h:1")
    for i in range(25):
        r.record(req(status_code=500, error_type="ZeroDivisionError", error_message="boom",
                     trace_id="a" * 32, span_id="b" * 16, timestamp=T0 + i % 60))  # fmt: skip
    r.record(req(status_code=499, error_type="client_disconnected", timestamp=T0 + 61))
    snap = r.swap()
    assert len(snap.errors) == 11
    assert r.drops.error_events_sampled_out == 15
    e = snap.errors[0]
    assert (e.error_type, e.error_category, e.trace_id, e.span_id) == (
        "ZeroDivisionError", "server_error", "a" * 32, "b" * 16,
    )  # fmt: skip
    assert snap.errors[-1].error_category == "network_error"
    # Counts are exact even though events were sampled.
    assert sum(d.error_count for d in snap.series.values()) == 26


def test_error_category() -> None:
    assert error_category(404) == "client_error"
    assert error_category(500) == "server_error"
    assert error_category(499, "client_disconnected") == "network_error"
    assert error_category(504) == "timeout_error"
    assert error_category(302) == "other"


def test_recent_ring_is_bounded_and_newest_first() -> None:
    r = Recorder(AnalyticsConfig(recent_requests=5), instance="h:1")
    for i in range(12):
        r.record(req(path=f"/p/{i}", timestamp=T0 + i, trace_id=str(i)))
    recent = r.recent()
    assert [x.path for x in recent] == ["/p/11", "/p/10", "/p/9", "/p/8", "/p/7"]
    assert [x.path for x in r.recent(2)] == ["/p/11", "/p/10"]
    assert recent[0].trace_id == "11" and recent[0].client_id == "10.0.0.1"
    assert r.recent(0) == []


def test_restore_merges_with_newer_data() -> None:
    r = Recorder(AnalyticsConfig(), instance="h:1")
    r.record(req(duration_ms=10.0))
    r.record(req(status_code=500))
    snap = r.swap()
    r.record(req(duration_ms=50.0))  # same series as the first request
    r.restore(snap)
    assert r.buffered_requests() == 3
    r.record(req(duration_ms=1.0))  # still found through the rebuilt index
    again = r.swap()
    assert again.request_count() == 4 and len(again.series) == 2 and len(again.errors) == 1
    ok = next(d for k, d in again.series.items() if k.status_code == 200)
    assert ok.request_count == 3 and ok.latency_min == 1.0 and ok.latency_max == 50.0
    assert sum(ok.histogram.values()) == 3
    (c,) = again.clients.values()
    assert c.request_count == 4


def test_restore_past_the_bound_drops_oldest_minutes_exactly() -> None:
    r = Recorder(AnalyticsConfig(max_buffered_events=1000), instance="h:1")
    sent = 0
    for minute in range(6):  # the store is down for six minutes: swap, fail, restore
        for i in range(300):
            r.record(req(timestamp=T0 + minute * 60 + i * 0.1, status_code=200 + (i % 3)))
            sent += 1
        r.restore(r.swap())
        assert r.buffered_requests() <= 1000
    assert r.buffered_requests() + r.drops.buffer_dropped_requests == sent
    snap = r.swap()
    assert snap.request_count() + r.drops.buffer_dropped_requests == sent
    kept_minutes = sorted({k.minute for k in snap.series})
    # The newest minutes survive: the last one whole, the oldest gone.
    assert kept_minutes[-1] == int(T0) + 300 and kept_minutes[0] > int(T0)
    assert sum(d.request_count for k, d in snap.series.items() if k.minute == int(T0) + 300) == 300


def test_request_path_bound_without_any_flush() -> None:
    r = Recorder(AnalyticsConfig(max_buffered_events=1000), instance="h:1")
    for i in range(5000):
        r.record(req(timestamp=T0 + i, endpoint=f"/e{i % 7}"))
        assert r.buffered_requests() <= 1000
    assert r.buffered_requests() + r.drops.buffer_dropped_requests == 5000
    kept = r.buffered_requests()
    assert r.swap().request_count() == kept


def test_restore_bounds_error_events_oldest_first() -> None:
    cfg = AnalyticsConfig(max_buffered_events=100, max_error_events_per_minute=1000)
    r = Recorder(cfg, instance="h:1")
    for i in range(80):
        r.record(req(status_code=500, error_message=f"old{i}"))
    snap = r.swap()
    for i in range(80):
        r.record(req(status_code=500, error_message=f"new{i}", timestamp=T0 + 30))
    r.restore(snap)
    kept = r.swap().errors
    assert len(kept) == 100 and r.drops.buffer_dropped_error_events == 60
    assert kept[0].error_message == "old60" and kept[-1].error_message == "new79"


def test_merge_series_delta() -> None:
    a = SeriesDelta(request_count=1, latency_count=1, latency_sum=5.0, latency_min=5.0,
                    latency_max=5.0, histogram={3: 1}, active_connections=2)  # fmt: skip
    b = SeriesDelta(request_count=2, latency_count=2, latency_sum=3.0, latency_min=1.0,
                    latency_max=2.0, histogram={3: 1, 4: 1}, active_connections=5)  # fmt: skip
    merge_series_delta(a, b)
    assert (a.request_count, a.latency_sum, a.latency_min, a.latency_max) == (3, 8.0, 1.0, 5.0)
    assert a.histogram == {3: 2, 4: 1} and a.active_connections == 5
    empty = SeriesDelta()
    merge_series_delta(empty, SeriesDelta())
    assert empty.latency_min is None


def test_percentiles_from_snapshot_histograms_within_one_percent() -> None:
    rnd = random.Random(42)
    # Skewed: mostly fast, a long tail (log-normal around 20 ms plus 2% slow outliers).
    values = [rnd.lognormvariate(3.0, 0.8) if rnd.random() > 0.02 else rnd.uniform(500, 5000)
              for _ in range(100_000)]  # fmt: skip
    r = Recorder(AnalyticsConfig(), instance="h:1")
    for i, v in enumerate(values):
        r.record(req(duration_ms=v, timestamp=T0 + i * 0.01, endpoint=f"/e{i % 4}"))
    merged: dict[int, int] = {}
    for d in r.swap().series.values():
        for b, c in d.histogram.items():
            merged[b] = merged.get(b, 0) + c
    exact = sorted(values)
    for q, got in zip((0.5, 0.95, 0.99), quantiles(merged, (0.5, 0.95, 0.99)), strict=True):
        want = exact[int(q * (len(exact) - 1))]
        assert got is not None and abs(got - want) / want <= 0.01, (q, got, want)


def _raw(builder: RequestBuilder, path: str, headers: Any) -> RawRequest:
    raw = RawRequest(builder)
    raw.ts, raw.protocol, raw.path, raw.outer_root, raw.status = 1_700_000_000.0, "http", path, "", 200
    raw.duration_ms, raw.ttfb_ms, raw.sent, raw.received, raw.read_any = 1.0, 0.5, 10, 0, False
    raw.error_type, raw.error_message, raw.in_flight = "", "", 1
    raw.headers, raw.client, raw.mf, raw.route = headers, ("10.0.0.1", 5000), None, None
    raw.root_path, raw.method = "", "GET"
    return raw


def test_a_raw_request_that_fails_to_build_is_counted_not_fatal() -> None:
    config = AnalyticsConfig()
    r = Recorder(config, instance="h:1")
    builder = RequestBuilder(config)
    r.record_raw(_raw(builder, "/a", [(b"user-agent", b"t/1")]))
    r.record_raw(_raw(builder, "/b", 42))  # headers that are not a list of pairs: build raises
    r.record(req(path="/c"))
    assert [x.path for x in r.recent()] == ["/c", "/a"]
    assert r.recent()[1].user_agent == "t/1"
    assert r.build_failures == 1 and r.totals["requests"] == 2


def test_a_badly_typed_request_never_costs_the_rest_of_its_batch() -> None:
    """Compiled, a field of the wrong type raises when the batch is folded: that request is counted
    as a build failure, its neighbours are kept (pure Python folds it as it is)."""
    r = Recorder(AnalyticsConfig(), instance="h:1")
    r.record(req(path="/a"))
    r.record(dataclasses.replace(req(path="/bad"), endpoint=None))  # type: ignore[arg-type]
    r.record(req(path="/c"))
    assert {"/a", "/c"} <= {x.path for x in r.recent()}
    assert r.totals["requests"] + r.build_failures == 3


def test_recorders_inlined_bucket_matches_the_histogram_module() -> None:
    """The recorder inlines bucket_index for speed; both must put every latency in one bucket."""
    rng = random.Random(5)
    latencies = [0.0, 0.0005, 0.001, 0.0011, 1e9] + [rng.lognormvariate(0, 3) for _ in range(20_000)]
    r = Recorder(AnalyticsConfig(), instance="h:1")
    expected: dict[int, int] = {}
    for ms in latencies:
        r.record(req(duration_ms=ms))
        b = bucket_index(ms)
        expected[b] = expected.get(b, 0) + 1
    (delta,) = r.swap().series.values()
    assert delta.histogram == expected


def test_the_ring_shows_a_queued_request_as_its_fields_would() -> None:
    """A queued RawRequest is kept in the ring as itself (no tuple per request): recent() must
    show exactly what the CapturedRequest of the same request shows — truncated path and method,
    Content-Length when the body went unread, the host's fields, the trace id, the client as
    capped — and the references it was built from are dropped."""
    config = AnalyticsConfig(max_clients=2)
    builder = RequestBuilder(config)
    tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    def make(i: int) -> RawRequest:
        headers = [(b"user-agent", f"t/{i}".encode()), (b"content-length", b"7"), (b"traceparent", tp),
                   (b"x-test-run", b"run-1")]  # fmt: skip
        raw = _raw(builder, "/u/" + "x" * (300 if i == 0 else i), headers)
        raw.method = "PROPFIND-" + "M" * 20 if i == 1 else "GET"
        raw.client = (f"10.0.0.{i}", 5000)
        raw.status = 503 if i == 2 else 200
        raw.mf = {"route_template": f"/u/{{id}}/{i}", "workspace": "ws", "environment": "stage",
                  "route_id": "r1", "injected_latency_ms": 5, "fault_injected": True}  # fmt: skip
        return raw

    queued = Recorder(config, instance="h:1")
    given = Recorder(config, instance="h:1")
    kept = []
    for i in range(5):
        raw = make(i)
        queued.record_raw(raw)
        kept.append(raw)
        given.record(CapturedRequest(*make(i).build()))
    got = queued.recent()
    assert got == given.recent()
    assert [x.client_id for x in reversed(got)] == ["10.0.0.0", "10.0.0.1", OTHER, OTHER, OTHER]
    assert len(got[-1].path) == 256 and got[-2].method == "PROPFIND-MMMMMMM" and got[0].bytes_received == 7
    assert got[0].trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and got[0].injected_latency_ms == 5.0
    assert all(r.headers is None and r.mf is None and r.client is None for r in kept)


def test_the_hosts_scope_values_of_other_types_are_read_as_text() -> None:
    """Another host may put numbers, None or empty strings in scope["mockforge"]: empty or missing
    values take the defaults, others become text, and a template that is not a str is ignored."""
    builder = RequestBuilder(AnalyticsConfig())
    raw = _raw(builder, "/orders/123", [])
    raw.mf = {"route_template": 5, "workspace": 7, "environment": "", "route_id": None,
              "injected_latency_ms": 3, "fault_injected": 1}  # fmt: skip
    f = CapturedRequest(*raw.build())
    assert (f.endpoint, f.workspace_id, f.environment, f.mock_route_id) == ("/orders/{id}", "7", "dev", "")
    assert f.injected_latency_ms == 3.0 and type(f.injected_latency_ms) is float and f.fault_injected is True

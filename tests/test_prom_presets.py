"""Presets against the metrics text the REAL exporters produce (tiny apps, requests sent in-process).

Each test scrapes the app's exposition before and after known traffic, turns the two scrapes into
Prometheus API answers (as a server would return them at two minute boundaries), and checks that
the preset's mapping extracts the right per-(path, method, status) counts and latency buckets.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

# The OpenTelemetry HTTP instrumentation emits the stable metric names only when opted in, and it
# reads this once per process: set it before anything imports the instrumentation.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")

from prometheus_client.parser import text_string_to_metric_families

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.prometheus.ingest import Window, build_deltas, parse_series
from mockforge_analytics_plugin.prometheus.presets import (
    PRESETS,
    Preset,
    PresetError,
    parse_status,
    preset_from_mapping,
    resolve_preset,
)

T0 = 1_800_000_000 - 1_800_000_000 % 3600
INSTANCE = "app:8000"


def _matrix(scrapes: list[tuple[int, str]], metric: str, keep: Callable[[dict[str, str]], bool]) -> dict:
    """The /api/v1/query_range answer Prometheus would give for ``metric`` over these scrapes."""
    series: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
    for ts, text in scrapes:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name != metric or not keep(sample.labels):
                    continue
                labels = {"__name__": metric, "instance": INSTANCE, "job": "app", **sample.labels}
                series.setdefault(tuple(sorted(labels.items())), []).append([ts, repr(sample.value)])
    result = [{"metric": dict(key), "values": values} for key, values in series.items()]
    return {"resultType": "matrix", "result": result}


def _window(preset: Preset, scrapes: list[tuple[int, str]], keep=lambda labels: True) -> Window:
    def series(metric: str):
        return parse_series(_matrix(scrapes, metric, keep))

    window = Window(boundaries=[ts for ts, _ in scrapes], counter=series(preset.counter_metric))
    if preset.histogram:
        window.buckets = series(preset.histogram + "_bucket")
        window.sums = series(preset.histogram + "_sum")
        window.counts = series(preset.histogram + "_count")
    return window


def _by_key(preset: Preset, window: Window) -> tuple[dict, dict]:
    """({(path, method, status): requests}, {(path, method, status): histogram}) for minute T0."""
    counts: dict[tuple[str, str, int], int] = {}
    hists: dict[tuple[str, str, int], dict[int, int]] = {}
    for key, d in build_deltas(preset, window).items():
        assert key.minute == T0 and key.source == "prometheus" and key.instance == INSTANCE
        k = (key.endpoint, key.method, key.status_code)
        if d.request_count:
            counts[k] = counts.get(k, 0) + d.request_count
        if d.histogram:
            assert sum(d.histogram.values()) == d.latency_count  # +Inf included
            hists[k] = d.histogram
    return counts, hists


def _valid_indices(les: list[float]) -> set[int]:
    return {histogram.bucket_index(le * 1000.0) for le in les}


async def _send(app: Any, requests: list[tuple[str, str]]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        for method, path in requests:
            await client.request(method, path)


TRAFFIC = [("GET", "/ok")] * 3 + [("GET", "/items/1"), ("GET", "/items/2"), ("GET", "/items/0")]
TRAFFIC += [("POST", "/items/7"), ("GET", "/slow"), ("GET", "/slow")]


def _starlette_routes(slow_seconds: float):
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ok(request):
        return PlainTextResponse("ok")

    async def item(request):
        status = 404 if request.path_params["id"] == "0" else 200
        if request.method == "POST":
            status = 201
        return PlainTextResponse("item", status_code=status)

    async def slow(request):
        await asyncio.sleep(slow_seconds)
        return PlainTextResponse("slow")

    return [Route("/ok", ok), Route("/items/{id}", item, methods=["GET", "POST"]), Route("/slow", slow)]


async def test_starlette_exporter_preset():
    pytest.importorskip("starlette_exporter")
    from prometheus_client import REGISTRY, generate_latest
    from starlette.applications import Starlette
    from starlette_exporter import PrometheusMiddleware

    name = f"app_{uuid.uuid4().hex[:8]}"  # its metrics live in the global registry: keep ours apart
    app = Starlette(routes=_starlette_routes(0.03))
    app.add_middleware(PrometheusMiddleware, app_name=name, group_paths=True)
    scrapes = [(T0, generate_latest(REGISTRY).decode())]
    await _send(app, TRAFFIC)
    scrapes.append((T0 + 60, generate_latest(REGISTRY).decode()))

    preset = PRESETS["starlette_exporter"]
    counts, hists = _by_key(
        preset, _window(preset, scrapes, keep=lambda labels: labels.get("app_name") == name)
    )
    assert counts == EXACT_COUNTS
    # Its histogram carries the status: latencies sit on the same rows as the counts.
    assert {k: sum(h.values()) for k, h in hists.items()} == counts
    assert all(set(h) <= _valid_indices(DEFAULT_LES) for h in hists.values())
    # /slow sleeps 30 ms: its p50 reads as an upper bound of at least 50 ms (the 0.05 bucket).
    assert histogram.quantile(hists[("/slow", "GET", 200)], 0.5) >= 50.0 * 0.99


# What TRAFFIC sends, per (path template, method, status), for libraries that keep exact statuses.
EXACT_COUNTS = {
    ("/ok", "GET", 200): 3,
    ("/items/{id}", "GET", 200): 2,
    ("/items/{id}", "GET", 404): 1,
    ("/items/{id}", "POST", 201): 1,
    ("/slow", "GET", 200): 2,
}
# The default bucket bounds (seconds) of starlette_exporter and OpenTelemetry's HTTP histogram.
DEFAULT_LES = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


def _fastapi_app(slow_seconds: float) -> Any:
    """The same tiny FastAPI app for each instrumenting library: ok, items (404 for id 0), slow."""
    from fastapi import FastAPI, HTTPException

    app = FastAPI()

    @app.get("/ok")
    async def ok() -> str:
        return "ok"

    @app.get("/items/{id}")
    async def get_item(id: str) -> str:
        if id == "0":
            raise HTTPException(404)
        return id

    @app.post("/items/{id}", status_code=201)
    async def post_item(id: str) -> str:
        return id

    @app.get("/slow")
    async def slow() -> str:
        await asyncio.sleep(slow_seconds)
        return "slow"

    return app


async def test_fastapi_instrumentator_preset_status_classes_and_statusless_histogram():
    pytest.importorskip("prometheus_fastapi_instrumentator")
    pytest.importorskip("fastapi")
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_fastapi_instrumentator import Instrumentator

    app = _fastapi_app(slow_seconds=0.11)
    registry = CollectorRegistry()
    Instrumentator(registry=registry).instrument(app)
    scrapes = [(T0, generate_latest(registry).decode())]
    await _send(app, TRAFFIC)
    scrapes.append((T0 + 60, generate_latest(registry).decode()))

    preset = PRESETS["fastapi_instrumentator"]
    counts, hists = _by_key(preset, _window(preset, scrapes))
    # Status codes come grouped ("2xx"): stored as the class's first code, errors still >= 400.
    assert counts == {
        ("/ok", "GET", 200): 3,
        ("/items/{id}", "GET", 200): 2,
        ("/items/{id}", "GET", 400): 1,
        ("/items/{id}", "POST", 200): 1,
        ("/slow", "GET", 200): 2,
    }
    # Its latency histogram has handler+method only: it lands on status 0 of each endpoint.
    assert {k: sum(h.values()) for k, h in hists.items()} == {
        ("/ok", "GET", 0): 3,
        ("/items/{id}", "GET", 0): 3,
        ("/items/{id}", "POST", 0): 1,
        ("/slow", "GET", 0): 2,
    }
    assert all(set(h) <= _valid_indices([0.1, 0.5, 1.0]) for h in hists.values())
    # /slow takes 110 ms: above the 0.1 bound, so its p95 reads as the 0.5 s upper bound.
    assert histogram.quantile(hists[("/slow", "GET", 0)], 0.95) == pytest.approx(500.0, rel=0.01)


async def test_opentelemetry_preset_counts_from_the_histogram():
    pytest.importorskip("opentelemetry.exporter.prometheus")
    pytest.importorskip("opentelemetry.instrumentation.fastapi")
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import REGISTRY, generate_latest

    app = _fastapi_app(slow_seconds=0.03)
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    FastAPIInstrumentor.instrument_app(app, meter_provider=provider)
    try:
        # otel_scope_name tells our app's series from any other instrumented app in this process.
        scope = "opentelemetry.instrumentation.fastapi"
        keep = lambda labels: labels.get("otel_scope_name") == scope  # noqa: E731
        scrapes = [(T0, generate_latest(REGISTRY).decode())]
        await _send(app, TRAFFIC)
        scrapes.append((T0 + 60, generate_latest(REGISTRY).decode()))
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
        provider.shutdown()

    preset = PRESETS["opentelemetry"]
    counts, hists = _by_key(preset, _window(preset, scrapes, keep))
    assert counts == EXACT_COUNTS
    assert {k: sum(h.values()) for k, h in hists.items()} == counts
    assert all(set(h) <= _valid_indices(DEFAULT_LES) for h in hists.values())
    assert histogram.quantile(hists[("/slow", "GET", 200)], 0.5) >= 50.0 * 0.99


async def test_mockforge_preset_against_prometheus_client_text():
    # The host's metric names and labels, as prometheus_client renders them.
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    registry = CollectorRegistry()
    requests = Counter(
        "mockforge_requests_by_path", "", ["protocol", "method", "path", "status"], registry=registry
    )
    durations = Histogram(
        "mockforge_request_duration_by_path_seconds",
        "",
        ["protocol", "method", "path"],
        buckets=(0.001, 0.01, 0.1, 1.0, 10.0),
        registry=registry,
    )
    scrapes = [(T0, generate_latest(registry).decode())]
    for status, seconds in (("200", 0.004), ("200", 0.004), ("500", 0.05), ("200", 20.0)):
        requests.labels("http", "GET", "/users/{id}", status).inc()
        durations.labels("http", "GET", "/users/{id}").observe(seconds)
    scrapes.append((T0 + 60, generate_latest(registry).decode()))

    preset = PRESETS["mockforge"]
    counts, hists = _by_key(preset, _window(preset, scrapes))
    assert counts == {("/users/{id}", "GET", 200): 3, ("/users/{id}", "GET", 500): 1}
    assert hists == {
        ("/users/{id}", "GET", 0): {
            histogram.bucket_index(10.0): 2,
            histogram.bucket_index(100.0): 1,
            histogram.bucket_index(10_000.0): 1,  # 20 s is above every bound: +Inf -> 10 s
        }
    }


def test_custom_mapping_and_its_errors_name_the_key():
    preset = resolve_preset(
        "custom", {"counter": "my_requests_total", "histogram": "my_latency_seconds", "path_label": "route"}
    )
    assert (preset.name, preset.counter_metric, preset.path_label, preset.status_label) == (
        "custom",
        "my_requests_total",
        "route",
        None,
    )
    labels = {"instance": "i", "route": "/r", "method": "get"}
    assert preset.dims(labels).status_code == 0 and preset.dims(labels).method == "GET"
    # A mapping next to a named preset overrides key by key.
    tweaked = resolve_preset("starlette_exporter", {"path_label": "route"})
    assert (tweaked.counter, tweaked.path_label, tweaked.status_label) == (
        "starlette_requests_total",
        "route",
        "status_code",
    )
    cases = [
        ({"counter": "x_total", "path_label": "p", "colour": "red"}, "prometheus_mapping.colour"),
        ({"counter": "x total", "path_label": "p"}, "prometheus_mapping.counter"),
        ({"counter": "x_total", "path_label": "p", "status_label": "a-b"}, "prometheus_mapping.status_label"),
        ({"counter": "x_total"}, "prometheus_mapping.path_label"),
        ({"path_label": "p"}, "prometheus_mapping.counter"),
        ({"histogram": "h_bucket", "path_label": "p"}, "prometheus_mapping.histogram"),
        ({"counter": 3, "path_label": "p"}, "prometheus_mapping.counter"),
    ]
    for mapping, key in cases:
        with pytest.raises(PresetError, match=key.replace(".", r"\.")):
            preset_from_mapping(mapping)
    with pytest.raises(PresetError, match="prometheus_preset"):
        resolve_preset("nope")
    with pytest.raises(PresetError, match="prometheus_mapping"):
        resolve_preset("custom", None)


def test_parse_status():
    assert [parse_status(v) for v in ("200", "4xx", "5XX", "", None, "abc")] == [200, 400, 500, 0, 0, 0]

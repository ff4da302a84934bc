"""`GET <mount>/api/sources`: the middleware and the Prometheus source, in the API envelope."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.prometheus.client import PrometheusClient
from mockforge_analytics_plugin.prometheus.source import PrometheusSource
from mockforge_analytics_plugin.snapshot import DropCounters
from mockforge_analytics_plugin.sources_api import sources_routes
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

NOW = 1_800_000_000.0


class _Flusher:
    def status(self) -> dict:
        return {
            "buffered_requests": 4,
            "dropped": {"buffer_dropped_requests": 2},
            "last_flush_at": NOW - 1.5,
            "last_flush_rows": 9,
            "last_error": None,
            "last_error_at": None,
            "failures": 0,
        }


def _app(runtime: SimpleNamespace) -> Starlette:
    app = Starlette(routes=[Mount("/analytics/api", routes=sources_routes())])
    app.state.runtime = runtime
    return app


async def _get(app: Starlette) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/analytics/api/sources")


async def test_sources_lists_middleware_and_prometheus_with_errors_and_lag():
    store = await SQLiteStore.open(":memory:")
    config = AnalyticsConfig(prometheus_url="http://127.0.0.1:9", prometheus_selector='job="mock"')
    # Nothing listens on port 9 of loopback: the ingest fails and the failure shows in /sources.
    client = PrometheusClient("http://127.0.0.1:9", retries=0, timeout=1)
    source = PrometheusSource(config, store, clock=lambda: NOW, client=client)
    try:
        result = await source.ingest_once(NOW)
        assert result.error is not None
        runtime = SimpleNamespace(
            config=config,
            store=store,
            recorder=SimpleNamespace(buffered_requests=lambda: 4, drops=DropCounters()),
            clock=lambda: NOW,
            flusher=_Flusher(),
            prometheus=source,
            instance="me:8000",
        )
        response = await _get(_app(runtime))
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"success", "data", "error", "timestamp"} and body["success"] is True
        middleware, prometheus = body["data"]
        assert middleware["name"] == "middleware" and middleware["default"] is True
        assert middleware["buffered_requests"] == 4 and middleware["lag_seconds"] == 1.5
        assert middleware["dropped"] == {"buffer_dropped_requests": 2}
        assert prometheus["name"] == "prometheus" and prometheus["default"] is False
        assert prometheus["url"] == "http://127.0.0.1:9" and prometheus["preset"] == "mockforge"
        assert "unreachable" in prometheus["last_error"]["message"]
        assert prometheus["last_error"]["time"] == NOW and prometheus["failures"] == 1
        assert prometheus["last_success_time"] is None and prometheus["lag_seconds"] is None
        assert "bucket layout" in prometheus["percentile_note"]
    finally:
        await source.close()
        await store.close()


async def test_sources_without_prometheus_or_flusher():
    runtime = SimpleNamespace(
        config=AnalyticsConfig(),
        store=None,
        recorder=SimpleNamespace(buffered_requests=lambda: 0, drops=DropCounters(endpoint_overflow=3)),
        clock=lambda: NOW,
        flusher=None,
        prometheus=None,
    )
    body = (await _get(_app(runtime))).json()
    (middleware,) = body["data"]
    assert middleware["dropped"]["endpoint_overflow"] == 3 and middleware["last_flush_at"] is None
    assert middleware["lag_seconds"] is None


async def test_sources_names_a_parameter_it_does_not_take():
    runtime = SimpleNamespace(clock=lambda: NOW, flusher=None, recorder=None, prometheus=None, instance="me")
    transport = httpx.ASGITransport(app=_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/analytics/api/sources", params={"source": "prometheus"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("source:")

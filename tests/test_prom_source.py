"""Client and source error paths against a FAKE Prometheus (a Starlette app, served in-process)."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.prometheus.client import (
    PrometheusClient,
    PrometheusHTTPError,
    PrometheusMalformedResponse,
    PrometheusQueryError,
    PrometheusUnreachable,
)
from mockforge_analytics_plugin.prometheus.source import STATE_LAST_MINUTE, PrometheusSource
from mockforge_analytics_plugin.store.ingest import read_state
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

T0 = 1_800_000_000 - 1_800_000_000 % 3600
URL = "http://prom.test"


class FakePrometheus:
    """Answers /api/v1/query(_range) from a table of series; `mode` injects failures."""

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[dict[str, str], dict[int, float]]]] = {}
        self.mode = "ok"  # ok | 500 | malformed | nodata | bad_query | empty
        self.fail_times: int | None = None  # None: `mode` always; n: fail n requests, then answer
        self.requests: list[dict[str, str]] = []
        self.app = Starlette(
            routes=[Route("/api/v1/query_range", self.query_range), Route("/api/v1/query", self.query)]
        )

    def add(self, metric: str, labels: dict[str, str], points: dict[int, float]) -> None:
        self.series.setdefault(metric, []).append((labels, points))

    def _failure(self) -> Response | None:
        mode = self.mode
        if self.fail_times is not None:
            if self.fail_times <= 0:
                return None
            self.fail_times -= 1
        if mode == "500":
            return PlainTextResponse("internal trouble", status_code=500)
        if mode == "malformed":
            return PlainTextResponse("{not json", status_code=200)
        if mode == "nodata":
            return JSONResponse({"status": "success"})
        if mode == "bad_query":
            body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
            return JSONResponse(body, status_code=400)
        return None

    async def query_range(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.requests.append(params)
        failure = self._failure()
        if failure is not None:
            return failure
        metric = params["query"].split("{", 1)[0]
        start, end, step = (int(float(params[k])) for k in ("start", "end", "step"))
        result = []
        for labels, points in [] if self.mode == "empty" else self.series.get(metric, []):
            values = [[ts, repr(points[ts])] for ts in range(start, end + 1, step) if ts in points]
            if values:
                result.append({"metric": {"__name__": metric, **labels}, "values": values})
        return JSONResponse({"status": "success", "data": {"resultType": "matrix", "result": result}})

    async def query(self, request: Request) -> Response:
        self.requests.append(dict(request.query_params))
        failure = self._failure()
        if failure is not None:
            return failure
        return JSONResponse({"status": "success", "data": {"resultType": "vector", "result": []}})


def _client(fake: FakePrometheus, **kw) -> PrometheusClient:
    kw.setdefault("backoff", 0.0)
    return PrometheusClient(URL, transport=httpx.ASGITransport(app=fake.app), **kw)


# -- client -------------------------------------------------------------------------------------
async def test_client_returns_data_and_caches_by_query():
    fake = FakePrometheus()
    now = [100.0]
    client = _client(fake, cache_ttl=10, monotonic=lambda: now[0])
    data = await client.query('up{job="x"}', time=T0)
    assert data == {"resultType": "vector", "result": []}
    assert fake.requests == [{"query": 'up{job="x"}', "time": str(T0)}]
    await client.query('up{job="x"}', time=T0)
    assert len(fake.requests) == 1  # served from the cache
    await client.query('up{job="x"}', time=T0 + 60)
    assert len(fake.requests) == 2  # another time is another key
    now[0] += 11
    await client.query('up{job="x"}', time=T0)
    assert len(fake.requests) == 3  # expired
    await client.aclose()


async def test_client_retries_5xx_with_backoff_then_names_url_and_query():
    fake = FakePrometheus()
    fake.mode = "500"
    client = _client(fake, retries=2, cache_ttl=0)
    with pytest.raises(PrometheusHTTPError) as info:
        await client.query_range("m_total", T0, T0 + 60, 60)
    assert len(fake.requests) == 3  # one try and two retries
    assert info.value.status_code == 500
    message = str(info.value)
    assert "HTTP 500" in message and "http://prom.test/api/v1/query_range" in message
    assert "query=m_total" in message
    await client.aclose()


async def test_client_recovers_when_a_retry_succeeds():
    fake = FakePrometheus()
    fake.mode = "500"
    fake.fail_times = 2
    client = _client(fake, retries=3, cache_ttl=0)
    data = await client.query_range("m_total", T0, T0 + 60, 60)
    assert data["resultType"] == "matrix" and len(fake.requests) == 3
    await client.aclose()


async def test_client_query_error_carries_prometheus_error_type():
    fake = FakePrometheus()
    fake.mode = "bad_query"
    client = _client(fake)
    with pytest.raises(PrometheusQueryError) as info:
        await client.query("m{", time=T0)
    assert (info.value.error_type, info.value.error) == ("bad_data", "parse error at char 3")
    assert "query=m{" in str(info.value) and len(fake.requests) == 1  # 4xx is not retried
    await client.aclose()


@pytest.mark.parametrize("mode", ["malformed", "nodata"])
async def test_client_rejects_a_malformed_answer(mode):
    fake = FakePrometheus()
    fake.mode = mode
    client = _client(fake)
    with pytest.raises(PrometheusMalformedResponse, match=re.escape("url=http://prom.test/api/v1/query")):
        await client.query("up")
    await client.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_client_timeout_against_a_real_socket_that_never_answers():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = PrometheusClient(f"http://127.0.0.1:{port}", timeout=0.2, retries=1, backoff=0.01)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PrometheusUnreachable, match=re.escape("timed out after 0.2 s")):
            await client.query("up")
        assert loop.time() - started < 2.0
    finally:
        await client.aclose()
        server.close()


async def test_client_connection_refused_is_unreachable():
    client = PrometheusClient(f"http://127.0.0.1:{_free_port()}", retries=1, backoff=0.01)
    with pytest.raises(PrometheusUnreachable, match="unreachable"):
        await client.query("up")
    await client.aclose()


# -- source -------------------------------------------------------------------------------------
def _fleet(fake: FakePrometheus) -> None:
    base = {"job": "mock", "protocol": "http", "method": "GET", "path": "/a"}
    fake.add(
        "mockforge_requests_by_path_total",
        {**base, "instance": "h1:1", "status": "200"},
        {T0: 1.0, T0 + 60: 4.0, T0 + 120: 10.0, T0 + 180: 10.0},
    )
    fake.add(
        "mockforge_requests_by_path_total",
        {**base, "instance": "h2:2", "status": "500"},
        {T0 + 120: 2.0, T0 + 180: 3.0},
    )
    for le, values in (("0.01", (1.0, 4.0, 4.0)), ("0.1", (1.0, 4.0, 10.0)), ("+Inf", (1.0, 4.0, 10.0))):
        fake.add(
            "mockforge_request_duration_by_path_seconds_bucket",
            {**base, "instance": "h1:1", "le": le},
            dict(zip((T0, T0 + 60, T0 + 120), values, strict=True)),
        )
    fake.add(
        "mockforge_request_duration_by_path_seconds_count",
        {**base, "instance": "h1:1"},
        {T0: 1.0, T0 + 60: 4.0, T0 + 120: 10.0},
    )
    fake.add(
        "mockforge_request_duration_by_path_seconds_sum",
        {**base, "instance": "h1:1"},
        {T0: 0.001, T0 + 60: 0.016, T0 + 120: 0.316},
    )


async def _rows(store: SQLiteStore) -> list[tuple]:
    return [
        tuple(r)
        for r in await store.reader.execute_fetchall(
            "SELECT m.timestamp, s.instance, s.status_code, m.request_count, m.error_count, "
            "m.latency_count, round(m.latency_sum, 3) FROM metrics_aggregates_minute m "
            "JOIN series s USING (series_id) WHERE s.source = 'prometheus' ORDER BY 1, 2, 3"
        )
    ]


def _config(**kw) -> AnalyticsConfig:
    kw.setdefault("prometheus_url", URL)
    kw.setdefault("prometheus_selector", 'job="mock"')
    return AnalyticsConfig(**kw)


async def test_source_ingests_complete_minutes_once_and_reports_status(tmp_path):
    fake = FakePrometheus()
    _fleet(fake)
    store = await SQLiteStore.open(tmp_path / "p.db")
    now = T0 + 190.0
    source = PrometheusSource(_config(), store, clock=lambda: now, client=_client(fake, cache_ttl=0))
    try:
        result = await source.ingest_once(now)
        assert result.error is None
        assert result.minutes[-1] == T0 + 120 and len(result.minutes) == 60  # the backfill bound
        # h1's series first appears at T0 (absent at the window's earlier boundaries): from 0.
        assert result.requests == 1 + 3 + 6 + 2 + 1
        assert all('{job="mock"}' in r["query"] for r in fake.requests)
        assert await _rows(store) == [
            (T0 - 60, "h1:1", 0, 0, 0, 1, 1.0),
            (T0 - 60, "h1:1", 200, 1, 0, 0, 0.0),
            (T0, "h1:1", 0, 0, 0, 3, 15.0),
            (T0, "h1:1", 200, 3, 0, 0, 0.0),
            (T0 + 60, "h1:1", 0, 0, 0, 6, 300.0),
            (T0 + 60, "h1:1", 200, 6, 0, 0, 0.0),
            (T0 + 60, "h2:2", 500, 2, 2, 0, 0.0),  # first seen: counts from 0
            (T0 + 120, "h2:2", 500, 1, 1, 0, 0.0),
        ]
        assert await read_state(store.reader, STATE_LAST_MINUTE) == str(T0 + 120)
        status = source.status()
        assert status["last_ingested_minute"] == T0 + 120 and status["lag_seconds"] == 10.0
        assert status["last_success_time"] == now and status["last_error"] is None
        assert status["preset"] == "mockforge" and status["minutes_ingested"] == 60
        assert "bucket layout" in status["percentile_note"]

        # Nothing new is complete yet: no query, no change.
        sent = len(fake.requests)
        again = await source.ingest_once(now + 30)
        assert again.minutes == [] and len(fake.requests) == sent

        # A new source on the same database resumes after the stored marker.
        later = T0 + 250.0
        resumed = PrometheusSource(_config(), store, clock=lambda: later, client=_client(fake, cache_ttl=0))
        result = await resumed.ingest_once(later)
        await resumed.close()
        assert result.minutes == [T0 + 180] and result.requests == 0
        assert len(await _rows(store)) == 8
    finally:
        await source.close()
        await store.close()


async def test_reingesting_a_minute_twice_leaves_the_same_numbers(tmp_path):
    fake = FakePrometheus()
    _fleet(fake)
    store = await SQLiteStore.open(tmp_path / "r.db")
    try:
        for _ in range(2):
            source = PrometheusSource(_config(), store, client=_client(fake, cache_ttl=0))
            await store.writer.execute("DELETE FROM analytics_state")  # forget the marker
            assert (await source.ingest_once(T0 + 190.0)).error is None
            rows = await _rows(store)
            await source.close()
        assert len(rows) == 8 and sum(r[3] for r in rows) == 13
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("500", "HTTP 500"),
        ("malformed", "not JSON"),
        ("empty", "empty result: no series matched"),
        ("timeout", "timed out"),
    ],
)
async def test_each_failure_is_logged_shown_in_status_and_the_task_keeps_running(
    tmp_path, caplog, mode, expected
):
    fake = FakePrometheus()
    _fleet(fake)
    fake.mode = mode
    if mode == "timeout":
        transport: httpx.AsyncBaseTransport = _SlowTransport(fake.app, delay=0.3)
        client = PrometheusClient(URL, timeout=0.05, retries=1, backoff=0.0, transport=transport)
    else:
        client = _client(fake, cache_ttl=0, retries=1)
    store = await SQLiteStore.open(tmp_path / "f.db")
    now = [T0 + 190.0]
    source = PrometheusSource(
        _config(aggregation_interval_seconds=0.01), store, clock=lambda: now[0], client=client
    )
    try:
        result = await source.ingest_once(now[0])  # does not raise
        assert result.error is not None and expected in result.error
        status = source.status()
        assert expected in status["last_error"]["message"] and status["last_error"]["time"] == now[0]
        assert status["failures"] == 1 and status["last_ingested_minute"] is None
        assert URL in status["last_error"]["message"]
        assert any(expected in rec.getMessage() for rec in caplog.records)
        assert await _rows(store) == []

        # The supervised loop keeps going; once Prometheus answers, the same minutes arrive.
        task = asyncio.create_task(source.run())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if source.runs >= 3:
                break
        assert source.runs >= 3 and not task.done()
        fake.mode = "ok"
        if isinstance(client._http._transport, _SlowTransport):
            client._http._transport.delay = 0.0
        for _ in range(300):
            await asyncio.sleep(0.01)
            if source.last_ingested_minute is not None:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert source.last_ingested_minute == T0 + 120
        assert sum(r[3] for r in await _rows(store)) == 13
        assert source.status()["last_error"]["message"]  # the last error stays visible, with its time
    finally:
        await source.close()
        await store.close()


class _SlowTransport(httpx.AsyncBaseTransport):
    """Delays every answer, honouring the request's read timeout as a network transport would."""

    def __init__(self, app: Starlette, delay: float) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        if timeout is not None and self.delay > timeout:
            await asyncio.sleep(timeout)
            raise httpx.ReadTimeout("read timed out", request=request)
        await asyncio.sleep(self.delay)
        return await self.inner.handle_async_request(request)


async def test_bad_preset_config_is_reported_not_raised(tmp_path):
    store = await SQLiteStore.open(tmp_path / "c.db")
    source = PrometheusSource(_config(prometheus_preset="nope"), store, client=PrometheusClient(URL))
    try:
        result = await source.ingest_once(T0 + 100)
        assert result.error is not None and "prometheus_preset" in result.error
        assert "unknown preset 'nope'" in json.dumps(source.status())
    finally:
        await source.close()
        await store.close()


async def test_a_removed_database_file_is_an_error_not_a_silent_ingest(tmp_path):
    fake = FakePrometheus()
    _fleet(fake)
    path = tmp_path / "db" / "p.db"
    path.parent.mkdir()
    store = await SQLiteStore.open(path)
    source = PrometheusSource(_config(), store, client=_client(fake, cache_ttl=0))
    try:
        assert (await source.ingest_once(T0 + 130.0)).error is None
        marker = source.last_ingested_minute
        path.unlink()  # our open connection would go on writing into the unlinked file
        result = await source.ingest_once(T0 + 250.0)
        assert result.error is not None and "removed" in result.error
        assert source.last_ingested_minute == marker and source.status()["failures"] == 1
    finally:
        await source.close()
        await store.close()


async def test_a_missing_database_file_is_never_recreated_empty(tmp_path):
    fake = FakePrometheus()
    _fleet(fake)
    path = tmp_path / "gone.db"
    store = await SQLiteStore.open(path)
    source = PrometheusSource(_config(), store, client=_client(fake, cache_ttl=0))
    try:
        path.unlink()
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        result = await source.ingest_once(T0 + 190.0)
        assert result.error is not None and "unable to open database file" in result.error
        assert not path.exists()  # a plain connect would have created an empty database here
    finally:
        await source.close()
        await store.close()

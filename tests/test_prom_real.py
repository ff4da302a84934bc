"""End to end against a REAL Prometheus: two example hosts scraped every second, exact counts back.

Skips only when the `prometheus` binary is absent AND `CI` is not set; in CI it must run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from support.hostproc import free_port, run_host, write_config

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.prometheus.source import PrometheusSource
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SLOW_MS = 60  # host-injected latency of /api/slow: in the host's (0.05, 0.1] s bucket

HOST_CONFIG = {
    "routes": [
        {"method": "GET", "path": "/api/users/{id}", "status": 200, "body": {"id": 1}},
        {"method": "POST", "path": "/api/orders", "status": 201},
        {"method": "GET", "path": "/api/fail", "status": 503},
        {"method": "GET", "path": "/api/slow", "status": 200, "latency_ms": SLOW_MS},
    ]
}
TRAFFIC_A = [("GET", "/api/users/1")] * 7 + [("POST", "/api/orders")] * 3 + [("GET", "/api/fail")] * 4
TRAFFIC_A += [("GET", "/api/slow")] * 5
TRAFFIC_B = [("GET", "/api/users/2")] * 5 + [("GET", "/api/fail")] * 2 + [("GET", "/api/slow")] * 15
TRAFFIC_B += [("GET", "/nope")] * 2
EXPECTED = {
    ("/api/users/{id}", "GET", 200): 12,
    ("/api/orders", "POST", 201): 3,
    ("/api/fail", "GET", 503): 6,
    ("/api/slow", "GET", 200): 20,
    ("__unmatched__", "GET", 404): 2,
}


def _need_prometheus() -> None:
    if Path(PROMETHEUS).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {PROMETHEUS} is missing: install Debian's prometheus package")
    pytest.skip(f"{PROMETHEUS} not installed (apt-get install --no-install-recommends prometheus)")


def _start_prometheus(tmp_path: Path, targets: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "mock", "static_configs": [{"targets": targets}]}],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc, f"http://127.0.0.1:{port}"


async def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def test_real_prometheus_two_hosts_exact_counts_and_p95(tmp_path):
    _need_prometheus()
    config_path = write_config(tmp_path, HOST_CONFIG)
    with run_host(config_path) as host_a, run_host(config_path) as host_b:
        targets = [f"127.0.0.1:{host_a.port}", f"127.0.0.1:{host_b.port}"]
        proc, prom_url = _start_prometheus(tmp_path, targets)
        store = await SQLiteStore.open(tmp_path / "analytics.db")
        source = None
        try:
            async with httpx.AsyncClient(timeout=5) as http:

                async def both_up() -> bool:
                    if proc.poll() is not None:
                        raise AssertionError(
                            f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()}"
                        )
                    try:
                        r = await http.get(
                            prom_url + "/api/v1/query", params={"query": 'up{job="mock"} == 1'}
                        )
                        return r.status_code == 200 and len(r.json()["data"]["result"]) == 2
                    except httpx.HTTPError:
                        return False

                await _wait_for(both_up, 30, "prometheus to scrape both hosts")
                for url, traffic in ((host_a.url, TRAFFIC_A), (host_b.url, TRAFFIC_B)):
                    for method, path in traffic:
                        await http.request(method, url + path)
            sent_at = time.time()
            # The boundary after the traffic must follow at least two scrapes that include it.
            boundary = (int(sent_at) // 60 + 1) * 60
            if boundary - sent_at < 2.5:
                boundary += 60
            await asyncio.sleep(max(0.0, boundary + 3.0 - time.time()))  # <= ~63 s

            config = AnalyticsConfig(
                prometheus_url=prom_url, prometheus_selector='job="mock"', prometheus_backfill_minutes=10
            )
            source = PrometheusSource(config, store, settle_seconds=2.0)
            result = await source.ingest_once(time.time())
            assert result.error is None, result.error
            assert result.minutes[-1] == boundary - 60

            rows = await store.reader.execute_fetchall(
                "SELECT s.instance, s.endpoint, s.method, s.status_code, m.request_count, "
                "m.latency_count, m.histogram FROM metrics_aggregates_minute m "
                "JOIN series s USING (series_id) WHERE s.source = 'prometheus'"
            )
            counts: dict[tuple[str, str, int], int] = {}
            slow_hist: dict[int, int] = {}
            slow_latency_count = 0
            instances = set()
            for instance, endpoint, method, status, requests, latency_count, blob in rows:
                instances.add(instance)
                if (endpoint.startswith("/api/") or endpoint == "__unmatched__") and requests:
                    counts[(endpoint, method, status)] = counts.get((endpoint, method, status), 0) + requests
                if endpoint == "/api/slow":
                    histogram.merge_into(slow_hist, blob)
                    slow_latency_count += latency_count
            assert instances == set(targets)
            assert counts == EXPECTED
            assert slow_latency_count == 20 and sum(slow_hist.values()) == 20
            # 60 ms of injected latency falls in the host's (0.05, 0.1] s bucket: p95 reads 100 ms.
            assert histogram.quantile(slow_hist, 0.95) == pytest.approx(100.0, rel=0.01)

            # Ingesting the same minutes again leaves the same numbers.
            await store.writer.execute("DELETE FROM analytics_state")
            again = PrometheusSource(config, store, settle_seconds=2.0)
            try:
                assert (await again.ingest_once(boundary + 3.0)).error is None
            finally:
                await again.close()
            total = await store.reader.execute_fetchall(
                "SELECT sum(m.request_count) FROM metrics_aggregates_minute m "
                "JOIN series s USING (series_id) WHERE s.source = 'prometheus' "
                "AND (s.endpoint LIKE '/api/%' OR s.endpoint = '__unmatched__')"
            )
            assert next(iter(total))[0] == sum(EXPECTED.values())
        finally:
            if source is not None:
                await source.close()
            await store.close()
            proc.terminate()  # by its PID, never by name
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

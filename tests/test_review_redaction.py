"""Review: a password in prometheus_url never shows in /api/status, /api/sources or error messages."""

from __future__ import annotations

import httpx
import pytest

from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.config_parse import parse_config, redact_url, redacted
from mockforge_analytics_plugin.prometheus.client import PrometheusClient, PrometheusUnreachable
from mockforge_analytics_plugin.prometheus.source import PrometheusSource
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

URL = "http://reader:s3cret-pw@127.0.0.1:9"


def test_redacted_config_hides_the_prometheus_password():
    data = redacted(parse_config({"prometheus_url": URL}))
    assert data["prometheus_url"] == "http://reader:***@127.0.0.1:9"
    assert "s3cret" not in repr(data)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h:9090", "http://h:9090"),
        ("https://user@h/p", "https://user@h/p"),
        ("postgresql://a:b@c/d", "postgresql://a:***@c/d"),
        ("http://u:p@h/x@y", "http://u:***@h/x@y"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


async def test_client_errors_and_source_status_never_carry_the_password():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = PrometheusClient(URL, transport=httpx.MockTransport(refuse), retries=0)
    with pytest.raises(PrometheusUnreachable) as info:
        await client.query("up")
    assert "s3cret" not in str(info.value) and "reader:***@127.0.0.1:9" in str(info.value)
    store = await SQLiteStore.open(":memory:")
    source = PrometheusSource(AnalyticsConfig(prometheus_url=URL), store, client=client)
    try:
        result = await source.ingest_once(1_800_000_000.0)
    finally:
        await store.close()
    assert result.error and "unreachable" in result.error
    status = source.status()
    assert "s3cret" not in repr(status) and status["url"] == "http://reader:***@127.0.0.1:9"
    assert "reader:***@" in status["last_error"]["message"]
    await client.aclose()

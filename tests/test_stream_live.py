"""WS stream on a real uvicorn server: interval, client filters, bad config, subscriber cap."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

from support.api2_server import serve
from support.api2_traffic import api_client, make_app
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from mockforge_analytics_plugin.stream import StreamHub

WAIT = 5.0  # every receive is bounded


async def _recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def _next_overview(ws, predicate=lambda m: True, tries: int = 20) -> dict:
    for _ in range(tries):
        message = await _recv(ws)
        if message["type"] == "overview" and predicate(message):
            return message
    raise AssertionError("no matching overview message")


async def test_messages_arrive_at_the_interval(tmp_path):
    async with api_client(tmp_path) as (_, runtime), serve(make_app(runtime)) as port:
        url = f"ws://127.0.0.1:{port}/analytics/api/stream?interval_seconds=0.2"
        async with connect(url) as ws:
            arrivals, messages = [], []
            for _ in range(6):
                messages.append(await _recv(ws))
                arrivals.append(time.monotonic())
    first = messages[0]
    assert first["type"] == "overview" and first["delta"] == {}
    assert first["config"]["interval_seconds"] == 0.2 and first["config"]["duration_seconds"] == 3600
    data = first["data"]
    # Known traffic: 11 requests and 4 errors in the last hour (the recorder was flushed).
    assert (data["total_requests"], data["total_errors"]) == (11, 4)
    assert abs(data["error_rate"] - 100 * 4 / 11) < 0.01
    assert messages[1]["delta"]["total_requests"] == 0  # nothing new between messages
    gaps = [b - a for a, b in itertools.pairwise(arrivals[1:])]
    assert all(0.1 < g < 0.45 for g in gaps), gaps
    assert 0.15 < sum(gaps) / len(gaps) < 0.3, gaps


async def test_client_filter_narrows_and_bad_config_keeps_socket(tmp_path):
    async with api_client(tmp_path) as (_, runtime), serve(make_app(runtime)) as port:
        url = f"ws://127.0.0.1:{port}/analytics/api/stream"
        async with connect(url) as ws:
            assert (await _next_overview(ws))["data"]["total_requests"] == 11
            await ws.send(json.dumps({"interval_seconds": 0.1, "status_code": "5xx"}))
            five = await _next_overview(ws, lambda m: m["config"].get("status_code") == "5xx")
            assert (five["data"]["total_requests"], five["data"]["total_errors"]) == (2, 2)
            await ws.send(json.dumps({"method": "GET", "status_code": None, "environment": "staging"}))
            staging = await _next_overview(ws, lambda m: m["config"].get("environment") == "staging")
            assert staging["data"]["total_requests"] == 1 and "status_code" not in staging["config"]

            for bad, name in [
                ({"interval_seconds": "fast"}, "interval_seconds"),
                ({"interval_seconds": 0}, "interval_seconds"),
                ({"status_code": "6xx"}, "status_code"),
                ({"client": "10.0.0.1"}, "client"),
                ({"bogus": 1}, "bogus"),
                ([1, 2], "config"),
            ]:
                await ws.send(json.dumps(bad))
                for _ in range(20):
                    message = await _recv(ws)
                    if message["type"] == "error":
                        break
                assert message == {"type": "error", "error": message["error"]}
                assert message["error"].startswith(name + ":"), message
            await ws.send("{not json")
            for _ in range(20):
                message = await _recv(ws)
                if message["type"] == "error":
                    break
            assert message["error"].startswith("config:")
            # Still open, still filtered as before the bad configs.
            after = await _next_overview(ws)
            assert after["data"]["total_requests"] == 1 and after["config"]["environment"] == "staging"


async def test_subscriber_limit_closes_with_reason(tmp_path):
    async with api_client(tmp_path) as (_, runtime):
        app = make_app(runtime)
        sub_app = app.routes[0].app
        sub_app.state.stream_hub = StreamHub(limit=1)
        async with serve(app) as port:
            url = f"ws://127.0.0.1:{port}/analytics/api/stream"
            async with connect(url) as first:
                await _recv(first)
                async with connect(url) as second:
                    try:
                        await asyncio.wait_for(second.recv(), WAIT)
                        raise AssertionError("the second subscriber was not closed")
                    except ConnectionClosed as exc:
                        assert exc.rcvd is not None and exc.rcvd.code == 1013
                        assert "too many live subscribers (limit 1)" in exc.rcvd.reason
                assert (await _recv(first))["type"] == "overview"  # the first is unaffected
            # Its slot is freed when it leaves.
            for _ in range(100):
                if not sub_app.state.stream_hub.subscribers:
                    break
                await asyncio.sleep(0.02)
            async with connect(url) as third:
                assert (await _recv(third))["type"] == "overview"


async def test_binary_and_oversized_configs(tmp_path):
    async with api_client(tmp_path) as (_, runtime), serve(make_app(runtime)) as port:
        url = f"ws://127.0.0.1:{port}/analytics/api/stream?interval_seconds=0.1"
        async with connect(url) as ws:
            await ws.send(json.dumps({"protocol": "websocket"}).encode())  # a binary frame
            narrowed = await _next_overview(ws, lambda m: m["config"].get("protocol") == "websocket")
            assert narrowed["data"]["total_requests"] == 0
            await ws.send(json.dumps({"endpoint": "x" * 20_000}))
            for _ in range(20):
                message = await _recv(ws)
                if message["type"] == "error":
                    break
            assert message["error"].startswith("config: longer than")
            assert (await _next_overview(ws))["config"]["protocol"] == "websocket"

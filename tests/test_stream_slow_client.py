"""A client that never reads loses only its own old messages; others keep their interval."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import time

import pytest
from support.api2_server import serve
from support.api2_traffic import api_client, make_app
from websockets.asyncio.client import connect

from mockforge_analytics_plugin.stream import StreamConfig, StreamHub, Subscriber, run_producer, run_sender


def test_subscriber_queue_drops_oldest_and_counts():
    sub = Subscriber(StreamConfig(), size=3)
    for i in range(5):
        sub.put(str(i))
    assert list(sub.queue) == ["2", "3", "4"] and sub.dropped == 2


async def test_blocked_sender_does_not_delay_another_subscriber():
    produced: dict[int, int] = {}

    def builder(ident: int):
        async def build(p, now):
            produced[ident] = produced.get(ident, 0) + 1
            return {"total_requests": produced[ident]}

        return build

    stuck, fast = (
        Subscriber(StreamConfig(interval_seconds=0.1)),
        Subscriber(StreamConfig(interval_seconds=0.1)),
    )
    arrivals: list[float] = []

    async def never_returns(message: str) -> None:
        await asyncio.Event().wait()

    async def record(message: str) -> None:
        arrivals.append(time.monotonic())

    tasks = [
        asyncio.create_task(run_producer(stuck, builder(1), time.time)),
        asyncio.create_task(run_sender(stuck, never_returns)),
        asyncio.create_task(run_producer(fast, builder(2), time.time)),
        asyncio.create_task(run_sender(fast, record)),
    ]
    await asyncio.sleep(1.55)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert len(arrivals) in range(15, 18)  # one at start, then every 0.1 s
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) < 0.2, gaps
    # The stuck one kept producing; one message is held by its blocked send, the queue holds
    # the newest QUEUE_SIZE and the rest were dropped and counted.
    assert produced[1] == produced[2]
    assert len(stuck.queue) == stuck.size and stuck.sent == 0
    assert stuck.dropped == produced[1] - 1 - stuck.size


async def _never_reading_socket(port: int, path: str) -> asyncio.StreamWriter:
    """A raw WebSocket handshake, then the socket stops reading (kernel buffers fill up)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await writer.drain()
    writer.transport.pause_reading()
    return writer


@pytest.mark.slow
async def test_real_socket_that_never_reads(tmp_path):
    big = "x" * 1_000_000  # 10 MB/s at 0.1 s: fills the stuck socket's buffers in under a second

    async def build(p, now):
        return {"total_requests": 1, "blob": big}

    async with api_client(tmp_path) as (_, runtime):
        app = make_app(runtime)
        sub_app = app.routes[0].app
        sub_app.state.stream_builder = build
        sub_app.state.stream_hub = hub = StreamHub(limit=4)
        async with serve(app) as port:
            path = "/analytics/api/stream?interval_seconds=0.1"
            stuck = await _never_reading_socket(port, path)
            try:
                await asyncio.sleep(1.5)
                async with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as fast:
                    arrivals = []
                    for _ in range(15):
                        json.loads(await asyncio.wait_for(fast.recv(), 5))
                        arrivals.append(time.monotonic())
                    gaps = [b - a for a, b in itertools.pairwise(arrivals[1:])]
                    assert 0.08 < sum(gaps) / len(gaps) < 0.13 and max(gaps) < 0.3, gaps
                    slowest = max(hub.subscribers, key=lambda s: s.dropped)
                    fastest = min(hub.subscribers, key=lambda s: s.dropped)
                # The stuck socket's send is blocked; its queue stays bounded and drops are counted.
                assert slowest.dropped >= 10 and len(slowest.queue) == slowest.size
                assert fastest.dropped == 0
            finally:
                stuck.transport.abort()


async def test_subscribers_with_the_same_view_share_one_read():
    calls: list[str] = []

    async def build(p, now):
        calls.append(repr(p.protocol))
        await asyncio.sleep(0.01)
        return {"total_requests": 1}

    hub = StreamHub()
    shared = hub.shared(build)
    same = [Subscriber(StreamConfig(interval_seconds=0.1)) for _ in range(4)]
    other = Subscriber(StreamConfig(interval_seconds=0.1, filters={"protocol": "websocket"}))
    tasks = [asyncio.create_task(run_producer(s, shared, lambda: 1704285000.0)) for s in [*same, other]]
    await asyncio.sleep(1.0)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Every subscriber got its messages at the interval...
    assert all(len(s.queue) + s.dropped >= 9 for s in [*same, other])
    # ...but the four identical views were read together: one read per 0.25 s (about 4 a
    # second), not 4 x 10; the other view is read on its own.
    default_reads = calls.count("None")
    assert 3 <= default_reads <= 8, calls
    assert calls.count("('websocket',)") >= 3
    assert hub.computed == len(calls)

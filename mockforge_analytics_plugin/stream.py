"""`WS <mount>/api/stream`: the overview of the last window, pushed every `interval_seconds`.

Each message is ``{"type": "overview", "timestamp", "data": {...}, "delta": {...}, "config",
"dropped"}``; ``delta`` holds, for every numeric top-level field of ``data``, the change since the
previous message (empty on the first). The client may send a JSON config at any time
(``interval_seconds``, ``duration_seconds`` and any filter; ``null`` removes a key): it is
validated with params.py and applies from the next message; a bad one is answered with
``{"type": "error", "error": "<param>: ..."}`` and the connection stays open.

Per socket, a producer task builds messages into a bounded queue (oldest dropped and counted)
and a sender task drains it, so a client that reads slowly only loses its own old messages: it
never delays the flush or other subscribers. The number of subscribers is capped, and
subscribers with the same view share one overview read (at most SHARE_SECONDS old).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .envelope import rfc3339
from .params import COMMON_PARAMS, ParamError, QueryParams, parse_params

__all__ = [
    "DEFAULT_DURATION",
    "DEFAULT_INTERVAL",
    "MAX_SUBSCRIBERS",
    "QUEUE_SIZE",
    "StreamConfig",
    "StreamHub",
    "Subscriber",
    "compute_delta",
    "parse_stream_config",
    "run_producer",
    "run_sender",
    "stream_routes",
]

DEFAULT_INTERVAL = 1.0
DEFAULT_DURATION = 3600
MIN_INTERVAL = 0.1
MAX_INTERVAL = 3600.0
MAX_SUBSCRIBERS = 32  # overridden by config.max_stream_subscribers when the config has it
QUEUE_SIZE = 8
SHARE_SECONDS = 0.25  # subscribers with the same view share an overview at most this old
MAX_MESSAGE_BYTES = 16_384
CLOSE_TRY_AGAIN = 1013
# Filters the overview honours (everything but the time window, which is duration_seconds here).
STREAM_FILTERS = frozenset(COMMON_PARAMS - {"start_time", "end_time", "duration", "granularity"})
_CONFIG_KEYS = STREAM_FILTERS | {"interval_seconds", "duration_seconds"}

Builder = Callable[[QueryParams, float], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class StreamConfig:
    """A subscriber's settings: raw values as the client sent them, already validated."""

    interval_seconds: float = DEFAULT_INTERVAL
    duration_seconds: int = DEFAULT_DURATION
    filters: dict[str, str] = field(default_factory=dict)

    def params(self, now: float, config: Any = None) -> QueryParams:
        """The QueryParams of the window ending at ``now`` with this config's filters."""
        query = {**self.filters, "duration": str(self.duration_seconds)}
        return parse_params(query, allowed=STREAM_FILTERS | {"duration"}, now=now, config=config)

    def describe(self) -> dict[str, Any]:
        """The config as echoed in every message."""
        return {
            "interval_seconds": self.interval_seconds,
            "duration_seconds": self.duration_seconds,
            **self.filters,
        }


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise ParamError(name, f"expected a number from {low} to {high}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParamError(name, f"expected a number from {low} to {high}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ParamError(name, f"expected a number from {low} to {high}")
    return number


def parse_stream_config(update: Any, current: StreamConfig, now: float, config: Any = None) -> StreamConfig:
    """Merge a client's JSON config into ``current``; raise ParamError naming the bad key."""
    if not isinstance(update, Mapping):
        raise ParamError("config", 'expected a JSON object such as {"interval_seconds": 1}')
    interval, duration = current.interval_seconds, current.duration_seconds
    filters = dict(current.filters)
    for key, value in update.items():
        if key not in _CONFIG_KEYS:
            if key in ("client", "start_time", "end_time", "duration", "granularity", "limit"):
                hint = "use duration_seconds" if key == "duration" else "not supported by the stream"
                raise ParamError(str(key), hint + f"; it accepts: {', '.join(sorted(_CONFIG_KEYS))}")
            raise ParamError(str(key), f"unknown key; the stream accepts: {', '.join(sorted(_CONFIG_KEYS))}")
        if key == "interval_seconds":
            interval = DEFAULT_INTERVAL if value is None else _number(key, value, MIN_INTERVAL, MAX_INTERVAL)
        elif key == "duration_seconds":
            duration = DEFAULT_DURATION if value is None else int(_number(key, value, 60, 366 * 86400))
        elif value is None:
            filters.pop(key, None)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            filters[key] = str(value)
        elif isinstance(value, list) and all(isinstance(v, str | int) for v in value):
            filters[key] = ",".join(str(v) for v in value)
        else:
            raise ParamError(str(key), "expected a string, a number or a list of them")
    candidate = StreamConfig(interval, duration, filters)
    candidate.params(now, config)  # validates every filter with the API's one parser
    return candidate


def compute_delta(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """Changes of the numeric top-level fields since the previous message ({} on the first)."""
    if previous is None:
        return {}
    out: dict[str, Any] = {}
    for key, value in current.items():
        old = previous.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(old, int | float):
            diff = value - old
            out[key] = round(diff, 6) if isinstance(diff, float) else diff
    return out


class Subscriber:
    """One socket's bounded outbox: the producer puts, the sender takes; full means drop the oldest."""

    def __init__(self, config: StreamConfig, size: int = QUEUE_SIZE) -> None:
        self.config = config
        self.queue: deque[str] = deque()
        self.size = size
        self.dropped = 0
        self.sent = 0
        self._ready = asyncio.Event()

    def put(self, message: str) -> None:
        """Queue a message, dropping (and counting) the oldest when the queue is full."""
        while len(self.queue) >= self.size:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(message)
        self._ready.set()

    async def get(self) -> str:
        """Wait for and take the oldest queued message."""
        while not self.queue:
            self._ready.clear()
            await self._ready.wait()
        return self.queue.popleft()


async def run_producer(
    sub: Subscriber,
    build: Builder,
    clock: Callable[[], float],
    config: Any = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Build a message now and then every ``interval_seconds`` (of the config in effect then)."""
    loop = asyncio.get_running_loop()
    previous: dict[str, Any] | None = None
    next_at = loop.time()
    while True:
        cfg = sub.config
        now = clock()
        try:
            data = await build(cfg.params(now, config), now)
        except ParamError as exc:  # cannot happen for a validated config; say so rather than die
            sub.put(json.dumps({"type": "error", "error": f"{exc.param}: {exc.message}"}))
        except Exception as exc:  # a failing read is reported on the socket; the stream goes on
            sub.put(json.dumps({"type": "error", "error": f"overview failed ({type(exc).__name__})"}))
        else:
            message = {
                "type": "overview",
                "timestamp": rfc3339(now),
                "data": data,
                "delta": compute_delta(previous, data),
                "config": cfg.describe(),
                "dropped": sub.dropped,
            }
            previous = data
            sub.put(json.dumps(message, default=str))
        # Schedule from the planned time, not from when the read finished: no drift.
        next_at = max(next_at + sub.config.interval_seconds, loop.time())
        await sleep(next_at - loop.time())


async def run_sender(sub: Subscriber, send: Callable[[str], Awaitable[None]]) -> None:
    """Drain the subscriber's queue into the socket, one message at a time."""
    while True:
        message = await sub.get()
        await send(message)
        sub.sent += 1


@dataclass
class StreamHub:
    """Live subscribers of one sub-app (kept on ``app.state``), with the cap."""

    limit: int = MAX_SUBSCRIBERS
    subscribers: set[Subscriber] = field(default_factory=set)
    share_seconds: float = SHARE_SECONDS
    computed: int = 0  # overviews actually built (the rest were shared)
    _recent: dict[str, tuple[float, asyncio.Future[dict[str, Any]]]] = field(default_factory=dict)

    def shared(self, build: Builder) -> Builder:
        """Wrap ``build`` so subscribers asking for the same window and filters share one read.

        A result is reused for ``share_seconds``: with many dashboards open on the default view
        the store answers one overview per moment, not one per socket.
        """

        async def shared_build(p: QueryParams, now: float) -> dict[str, Any]:
            loop = asyncio.get_running_loop()
            key = repr(p)
            t = loop.time()
            hit = self._recent.get(key)
            if hit is not None and t - hit[0] < self.share_seconds:
                return await asyncio.shield(hit[1])
            for stale in [k for k, (at, _) in self._recent.items() if t - at >= self.share_seconds]:
                del self._recent[stale]
            future = asyncio.ensure_future(build(p, now))
            # Retrieve a failure even if every waiter went away, so it is never "unretrieved".
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._recent[key] = (t, future)
            self.computed += 1
            return await asyncio.shield(future)

        return shared_build

    def stats(self) -> dict[str, int]:
        """Subscriber count and messages dropped across current subscribers."""
        return {
            "subscribers": len(self.subscribers),
            "limit": self.limit,
            "dropped": sum(s.dropped for s in self.subscribers),
        }


def _hub(websocket: WebSocket, runtime: Any) -> StreamHub:
    state = websocket.app.state
    hub = getattr(state, "stream_hub", None)
    if hub is None:
        limit = getattr(getattr(runtime, "config", None), "max_stream_subscribers", MAX_SUBSCRIBERS)
        hub = state.stream_hub = StreamHub(limit=int(limit))
    return hub


def _runtime_builder(runtime: Any) -> Builder:
    """The default builder: query.overview over the runtime's reader, with the live gauges."""

    async def build(p: QueryParams, now: float) -> dict[str, Any]:
        from .query import overview

        recorder = runtime.recorder
        if runtime.store is None:
            raise RuntimeError("the analytics store is not running")
        return await overview(
            runtime.store.reader,
            p,
            active_connections=sum(recorder.in_flight().values()),
            dropped=asdict(recorder.drops),
        )

    return build


def _error(exc: ParamError) -> str:
    return json.dumps({"type": "error", "error": f"{exc.param}: {exc.message}"})


async def stream(websocket: WebSocket) -> None:
    """The live overview stream of one client (see the module docstring)."""
    runtime = websocket.app.state.runtime
    clock: Callable[[], float] = getattr(runtime, "clock", None) or time.time
    hub = _hub(websocket, runtime)
    await websocket.accept()
    if len(hub.subscribers) >= hub.limit:
        await websocket.close(code=CLOSE_TRY_AGAIN, reason=f"too many live subscribers (limit {hub.limit})")
        return
    cfg = StreamConfig()
    sub = Subscriber(cfg)
    initial = {k: v for k, v in websocket.query_params.items()}
    if initial:
        try:
            sub.config = parse_stream_config(initial, cfg, clock(), runtime.config)
        except ParamError as exc:
            sub.put(_error(exc))
    build = hub.shared(getattr(websocket.app.state, "stream_builder", None) or _runtime_builder(runtime))
    hub.subscribers.add(sub)
    tasks = [
        asyncio.create_task(
            run_producer(sub, build, clock, runtime.config), name="analytics-stream-producer"
        ),
        asyncio.create_task(run_sender(sub, websocket.send_text), name="analytics-stream-sender"),
    ]
    try:
        while True:
            receiver = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait([receiver, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if receiver not in done:  # the sender died (socket gone) or the producer failed
                receiver.cancel()
                break
            message = receiver.result()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:  # a binary frame: accept UTF-8 JSON there too
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            if len(text) > MAX_MESSAGE_BYTES:
                sub.put(_error(ParamError("config", f"longer than {MAX_MESSAGE_BYTES} bytes")))
                continue
            try:
                update = json.loads(text)
            except ValueError:
                sub.put(_error(ParamError("config", "not valid JSON")))
                continue
            try:
                sub.config = parse_stream_config(update, sub.config, clock(), runtime.config)
            except ParamError as exc:
                sub.put(_error(exc))
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away (RuntimeError: receive after a disconnect was seen)
    finally:
        hub.subscribers.discard(sub)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def stream_routes() -> list[BaseRoute]:
    """The WebSocket route, mounted under `<mount>/api`."""
    return [WebSocketRoute("/stream", stream, name="stream")]

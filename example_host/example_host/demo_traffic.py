"""`--demo-traffic`: a background task sending realistic mixed traffic to this host over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from .config import HostConfig, RouteSpec
from .context import HostContext

__all__ = ["CLIENTS", "TEST_RUNS", "DemoStats", "plan_request", "run_demo_traffic"]

# (X-Client-Id, User-Agent): different clients and user-agent families.
CLIENTS = (
    ("ci-runner-1", "curl/8.5.0"),
    ("load-test", "python-httpx/0.28.1"),
    (
        "web-app",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
    ),
    ("mobile-backend", "Go-http-client/1.1"),
    ("monitor", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0"),
)
TEST_RUNS = ("run-a", "run-b")
WEBSOCKET_EVERY = 40  # one WebSocket session per this many requests
RAISE_EVERY = 60  # the route that raises logs a traceback: keep it rare
GRAPHQL_QUERY = {"query": "query User($id: ID!) { user(id: $id) { id name } }", "variables": {"id": "1"}}


@dataclass
class DemoStats:
    """What the generator did (kept in host.state["demo_traffic"])."""

    sent: int = 0
    failed: int = 0
    websocket_sessions: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedRequest:
    """One request the generator will send."""

    kind: str  # route | unmatched | graphql | websocket | raise
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None


def _fill(spec: RouteSpec, rng: random.Random) -> str:
    """A concrete path for a template: ints for `{x:int}`, UUIDs for `{x:uuid}`, ids or words otherwise."""
    path = spec.path
    for name in spec.param_names:
        for conv in (":int", ":uuid", ":float", ":path", ":str", ""):
            token = "{" + name + conv + "}"
            if token not in path:
                continue
            if conv == ":uuid":
                value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            elif conv in (":int", ":float") or "id" in name:
                value = str(rng.randint(1, 500))
            else:
                value = rng.choice(("alpha", "beta", "gamma"))
            path = path.replace(token, value)
    return path


def _headers(i: int, rng: random.Random) -> dict[str, str]:
    """Client, user agent, test run, request id and (on some requests) a W3C traceparent."""
    client_id, agent = CLIENTS[rng.randrange(len(CLIENTS))]
    headers = {
        "X-Client-Id": client_id,
        "User-Agent": agent,
        "X-Test-Run": TEST_RUNS[(i // 25) % len(TEST_RUNS)],
        "X-Request-Id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }
    if i % 3 == 0:
        headers["traceparent"] = f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"
    return headers


def plan_request(i: int, cfg: HostConfig, rng: random.Random) -> PlannedRequest:
    """The i-th request of the demo: cycles through routes, unmatched paths, GraphQL and WebSocket."""
    headers = _headers(i, rng)
    http_routes = [
        r for r in cfg.routes if r.websocket is None and r.raise_message is None and r.path != "/graphql"
    ]
    ws_routes = [r for r in cfg.routes if r.websocket is not None]
    raise_routes = [r for r in cfg.routes if r.raise_message is not None]
    if ws_routes and i % WEBSOCKET_EVERY == 5:
        return PlannedRequest("websocket", "GET", _fill(rng.choice(ws_routes), rng), headers)
    if raise_routes and i % RAISE_EVERY == 30:
        spec = rng.choice(raise_routes)
        return PlannedRequest("raise", spec.method, _fill(spec, rng), headers)
    slot = i % 10
    if slot == 3:
        # Cycle through the kinds so every one appears within the first 40 requests.
        path = (
            f"/api/invoices/{uuid.UUID(int=rng.getrandbits(128), version=4)}",
            f"/api/items/{rng.randint(1000, 99999)}",
            "/api/v2/unknown",
            f"/api/users/{rng.randint(1, 500)}/settings",
        )[(i // 10) % 4]
        return PlannedRequest("unmatched", rng.choice(("GET", "GET", "POST", "DELETE")), path, headers)
    if slot == 7:
        return PlannedRequest("graphql", "POST", "/graphql", headers, json=GRAPHQL_QUERY)
    if not http_routes:
        return PlannedRequest("unmatched", "GET", "/", headers)
    spec = http_routes[(i + i // 10) % len(http_routes)]  # shifts each decade: slots 3 and 7 are taken
    body = {"name": "demo", "n": i} if spec.method in ("POST", "PUT", "PATCH") else None
    return PlannedRequest("route", spec.method, _fill(spec, rng), headers, json=body)


async def _websocket_session(url: str, headers: dict[str, str]) -> None:
    """Open a WebSocket, echo a few messages, close."""
    from websockets.asyncio.client import connect

    extra = {k: v for k, v in headers.items() if k != "User-Agent"}
    async with connect(
        url, additional_headers=extra, user_agent_header=headers["User-Agent"], open_timeout=5
    ) as ws:
        for n in range(3):
            await ws.send(f"ping {n}")
            await asyncio.wait_for(ws.recv(), timeout=5)


async def _send(client: httpx.AsyncClient, ws_base: str, req: PlannedRequest, stats: DemoStats) -> None:
    """Send one planned request; failures are counted, never raised."""
    try:
        if req.kind == "websocket":
            await _websocket_session(ws_base + req.path, req.headers)
            stats.websocket_sessions += 1
        else:
            await client.request(req.method, req.path, headers=req.headers, json=req.json)
        stats.sent += 1
        stats.kinds[req.kind] = stats.kinds.get(req.kind, 0) + 1
    except asyncio.CancelledError:
        raise
    except Exception:
        stats.failed += 1


async def run_demo_traffic(
    host: HostContext, cfg: HostConfig, *, rate: float = 8.0, seed: int | None = None
) -> None:
    """Send ~`rate` requests per second to this host until cancelled (started in the host lifespan)."""
    stats = DemoStats()
    host.state["demo_traffic"] = stats
    target = host.listen_host if host.listen_host not in ("0.0.0.0", "::", "", "localhost") else "127.0.0.1"
    if ":" in target:
        target = f"[{target}]"
    base = f"http://{target}:{host.listen_port}"
    ws_base = f"ws://{target}:{host.listen_port}"
    rng = random.Random(seed)
    pending: set[asyncio.Task[None]] = set()  # strong references until each request finishes
    limit = asyncio.Semaphore(16)

    async def one(req: PlannedRequest) -> None:
        async with limit:
            await _send(client, ws_base, req, stats)

    host.logger.info("demo traffic: ~%.0f req/s to %s", rate, base)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
            await asyncio.sleep(0.3)  # the lifespan runs before the socket listens
            i = 0
            while True:
                if len(pending) < 64:  # never pile up if the host is slow
                    task = asyncio.create_task(one(plan_request(i, cfg, rng)))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    i += 1
                await asyncio.sleep(1.0 / rate)
    finally:
        for task in list(pending):
            task.cancel()
        for task in list(pending):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

"""`GET <mount>/api/client-analysis` (hourly client rows) and `GET <mount>/api/recent-requests` (the ring)."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict
from typing import Any

import aiosqlite
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .api_errors import store_reader
from .envelope import api_endpoint, fail, now_of, ok
from .params import TIME_PARAMS, QueryParams, parse_params
from .store.queries_clients import CLIENT_FILTER_COLUMNS, agent_rows, endpoint_rows, link_rows, total_rows

__all__ = ["CLIENT_SORTS", "clients_routes", "figures_by", "rank_clients", "recent_matches"]

CLIENT_SORTS = ("requests", "errors", "error_rate", "avg_latency", "bytes", "client")
CLIENT_PARAMS = frozenset({"start_time", "end_time", "duration", *CLIENT_FILTER_COLUMNS, "limit", "sort"})
RECENT_PARAMS = frozenset(
    {
        "start_time",
        "end_time",
        "duration",
        "protocol",
        "method",
        "endpoint",
        "status_code",
        "workspace_id",
        "environment",
        "test_run",
        "client",
        "limit",
    }
)
TOP_ENDPOINTS = 10
_SORT_KEYS = {
    "requests": lambda c: (-c["request_count"], c["key"]),
    "errors": lambda c: (-c["error_count"], c["key"]),
    "error_rate": lambda c: (-c["error_rate"], c["key"]),
    "avg_latency": lambda c: (-(c["avg_latency_ms"] or 0.0), c["key"]),
    "bytes": lambda c: (-(c["bytes_sent"] + c["bytes_received"]), c["key"]),
    "client": lambda c: (c["key"],),
}


async def figures_by(db: aiosqlite.Connection, p: QueryParams, by: str) -> dict[str, dict[str, Any]]:
    """Per client (``by="client_ip"``) or per test run: totals, main user agent, top endpoints."""
    out: dict[str, dict[str, Any]] = {}
    for key, requests, errors, lsum, lcount, sent, received, first, last in await total_rows(db, p, by):
        requests, errors, lcount = requests or 0, errors or 0, lcount or 0
        out[key] = {
            "key": key,
            "request_count": requests,
            "error_count": errors,
            "error_rate": round(100.0 * errors / requests, 4) if requests else 0.0,
            "avg_latency_ms": round((lsum or 0.0) / lcount, 4) if lcount else None,
            "bytes_sent": sent or 0,
            "bytes_received": received or 0,
            "user_agent": "",
            "user_agent_family": "",
            "user_agent_version": "",
            "user_agent_count": 0,
            "top_endpoints": [],
            "first_seen": first,
            "last_seen": last,
        }
    best: dict[str, tuple[int, tuple[str, str, str]]] = {}
    for key, agent, family, version, requests in await agent_rows(db, p, by):
        entry = out.get(key)
        if entry is None:
            continue
        entry["user_agent_count"] += 1
        candidate = (requests or 0, (agent, family, version))
        if key not in best or candidate > best[key]:  # most requests; ties: the greatest name
            best[key] = candidate
    for key, (_, (agent, family, version)) in best.items():
        out[key].update(user_agent=agent, user_agent_family=family, user_agent_version=version)
    counts: dict[str, list[tuple[str, int]]] = {}
    for key, endpoint, n in await endpoint_rows(db, p, by):
        counts.setdefault(key, []).append((endpoint, int(n)))
    for key, items in counts.items():
        if key in out:
            items.sort(key=lambda kv: (-kv[1], kv[0]))
            out[key]["top_endpoints"] = [{"endpoint": e, "count": n} for e, n in items[:TOP_ENDPOINTS]]
    return out


async def rank_clients(db: aiosqlite.Connection, p: QueryParams, sort: str, limit: int) -> dict[str, Any]:
    """Per-client and per-test-run figures of the window, sorted and limited."""
    clients = await figures_by(db, p, "client_ip")
    runs = await figures_by(db, p, "test_run")
    runs_of: dict[str, list[str]] = {}
    clients_of: dict[str, int] = {}
    for client, run in await link_rows(db, p):
        runs_of.setdefault(client, []).append(run)
        clients_of[run] = clients_of.get(run, 0) + 1
    key = _SORT_KEYS[sort]
    client_list = sorted(clients.values(), key=key)
    run_list = sorted(runs.values(), key=key)
    for c in client_list:
        c["test_runs"] = sorted(runs_of.get(c["key"], []))
        c["client"] = c.pop("key")
    for r in run_list:
        r["client_count"] = clients_of.get(r["key"], 0)
        r["test_run"] = r.pop("key")
    return {
        "total_clients": len(client_list),
        "total_test_runs": len(run_list),
        "clients": client_list[:limit],
        "test_runs": run_list[:limit],
    }


@api_endpoint
async def client_analysis(request: Request) -> Response:
    """Per client and per test run: requests, errors, latency, bytes, user agent, top endpoints."""
    runtime = request.app.state.runtime
    p = parse_params(
        request.query_params,
        allowed=CLIENT_PARAMS,
        now=now_of(request),
        config=runtime.config,
        sorts=CLIENT_SORTS,
    )
    db = store_reader(request)
    if db is None:
        return fail(503, "analytics store is not open")
    data = await rank_clients(db, p, p.sort or CLIENT_SORTS[0], p.limit)
    return ok({"start_time": p.start - p.start % 3600, "end_time": p.end, "sort": p.sort, **data})


def recent_matches(entry: Any, p: QueryParams, windowed: bool) -> bool:
    """True when one recent request passes the filters of ``p`` (and its window, if one was asked)."""
    if windowed and not (p.start <= entry.timestamp < p.end):
        return False
    if p.protocol is not None and entry.protocol not in p.protocol:
        return False
    if p.method is not None and entry.method not in p.method:
        return False
    if p.endpoint is not None:
        if p.endpoint_is_glob:
            if not fnmatch.fnmatchcase(entry.endpoint, p.endpoint.replace("[", "[[]").replace("?", "[?]")):
                return False
        elif entry.endpoint != p.endpoint:
            return False
    if p.status_code is not None and not p.status_code.matches(entry.status_code):
        return False
    for name, value in (
        ("workspace_id", entry.workspace_id),
        ("environment", entry.environment),
        ("test_run", entry.test_run),
        ("client", entry.client_id),
    ):
        wanted = getattr(p, name)
        if wanted is not None and value != wanted:
            return False
    return True


@api_endpoint
async def recent_requests(request: Request) -> Response:
    """The recorder's ring of recent requests, newest first, filtered."""
    runtime = request.app.state.runtime
    p = parse_params(request.query_params, allowed=RECENT_PARAMS, now=now_of(request), config=runtime.config)
    # The ring is recent by nature: only filter by time when the caller asked for a window.
    windowed = any(name in request.query_params for name in TIME_PARAMS)
    ring = runtime.recorder.recent(max(runtime.config.recent_requests, 1))
    items = []
    for entry in ring:
        if recent_matches(entry, p, windowed):
            item = asdict(entry)
            item["client"] = item.pop("client_id")
            items.append(item)
            if len(items) >= p.limit:
                break
    return ok({"capacity": runtime.config.recent_requests, "count": len(items), "requests": items})


def clients_routes() -> list[BaseRoute]:
    """The client routes, mounted under `<mount>/api`."""
    return [
        Route("/client-analysis", client_analysis, methods=["GET"], name="client_analysis"),
        Route("/recent-requests", recent_requests, methods=["GET"], name="recent_requests"),
    ]
